//! `POST /api/v2/alerts` and `GET /api/v2/alerts`: Prometheus (or Grafana, or anything
//! that notifies Alertmanager) sends its alerts to sluice as to Alertmanager. They are
//! checked as Alertmanager checks them, then turned into the webhook document a real
//! Alertmanager would send and decoded by the same `alertmanager` decoder, so an alert
//! gets the same events and fingerprint whether Prometheus sends it here or through an
//! Alertmanager. The events go to the `api` source (`?source=` when several run).
//!
//! A request is taken whole or not at all (Alertmanager keeps the valid alerts of a
//! partly invalid batch; sluice answers with the same message and keeps none). A firing
//! alert muted by a silence when it arrives is not sent on, as in Alertmanager: Prometheus
//! sends it again while it fires, so once the silence ends it is notified.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::received::Alert;
use super::{Refusal, error, schema_error, unparsable};
use crate::alert::Severity;
use crate::api::ApiState;
use crate::matchers::{self, Matcher, Op};
use crate::silences::{self, rfc3339};
use crate::sources::api::{Handed, INTAKES};
use crate::sources::webhook::decoder::{Decoder, Stamp};

/// Alerts one request may carry (Prometheus sends at most 64).
const MAX_ALERTS_PER_REQUEST: usize = 1000;
/// An alert without an end ends this long after it arrives (Alertmanager's default
/// `resolve_timeout`).
const RESOLVE_TIMEOUT: TimeDelta = TimeDelta::minutes(5);

static DECODER: LazyLock<Result<Arc<Decoder>, String>> = LazyLock::new(|| {
    Decoder::resolve("alertmanager", Severity::Medium, false)
        .map(Arc::new)
        .map_err(|e| e.to_string())
});

#[utoipa::path(post, path = "/api/v2/alerts", tag = "alertmanager", description = "Alertmanager v2: alerts into the pipeline through its `api` source, decoded as an Alertmanager webhook would be", params(("source" = Option<String>, Query, description = "The `api` source, when several run")), request_body(content = serde_json::Value, description = "postableAlerts: [{labels, annotations?, startsAt?, endsAt?, generatorURL?}]", content_type = "application/json"), responses((status = 200, description = "Taken (empty body)"), (status = 400, description = "An alert is wrong (a JSON string says why); none was taken", body = serde_json::Value), (status = 422, description = "The body does not fit the schema", body = serde_json::Value), (status = 503, description = "The pipeline cannot take them now", body = serde_json::Value)))]
pub(in crate::api) async fn post(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let now = Utc::now();
    let alerts = match read(&body, now) {
        Ok(alerts) => alerts,
        Err(refused) => return refused.into_response(),
    };
    let (receiver, intake) = match crate::api::pick::pick(
        q.get("source"),
        INTAKES.all(),
        "several `api` sources run: name one in `?source=`",
        "no `api` source runs (add one of `type: api` to the pipeline to take alerts)",
    ) {
        Ok(found) => found,
        Err((status, text)) => return error(status, text),
    };
    if !s.received.has_room(alerts.len(), now) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} alerts are held already", super::received::MAX_ALERTS),
        );
    }
    let decoder = match &*DECODER {
        Ok(d) => Arc::clone(d),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.clone()),
    };
    // Muted on arrival: kept for GET, not sent on.
    let store = silences::global();
    let (muted, sent): (Vec<Alert>, Vec<Alert>) = alerts
        .into_iter()
        .map(|a| Alert {
            receiver: receiver.clone(),
            ..a
        })
        .partition(|a| a.ends_at > now && store.mutes(&a.labels, now));
    for alert in muted {
        s.received.keep(alert);
    }
    if sent.is_empty() {
        return StatusCode::OK.into_response();
    }
    let document = webhook_document(&sent, &receiver, now);
    let decoded = tokio::task::spawn_blocking(move || {
        let metadata = Value::Object(Map::from_iter([
            ("decoder".to_owned(), json!("alertmanager")),
            ("headers".to_owned(), json!({})),
        ]));
        let request_id = uuid::Uuid::new_v4().to_string();
        let stamp = Stamp {
            now,
            request_id: &request_id,
        };
        decoder.decode(document.into(), &metadata.into(), &stamp)
    })
    .await;
    let values = match decoded {
        Ok(Ok(values)) => values,
        Ok(Err(rejection)) => return error(StatusCode::BAD_REQUEST, rejection.message),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "decoding failed"),
    };
    match intake.take(values).await {
        Handed::Delivered | Handed::Pending => {
            for alert in sent {
                s.received.keep(alert);
            }
            StatusCode::OK.into_response()
        }
        Handed::Full => error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline is full"),
        Handed::Failed | Handed::Rejected => {
            error(StatusCode::SERVICE_UNAVAILABLE, "delivery failed")
        }
        Handed::Stopped => error(StatusCode::SERVICE_UNAVAILABLE, "the source is stopping"),
    }
}

#[utoipa::path(get, path = "/api/v2/alerts", tag = "alertmanager", description = "Alertmanager v2: the alerts posted here that have not ended, with the silences muting them", params(("active" = Option<bool>, Query, description = "Include alerts nothing mutes (default true)"), ("silenced" = Option<bool>, Query, description = "Include silenced alerts (default true)"), ("inhibited" = Option<bool>, Query, description = "Include inhibited alerts (default true; sluice inhibits none here)"), ("unprocessed" = Option<bool>, Query, description = "Include unprocessed alerts (default true; sluice has none)"), ("filter" = Option<Vec<String>>, Query, description = "A label matcher the alert must satisfy; repeatable"), ("receiver" = Option<String>, Query, description = "A regex the receiver (the `api` source id) must match")), responses((status = 200, description = "gettableAlerts", body = serde_json::Value), (status = 400, description = "A filter or the receiver is wrong (a JSON string says why)", body = serde_json::Value)))]
pub(in crate::api) async fn list(
    State(s): State<ApiState>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let flag = |name: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<bool>().ok())
            .unwrap_or(true)
    };
    let (active, silenced) = (flag("active"), flag("silenced"));
    let filters = match super::filters(&query) {
        Ok(f) => f,
        Err(refused) => return refused.into_response(),
    };
    let receiver = match query.iter().find(|(k, _)| k == "receiver") {
        Some((_, re)) => match crate::matchers::anchored_regex(re) {
            Ok(re) => Some(re),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "failed to parse receiver param: {}",
                        crate::text::regex_error(&e)
                    ),
                );
            }
        },
        None => None,
    };
    let now = Utc::now();
    let all_silences = silences::global().all();
    let mut out = Vec::new();
    for a in s.received.current(now) {
        if !filters.iter().all(|f| filter_matches(f, &a.labels)) {
            continue;
        }
        if receiver
            .as_ref()
            .is_some_and(|re| !re.is_match(&a.receiver))
        {
            continue;
        }
        let silenced_by: Vec<&str> = all_silences
            .iter()
            .filter(|s| s.mutes(&a.labels, now))
            .map(|s| s.id.as_str())
            .collect();
        let muted = !silenced_by.is_empty();
        if (muted && !silenced) || (!muted && !active) {
            continue;
        }
        out.push(json!({
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": rfc3339(a.starts_at),
            "endsAt": rfc3339(a.ends_at),
            "updatedAt": rfc3339(a.updated_at),
            "generatorURL": a.generator_url,
            "fingerprint": a.fingerprint,
            "receivers": [{ "name": a.receiver }],
            "status": {
                "state": if muted { "suppressed" } else { "active" },
                "silencedBy": silenced_by,
                "inhibitedBy": [],
            },
        }));
    }
    axum::Json(out).into_response()
}

/// Alertmanager's alert filter: a matcher with an empty value also passes an alert
/// without the label (`=`/`=~`) or with it (`!=`/`!~`).
fn filter_matches(m: &Matcher, labels: &BTreeMap<String, String>) -> bool {
    match (m.value.is_empty(), m.op, labels.get(&m.label)) {
        (true, Op::Equal | Op::Regex, None) | (true, Op::NotEqual | Op::NotRegex, Some(_)) => true,
        _ => m.matches_labels(labels),
    }
}

/// The document a real Alertmanager's webhook would send for `alerts`.
fn webhook_document(alerts: &[Alert], receiver: &str, now: DateTime<Utc>) -> Value {
    let status = |a: &Alert| {
        if a.ends_at > now {
            "firing"
        } else {
            "resolved"
        }
    };
    let list: Vec<Value> = alerts
        .iter()
        .map(|a| {
            json!({
                "status": status(a),
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at),
                "endsAt": rfc3339(a.ends_at),
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            })
        })
        .collect();
    let firing = alerts.iter().any(|a| status(a) == "firing");
    json!({
        "version": "4",
        "receiver": receiver,
        "status": if firing { "firing" } else { "resolved" },
        "alerts": list,
    })
}

/// Alertmanager's label fingerprint: 64-bit FNV-1a over the sorted label names and
/// values, each followed by 0xFF.
pub(super) fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut bytes = Vec::new();
    for (name, value) in labels {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0xff);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0xff);
    }
    format!("{:016x}", crate::hashing::fnv1a(&bytes))
}

/// The posted alerts, checked and completed as Alertmanager does.
fn read(body: &[u8], now: DateTime<Utc>) -> Result<Vec<Alert>, Refusal> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| unparsable("alerts", &e.to_string()))?;
    let Value::Array(items) = value else {
        return Err(unparsable("alerts", "the body is not an array of alerts"));
    };
    if items.len() > MAX_ALERTS_PER_REQUEST {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("more than {MAX_ALERTS_PER_REQUEST} alerts in one request"),
        ));
    }
    let mut alerts = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let alert = postable(i, item, now)?;
        if let Err(problem) = valid(&alert) {
            problems.push(problem);
        }
        alerts.push(alert);
    }
    if !problems.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, problems.join("; ")));
    }
    Ok(alerts)
}

fn valid(a: &Alert) -> Result<(), String> {
    if a.labels.is_empty() {
        return Err("at least one label pair required".into());
    }
    if let Some(name) = a.labels.keys().find(|n| !matchers::is_label_name(n)) {
        return Err(format!("invalid label set: invalid name {name:?}"));
    }
    if a.ends_at < a.starts_at {
        return Err("start time must be before end time".into());
    }
    Ok(())
}

fn postable(i: usize, item: &Value, now: DateTime<Utc>) -> Result<Alert, Refusal> {
    let Value::Object(o) = item else {
        return Err(schema_error(
            601,
            format!("{i} in body must be of type object"),
        ));
    };
    let labels = match o.get("labels") {
        None | Some(Value::Null) => {
            return Err(schema_error(602, format!("{i}.labels in body is required")));
        }
        Some(v) => strings(i, "labels", v)?,
    };
    let annotations = match o.get("annotations") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => strings(i, "annotations", v)?,
    };
    let time = |field: &str| -> Result<Option<DateTime<Utc>>, Refusal> {
        match o.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(t)) => {
                let t = super::parse_time(&format!("{i}.{field}"), t)?;
                // Go's zero time is "unset".
                Ok((t.timestamp() > 0).then_some(t))
            }
            Some(_) => Err(schema_error(
                601,
                format!("{i}.{field} in body must be of type date-time"),
            )),
        }
    };
    let (starts_at, ends_at) = (time("startsAt")?, time("endsAt")?);
    let generator_url = match o.get("generatorURL") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(u)) if u.is_empty() || url::Url::parse(u).is_ok() => u.clone(),
        Some(other) => {
            return Err(schema_error(
                601,
                format!("{i}.generatorURL in body must be of type uri: {other}"),
            ));
        }
    };
    // Empty label values mean "no such label".
    let labels: BTreeMap<String, String> =
        labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let starts_at = starts_at.or(ends_at).unwrap_or(now);
    Ok(Alert {
        fingerprint: fingerprint(&labels),
        labels,
        annotations,
        starts_at,
        ends_at: ends_at.unwrap_or(now + RESOLVE_TIMEOUT),
        updated_at: now,
        generator_url,
        receiver: String::new(),
    })
}

fn strings(i: usize, field: &str, v: &Value) -> Result<BTreeMap<String, String>, Refusal> {
    let wrong = || schema_error(601, format!("{i}.{field} in body must be a map of strings"));
    let Value::Object(o) = v else {
        return Err(wrong());
    };
    o.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(wrong()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_alertmanagers() {
        // From a real Alertmanager 0.25 for {alertname="C", instance="db1"}.
        let labels = BTreeMap::from([
            ("alertname".to_owned(), "C".to_owned()),
            ("instance".to_owned(), "db1".to_owned()),
        ]);
        assert_eq!(fingerprint(&labels), "968175a324bab0a1");
    }
}
