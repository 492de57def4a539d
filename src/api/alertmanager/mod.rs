//! Alertmanager's API v2, the parts its clients use: alerts posted by Prometheus or
//! Grafana (`alerts.rs`), `amtool silence add/query/expire`, `amtool alert query` and
//! the status every amtool command reads first. Answers follow
//! Alertmanager 0.25 (the version Debian ships and the tests run against): errors are a
//! JSON string (amtool prints it as it is), schema violations `{"code","message"}` with
//! 422, times UTC with milliseconds.
//!
//! Silences are the process-wide ones ([`crate::silences`]), so `amtool`, `sluice
//! silences` and `/silences` see the same list; those from the pipeline file are listed
//! and cannot be changed here.

pub(super) mod alerts;
pub(super) mod received;
pub(super) mod silences;
pub(super) mod status;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

/// An error as Alertmanager answers it: the message as a JSON string.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::Value::String(message.into())),
    )
        .into_response()
}

/// A request that does not fit the API's schema: 422 `{"code","message"}`, with
/// go-swagger's codes (601 wrong type or format, 602 required, 612 too few items).
fn schema_error(code: u16, message: impl Into<String>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(serde_json::json!({ "code": code, "message": message.into() })),
    )
        .into_response()
}

/// A `date-time` field: RFC 3339.
fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, Response> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            schema_error(
                601,
                format!("{field} in body must be of type date-time: {text:?}"),
            )
        })
}

/// A path id that must be a UUID (422 otherwise, as Alertmanager answers).
fn uuid_path(id: &str) -> Result<(), Response> {
    uuid::Uuid::parse_str(id).map(|_| ()).map_err(|_| {
        schema_error(
            601,
            format!("silenceID in path must be of type uuid: {id:?}"),
        )
    })
}
