//! Changing a few top-level fields of an event still in its JSON text without parsing
//! the rest. A `remap` that sets two fields parsed each whole event into VRL values (a
//! B-tree, an allocation per key and string), and the sink wrote it all out again: half
//! the CPU of NDJSON → remap → blackhole. Now the program runs on an object of just the
//! fields it names ([`open`]), and what it wrote goes back into the text ([`splice`]).
//!
//! The text was checked when its event was made (one line, one object, no key twice),
//! and the spliced text keeps those guarantees: written keys replace their members,
//! values that would not read back as the same VRL value (timestamps, regexes, bytes
//! that are not UTF-8, floats that are not finite) make the event parsed instead.

use bytes::Bytes;
use bytestring::ByteString;
use vrl::value::{KeyString, ObjectMap, Value};

use super::fields::member_value;
use super::json_scan::{Member, STRING, member_value_size, plain_len, top_members};
use super::json_size::object_size;
use super::{Event, RawObject};

/// How many times one event's text may be rewritten; the next writer parses it whole,
/// once, so a chain of remaps on a large event does not copy it again in each.
const REWRITES: u8 = 3;

/// An event's members as [`open`] found them, kept for [`splice`]; reused between
/// events.
#[derive(Debug, Default)]
pub(crate) struct Members {
    members: Vec<Member>,
    /// For each member, the index of the name it bears, or [`UNNAMED`]: the names are
    /// compared once per event, not again when splicing.
    named: Vec<u8>,
}

/// A member whose key is not among the program's names (there are at most 64).
const UNNAMED: u8 = u8::MAX;

/// The fields `names` names that `event`'s text holds, as an object, with the text's
/// members in `members`. With `share`, strings are slices of the text (see
/// [`member_value`]): only for a program that keeps nothing past its run. `None` when
/// the payload is parsed already, was rewritten [`REWRITES`] times, or holds what the
/// scan leaves to the parser (an escaped top-level key, nesting beyond the scan's
/// depth): the caller works on the parsed payload.
pub(crate) fn open(
    event: &mut Event,
    names: &[KeyString],
    members: &mut Members,
    share: bool,
) -> Option<ObjectMap> {
    members.members.clear();
    members.named.clear();
    event.unparsed_json()?;
    if names.is_empty() {
        // A program that writes only `%` changes nothing of the text.
        return Some(ObjectMap::new());
    }
    if !event.payload.take_rewrite(REWRITES) {
        return None;
    }
    let text = event.unparsed_json_bytes()?;
    top_members(text, &mut members.members)?;
    let mut fields = ObjectMap::new();
    for member in &members.members {
        let key = text.get(member.key.clone())?;
        let Some(i) = names.iter().position(|n| n.as_bytes() == key) else {
            members.named.push(UNNAMED);
            continue;
        };
        members.named.push(u8::try_from(i).ok()?);
        let value = member_value(text, share.then_some(text), member.value.clone())?;
        fields.insert(names[i].clone(), value);
    }
    Some(fields)
}

/// Puts the fields of `names` flagged in `written` (bit `i` for `names[i]`) back into
/// the event [`open`] opened: a field in `fields` replaces its member or is appended, a
/// field missing from them was deleted and its member is left out; the other members
/// are copied as they are. A written value that would not read back from JSON as itself
/// makes the event parsed, with the fields set on the parsed payload.
pub(crate) fn splice(
    event: &mut Event,
    members: &Members,
    names: &[KeyString],
    written: u64,
    fields: ObjectMap,
) {
    if written == 0 {
        return;
    }
    let spliced = event
        .unparsed_json()
        .and_then(|text| spliced(text, members, names, written, &fields));
    match spliced {
        Some(raw) => event.payload.set_text(raw),
        None => {
            let Value::Object(payload) = event.value_mut() else {
                return;
            };
            let mut fields = fields;
            for (i, name) in names.iter().enumerate() {
                if written & (1 << i) == 0 {
                    continue;
                }
                match fields.remove(name) {
                    Some(value) => payload.insert(name.clone(), detached(value)),
                    None => payload.remove(name),
                };
            }
        }
    }
}

/// `value` with its strings copied: one read from the text may be a slice of it, which
/// the parsed payload would keep alive, uncounted, after the text is dropped.
fn detached(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(ByteString::from(s.as_ref())),
        Value::Bytes(b) => Value::Bytes(Bytes::copy_from_slice(&b)),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, detached(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(detached).collect()),
        other => other,
    }
}

/// The text of [`splice`]; `None` when a written value does not read back.
fn spliced(
    text: &[u8],
    members: &Members,
    names: &[KeyString],
    written: u64,
    fields: &ObjectMap,
) -> Option<RawObject> {
    let mut out = Object {
        text: Vec::with_capacity(text.len() + 64),
        entries: 0,
        contents: 0,
    };
    out.text.push(b'{');
    // Members the program did not write are copied in runs, with the text between them.
    let mut run: Option<std::ops::Range<usize>> = None;
    let mut placed = 0u64;
    for (member, &named) in members.members.iter().zip(&members.named) {
        let index = (named != UNNAMED)
            .then_some(usize::from(named))
            .filter(|&i| written & (1 << i) != 0);
        let Some(i) = index else {
            out.entries += 1;
            out.contents = out.contents.saturating_add(member.size);
            match &mut run {
                Some(r) => r.end = member.value.end,
                None => run = Some(member.start..member.value.end),
            }
            continue;
        };
        if let Some(r) = run.take() {
            out.copy(text.get(r)?);
        }
        placed |= 1 << i;
        if let Some(value) = fields.get(&names[i]) {
            out.member(&names[i], value)?;
        }
    }
    if let Some(r) = run.take() {
        out.copy(text.get(r)?);
    }
    for (i, name) in names.iter().enumerate() {
        if written & (1 << i) != 0
            && placed & (1 << i) == 0
            && let Some(value) = fields.get(name)
        {
            out.member(name, value)?;
        }
    }
    out.text.push(b'}');
    let size = object_size(out.entries, out.contents);
    // A `Bytes` made from a `Vec` with spare room allocates a reference count; one
    // without takes the buffer as it is (the allocator shrinks it in place).
    out.text.shrink_to_fit();
    Some(RawObject::checked(Bytes::from(out.text), size))
}

/// The object being written, with what it will take once parsed.
struct Object {
    text: Vec<u8>,
    /// Members written so far; copied runs count theirs when they begin.
    entries: usize,
    contents: usize,
}

impl Object {
    /// A separator unless this is the first thing after `{`.
    fn separate(&mut self) {
        if self.text.len() > 1 {
            self.text.push(b',');
        }
    }

    /// Members copied from the text as they are (their count and size already added).
    fn copy(&mut self, members: &[u8]) {
        self.separate();
        self.text.extend_from_slice(members);
    }

    /// A member written anew: its key as JSON writes it (escaped where it must be), and
    /// its value, when that reads back from JSON as itself.
    fn member(&mut self, key: &KeyString, value: &Value) -> Option<()> {
        if !reads_back(value, 0) {
            return None;
        }
        self.separate();
        if self.string(key.as_bytes()).is_err() {
            serde_json::to_writer(&mut self.text, key.as_str()).ok()?;
        }
        self.text.push(b':');
        let plain = match value {
            Value::Bytes(b) => Some(&b[..]),
            Value::String(s) => Some(&s.as_bytes()[..]),
            _ => None,
        };
        let size = match plain {
            Some(s) if self.string(s).is_ok() => STRING + s.len(),
            _ => {
                let start = self.text.len();
                serde_json::to_writer(&mut self.text, value).ok()?;
                member_value_size(self.text.get(start..)?)?
            }
        };
        self.entries += 1;
        self.contents = self.contents.saturating_add(size + key.len());
        Some(())
    }

    /// A string (UTF-8: a key, or a value [`reads_back`] passed) that JSON writes as it
    /// is, between quotes; `Err` when it has something to escape, with nothing written
    /// (serde_json writes it then).
    fn string(&mut self, s: &[u8]) -> Result<(), ()> {
        if plain_len(s) != s.len() {
            return Err(());
        }
        self.text.reserve(s.len() + 2);
        self.text.push(b'"');
        self.text.extend_from_slice(s);
        self.text.push(b'"');
        Ok(())
    }
}

/// Deeper than this is left to the parsed payload (the scan of the text gives up deeper
/// anyway).
const MAX_DEPTH: usize = 64;

/// Whether `value`, written as JSON and read back, is `value` again.
fn reads_back(value: &Value, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match value {
        Value::Bytes(b) => std::str::from_utf8(b).is_ok(),
        Value::String(_) => true,
        Value::Float(f) => f.is_finite(),
        Value::Integer(_) | Value::Boolean(_) | Value::Null => true,
        Value::Timestamp(_) | Value::Regex(_) => false,
        Value::Object(map) => map.values().all(|v| reads_back(v, depth + 1)),
        Value::Array(items) => items.iter().all(|v| reads_back(v, depth + 1)),
    }
}

#[cfg(test)]
mod tests;
