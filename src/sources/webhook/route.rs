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
use super::reply::{self, Rejection};
use super::sns::{MessageType, Sns};
use super::{RouteConfig, ServerTls, WebhookConfig};
use crate::clock::Clock;
use crate::component::{BuildError, SourceOutput};
use crate::event::{BatchAck, Event, EventStatus, VrlMetadata};
use crate::telemetry::{ComponentMetrics, LabeledCounter, LatencyRecorder};

/// What all routes of one listener share.
pub struct Shared {
    pub id: Arc<str>,
    pub out: Mutex<SourceOutput>,
    pub metrics: Arc<ComponentMetrics>,
    pub latency: Arc<LatencyRecorder>,
    pub clock: Arc<dyn Clock>,
    pub request_timeout: Duration,
    pub read_timeout: Duration,
    pub max_body_bytes: usize,
}

pub struct Route {
    path: String,
    decoder: Decoder,
    auth: Option<AuthConfig>,
    sns: Option<Sns>,
    /// Lowercase header names copied into `%headers`.
    capture: Vec<String>,
    accepted: Arc<LabeledCounter>,
    shared: Arc<Shared>,
}

const ACCEPTED: &str = "sluice_webhook_accepted_events_total";
const REJECTED: &str = "sluice_webhook_rejected_requests_total";

impl Route {
    pub fn build(
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
        let accepted = shared.metrics.counter(
            ACCEPTED,
            "Events a webhook route accepted into the pipeline.",
            &[("route", &r.path)],
        );
        Ok(Self {
            path: r.path.clone(),
            decoder,
            auth: r.auth.clone(),
            sns,
            capture,
            accepted,
            shared,
        })
    }

    fn count_rejection(&self, reason: &'static str) {
        self.shared
            .metrics
            .counter(
                REJECTED,
                "Requests a webhook route turned away, by reason.",
                &[("route", &self.path), ("reason", reason)],
            )
            .add(1);
        self.shared.metrics.add_errors(1);
    }

    async fn process(
        &self,
        parts: Parts,
        body: Body,
        request_id: &str,
    ) -> Result<usize, Rejection> {
        let now = self.shared.clock.wall();
        if let Some(auth) = &self.auth
            && !auth.needs_body()
            && !auth.verify(&parts.headers, parts.uri.query(), b"", now.timestamp())
        {
            return Err(unauthorized(auth));
        }
        let limit = self.shared.max_body_bytes;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit));
        }
        let raw =
            match tokio::time::timeout(self.shared.read_timeout, axum::body::to_bytes(body, limit))
                .await
            {
                Err(_) => {
                    return Err(Rejection::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "timeout",
                        "the body did not arrive within read_timeout",
                    ));
                }
                Ok(Err(e))
                    if crate::delivery::error_chain(&e).contains("length limit exceeded") =>
                {
                    return Err(too_large(limit));
                }
                Ok(Err(e)) => {
                    return Err(Rejection::new(
                        StatusCode::BAD_REQUEST,
                        "bad_body",
                        format!("cannot read the body: {e}"),
                    ));
                }
                Ok(Ok(raw)) => raw,
            };
        if let Some(auth) = &self.auth
            && auth.needs_body()
            && !auth.verify(&parts.headers, parts.uri.query(), &raw, now.timestamp())
        {
            return Err(unauthorized(auth));
        }
        let content = body::decode_content(&parts.headers, raw, limit)?;

        let stamp = Stamp { now, request_id };
        let values = match self.decoder.parse(&parts.headers, &content)? {
            Payload::Events(values) => values,
            Payload::Document(payload) => {
                if let Some(sns) = &self.sns
                    && let Some(done) = self.sns_control(sns, &payload).await?
                {
                    return Ok(done);
                }
                let metadata = self.vrl_metadata(&parts.headers, true);
                self.decoder.decode(payload, &metadata, &stamp)?
            }
        };
        self.send(values, &parts.headers, &stamp).await
    }

    /// Verifies an SNS message; handles the confirmations, which carry no event.
    async fn sns_control(&self, sns: &Sns, payload: &Value) -> Result<Option<usize>, Rejection> {
        match sns.verify(payload).await? {
            MessageType::Notification => Ok(None),
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
                Ok(Some(0))
            }
            MessageType::UnsubscribeConfirmation => {
                tracing::warn!(component_id = %self.shared.id, route = %self.path,
                    topic = %field(payload, "TopicArn"), "the SNS topic unsubscribed this endpoint");
                Ok(Some(0))
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

    async fn send(
        &self,
        values: Vec<Value>,
        headers: &HeaderMap,
        stamp: &Stamp<'_>,
    ) -> Result<usize, Rejection> {
        let n = values.len();
        if n == 0 {
            return Ok(0);
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
                let mut e =
                    Event::new(v, Arc::clone(&shared.id), stamp.now).with_ack(ack.event_ack());
                e.meta.vrl = metadata.clone();
                e
            })
            .collect();
        drop(ack);
        shared.metrics.add_received(n);

        let deadline = tokio::time::Instant::now() + shared.request_timeout;
        let send = async {
            let mut out = shared.out.lock().await;
            out.send(batch).await;
        };
        if tokio::time::timeout_at(deadline, send).await.is_err() {
            return Err(Rejection::busy("the pipeline is full; retry later"));
        }
        match tokio::time::timeout_at(deadline, done.wait()).await {
            Ok(EventStatus::Delivered) => Ok(n),
            Ok(EventStatus::Errored) => Err(Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "delivery_failed",
                "delivery failed; retry later",
            )),
            Ok(EventStatus::Rejected) => Err(Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rejected",
                "a sink rejected the events",
            )),
            Err(_) => Err(Rejection::busy(
                "delivery did not complete in time; retry later",
            )),
        }
    }
}

pub async fn handle(State(route): State<Arc<Route>>, request: Request) -> Response {
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
        Ok(n) => {
            route.accepted.add(n as u64);
            reply::accepted(n, &request_id)
        }
        Err(rejection) => {
            route.count_rejection(rejection.reason);
            tracing::debug!(component_id = %route.shared.id, route = %route.path, request_id = %id,
                status = rejection.status.as_u16(), reason = rejection.reason, error = %rejection.message, "rejected request");
            rejection.into_response(&request_id)
        }
    }
}

pub async fn not_found(paths: Vec<String>) -> Response {
    Rejection::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route here; this listener accepts POST on {}",
            paths.join(", ")
        ),
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

/// A rustls acceptor from PEM files.
pub fn tls_acceptor(tls: &ServerTls) -> Result<tokio_rustls::TlsAcceptor, BuildError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    crate::delivery::install_crypto_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| BuildError(format!("`tls.cert` {}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(BuildError(format!(
            "`tls.cert` {}: no certificate in the file",
            tls.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| BuildError(format!("`tls.key` {}: {e}", tls.key.display())))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| BuildError(format!("`tls`: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
