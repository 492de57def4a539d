//! The management API: health probes and Prometheus metrics.
//!
//! `/health` lists every component's state: 200 when all run (or finished on their
//! own), 503 naming the failed or not-yet-running ones. `/health/live` answers 200 while
//! the process serves requests; `/health/ready` answers like `/health` without the body,
//! for Kubernetes readiness probes. `POST /reload` reloads the pipeline files and answers
//! once the new pipeline runs (200) or was refused (422, the old one keeps running).
//! `POST /status_feeds/{id}/check` makes a `status_feed` source poll now and answers with
//! its state after the poll; `GET /status_feeds/{id}` shows that state (open incidents,
//! feed states) without polling. `GET /components` gives every component's counters and
//! buffer fill as JSON for `sluice top`. `POST /silences`, `GET /silences` and
//! `DELETE /silences/{id}` manage the process-wide silences of `alert_rule`.
//! `/incidents` lists and changes the `incident` transforms' incidents (`incidents.rs`).
//! `/outages` shows, stops, starts, configures and checks the `status_feed` sources'
//! monitoring and lists past outages (`outages.rs`).
//! `/subscriptions` lists the `subscription` transforms' subscriptions and manages those
//! made at runtime (`subscriptions.rs`).
//! `/api/v2/alerts`, `/api/v2/status`, `/api/v2/silences` and `/api/v2/silence/{id}` are
//! Alertmanager's API for Prometheus, Grafana and amtool (`alertmanager/`).
//!
//! Browsers are kept out (see [`browser_guard`]): any web page a user opens can send requests to
//! `127.0.0.1`, and a DNS-rebinding page can even read the answers. So every request is
//! checked before routing: on a loopback bind the `Host` must be a loopback name (or the
//! configured address); an `Origin` must be the API's own; a request that carries a body
//! to a method that acts must say `application/json` (which a page cannot send across
//! origins without a CORS preflight this API never grants). Refusals are 403 or 415 with
//! a JSON `error` and `reason`.
//!
//! The guard lives in `guard.rs`; this file holds the server, the routes and their
//! handlers.

mod access;
mod alertmanager;
mod events;
mod guard;
mod incidents;
mod outages;
mod pick;
mod routes;
mod subscriptions;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use self::access::{Access, Role};

/// This API's OpenAPI 3.1 document (JSON), as `GET /openapi.json` serves it.
pub(crate) fn openapi_document() -> &'static str {
    routes::DOCUMENT.as_str()
}
pub(crate) use self::guard::Guard;
use self::guard::browser_guard;
use crate::silences;
use crate::telemetry::{ComponentState, Telemetry};

/// A reload asked through the API; the answer is the outcome's description.
pub type ReloadRequest = oneshot::Sender<Result<serde_json::Value, String>>;

#[derive(Clone)]
struct ApiState {
    telemetry: Arc<Telemetry>,
    reload: Option<mpsc::Sender<ReloadRequest>>,
    /// Ends open tap streams at shutdown (graceful shutdown waits for them).
    shutdown: CancellationToken,
    /// Who may call, as far as browsers go.
    guard: Arc<Guard>,
    /// When the API started (Alertmanager's status calls it uptime).
    started: chrono::DateTime<chrono::Utc>,
    /// Alerts posted to `/api/v2/alerts`, for `GET /api/v2/alerts`.
    received: Arc<alertmanager::received::Received>,
}

/// Binds the API on `address` and serves it until `shutdown` is cancelled. Reload
/// requests go to `reload` (the run loop owns the topology).
pub async fn serve(
    address: &str,
    telemetry: Arc<Telemetry>,
    reload: Option<mpsc::Sender<ReloadRequest>>,
    access: impl Into<Access>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let app = router_with_guard(
        telemetry,
        reload,
        access.into(),
        shutdown.clone(),
        Guard::for_bind(address, local),
    );
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "API server failed");
        }
    });
    Ok((local, handle))
}

/// The API's routes behind `guard`.
pub(crate) fn router_with_guard(
    telemetry: Arc<Telemetry>,
    reload: Option<mpsc::Sender<ReloadRequest>>,
    access: Access,
    shutdown: CancellationToken,
    guard: Guard,
) -> Router {
    let access = Arc::new(access);
    let state = ApiState {
        telemetry,
        reload,
        shutdown,
        guard: Arc::new(guard),
        started: chrono::Utc::now(),
        received: Arc::default(),
    };
    let (routes, _) = routes::table();
    routes
        // Layers run outermost last-added: browsers are turned away before tokens.
        .route_layer(axum::middleware::from_fn_with_state(
            access,
            access::authorize,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            browser_guard,
        ))
        .with_state(state)
}

fn health_report(t: &Telemetry) -> (StatusCode, serde_json::Value) {
    let mut components = serde_json::Map::new();
    let mut unhealthy = Vec::new();
    for c in t.components() {
        let state = c.state();
        let (name, error) = match &state {
            ComponentState::Starting => ("starting", None),
            ComponentState::Running => ("running", None),
            ComponentState::Stopped => ("stopped", None),
            ComponentState::Failed(e) => ("failed", Some(e.clone())),
            ComponentState::Degraded(e) => ("degraded", Some(e.clone())),
        };
        if matches!(
            state,
            ComponentState::Starting | ComponentState::Failed(_) | ComponentState::Degraded(_)
        ) {
            unhealthy.push(c.id.clone());
        }
        let mut entry = json!({ "kind": c.kind.as_str(), "type": c.type_name, "state": name });
        if let Some(e) = error {
            entry["error"] = json!(e);
        }
        // A feed that fails is the provider's problem, not sluice's: shown, never a 503.
        if let Some(feeds) = t.status_feeds().get(&c.id) {
            entry["feeds"] = feeds.snapshot()["feeds"].clone();
        }
        components.insert(c.id.clone(), entry);
    }
    let running = t.pipeline_running();
    let ok = unhealthy.is_empty() && running;
    let config = t.config_status();
    let body = json!({
        "status": if ok { "ok" } else if running { "unhealthy" } else { "not running" },
        "unhealthy": unhealthy,
        "components": components,
        "config": {
            "hash": config.hash,
            "applied_at": config.applied_at.map(|t| t.to_rfc3339()),
            "last_reload_error": config.last_reload_error,
        },
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
}

#[utoipa::path(get, path = "/health", tag = "health", description = "Every component's state", responses((status = 200, description = "Every component runs", body = serde_json::Value), (status = 503, description = "Components failed or are not running yet; `unhealthy` names them", body = serde_json::Value)))]
async fn health(State(s): State<ApiState>) -> Response {
    let (code, body) = health_report(&s.telemetry);
    (code, axum::Json(body)).into_response()
}

#[utoipa::path(get, path = "/health/ready", tag = "health", description = "Readiness probe: like /health without the components", responses((status = 200, description = "Ready", body = serde_json::Value), (status = 503, description = "Not ready", body = serde_json::Value)))]
async fn ready(State(s): State<ApiState>) -> Response {
    let (code, body) = health_report(&s.telemetry);
    (
        code,
        axum::Json(json!({ "status": body["status"], "unhealthy": body["unhealthy"] })),
    )
        .into_response()
}

/// `GET /components`: every component's counters, state and buffer fill, and the
/// pipeline's latency, as JSON (what `sluice top` polls). Open like `/metrics`.
#[utoipa::path(get, path = "/components", tag = "telemetry", description = "Every component's counters, state and buffer fill (what `sluice top` polls)", responses((status = 200, description = "Components", body = serde_json::Value)))]
async fn components(State(s): State<ApiState>) -> Response {
    axum::Json(crate::telemetry::snapshot::snapshot(&s.telemetry)).into_response()
}

#[utoipa::path(get, path = "/health/live", tag = "health", description = "Liveness probe: the process serves requests", responses((status = 200, description = "Alive", body = serde_json::Value)))]
async fn live() -> Response {
    (StatusCode::OK, axum::Json(json!({ "status": "ok" }))).into_response()
}

#[derive(serde::Deserialize)]
struct TapQuery {
    /// Component ids to tap, `*` wildcards allowed.
    components: Option<String>,
    /// Tap what the matching components read instead (`*` wildcards allowed).
    inputs_of: Option<String>,
    /// Stop after this many events.
    limit: Option<u64>,
    /// Keep one event in this many.
    sample: Option<u64>,
}

/// `GET /tap`: events leaving matching components, as NDJSON, until `limit`, the client
/// leaves, or shutdown.
#[utoipa::path(get, path = "/tap", tag = "control", description = "Live events leaving the matching components, as NDJSON; the header x-sluice-tap-matched says how many components matched", params(("components" = Option<String>, Query, description = "Component ids to tap, `*` wildcards allowed (default all)"), ("inputs_of" = Option<String>, Query, description = "Tap what the matching components read instead, `*` wildcards allowed"), ("limit" = Option<u64>, Query, description = "Stop after this many events"), ("sample" = Option<u64>, Query, description = "Keep one event in this many")), responses((status = 200, description = "One event per line", body = String, content_type = "application/x-ndjson")))]
async fn tap(
    State(s): State<ApiState>,
    axum::extract::Query(q): axum::extract::Query<TapQuery>,
) -> Response {
    let (selector, matched) = match &q.inputs_of {
        Some(of) => {
            let (outputs, matched) = s.telemetry.inputs_of(of);
            (crate::telemetry::TapSelector::Outputs(outputs), matched)
        }
        None => {
            let pattern = q.components.unwrap_or_else(|| "*".into());
            let matched = s.telemetry.count_matching(&pattern);
            let selector =
                crate::telemetry::TapSelector::Components(wildmatch::WildMatch::new(&pattern));
            (selector, matched)
        }
    };
    let (rx, guard) = s.telemetry.taps().attach(selector, q.sample.unwrap_or(1));
    let limit = q.limit.unwrap_or(u64::MAX);
    let shutdown = s.shutdown.clone();
    let stream = futures_util::stream::unfold((rx, guard, 0u64), move |(mut rx, guard, sent)| {
        let shutdown = shutdown.clone();
        async move {
            if sent >= limit {
                return None;
            }
            let line = tokio::select! {
                line = rx.recv() => line?,
                () = shutdown.cancelled() => return None,
            };
            Some((
                Ok::<_, std::convert::Infallible>(format!("{line}\n")),
                (rx, guard, sent + 1),
            ))
        }
    });
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            ),
            // How many components the request matched when it attached (0: nothing
            // flows until a reload adds one), for the client to say so.
            (
                HeaderName::from_static("x-sluice-tap-matched"),
                HeaderValue::from(matched),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

#[utoipa::path(post, path = "/reload", tag = "control", description = "Reloads the pipeline files; answers once the new pipeline runs or was refused", responses((status = 200, description = "Reloaded", body = serde_json::Value), (status = 404, description = "Reload is not available", body = serde_json::Value), (status = 422, description = "Refused: the old pipeline keeps running; `error` says why", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
async fn reload_now(State(s): State<ApiState>) -> Response {
    let Some(tx) = s.reload else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": "reload is not available" })),
        )
            .into_response();
    };
    let (reply, answer) = oneshot::channel();
    if tx.send(reply).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "error": "shutting down" })),
        )
            .into_response();
    }
    match answer.await {
        Ok(Ok(changes)) => (
            StatusCode::OK,
            axum::Json(json!({ "status": "reloaded", "changes": changes })),
        )
            .into_response(),
        Ok(Err(error)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({ "status": "refused", "error": error })),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "error": "shutting down" })),
        )
            .into_response(),
    }
}

fn unknown_status_feed(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": format!("no running status_feed source `{id}`") })),
    )
        .into_response()
}

/// `GET /status_feeds/{id}`: open incidents and feed states, as of the last poll.
#[utoipa::path(get, path = "/status_feeds/{id}", tag = "outages", description = "A status_feed source's feeds and open incidents, as of its last poll", params(("id" = String, Path, description = "The source's component id")), responses((status = 200, description = "The source's state", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value)))]
async fn status_feed_show(
    State(s): State<ApiState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match s.telemetry.status_feeds().get(&id) {
        Some(feeds) => (StatusCode::OK, axum::Json(feeds.snapshot())).into_response(),
        None => unknown_status_feed(&id),
    }
}

/// `GET /silences`: every silence with its origin (`api` or a component id) and status
/// (active, pending, expired).
#[utoipa::path(get, path = "/silences", tag = "silences", description = "Every silence with its origin and status", responses((status = 200, description = "Silences", body = serde_json::Value)))]
async fn silences_list() -> Response {
    let now = chrono::Utc::now();
    let list: Vec<serde_json::Value> = silences::global()
        .all()
        .iter()
        .map(|s| s.describe(now))
        .collect();
    (StatusCode::OK, axum::Json(json!({ "silences": list }))).into_response()
}

/// `POST /silences`: adds a silence (`matchers`, `starts_at`, `ends_at`, `comment`,
/// `created_by`), or with `id` updates it (a new id when the matchers or an active
/// silence's start change: the old one is expired); answers with its id.
#[utoipa::path(post, path = "/silences", tag = "silences", description = "Adds a silence (`matchers`, `starts_at`, `ends_at`, `comment`, `created_by`), or with `id` updates it; a change of matchers or of an active silence's start expires the old one and answers a new id", request_body(content = serde_json::Value, description = "The silence", content_type = "application/json"), responses((status = 200, description = "Added; `id` is its id", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "`id` names no silence", body = serde_json::Value), (status = 409, description = "The silence comes from the pipeline file", body = serde_json::Value), (status = 503, description = "The store is full", body = serde_json::Value)))]
async fn silences_add(body: axum::body::Bytes) -> Response {
    let spec = match serde_json::from_slice::<silences::SilenceSpec>(&body) {
        Ok(spec) => spec,
        Err(e) => return silence_error(StatusCode::BAD_REQUEST, format!("invalid silence: {e}")),
    };
    match silences::global().set(spec, chrono::Utc::now()) {
        Ok(id) => (StatusCode::OK, axum::Json(json!({ "id": id }))).into_response(),
        Err(e) => {
            let status = match e {
                silences::SetError::NotFound => StatusCode::NOT_FOUND,
                silences::SetError::FromConfig { .. } => StatusCode::CONFLICT,
                silences::SetError::Full => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            silence_error(status, e.to_string())
        }
    }
}

fn silence_error(status: StatusCode, error: String) -> Response {
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// `DELETE /silences/{id}`: expires the silence (it ends now and stays listed, as in
/// Alertmanager); 200 again when it had ended, 404 when there is no such silence.
#[utoipa::path(delete, path = "/silences/{id}", tag = "silences", description = "Expires a silence: it ends now and stays listed until five days after its end", params(("id" = String, Path, description = "The silence's id")), responses((status = 200, description = "Expired (`status`: expired)", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 409, description = "The silence comes from the pipeline file", body = serde_json::Value)))]
async fn silences_delete(axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    match silences::global().expire(&id, chrono::Utc::now()) {
        Ok(_) => (
            StatusCode::OK,
            axum::Json(json!({ "id": id, "status": "expired" })),
        )
            .into_response(),
        Err(silences::ExpireError::NotFound) => {
            silence_error(StatusCode::NOT_FOUND, format!("no silence `{id}`"))
        }
        Err(e) => silence_error(StatusCode::CONFLICT, e.to_string()),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "telemetry", description = "Prometheus text exposition of every component's metrics", responses((status = 200, description = "The exposition", body = String, content_type = "text/plain")))]
async fn metrics(State(s): State<ApiState>) -> Response {
    let t = s.telemetry;
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        t.render_prometheus(),
    )
        .into_response()
}
