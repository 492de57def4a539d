//! `/incidents`: the incidents of every `incident` transform, and changes by hand;
//! `/stats`: the monitoring system's statistics.
//!
//! - `GET /incidents?status=&severity=&service=&limit=&offset=`: newest first; `status`
//!   is open, acknowledged (or investigating), resolved (or closed); `limit` is 100 by
//!   default and at most 1000; `offset` at most 10000.
//! - `GET /incidents/{id}` and `GET /incidents/{id}/timeline?limit=`.
//! - `POST /incidents` opens one by hand (`title`, `severity`, `service`,
//!   `description`, `key`, `assigned_to`, and `component` when there are several).
//! - `PUT /incidents/{id}` changes `status`, `severity`, `assigned_to`, `root_cause`
//!   or adds a `note`. Status and severity changes go downstream within a second, as
//!   the transform's own changes do.
//! - `GET /stats`: events in total and in the last hour, active alerts, open incidents,
//!   in all and per component.
//!
//! Every call needs the API token. A component without a store lists what it holds
//! (open incidents, and resolved ones for `keep_resolved`); one with the shared store
//! lists the store, history included. A store that does not answer is named under
//! `unreachable` (lists, statistics) or makes the answer a 503 (one incident).

use std::collections::HashMap;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use crate::state_file::lock;
use std::sync::Arc;

use crate::transforms::incident::IncidentState;
use crate::transforms::incident::manual::{self, ChangeError, IncidentChange, NewIncident};
use crate::transforms::incident::registry;
use crate::transforms::incident::state::{Incident, Phase};
use crate::transforms::incident::store::{self, StoreApi};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Deeper pages would read (and hold) every row before them: narrow with the filters.
const MAX_OFFSET: usize = 10_000;

fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": text.into() }))).into_response()
}

pub(super) fn number(
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

/// The `status` filter: a phase, and whether only closed incidents (the store's
/// history) are asked for.
fn status_filter(s: &str) -> Result<(Phase, bool), String> {
    match Phase::from_word(s) {
        Some(p) => Ok((p, s.eq_ignore_ascii_case("closed"))),
        None => Err(format!(
            "`status` `{}` is not one of open, acknowledged, investigating, resolved, closed",
            clip(s)
        )),
    }
}

/// `GET /incidents`.
#[utoipa::path(get, path = "/incidents", tag = "incidents", description = "Incidents of every `incident` transform, newest first", params(("status" = Option<String>, Query, description = "open, acknowledged, investigating, resolved or closed"), ("severity" = Option<String>, Query, description = "critical, high, medium, low or info"), ("service" = Option<String>, Query, description = "A service the incident concerns"), ("limit" = Option<u32>, Query, description = "At most 1000 (default 100)"), ("offset" = Option<u32>, Query, description = "At most 10000")), responses((status = 200, description = "Incidents; `unreachable` names stores that did not answer", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value)))]
pub(super) async fn list(Query(q): Query<HashMap<String, String>>) -> Response {
    let (limit, offset) = match (
        number(&q, "limit", DEFAULT_LIMIT, MAX_LIMIT),
        number(&q, "offset", 0, MAX_OFFSET),
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
    let components = registry::components();
    // Filter and sort on plain fields first; only the page is described.
    let mut found: Vec<(i64, String, Found)> = Vec::new();
    let mut total = 0usize;
    for (c, (_, state)) in components.iter().enumerate() {
        let state = lock(state);
        for (key, i) in &state.incidents {
            if status.is_some_and(|(p, _)| p != i.phase)
                || severity.as_ref().is_some_and(|s| *s != i.severity)
                || service.is_some_and(|s| !manual::has_service(i, s))
            {
                continue;
            }
            found.push((i.first_seen, i.id.clone(), Found::Local(c, key.clone())));
        }
    }
    total += found.len();
    let wanted = offset.saturating_add(limit);
    let mut unreachable = Vec::new();
    for (component, store) in registry::stores() {
        let filter = store::Filter {
            status: status.map(|s| store_status(s).to_owned()),
            severity: severity.clone(),
            service: service.cloned(),
            limit: i64::try_from(wanted).unwrap_or(i64::MAX),
            offset: 0,
        };
        match store.list(filter).await {
            Ok((rows, n)) => {
                total += usize::try_from(n).unwrap_or(0);
                for (key, i, st) in rows {
                    let d = stored(&component, &key, &i, &st);
                    found.push((i.first_seen, i.id, Found::Stored(d)));
                }
            }
            Err(e) => unreachable.push(store_failure(&component, &e)),
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let page: Vec<Json> = found
        .into_iter()
        .skip(offset)
        .take(limit)
        .filter_map(|(_, _, f)| match f {
            Found::Stored(d) => Some(d),
            Found::Local(c, key) => {
                let (component, state) = &components[c];
                let state = lock(state);
                state
                    .incidents
                    .get(&key)
                    .map(|i| manual::describe(component, &key, i))
            }
        })
        .collect();
    (
        StatusCode::OK,
        axum::Json(json!({
            "incidents": page, "total": total, "limit": limit, "offset": offset,
            "unreachable": unreachable,
        })),
    )
        .into_response()
}

/// A listed incident: of a component's memory (by index and key), or of a store.
enum Found {
    Local(usize, String),
    Stored(Json),
}

/// The store's word for an API status.
fn store_status((phase, closed): (Phase, bool)) -> &'static str {
    if closed {
        "closed"
    } else {
        phase.monitoring_word()
    }
}

/// An incident of a store as the API shows it: the store's status, in the API's words.
fn stored(component: &str, key: &str, i: &Incident, status: &str) -> Json {
    let mut d = manual::describe(component, key, i);
    if status == "closed" {
        d["status"] = json!("closed");
    }
    d
}

fn store_error(e: &store::StoreError) -> Response {
    tracing::warn!(error = %e, "incident API cannot reach the incident store");
    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// A store that did not answer, named in an answer that still has the others' part.
fn store_failure(component: &str, e: &store::StoreError) -> Json {
    tracing::warn!(component_id = %component, error = %e, "incident API cannot reach the incident store");
    json!({ "component": component, "error": e.to_string() })
}

/// The store component holding incident `id`, and the incident. A store that does not
/// answer is skipped; when no other holds the incident, its error is the answer.
async fn find_stored(id: &str) -> Result<Option<(String, Arc<StoreApi>, store::Listed)>, Response> {
    let mut failed = None;
    for (component, store) in registry::stores() {
        match store.find(id).await {
            Ok(Some(found)) => return Ok(Some((component, store, found))),
            Ok(None) => {}
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) => Err(store_error(&e)),
        None => Ok(None),
    }
}

/// Runs `f` on the component state holding incident `id`.
fn with_incident<T>(
    id: &str,
    f: impl FnOnce(&str, &mut crate::transforms::incident::IncidentState, String) -> T,
) -> Option<T> {
    for (component, state) in registry::components() {
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
    crate::text::clip(s, 100)
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
#[utoipa::path(get, path = "/incidents/{id}", tag = "incidents", description = "One incident", params(("id" = String, Path, description = "The incident's id")), responses((status = 200, description = "The incident", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
pub(super) async fn show(Path(id): Path<String>) -> Response {
    let found = with_incident(&id, |component, state, key| {
        state
            .incidents
            .get(&key)
            .map(|i| manual::describe(component, &key, i))
    })
    .flatten();
    if let Some(d) = found {
        return (StatusCode::OK, axum::Json(d)).into_response();
    }
    match find_stored(&id).await {
        Ok(Some((component, _, (key, i, status)))) => (
            StatusCode::OK,
            axum::Json(stored(&component, &key, &i, &status)),
        )
            .into_response(),
        Ok(None) => not_found(&id),
        Err(r) => r,
    }
}

/// `GET /incidents/{id}/timeline`.
#[utoipa::path(get, path = "/incidents/{id}/timeline", tag = "incidents", description = "An incident's alerts and changes (and, with an events table, its service's events), in time order", params(("id" = String, Path, description = "The incident's id"), ("limit" = Option<u32>, Query, description = "At most 1000")), responses((status = 200, description = "The timeline", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
pub(super) async fn timeline(
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
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
    if let Some(entries) = found {
        return (
            StatusCode::OK,
            axum::Json(json!({ "id": id, "timeline": entries })),
        )
            .into_response();
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut failed = None;
    for (_, store) in registry::stores() {
        match store.timeline(&id, limit).await {
            Ok(Some(entries)) => {
                return (
                    StatusCode::OK,
                    axum::Json(json!({ "id": id, "timeline": entries })),
                )
                    .into_response();
            }
            Ok(None) => {}
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) => store_error(&e),
        None => not_found(&id),
    }
}

/// `POST /incidents`.
#[utoipa::path(post, path = "/incidents", tag = "incidents", description = "Opens an incident by hand", request_body(content = serde_json::Value, description = "`{title, severity, service, description, key, assigned_to, component}`", content_type = "application/json"), responses((status = 201, description = "Opened", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 409, description = "A notification of it is still going out", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
pub(super) async fn create(body: axum::body::Bytes) -> Response {
    let spec: NewIncident = match object(&body).and_then(|v| {
        serde_json::from_value(v).map_err(|e| format!("invalid incident: {}", clip(&e.to_string())))
    }) {
        Ok(spec) => spec,
        Err(e) => return refused(StatusCode::BAD_REQUEST, "create", None, e),
    };
    let components: Vec<(String, Target)> = registry::components()
        .into_iter()
        .map(|(id, s)| (id, Target::Local(s)))
        .chain(
            registry::stores()
                .into_iter()
                .map(|(id, s)| (id, Target::Store(s))),
        )
        .collect();
    let (component, target) = match super::pick::pick(
        spec.component.as_ref(),
        components,
        "several incident components run: name one in `component`",
        "no incident component runs with that id",
    ) {
        Ok(found) => found,
        Err((status, text)) => return error(status, text),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let title = clip(&spec.title);
    let created = match target {
        Target::Local(state) => lock(&state).create(&spec, now),
        Target::Store(store) => match store.create(spec, now).await {
            Ok(r) => r,
            Err(e) => return store_error(&e),
        },
    };
    match created {
        Ok(id) => {
            tracing::info!(incident = %id, component = %component, title = %title, "incident opened through the API");
            (
                StatusCode::CREATED,
                axum::Json(json!({ "id": id, "component": component, "status": "open" })),
            )
                .into_response()
        }
        Err(e) => refused(StatusCode::BAD_REQUEST, "create", None, e),
    }
}

enum Target {
    Local(std::sync::Arc<std::sync::Mutex<IncidentState>>),
    Store(Arc<StoreApi>),
}

/// `PUT /incidents/{id}`.
#[utoipa::path(put, path = "/incidents/{id}", tag = "incidents", description = "Changes an incident's status, severity, assignee or root cause, or adds a note", params(("id" = String, Path, description = "The incident's id")), request_body(content = serde_json::Value, description = "`{status, severity, assigned_to, root_cause, note}`", content_type = "application/json"), responses((status = 200, description = "Changed", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 409, description = "The change conflicts with the incident's state", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
pub(super) async fn update(Path(id): Path<String>, body: axum::body::Bytes) -> Response {
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
    let local = with_incident(&id, |component, state, _| {
        state
            .change(&id, &change, now)
            .map(|(key, i)| manual::describe(component, &key, &i))
    });
    let outcome = match local {
        Some(o) => Some(o),
        None => match find_stored(&id).await {
            Ok(Some((component, store, _))) => match store.change(&id, change.clone(), now).await {
                Ok(r) => Some(r.map(|(key, i, status)| stored(&component, &key, &i, &status))),
                Err(e) => return store_error(&e),
            },
            Ok(None) => None,
            Err(r) => return r,
        },
    };
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

/// `GET /stats`: the monitoring system's statistics over every incident component.
/// Events come from the store's events table when one is configured, else they are
/// the alerts the incident components took in since sluice started.
#[utoipa::path(get, path = "/stats", tag = "incidents", description = "The monitoring system's statistics: events, active alerts, open incidents", responses((status = 200, description = "Statistics", body = serde_json::Value)))]
pub(super) async fn stats() -> Response {
    let now = chrono::Utc::now().timestamp_millis();
    let mut each: Vec<(String, Stats)> = Vec::new();
    for (component, state) in registry::components() {
        let state = lock(&state);
        let mut st = Stats {
            total: state.intake.total(),
            last_hour: state.intake.last_hour(now),
            ..Stats::default()
        };
        for i in state.incidents.values().filter(|i| i.is_open()) {
            st.open += 1;
            st.active += i.firing.len().max(1) as u64;
        }
        each.push((component, st));
    }
    let mut unreachable = Vec::new();
    for (component, store) in registry::stores() {
        let got = match store.stats().await {
            Ok(got) => got,
            Err(e) => {
                unreachable.push(store_failure(&component, &e));
                continue;
            }
        };
        let n = |name: &str| got.get(name).and_then(Json::as_u64);
        let mut st = Stats {
            open: n("open_incidents").unwrap_or(0),
            active: n("active_alerts").unwrap_or(0),
            ..Stats::default()
        };
        match (n("total_events"), n("events_last_hour")) {
            (Some(t), Some(h)) => (st.total, st.last_hour, st.from_table) = (t, h, true),
            _ => {
                let intake = lock(&store.intake);
                (st.total, st.last_hour) = (intake.total(), intake.last_hour(now));
            }
        }
        each.push((component, st));
    }
    let mut all = Stats::default();
    let mut components = serde_json::Map::new();
    for (component, st) in each {
        all.total += st.total;
        all.last_hour += st.last_hour;
        all.active += st.active;
        all.open += st.open;
        all.from_table |= st.from_table;
        components.insert(component, st.json());
    }
    let mut body = all.json();
    body["components"] = Json::Object(components);
    body["unreachable"] = Json::Array(unreachable);
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The statistics of one incident component (or of all).
#[derive(Debug, Default)]
struct Stats {
    total: u64,
    last_hour: u64,
    active: u64,
    open: u64,
    /// Events counted from an events table rather than the alerts taken in.
    from_table: bool,
}

impl Stats {
    fn json(&self) -> Json {
        json!({
            "total_events": self.total,
            "events_last_hour": self.last_hour,
            "active_alerts": self.active,
            "open_incidents": self.open,
            "events_from": if self.from_table { "events_table" } else { "incident_intake" },
        })
    }
}
