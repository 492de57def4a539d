//! `POST /events` and `POST /metrics`: events in the monitoring system's shape, and
//! metric samples, into the pipeline through its `api` source.
//!
//! - `POST /events` takes one event or an array of at most 1000: `event_type` (log,
//!   metric, trace or alert), `source`, and optionally `id` (a UUID), `message`, `level`,
//!   `tags` (an object), `payload` (any JSON) and `timestamp` (RFC 3339; default now).
//!   An unknown field or a bad value is a 400 naming the event and the field; nothing of
//!   such a request enters the pipeline.
//! - `POST /metrics` takes one sample or an array: `name`, `metric_type` (counter, gauge,
//!   histogram or summary), `value` (a finite number), and optionally `labels` (text
//!   values), `source` and `timestamp`. Each becomes `{event_type: metric, name, value,
//!   metric_type, labels, source, timestamp}`, the shape `alert_rule` reads.
//!
//! Both answer like a webhook: 200 once delivered, 202 when delivery outlasts the
//! source's `request_timeout`, 503 when the pipeline stayed full or a sink failed them.
//! With several `api` sources, `?source=<id>` names one.
//!
//! `GET /events?event_type=&source=&level=&start_time=&end_time=&limit=&offset=` and
//! `GET /metrics/query?name=&start_time=&end_time=&limit=` read the events table a
//! running `postgres` sink writes (`?sink=<id>` when several do): newest events first,
//! samples oldest first; `limit` at most 1000, `offset` at most 10000.

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use vrl::value::{ObjectMap, Value};

use chrono::{DateTime, Utc};

use crate::sinks::postgres::query::{EventFilter, MAX_LIMIT, TABLES};
use crate::sources::api::{Handed, INTAKES};

/// Events (or samples) one request may carry.
const MAX_EVENTS: usize = 1000;
/// Characters of `source`, `level`, a metric's `name` and a label value.
const MAX_SHORT: usize = 256;
/// Deeper pages would read (and skip) every row before them: narrow with the filters.
const MAX_OFFSET: i64 = 10_000;
const EVENT_TYPES: [&str; 4] = ["log", "metric", "trace", "alert"];
const METRIC_TYPES: [&str; 4] = ["counter", "gauge", "histogram", "summary"];

fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": text.into() }))).into_response()
}

/// One event as the monitoring system takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostedEvent {
    #[serde(default)]
    id: Option<String>,
    event_type: String,
    source: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    tags: Option<Map<String, Json>>,
    #[serde(default)]
    payload: Option<Json>,
    #[serde(default)]
    timestamp: Option<String>,
}

/// One metric sample.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostedMetric {
    name: String,
    metric_type: String,
    value: f64,
    #[serde(default)]
    labels: HashMap<String, String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
}

/// The body as a list: one object, or an array of at most [`MAX_EVENTS`].
fn items(body: &[u8]) -> Result<Vec<Json>, String> {
    match serde_json::from_slice::<Json>(body) {
        Ok(Json::Array(a)) if a.len() > MAX_EVENTS => Err(format!(
            "{} items in one request; at most {MAX_EVENTS}",
            a.len()
        )),
        Ok(Json::Array(a)) => Ok(a),
        Ok(v @ Json::Object(_)) => Ok(vec![v]),
        Ok(_) => Err("the body must be a JSON object or an array of them".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn short(what: &str, text: &str) -> Result<(), String> {
    if text.is_empty() || text.chars().count() > MAX_SHORT {
        return Err(format!("`{what}` must be 1 to {MAX_SHORT} characters"));
    }
    Ok(())
}

fn time(text: Option<&str>) -> Result<Value, String> {
    match text {
        None => Ok(Value::Timestamp(chrono::Utc::now())),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| Value::Timestamp(t.to_utc()))
            .map_err(|_| format!("`timestamp` `{}` is not an RFC 3339 time", clip(t))),
    }
}

fn clip(s: &str) -> String {
    crate::text::clip(s, 100)
}

fn event(item: Json) -> Result<Value, String> {
    let e: PostedEvent = serde_json::from_value(item).map_err(|e| clip(&e.to_string()))?;
    if !EVENT_TYPES.contains(&e.event_type.as_str()) {
        return Err(format!(
            "`event_type` `{}` is not one of {}",
            clip(&e.event_type),
            EVENT_TYPES.join(", ")
        ));
    }
    short("source", &e.source)?;
    let mut m = ObjectMap::new();
    if let Some(id) = e.id {
        uuid::Uuid::parse_str(&id).map_err(|_| format!("`id` `{}` is not a UUID", clip(&id)))?;
        m.insert("id".into(), Value::from(id));
    }
    m.insert("event_type".into(), Value::from(e.event_type));
    m.insert("source".into(), Value::from(e.source));
    if let Some(message) = e.message {
        m.insert("message".into(), Value::from(message));
    }
    if let Some(level) = e.level {
        short("level", &level)?;
        m.insert("level".into(), Value::from(level));
    }
    m.insert(
        "tags".into(),
        Value::from(Json::Object(e.tags.unwrap_or_default())),
    );
    m.insert(
        "payload".into(),
        Value::from(e.payload.unwrap_or_else(|| json!({}))),
    );
    m.insert("timestamp".into(), time(e.timestamp.as_deref())?);
    Ok(Value::Object(m))
}

fn metric(item: Json) -> Result<Value, String> {
    let s: PostedMetric = serde_json::from_value(item).map_err(|e| clip(&e.to_string()))?;
    short("name", &s.name)?;
    if !METRIC_TYPES.contains(&s.metric_type.as_str()) {
        return Err(format!(
            "`metric_type` `{}` is not one of {}",
            clip(&s.metric_type),
            METRIC_TYPES.join(", ")
        ));
    }
    if !s.value.is_finite() {
        return Err("`value` must be a finite number".into());
    }
    let mut labels = ObjectMap::new();
    for (k, v) in s.labels {
        short("labels", &k)?;
        short("labels", &v)?;
        labels.insert(k.into(), Value::from(v));
    }
    let source = s.source.unwrap_or_else(|| "api".into());
    short("source", &source)?;
    let mut m = ObjectMap::new();
    m.insert("event_type".into(), Value::from("metric"));
    m.insert("source".into(), Value::from(source));
    m.insert("name".into(), Value::from(s.name));
    m.insert("metric_type".into(), Value::from(s.metric_type));
    m.insert("value".into(), Value::from_f64_or_zero(s.value));
    m.insert("labels".into(), Value::Object(labels));
    m.insert("timestamp".into(), time(s.timestamp.as_deref())?);
    Ok(Value::Object(m))
}

/// `POST /events`.
#[utoipa::path(post, path = "/events", tag = "events", description = "Events in the monitoring system's shape into the pipeline through its `api` source: one, or an array of at most 1000", params(("source" = Option<String>, Query, description = "The `api` source, when several run")), request_body(content = serde_json::Value, description = "`{event_type, source, message, level, tags, payload, timestamp, id}` or an array of them", content_type = "application/json"), responses((status = 200, description = "Delivered", body = serde_json::Value), (status = 202, description = "Accepted; delivery outlasted the source's `request_timeout`", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
pub(super) async fn post_events(
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    take_in(&q, &body, "event", event).await
}

/// `POST /metrics`.
#[utoipa::path(post, path = "/metrics", tag = "events", description = "Metric samples into the pipeline through its `api` source", params(("source" = Option<String>, Query, description = "The `api` source, when several run")), request_body(content = serde_json::Value, description = "`{name, metric_type, value, labels, source, timestamp}` or an array of them", content_type = "application/json"), responses((status = 200, description = "Delivered", body = serde_json::Value), (status = 202, description = "Accepted; delivery outlasted the source's `request_timeout`", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
pub(super) async fn post_metrics(
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    take_in(&q, &body, "sample", metric).await
}

async fn take_in(
    q: &HashMap<String, String>,
    body: &[u8],
    what: &str,
    check: fn(Json) -> Result<Value, String>,
) -> Response {
    let (id, intake) = match super::pick::pick(
        q.get("source"),
        INTAKES.all(),
        "several `api` sources run: name one in `?source=`",
        "no `api` source runs with that id (add one of `type: api` to the pipeline)",
    ) {
        Ok(found) => found,
        Err((status, text)) => return error(status, text),
    };
    let items = match items(body) {
        Ok(items) => items,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let mut values = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match check(item) {
            Ok(v) => values.push(v),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("{what} {i}: {e}")),
        }
    }
    let n = values.len();
    match intake.take(values).await {
        Handed::Delivered => (
            StatusCode::OK,
            axum::Json(json!({ "accepted": n, "source": id })),
        )
            .into_response(),
        Handed::Pending => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "accepted": n, "source": id, "status": "in the pipeline; delivery outlasted request_timeout" })),
        )
            .into_response(),
        Handed::Full => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline is full; retry later",
        ),
        Handed::Failed => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "delivery failed; retry later",
        ),
        Handed::Stopped => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the source is stopping; retry later",
        ),
        Handed::Rejected => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a sink rejected the events",
        ),
    }
}

/// The events table to read: the one sink's, or `?sink=<id>`'s.
/// A refused query: answered as `error(status, text)`.
type Refusal = (StatusCode, String);

fn table(
    q: &HashMap<String, String>,
) -> Result<std::sync::Arc<crate::sinks::postgres::query::EventsTable>, Refusal> {
    super::pick::pick(
        q.get("sink"),
        TABLES.all(),
        "several `postgres` sinks write events tables: name one in `?sink=`",
        "no `postgres` sink with the events table runs with that id",
    )
    .map(|(_, t)| t)
}

fn when(q: &HashMap<String, String>, name: &str) -> Result<Option<DateTime<Utc>>, Refusal> {
    q.get(name)
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.to_utc())
                .map_err(|_| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("`{name}` `{}` is not an RFC 3339 time", clip(t)),
                    )
                })
        })
        .transpose()
}

/// A whole-number query parameter from 0 to `max` (as the other lists read theirs).
fn count(q: &HashMap<String, String>, name: &str, default: i64, max: i64) -> Result<i64, Refusal> {
    let as_usize = |n: i64| usize::try_from(n).unwrap_or(0);
    super::incidents::number(q, name, as_usize(default), as_usize(max))
        .map(|n| i64::try_from(n).unwrap_or(max))
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
}

/// `GET /events?event_type=&source=&level=&start_time=&end_time=&limit=&offset=`.
#[utoipa::path(get, path = "/events", tag = "events", description = "Events from the events table a `postgres` sink writes, newest first", params(("event_type" = Option<String>, Query, description = "log, metric, trace or alert"), ("source" = Option<String>, Query, description = "The event's source"), ("level" = Option<String>, Query, description = "The event's level"), ("start_time" = Option<String>, Query, description = "RFC 3339"), ("end_time" = Option<String>, Query, description = "RFC 3339"), ("limit" = Option<u32>, Query, description = "At most 1000 (default 100)"), ("offset" = Option<u32>, Query, description = "At most 10000"), ("sink" = Option<String>, Query, description = "The `postgres` sink, when several write")), responses((status = 200, description = "Events", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
pub(super) async fn get_events(Query(q): Query<HashMap<String, String>>) -> Response {
    let filter = (|| {
        if let Some(t) = q.get("event_type")
            && !EVENT_TYPES.contains(&t.as_str())
        {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "`event_type` `{}` is not one of {}",
                    clip(t),
                    EVENT_TYPES.join(", ")
                ),
            ));
        }
        Ok(EventFilter {
            event_type: q.get("event_type").cloned(),
            source: q.get("source").cloned(),
            level: q.get("level").cloned(),
            start_time: when(&q, "start_time")?,
            end_time: when(&q, "end_time")?,
            limit: count(&q, "limit", 100, MAX_LIMIT)?,
            offset: count(&q, "offset", 0, MAX_OFFSET)?,
        })
    })();
    let (filter, table) = match (filter, table(&q)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err((status, text)), _) | (_, Err((status, text))) => return error(status, text),
    };
    match table.events(&filter).await {
        Ok(events) => {
            axum::Json(json!({ "events": events, "count": events.len() })).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `GET /metrics/query?name=&start_time=&end_time=&limit=`.
#[utoipa::path(get, path = "/metrics/query", tag = "events", description = "The samples of one metric from the events table, oldest first", params(("name" = Option<String>, Query, description = "The metric's name"), ("start_time" = Option<String>, Query, description = "RFC 3339"), ("end_time" = Option<String>, Query, description = "RFC 3339"), ("limit" = Option<u32>, Query, description = "At most 1000 (default 100)"), ("sink" = Option<String>, Query, description = "The `postgres` sink, when several write")), responses((status = 200, description = "Samples", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
pub(super) async fn query_metrics(Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(name) = q.get("name").filter(|n| !n.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "`name` is required");
    };
    let args = (|| {
        Ok::<_, Refusal>((
            when(&q, "start_time")?,
            when(&q, "end_time")?,
            count(&q, "limit", MAX_LIMIT, MAX_LIMIT)?,
            table(&q)?,
        ))
    })();
    let (start, end, limit, table) = match args {
        Ok(a) => a,
        Err((status, text)) => return error(status, text),
    };
    match table.samples(name, start, end, limit).await {
        Ok(samples) => axum::Json(json!({ "name": name, "samples": samples })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}
