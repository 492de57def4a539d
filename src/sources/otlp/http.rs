//! OTLP/HTTP: `POST /v1/logs`, `/v1/metrics` and `/v1/traces`, with protobuf
//! (`application/x-protobuf`) or JSON (`application/json`) bodies, plain or gzip, each
//! answered in the request's encoding: the export response, or a `google.rpc.Status`
//! naming the problem.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::signal::Signal;
use super::{Outcome, Receiver};
use crate::net::CHALLENGE;
use crate::otlp::RpcStatus;
use crate::telemetry::{ErrorType, Stage};

/// The body's encoding, which the answer's follows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

pub(super) fn routes(receiver: &Arc<Receiver>) -> axum::Router {
    fn route<R: Signal>(receiver: &Arc<Receiver>) -> axum::routing::MethodRouter {
        let receiver = Arc::clone(receiver);
        axum::routing::post(move |headers: HeaderMap, body: Body| {
            let receiver = Arc::clone(&receiver);
            async move { handle::<R>(&receiver, &headers, body).await }
        })
    }
    axum::Router::new()
        .route("/v1/logs", route::<ExportLogsServiceRequest>(receiver))
        .route(
            "/v1/metrics",
            route::<ExportMetricsServiceRequest>(receiver),
        )
        .route("/v1/traces", route::<ExportTraceServiceRequest>(receiver))
}

/// An error answer: `code` is the gRPC code OTLP/HTTP puts in the status body.
fn error(status: StatusCode, encoding: Encoding, code: i32, message: String) -> Response {
    let body = RpcStatus { code, message };
    let bytes = match encoding {
        Encoding::Protobuf => prost::Message::encode_to_vec(&body),
        Encoding::Json => serde_json::to_vec(&body).unwrap_or_default(),
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        bytes,
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

const INVALID_ARGUMENT: i32 = 3;
const UNAUTHENTICATED: i32 = 16;
const UNAVAILABLE: i32 = 14;

fn text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

async fn handle<R: Signal>(receiver: &Receiver, headers: &HeaderMap, body: Body) -> Response {
    let config = &receiver.config;
    let metrics = &receiver.intake.metrics;
    let refused = || metrics.add_errors(1, ErrorType::Request, Stage::Receiving);
    let content_type = text(headers, header::CONTENT_TYPE);
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let encoding = if media == "application/json" {
        Encoding::Json
    } else {
        Encoding::Protobuf
    };
    if config.auth.as_ref().is_some_and(|a| !a.admits(headers)) {
        refused();
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            encoding,
            UNAUTHENTICATED,
            "authentication required".into(),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(CHALLENGE),
        );
        return response;
    }
    if media != "application/x-protobuf" && media != "application/json" {
        refused();
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            encoding,
            INVALID_ARGUMENT,
            format!(
                "Content-Type is `{content_type}`; OTLP/HTTP sends application/x-protobuf or application/json"
            ),
        );
    }
    let gzip = match text(headers, header::CONTENT_ENCODING).as_str() {
        "" | "identity" => false,
        "gzip" => true,
        other => {
            refused();
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                encoding,
                INVALID_ARGUMENT,
                format!("Content-Encoding `{other}` is not taken: send gzip or none"),
            );
        }
    };
    let turn = Arc::clone(&receiver.decoding).acquire_owned();
    let Ok(Ok(turn)) = tokio::time::timeout(config.request_timeout, turn).await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            encoding,
            UNAVAILABLE,
            "too many requests in flight (max_concurrent_requests): send again later".into(),
        );
    };
    let read = axum::body::to_bytes(body, config.max_body_bytes);
    let bytes = match tokio::time::timeout(config.read_timeout, read).await {
        Err(_) => {
            refused();
            return error(
                StatusCode::REQUEST_TIMEOUT,
                encoding,
                INVALID_ARGUMENT,
                "the body took longer than read_timeout".into(),
            );
        }
        Ok(Err(_)) => {
            refused();
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                encoding,
                INVALID_ARGUMENT,
                format!(
                    "the body is larger than max_body_bytes ({})",
                    config.max_body_bytes
                ),
            );
        }
        Ok(Ok(bytes)) => bytes,
    };
    metrics.add_received_bytes(bytes.len());
    let limits = config.clone();
    let decoded =
        tokio::task::spawn_blocking(move || decode::<R>(&bytes, gzip, encoding, &limits)).await;
    let request = match decoded {
        Ok(Ok(request)) => request,
        Ok(Err((status, message))) => {
            metrics.add_errors(1, ErrorType::Parse, Stage::Receiving);
            return error(status, encoding, INVALID_ARGUMENT, message);
        }
        Err(e) => {
            tracing::error!(component_id = %receiver.intake.id, error = %e, "OTLP decoding failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                encoding,
                UNAVAILABLE,
                "decoding failed".into(),
            );
        }
    };
    let events = match receiver.events(request).await {
        Ok(events) => events,
        Err(outcome) => return answer::<R>(outcome, encoding),
    };
    // The events are in memory the pipeline's budget accounts for from here.
    drop(turn);
    answer::<R>(receiver.deliver::<R>(events).await, encoding)
}

fn answer<R: Signal>(outcome: Outcome<R::Response>, encoding: Encoding) -> Response {
    match outcome {
        Outcome::Accepted(response) => {
            let bytes = match encoding {
                Encoding::Protobuf => prost::Message::encode_to_vec(&response),
                Encoding::Json => {
                    // An unset `partialSuccess` is left out rather than written as null.
                    let mut json = serde_json::to_value(&response).unwrap_or_default();
                    if let Some(map) = json.as_object_mut() {
                        map.retain(|_, v| !v.is_null());
                    }
                    serde_json::to_vec(&json).unwrap_or_default()
                }
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, encoding.content_type())],
                bytes,
            )
                .into_response()
        }
        Outcome::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, encoding, UNAVAILABLE, m),
        Outcome::Refused(m) => error(StatusCode::BAD_REQUEST, encoding, INVALID_ARGUMENT, m),
        Outcome::TooLarge(m) => error(StatusCode::PAYLOAD_TOO_LARGE, encoding, INVALID_ARGUMENT, m),
    }
}

/// A body as an export request: gunzipped within `max_body_bytes`, scanned against the
/// limits, then decoded.
pub(super) fn decode<R: Signal>(
    bytes: &[u8],
    gzip: bool,
    encoding: Encoding,
    config: &super::OtlpSourceConfig,
) -> Result<R, (StatusCode, String)> {
    let most = config.max_body_bytes;
    let plain;
    let body = if gzip {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(most as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("the gzip body is corrupt: {e}"),
                )
            })?;
        if out.len() > most {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than max_body_bytes ({most}) once decompressed"),
            ));
        }
        plain = out;
        &plain[..]
    } else {
        bytes
    };
    let not_otlp = |e: String| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not an OTLP protobuf export request: {e}"),
        )
    };
    let too_much = |e: String| (StatusCode::PAYLOAD_TOO_LARGE, e);
    match encoding {
        Encoding::Protobuf => {
            let cost = R::scan(body).map_err(not_otlp)?;
            super::admit(config, cost, R::ITEMS).map_err(too_much)?;
            R::decode(body).map_err(|e| not_otlp(e.to_string()))
        }
        Encoding::Json => {
            let request: R = serde_json::from_slice(body).map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("the body is not an OTLP/JSON export request: {e}"),
                )
            })?;
            let cost = R::scan(&request.encode_to_vec()).map_err(not_otlp)?;
            if cost.items == 0 {
                // serde skips unknown keys: `resource_logs` would read as an empty request.
                let keys: Vec<String> =
                    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default();
                if let Some(unknown) = keys.iter().find(|k| {
                    !k.starts_with("resource") || !k.chars().any(|c| c.is_ascii_uppercase())
                }) {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        format!(
                            "the body holds no {} and an unknown field `{unknown}`: OTLP/JSON names fields in lowerCamelCase (`resourceLogs`, `scopeLogs`, `logRecords`, …)",
                            R::ITEMS
                        ),
                    ));
                }
            }
            super::admit(config, cost, R::ITEMS).map_err(too_much)?;
            Ok(request)
        }
    }
}
