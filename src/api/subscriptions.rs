//! `/subscriptions`: the subscriptions of every `subscription` transform, and those made
//! at runtime (who receives which alerts).
//!
//! - `GET /subscriptions?component=`: every subscription, the pipeline file's first
//!   (`managed_by: file`, read-only) then those made here (`managed_by: api`).
//! - `POST /subscriptions`: a subscription's fields (`name`, `project_id`,
//!   `event_types`, `services`, `regions`, `severity_levels`, `custom_filters`,
//!   `enabled`, `auto_resolve`, `resolve_after_hours`, `condition`), `output` (one of
//!   the transform's `api_outputs`; optional when it has one) and `component` (when
//!   several transforms take them). 201 with the subscription once it is stored and
//!   routes.
//! - `GET`, `PUT` (the same body as `POST`), `DELETE /subscriptions/{id}`.
//! - `GET /subscriptions/{id}/test`: the recent events it would match, and whether a
//!   sample event made from its criteria matches.
//! - `GET /subscriptions/{id}/events?limit=`: its recent matches, newest first.
//!
//! Made subscriptions live in `<data_dir>/subscriptions/<component>.json`: they survive
//! restarts and reloads. The file's subscriptions answer 409 to a change.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use crate::transforms::subscription::catalog::{CATALOGS, Catalog};
use crate::transforms::subscription::manage::{self, Refusal};

/// Matches `GET /subscriptions/{id}/events` returns at most.
const MAX_EVENTS: usize = 50;

fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": text.into() }))).into_response()
}

fn refused(r: Refusal) -> Response {
    match r {
        Refusal::Invalid(e) => error(StatusCode::BAD_REQUEST, e),
        Refusal::Missing(e) => error(StatusCode::NOT_FOUND, e),
        Refusal::Conflict(e) => error(StatusCode::CONFLICT, e),
        Refusal::Storage(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// The body as a JSON object, or why not (a 400).
fn body_object(body: &[u8]) -> Result<Json, String> {
    match serde_json::from_slice::<Json>(body) {
        Ok(v @ Json::Object(_)) => Ok(v),
        Ok(_) => Err("the body must be a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// The catalog holding subscription `id`, and its spec and description.
fn locate(
    id: &str,
) -> Option<(
    Arc<Catalog>,
    crate::transforms::subscription::SubscriptionSpec,
    Json,
)> {
    CATALOGS.all().into_iter().find_map(|(_, c)| {
        let (spec, d) = manage::find(&c, id)?;
        Some((c, spec, d))
    })
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no subscription `{}`", crate::text::clip(id, 100)),
    )
}

/// `GET /subscriptions`.
#[utoipa::path(get, path = "/subscriptions", tag = "subscriptions", description = "Every subscription: the pipeline file's (read-only) and those made through the API", params(("component" = Option<String>, Query, description = "Only this transform's")), responses((status = 200, description = "Subscriptions", body = serde_json::Value)))]
pub(super) async fn list(Query(q): Query<HashMap<String, String>>) -> Response {
    let mut out = Vec::new();
    let all = CATALOGS.all();
    if let Some(c) = q.get("component")
        && !all.iter().any(|(id, _)| id == c)
    {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no subscription transform runs with id `{}`",
                crate::text::clip(c, 64)
            ),
        );
    }
    for (id, catalog) in all {
        if q.get("component").is_some_and(|c| *c != id) {
            continue;
        }
        out.extend(manage::all(&catalog));
    }
    axum::Json(json!({ "count": out.len(), "subscriptions": out })).into_response()
}

/// `POST /subscriptions`.
#[utoipa::path(post, path = "/subscriptions", tag = "subscriptions", description = "Makes a subscription; it routes from the next batch and survives reloads and restarts", request_body(content = serde_json::Value, description = "A subscription's fields with `output` (one of the transform's `api_outputs`) and `component` when several transforms take them", content_type = "application/json"), responses((status = 201, description = "Made", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 409, description = "The name is taken, or the transform takes no subscriptions", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
pub(super) async fn create(body: axum::body::Bytes) -> Response {
    let body = match body_object(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let named = match body.get("component") {
        None => None,
        Some(Json::String(c)) => Some(c.clone()),
        Some(_) => return error(StatusCode::BAD_REQUEST, "`component` must be a string"),
    };
    let (_, catalog) = match super::pick::pick(
        named.as_ref(),
        CATALOGS.all(),
        "several subscription transforms run: name one in `component`",
        "no subscription transform runs with that id",
    ) {
        Ok(found) => found,
        Err((status, text)) => return error(status, text),
    };
    match manage::create(&catalog, &body) {
        Ok(d) => {
            tracing::info!(component_id = %catalog.id, subscription = %d["id"], "subscription made through the API");
            (StatusCode::CREATED, axum::Json(d)).into_response()
        }
        Err(r) => refused(r),
    }
}

/// `GET /subscriptions/{id}`.
#[utoipa::path(get, path = "/subscriptions/{id}", tag = "subscriptions", description = "One subscription", params(("id" = String, Path, description = "Its id (`<component>.<name>` for the file's)")), responses((status = 200, description = "The subscription", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value)))]
pub(super) async fn show(Path(id): Path<String>) -> Response {
    match locate(&id) {
        Some((_, _, d)) => axum::Json(d).into_response(),
        None => not_found(&id),
    }
}

fn read_only(d: &Json) -> Option<Response> {
    (d["managed_by"] == "file").then(|| {
        error(
            StatusCode::CONFLICT,
            "this subscription is declared in the pipeline file: change it there",
        )
    })
}

/// `PUT /subscriptions/{id}`.
#[utoipa::path(put, path = "/subscriptions/{id}", tag = "subscriptions", description = "Replaces a subscription made through the API", params(("id" = String, Path, description = "Its id")), request_body(content = serde_json::Value, description = "The same fields as when making one", content_type = "application/json"), responses((status = 200, description = "Changed", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 409, description = "Declared in the pipeline file, or the name is taken", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
pub(super) async fn update(Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let body = match body_object(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some((catalog, _, d)) = locate(&id) else {
        return not_found(&id);
    };
    if let Some(r) = read_only(&d) {
        return r;
    }
    if body
        .get("component")
        .is_some_and(|c| c.as_str() != Some(catalog.id.as_ref()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "a subscription cannot move to another component: delete it and make it there",
        );
    }
    match manage::replace(&catalog, &id, &body) {
        Ok(d) => axum::Json(d).into_response(),
        Err(r) => refused(r),
    }
}

/// `DELETE /subscriptions/{id}`.
#[utoipa::path(delete, path = "/subscriptions/{id}", tag = "subscriptions", description = "Deletes a subscription made through the API", params(("id" = String, Path, description = "Its id")), responses((status = 200, description = "Deleted", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value), (status = 409, description = "Declared in the pipeline file", body = serde_json::Value), (status = 503, description = "A store or the pipeline cannot answer now; `error` says why", body = serde_json::Value)))]
pub(super) async fn delete(Path(id): Path<String>) -> Response {
    let Some((catalog, _, d)) = locate(&id) else {
        return not_found(&id);
    };
    if let Some(r) = read_only(&d) {
        return r;
    }
    match manage::delete(&catalog, &id) {
        Ok(()) => axum::Json(json!({ "deleted": id })).into_response(),
        Err(r) => refused(r),
    }
}

/// `GET /subscriptions/{id}/test`.
#[utoipa::path(get, path = "/subscriptions/{id}/test", tag = "subscriptions", description = "Which recent events a subscription matches, and whether a sample made from its criteria does", params(("id" = String, Path, description = "Its id")), responses((status = 200, description = "The test", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value)))]
pub(super) async fn test(Path(id): Path<String>) -> Response {
    let Some((catalog, spec, d)) = locate(&id) else {
        return not_found(&id);
    };
    // A test runs the subscription's VRL condition over the recent events: off the
    // async workers, and one at a time, so tests cannot stall the API or the pipeline.
    let Ok(_turn) = TESTS.try_acquire() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "a subscription test is already running; try again when it is done",
        );
    };
    let tested = tokio::task::spawn_blocking(move || manage::test(&catalog, &spec)).await;
    match tested {
        Ok(Ok(mut answer)) => {
            answer["subscription"] = d;
            axum::Json(answer).into_response()
        }
        Ok(Err(r)) => refused(r),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the test failed: {e}"),
        ),
    }
}

/// One subscription test at a time.
static TESTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// `GET /subscriptions/{id}/events`.
#[utoipa::path(get, path = "/subscriptions/{id}/events", tag = "subscriptions", description = "A subscription's recent matches, newest first", params(("id" = String, Path, description = "Its id"), ("limit" = Option<u32>, Query, description = "At most 50")), responses((status = 200, description = "Matches", body = serde_json::Value), (status = 400, description = "The request is wrong; `error` names what", body = serde_json::Value), (status = 404, description = "No such item; `error` says which", body = serde_json::Value)))]
pub(super) async fn events(
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match super::incidents::number(&q, "limit", MAX_EVENTS, MAX_EVENTS) {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some((catalog, spec, _)) = locate(&id) else {
        return not_found(&id);
    };
    axum::Json(manage::matched(&catalog, &spec, limit)).into_response()
}
