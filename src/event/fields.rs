//! The few top-level fields a read-only program reads, taken out of an event's JSON text
//! without parsing the rest. A `filter` on `.severity` needs one value of an event's
//! ten; parsing all ten into VRL values (a B-tree, an allocation per key and string)
//! and freeing them was about a quarter of the CPU of NDJSON → filter → http.
//!
//! The text was checked when its event was made (one object, no key twice, nested no
//! deeper than serde_json reads), so a field read here is what a full parse would give.

use std::borrow::Cow;
use std::fmt;
use std::ops::ControlFlow;

use bytes::Bytes;
use bytestring::ByteString;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use vrl::path::{OwnedSegment, OwnedTargetPath, OwnedValuePath, PathPrefix};
use vrl::value::{KeyString, ObjectMap, Value};

use super::json_scan;

/// What of an event's payload a read-only program can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reads {
    /// Only these top-level fields (and what is inside them); none for a program that
    /// reads only `%` metadata.
    Fields(Vec<KeyString>),
    /// The whole payload: `.` itself, or a path that does not start with a field name.
    Whole,
}

impl Reads {
    /// From the paths a program queries (VRL's `ProgramInfo::target_queries`), and
    /// assigns.
    pub(crate) fn of<'a>(paths: impl IntoIterator<Item = &'a OwnedTargetPath>) -> Self {
        Self::of_paths(
            paths
                .into_iter()
                .filter(|q| q.prefix == PathPrefix::Event)
                .map(|q| &q.path),
        )
    }

    /// From paths into the payload (a template's fields).
    pub(crate) fn of_paths<'a>(paths: impl IntoIterator<Item = &'a OwnedValuePath>) -> Self {
        let mut names: Vec<KeyString> = Vec::new();
        for path in paths {
            match path.segments.first() {
                Some(OwnedSegment::Field(name)) => add_name(&mut names, name),
                _ => return Self::Whole,
            }
        }
        Self::Fields(names)
    }

    /// What any of several programs may read (one pick serves them all).
    pub(crate) fn union<'a>(all: impl IntoIterator<Item = &'a Reads>) -> Self {
        let mut names: Vec<KeyString> = Vec::new();
        for reads in all {
            match reads {
                Self::Whole => return Self::Whole,
                Self::Fields(more) => more.iter().for_each(|name| add_name(&mut names, name)),
            }
        }
        Self::Fields(names)
    }
}

/// Adds `name` unless it is there (a program names few fields).
fn add_name(names: &mut Vec<KeyString>, name: &KeyString) {
    if !names.contains(name) {
        names.push(name.clone());
    }
}

/// The fields of [`Reads::Fields`] read from one event's text: those present, as an
/// object, and the names that were looked for (a read outside them is a miss).
#[derive(Debug)]
pub(crate) struct Picked<'a> {
    pub(crate) names: &'a [KeyString],
    pub(crate) value: Value,
}

/// The fields `reads` names, from an event whose payload is still unparsed text; `None`
/// when the payload is parsed already (reading it costs nothing more), must be read
/// whole, or had fields picked before: a second picker parses it whole, once, so a
/// chain of conditions on a large field does not read that field again in each.
pub(crate) fn pick_from<'a>(reads: &'a Reads, event: &mut super::Event) -> Option<Picked<'a>> {
    let Reads::Fields(names) = reads else {
        return None;
    };
    event.unparsed_json()?;
    // Picking no field reads nothing, so it does not count.
    if !names.is_empty() && !event.first_pick() {
        return None;
    }
    // A read-only program keeps nothing it reads past the event, so its strings can
    // share the event's text.
    let text = event.unparsed_json_bytes()?;
    pick_in(text, Some(text), names)
}

/// How many readers of named fields may take theirs out of one event's text; the next
/// parses it whole, once, for every reader after it.
const FIELD_PICKS: u8 = 2;

/// The payload to look up paths in that start in `reads`' fields: for an event still in
/// its JSON text, those fields picked out of it (the event stays unparsed); else the
/// payload itself, parsed if it was not.
///
/// At most [`FIELD_PICKS`] readers pick; the next parses the text whole, so a chain of
/// dedupes, throttles and templates reads it at most three times. A pick per reader took
/// 6 times the CPU of one parse with 8 readers of a 1.2 MB field.
pub(crate) fn root<'e>(reads: &Reads, event: &'e super::Event) -> Cow<'e, Value> {
    let payload = &event.payload;
    if let (Reads::Fields(names), Some(text)) = (reads, payload.unparsed_text()) {
        if names.is_empty() {
            return Cow::Owned(Value::Object(ObjectMap::new()));
        }
        if payload.take_field_pick(FIELD_PICKS)
            && let Some(found) = pick(text, names)
        {
            return Cow::Owned(found.value);
        }
    }
    Cow::Borrowed(event.value())
}

/// Reads `names` out of checked JSON text holding an object. `None` if the text does not
/// read as one (it was checked, so this is not expected): the caller parses it whole.
///
/// The members are found by [`json_scan`]'s scan, which stops at the last name found,
/// and only the named values are parsed. What the scan leaves to the parser (an escaped
/// top-level key, deep nesting, a number near `f64`'s edge) is read by serde_json's
/// deserializer instead, which skips the other members more slowly: it decodes every
/// key, and the early stop costs it an error with its message.
///
/// The values are copies: readers such as `aggregate` keep them past the event.
pub(crate) fn pick<'a>(text: &[u8], names: &'a [KeyString]) -> Option<Picked<'a>> {
    pick_in(text, None, names)
}

/// [`pick`], with the strings of `shared` (the same text, when given) as its slices.
fn pick_in<'a>(text: &[u8], shared: Option<&Bytes>, names: &'a [KeyString]) -> Option<Picked<'a>> {
    let found = if names.is_empty() {
        ObjectMap::new()
    } else {
        match scan_pick(text, shared, names) {
            Some(found) => found,
            None => parse_pick(text, names)?,
        }
    };
    Some(Picked {
        names,
        value: Value::Object(found),
    })
}

/// [`pick`] by the scan; `None` when it gives up or a value does not parse.
fn scan_pick(text: &[u8], shared: Option<&Bytes>, names: &[KeyString]) -> Option<ObjectMap> {
    let mut found = ObjectMap::new();
    let mut parsed = true;
    json_scan::each_top_member(text, |member| {
        let key = text.get(member.key).unwrap_or_default();
        let Some(name) = names.iter().find(|n| n.as_bytes() == key) else {
            return ControlFlow::Continue(());
        };
        match member_value(text, shared, member.value) {
            Some(value) => {
                found.insert(name.clone(), value);
            }
            None => {
                parsed = false;
                return ControlFlow::Break(());
            }
        }
        if found.len() == names.len() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    parsed.then_some(found)
}

/// The value at `range` of checked JSON text, or `None` if it does not parse. A string
/// without escapes is its bytes between the quotes: a slice of `shared` (the same text,
/// when given) rather than a copy. A copied string also cost an allocation the first
/// time VRL cloned it (a `Bytes` made from a `Vec` allocates its reference count then):
/// with the copy and the frees, about 5% of the CPU of NDJSON → remap → http.
///
/// A slice keeps the whole text alive, so only readers that keep nothing past the event
/// pass `shared` (`aggregate` keeps its group keys).
pub(crate) fn member_value(
    text: &[u8],
    shared: Option<&Bytes>,
    range: std::ops::Range<usize>,
) -> Option<Value> {
    let value = text.get(range.clone())?;
    if let (Some(shared), [b'"', inner @ .., b'"']) = (shared, value)
        && !inner.contains(&b'\\')
    {
        debug_assert_eq!(shared.as_ref(), text, "the shared buffer is the text");
        // A string, as serde_json reads one into VRL (checked UTF-8; the check is
        // repeated, cheaply, rather than assumed with `unsafe`).
        if let Ok(s) = ByteString::try_from(shared.slice(range.start + 1..range.end - 1)) {
            return Some(Value::String(s));
        }
    }
    serde_json::from_slice(value).ok()
}

/// [`pick`] by serde_json's deserializer.
fn parse_pick(text: &[u8], names: &[KeyString]) -> Option<ObjectMap> {
    let mut pick = Pick {
        names,
        found: ObjectMap::new(),
        done: false,
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    match de.deserialize_map(&mut pick) {
        // Stopped once every name was found: the rest of the text is not read, so
        // serde_json's complaint about the unfinished object means nothing.
        Err(_) if pick.done => {}
        Err(_) => return None,
        Ok(()) => de.end().ok()?,
    }
    Some(pick.found)
}

struct Pick<'n> {
    names: &'n [KeyString],
    found: ObjectMap,
    done: bool,
}

impl<'de> Visitor<'de> for &mut Pick<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(index) = map.next_key_seed(KeyIndex(self.names))? {
            let Some(index) = index else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value: Value = map.next_value()?;
            self.found.insert(self.names[index].clone(), value);
            if self.found.len() == self.names.len() {
                self.done = true;
                return Err(de::Error::custom("every field read"));
            }
        }
        Ok(())
    }
}

/// A key, as the index of the name it equals (escapes resolved, as parsing resolves them).
struct KeyIndex<'n>(&'n [KeyString]);

impl<'de> DeserializeSeed<'de> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|name| name.as_str() == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<KeyString> {
        list.iter().map(|n| KeyString::from(*n)).collect()
    }

    fn picked(text: &str, list: &[&str]) -> Value {
        let names = names(list);
        pick(text.as_bytes(), &names).expect("an object").value
    }

    #[test]
    fn picks_the_named_fields_as_a_full_parse_reads_them() {
        let text =
            r#" {"a":1,"sev\u0065rity":"high","nested":{"x":[1.5,null,"\u00e9"]},"z":true} "#;
        let full: Value = serde_json::from_str(text).expect("JSON");
        let got = picked(text, &["nested", "severity", "missing"]);
        let want = Value::Object(ObjectMap::from([
            (
                "nested".into(),
                full.as_object()
                    .and_then(|m| m.get("nested"))
                    .expect("nested")
                    .clone(),
            ),
            ("severity".into(), Value::from("high")),
        ]));
        assert_eq!(got, want);
        assert_eq!(
            picked(text, &["z"]),
            Value::Object(ObjectMap::from([("z".into(), Value::from(true))]))
        );
        assert_eq!(picked(text, &[]), Value::Object(ObjectMap::new()));
    }

    #[test]
    fn the_scan_picks_what_serde_json_picks_and_stops_at_the_last_name() {
        let deep = format!("{}1{}", "[".repeat(70), "]".repeat(70));
        let texts = [
            r#"{"a":1,"severity":"high","n":{"x":[1.5,null,"\u00e9\n"]},"z":true}"#.to_string(),
            r#"{ "n" : { "severity" : 1 } , "severity" : "lo\"w" }"#.to_string(),
            // The scan gives up on these; serde_json reads them.
            r#"{"severity":1,"big":123456789012345678901234567890e300}"#.to_string(),
            format!(r#"{{"severity":"x","deep":{deep}}}"#),
            format!(r#"{{"deep":{deep},"severity":"x"}}"#),
        ];
        for text in &texts {
            for list in [&["severity"][..], &["n", "z"], &["absent"], &["deep", "a"]] {
                let names = names(list);
                let parsed = Value::Object(parse_pick(text.as_bytes(), &names).expect("an object"));
                assert_eq!(
                    pick(text.as_bytes(), &names).expect("an object").value,
                    parsed,
                    "{text} {list:?}"
                );
                // Strings as slices of the text, where they hold no escape.
                let shared = Bytes::copy_from_slice(text.as_bytes());
                assert_eq!(
                    pick_in(&shared, Some(&shared), &names)
                        .expect("an object")
                        .value,
                    parsed,
                    "{text} {list:?}"
                );
            }
        }
        let names = names(&["severity"]);
        assert!(
            scan_pick(texts[0].as_bytes(), None, &names).is_some(),
            "the scan read it"
        );
        // A plain string shares the text; one with an escape is decoded.
        for (text, shares) in [(&texts[0], true), (&texts[1], false)] {
            let shared = Bytes::copy_from_slice(text.as_bytes());
            let found = scan_pick(&shared, Some(&shared), &names).expect("scanned");
            let Some(Value::String(b)) = found.get("severity") else {
                panic!("a string in {text}: {found:?}");
            };
            let inside = shared.as_ptr_range().contains(&b.as_ptr());
            assert_eq!(inside, shares, "{text}");
        }
        // Found before the scan would give up: the rest is not read.
        assert!(scan_pick(texts[3].as_bytes(), None, &names).is_some());
        assert!(scan_pick(texts[4].as_bytes(), None, &names).is_none());
        assert!(scan_pick(b"{\"severity\":1,\"x\":", None, &names).is_some());
    }

    #[test]
    fn two_readers_pick_their_fields_and_the_third_parses_the_text() {
        let text = r#"{"a":{"k":[1,2]},"b":2,"c":3}"#;
        let event = crate::event::Event::kept_json(text);
        let parsed: Value = serde_json::from_str(text).expect("JSON");
        let reads = |names: &[&str]| Reads::Fields(names.iter().map(|n| (*n).into()).collect());
        let field = |v: &Value, name: &str| v.as_object().and_then(|m| m.get(name)).cloned();
        // A static template names nothing, reads nothing and does not count.
        assert_eq!(
            root(&reads(&[]), &event).as_object().map(|m| m.len()),
            Some(0)
        );
        for names in [&["a"][..], &["b", "a"]] {
            let picked = root(&reads(names), &event);
            assert!(matches!(picked, Cow::Owned(_)), "{names:?}");
            assert_eq!(field(&picked, "a"), field(&parsed, "a"));
            assert!(event.unparsed_json().is_some());
        }
        let whole = root(&reads(&["c"]), &event);
        assert!(matches!(whole, Cow::Borrowed(_)));
        assert_eq!(field(&whole, "c"), Some(Value::from(3)));
        assert!(event.unparsed_json().is_none(), "parsed whole, once");
        assert!(matches!(root(&reads(&["a"]), &event), Cow::Borrowed(_)));
    }

    #[test]
    fn text_that_is_not_an_object_gives_none() {
        // Text after the last field looked for is not read: it was checked already.
        let names = names(&["a"]);
        for text in ["[1]", "1", "{\"b\":1", "{\"b\":1} x", ""] {
            assert!(pick(text.as_bytes(), &names).is_none(), "{text}");
        }
    }

    #[test]
    fn reads_come_from_the_queried_paths() {
        let query = |p: &str| OwnedTargetPath::event(vrl::path::parse_value_path(p).expect("path"));
        let meta = OwnedTargetPath::metadata(vrl::path::parse_value_path("headers").expect("path"));
        assert_eq!(
            Reads::of(&[query("a.b"), query("c"), query("a"), meta.clone()]),
            Reads::Fields(names(&["a", "c"]))
        );
        assert_eq!(Reads::of(&[meta]), Reads::Fields(Vec::new()));
        assert_eq!(Reads::of(&[query("a"), query(".")]), Reads::Whole);
        let both = [
            Reads::Fields(names(&["a"])),
            Reads::Fields(names(&["b", "a"])),
        ];
        assert_eq!(Reads::union(&both), Reads::Fields(names(&["a", "b"])));
        assert_eq!(
            Reads::union(&[Reads::Fields(names(&["a"])), Reads::Whole]),
            Reads::Whole
        );
    }
}
