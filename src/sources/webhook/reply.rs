//! Responses. Every error body is JSON: `{"error": …}`, plus `decoder` and `path` when a
//! decoder rejected the payload, so a sender's logs say what to fix.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A request turned away before its events entered the pipeline.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub(crate) status: StatusCode,
    /// The `reason` label of the rejected-requests metric.
    pub reason: &'static str,
    pub message: String,
    pub(crate) decoder: Option<Box<str>>,
    pub(crate) path: Option<Box<str>>,
    pub(crate) retry_after: Option<u32>,
    /// `WWW-Authenticate` for a 401.
    pub(crate) challenge: Option<&'static str>,
}

impl Rejection {
    pub(crate) fn new(
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            decoder: None,
            path: None,
            retry_after: None,
            challenge: None,
        }
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized")
    }

    pub(crate) fn busy(message: impl Into<String>) -> Self {
        let mut r = Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message);
        r.retry_after = Some(1);
        r
    }

    /// A payload the decoder could not read.
    pub(crate) fn malformed(
        decoder: &str,
        path: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        let mut r = Self::new(StatusCode::BAD_REQUEST, "malformed", message);
        r.decoder = Some(decoder.into());
        r.path = path.map(Into::into);
        r
    }

    pub(crate) fn into_response(self, request_id: &HeaderValue) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.message.into());
        if let Some(d) = self.decoder {
            body.insert("decoder".into(), String::from(d).into());
        }
        if let Some(p) = self.path {
            body.insert("path".into(), String::from(p).into());
        }
        let mut response = json(self.status, serde_json::Value::Object(body).to_string());
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(c) = self.challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        response
            .headers_mut()
            .insert("x-request-id", request_id.clone());
        response
    }
}

/// 200 with the number of events accepted.
pub(crate) fn accepted(n: usize, request_id: &HeaderValue) -> Response {
    let mut r = json(StatusCode::OK, format!("{{\"accepted\":{n}}}"));
    r.headers_mut().insert("x-request-id", request_id.clone());
    r
}

/// 202: every event entered the pipeline, which goes on delivering them (with its own
/// retries and dead letter); the sender must not send them again.
pub(crate) fn pending(n: usize, request_id: &HeaderValue) -> Response {
    let mut r = json(
        StatusCode::ACCEPTED,
        format!(
            "{{\"accepted\":{n},\"delivered\":false,\"message\":\"all events are in the pipeline; their delivery outlasted request_timeout and continues\"}}"
        ),
    );
    r.headers_mut().insert("x-request-id", request_id.clone());
    r
}

/// 200 for an SNS message accepted before: nothing is sent again.
pub(crate) fn duplicate(request_id: &HeaderValue) -> Response {
    let mut r = json(StatusCode::OK, "{\"accepted\":0,\"duplicate\":true}".into());
    r.headers_mut().insert("x-request-id", request_id.clone());
    r
}

fn json(status: StatusCode, body: String) -> Response {
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
