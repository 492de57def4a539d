//! `/incidents`: the live incidents of every `incident` transform, and changes by hand.
//!
//! - `GET /incidents?status=&severity=&service=&limit=&offset=`: newest first; `status`
//!   is open, acknowledged (or investigating), resolved (or closed); `limit` is 100 by
//!   default and at most 1000.
//! - `GET /incidents/{id}` and `GET /incidents/{id}/timeline?limit=`.
//! - `POST /incidents` opens one by hand (`title`, `severity`, `service`,
//!   `description`, `key`, `assigned_to`, and `component` when there are several).
//! - `PUT /incidents/{id}` changes `status`, `severity`, `assigned_to`, `root_cause`
//!   or adds a `note`. Status and severity changes go downstream within a second, as
//!   the transform's own changes do.
//!
//! Every call needs the API token; the incidents a component resolved and announced
//! are gone from here (the shared store keeps history).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use super::{ApiState, authorized, unauthorized};
use crate::state_file::lock;
use crate::transforms::incident::manual::{self, ChangeError, IncidentChange, NewIncident};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": text.into() }))).into_response()
}

fn number(
    q: &HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, String> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!("`{name}` must be a whole number from 0 to {max}")),
        },
    }
}

fn status_filter(s: &str) -> Result<&'static str, String> {
    match s.to_ascii_lowercase().as_str() {
        "open" => Ok("open"),
        "acknowledged" | "investigating" => Ok("acknowledged"),
        "resolved" | "closed" => Ok("resolved"),
        other => Err(format!(
            "`status` `{other}` is not one of open, acknowledged, investigating, resolved, closed"
        )),
    }
}

/// `GET /incidents`.
pub(super) async fn list(
    State(s): State<ApiState>,
    headers: axum::http::HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let (limit, offset) = match (
        number(&q, "limit", DEFAULT_LIMIT, MAX_LIMIT),
        number(&q, "offset", 0, usize::MAX),
    ) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let status = match q.get("status").map(|s| status_filter(s)).transpose() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let severity = q.get("severity").map(|s| s.to_ascii_lowercase());
    let service = q.get("service");
    let components = manual::components();
    // Filter and sort on plain fields first; only the page is described.
    let mut found: Vec<(i64, String, String, usize)> = Vec::new();
    for (c, (_, state)) in components.iter().enumerate() {
        let state = lock(state);
        for (key, i) in &state.incidents {
            if status.is_some_and(|s| s != manual::status(i))
                || severity.as_ref().is_some_and(|s| *s != i.severity)
                || service.is_some_and(|s| !manual::has_service(i, s))
            {
                continue;
            }
            found.push((i.first_seen, i.id.clone(), key.clone(), c));
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let total = found.len();
    let page: Vec<Json> = found
        .into_iter()
        .skip(offset)
        .take(limit)
        .filter_map(|(_, _, key, c)| {
            let (component, state) = &components[c];
            let state = lock(state);
            state
                .incidents
                .get(&key)
                .map(|i| manual::describe(component, &key, i))
        })
        .collect();
    (
        StatusCode::OK,
        axum::Json(json!({ "incidents": page, "total": total, "limit": limit, "offset": offset })),
    )
        .into_response()
}

/// Runs `f` on the component state holding incident `id`.
fn with_incident<T>(
    id: &str,
    f: impl FnOnce(&str, &mut crate::transforms::incident::IncidentState, String) -> T,
) -> Option<T> {
    for (component, state) in manual::components() {
        let mut state = lock(&state);
        if let Some(key) = state.key_of(id) {
            return Some(f(&component, &mut state, key));
        }
    }
    None
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no incident `{}`", clip(id)))
}

/// At most 100 characters of something a client sent, for answers and logs.
fn clip(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The body as a JSON object (arrays and scalars are refused by name).
fn object(body: &[u8]) -> Result<Json, String> {
    match serde_json::from_slice::<Json>(body) {
        Ok(v @ Json::Object(_)) => Ok(v),
        Ok(_) => Err("the body must be a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// A refused change: answered, and logged like the accepted ones.
fn refused(status: StatusCode, what: &str, id: Option<&str>, reason: String) -> Response {
    tracing::info!(action = what, incident = id.map(clip).unwrap_or_default(), status = status.as_u16(), reason = %reason, "incident change refused through the API");
    error(status, reason)
}

/// `GET /incidents/{id}`.
pub(super) async fn show(
    State(s): State<ApiState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let found = with_incident(&id, |component, state, key| {
        state
            .incidents
            .get(&key)
            .map(|i| manual::describe(component, &key, i))
    })
    .flatten();
    match found {
        Some(d) => (StatusCode::OK, axum::Json(d)).into_response(),
        None => not_found(&id),
    }
}

/// `GET /incidents/{id}/timeline`.
pub(super) async fn timeline(
    State(s): State<ApiState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let limit = match number(&q, "limit", DEFAULT_LIMIT, MAX_LIMIT) {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let found = with_incident(&id, |_, state, key| {
        state.incidents.get(&key).map(|i| {
            // The newest `limit` entries, oldest first.
            let skip = i.timeline.len().saturating_sub(limit);
            i.timeline
                .iter()
                .skip(skip)
                .map(manual::entry)
                .collect::<Vec<_>>()
        })
    })
    .flatten();
    match found {
        Some(entries) => (
            StatusCode::OK,
            axum::Json(json!({ "id": id, "timeline": entries })),
        )
            .into_response(),
        None => not_found(&id),
    }
}

/// `POST /incidents`.
pub(super) async fn create(
    State(s): State<ApiState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let spec: NewIncident = match object(&body).and_then(|v| {
        serde_json::from_value(v).map_err(|e| format!("invalid incident: {}", clip(&e.to_string())))
    }) {
        Ok(spec) => spec,
        Err(e) => return refused(StatusCode::BAD_REQUEST, "create", None, e),
    };
    let components = manual::components();
    let target = match (&spec.component, components.as_slice()) {
        (Some(c), all) => all.iter().find(|(id, _)| id == c),
        (None, [one]) => Some(one),
        (None, []) => None,
        (None, _) => {
            return error(
                StatusCode::BAD_REQUEST,
                "several incident components run: name one in `component`",
            );
        }
    };
    let Some((component, state)) = target else {
        return error(
            StatusCode::NOT_FOUND,
            "no incident component runs with that id",
        );
    };
    let now = chrono::Utc::now().timestamp_millis();
    match lock(state).create(&spec, now) {
        Ok(id) => {
            tracing::info!(incident = %id, component = %component, title = %clip(&spec.title), "incident opened through the API");
            (
                StatusCode::CREATED,
                axum::Json(json!({ "id": id, "component": component, "status": "open" })),
            )
                .into_response()
        }
        Err(e) => refused(StatusCode::BAD_REQUEST, "create", None, e),
    }
}

/// `PUT /incidents/{id}`.
pub(super) async fn update(
    State(s): State<ApiState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let change: IncidentChange = match object(&body).and_then(|v| {
        serde_json::from_value(v).map_err(|e| format!("invalid change: {}", clip(&e.to_string())))
    }) {
        Ok(c) => c,
        Err(e) => return refused(StatusCode::BAD_REQUEST, "change", Some(&id), e),
    };
    if change.is_empty() {
        return refused(
            StatusCode::BAD_REQUEST,
            "change",
            Some(&id),
            "nothing to change: give status, severity, assigned_to, root_cause or note".into(),
        );
    }
    let now = chrono::Utc::now().timestamp_millis();
    let outcome = with_incident(&id, |component, state, _| {
        state
            .change(&id, &change, now)
            .map(|(key, i)| manual::describe(component, &key, &i))
    });
    match outcome {
        None | Some(Err(ChangeError::NotFound)) => refused(
            StatusCode::NOT_FOUND,
            "change",
            Some(&id),
            format!("no incident `{}`", clip(&id)),
        ),
        Some(Err(ChangeError::Invalid(e))) => {
            refused(StatusCode::BAD_REQUEST, "change", Some(&id), e)
        }
        Some(Ok(d)) => {
            tracing::info!(incident = %id, change = ?change, "incident changed through the API");
            (StatusCode::OK, axum::Json(d)).into_response()
        }
    }
}
