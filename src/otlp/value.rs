//! OTLP's `AnyValue` and attribute lists as event values, and back.
//!
//! Strings, booleans, integers, doubles, arrays and key-value lists map one to one.
//! `bytes` values become event bytes (an event does not tell text from bytes), so they
//! come back as strings when they are UTF-8 and as bytes otherwise. A double that is
//! not a number has no event value and becomes null. Dictionary references
//! (`string_value_strindex`, used by profiles only) carry no value here.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use vrl::value::{KeyString, ObjectMap, Value};

/// An `AnyValue` as an event value (null when unset).
pub(crate) fn from_any(value: Option<AnyValue>) -> Value {
    let Some(value) = value.and_then(|v| v.value) else {
        return Value::Null;
    };
    match value {
        any_value::Value::StringValue(s) => Value::from(s),
        any_value::Value::BoolValue(b) => Value::Boolean(b),
        any_value::Value::IntValue(i) => Value::Integer(i),
        any_value::Value::DoubleValue(d) if d.is_nan() => Value::Null,
        any_value::Value::DoubleValue(d) => Value::from_f64_or_zero(d),
        any_value::Value::ArrayValue(a) => {
            Value::Array(a.values.into_iter().map(|v| from_any(Some(v))).collect())
        }
        any_value::Value::KvlistValue(list) => Value::Object(from_attributes(list.values)),
        any_value::Value::BytesValue(b) => Value::Bytes(b.into()),
        any_value::Value::StringValueStrindex(_) => Value::Null,
    }
}

/// Attributes as an object; a repeated key keeps its last value.
pub(crate) fn from_attributes(attributes: Vec<KeyValue>) -> ObjectMap {
    attributes
        .into_iter()
        .map(|kv| (KeyString::from(kv.key), from_any(kv.value)))
        .collect()
}

/// An event value as an `AnyValue`.
pub(crate) fn to_any(value: &Value) -> AnyValue {
    let value = match value {
        Value::Bytes(b) => Some(match std::str::from_utf8(b) {
            Ok(s) => any_value::Value::StringValue(s.to_owned()),
            Err(_) => any_value::Value::BytesValue(b.to_vec()),
        }),
        Value::String(_) => Some(any_value::Value::StringValue(
            value.to_string_lossy().into_owned(),
        )),
        Value::Boolean(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Integer(i) => Some(any_value::Value::IntValue(*i)),
        Value::Float(f) => Some(any_value::Value::DoubleValue(f.into_inner())),
        Value::Timestamp(t) => Some(any_value::Value::StringValue(
            t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        )),
        Value::Regex(r) => Some(any_value::Value::StringValue(r.as_str().to_owned())),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(to_any).collect(),
        })),
        Value::Object(map) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: to_attributes(map),
        })),
        Value::Null => None,
    };
    AnyValue { value }
}

/// An object as attributes (a null value stays, as an unset `AnyValue`).
pub(crate) fn to_attributes(map: &ObjectMap) -> Vec<KeyValue> {
    map.iter()
        .map(|(k, v)| KeyValue {
            key: k.to_string(),
            value: Some(to_any(v)),
            ..KeyValue::default()
        })
        .collect()
}

/// Trace and span ids as lowercase hex (empty ids are absent).
pub(crate) fn hex_id(bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    Some(Value::from(out))
}

/// A hex id back to bytes; `None` when the text is not hex of `len` bytes.
pub(crate) fn id_bytes(value: Option<&Value>, len: usize) -> Option<Vec<u8>> {
    let text = text(value?)?;
    // `from_str_radix` would take a sign.
    if text.len() != len * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..len)
        .map(|i| u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect()
}

/// A text value (`None` for any other kind).
pub(crate) fn text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    matches!(value, Value::Bytes(_) | Value::String(_)).then(|| value.to_string_lossy())
}

/// Nanoseconds since the epoch as a timestamp (`None` for zero, OTLP's "unset").
pub(crate) fn timestamp(nanos: u64) -> Option<Value> {
    if nanos == 0 {
        return None;
    }
    let nanos = i64::try_from(nanos).unwrap_or(i64::MAX);
    Some(Value::Timestamp(chrono::DateTime::from_timestamp_nanos(
        nanos,
    )))
}

/// A timestamp (or RFC 3339 text) as nanoseconds since the epoch (0 when absent).
pub(crate) fn nanos(value: Option<&Value>) -> u64 {
    let at = match value {
        Some(Value::Timestamp(t)) => Some(*t),
        Some(v) => text(v)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&chrono::Utc)),
        None => None,
    };
    at.and_then(|t| t.timestamp_nanos_opt())
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_the_round_trip() {
        let value: Value = serde_json::from_str(
            r#"{"s": "text", "b": true, "i": -3, "f": 1.5, "a": [1, "x", null], "o": {"k": {"deep": 1}}}"#,
        )
        .expect("json");
        let back = from_any(Some(to_any(&value)));
        assert_eq!(back, value);
        let raw = to_any(&Value::Bytes(vec![0xff, 0x00].into()));
        assert!(matches!(raw.value, Some(any_value::Value::BytesValue(_))));
    }

    #[test]
    fn ids_are_hex_of_their_length() {
        let id = hex_id(&[0xab, 0x01]).expect("id");
        assert_eq!(id, Value::from("ab01"));
        assert_eq!(id_bytes(Some(&id), 2), Some(vec![0xab, 0x01]));
        assert_eq!(id_bytes(Some(&id), 3), None);
        assert_eq!(id_bytes(Some(&Value::from("zz01")), 2), None);
        assert_eq!(id_bytes(Some(&Value::from("+f01")), 2), None);
        assert_eq!(id_bytes(Some(&Value::from("é1")), 1), None);
    }

    #[test]
    fn zero_times_are_unset() {
        assert_eq!(timestamp(0), None);
        let t = timestamp(1_700_000_000_123_456_789).expect("time");
        assert_eq!(nanos(Some(&t)), 1_700_000_000_123_456_789);
        assert_eq!(nanos(None), 0);
    }
}
