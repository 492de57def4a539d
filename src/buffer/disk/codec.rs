//! The bytes of one event in a disk buffer record.
//!
//! JSON would lose what VRL distinguishes (timestamps, bytes versus strings, integers
//! versus floats), so events are written in a small tagged binary form instead. The
//! decoder reads bytes that may have been damaged on disk: every length is checked
//! against what is left, nesting is bounded, and nothing it reads can make it panic or
//! allocate more than the record holds.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use vrl::value::{KeyString, ObjectMap, Value};

use crate::event::Event;

/// Format of the payload; a record with another version is reported as corrupted.
const VERSION: u8 = 1;
/// Deeper values are refused on decode (VRL values built from JSON are far shallower).
const MAX_DEPTH: usize = 128;

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INTEGER: u8 = 3;
const FLOAT: u8 = 4;
const BYTES: u8 = 5;
const STRING: u8 = 6;
const TIMESTAMP: u8 = 7;
const OBJECT: u8 = 8;
const ARRAY: u8 = 9;
const REGEX: u8 = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("record ends early")]
    Truncated,
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("unknown value tag {0}")]
    Tag(u8),
    #[error("values nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("invalid UTF-8 in a string")]
    Utf8,
    #[error("invalid timestamp")]
    Timestamp,
    #[error("float is NaN")]
    Nan,
    #[error("invalid regex: {0}")]
    Regex(String),
    #[error("{0} bytes left after the event")]
    Trailing(usize),
}

/// Appends `event`'s payload, source, arrival time and VRL metadata to `out`.
pub(crate) fn encode(event: &Event, out: &mut Vec<u8>) {
    out.push(VERSION);
    put_str(out, &event.meta.source_id);
    put_time(out, &event.meta.received_at);
    put_value(out, event.meta.vrl.get());
    put_value(out, event.value());
}

/// The event in `data`, without an acknowledgement (the buffer attaches its own).
pub(crate) fn decode(data: &[u8]) -> Result<Event, DecodeError> {
    let mut r = Reader { data, pos: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let source = r.str()?;
    let received_at = r.time()?;
    let vrl = r.value(0)?;
    let value = r.value(0)?;
    let left = data.len() - r.pos;
    if left != 0 {
        return Err(DecodeError::Trailing(left));
    }
    let mut event = Event::new(
        value,
        crate::event::SourceId::intern_again(source),
        received_at,
    );
    event.meta.vrl = vrl.into();
    Ok(event)
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Lengths above u32 cannot occur: records are capped far below 4 GiB.
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_time(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    out.extend_from_slice(&t.timestamp().to_le_bytes());
    out.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(NULL),
        Value::Boolean(false) => out.push(FALSE),
        Value::Boolean(true) => out.push(TRUE),
        Value::Integer(i) => {
            out.push(INTEGER);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(FLOAT);
            out.extend_from_slice(&f.into_inner().to_le_bytes());
        }
        Value::Bytes(b) => {
            out.push(BYTES);
            put_len(out, b.len());
            out.extend_from_slice(b);
        }
        Value::String(s) => {
            out.push(STRING);
            put_str(out, s);
        }
        Value::Timestamp(t) => {
            out.push(TIMESTAMP);
            put_time(out, t);
        }
        Value::Object(map) => {
            out.push(OBJECT);
            put_len(out, map.len());
            for (k, v) in map {
                put_str(out, k.as_str());
                put_value(out, v);
            }
        }
        Value::Array(items) => {
            out.push(ARRAY);
            put_len(out, items.len());
            for v in items {
                put_value(out, v);
            }
        }
        Value::Regex(re) => {
            out.push(REGEX);
            put_str(out, re.as_str());
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let slice = self.data.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A count or length; never more than the bytes left, since every element or byte
    /// takes at least one byte (so a damaged length cannot make us allocate much).
    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        if n > self.data.len() - self.pos {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::Utf8)
    }

    fn time(&mut self) -> Result<DateTime<Utc>, DecodeError> {
        let secs = i64::from_le_bytes(self.array()?);
        let nanos = u32::from_le_bytes(self.array()?);
        DateTime::from_timestamp(secs, nanos).ok_or(DecodeError::Timestamp)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        Ok(match self.u8()? {
            NULL => Value::Null,
            FALSE => Value::Boolean(false),
            TRUE => Value::Boolean(true),
            INTEGER => Value::Integer(i64::from_le_bytes(self.array()?)),
            FLOAT => {
                let f = f64::from_le_bytes(self.array()?);
                if f.is_nan() {
                    return Err(DecodeError::Nan);
                }
                Value::from_f64_or_zero(f)
            }
            BYTES => {
                let n = self.len()?;
                Value::Bytes(Bytes::copy_from_slice(self.take(n)?))
            }
            STRING => Value::from(self.str()?),
            TIMESTAMP => Value::Timestamp(self.time()?),
            OBJECT => {
                let n = self.len()?;
                let mut map = ObjectMap::new();
                for _ in 0..n {
                    let key = KeyString::from(self.str()?);
                    let value = self.value(depth + 1)?;
                    map.insert(key, value);
                }
                Value::Object(map)
            }
            ARRAY => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            REGEX => {
                let pattern = self.str()?;
                let re =
                    regex::Regex::new(pattern).map_err(|e| DecodeError::Regex(e.to_string()))?;
                Value::Regex(vrl::value::ValueRegex::new(Arc::new(re)))
            }
            tag => return Err(DecodeError::Tag(tag)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        let value: Value = serde_json::from_str::<serde_json::Value>(
            r#"{"alert":"HighCPU","labels":{"host":"a","n":3},"values":[1.5,null,true,"x"]}"#,
        )
        .expect("json")
        .into();
        let mut event = Event::new(value, crate::event::SourceId::intern("hooks"), Utc::now());
        event.insert("at", Value::Timestamp(Utc::now()));
        event.insert("raw", Value::Bytes(Bytes::from_static(b"\xff\x00bin")));
        event.insert(
            "re",
            Value::Regex(vrl::value::ValueRegex::new(Arc::new(
                regex::Regex::new("^a+$").expect("regex"),
            ))),
        );
        let mut meta = ObjectMap::new();
        meta.insert("kafka".into(), Value::from("t"));
        event.meta.vrl = Value::Object(meta).into();
        event
    }

    #[test]
    fn round_trips_every_kind_of_value_and_the_metadata() {
        let event = sample();
        let mut bytes = Vec::new();
        encode(&event, &mut bytes);
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back.value(), event.value());
        assert_eq!(back.meta.vrl, event.meta.vrl);
        assert_eq!(&*back.meta.source_id, "hooks");
        assert_eq!(back.meta.received_at, event.meta.received_at);
    }

    #[test]
    fn every_truncation_and_trailing_garbage_is_an_error() {
        let mut bytes = Vec::new();
        encode(&sample(), &mut bytes);
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes");
        }
        bytes.push(0);
        assert_eq!(decode(&bytes).err(), Some(DecodeError::Trailing(1)));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut bytes = vec![
            VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL,
        ];
        for _ in 0..10_000 {
            bytes.extend_from_slice(&[ARRAY, 1, 0, 0, 0]);
        }
        bytes.push(NULL);
        assert_eq!(decode(&bytes).err(), Some(DecodeError::TooDeep));
    }
}
