//! `GET/POST /api/v2/silences`, `GET/DELETE /api/v2/silence/{id}`: the process-wide
//! silences in Alertmanager's shape. A `filter` keeps the silences that have each of
//! its matchers exactly (same name, operator and value), as Alertmanager 0.25 does; the
//! list holds expired silences too (amtool hides them unless `--expired`). Expiring an
//! unknown silence answers 500 `"silence not found"`, as Alertmanager does.

use std::cmp::Ordering;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{Refusal, error, parse_time, schema_error, unparsable, uuid_path};
use crate::matchers::{self, Matcher, Op};
use crate::silences::{
    self, ExpireError, SetError, Silence, SilenceSpec, State, check_times, rfc3339,
};

/// The end Alertmanager's JSON gives a silence that never ends.
const NEVER: &str = "9999-12-31T23:59:59.000Z";

#[utoipa::path(get, path = "/api/v2/silences", tag = "alertmanager", description = "Alertmanager v2: every silence (expired ones too), active first", params(("filter" = Option<Vec<String>>, Query, description = "A matcher (`name=value`, `name=~\"re\"`, …) a silence must have exactly; repeatable")), responses((status = 200, description = "gettableSilences", body = serde_json::Value), (status = 400, description = "A filter is not a matcher (a JSON string says why)", body = serde_json::Value)))]
pub(in crate::api) async fn list(Query(query): Query<Vec<(String, String)>>) -> Response {
    let filters = match super::filters(&query) {
        Ok(f) => f,
        Err(refused) => return refused.into_response(),
    };
    let now = Utc::now();
    let all = silences::global().all();
    let mut kept: Vec<&Silence> = all
        .iter()
        .map(|s| &**s)
        .filter(|s| filters.iter().all(|f| s.matchers.contains(f)))
        .collect();
    kept.sort_by(|a, b| order(a, b, now));
    let body: Vec<Value> = kept.iter().map(|s| gettable(s, now)).collect();
    axum::Json(body).into_response()
}

#[utoipa::path(post, path = "/api/v2/silences", tag = "alertmanager", description = "Alertmanager v2: makes a silence, or with `id` updates it (a new id when it cannot be updated in place)", request_body(content = serde_json::Value, description = "postableSilence: matchers, startsAt, endsAt, createdBy, comment, id?", content_type = "application/json"), responses((status = 200, description = "`silenceID`", body = serde_json::Value), (status = 400, description = "The silence is wrong (a JSON string says why)", body = serde_json::Value), (status = 404, description = "`id` names no silence", body = serde_json::Value), (status = 422, description = "The body does not fit the schema", body = serde_json::Value), (status = 503, description = "The store is full", body = serde_json::Value)))]
pub(in crate::api) async fn post(body: axum::body::Bytes) -> Response {
    let postable = match Postable::read(&body) {
        Ok(p) => p,
        Err(refused) => return refused.into_response(),
    };
    let now = Utc::now();
    if let Err(e) = check_times(Some(postable.starts_at), Some(postable.ends_at), now) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Failed to create silence: {e}"),
        );
    }
    let mut texts = Vec::with_capacity(postable.matchers.len());
    for (i, m) in postable.matchers.iter().enumerate() {
        if !matchers::is_label_name(&m.name) {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "silence invalid: invalid label matcher {i}: invalid label name {:?}",
                    m.name
                ),
            );
        }
        match Matcher::new(&m.name, Op::from_flags(m.is_regex, m.is_equal), &m.value) {
            Ok(matcher) => texts.push(matcher.to_string()),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("silence invalid: invalid label matcher {i}: {e}"),
                );
            }
        }
    }
    let spec = SilenceSpec {
        id: postable.id,
        matchers: texts,
        starts_at: Some(rfc3339(postable.starts_at)),
        ends_at: Some(rfc3339(postable.ends_at)),
        comment: postable.comment,
        created_by: postable.created_by,
    };
    match silences::global().set(spec, now) {
        Ok(id) => axum::Json(json!({ "silenceID": id })).into_response(),
        Err(SetError::NotFound) => error(StatusCode::NOT_FOUND, "silence not found"),
        Err(e @ (SetError::StartAfterEnd | SetError::EndInPast)) => error(
            StatusCode::BAD_REQUEST,
            format!("Failed to create silence: {e}"),
        ),
        Err(e @ SetError::Full) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[utoipa::path(get, path = "/api/v2/silence/{id}", tag = "alertmanager", description = "Alertmanager v2: one silence", params(("id" = String, Path, description = "The silence's id (a UUID)")), responses((status = 200, description = "gettableSilence", body = serde_json::Value), (status = 404, description = "No such silence (empty body, as Alertmanager answers)"), (status = 422, description = "The id is not a UUID", body = serde_json::Value)))]
pub(in crate::api) async fn get(Path(id): Path<String>) -> Response {
    if let Err(refused) = uuid_path(&id) {
        return refused.into_response();
    }
    match silences::global().all().iter().find(|s| s.id == id) {
        Some(s) => axum::Json(gettable(s, Utc::now())).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[utoipa::path(delete, path = "/api/v2/silence/{id}", tag = "alertmanager", description = "Alertmanager v2: expires a silence (it ends now and stays listed); expiring it again is no error", params(("id" = String, Path, description = "The silence's id (a UUID)")), responses((status = 200, description = "Expired (empty body)"), (status = 409, description = "The silence comes from the pipeline file", body = serde_json::Value), (status = 422, description = "The id is not a UUID", body = serde_json::Value), (status = 500, description = "No such silence: `\"silence not found\"`, as Alertmanager answers", body = serde_json::Value)))]
pub(in crate::api) async fn expire(Path(id): Path<String>) -> Response {
    if let Err(refused) = uuid_path(&id) {
        return refused.into_response();
    }
    match silences::global().expire(&id, Utc::now()) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(ExpireError::NotFound) => error(StatusCode::INTERNAL_SERVER_ERROR, "silence not found"),
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

/// Active first (ending soonest first), then pending (starting soonest), then expired
/// (ended last first), as Alertmanager lists them.
fn order(a: &Silence, b: &Silence, now: DateTime<Utc>) -> Ordering {
    let rank = |s: &Silence| match s.state(now) {
        State::Active => 0,
        State::Pending => 1,
        State::Expired => 2,
    };
    let end = |s: &Silence| s.ends_at.unwrap_or(DateTime::<Utc>::MAX_UTC);
    rank(a).cmp(&rank(b)).then_with(|| match a.state(now) {
        State::Active => end(a).cmp(&end(b)),
        State::Pending => a.starts_at.cmp(&b.starts_at),
        State::Expired => end(b).cmp(&end(a)),
    })
}

/// A silence as Alertmanager's `gettableSilence`.
fn gettable(s: &Silence, now: DateTime<Utc>) -> Value {
    let matchers: Vec<Value> = s
        .matchers
        .iter()
        .map(|m| {
            json!({
                "name": m.label,
                "value": m.value,
                "isRegex": m.op.is_regex(),
                "isEqual": m.op.is_equal(),
            })
        })
        .collect();
    let created_by = if s.spec.created_by.is_empty() {
        &s.origin
    } else {
        &s.spec.created_by
    };
    json!({
        "id": s.id,
        "status": { "state": s.state(now).as_str() },
        "updatedAt": rfc3339(s.updated_at),
        "comment": s.spec.comment,
        "createdBy": created_by,
        "startsAt": rfc3339(s.starts_at.unwrap_or(s.updated_at)),
        "endsAt": s.ends_at.map_or_else(|| NEVER.to_owned(), rfc3339),
        "matchers": matchers,
    })
}

/// A `postableSilence`, its fields checked in the order and with the messages of
/// Alertmanager's schema validation.
struct Postable {
    id: Option<String>,
    matchers: Vec<ApiMatcher>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    comment: String,
    created_by: String,
}

struct ApiMatcher {
    name: String,
    value: String,
    is_regex: bool,
    is_equal: bool,
}

impl Postable {
    fn read(body: &[u8]) -> Result<Self, Refusal> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| unparsable("silence", &e.to_string()))?;
        let Value::Object(o) = value else {
            return Err(unparsable("silence", "the body is not a JSON object"));
        };
        let comment = required_string(&o, "comment", "")?;
        let created_by = required_string(&o, "createdBy", "")?;
        let ends_at = required_string(&o, "endsAt", "")?;
        let ends_at = parse_time("endsAt", &ends_at)?;
        let matchers = match o.get("matchers") {
            None | Some(Value::Null) => {
                return Err(schema_error(602, "matchers in body is required"));
            }
            Some(Value::Array(list)) if list.is_empty() => {
                return Err(schema_error(
                    612,
                    "matchers in body should have at least 1 items",
                ));
            }
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, m)| api_matcher(i, m))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(schema_error(601, "matchers in body must be of type array")),
        };
        let starts_at = required_string(&o, "startsAt", "")?;
        let starts_at = parse_time("startsAt", &starts_at)?;
        let id = match o.get("id") {
            Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
            None | Some(Value::Null) | Some(Value::String(_)) => None,
            Some(_) => return Err(schema_error(601, "id in body must be of type string")),
        };
        Ok(Self {
            id,
            matchers,
            starts_at,
            ends_at,
            comment,
            created_by,
        })
    }
}

fn api_matcher(i: usize, m: &Value) -> Result<ApiMatcher, Refusal> {
    let Value::Object(o) = m else {
        return Err(schema_error(
            601,
            format!("matchers.{i} in body must be of type object"),
        ));
    };
    let flag = |field: &str, default: Option<bool>| match o.get(field) {
        Some(Value::Bool(b)) => Ok(*b),
        None | Some(Value::Null) => default
            .ok_or_else(|| schema_error(602, format!("matchers.{i}.{field} in body is required"))),
        Some(_) => Err(schema_error(
            601,
            format!("matchers.{i}.{field} in body must be of type boolean"),
        )),
    };
    let is_equal = flag("isEqual", Some(true))?;
    let is_regex = flag("isRegex", None)?;
    let prefix = format!("matchers.{i}.");
    let name = required_string(o, "name", &prefix)?;
    let value = match o.get("value") {
        Some(Value::String(v)) => v.clone(),
        None | Some(Value::Null) => {
            return Err(schema_error(
                602,
                format!("{prefix}value in body is required"),
            ));
        }
        Some(_) => {
            return Err(schema_error(
                601,
                format!("{prefix}value in body must be of type string"),
            ));
        }
    };
    Ok(ApiMatcher {
        name,
        value,
        is_regex,
        is_equal,
    })
}

/// A required string field; empty counts as missing, as in go-swagger.
fn required_string(o: &Map<String, Value>, field: &str, prefix: &str) -> Result<String, Refusal> {
    match o.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(schema_error(
            602,
            format!("{prefix}{field} in body is required"),
        )),
        Some(_) => Err(schema_error(
            601,
            format!("{prefix}{field} in body must be of type string"),
        )),
    }
}
