//! The loop of an HTTP sink: batch, send with bounded concurrency and a rate limit,
//! retry, settle or dead-letter, and hand over to a replacement.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use indexmap::IndexMap;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::batches::{PartitionKey, Pending, Sizes};
use super::dead_letter::{DeadLetter, Failure};
use super::encoded_events::EncodedEvents;
use super::{BatchConfig, RequestConfig};
use crate::clock::Clock;
use crate::component::{BoxFuture, ComponentError, SinkContext, delivered};
use crate::event::{Event, EventBatch};
use crate::net::{Backoff, FailureHandling, Pause, Retryable, classify_status, error_chain};

/// One HTTP request, ready to send (and to send again).
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    pub(crate) method: reqwest::Method,
    /// Parsed once, when the sink is built (or when a per-event URL is rendered), not
    /// again for every attempt.
    pub(crate) url: reqwest::Url,
    pub(crate) headers: HeaderMap,
    pub body: Bytes,
}

impl EncodedRequest {
    /// The POST of a sink whose API takes one event per request (`max_events` 1): the
    /// batch's only event as the body.
    pub(crate) fn single_event_post(url: &reqwest::Url, events: EncodedEvents) -> Self {
        let body = events.into_first();
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        Self {
            method: reqwest::Method::POST,
            url: url.clone(),
            headers,
            body: Bytes::from(body),
        }
    }
}

/// What a response means for the events it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Permanent {
        reason: String,
    },
}

/// What a sink type decides; the driver does everything else.
pub trait HttpEncoder: Send + Sync + 'static {
    /// Events with the same key may share a request (the rendered URL, a routing key).
    fn partition(&self, _event: &Event) -> Result<String, String> {
        Ok(String::new())
    }
    /// Appends one event's bytes in the request body to `out`, which holds the events
    /// before it in the batch (on `Err`, what was appended is taken back).
    fn encode_into(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String>;
    /// One event's bytes on their own.
    fn encode_event(&self, event: &Event) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        self.encode_into(event, &mut out)?;
        Ok(out)
    }
    /// The request carrying these encoded events (framing, compression, headers).
    fn build_request(
        &self,
        partition: &str,
        events: EncodedEvents,
    ) -> Result<EncodedRequest, String>;
    /// Most events one request may carry whatever `batch.max_events` says.
    fn max_events(&self) -> usize {
        usize::MAX
    }
    /// What a response means. The default: 2xx delivered; 408, 429, 5xx retried
    /// (honouring `Retry-After`); anything else permanent.
    fn verdict(&self, status: u16, headers: &HeaderMap, body: &str) -> Verdict {
        default_verdict(status, headers, body)
    }
    /// Sends a request itself instead of through the driver's HTTP client (another
    /// protocol, such as gRPC, or an answer that must be read as bytes). `None` (the
    /// default): the driver sends it and asks [`HttpEncoder::verdict`].
    fn send(&self, _request: &EncodedRequest) -> Option<BoxFuture<'static, Sent>> {
        None
    }
}

/// What became of a request an encoder sent itself.
#[derive(Debug, Clone)]
pub struct Sent {
    pub verdict: Verdict,
    /// The status the peer answered with, if it answered (for the dead letter).
    pub status: Option<u16>,
    /// What of the answer is kept for the dead letter.
    pub body: Option<String>,
}

/// What of an endpoint's answer is read (for the verdict and the dead letter).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// HTTP status classes as [`HttpEncoder::verdict`] documents.
pub fn default_verdict(status: u16, headers: &HeaderMap, body: &str) -> Verdict {
    if (300..400).contains(&status) {
        return Verdict::Permanent {
            reason: format!(
                "HTTP {status}: a redirect (sinks do not follow redirects: configure the URL it points to)"
            ),
        };
    }
    match classify_status(status) {
        Retryable::Success => Verdict::Delivered,
        Retryable::Retry => Verdict::Retry {
            reason: format!("HTTP {status}: {}", first_line(body)),
            retry_after: crate::net::retry_after(headers),
        },
        Retryable::Permanent => Verdict::Permanent {
            reason: format!("HTTP {status}: {}", first_line(body)),
        },
    }
}

fn first_line(body: &str) -> &str {
    crate::text::prefix_chars(body.lines().next().unwrap_or("").trim(), 200)
}

/// Everything a network sink needs besides its encoder.
pub struct HttpSinkParts {
    pub(crate) client: reqwest::Client,
    pub(crate) batch: BatchConfig,
    pub(crate) failure: FailureHandling,
    pub(crate) request: RequestConfig,
    /// OAuth2: each attempt carries `Authorization: Bearer <token>`; a 401 refreshes the
    /// token and retries once at once.
    pub(crate) oauth2: Option<Arc<crate::net::TokenSource>>,
}

/// TLS options of a network sink.
pub struct Tls<'a> {
    pub(crate) verify: bool,
    pub(crate) ca_file: Option<&'a std::path::Path>,
}

impl HttpSinkParts {
    /// Builds the client (and the OAuth2 token source) from a sink's options.
    pub(crate) fn new(
        tls: Tls<'_>,
        batch: BatchConfig,
        failure: FailureHandling,
        request: RequestConfig,
        oauth2: Option<&crate::net::OAuth2Config>,
        clock: &Arc<dyn Clock>,
    ) -> Result<Self, crate::component::BuildError> {
        let build = crate::component::BuildError;
        let client = crate::net::http_client(
            tls.verify,
            tls.ca_file,
            request.timeout,
            crate::net::Redirects::Refuse,
        )
        .map_err(build)?;
        let oauth2 = oauth2
            .map(|o| {
                crate::net::TokenSource::new(o.clone(), Arc::clone(clock), request.timeout)
                    .map(Arc::new)
            })
            .transpose()
            .map_err(build)?;
        Ok(Self {
            client,
            batch,
            failure,
            request,
            oauth2,
        })
    }
}

enum Outcome {
    /// With the bytes of the request body that was accepted.
    Delivered(usize),
    Failed(Failure),
}

/// The task of a sink that sends each event in a request of its own, with the default
/// batching and no OAuth2 (PagerDuty, Slack, Teams, Opsgenie).
pub(crate) fn single_event_task<E: HttpEncoder>(
    encoder: E,
    verify: bool,
    failure: FailureHandling,
    request: RequestConfig,
    cx: SinkContext,
) -> Result<crate::component::ComponentTask, crate::component::BuildError> {
    let tls = Tls {
        verify,
        ca_file: None,
    };
    let parts = HttpSinkParts::new(
        tls,
        BatchConfig::default(),
        failure,
        request,
        None,
        &cx.clock,
    )?;
    Ok(Box::pin(run_http_sink(Arc::new(encoder), parts, cx)))
}

/// Runs a network sink until its input is drained (or it is replaced).
pub async fn run_http_sink<E: HttpEncoder>(
    encoder: Arc<E>,
    parts: HttpSinkParts,
    mut cx: SinkContext,
) -> Result<(), ComponentError> {
    let clock = Arc::clone(&cx.clock);
    let dead_letter = DeadLetter::new(
        Arc::clone(&cx.id),
        cx.outputs.first().cloned(),
        Arc::clone(&cx.metrics),
    );
    let limiter = parts.request.rate_limit.map(|r| {
        let period = Duration::from_secs_f64(1.0 / r.per_second);
        let burst = NonZeroU32::new(r.burst.unwrap_or(1).max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Arc::new(RateLimiter::direct(quota))
    });
    let max_events = parts.batch.max_events.min(encoder.max_events()).max(1);
    let stop = cx.input.stop_token();

    let mut partitions: IndexMap<PartitionKey, Pending> = IndexMap::new();
    let mut ready: VecDeque<(PartitionKey, Pending)> = VecDeque::new();
    let mut in_flight: FuturesUnordered<BoxFuture<'static, (u64, Outcome)>> =
        FuturesUnordered::new();
    let mut held: HashMap<u64, Vec<Event>> = HashMap::new();
    let mut next_id: u64 = 0;
    let mut input_open = true;
    let mut last = Sizes::default();

    loop {
        // Start what can start.
        while in_flight.len() < parts.request.concurrency {
            let Some((partition, pending)) = ready.pop_front() else {
                break;
            };
            last = Sizes {
                events: pending.events.len(),
                bytes: pending.encoded.byte_len(),
            };
            match encoder.build_request(&partition.0, pending.encoded) {
                Ok(request) => {
                    next_id += 1;
                    held.insert(next_id, pending.events);
                    in_flight.push(Box::pin(deliver(
                        next_id,
                        parts.client.clone(),
                        Arc::clone(&encoder),
                        request,
                        parts.failure,
                        Arc::clone(&clock),
                        limiter.clone(),
                        parts.oauth2.clone(),
                        Arc::clone(&cx.id),
                    )));
                }
                Err(error) => {
                    let failure = Failure {
                        error,
                        status: None,
                        attempts: 0,
                        body: None,
                    };
                    dead_letter.send(pending.events, &failure).await;
                }
            }
        }
        if !input_open && partitions.is_empty() && ready.is_empty() && in_flight.is_empty() {
            return Ok(());
        }

        let deadline = partitions
            .values()
            .map(|p| p.since + parts.batch.timeout)
            .min();
        let room = ready.is_empty() && in_flight.len() < parts.request.concurrency;
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                // Replaced: give back everything not delivered yet, in order.
                drop(in_flight);
                let mut ids: Vec<u64> = held.keys().copied().collect();
                ids.sort_unstable();
                let mut back: Vec<EventBatch> = ids.into_iter().filter_map(|id| held.remove(&id)).collect();
                back.extend(ready.drain(..).map(|(_, p)| p.events));
                back.extend(partitions.drain(..).map(|(_, p)| p.events));
                for batch in back {
                    cx.input.hand_back(batch);
                }
                return Ok(());
            }
            Some((id, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                let events = held.remove(&id).unwrap_or_default();
                match outcome {
                    Outcome::Delivered(bytes) => {
                        cx.metrics.add_sent_bytes(bytes);
                        delivered(&cx.metrics, events);
                    }
                    Outcome::Failed(failure) => dead_letter.send(events, &failure).await,
                }
            }
            batch = cx.input.recv(), if input_open && room => {
                match batch {
                    Some(batch) => {
                        cx.metrics.add_received(batch.len());
                        for event in batch {
                            if let Err(refused) = add(event, &*encoder, &mut partitions, &mut ready, max_events, parts.batch.max_bytes, last) {
                                let (event, failure) = *refused;
                                dead_letter.send(vec![event], &failure).await;
                            }
                        }
                    }
                    None => {
                        if stop.is_cancelled() {
                            continue;
                        }
                        input_open = false;
                        ready.extend(partitions.drain(..));
                    }
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                let now = Instant::now();
                let due: Vec<PartitionKey> = partitions
                    .iter()
                    .filter(|(_, p)| p.since + parts.batch.timeout <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in due {
                    if let Some(p) = partitions.shift_remove(&key) {
                        ready.push_back((key, p));
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Adds an event to its partition's batch, encoded at the end of the batch's buffer; an
/// event that cannot be encoded comes back with why, for the dead letter. Not `async`:
/// a future per event would copy each event into it.
fn add<E: HttpEncoder>(
    event: Event,
    encoder: &E,
    partitions: &mut IndexMap<PartitionKey, Pending>,
    ready: &mut VecDeque<(PartitionKey, Pending)>,
    max_events: usize,
    max_bytes: usize,
    last: Sizes,
) -> Result<(), Box<(Event, Failure)>> {
    let refused = |event, error| {
        let failure = Failure {
            error,
            status: None,
            attempts: 0,
            body: None,
        };
        Box::new((event, failure))
    };
    let key = match encoder.partition(&event) {
        Ok(key) => PartitionKey(key),
        Err(error) => return Err(refused(event, error)),
    };
    // One lookup per event in the usual case: the partition exists and has room.
    let mut index = match partitions.get_index_of(&key) {
        Some(i) => i,
        None => {
            let room = last.room(partitions.is_empty(), max_events, max_bytes);
            partitions.insert_full(key, Pending::new(room)).0
        }
    };
    let pending = &mut partitions[index];
    if let Err(error) = pending
        .encoded
        .push_with(|out| encoder.encode_into(&event, out))
    {
        if pending.events.is_empty() {
            partitions.shift_remove_index(index);
        }
        return Err(refused(event, error));
    }
    // A batch that would grow past max_bytes goes first; this event starts the next.
    if !pending.events.is_empty() && pending.encoded.byte_len() > max_bytes {
        let bytes = pending.encoded.pop().unwrap_or_default();
        if let Some((key, full)) = partitions.shift_remove_index(index) {
            let mut next = Pending::new(last.room(partitions.is_empty(), max_events, max_bytes));
            let _ = next.encoded.push_with(|out| {
                out.extend_from_slice(&bytes);
                Ok::<(), ()>(())
            });
            index = partitions.insert_full(key.clone(), next).0;
            ready.push_back((key, full));
        }
    }
    let pending = &mut partitions[index];
    pending.events.push(event);
    if pending.events.len() >= max_events {
        ready.extend(partitions.shift_remove_index(index));
    }
    Ok(())
}

/// Sends one request until it succeeds, fails for good, or retries run out.
#[allow(clippy::too_many_arguments)]
async fn deliver<E: HttpEncoder>(
    id: u64,
    client: reqwest::Client,
    encoder: Arc<E>,
    request: EncodedRequest,
    policy: FailureHandling,
    clock: Arc<dyn Clock>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    oauth2: Option<Arc<crate::net::TokenSource>>,
    sink: Arc<str>,
) -> (u64, Outcome) {
    let mut backoff = Backoff::new(policy);
    let mut attempts = 0u32;
    let mut refreshed = false;
    loop {
        if let Some(l) = &limiter {
            l.until_ready().await;
        }
        attempts += 1;
        if let Some(sending) = encoder.send(&request) {
            let sent = sending.await;
            match settle_attempt(sent, &request, attempts, &mut backoff, &*clock, &sink).await {
                Some(outcome) => return (id, outcome),
                None => continue,
            }
        }
        let mut builder = client
            .request(request.method.clone(), request.url.clone())
            .headers(request.headers.clone())
            .body(request.body.clone());
        let mut token = None;
        if let Some(source) = &oauth2 {
            match source.token().await {
                Ok(t) => {
                    builder = builder.bearer_auth(&t);
                    token = Some(t);
                }
                Err(reason) => {
                    // The token endpoint may be down like any other: retry.
                    let reason = crate::redact::redact(&reason).into_owned();
                    let pause = backoff.pause(None, &*clock, None, |wait| {
                        tracing::warn!(component_id = %sink, error = %reason, wait = ?wait, "no OAuth2 token; retrying");
                    });
                    if pause.await == Pause::Retry {
                        continue;
                    }
                    let failure = Failure::gave_up(attempts, &reason, None, None);
                    return (id, Outcome::Failed(failure));
                }
            }
        }
        let sent = builder.send().await;
        if let (Ok(response), Some(source), Some(t)) = (&sent, &oauth2, &token)
            && response.status() == reqwest::StatusCode::UNAUTHORIZED
            && !refreshed
        {
            // The token was revoked or expired early: fetch a new one and retry at once.
            tracing::info!(component_id = %sink, "401 with a cached OAuth2 token; refreshing it");
            source.invalidate(t).await;
            refreshed = true;
            continue;
        }
        let (verdict, status, body) = match sent {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = crate::net::excerpt(&mut response, MAX_RESPONSE_BODY).await;
                (
                    encoder.verdict(status, &headers, &body),
                    Some(status),
                    Some(body),
                )
            }
            // A request that cannot be built, or a certificate the server will keep
            // presenting, will not get better by retrying.
            // The URL is left out: it may be the secret (a Slack webhook).
            Err(e) if e.is_builder() || crate::net::is_certificate_error(&e) => (
                Verdict::Permanent {
                    reason: error_chain(&e.without_url()),
                },
                None,
                None,
            ),
            Err(e) => (
                Verdict::Retry {
                    reason: error_chain(&e.without_url()),
                    retry_after: None,
                },
                None,
                None,
            ),
        };
        let sent = Sent {
            verdict,
            status,
            body,
        };
        if let Some(outcome) =
            settle_attempt(sent, &request, attempts, &mut backoff, &*clock, &sink).await
        {
            return (id, outcome);
        }
    }
}

/// What one attempt's answer means: the request's outcome, or `None` after the pause
/// before the next attempt.
async fn settle_attempt(
    sent: Sent,
    request: &EncodedRequest,
    attempts: u32,
    backoff: &mut Backoff,
    clock: &dyn Clock,
    sink: &str,
) -> Option<Outcome> {
    let Sent {
        verdict,
        status,
        body,
    } = sent;
    match verdict {
        Verdict::Delivered => Some(Outcome::Delivered(request.body.len())),
        Verdict::Permanent { reason } => {
            let reason = crate::redact::redact(&reason).into_owned();
            Some(Outcome::Failed(Failure {
                error: reason,
                status,
                attempts,
                body,
            }))
        }
        Verdict::Retry {
            reason,
            retry_after,
        } => {
            let reason = crate::redact::redact(&reason).into_owned();
            let pause = backoff.pause(retry_after, clock, None, |wait| {
                tracing::warn!(component_id = %sink, attempt = attempts, error = %reason, wait = ?wait, "delivery failed; retrying");
            });
            if pause.await == Pause::Retry {
                None
            } else {
                let failure = Failure::gave_up(attempts, &reason, status, body);
                Some(Outcome::Failed(failure))
            }
        }
    }
}
