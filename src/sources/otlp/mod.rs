//! `otlp`: OpenTelemetry's protocol in, over HTTP (protobuf or JSON, `/v1/logs`,
//! `/v1/metrics`, `/v1/traces`) and gRPC (the three `Export` services), both on one
//! address: HTTP/2 connections (gRPC's) are told apart by their preface.
//!
//! Each log record becomes an event on the source's default output, each metric data
//! point one on `<id>.metrics`, each span one on `<id>.traces` (the fields are in
//! `crate::otlp`). A request is authenticated before its body is read, bounded
//! (compressed and decompressed size, items), decoded off the async workers a few at a
//! time, and answered once its events were delivered, as the webhook source does:
//! - all delivered (or still in the pipeline at `request_timeout`): success (200 / OK);
//! - some refused for good by a sink: success with `partial_success` counting them, as
//!   OTLP defines; all refused: 400 / `INVALID_ARGUMENT`, which senders do not retry;
//! - the pipeline full, a sink failing, the source stopping: 503 / `UNAVAILABLE`, which
//!   senders retry;
//! - a malformed body: 400 / `INVALID_ARGUMENT` naming the problem; over a limit: 413
//!   (HTTP) or `INVALID_ARGUMENT`; failed authentication: 401 / `UNAUTHENTICATED`;
//! - a body (or gRPC message) slower than `read_timeout`: 408 / `DEADLINE_EXCEEDED`.
//!
//! Before a body is decoded, its protobuf is scanned (`crate::otlp::scan`): more items
//! than `max_events_per_request`, or more bytes than 4 × `max_body_bytes` once every
//! item has its copy of the resource and scope, refuse it, so a small body cannot stand
//! for a large memory.
//!
//! A request's events are handed to the pipeline as one batch. One limit remains, shared
//! with the other sources that answer their senders: when the components reading this
//! source are full past `request_timeout` while the batch is being handed over, some of
//! them may have taken it and others not; the answer is then 503, and a resend may
//! duplicate what was taken (at-least-once, never a loss).

mod grpc;
mod http;
mod signal;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use vrl::value::Value;

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SourceConfig, SourceContext,
};
use crate::net::{ServerAuth, ServerTls};
use crate::sources::util::handover::{Handed, Intake};
use crate::sources::util::server;
use signal::Signal;

/// Takes OTLP logs, metrics and traces over HTTP and gRPC. Log records go to the
/// default output (`message`, `attributes`, `resources`, `scope`, `severity_text`,
/// `severity_number`, `timestamp`, `trace_id`, `span_id`, …), metric data points to
/// `<id>.metrics` (`name`, `type`, `value` or the histogram's fields, `attributes`, …),
/// spans to `<id>.traces` (`name`, `kind`, `trace_id`, `span_id`, `parent_span_id`,
/// `status`, `events`, `links`, …).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OtlpSourceConfig {
    /// `host:port` to listen on, for OTLP/HTTP and OTLP/gRPC alike (OpenTelemetry's
    /// ports are 4318 for HTTP and 4317 for gRPC; point both kinds of exporter here).
    pub(crate) address: String,
    /// Requests must authenticate (`Authorization: Bearer …` or Basic, as an OTLP
    /// exporter's `headers` send it). Unset: anyone who reaches the address may send.
    pub(crate) auth: Option<ServerAuth>,
    /// Serve HTTPS (and gRPC over TLS) with this certificate and key.
    pub(crate) tls: Option<ServerTls>,
    /// Largest body, compressed and again once decompressed (default 4 MiB; 413 or
    /// `INVALID_ARGUMENT` above it).
    #[serde(default = "default_max_body_bytes")]
    pub(crate) max_body_bytes: usize,
    /// Most log records, data points or spans in one request (default 10000); a request
    /// over it is refused whole, before it is decoded. A request whose items, each with
    /// its copy of the resource and scope, would take more than 4 × `max_body_bytes` is
    /// refused too.
    #[serde(default = "default_max_events")]
    pub(crate) max_events_per_request: usize,
    /// Requests decoded at once (default 4); others wait for their turn within
    /// `request_timeout`, then get 503 / `UNAVAILABLE`, which exporters retry.
    #[serde(default = "default_max_concurrent")]
    pub(crate) max_concurrent_requests: usize,
    /// How long a request may wait for room in the pipeline and for its events to be
    /// delivered (default 10s); after it, a request whose events entered the pipeline
    /// is answered success (they are on their way), one whose events could not, 503.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub(crate) request_timeout: Duration,
    /// Longest time a client may take to send a request's headers, and then its body
    /// (default 10s; 408 when the body is late).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub(crate) read_timeout: Duration,
}

fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_events() -> usize {
    10_000
}
fn default_max_concurrent() -> usize {
    4
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl SourceConfig for OtlpSourceConfig {
    fn type_name(&self) -> &'static str {
        "otlp"
    }

    fn listen_address(&self) -> Option<&str> {
        Some(&self.address)
    }

    fn outputs(&self) -> Vec<String> {
        // In the order of `signal::METRICS_OUTPUT` and `signal::TRACES_OUTPUT`.
        vec!["metrics".into(), "traces".into()]
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        self.tls
            .iter()
            .flat_map(|t| [t.cert.clone(), t.key.clone()])
            .collect()
    }

    fn check(&self) -> Result<(), BuildError> {
        self.server().check()
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let bound = server::bind(cx, &self.server(), self.request_timeout)?;
            let receiver = Arc::new(Receiver {
                config: self.clone(),
                stopping: bound.shutdown.clone(),
                intake: bound.intake,
                decoding: Arc::new(tokio::sync::Semaphore::new(self.max_concurrent_requests)),
            });
            let task = run(receiver, bound.listener, bound.tls, bound.shutdown);
            Ok(Box::pin(task) as ComponentTask)
        })
    }
}

impl OtlpSourceConfig {
    fn server(&self) -> server::ServerOptions<'_> {
        server::ServerOptions {
            address: &self.address,
            example: "0.0.0.0:4318",
            auth: self.auth.as_ref(),
            tls: self.tls.as_ref(),
            limits: vec![
                self.max_body_bytes,
                self.max_events_per_request,
                self.max_concurrent_requests,
            ],
            timeouts: vec![self.request_timeout, self.read_timeout],
        }
    }
}

/// Event bytes a request may copy per byte of `max_body_bytes` (its resource and scope
/// go into every one of its events).
const MAX_EXPANSION: usize = 4;

/// Refuses a request whose items or copies would pass the limits, before it is
/// decoded; the reason names the option.
fn admit(
    config: &OtlpSourceConfig,
    cost: crate::otlp::scan::Cost,
    items: &str,
) -> Result<(), String> {
    let most = config.max_events_per_request;
    if cost.items > most {
        return Err(format!(
            "the request has {} {items}; this source takes at most {most} (max_events_per_request)",
            cost.items
        ));
    }
    let budget = config.max_body_bytes.saturating_mul(MAX_EXPANSION);
    if cost.copied > budget {
        return Err(format!(
            "the request's {items} would copy {} bytes of resource, scope and item data; at most {budget} (4 × max_body_bytes): send smaller batches or fewer resource attributes",
            cost.copied
        ));
    }
    Ok(())
}

/// What every request of one running source shares.
pub(super) struct Receiver {
    config: OtlpSourceConfig,
    /// Cancelled when the source stops: events still on their way may then be dropped
    /// at the drain deadline, so their senders are told to send again.
    stopping: CancellationToken,
    intake: Intake,
    /// Turns to decode: bounds the memory requests in flight take.
    decoding: Arc<tokio::sync::Semaphore>,
}

/// What became of a request, in terms both transports answer in.
pub(super) enum Outcome<R> {
    /// Taken (with the rejected count inside the response, when any).
    Accepted(R),
    /// Worth sending again later (503 / `UNAVAILABLE`).
    Unavailable(String),
    /// Never worth sending again (400 / `INVALID_ARGUMENT`).
    Refused(String),
    /// Over a limit (413 / `INVALID_ARGUMENT`).
    TooLarge(String),
}

impl Receiver {
    /// Turns a decoded request into events, off the async workers.
    async fn events<R: Signal>(&self, request: R) -> Result<Vec<Value>, Outcome<R::Response>> {
        let n = request.items();
        let most = self.config.max_events_per_request;
        if n > most {
            return Err(Outcome::TooLarge(format!(
                "the request has {n} {}; this source takes at most {most} (max_events_per_request)",
                R::ITEMS
            )));
        }
        tokio::task::spawn_blocking(move || request.into_events())
            .await
            .map_err(|e| Outcome::Unavailable(format!("decoding failed: {e}")))
    }

    /// Hands a request's events to the pipeline and says what became of them.
    async fn deliver<R: Signal>(&self, events: Vec<Value>) -> Outcome<R::Response> {
        let n = events.len();
        let (handed, rejected) = self
            .intake
            .take_counted(R::OUTPUT, events, &self.stopping)
            .await;
        if handed == Handed::Pending && self.stopping.is_cancelled() {
            return Outcome::Unavailable(
                "the source is stopping before the events were delivered: send them again".into(),
            );
        }
        match handed {
            Handed::Delivered | Handed::Pending | Handed::Rejected if rejected == 0 => {
                Outcome::Accepted(R::response(0, String::new()))
            }
            Handed::Delivered | Handed::Pending | Handed::Rejected if rejected as usize >= n => {
                Outcome::Refused(format!(
                    "a sink refused all {n} {} for good (see its dead_letter output)",
                    R::ITEMS
                ))
            }
            Handed::Delivered | Handed::Pending | Handed::Rejected => {
                Outcome::Accepted(R::response(
                    i64::try_from(rejected).unwrap_or(i64::MAX),
                    format!(
                        "{rejected} of the {n} {} were refused for good by a sink (see its dead_letter output)",
                        R::ITEMS
                    ),
                ))
            }
            Handed::Failed => Outcome::Unavailable(format!(
                "a sink failed to deliver the {}: send them again",
                R::ITEMS
            )),
            Handed::Full => Outcome::Unavailable("the pipeline is full: send again later".into()),
            Handed::Stopped => Outcome::Unavailable("the source is stopping".into()),
        }
    }
}

/// A body as the events it makes (for fuzzing): `signal` 0 logs, 1 metrics, 2 traces.
pub(crate) fn body_events(
    signal: u8,
    json: bool,
    gzip: bool,
    body: &[u8],
    most: usize,
) -> Result<Vec<Value>, String> {
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    };
    let encoding = if json {
        http::Encoding::Json
    } else {
        http::Encoding::Protobuf
    };
    fn events<R: Signal>(
        body: &[u8],
        gzip: bool,
        encoding: http::Encoding,
        most: usize,
    ) -> Result<Vec<Value>, String> {
        let config: OtlpSourceConfig = serde_json::from_value(serde_json::json!({
            "address": "127.0.0.1:4318", "max_body_bytes": most
        }))
        .map_err(|e| e.to_string())?;
        http::decode::<R>(body, gzip, encoding, &config)
            .map(Signal::into_events)
            .map_err(|(_, m)| m)
    }
    match signal % 3 {
        0 => events::<ExportLogsServiceRequest>(body, gzip, encoding, most),
        1 => events::<ExportMetricsServiceRequest>(body, gzip, encoding, most),
        _ => events::<ExportTraceServiceRequest>(body, gzip, encoding, most),
    }
}

async fn run(
    receiver: Arc<Receiver>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) -> Result<(), ComponentError> {
    let options = crate::net::http_server::ServerOptions {
        header_read_timeout: Some(receiver.config.read_timeout),
        tls,
        max_connections: None,
        http2: true,
    };
    let app = http::routes(&receiver).merge(grpc::routes(&receiver));
    crate::net::http_server::serve_with(listener, app, shutdown, options)
        .await
        .map_err(ComponentError::Io)?;
    receiver.intake.close().await;
    Ok(())
}
