//! MessagePack into VRL values, bounded; VRL values into MessagePack.
//!
//! [`Reader`] decodes from a complete object (found by [`super::frame::Scanner`]) or a
//! packed stream of entries. Every value is charged its estimated heap size against an
//! allowance, with the costs measured for JSON bodies (`buffer::cost`): MessagePack is
//! denser than JSON (`[{}, {}, …]` is one byte per object), so a message's size alone
//! would not bound what it becomes in memory.

use chrono::{DateTime, TimeZone, Utc};
use thiserror::Error;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::buffer::cost::{ARRAY, MAP_NODE, MAP_NODE_ENTRIES, SLOT};

/// The Forward protocol's EventTime: extension type 0, seconds and nanoseconds.
pub const EVENT_TIME_EXT: i8 = 0;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the message ends inside a value")]
    Truncated,
    #[error("byte 0xc1 is not MessagePack")]
    InvalidMarker,
    #[error("values nested deeper than {0} levels (max_depth)")]
    TooDeep(usize),
    #[error("the message decodes to more memory than its size allows")]
    OverAllowance,
    #[error("expected {expected}, found {found}")]
    Unexpected {
        expected: &'static str,
        found: &'static str,
    },
}

/// What the next value is, read from its marker alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nil,
    Bool,
    Int,
    Float,
    Str,
    Bin,
    Array,
    Map,
    Ext,
}

impl Kind {
    fn of(marker: u8) -> Result<Self, DecodeError> {
        Ok(match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 => Self::Int,
            0x80..=0x8f | 0xde | 0xdf => Self::Map,
            0x90..=0x9f | 0xdc | 0xdd => Self::Array,
            0xa0..=0xbf | 0xd9..=0xdb => Self::Str,
            0xc0 => Self::Nil,
            0xc1 => return Err(DecodeError::InvalidMarker),
            0xc2 | 0xc3 => Self::Bool,
            0xc4..=0xc6 => Self::Bin,
            0xc7..=0xc9 | 0xd4..=0xd8 => Self::Ext,
            0xca | 0xcb => Self::Float,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Nil => "nil",
            Self::Bool => "a boolean",
            Self::Int => "an integer",
            Self::Float => "a float",
            Self::Str => "a string",
            Self::Bin => "binary",
            Self::Array => "an array",
            Self::Map => "a map",
            Self::Ext => "an extension",
        }
    }
}

/// A cursor over MessagePack bytes with a depth limit and a memory allowance.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    max_depth: usize,
    allowance: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], max_depth: usize, allowance: usize) -> Self {
        Self {
            buf,
            pos: 0,
            max_depth,
            allowance,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The allowance not spent yet.
    pub fn allowance(&self) -> usize {
        self.allowance
    }

    pub fn peek(&self) -> Result<Kind, DecodeError> {
        Kind::of(*self.buf.get(self.pos).ok_or(DecodeError::Truncated)?)
    }

    /// Spends `bytes` of the allowance.
    pub fn charge(&mut self, bytes: usize) -> Result<(), DecodeError> {
        self.allowance = self
            .allowance
            .checked_sub(bytes)
            .ok_or(DecodeError::OverAllowance)?;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn marker(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn unexpected(&self, expected: &'static str) -> DecodeError {
        DecodeError::Unexpected {
            expected,
            found: self.peek().map_or("nothing", Kind::name),
        }
    }

    /// The length of the array that comes next.
    pub fn array_len(&mut self) -> Result<usize, DecodeError> {
        let n = match self.peek()? {
            Kind::Array => match self.marker()? {
                m @ 0x90..=0x9f => u64::from(m & 0x0f),
                0xdc => self.be(2)?,
                _ => self.be(4)?,
            },
            _ => return Err(self.unexpected("an array")),
        };
        self.plausible(n)
    }

    /// The number of entries of the map that comes next.
    pub fn map_len(&mut self) -> Result<usize, DecodeError> {
        let n = match self.peek()? {
            Kind::Map => match self.marker()? {
                m @ 0x80..=0x8f => u64::from(m & 0x0f),
                0xde => self.be(2)?,
                _ => self.be(4)?,
            },
            _ => return Err(self.unexpected("a map")),
        };
        self.plausible(n.saturating_mul(2)).map(|_| n as usize)
    }

    /// A count of values, each at least one byte: never more than the bytes left.
    fn plausible(&self, n: u64) -> Result<usize, DecodeError> {
        if n > (self.buf.len() - self.pos.min(self.buf.len())) as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(n as usize)
    }

    /// The bytes of a string or binary value.
    pub fn raw_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = match self.peek()? {
            Kind::Str | Kind::Bin => match self.marker()? {
                m @ 0xa0..=0xbf => u64::from(m & 0x1f),
                0xc4 | 0xd9 => self.be(1)?,
                0xc5 | 0xda => self.be(2)?,
                _ => self.be(4)?,
            },
            _ => return Err(self.unexpected("a string")),
        };
        self.take(usize::try_from(n).map_err(|_| DecodeError::Truncated)?)
    }

    fn int(&mut self) -> Result<Value, DecodeError> {
        let m = self.marker()?;
        let v = match m {
            0x00..=0x7f => i64::from(m),
            0xe0..=0xff => i64::from(m as i8),
            0xcc => self.be(1)? as i64,
            0xcd => self.be(2)? as i64,
            0xce => self.be(4)? as i64,
            0xcf => {
                let u = self.be(8)?;
                return Ok(i64::try_from(u).map_or_else(|_| float(u as f64), Value::Integer));
            }
            0xd0 => i64::from(self.be(1)? as u8 as i8),
            0xd1 => i64::from(self.be(2)? as u16 as i16),
            0xd2 => i64::from(self.be(4)? as u32 as i32),
            _ => self.be(8)? as i64,
        };
        Ok(Value::Integer(v))
    }

    /// A float as it was sent, NaN and infinities included.
    fn raw_float(&mut self) -> Result<f64, DecodeError> {
        Ok(if self.marker()? == 0xca {
            f64::from(f32::from_bits(self.be(4)? as u32))
        } else {
            f64::from_bits(self.be(8)?)
        })
    }

    /// An extension's type and payload.
    fn ext(&mut self) -> Result<(i8, &'a [u8]), DecodeError> {
        let n = match self.marker()? {
            0xd4 => 1,
            0xd5 => 2,
            0xd6 => 4,
            0xd7 => 8,
            0xd8 => 16,
            0xc7 => self.be(1)? as usize,
            0xc8 => self.be(2)? as usize,
            _ => self.be(4)? as usize,
        };
        let kind = self.take(1)?[0] as i8;
        Ok((kind, self.take(n)?))
    }

    /// An event time: whole seconds, fractional seconds, or the EventTime extension.
    /// Seconds beyond what a timestamp holds (about 262,000 years either side of 1970)
    /// are refused rather than read as some other time.
    pub fn time(&mut self) -> Result<DateTime<Utc>, DecodeError> {
        const OUT_OF_RANGE: DecodeError = DecodeError::Unexpected {
            expected: "a time",
            found: "seconds out of range",
        };
        match self.peek()? {
            Kind::Int => match self.int()? {
                Value::Integer(secs) => Utc.timestamp_opt(secs, 0).single().ok_or(OUT_OF_RANGE),
                _ => Err(OUT_OF_RANGE),
            },
            Kind::Float => {
                let secs = self.raw_float()?;
                // Whole seconds and the fraction apart: an f64 of nanoseconds since 1970
                // would lose the sub-microsecond digits.
                let whole = secs.floor();
                if !whole.is_finite() || whole.abs() >= i64::MAX as f64 {
                    return Err(OUT_OF_RANGE);
                }
                let nanos = ((secs - whole) * 1e9).round() as i64;
                let at = whole as i64;
                Utc.timestamp_opt(at, 0)
                    .single()
                    .and_then(|t| t.checked_add_signed(chrono::TimeDelta::nanoseconds(nanos)))
                    .ok_or(OUT_OF_RANGE)
            }
            Kind::Ext => match self.ext()? {
                (EVENT_TIME_EXT, payload) if payload.len() == 8 => Ok(event_time(payload)),
                (EVENT_TIME_EXT, _) => Err(DecodeError::Unexpected {
                    expected: "an EventTime of 8 bytes",
                    found: "another length",
                }),
                _ => Err(DecodeError::Unexpected {
                    expected: "a time",
                    found: "an extension other than EventTime",
                }),
            },
            _ => Err(self.unexpected("a time")),
        }
    }

    /// Skips one value (its bytes were bounded by the scanner or the stream's length).
    pub fn skip(&mut self) -> Result<(), DecodeError> {
        let mut left: u64 = 1;
        while left > 0 {
            left -= 1;
            match self.peek()? {
                Kind::Array => left += self.array_len()? as u64,
                Kind::Map => left += 2 * self.map_len()? as u64,
                Kind::Str | Kind::Bin => {
                    self.raw_bytes()?;
                }
                Kind::Ext => {
                    self.ext()?;
                }
                Kind::Int => {
                    self.int()?;
                }
                Kind::Nil | Kind::Bool => {
                    self.marker()?;
                }
                Kind::Float => {
                    let m = self.marker()?;
                    self.take(if m == 0xca { 4 } else { 8 })?;
                }
            }
        }
        Ok(())
    }

    /// The next value, whole.
    pub fn value(&mut self) -> Result<Value, DecodeError> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<Value, DecodeError> {
        Ok(match self.peek()? {
            Kind::Nil => {
                self.marker()?;
                Value::Null
            }
            Kind::Bool => Value::Boolean(self.marker()? == 0xc3),
            Kind::Int => self.int()?,
            Kind::Float => float(self.raw_float()?),
            Kind::Str | Kind::Bin => {
                let bytes = self.raw_bytes()?;
                self.charge(bytes.len())?;
                Value::Bytes(bytes::Bytes::copy_from_slice(bytes))
            }
            Kind::Ext => match self.ext()? {
                (EVENT_TIME_EXT, payload) if payload.len() == 8 => {
                    Value::Timestamp(event_time(payload))
                }
                (_, payload) => {
                    self.charge(payload.len())?;
                    Value::Bytes(bytes::Bytes::copy_from_slice(payload))
                }
            },
            Kind::Array => {
                let n = self.array_len()?;
                self.nested(depth)?;
                self.charge(ARRAY)?;
                let mut items = Vec::new();
                for _ in 0..n {
                    self.charge(2 * SLOT)?;
                    items.push(self.value_at(depth + 1)?);
                }
                Value::Array(items)
            }
            Kind::Map => Value::Object(self.map_at(depth)?),
        })
    }

    /// The next value as a map (a record); anything else is an error.
    pub fn record(&mut self) -> Result<ObjectMap, DecodeError> {
        if self.peek()? != Kind::Map {
            return Err(self.unexpected("a record (a map)"));
        }
        self.map_at(0)
    }

    fn map_at(&mut self, depth: usize) -> Result<ObjectMap, DecodeError> {
        let n = self.map_len()?;
        self.nested(depth)?;
        let mut fields = ObjectMap::new();
        for i in 0..n {
            if i % MAP_NODE_ENTRIES == 0 {
                self.charge(MAP_NODE)?;
            }
            let key = self.key()?;
            let value = self.value_at(depth + 1)?;
            fields.insert(key, value);
        }
        Ok(fields)
    }

    fn nested(&self, depth: usize) -> Result<(), DecodeError> {
        if depth >= self.max_depth {
            return Err(DecodeError::TooDeep(self.max_depth));
        }
        Ok(())
    }

    /// A map key: strings as they are (invalid UTF-8 replaced), numbers in decimal,
    /// anything else as its MessagePack kind's name (JSON objects only have string keys).
    fn key(&mut self) -> Result<KeyString, DecodeError> {
        match self.peek()? {
            Kind::Str | Kind::Bin => {
                let bytes = self.raw_bytes()?;
                self.charge(bytes.len())?;
                Ok(String::from_utf8_lossy(bytes).into_owned().into())
            }
            Kind::Int => Ok(match self.int()? {
                Value::Integer(i) => i.to_string().into(),
                other => other.to_string().into(),
            }),
            kind => {
                self.skip()?;
                Ok(kind.name().into())
            }
        }
    }
}

fn float(f: f64) -> Value {
    Value::from_f64_or_zero(f)
}

fn event_time(payload: &[u8]) -> DateTime<Utc> {
    let secs = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let nanos = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
    // Nanoseconds of a second or more carry into the seconds, as a timespec would.
    let secs = i64::from(secs) + i64::from(nanos / 1_000_000_000);
    Utc.timestamp_opt(secs, nanos % 1_000_000_000)
        .single()
        .unwrap_or_default()
}

/// Writes `time` as an EventTime, or, outside what its 32 unsigned bits of seconds
/// hold (before 1970, after 2106), as whole seconds in a signed integer, which every
/// reader takes: the sub-second part is lost rather than the date.
pub fn write_time(out: &mut Vec<u8>, time: DateTime<Utc>) {
    let Ok(secs) = u32::try_from(time.timestamp()) else {
        out.push(0xd3);
        out.extend_from_slice(&time.timestamp().to_be_bytes());
        return;
    };
    out.extend_from_slice(&[0xd7, EVENT_TIME_EXT as u8]);
    out.extend_from_slice(&secs.to_be_bytes());
    out.extend_from_slice(&time.timestamp_subsec_nanos().min(999_999_999).to_be_bytes());
}

/// Writes a VRL value as MessagePack: timestamps as EventTime, regexes as their
/// pattern.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    // Writes to a Vec cannot fail.
    match value {
        Value::Null => out.push(0xc0),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => {
            let _ = rmp::encode::write_sint(out, *i);
        }
        Value::Float(f) => {
            let _ = rmp::encode::write_f64(out, f.into_inner());
        }
        Value::Bytes(b) => write_str(out, b),
        Value::String(s) => write_str(out, s.as_bytes()),
        Value::Regex(r) => write_str(out, r.as_str().as_bytes()),
        Value::Timestamp(t) => write_time(out, *t),
        Value::Array(items) => {
            let _ = rmp::encode::write_array_len(out, items.len() as u32);
            for item in items {
                write_value(out, item);
            }
        }
        Value::Object(fields) => write_map(out, fields.iter()),
    }
}

/// Writes a map from its entries.
pub fn write_map<'v>(
    out: &mut Vec<u8>,
    fields: impl ExactSizeIterator<Item = (&'v KeyString, &'v Value)>,
) {
    let _ = rmp::encode::write_map_len(out, fields.len() as u32);
    for (k, v) in fields {
        write_str(out, k.as_bytes());
        write_value(out, v);
    }
}

/// Writes bytes as a MessagePack string (what fluentd and Fluent Bit send for text).
pub fn write_str(out: &mut Vec<u8>, bytes: &[u8]) {
    let _ = rmp::encode::write_str_len(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_event_time_keeps_nanoseconds() {
        let time = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        let mut fields = ObjectMap::new();
        fields.insert("msg".into(), Value::from("héllo"));
        fields.insert("n".into(), Value::Integer(-42));
        fields.insert("f".into(), Value::from_f64_or_zero(1.25));
        fields.insert("ok".into(), Value::Boolean(true));
        fields.insert("none".into(), Value::Null);
        fields.insert("at".into(), Value::Timestamp(time));
        fields.insert(
            "list".into(),
            Value::Array(vec![Value::Integer(1), Value::from("two")]),
        );
        let value = Value::Object(fields);
        let mut out = Vec::new();
        write_value(&mut out, &value);
        let mut r = Reader::new(&out, 16, 1 << 20);
        assert_eq!(r.value(), Ok(value));
        assert!(r.is_empty());
    }

    #[test]
    fn depth_and_allowance_are_enforced() {
        let deep = [0x91u8; 40]
            .iter()
            .copied()
            .chain([0xc0])
            .collect::<Vec<_>>();
        assert_eq!(
            Reader::new(&deep, 32, 1 << 20).value(),
            Err(DecodeError::TooDeep(32))
        );
        // 1,000 one-key maps in an array: 4,003 bytes, 720 KB as B-tree nodes.
        let mut many = vec![0xdc, 0x03, 0xe8];
        many.extend(std::iter::repeat_n(0x81, 1000).flat_map(|m| [m, 0xa1, b'a', 0x01]));
        assert_eq!(
            Reader::new(&many, 32, 64 * 1024).value(),
            Err(DecodeError::OverAllowance)
        );
        // A count past the bytes left is refused before anything is allocated.
        assert_eq!(
            Reader::new(&[0xdd, 0xff, 0xff, 0xff, 0xff], 32, 1 << 20).value(),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn integer_times_and_event_times_are_read() {
        let mut out = Vec::new();
        let _ = rmp::encode::write_uint(&mut out, 1_600_000_000);
        write_time(&mut out, Utc.timestamp_opt(5, 7).unwrap());
        let mut r = Reader::new(&out, 4, 1024);
        assert_eq!(r.time().unwrap().timestamp(), 1_600_000_000);
        assert_eq!(r.time().unwrap(), Utc.timestamp_opt(5, 7).unwrap());
        assert!(Reader::new(&[0xa1, b'x'], 4, 1024).time().is_err());
        // Before 1970 and after 2106: whole seconds, the date kept.
        for secs in [-1_i64, -2_208_988_800, 32_503_680_000] {
            let mut out = Vec::new();
            write_time(&mut out, Utc.timestamp_opt(secs, 500).unwrap());
            assert_eq!(Reader::new(&out, 4, 1024).time().unwrap().timestamp(), secs);
        }
    }
}
