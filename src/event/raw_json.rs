//! Checking JSON text without building it, so an event can carry its text (see
//! [`super::payload`]) with the same guarantee a parsed event has: serde_json reads it
//! into a VRL value. The check runs serde_json's own parser (UTF-8, escapes, surrogates,
//! numbers, its nesting limit) with visitors that keep nothing, and estimates what the
//! parsed value would take on the heap the way the memory budget estimates parsed
//! events.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::json_size::{ARRAY, SLOT, SeenKeys, key_hash, object_size};

/// What checking one text found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// One line holding one JSON object, none of whose top-level keys is reserved;
    /// its parsed heap estimate.
    Object { parsed_size: usize },
    /// Valid JSON that cannot be carried as text: not an object, spread over several
    /// lines, with a reserved top-level key, or with a key twice in one object (parsing
    /// keeps the last, and a receiver of the text might keep the first). Parse it instead.
    Other,
}

/// Checks that `text` is exactly one JSON value (whitespace around it allowed) as
/// serde_json reads it. `reserved` names top-level keys the caller is about to add.
pub(crate) fn check_object(text: &str, reserved: &[&str]) -> Result<Checked, serde_json::Error> {
    match super::json_scan::one_line_object(text, reserved) {
        Some(parsed_size) => Ok(Checked::Object { parsed_size }),
        None => check_object_by_serde(text, reserved),
    }
}

/// [`check_object`] by serde_json's parser alone: the reference the scan agrees with.
pub(crate) fn check_object_by_serde(
    text: &str,
    reserved: &[&str],
) -> Result<Checked, serde_json::Error> {
    // Text that is already UTF-8: serde_json's `StrRead` does not check each string again.
    let mut de = serde_json::Deserializer::from_str(text);
    let text = text.as_bytes();
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Through the size visitor rather than `IgnoredAny`: serde_json skips ignored
        // values without its nesting limit or its string checks.
        Size.deserialize(&mut de)?;
        de.end()?;
        return Ok(Checked::Other);
    }
    let top = Top { reserved }.deserialize(&mut de)?;
    de.end()?;
    Ok(match top {
        Some(parsed_size) if is_one_line(text.trim_ascii()) => Checked::Object { parsed_size },
        _ => Checked::Other,
    })
}

/// Whether a value's text (without the whitespace around it) is on one line, so it can
/// be written as one line of NDJSON.
pub(crate) fn is_one_line(text: &[u8]) -> bool {
    memchr::memchr2(b'\n', b'\r', text).is_none()
}

/// One value of a stream of JSON values (an NDJSON body), checked as [`check_object`]
/// checks it, in the pass that finds where the value ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// An object with no key repeated: its parsed heap estimate. Whether its text is on
    /// one line is the caller's to check ([`is_one_line`]).
    Object { parsed_size: usize },
    /// An array, every element checked (as deep as serde_json parses).
    Array,
    /// A scalar, or an object that repeats a key somewhere inside.
    Other,
}

impl<'de> de::Deserialize<'de> for Scanned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScannedVisitor)
    }
}

struct ScannedVisitor;

impl<'de> Visitor<'de> for ScannedVisitor {
    type Value = Scanned;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scanned, E> {
        Ok(Scanned::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Scanned, E> {
        Ok(Scanned::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Scanned, E> {
        Ok(Scanned::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scanned, E> {
        Ok(Scanned::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Scanned, E> {
        Ok(Scanned::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scanned, E> {
        Ok(Scanned::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scanned, A::Error> {
        Size.visit_seq(seq).map(|_| Scanned::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scanned, A::Error> {
        let top = Top { reserved: &[] }.visit_map(map)?;
        Ok(top.map_or(Scanned::Other, |parsed_size| Scanned::Object {
            parsed_size,
        }))
    }
}

/// The top-level object: its size, or `None` when a key is reserved or repeated.
struct Top<'a> {
    reserved: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = 0usize;
        let mut size = 0usize;
        let mut clash = false;
        let mut seen = SeenKeys::default();
        while let Some(key) = map.next_key_seed(Key {
            reserved: self.reserved,
        })? {
            clash |= key.reserved || !seen.insert(key.hash);
            entries += 1;
            let value = map.next_value_seed(Size)?;
            // A key repeated anywhere inside makes the whole object parsed.
            clash |= value.is_none();
            size = size.saturating_add(key.len + value.unwrap_or_default());
        }
        Ok((!clash).then(|| object_size(entries, size)))
    }
}

struct KeyFound {
    len: usize,
    reserved: bool,
    hash: u64,
}

struct Key<'a> {
    reserved: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = KeyFound;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyFound, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = KeyFound;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyFound, E> {
        Ok(KeyFound {
            len: v.len(),
            reserved: self.reserved.contains(&v),
            hash: key_hash(v.as_bytes()),
        })
    }
}

/// Any value, nested: its heap estimate.
/// Any value, nested: its heap estimate, or `None` when some object in it repeats a key.
struct Size;

impl<'de> DeserializeSeed<'de> for Size {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Size {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some(0))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some(0))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Some(0))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some(0))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(16 + v.len()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Some(0))
    }

    /// As the webhook's decode allowance charges an array: its allocation, and two
    /// slots per element.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut size = Some(ARRAY);
        while let Some(item) = seq.next_element_seed(Size)? {
            size = size.zip(item).map(|(s, i)| s.saturating_add(2 * SLOT + i));
        }
        Ok(size)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Top { reserved: &[] }.visit_map(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::json_size::MAP_NODE;
    use vrl::value::Value;

    fn check(text: &str) -> Result<Checked, String> {
        check_object(text, &["file"]).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_and_refuses_what_the_parser_does() {
        let cases = [
            r#"{"a":1,"b":[1,2.5,"x",null,true,{"c":{}}]}"#,
            r#" {"é\u00e9\ud83d\ude00":"\n"} "#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":1e400}"#,
            r#"{"a":1}{"b":2}"#,
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            "{\"a\":\"\u{1}\"}",
            r#"[{"a":1}]"#,
            "5",
            "",
            r#"{"big":18446744073709551616}"#,
        ];
        for text in cases {
            let ours = check(text);
            let theirs = serde_json::from_str::<Value>(text);
            assert_eq!(
                ours.is_ok(),
                theirs.is_ok(),
                "{text}: {ours:?} vs {theirs:?}"
            );
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(check(&deep).is_err(), "deeper than serde_json parses");
        assert!(serde_json::from_str::<Value>(&deep).is_err());
    }

    #[test]
    fn only_one_line_objects_without_reserved_keys_are_kept_as_text() {
        assert!(matches!(check(r#"{"a":1}"#), Ok(Checked::Object { .. })));
        assert_eq!(check("[1]"), Ok(Checked::Other));
        assert_eq!(check("\"x\""), Ok(Checked::Other));
        assert_eq!(check("{\"a\":\n1}"), Ok(Checked::Other));
        assert_eq!(check(r#"{"file":1}"#), Ok(Checked::Other));
        assert_eq!(
            check(r#"{"fi\u006ce":1}"#),
            Ok(Checked::Other),
            "escaped key"
        );
        assert!(matches!(
            check(r#"{"a":{"file":1}}"#),
            Ok(Checked::Object { .. })
        ));
        assert!(matches!(check("{\"a\":1}\r\n"), Ok(Checked::Object { .. })));
        assert_eq!(
            check(r#"{"a":1,"b":2,"a":3}"#),
            Ok(Checked::Other),
            "repeated key"
        );
        assert_eq!(check(r#"{"x":[{"a":1,"\u0061":2}]}"#), Ok(Checked::Other));
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let unique = format!("{{{}}}", many.join(","));
        assert!(matches!(check(&unique), Ok(Checked::Object { .. })));
        let repeated = format!("{{{},\"k33\":0}}", many.join(","));
        assert_eq!(check(&repeated), Ok(Checked::Other));
    }

    #[test]
    fn an_object_of_very_many_keys_is_checked_in_linear_time() {
        // Half a million keys: instant when each lookup is constant, minutes when each
        // key is compared with every one before it (a red team's 878 KB body held a
        // decode slot for 11 s that way).
        let many: Vec<String> = (0..500_000).map(|i| format!("\"k{i}\":0")).collect();
        let unique = format!("{{{}}}", many.join(","));
        assert!(matches!(check(&unique), Ok(Checked::Object { .. })));
        let repeated = format!("{{{},\"k499998\":1}}", many.join(","));
        assert_eq!(check(&repeated), Ok(Checked::Other));
    }

    #[test]
    fn sizes_grow_with_what_parsing_would_allocate() {
        let size = |t: &str| match check(t) {
            Ok(Checked::Object { parsed_size }) => parsed_size,
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(size("{}"), 0);
        assert!(size(r#"{"a":1}"#) >= MAP_NODE);
        assert!(size(r#"{"a":[{"b":1},{"b":2}]}"#) >= 3 * MAP_NODE);
        assert!(size(r#"{"a":"xxxxxxxxxx"}"#) > size(r#"{"a":"x"}"#));
        // As the decode allowance charges arrays: nested empty arrays are not free.
        let nested = format!("{{\"a\":[{}]}}", "[[]],".repeat(99) + "[[]]");
        assert!(size(&nested) >= 100 * (ARRAY + 2 * SLOT) + ARRAY);
    }
}
