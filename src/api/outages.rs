//! `/outages`: outage monitoring of every `status_feed` source (which cloud providers
//! have an open incident, and control of their polling), and `POST /status_feeds/{id}/check`.
//!
//! - `GET /outages/status`: every feed's last poll, its result, whether it is paused,
//!   and the open incidents.
//! - `POST /outages/stop` and `/outages/start` (body optional: `{source, provider,
//!   feed}` narrow it): stop or resume polling. Kept across restarts.
//! - `PUT /outages/config` `{interval, providers, source}`: every feed's interval (`"5m"`
//!   or seconds; `null`: each its own again) and the providers polled (`null`: the
//!   pipeline file's feeds); a provider without a feed gets its public one. Kept across
//!   restarts; refused whole (400) when a value is wrong.
//! - `POST /outages/check/{provider}` and `/outages/check/all`: poll now; 200 with the
//!   state after the poll, 202 when it takes longer than a minute.
//! - `GET /outages/history?provider=&since=`: past incidents with their start, updates
//!   and end, oldest first.
//! - `POST /outages/webhook/test` (`{source}` when several): a sample outage, firing then
//!   resolved, through the source's outputs; answers with each event's delivery.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::sync::oneshot;

use super::ApiState;
use crate::telemetry::status_feeds::{Control, Reply, Selector, StatusFeedHandle};

/// How long a request waits for the source's loop before answering 202.
pub(super) const WAIT: Duration = Duration::from_secs(60);

fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": text.into() }))).into_response()
}

/// What one source answered.
enum Answer {
    Done(Result<Json, String>),
    /// Still working after [`WAIT`].
    Late,
    Gone,
}

async fn ask(handle: &StatusFeedHandle, make: impl FnOnce(Reply) -> Control) -> Answer {
    let (reply, answer) = oneshot::channel();
    if handle.control.send(make(reply)).await.is_err() {
        return Answer::Gone;
    }
    match tokio::time::timeout(WAIT, answer).await {
        Ok(Ok(result)) => Answer::Done(result),
        Ok(Err(_)) => Answer::Gone,
        Err(_) => Answer::Late,
    }
}

/// The sources a request means: the one named, or all; none is a 404 naming why.
fn sources(s: &ApiState, named: Option<&str>) -> Result<Vec<(String, StatusFeedHandle)>, String> {
    let all = s.telemetry.status_feeds().all();
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|(id, _)| named.is_none_or(|n| n == id))
        .collect();
    if chosen.is_empty() {
        return Err(match named {
            Some(n) => format!(
                "no running status_feed source `{}`",
                crate::text::clip(n, 64)
            ),
            None => "no status_feed source runs".to_owned(),
        });
    }
    Ok(chosen)
}

/// Asks every source in `targets` at once (one slow source delays no other): 200 with
/// the states of those that did it (and `refused` naming the others), 202 when some
/// are still working after [`WAIT`], 404 when the selection matched nothing anywhere,
/// 400 when every source refused.
async fn ask_all(
    targets: Vec<(String, StatusFeedHandle)>,
    make: impl Fn(Reply) -> Control,
) -> Response {
    let answers =
        futures_util::future::join_all(targets.iter().map(|(_, handle)| ask(handle, &make))).await;
    let mut states = Vec::new();
    let mut refusals = Vec::new();
    let mut late = Vec::new();
    for ((id, _), answer) in targets.into_iter().zip(answers) {
        match answer {
            Answer::Done(Ok(snapshot)) => states.push(snapshot),
            Answer::Done(Err(e)) => refusals.push((id, e)),
            Answer::Late => late.push(id),
            Answer::Gone => refusals.push((id, "the source is stopping".to_owned())),
        }
    }
    let unmatched = |e: &str| e.starts_with("this source has no");
    if states.is_empty() && late.is_empty() {
        let status = if refusals.iter().all(|(_, e)| unmatched(e)) {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        return error(status, joined(&refusals));
    }
    let status = if late.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let refused: Vec<Json> = refusals
        .iter()
        .filter(|(_, e)| !unmatched(e))
        .map(|(id, e)| json!({ "source": id, "error": e }))
        .collect();
    (
        status,
        axum::Json(json!({ "sources": states, "still_working": late, "refused": refused })),
    )
        .into_response()
}

fn joined(refusals: &[(String, String)]) -> String {
    refusals
        .iter()
        .map(|(id, e)| format!("{id}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `GET /outages/status`.
#[utoipa::path(get, path = "/outages/status", tag = "outages", description = "Every status feed's last poll, result, interval and pause, with the open incidents", responses((status = 200, description = "Monitoring state", body = serde_json::Value)))]
pub(super) async fn status(State(s): State<ApiState>) -> Response {
    let all = s.telemetry.status_feeds().all();
    let mut sources = Vec::new();
    let mut open = Vec::new();
    let (mut polled, mut paused) = (0, 0);
    for (_, handle) in all {
        let snap = handle.snapshot();
        for f in snap["feeds"].as_array().into_iter().flatten() {
            if f["paused"] == true || f["enabled"] == false {
                paused += 1;
            } else {
                polled += 1;
            }
        }
        open.extend(
            snap["open_incidents"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned(),
        );
        sources.push(snap);
    }
    let monitoring = match (polled, paused) {
        (0, 0) => "none",
        (0, _) => "stopped",
        (_, 0) => "running",
        _ => "partial",
    };
    axum::Json(json!({
        "monitoring": monitoring,
        "feeds_polled": polled,
        "feeds_stopped": paused,
        "sources": sources,
        "open_incidents": open,
    }))
    .into_response()
}

/// Which feeds a start or stop means.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Scope {
    /// Only this source.
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    feed: Option<String>,
}

/// An optional JSON object (an empty body is the defaults).
fn body<T: for<'de> Deserialize<'de> + Default>(bytes: &[u8]) -> Result<T, String> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(T::default()),
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| format!("invalid body: {e}")),
        Some(_) => Err("the body must be a JSON object".into()),
    }
}

async fn pause(s: ApiState, bytes: &[u8], paused: bool) -> Response {
    let scope: Scope = match body(bytes) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let targets = match sources(&s, scope.source.as_deref()) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let select = Selector {
        provider: scope.provider,
        feed: scope.feed,
    };
    ask_all(targets, |reply| Control::Pause {
        select: select.clone(),
        paused,
        reply,
    })
    .await
}

/// `POST /outages/stop`.
#[utoipa::path(post, path = "/outages/stop", tag = "outages", description = "Stops polling feeds (all, or those the body selects); kept across restarts", request_body(content = serde_json::Value, description = "Optional: `{source, provider, feed}`", content_type = "application/json"), responses((status = 200, description = "Stopped; the sources' states", body = serde_json::Value), (status = 202, description = "Still working", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value)))]
pub(super) async fn stop(State(s): State<ApiState>, bytes: axum::body::Bytes) -> Response {
    pause(s, &bytes, true).await
}

/// `POST /outages/start`.
#[utoipa::path(post, path = "/outages/start", tag = "outages", description = "Resumes polling feeds (all, or those the body selects)", request_body(content = serde_json::Value, description = "Optional: `{source, provider, feed}`", content_type = "application/json"), responses((status = 200, description = "Resumed; the sources' states", body = serde_json::Value), (status = 202, description = "Still working", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value)))]
pub(super) async fn start(State(s): State<ApiState>, bytes: axum::body::Bytes) -> Response {
    pause(s, &bytes, false).await
}

/// `PUT /outages/config`: a field left out keeps its value; `null` resets it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    source: Option<String>,
    #[serde(default, deserialize_with = "present")]
    interval: Option<Option<Json>>,
    #[serde(default, deserialize_with = "present")]
    providers: Option<Option<Vec<String>>>,
}

/// A field that is present (even `null`) is `Some`.
fn present<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn interval(v: &Json) -> Result<Duration, String> {
    match v {
        Json::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| "`interval` in seconds must be a whole number".to_owned()),
        Json::String(text) => humantime::parse_duration(text)
            .map_err(|e| format!("`interval` `{}`: {e}", crate::text::clip(text, 32))),
        _ => Err("`interval` must be a duration such as \"5m\", or seconds".to_owned()),
    }
}

/// `PUT /outages/config`.
#[utoipa::path(put, path = "/outages/config", tag = "outages", description = "Sets every feed's interval and the providers polled; kept across restarts", request_body(content = serde_json::Value, description = "`{interval, providers, source}`; `null` resets a field, a missing one keeps it", content_type = "application/json"), responses((status = 200, description = "Configured; the sources' states", body = serde_json::Value), (status = 202, description = "Still working", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value)))]
pub(super) async fn config(State(s): State<ApiState>, bytes: axum::body::Bytes) -> Response {
    let c: Config = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let every = match &c.interval {
        None => None,
        Some(None) => Some(None),
        Some(Some(v)) => match interval(v) {
            Ok(d) => Some(Some(d)),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
    };
    let targets = match sources(&s, c.source.as_deref()) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    // Taken by every source or by none: each checks it first.
    let answers = futures_util::future::join_all(targets.iter().map(|(_, handle)| {
        ask(handle, |reply| Control::Configure {
            interval: every,
            providers: c.providers.clone(),
            dry_run: true,
            reply,
        })
    }))
    .await;
    let refusals: Vec<(String, String)> = targets
        .iter()
        .zip(answers)
        .filter_map(|((id, _), a)| match a {
            Answer::Done(Ok(_)) => None,
            Answer::Done(Err(e)) => Some((id.clone(), e)),
            Answer::Late => Some((id.clone(), "busy; nothing was changed".to_owned())),
            Answer::Gone => Some((id.clone(), "the source is stopping".to_owned())),
        })
        .collect();
    if !refusals.is_empty() {
        return error(StatusCode::BAD_REQUEST, joined(&refusals));
    }
    ask_all(targets, |reply| Control::Configure {
        interval: every,
        providers: c.providers.clone(),
        dry_run: false,
        reply,
    })
    .await
}

/// `POST /outages/check/{provider}` (`all`: every feed).
#[utoipa::path(post, path = "/outages/check/{provider}", tag = "outages", description = "Polls the provider's feeds now (`all`: every feed), even stopped ones", params(("provider" = String, Path, description = "A provider (aws, gcp, azure, oci, statuspage, …) or `all`")), responses((status = 200, description = "Polled; the sources' states", body = serde_json::Value), (status = 202, description = "Still polling after a minute", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value)))]
pub(super) async fn check(State(s): State<ApiState>, Path(provider): Path<String>) -> Response {
    let targets = match sources(&s, None) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let select = Selector {
        provider: (provider != "all").then_some(provider),
        feed: None,
    };
    // Only the sources that read this provider.
    let targets: Vec<_> = targets
        .into_iter()
        .filter(|(_, h)| {
            h.snapshot()["feeds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| {
                    select.matches(
                        f["name"].as_str().unwrap_or_default(),
                        f["provider"].as_str().unwrap_or_default(),
                    )
                })
        })
        .collect();
    if targets.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no feed of provider `{}`",
                crate::text::clip(select.provider.as_deref().unwrap_or("all"), 64)
            ),
        );
    }
    ask_all(targets, |reply| Control::Check {
        select: select.clone(),
        reply,
    })
    .await
}

/// `GET /outages/history`.
#[utoipa::path(get, path = "/outages/history", tag = "outages", description = "Past outages with their start, updates and end, oldest first", params(("provider" = Option<String>, Query, description = "Only this provider's"), ("since" = Option<String>, Query, description = "RFC 3339: only those open or ended since")), responses((status = 200, description = "Past outages", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value)))]
pub(super) async fn history(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let since = match q.get("since").map(|t| DateTime::parse_from_rfc3339(t)) {
        None => None,
        Some(Ok(t)) => Some(t.with_timezone(&Utc)),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "`since` must be an RFC 3339 time"),
    };
    let provider = q.get("provider");
    let mut out = Vec::new();
    for (id, handle) in s.telemetry.status_feeds().all() {
        for mut past in handle.history().as_array().cloned().unwrap_or_default() {
            if provider.is_some_and(|p| past["provider"] != p.as_str()) {
                continue;
            }
            let time = |k: &str| {
                past[k]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
            };
            // Still open, or ended since.
            if let Some(since) = since
                && time("ended_at").is_some_and(|end| end < since)
            {
                continue;
            }
            past["source"] = json!(id);
            out.push(past);
        }
    }
    out.sort_by(|a, b| a["started_at"].as_str().cmp(&b["started_at"].as_str()));
    axum::Json(json!({ "count": out.len(), "incidents": out })).into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TestScope {
    #[serde(default)]
    source: Option<String>,
}

/// `POST /outages/webhook/test`.
#[utoipa::path(post, path = "/outages/webhook/test", tag = "outages", description = "Sends a sample outage, firing then resolved, through a status_feed source's outputs", request_body(content = serde_json::Value, description = "Optional: `{source}` when several run", content_type = "application/json"), responses((status = 200, description = "Both delivered", body = serde_json::Value), (status = 202, description = "Still being delivered", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 502, description = "Not every event was delivered", body = serde_json::Value)))]
pub(super) async fn webhook_test(State(s): State<ApiState>, bytes: axum::body::Bytes) -> Response {
    let scope: TestScope = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // One sample at a time: each goes to the real sinks (a pager, say).
    let Ok(_turn) = SAMPLES.try_acquire() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "a sample outage is already being sent; try again when it is delivered",
        );
    };
    let (_, handle) = match super::pick::pick(
        scope.source.as_ref(),
        s.telemetry.status_feeds().all(),
        "several status_feed sources run: name one in `source`",
        "no status_feed source runs with that id",
    ) {
        Ok(found) => found,
        Err((status, text)) => return error(status, text),
    };
    match ask(&handle, |reply| Control::Test { reply }).await {
        Answer::Done(Ok(result)) => {
            let status = if result["delivered"] == result["sent"] {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            (status, axum::Json(result)).into_response()
        }
        Answer::Done(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Answer::Late => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "status": "the sample outage is still being delivered" })),
        )
            .into_response(),
        Answer::Gone => error(StatusCode::SERVICE_UNAVAILABLE, "the source is stopping"),
    }
}

/// One sample outage at a time.
static SAMPLES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// `POST /status_feeds/{id}/check`: poll every feed of the source now.
#[utoipa::path(post, path = "/status_feeds/{id}/check", tag = "outages", description = "Polls every feed of a status_feed source now", params(("id" = String, Path, description = "The source's component id")), responses((status = 200, description = "Polled; the source's state", body = serde_json::Value), (status = 202, description = "Still polling after a minute", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
pub(super) async fn check_source(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some(handle) = s.telemetry.status_feeds().get(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no running status_feed source `{id}`"),
        );
    };
    match ask(&handle, |reply| Control::Check {
        select: Selector::default(),
        reply,
    })
    .await
    {
        Answer::Done(Ok(snapshot)) => (StatusCode::OK, axum::Json(snapshot)).into_response(),
        Answer::Done(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Answer::Late => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "status": "polling", "source": id })),
        )
            .into_response(),
        Answer::Gone => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the source stopped before polling",
        ),
    }
}
