//! `prometheus_remote_write`: Prometheus pushes samples here (`remote_write`, protocol
//! 1.0: a snappy block of a protobuf `WriteRequest`), and each sample becomes a metric
//! event, the shape `alert_rule` reads.
//!
//! A request is authenticated before its body is read, bounded (compressed and
//! decompressed size, samples), decoded off the async workers, and answered once its
//! events were delivered: 204, or 503 when the pipeline stays full or a sink failed
//! them, which Prometheus retries; a malformed body is answered 400 naming the problem,
//! which Prometheus drops. A request is taken whole or not at all.

mod proto;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SourceConfig, SourceContext,
};
use crate::net::{CHALLENGE, ServerAuth, ServerTls};
use crate::sources::util::handover::{Handed, Intake};
use crate::sources::util::server;
use crate::telemetry::{ErrorType, Stage};

pub(crate) use proto::decode;

/// Takes Prometheus remote-write requests: each sample becomes a metric event.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoteWriteConfig {
    /// `host:port` to listen on (Prometheus's `remote_write.url` is
    /// `http://<address><path>`).
    pub(crate) address: String,
    /// The path Prometheus posts to (default `/api/v1/write`).
    #[serde(default = "default_path")]
    pub(crate) path: String,
    /// Requests must authenticate (Prometheus's `authorization` or `basic_auth`).
    /// Unset: anyone who reaches the address may write.
    pub(crate) auth: Option<ServerAuth>,
    /// Serve HTTPS with this certificate and key.
    pub(crate) tls: Option<ServerTls>,
    /// Largest compressed body (default 4 MiB; 413 above it).
    #[serde(default = "default_max_body_bytes")]
    pub(crate) max_body_bytes: usize,
    /// Largest body once decompressed, and most memory its samples may take as events
    /// (default 16 MiB; 400 above it). Both are checked before anything is allocated
    /// for them: the size on what the body declares, the events on a scan of the wire
    /// format.
    #[serde(default = "default_max_decompressed_bytes")]
    pub(crate) max_decompressed_bytes: usize,
    /// Most samples (and series) in one request (default 50000; Prometheus sends at
    /// most `max_samples_per_send`, 2000 by default). A series may have at most 128
    /// labels.
    #[serde(default = "default_max_samples")]
    pub(crate) max_samples_per_request: usize,
    /// Requests decoded at once (default 4); others wait for their turn within
    /// `request_timeout`, then get 503, which Prometheus retries. With the limits above
    /// it bounds the memory requests take.
    #[serde(default = "default_max_concurrent")]
    pub(crate) max_concurrent_requests: usize,
    /// How long a request may wait for room in the pipeline and for its events to be
    /// delivered; after it, a request whose events entered the pipeline is answered
    /// 204 (they are on their way), one whose events could not enter it 503 (default
    /// 10s).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub(crate) request_timeout: Duration,
    /// Longest time a client may take to send a request's headers, and then again its
    /// body (default 10s; 408 when the body is late).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub(crate) read_timeout: Duration,
}

fn default_path() -> String {
    "/api/v1/write".into()
}
fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_decompressed_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_max_samples() -> usize {
    50_000
}
fn default_max_concurrent() -> usize {
    4
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl SourceConfig for RemoteWriteConfig {
    fn type_name(&self) -> &'static str {
        "prometheus_remote_write"
    }

    fn listen_address(&self) -> Option<&str> {
        Some(&self.address)
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        self.tls
            .iter()
            .flat_map(|t| [t.cert.clone(), t.key.clone()])
            .collect()
    }

    fn check(&self) -> Result<(), BuildError> {
        let plain = |c: char| c.is_ascii_alphanumeric() || "/-._~".contains(c);
        if !self.path.starts_with('/') || !self.path.chars().all(plain) {
            return Err(BuildError(format!(
                "`path` `{}` must start with / and hold only letters, digits and / - . _ ~",
                self.path
            )));
        }
        self.server().check()
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check()?;
            let bound = server::bind(cx, &self.server(), self.request_timeout)?;
            let receiver = Arc::new(Receiver {
                config: self.clone(),
                intake: bound.intake,
                decoding: tokio::sync::Semaphore::new(self.max_concurrent_requests),
            });
            let task = run(receiver, bound.listener, bound.tls, bound.shutdown);
            Ok(Box::pin(task) as ComponentTask)
        })
    }
}

impl RemoteWriteConfig {
    fn server(&self) -> server::ServerOptions<'_> {
        server::ServerOptions {
            address: &self.address,
            example: "0.0.0.0:9201",
            auth: self.auth.as_ref(),
            tls: self.tls.as_ref(),
            limits: vec![
                self.max_body_bytes,
                self.max_decompressed_bytes,
                self.max_samples_per_request,
                self.max_concurrent_requests,
            ],
            timeouts: vec![self.request_timeout, self.read_timeout],
        }
    }
}

/// What every request of one running source shares.
struct Receiver {
    config: RemoteWriteConfig,
    intake: Intake,
    /// Turns to decode: bounds the memory requests in flight take.
    decoding: tokio::sync::Semaphore,
}

async fn run(
    receiver: Arc<Receiver>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) -> Result<(), ComponentError> {
    let path = receiver.config.path.clone();
    let options = crate::net::http_server::ServerOptions {
        header_read_timeout: Some(receiver.config.read_timeout),
        tls,
        max_connections: None,
        http2: false,
    };
    let handler = {
        let receiver = Arc::clone(&receiver);
        move |headers: HeaderMap, body: Body| {
            let receiver = Arc::clone(&receiver);
            async move { receiver.handle(&headers, body).await }
        }
    };
    let app = axum::Router::new().route(&path, axum::routing::post(handler));
    crate::net::http_server::serve_with(listener, app, shutdown, options)
        .await
        .map_err(ComponentError::Io)?;
    receiver.intake.close().await;
    Ok(())
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

impl Receiver {
    async fn handle(&self, headers: &HeaderMap, body: Body) -> Response {
        let config = &self.config;
        if config.auth.as_ref().is_some_and(|a| !a.admits(headers)) {
            self.intake
                .metrics
                .add_errors(1, ErrorType::Request, Stage::Receiving);
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, CHALLENGE)],
            )
                .into_response();
        }
        if let Err(refusal) = check_headers(headers) {
            self.intake
                .metrics
                .add_errors(1, ErrorType::Request, Stage::Receiving);
            return refusal;
        }
        let turn = self.decoding.acquire();
        let Ok(Ok(turn)) = tokio::time::timeout(config.request_timeout, turn).await else {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests in flight (max_concurrent_requests): try again",
            );
        };
        let read = axum::body::to_bytes(body, config.max_body_bytes);
        let bytes = match tokio::time::timeout(config.read_timeout, read).await {
            Err(_) => {
                self.intake
                    .metrics
                    .add_errors(1, ErrorType::Request, Stage::Receiving);
                return answer(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body took longer than read_timeout",
                );
            }
            Ok(Err(_)) => {
                self.intake
                    .metrics
                    .add_errors(1, ErrorType::Request, Stage::Receiving);
                return answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the body is larger than max_body_bytes ({})",
                        config.max_body_bytes
                    ),
                );
            }
            Ok(Ok(bytes)) => bytes,
        };
        self.intake.metrics.add_received_bytes(bytes.len());
        let (max_decompressed, max_samples) = (
            config.max_decompressed_bytes,
            config.max_samples_per_request,
        );
        let decoded = tokio::task::spawn_blocking(move || {
            proto::decode(&bytes, max_decompressed, max_samples)
        })
        .await;
        let decoded = match decoded {
            Ok(Ok(decoded)) => decoded,
            Ok(Err(e)) => {
                self.intake
                    .metrics
                    .add_errors(1, ErrorType::Parse, Stage::Receiving);
                tracing::debug!(component_id = %self.intake.id, error = %e, "remote write refused");
                return answer(StatusCode::BAD_REQUEST, e.to_string());
            }
            Err(e) => {
                tracing::error!(component_id = %self.intake.id, error = %e, "remote write decoding failed");
                return answer(StatusCode::INTERNAL_SERVER_ERROR, "decoding failed");
            }
        };
        // The events are in memory the pipeline's budget accounts for from here.
        drop(turn);
        if decoded.stale > 0 {
            self.intake.metrics.add_discarded(decoded.stale);
        }
        match self.intake.take(decoded.events).await {
            Handed::Delivered | Handed::Pending => StatusCode::NO_CONTENT.into_response(),
            Handed::Full => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the pipeline is full: try again",
            ),
            Handed::Stopped => answer(StatusCode::SERVICE_UNAVAILABLE, "the source is stopping"),
            Handed::Failed => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "a sink failed the samples: try again",
            ),
            Handed::Rejected => answer(StatusCode::BAD_REQUEST, "a sink refused the samples"),
        }
    }
}

/// Remote write 1.0 only: a snappy-compressed protobuf.
#[allow(clippy::result_large_err)]
fn check_headers(headers: &HeaderMap) -> Result<(), Response> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let encoding = text(header::CONTENT_ENCODING);
    if encoding != "snappy" {
        return Err(answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding is `{encoding}`; remote write bodies are snappy"),
        ));
    }
    let content_type = text(header::CONTENT_TYPE);
    if content_type.contains("io.prometheus.write.v2") {
        return Err(answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "remote write 2.0 is not accepted here: send 1.0 (prometheus.WriteRequest)",
        ));
    }
    if !content_type.is_empty() && !content_type.starts_with("application/x-protobuf") {
        return Err(answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type is `{content_type}`; remote write sends application/x-protobuf"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_the_router_would_read_as_a_pattern_is_a_validate_error() {
        let config = |path: &str| -> RemoteWriteConfig {
            serde_json::from_value(serde_json::json!({"address": "127.0.0.1:9201", "path": path}))
                .expect("config")
        };
        for bad in ["/api/*x", "/api/{x}", "/api/:x", "api/v1/write", "/a b"] {
            let err = config(bad).check().expect_err(bad).0;
            assert!(err.contains("`path`"), "{bad}: {err}");
        }
        assert!(config("/api/v1/write").check().is_ok());
        assert!(config("/prometheus/api/v1/push").check().is_ok());
    }
}
