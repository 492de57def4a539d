//! One route: authenticate, read, decompress, decode, send, answer.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::sync::Mutex;
use vrl::value::{KeyString, ObjectMap, Value};

use super::auth::AuthConfig;
use super::body::{self, too_large};
use super::decoder::{Decoder, Payload, Stamp};
use super::media_type;
use super::reply::{self, Rejection};
use super::sns::{MessageType, Sns, Verified};
use super::{RouteConfig, WebhookConfig};
use crate::buffer::{Charge, MemoryBudget};
use crate::clock::Clock;
use crate::component::{BuildError, SourceOutput};
use crate::event::{BatchAck, Event, Payload as EventPayload, SourceId, VrlMetadata};
use crate::sources::util::handover::{Handed, hand_over};
use crate::telemetry::{ComponentMetrics, LabeledCounter, LatencyRecorder};
use crate::telemetry::{ErrorType, Stage};

/// Bodies up to this size, uncompressed, for a built-in decoder (linear in the body) are
/// parsed and decoded on the worker that read them: a single alert (Alertmanager's or
/// Grafana's one-alert notification is 1–5 KiB) takes tens of microseconds, less than
/// two hops to the blocking pool and back. Larger or compressed bodies, and every body
/// for a decoder plugin from disk, go to the blocking pool, under `decode_timeout`.
const INLINE_DECODE_BYTES: usize = 16 * 1024;

/// What all routes of one listener share.
pub(crate) struct Shared {
    pub(crate) id: SourceId,
    pub(crate) out: Mutex<SourceOutput>,
    pub(crate) metrics: Arc<ComponentMetrics>,
    pub(crate) latency: Arc<LatencyRecorder>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) request_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_events_per_request: usize,
    pub(crate) decode_timeout: Duration,
    /// Decodes running at once, across the listener's routes.
    pub(crate) decode_slots: Arc<tokio::sync::Semaphore>,
    /// The global `memory_limit`, which a request is charged against while it is read
    /// and decoded.
    pub(crate) budget: Option<Arc<MemoryBudget>>,
}

pub(crate) struct Route {
    path: String,
    decoder: Decoder,
    auth: Option<AuthConfig>,
    sns: Option<Sns>,
    /// Lowercase header names copied into `%headers`.
    capture: Vec<String>,
    accepted: Arc<LabeledCounter>,
    duplicates: Arc<LabeledCounter>,
    shared: Arc<Shared>,
}

const ACCEPTED: &str = "sluice_webhook_accepted_events_total";
const REJECTED: &str = "sluice_webhook_rejected_requests_total";
const DUPLICATES: &str = "sluice_webhook_duplicate_messages_total";

impl Route {
    pub(crate) fn build(
        r: &RouteConfig,
        config: &WebhookConfig,
        shared: Arc<Shared>,
    ) -> Result<Self, BuildError> {
        let decoder = Decoder::resolve(&r.decoder, r.default_severity, config.keep_raw)?;
        let sns = match (r.decoder.as_str(), &r.sns) {
            ("aws_sns", sns) => Some(Sns::new(
                sns.clone().unwrap_or_default(),
                Arc::clone(&shared.clock),
            )?),
            _ => None,
        };
        let capture = config
            .capture_headers
            .iter()
            .chain(&r.capture_headers)
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let accepted = shared.metrics.counter(ACCEPTED, &[("route", &r.path)]);
        let duplicates = shared.metrics.counter(DUPLICATES, &[("route", &r.path)]);
        Ok(Self {
            path: r.path.clone(),
            decoder,
            auth: r.auth.clone(),
            sns,
            capture,
            accepted,
            duplicates,
            shared,
        })
    }

    fn count_rejection(&self, reason: &'static str) {
        self.shared
            .metrics
            .counter(REJECTED, &[("route", &self.path), ("reason", reason)])
            .add(1);
        let error_type = match reason {
            "bad_body" | "bad_encoding" | "malformed" | "decoder_failed" => ErrorType::Parse,
            _ => ErrorType::Request,
        };
        self.shared
            .metrics
            .add_errors(1, error_type, Stage::Receiving);
    }

    async fn process(
        self: &Arc<Self>,
        parts: Parts,
        body: Body,
        request_id: &str,
    ) -> Result<Outcome, Rejection> {
        let shared = &self.shared;
        let now = shared.clock.wall();
        if let Some(auth) = &self.auth
            && !auth.needs_body()
            && !auth.verify(&parts.headers, parts.uri.query(), b"", now.timestamp())
        {
            return Err(unauthorized(auth));
        }
        if let Err(rejection) = media_type::check(&self.decoder.name, &parts.headers) {
            body::drain(body).await;
            return Err(rejection);
        }
        let limit = shared.max_body_bytes;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            body::drain(body).await;
            return Err(too_large(limit));
        }
        let deadline = tokio::time::Instant::now() + shared.request_timeout;
        // The request is charged before its body is read, for the body and for what
        // decoding it allocates: with no length given, or compressed (it may inflate up
        // to the limit), as the largest body it may become.
        let compressed = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let body_bytes = match declared {
            Some(n) if !compressed => n as usize,
            _ => limit,
        };
        let wanted = super::request_charge(body_bytes, !self.decoder.is_passthrough());
        // Shared with the decoding work, which may outlive this request (decode_timeout):
        // its memory stays charged until it ends.
        let charge = Arc::new(self.reserve(wanted, deadline).await?);
        let granted = charge.as_ref().as_ref().map_or(wanted, Charge::bytes);
        let raw = body::read_bounded(body, limit, shared.read_timeout).await?;
        shared.metrics.add_received_bytes(raw.len());
        if let Some(auth) = &self.auth
            && auth.needs_body()
            && !auth.verify(&parts.headers, parts.uri.query(), &raw, now.timestamp())
        {
            return Err(unauthorized(auth));
        }

        // Only time spent decoding counts, not time spent waiting for a slot: a request
        // that queued behind others is busy (503), not too large (413).
        let mut decode_left = shared.decode_timeout;
        let small = !compressed && raw.len() <= INLINE_DECODE_BYTES && self.decoder.is_builtin();
        let headers = Arc::new(parts.headers);
        let request_id: Arc<str> = Arc::from(request_id);
        let payload = {
            let route = Arc::clone(self);
            let headers = Arc::clone(&headers);
            let max_events = shared.max_events_per_request;
            let charge = Arc::clone(&charge);
            self.off_runtime(small, deadline, &mut decode_left, move || {
                let _charge = charge;
                let content = super::body::decode_content(&headers, raw, limit)?;
                // What the values may take: what was charged beyond the body, and never
                // more than the decoded body's own allowance.
                let allowance = granted
                    .saturating_sub(content.len())
                    .min(super::decode_allowance(content.len()));
                route
                    .decoder
                    .parse(&headers, &content, max_events, allowance)
            })
            .await?
        };
        let mut claimed = None;
        let values = match payload {
            Payload::Events(values) => values,
            Payload::Document(payload) => {
                let payload = match &self.sns {
                    Some(sns) => match self.sns_control(sns, &payload).await? {
                        SnsStep::Answered(outcome) => return Ok(outcome),
                        SnsStep::Decode(message) => {
                            let signed = message.signed_envelope.clone();
                            claimed = Some(message);
                            signed
                        }
                    },
                    None => payload,
                };
                let route = Arc::clone(self);
                let headers = Arc::clone(&headers);
                let request_id = Arc::clone(&request_id);
                let charge = Arc::clone(&charge);
                let decoded = self
                    .off_runtime(small, deadline, &mut decode_left, move || {
                        let _charge = charge;
                        let metadata = route.vrl_metadata(&headers, true);
                        let stamp = Stamp {
                            now,
                            request_id: &request_id,
                        };
                        route.decoder.decode(payload, &metadata, &stamp)
                    })
                    .await;
                match decoded {
                    Ok(values) => values.into_iter().map(EventPayload::parsed).collect(),
                    Err(e) => {
                        self.release(claimed.as_ref());
                        return Err(e);
                    }
                }
            }
        };
        // From here the events are charged by the buffers they wait in.
        drop(charge);
        if values.len() > shared.max_events_per_request {
            self.release(claimed.as_ref());
            return Err(super::decoder::too_many_events(
                shared.max_events_per_request,
            ));
        }
        let stamp = Stamp {
            now,
            request_id: &request_id,
        };
        let outcome = self.send(values, &headers, &stamp, deadline).await;
        if outcome.is_err() {
            self.release(claimed.as_ref());
        }
        outcome
    }

    /// Waits for room in the memory budget, if there is one, until `deadline`. A large
    /// request (over an eighth of the budget) may fill at most three quarters of it, so
    /// small alerts always find room beside large bodies.
    async fn reserve(
        &self,
        bytes: usize,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Charge>, Rejection> {
        let Some(budget) = &self.shared.budget else {
            return Ok(None);
        };
        let limit = budget.limit();
        let ceiling = if bytes > limit / 8 {
            limit / 4 * 3
        } else {
            limit
        };
        match tokio::time::timeout_at(deadline, budget.reserve(bytes, ceiling)).await {
            Ok(charge) => Ok(Some(charge)),
            Err(_) => Err(Rejection::busy("memory_limit is reached; retry later")),
        }
    }

    /// Runs `work` (decompressing, parsing, decoding: CPU-bound and as slow as the body
    /// is large) on the blocking pool, one of at most `DECODE_SLOTS` at a time, so a
    /// large request never stalls the runtime's workers that answer everything else.
    /// Waiting for a slot is
    /// bounded by the request's deadline (503); the work itself by what is left of
    /// `decode_timeout`, `decode_left`, which this call spends (413: the same body would
    /// take as long again). The work of a `small` body (see
    /// [`INLINE_DECODE_BYTES`]) runs here instead: it is bounded by the body's size, and
    /// the hop to the blocking pool and back would cost more than the work.
    async fn off_runtime<T: Send + 'static>(
        &self,
        small: bool,
        deadline: tokio::time::Instant,
        decode_left: &mut Duration,
        work: impl FnOnce() -> Result<T, Rejection> + Send + 'static,
    ) -> Result<T, Rejection> {
        if small {
            // Both phases of a request are small or neither is, so an inline phase never
            // leaves a budget that a pool phase would read.
            return work();
        }
        let shared = &self.shared;
        let permit =
            tokio::time::timeout_at(deadline, Arc::clone(&shared.decode_slots).acquire_owned())
                .await
                .map_err(|_| Rejection::busy("every decoder is busy; retry later"))?
                .map_err(|_| Rejection::busy("the source is stopping; retry later"))?;
        let started = tokio::time::Instant::now();
        let decode_deadline = started + *decode_left;
        let task = tokio::task::spawn_blocking(move || {
            // Held until the work ends, even when the request has given up on it.
            let _permit = permit;
            work()
        });
        let decode_first = decode_deadline <= deadline;
        let finished = tokio::time::timeout_at(decode_deadline.min(deadline), task).await;
        *decode_left = decode_left.saturating_sub(started.elapsed());
        match finished {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "decoder_failed",
                format!("decoding failed: {e}"),
            )),
            Err(_) if !decode_first => Err(Rejection::busy(
                "decoding did not finish within request_timeout; retry later",
            )),
            Err(_) => Err(Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "decode_timeout",
                format!(
                    "decoding the body took longer than decode_timeout ({}); send fewer alerts per request",
                    humantime::format_duration(shared.decode_timeout)
                ),
            )),
        }
    }

    fn release(&self, message: Option<&Verified>) {
        if let (Some(sns), Some(message)) = (&self.sns, message) {
            sns.release(message);
        }
    }

    /// Verifies an SNS message. Confirmations carry no event and are answered here; a
    /// notification is claimed (a replay of an accepted one is answered here too) and
    /// only its signed fields go on to the decoder.
    async fn sns_control(&self, sns: &Sns, payload: &Value) -> Result<SnsStep, Rejection> {
        let message = sns.verify(payload).await?;
        match message.kind {
            MessageType::Notification => {
                if sns.claim(&message) {
                    Ok(SnsStep::Decode(message))
                } else {
                    tracing::info!(component_id = %self.shared.id, route = %self.path,
                        message_id = %message.message_id, "dropped an SNS message already accepted (a replay or a duplicate delivery)");
                    self.duplicates.add(1);
                    Ok(SnsStep::Answered(Outcome::Duplicate))
                }
            }
            MessageType::SubscriptionConfirmation => {
                let topic = field(payload, "TopicArn");
                if sns.auto_confirm() {
                    sns.confirm(payload).await?;
                    tracing::info!(component_id = %self.shared.id, route = %self.path, %topic, "confirmed the SNS subscription");
                } else {
                    tracing::warn!(component_id = %self.shared.id, route = %self.path, %topic,
                        subscribe_url = %field(payload, "SubscribeURL"),
                        "SNS subscription not confirmed (sns.auto_confirm is off): open the SubscribeURL to confirm it");
                }
                Ok(SnsStep::Answered(Outcome::Delivered(0)))
            }
            MessageType::UnsubscribeConfirmation => {
                tracing::warn!(component_id = %self.shared.id, route = %self.path,
                    topic = %field(payload, "TopicArn"), "the SNS topic unsubscribed this endpoint");
                Ok(SnsStep::Answered(Outcome::Delivered(0)))
            }
        }
    }

    /// `%decoder`, `%route`, and `%headers`: every header for the decoder (`all`), only
    /// the captured ones on events.
    fn vrl_metadata(&self, headers: &HeaderMap, all: bool) -> Value {
        let mut captured = ObjectMap::new();
        for (name, value) in headers {
            if all || self.capture.iter().any(|c| c == name.as_str()) {
                captured.insert(
                    KeyString::from(name.as_str()),
                    Value::from(String::from_utf8_lossy(value.as_bytes()).into_owned()),
                );
            }
        }
        let mut meta = ObjectMap::new();
        meta.insert("decoder".into(), Value::from(self.decoder.name.as_ref()));
        meta.insert("route".into(), Value::from(self.path.as_str()));
        meta.insert("headers".into(), Value::Object(captured));
        Value::Object(meta)
    }

    /// Sends the request's events as one batch, so they enter the pipeline together or
    /// not at all, then waits for their delivery until `deadline`.
    async fn send(
        &self,
        values: Vec<EventPayload>,
        headers: &HeaderMap,
        stamp: &Stamp<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<Outcome, Rejection> {
        let n = values.len();
        if n == 0 {
            return Ok(Outcome::Delivered(0));
        }
        let mut metadata = self.vrl_metadata(headers, false);
        if let Value::Object(m) = &mut metadata {
            m.insert("request_id".into(), Value::from(stamp.request_id));
        }
        let metadata = VrlMetadata::shared(metadata);
        let shared = &self.shared;
        let (ack, done) = BatchAck::with_receiver(n, Some(Arc::clone(&shared.latency)));
        let batch: Vec<Event> = values
            .into_iter()
            .map(|v| {
                let mut e = Event::from_payload(v, shared.id, stamp.now).with_ack(ack.event_ack());
                e.meta.vrl = metadata.clone();
                e
            })
            .collect();
        drop(ack);

        let send = async {
            let mut out = shared.out.lock().await;
            out.send(batch).await;
            true
        };
        match hand_over(send, done, n, deadline, &shared.metrics).await {
            Handed::Delivered => Ok(Outcome::Delivered(n)),
            Handed::Pending => Ok(Outcome::Pending(n)),
            // Nothing of this request entered the pipeline.
            Handed::Full | Handed::Stopped => {
                Err(Rejection::busy("the pipeline is full; retry later"))
            }
            Handed::Failed => {
                let mut r = Rejection::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "delivery_failed",
                    "delivery failed; retry later",
                );
                r.retry_after = Some(1);
                Err(r)
            }
            Handed::Rejected => Err(Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rejected",
                "a sink rejected the events",
            )),
        }
    }
}

/// How a request that was not turned away ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// All of its events were delivered (200).
    Delivered(usize),
    /// All of its events entered the pipeline; their delivery outlasted
    /// `request_timeout` (202).
    Pending(usize),
    /// An SNS message already accepted (200, nothing sent again).
    Duplicate,
}

enum SnsStep {
    Answered(Outcome),
    Decode(Verified),
}

pub(crate) async fn handle(State(route): State<Arc<Route>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let request_id = parts
        .headers
        .get("x-request-id")
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.to_str().is_ok())
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("-"))
        });
    let id = request_id.to_str().unwrap_or("-").to_owned();
    match route.process(parts, body, &id).await {
        Ok(Outcome::Delivered(n)) => {
            route.accepted.add(n as u64);
            reply::accepted(n, &request_id)
        }
        Ok(Outcome::Pending(n)) => {
            route.accepted.add(n as u64);
            reply::pending(n, &request_id)
        }
        Ok(Outcome::Duplicate) => reply::duplicate(&request_id),
        Err(rejection) => {
            route.count_rejection(rejection.reason);
            tracing::debug!(component_id = %route.shared.id, route = %route.path, request_id = %id,
                status = rejection.status.as_u16(), reason = rejection.reason, error = %rejection.message, "rejected request");
            rejection.into_response(&request_id)
        }
    }
}

/// The answer to a request for a path no route serves. It names no route: a route's
/// path may be its only secret (`/hooks/${HOOK_PATH_SECRET}`), and the list would tell
/// anyone which vendors are wired up.
pub(crate) async fn not_found() -> Response {
    Rejection::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no route here: check the URL the sender posts to against the routes of this source",
    )
    .into_response(&HeaderValue::from_static("-"))
}

fn unauthorized(auth: &AuthConfig) -> Rejection {
    let mut r = Rejection::unauthorized();
    r.challenge = auth.challenge();
    r
}

fn field(value: &Value, key: &str) -> String {
    value
        .as_object()
        .and_then(|o| o.get(key))
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default()
}
