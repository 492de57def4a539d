//! Subscriptions changed through the API, and how they are described and tested.
//!
//! A request body is an object of a subscription's fields (those of the pipeline file)
//! plus `output`, one of the transform's `api_outputs` (optional when it has one), and
//! `component` (which transform; read by the API). Everything is checked before
//! anything is written: the fields, their sizes, the name (unique in the transform,
//! file subscriptions included), the output, and that it compiles.

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value as Json, json};
use vrl::value::Value;

use super::api_list::{ApiSubscription, ApplyError, MAX_API_SUBSCRIPTIONS};
use super::catalog::Catalog;
use super::recent::Seen;
use super::set::{self, Fields, SubscriptionSet, SubscriptionSpec};
use crate::event::{Event, SourceId};
use crate::matchers::Op;
use crate::program::{Outcome, Runner};
use crate::state_file::lock;

/// Characters of a name, and of each listed value.
const MAX_TEXT: usize = 256;
/// Values in one list (`event_types`, `services`, …, `custom_filters`).
const MAX_LIST: usize = 100;
/// Characters of a `condition`.
const MAX_CONDITION: usize = 4096;
/// Regex matchers (`=~`, `!~`) in one subscription, and in all of a transform's made
/// ones: each may compile to a quarter of a megabyte, so their number bounds memory.
const MAX_REGEXES: usize = 8;
const MAX_REGEXES_IN_ALL: usize = 200;

fn regexes(spec: &SubscriptionSpec) -> usize {
    spec.custom_filters
        .0
        .iter()
        .filter(|m| matches!(m.op, Op::Regex | Op::NotRegex))
        .count()
}

/// Refuses `spec` when the made subscriptions `others` and it would hold too many
/// regexes.
fn regex_budget(others: &[ApiSubscription], spec: &SubscriptionSpec) -> Result<(), Refusal> {
    let total: usize = others.iter().map(|s| regexes(&s.spec)).sum::<usize>() + regexes(spec);
    if total > MAX_REGEXES_IN_ALL {
        return Err(Refusal::Conflict(format!(
            "the transform's subscriptions made through the API would hold more than {MAX_REGEXES_IN_ALL} regex matchers"
        )));
    }
    Ok(())
}

/// Why a change was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// 400: the request is wrong.
    Invalid(String),
    /// 404: no such subscription.
    Missing(String),
    /// 409: it conflicts with what exists (a name taken, a file subscription).
    Conflict(String),
    /// 503: the change could not be stored.
    Storage(String),
}

impl From<ApplyError<Refusal>> for Refusal {
    fn from(e: ApplyError<Refusal>) -> Self {
        match e {
            ApplyError::Refused(r) => r,
            ApplyError::Storage(s) => Refusal::Storage(s),
        }
    }
}

/// A request body: the output, the criteria as given and as parsed.
struct Request {
    output: String,
    body: Json,
    spec: SubscriptionSpec,
}

fn parse(catalog: &Catalog, body: &Json) -> Result<Request, Refusal> {
    let Json::Object(fields) = body else {
        return Err(Refusal::Invalid("the body must be a JSON object".into()));
    };
    let mut fields: Map<String, Json> = fields.clone();
    fields.remove("component");
    let output = match fields.remove("output") {
        Some(Json::String(o)) => o,
        Some(_) => return Err(Refusal::Invalid("`output` must be a string".into())),
        None => match catalog.api_outputs.as_slice() {
            [only] => only.clone(),
            _ => {
                return Err(Refusal::Invalid(format!(
                    "name the `output`: one of {}",
                    catalog.api_outputs.join(", ")
                )));
            }
        },
    };
    if !catalog.api_outputs.contains(&output) {
        return Err(Refusal::Invalid(format!(
            "`output` `{}` is not one of the transform's `api_outputs` ({})",
            crate::text::clip(&output, 100),
            catalog.api_outputs.join(", ")
        )));
    }
    let body = Json::Object(fields);
    let spec: SubscriptionSpec = serde_json::from_value(body.clone()).map_err(|e| {
        Refusal::Invalid(format!(
            "invalid subscription: {}",
            crate::text::clip(&e.to_string(), 200)
        ))
    })?;
    check_sizes(&spec)?;
    set::check_name(&spec.name).map_err(Refusal::Invalid)?;
    // Names made here are letters, digits, `-` and `_`: no spaces, controls or
    // invisible characters that would make one look like another in a listing.
    if !spec
        .name
        .chars()
        .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Refusal::Invalid(
            "`name` may hold letters, digits, `-` and `_` only".into(),
        ));
    }
    if !(spec.resolve_after_hours.is_finite() && spec.resolve_after_hours > 0.0) {
        return Err(Refusal::Invalid(
            "`resolve_after_hours` must be a positive number".into(),
        ));
    }
    SubscriptionSet::compile(std::slice::from_ref(&spec))
        .map_err(|e| Refusal::Invalid(crate::text::clip(&e.0, 300)))?;
    Ok(Request { output, body, spec })
}

fn check_sizes(spec: &SubscriptionSpec) -> Result<(), Refusal> {
    let long =
        |what: &str| Refusal::Invalid(format!("`{what}` is longer than {MAX_TEXT} characters"));
    if spec.name.chars().count() > MAX_TEXT {
        return Err(long("name"));
    }
    if spec
        .project_id
        .as_ref()
        .is_some_and(|p| p.chars().count() > MAX_TEXT)
    {
        return Err(long("project_id"));
    }
    for (what, list) in [
        ("event_types", &spec.event_types),
        ("services", &spec.services),
        ("regions", &spec.regions),
        ("severity_levels", &spec.severity_levels),
    ] {
        if list.len() > MAX_LIST {
            return Err(Refusal::Invalid(format!(
                "`{what}` lists more than {MAX_LIST} values"
            )));
        }
        if list.iter().any(|v| v.chars().count() > MAX_TEXT) {
            return Err(Refusal::Invalid(format!(
                "a value of `{what}` is longer than {MAX_TEXT} characters"
            )));
        }
    }
    let filters = &spec.custom_filters.0;
    if regexes(spec) > MAX_REGEXES {
        return Err(Refusal::Invalid(format!(
            "`custom_filters` has more than {MAX_REGEXES} regex matchers (=~, !~)"
        )));
    }
    if filters.len() > MAX_LIST {
        return Err(Refusal::Invalid(format!(
            "`custom_filters` has more than {MAX_LIST} matchers"
        )));
    }
    if filters
        .iter()
        .any(|m| m.label.chars().count() > MAX_TEXT || m.value.chars().count() > MAX_TEXT)
    {
        return Err(long("custom_filters"));
    }
    if spec
        .condition
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CONDITION)
    {
        return Err(Refusal::Invalid(format!(
            "`condition` is longer than {MAX_CONDITION} characters"
        )));
    }
    Ok(())
}

fn name_taken(catalog: &Catalog, others: &[ApiSubscription], name: &str) -> Option<Refusal> {
    if catalog.file_has(name) {
        return Some(Refusal::Conflict(format!(
            "the pipeline file declares a subscription named `{name}`"
        )));
    }
    others
        .iter()
        .any(|s| s.spec.name == name)
        .then(|| Refusal::Conflict(format!("a subscription named `{name}` exists")))
}

fn list_of(catalog: &Catalog) -> Result<&super::api_list::SharedApiList, Refusal> {
    catalog
        .api
        .as_ref()
        .ok_or_else(|| Refusal::Storage("this transform keeps no state (no data_dir)".into()))
}

/// Makes a subscription from `body`; it routes from the next batch on.
pub(crate) fn create(catalog: &Catalog, body: &Json) -> Result<Json, Refusal> {
    if catalog.api_outputs.is_empty() {
        return Err(Refusal::Conflict(format!(
            "`{}` has no `api_outputs`: subscriptions made through the API need an output to go to",
            catalog.id
        )));
    }
    let req = parse(catalog, body)?;
    let list = list_of(catalog)?;
    let now = Utc::now();
    let made = lock(list).apply(|subs| {
        if subs.len() >= MAX_API_SUBSCRIPTIONS {
            return Err(Refusal::Conflict(format!(
                "`{}` holds {MAX_API_SUBSCRIPTIONS} subscriptions made through the API already",
                catalog.id
            )));
        }
        if let Some(r) = name_taken(catalog, subs, &req.spec.name) {
            return Err(r);
        }
        regex_budget(subs, &req.spec)?;
        let sub = ApiSubscription {
            id: uuid::Uuid::new_v4().to_string(),
            output: req.output,
            created_at: now,
            updated_at: now,
            body: req.body,
            spec: req.spec,
        };
        subs.push(sub.clone());
        Ok(sub)
    })?;
    applied(catalog);
    Ok(describe_api(catalog, &made))
}

/// Replaces subscription `id`'s fields and output with `body`'s. Its recent matches are
/// forgotten, and a rename drops its pending auto-resolves (they are kept by name).
pub(crate) fn replace(catalog: &Catalog, id: &str, body: &Json) -> Result<Json, Refusal> {
    let req = parse(catalog, body)?;
    let list = list_of(catalog)?;
    let mut before = None;
    let changed = lock(list).apply(|subs| {
        let at = subs
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| Refusal::Missing(format!("no subscription `{id}`")))?;
        let others: Vec<ApiSubscription> = subs
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != at)
            .map(|(_, s)| s.clone())
            .collect();
        if let Some(r) = name_taken(catalog, &others, &req.spec.name) {
            return Err(r);
        }
        regex_budget(&others, &req.spec)?;
        let sub = &mut subs[at];
        before = Some(sub.spec.name.clone());
        sub.output = req.output;
        sub.body = req.body;
        sub.spec = req.spec;
        sub.updated_at = Utc::now();
        Ok(sub.clone())
    })?;
    // What it matched under its old criteria is not what it matches now.
    if let Some(old) = before {
        catalog.recent.forget(&old);
    }
    applied(catalog);
    Ok(describe_api(catalog, &changed))
}

/// Deletes subscription `id`; its pending auto-resolves go with it.
pub(crate) fn delete(catalog: &Catalog, id: &str) -> Result<(), Refusal> {
    let list = list_of(catalog)?;
    let gone = lock(list).apply(|subs| {
        let at = subs
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| Refusal::Missing(format!("no subscription `{id}`")))?;
        Ok(subs.remove(at))
    })?;
    catalog.recent.forget(&gone.spec.name);
    applied(catalog);
    Ok(())
}

/// Compiles the change in now, so the API's answer means it routes.
fn applied(catalog: &Catalog) {
    if let Err(e) = catalog.recompile() {
        tracing::error!(component_id = %catalog.id, error = %e, "cannot recompile the subscriptions");
    }
}

fn spec_json(spec: &SubscriptionSpec) -> Map<String, Json> {
    match serde_json::to_value(spec) {
        Ok(Json::Object(m)) => m,
        _ => Map::new(),
    }
}

/// A file subscription as the API shows it (read-only).
pub(crate) fn describe_file(catalog: &Catalog, spec: &SubscriptionSpec) -> Json {
    let mut m = spec_json(spec);
    m.insert("id".into(), json!(format!("{}.{}", catalog.id, spec.name)));
    m.insert("component".into(), json!(catalog.id.as_ref()));
    m.insert("managed_by".into(), json!("file"));
    m.insert(
        "output".into(),
        json!(format!("{}.{}", catalog.id, spec.name)),
    );
    m.insert("active".into(), json!(true));
    Json::Object(m)
}

/// An API subscription as the API shows it.
pub(crate) fn describe_api(catalog: &Catalog, sub: &ApiSubscription) -> Json {
    let mut m = spec_json(&sub.spec);
    let problem = catalog.problem(&sub.id);
    m.insert("id".into(), json!(sub.id));
    m.insert("component".into(), json!(catalog.id.as_ref()));
    m.insert("managed_by".into(), json!("api"));
    m.insert(
        "output".into(),
        json!(format!("{}.{}", catalog.id, sub.output)),
    );
    m.insert(
        "created_at".into(),
        json!(sub.created_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    m.insert(
        "updated_at".into(),
        json!(sub.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    m.insert("active".into(), json!(problem.is_none()));
    if let Some(p) = problem {
        m.insert("problem".into(), json!(p));
    }
    Json::Object(m)
}

/// A subscription of `catalog` found by id: its spec and description.
pub(crate) fn find(catalog: &Catalog, id: &str) -> Option<(SubscriptionSpec, Json)> {
    if let Some(name) = id
        .strip_prefix(catalog.id.as_ref())
        .and_then(|r| r.strip_prefix('.'))
    {
        let file = catalog.file_specs();
        if let Some(spec) = file.iter().find(|s| s.name == name) {
            return Some((spec.clone(), describe_file(catalog, spec)));
        }
    }
    let list = catalog.api.as_ref()?;
    let sub = lock(list).subs.iter().find(|s| s.id == id).cloned()?;
    Some((sub.spec.clone(), describe_api(catalog, &sub)))
}

/// Every subscription of `catalog`: the file's, then the API's.
pub(crate) fn all(catalog: &Catalog) -> Vec<Json> {
    let mut out: Vec<Json> = catalog
        .file_specs()
        .iter()
        .map(|s| describe_file(catalog, s))
        .collect();
    if let Some(list) = &catalog.api {
        let subs = lock(list).subs.clone();
        out.extend(subs.iter().map(|s| describe_api(catalog, s)));
    }
    out
}

fn seen_json(s: &Seen) -> Json {
    json!({
        "seen_at": s.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "event": serde_json::to_value(&s.value).unwrap_or(Json::Null),
    })
}

/// The recent matches of subscription `spec`, newest first, at most `limit`.
pub(crate) fn matched(catalog: &Catalog, spec: &SubscriptionSpec, limit: usize) -> Json {
    let seen = catalog.recent.matches(&spec.name);
    let events: Vec<Json> = seen.iter().rev().take(limit).map(seen_json).collect();
    json!({ "count": events.len(), "events": events })
}

/// Which recent events `spec` matches, and whether a sample event made from its own
/// criteria does (a subscription that matches not even that is likely miswritten).
pub(crate) fn test(catalog: &Catalog, spec: &SubscriptionSpec) -> Result<Json, Refusal> {
    let one =
        SubscriptionSet::compile(std::slice::from_ref(spec)).map_err(|e| Refusal::Invalid(e.0))?;
    let mut runner = one.subs[0]
        .condition
        .as_ref()
        .map(|p| Runner::new(Arc::clone(p)));
    let mut check = |value: &Value| -> bool {
        let mut hits = Vec::new();
        one.matching_linear(&Fields::of(value), &mut hits);
        if hits.is_empty() {
            return false;
        }
        let Some(runner) = runner.as_mut() else {
            return true;
        };
        let mut event = Event::new(value.clone(), SourceId::intern(&catalog.id), Utc::now());
        matches!(
            runner.run_event(&mut event),
            Outcome::Done(Value::Boolean(true))
        )
    };
    let recent = catalog.recent.events();
    let hits: Vec<Json> = recent
        .iter()
        .rev()
        .filter(|s| check(&s.value))
        .map(seen_json)
        .collect();
    let sample = sample_event(spec);
    let sample_matched = check(&sample);
    Ok(json!({
        "recent": { "checked": recent.len(), "matched": hits.len(), "events": hits },
        "sample": {
            "event": serde_json::to_value(&sample).unwrap_or(Json::Null),
            "matched": sample_matched,
        },
    }))
}

/// An alert made from the first value of each of `spec`'s criteria and the labels its
/// equality matchers ask for.
fn sample_event(spec: &SubscriptionSpec) -> Value {
    let first = |list: &[String], default: &str| {
        Value::from(list.first().map_or(default, String::as_str).to_owned())
    };
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut labels = vrl::value::ObjectMap::new();
    for m in &spec.custom_filters.0 {
        if m.op == Op::Equal {
            labels.insert(m.label.as_str().into(), Value::from(m.value.clone()));
        }
    }
    let mut map = vrl::value::ObjectMap::new();
    map.insert("id".into(), Value::from(uuid::Uuid::new_v4().to_string()));
    map.insert("time".into(), Value::from(now.clone()));
    map.insert("starts_at".into(), Value::from(now));
    map.insert("event_type".into(), first(&spec.event_types, "alert"));
    map.insert("source".into(), Value::from("sluice"));
    map.insert("kind".into(), Value::from("subscription_test"));
    map.insert("status".into(), Value::from("firing"));
    map.insert("severity".into(), first(&spec.severity_levels, "info"));
    map.insert("service".into(), first(&spec.services, "sluice"));
    map.insert("region".into(), first(&spec.regions, "local"));
    if let Some(p) = &spec.project_id {
        map.insert("project".into(), Value::from(p.clone()));
    }
    map.insert(
        "summary".into(),
        Value::from(format!("Test event for subscription {}", spec.name)),
    );
    map.insert(
        "fingerprint".into(),
        Value::from(format!("subscription-test-{}", spec.name)),
    );
    map.insert("labels".into(), Value::Object(labels));
    Value::Object(map)
}

#[cfg(test)]
mod tests;
