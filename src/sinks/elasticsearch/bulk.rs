//! The bulk API's two halves: a request body from events (an action line and a document
//! line each, NDJSON) and what each item of the answer means for its event.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use vrl::value::Value;

use crate::event::Event;

/// What one answered item means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ItemOutcome {
    Delivered,
    /// 429 and 5xx: the cluster was busy; send the item again.
    Retry(String),
    /// Anything else (a mapping error): the item will never be taken.
    Failed {
        status: u16,
        reason: String,
    },
}

/// The `_index` of an event: Elasticsearch's rules for index names, so one bad value is
/// refused here (with the reason) instead of failing its whole request.
pub(super) fn check_index_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.starts_with(['-', '_', '+'])
        || name.chars().any(|c| {
            c.is_uppercase()
                || matches!(
                    c,
                    '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
                )
        })
        || name.chars().any(char::is_control);
    if bad {
        return Err(format!(
            "index name {name:?} is not one Elasticsearch takes (lowercase, no spaces or \\/*?\"<>|,#:, not starting with -_+, at most 255 bytes)"
        ));
    }
    Ok(())
}

/// The two NDJSON lines of one event.
pub(super) fn item(
    event: &Event,
    index: &str,
    op: &str,
    id: Option<&str>,
    timestamp_field: Option<DateTime<Utc>>,
) -> Result<Vec<u8>, String> {
    let mut meta = serde_json::Map::new();
    meta.insert("_index".into(), Json::from(index));
    if let Some(id) = id {
        meta.insert("_id".into(), Json::from(id));
    }
    let action = serde_json::json!({ op: meta });
    let mut out = serde_json::to_vec(&action).map_err(|e| format!("cannot encode: {e}"))?;
    out.push(b'\n');
    match timestamp_field {
        // Data streams require `@timestamp`.
        Some(at) if event.get("@timestamp").is_none() => {
            let mut value = event.value().clone();
            if let Value::Object(map) = &mut value {
                map.insert("@timestamp".into(), Value::Timestamp(at));
            }
            serde_json::to_writer(&mut out, &value)
        }
        _ => serde_json::to_writer(&mut out, event.value()),
    }
    .map_err(|e| format!("cannot encode the event: {e}"))?;
    out.push(b'\n');
    Ok(out)
}

/// Each item's outcome, in request order; `Err` when the answer does not match the
/// request (then the whole request is retried).
pub(super) fn outcomes(body: &[u8], sent: usize, op: &str) -> Result<Vec<ItemOutcome>, String> {
    let answer: Json =
        serde_json::from_slice(body).map_err(|e| format!("the bulk answer is not JSON: {e}"))?;
    if answer.get("errors").and_then(Json::as_bool) == Some(false) {
        return Ok(vec![ItemOutcome::Delivered; sent]);
    }
    let items = answer
        .get("items")
        .and_then(Json::as_array)
        .ok_or("the bulk answer has no `items`")?;
    if items.len() != sent {
        return Err(format!(
            "the bulk answer has {} items for {sent} sent",
            items.len()
        ));
    }
    // An item without a status is not an answer to it: the whole request is retried.
    if items.iter().any(|item| {
        item.as_object()
            .and_then(|m| m.values().next())
            .and_then(|r| r.get("status"))
            .and_then(Json::as_u64)
            .is_none()
    }) {
        return Err("the bulk answer has an item without a status".into());
    }
    Ok(items
        .iter()
        .map(|item| {
            let result = item.as_object().and_then(|m| m.values().next());
            let status = result
                .and_then(|r| r.get("status"))
                .and_then(Json::as_u64)
                .map_or(0, |s| s.min(999) as u16);
            let error = result.and_then(|r| r.get("error"));
            let reason = || match error {
                Some(e) => format!(
                    "{}: {}",
                    e.get("type").and_then(Json::as_str).unwrap_or("error"),
                    e.get("reason").and_then(Json::as_str).unwrap_or("")
                ),
                None => format!("status {status}"),
            };
            match status {
                200..=299 => ItemOutcome::Delivered,
                // The document is already there: an earlier attempt was taken.
                409 if op == "create" => ItemOutcome::Delivered,
                429 | 500..=599 => ItemOutcome::Retry(reason()),
                _ => ItemOutcome::Failed {
                    status,
                    reason: reason(),
                },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_item_is_judged_on_its_own() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"_index":"a","status":201}},
            {"index":{"_index":"a","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"_index":"a","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n]"}}},
            {"create":{"_index":"a","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}}
        ]}"#;
        let got = outcomes(body, 4, "index").expect("parsed");
        assert_eq!(got[0], ItemOutcome::Delivered);
        assert_eq!(
            got[1],
            ItemOutcome::Retry("es_rejected_execution_exception: queue full".into())
        );
        assert_eq!(
            got[2],
            ItemOutcome::Failed {
                status: 400,
                reason: "mapper_parsing_exception: failed to parse field [n]".into()
            }
        );
        assert!(
            matches!(got[3], ItemOutcome::Failed { status: 409, .. }),
            "index: a conflict is a failure"
        );
        assert_eq!(
            outcomes(body, 4, "create").expect("parsed")[3],
            ItemOutcome::Delivered
        );
        assert!(
            outcomes(body, 3, "index").is_err(),
            "a count mismatch is not trusted"
        );
        assert_eq!(
            outcomes(br#"{"errors":false,"items":[]}"#, 2, "index").expect("ok"),
            vec![ItemOutcome::Delivered; 2]
        );
    }

    #[test]
    fn index_names_follow_elasticsearch_rules() {
        assert!(check_index_name("logs-2026.12.06").is_ok());
        for bad in ["Logs", "a b", "-x", "a/b", "..", "", "a,b", "a:b"] {
            assert!(check_index_name(bad).is_err(), "{bad}");
        }
    }
}
