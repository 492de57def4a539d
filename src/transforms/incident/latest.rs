//! The alert an incident keeps: reading its fields, bounding its size, and its times
//! after a round trip through JSON.

use vrl::value::Value;

use crate::alert::{Status, field};

/// An incident keeps at most about this much of its latest alert; a bigger one is cut
/// to its normalized fields (see [`bounded`]).
pub(super) const MAX_LATEST: usize = 16 * 1024;

/// A top-level field of an event's payload.
pub(super) fn top<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Object(o) => o.get(name),
        _ => None,
    }
}

pub(super) fn status_of(value: &Value) -> Option<Status> {
    let s = top(value, field::STATUS)?.to_str_lossy()?;
    if s.eq_ignore_ascii_case("firing") {
        Some(Status::Firing)
    } else if s.eq_ignore_ascii_case("resolved") {
        Some(Status::Resolved)
    } else {
        None
    }
}

/// A short field (`severity`, `source`) as text, cut at [`MAX_SHORT`] characters: it is
/// kept per incident and compared on every alert.
pub(super) fn text_field(value: &Value, name: &str) -> Option<String> {
    match top(value, name)? {
        Value::Null => None,
        v => Some(crate::text::prefix_chars(&v.to_string_lossy(), MAX_SHORT).to_owned()),
    }
}

/// Characters of a short field kept.
const MAX_SHORT: usize = 128;

/// JSON has no timestamps: the normalized schema's time fields of an alert read back
/// from disk are RFC 3339 text again, and become timestamps again here, so what is
/// sent after a restart has the types it had before.
pub(crate) fn restore_times(latest: &mut Value) {
    let Value::Object(o) = latest else {
        return;
    };
    for name in [field::TIME, field::STARTS_AT, field::ENDS_AT] {
        let parsed = o
            .get(name)
            .and_then(Value::to_str_lossy)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
        if let Some(t) = parsed {
            o.insert(name.into(), Value::Timestamp(t.with_timezone(&chrono::Utc)));
        }
    }
}

/// Roughly how many bytes `v` holds, counting no further than `limit`.
pub(super) fn size_up_to(v: &Value, limit: usize) -> usize {
    match v {
        Value::Bytes(b) => b.len(),
        Value::String(s) => s.len(),
        Value::Object(o) => {
            let mut n = 0;
            for (k, v) in o {
                n += k.len() + 8 + size_up_to(v, limit - n.min(limit));
                if n > limit {
                    break;
                }
            }
            n
        }
        Value::Array(a) => {
            let mut n = 0;
            for v in a {
                n += 8 + size_up_to(v, limit - n.min(limit));
                if n > limit {
                    break;
                }
            }
            n
        }
        _ => 16,
    }
}

/// The alert an incident keeps: as it came, or, above [`MAX_LATEST`], only its
/// normalized text fields (each cut to 1,024 characters) and `truncated: true`.
pub(super) fn bounded(latest: Value) -> Value {
    if size_up_to(&latest, MAX_LATEST) <= MAX_LATEST {
        return latest;
    }
    let Value::Object(o) = latest else {
        return Value::Null;
    };
    let mut kept = vrl::value::ObjectMap::new();
    for name in [
        field::ID,
        field::EVENT_TYPE,
        field::SOURCE,
        field::KIND,
        field::STATUS,
        field::SEVERITY,
        field::SERVICE,
        field::REGION,
        field::PROJECT,
        field::SUMMARY,
        field::DESCRIPTION,
        field::FINGERPRINT,
        field::URL,
    ] {
        if let Some(v) = o.get(name).and_then(Value::to_str_lossy) {
            let cut: String = v.chars().take(1024).collect();
            kept.insert(name.into(), Value::from(cut));
        }
    }
    for name in [field::TIME, field::STARTS_AT, field::ENDS_AT] {
        if let Some(t @ Value::Timestamp(_)) = o.get(name) {
            kept.insert(name.into(), t.clone());
        }
    }
    kept.insert("truncated".into(), Value::Boolean(true));
    Value::Object(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_alerts_are_cut_to_their_normalized_fields() {
        let mut o = vrl::value::ObjectMap::new();
        o.insert("summary".into(), Value::from("s"));
        o.insert("description".into(), Value::from("d".repeat(100_000)));
        let v = Value::Object(o);
        assert!(size_up_to(&v, MAX_LATEST) > MAX_LATEST);
        let cut = bounded(v);
        assert_eq!(top(&cut, "truncated"), Some(&Value::Boolean(true)));
    }
}
