//! JSON into VRL values with a memory allowance. A body's size says little about what it
//! becomes: `[{"a":1},…]` is 8 bytes per object in the body and over 700 in memory (a
//! B-tree node), so a 10 MiB body could take a gigabyte. Parsing here charges each value
//! its estimated heap size against an allowance (what the request was charged to
//! `memory_limit`), and stops with [`exceeded`] once the allowance is spent. A top-level
//! array of events also stops past the request's event bound ([`TopLevel`]).
//!
//! The allowance lives in a thread-local so the plain `Deserialize` entry points of
//! serde_json (stream deserializer) and serde_path_to_error keep working; it is set only
//! for the duration of [`with_allowance`], on the thread that parses.

use std::cell::Cell;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use vrl::value::{KeyString, ObjectMap, Value};

use crate::buffer::cost::{ARRAY, MAP_NODE, MAP_NODE_ENTRIES, SLOT};

thread_local! {
    static LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
    static EXCEEDED: Cell<bool> = const { Cell::new(false) };
    static MAX_TOP_ITEMS: Cell<usize> = const { Cell::new(usize::MAX) };
    static TOO_MANY: Cell<bool> = const { Cell::new(false) };
}

/// The message of the parse error raised when the allowance is spent.
pub(crate) const EXCEEDED_MESSAGE: &str = "the JSON decodes to more memory than its size allows";

/// Runs `parse` with `bytes` of allowance; returns its result and whether the allowance
/// ran out (in which case the result is the error that stopped it).
/// `max_top_items` bounds the elements of a top-level array read through [`TopLevel`].
pub(crate) fn with_allowance<T>(
    bytes: usize,
    max_top_items: usize,
    parse: impl FnOnce() -> T,
) -> (T, Limits) {
    struct Restore(usize, usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            LEFT.with(|l| l.set(self.0));
            MAX_TOP_ITEMS.with(|m| m.set(self.1));
            EXCEEDED.with(|e| e.set(false));
            TOO_MANY.with(|t| t.set(false));
        }
    }
    let _restore = Restore(
        LEFT.with(|l| l.replace(bytes)),
        MAX_TOP_ITEMS.with(|m| m.replace(max_top_items)),
    );
    EXCEEDED.with(|e| e.set(false));
    TOO_MANY.with(|t| t.set(false));
    let out = parse();
    let limits = Limits {
        memory: exceeded(),
        items: TOO_MANY.with(Cell::get),
    };
    (out, limits)
}

/// Which bound stopped a parse, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The allowance ran out.
    pub(crate) memory: bool,
    /// A top-level array had more elements than allowed.
    pub(crate) items: bool,
}

/// What is left of the current allowance, to give back what a failed attempt spent
/// before the same bytes are read again (see [`restore`]).
pub(crate) fn remaining() -> usize {
    LEFT.with(Cell::get)
}

/// Sets what is left of the current allowance (a value from [`remaining`]).
pub(crate) fn restore(left: usize) {
    LEFT.with(|l| l.set(left));
}

/// Whether a top-level array of the current [`with_allowance`] had too many elements.
pub(crate) fn too_many() -> bool {
    TOO_MANY.with(Cell::get)
}

/// Whether the allowance of the current [`with_allowance`] ran out.
pub(crate) fn exceeded() -> bool {
    EXCEEDED.with(Cell::get)
}

/// Charges `bytes` to the current allowance, for values checked but not built yet;
/// `None` once it is spent.
pub(crate) fn charge_total(bytes: usize) -> Option<()> {
    charge::<serde_json::Error>(bytes).ok()
}

/// Gives back what an attempt spent (a value from [`remaining`]) and forgets the bounds
/// it hit, so the same bytes can be read again another way with the same answers.
pub(crate) fn reset(left: usize) {
    restore(left);
    EXCEEDED.with(|e| e.set(false));
    TOO_MANY.with(|t| t.set(false));
}

fn charge<E: de::Error>(bytes: usize) -> Result<(), E> {
    LEFT.with(|left| match left.get().checked_sub(bytes) {
        Some(rest) => {
            left.set(rest);
            Ok(())
        }
        None => {
            EXCEEDED.with(|e| e.set(true));
            Err(E::custom(EXCEEDED_MESSAGE))
        }
    })
}

/// A VRL value read from JSON within the current allowance.
pub(crate) struct Bounded(pub Value);

impl<'de> Deserialize<'de> for Bounded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor).map(Bounded)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Value::Integer(i),
            // As VRL's own deserializer does: past i64, a float.
            #[allow(clippy::cast_precision_loss)]
            Err(_) => Value::from_f64_or_zero(v as f64),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN; serde_json never hands one over.
        Ok(Value::from_f64_or_zero(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        charge(v.len())?;
        Ok(Value::from(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        charge(v.len())?;
        Ok(Value::from(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        read_seq(seq, usize::MAX)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = ObjectMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.len().is_multiple_of(MAP_NODE_ENTRIES) {
                charge(MAP_NODE)?;
            }
            charge(key.len())?;
            let Bounded(v) = map.next_value()?;
            fields.insert(KeyString::from(key), v);
        }
        Ok(Value::Object(fields))
    }
}

fn read_seq<'de, A: SeqAccess<'de>>(mut seq: A, max_items: usize) -> Result<Value, A::Error> {
    charge(ARRAY)?;
    let mut items = Vec::new();
    while let Some(Bounded(v)) = seq.next_element()? {
        charge(2 * SLOT)?;
        items.push(v);
        if items.len() > max_items {
            TOO_MANY.with(|t| t.set(true));
            return Err(de::Error::custom(format!("more than {max_items} events")));
        }
    }
    Ok(Value::Array(items))
}

/// A top-level value of a body of events: a top-level array stops past the
/// `max_top_items` of the current [`with_allowance`]; anything else reads as [`Bounded`].
pub(crate) struct TopLevel(pub Value);

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopVisitor).map(TopLevel)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        read_seq(seq, MAX_TOP_ITEMS.with(Cell::get))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        ValueVisitor.visit_map(map)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        ValueVisitor.visit_bool(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        ValueVisitor.visit_i64(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        ValueVisitor.visit_u64(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        ValueVisitor.visit_f64(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        ValueVisitor.visit_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        ValueVisitor.visit_string(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        ValueVisitor.visit_unit()
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        ValueVisitor.visit_unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, allowance: usize) -> (Result<Value, String>, bool) {
        let (result, limits) = with_allowance(allowance, usize::MAX, || {
            serde_json::from_str::<Bounded>(body)
                .map(|b| b.0)
                .map_err(|e| e.to_string())
        });
        (result, limits.memory)
    }

    #[test]
    fn values_read_as_vrl_reads_them() {
        let text = r#"{"a":[1,-2,3.5,"x",true,null,{"b":{}}],"big":18446744073709551615}"#;
        let (ours, over) = parse(text, usize::MAX);
        assert!(!over);
        let theirs: Value = serde_json::from_str(text).expect("vrl");
        assert_eq!(ours.expect("bounded"), theirs);
    }

    #[test]
    fn the_allowance_stops_amplifying_shapes() {
        let objects = format!("[{}{{\"a\":1}}]", "{\"a\":1},".repeat(100_000));
        let (result, over) = parse(&objects, objects.len() * 64);
        assert!(over, "a B-tree node per 8 body bytes is over 64 per byte");
        assert!(result.expect_err("stopped").starts_with(EXCEEDED_MESSAGE));
        let (result, over) = parse(&objects, objects.len() * 200);
        assert!(!over);
        assert_eq!(
            result.expect("fits").as_array().map(|a| a.len()),
            Some(100_001)
        );
        // The allowance is per call: the next parse starts unbounded again.
        assert!(!exceeded());
        assert!(serde_json::from_str::<Bounded>(&objects).is_ok());
    }

    #[test]
    fn top_level_arrays_stop_past_the_item_bound() {
        let body = format!("[{}1]", "1,".repeat(1_000_000));
        let (result, limits) = with_allowance(usize::MAX, 10, || {
            serde_json::from_str::<TopLevel>(&body).map(|t| t.0)
        });
        assert!(limits.items && !limits.memory);
        assert!(result.is_err());
        // Nested arrays are not events: only the allowance bounds them.
        let (result, limits) = with_allowance(usize::MAX, 10, || {
            serde_json::from_str::<TopLevel>("{\"a\":[1,2,3,4,5,6,7,8,9,10,11,12]}").map(|t| t.0)
        });
        assert_eq!(limits, Limits::default());
        assert!(result.is_ok());
    }
}
