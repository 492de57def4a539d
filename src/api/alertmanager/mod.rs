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

/// A refused request, answered as Alertmanager answers it.
struct Refusal {
    status: StatusCode,
    body: serde_json::Value,
}

impl From<Refusal> for Response {
    fn from(r: Refusal) -> Self {
        r.into_response()
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// An error as Alertmanager answers it: the message as a JSON string.
fn error<T: From<Refusal>>(status: StatusCode, message: impl Into<String>) -> T {
    T::from(Refusal {
        status,
        body: serde_json::Value::String(message.into()),
    })
}

/// A request that does not fit the API's schema: 422 `{"code","message"}`, with
/// go-swagger's codes (601 wrong type or format, 602 required, 612 too few items).
fn schema_error<T: From<Refusal>>(code: u16, message: impl Into<String>) -> T {
    T::from(Refusal {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        body: serde_json::json!({ "code": code, "message": message.into() }),
    })
}

/// A body that is not JSON of the expected kind: 400 `{"code","message"}`.
fn unparsable(what: &str, why: &str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        body: serde_json::json!({
            "code": 400,
            "message": format!("parsing {what} body from \"\" failed, because {why}"),
        }),
    }
}

/// The `filter` parameters (amtool repeats it): matchers, or 400 naming the bad one.
fn filters(query: &[(String, String)]) -> Result<Vec<crate::matchers::Matcher>, Refusal> {
    query
        .iter()
        .filter(|(key, _)| key == "filter")
        .map(|(_, text)| {
            crate::matchers::Matcher::parse(text).map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("bad matcher format: {text}"),
                )
            })
        })
        .collect()
}

/// A `date-time` field: RFC 3339.
fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, Refusal> {
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
fn uuid_path(id: &str) -> Result<(), Refusal> {
    uuid::Uuid::parse_str(id).map(|_| ()).map_err(|_| {
        schema_error(
            601,
            format!("silenceID in path must be of type uuid: {id:?}"),
        )
    })
}
