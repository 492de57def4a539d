//! `webhook`: JSON events POSTed over HTTP.
//!
//! The body is one JSON object, an array of them, or NDJSON (any whitespace-separated
//! sequence of JSON values). The request is answered only once its events are settled:
//! 200 when all were delivered, 503 (retry) when one errored, 500 when one was rejected,
//! 400 naming the problem for a body that is not JSON, 413 for a body over the limit,
//! and 503 with `Retry-After` when the pipeline stays full for `request_timeout`.
//!
//! Invariant: the listener is bound while building, so a port in use stops the pipeline
//! from starting; on shutdown the listener closes first and in-flight requests still get
//! their answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use serde::Deserialize;
use tokio::sync::Mutex;
use vrl::value::Value;

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SourceConfig, SourceContext, SourceOutput,
};
use crate::event::{BatchAck, Event, EventStatus};
use crate::telemetry::{ComponentMetrics, LatencyRecorder};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `host:port` to listen on.
    pub address: String,
    /// Path that accepts POSTs.
    #[serde(default = "default_path")]
    pub path: String,
    /// Largest accepted body.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long a request may wait for room in the pipeline and for its events to be
    /// delivered before it is answered 503.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

fn default_path() -> String {
    "/".into()
}

fn default_max_body_bytes() -> usize {
    10 * 1024 * 1024
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

struct Shared {
    id: Arc<str>,
    out: Mutex<SourceOutput>,
    metrics: Arc<ComponentMetrics>,
    latency: Arc<LatencyRecorder>,
    timeout: Duration,
}

impl SourceConfig for WebhookConfig {
    fn type_name(&self) -> &'static str {
        "webhook"
    }

    fn listen_address(&self) -> Option<&str> {
        Some(&self.address)
    }

    fn check(&self) -> Result<(), BuildError> {
        if !self.path.starts_with('/') {
            return Err(BuildError(format!(
                "`path` must start with `/`, got `{}`",
                self.path
            )));
        }
        if self.max_body_bytes == 0 {
            return Err(BuildError("`max_body_bytes` must be above zero".into()));
        }
        Ok(())
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check()?;
            let listener = cx
                .listeners
                .bind(&self.address)
                .map_err(|e| BuildError(format!("cannot listen on {}: {e}", self.address)))?;
            let local: SocketAddr = listener
                .local_addr()
                .map_err(|e| BuildError(format!("cannot read the bound address: {e}")))?;
            tracing::info!(component_id = %cx.id, address = %local, path = %self.path, "webhook listening");

            let shared = Arc::new(Shared {
                id: Arc::clone(&cx.id),
                out: Mutex::new(cx.out),
                metrics: cx.metrics,
                latency: Arc::clone(cx.telemetry.latency()),
                timeout: self.request_timeout,
            });
            let app = Router::new()
                .route(&self.path, post(receive))
                .layer(DefaultBodyLimit::max(self.max_body_bytes))
                .with_state(shared);
            let shutdown = cx.shutdown;
            Ok(Box::pin(async move {
                super::http_server::serve(listener, app, shutdown)
                    .await
                    .map_err(ComponentError::Io)
            }) as ComponentTask)
        })
    }
}

async fn receive(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let values = match decode_body(&body) {
        Ok(v) => v,
        Err(reason) => {
            shared.metrics.add_errors(1);
            tracing::debug!(component_id = %shared.id, %reason, "rejected request body");
            return answer(StatusCode::BAD_REQUEST, &reason);
        }
    };
    let n = values.len();
    if n == 0 {
        return accepted(0);
    }
    let now = Utc::now();
    let (ack, done) = BatchAck::with_receiver(n, Some(Arc::clone(&shared.latency)));
    let batch: Vec<Event> = values
        .into_iter()
        .map(|v| Event::new(v, Arc::clone(&shared.id), now).with_ack(ack.event_ack()))
        .collect();
    drop(ack);
    shared.metrics.add_received(n);

    let deadline = tokio::time::Instant::now() + shared.timeout;
    let send = async {
        let mut out = shared.out.lock().await;
        out.send(batch).await;
    };
    if tokio::time::timeout_at(deadline, send).await.is_err() {
        shared.metrics.add_errors(n);
        return busy("the pipeline is full; retry later");
    }
    match tokio::time::timeout_at(deadline, done.wait()).await {
        Ok(EventStatus::Delivered) => accepted(n),
        Ok(EventStatus::Errored) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "delivery failed; retry later",
        ),
        Ok(EventStatus::Rejected) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a sink rejected the events",
        ),
        Err(_) => busy("delivery did not complete in time; retry later"),
    }
}

/// Decodes a request body into event values.
pub fn decode_body(body: &[u8]) -> Result<Vec<Value>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("empty body: expected a JSON object, an array of objects or NDJSON".into());
    }
    let mut values = Vec::new();
    for item in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        match item {
            Ok(Value::Array(items)) => values.extend(items),
            Ok(v) => values.push(v),
            Err(e) => {
                return Err(format!(
                    "invalid JSON at line {} column {}: {}",
                    e.line(),
                    e.column(),
                    e
                ));
            }
        }
    }
    Ok(values)
}

fn accepted(n: usize) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        format!("{{\"accepted\":{n}}}"),
    )
        .into_response()
}

fn answer(status: StatusCode, reason: &str) -> Response {
    let body = serde_json::json!({ "error": reason }).to_string();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn busy(reason: &str) -> Response {
    let mut r = answer(StatusCode::SERVICE_UNAVAILABLE, reason);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

#[cfg(test)]
mod tests {
    use super::decode_body;

    #[test]
    fn object_array_and_ndjson() {
        assert_eq!(decode_body(br#"{"a":1}"#).expect("object").len(), 1);
        assert_eq!(
            decode_body(br#"[{"a":1},{"a":2}]"#).expect("array").len(),
            2
        );
        assert_eq!(
            decode_body(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n")
                .expect("ndjson")
                .len(),
            3
        );
    }

    #[test]
    fn malformed_json_names_the_position() {
        let e = decode_body(b"{\"a\":1}\n{\"a\":").expect_err("truncated");
        assert!(e.starts_with("invalid JSON at line 2 column"), "{e}");
        assert!(
            decode_body(b"  \n")
                .expect_err("empty")
                .starts_with("empty body")
        );
    }
}
