//! An event's payload, kept as the JSON text it arrived as until a component needs its
//! fields. Parsing JSON into VRL values (a B-tree per object, an allocation per key and
//! string) and writing it back was two thirds of the CPU of the NDJSON and file load
//! scenarios; a pipeline that only moves events now does neither.
//!
//! The text is checked when the event is made (see [`crate::event::raw_json`]), so
//! reading it later cannot fail. Reading a field parses it once and keeps both; changing
//! the payload drops the text, so a sink writes what the component left.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use vrl::value::{KeyString, ObjectMap, Value};

/// An event's payload: a VRL value, or JSON text parsed on first read.
#[derive(Debug)]
pub struct Payload {
    /// The payload's JSON text, one line with an object at its root, while no component
    /// changed it.
    raw: Option<RawObject>,
    /// The parsed payload: set from the start for events made from values, on first read
    /// for events made from text.
    value: OnceLock<Value>,
    /// Whether a read-only program already picked fields out of the text (see
    /// [`crate::event::fields`]); the next one parses it whole, once.
    picked: bool,
    /// How many readers of named fields (templates, key fields) took theirs out of the
    /// text (see [`crate::event::fields::root`]).
    field_picks: AtomicU8,
    /// How many times a program's fields were spliced into the text (see
    /// [`crate::event::field_splice`]).
    rewrites: u8,
}

impl Clone for Payload {
    fn clone(&self) -> Self {
        Self {
            raw: self.raw.clone(),
            value: self.value.clone(),
            picked: self.picked,
            field_picks: AtomicU8::new(self.field_picks.load(Ordering::Relaxed)),
            rewrites: self.rewrites,
        }
    }
}

/// Checked JSON text of an object, with what its values would take once parsed.
#[derive(Debug, Clone)]
pub(crate) struct RawObject {
    text: Bytes,
    parsed_size: usize,
}

impl RawObject {
    /// Text already checked to be one line of JSON with an object at its root, nested
    /// no deeper than serde_json reads; `parsed_size` estimates its parsed heap.
    pub(crate) fn checked(text: Bytes, parsed_size: usize) -> Self {
        Self { text, parsed_size }
    }

    pub(crate) fn text(&self) -> &[u8] {
        &self.text
    }
}

impl Payload {
    pub(crate) fn parsed(value: Value) -> Self {
        Self {
            raw: None,
            value: OnceLock::from(value),
            picked: false,
            field_picks: AtomicU8::new(0),
            rewrites: 0,
        }
    }

    pub(crate) fn raw(raw: RawObject) -> Self {
        Self {
            raw: Some(raw),
            value: OnceLock::new(),
            picked: false,
            field_picks: AtomicU8::new(0),
            rewrites: 0,
        }
    }

    /// The payload as a value, parsing JSON text on first use.
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| parse(self.raw.as_ref()))
    }

    pub(crate) fn get_mut(&mut self) -> &mut Value {
        if self.value.get().is_none() {
            let value = parse(self.raw.as_ref());
            self.value = OnceLock::from(value);
        }
        self.raw = None;
        match self.value.get_mut() {
            Some(value) => value,
            None => unreachable!("the value was set just above"),
        }
    }

    /// The payload as a value, parsing JSON text.
    pub fn into_value(self) -> Value {
        let Self { raw, value, .. } = self;
        value.into_inner().unwrap_or_else(|| parse(raw.as_ref()))
    }

    pub(crate) fn set(&mut self, value: Value) {
        *self = Self::parsed(value);
    }

    /// The JSON text the payload arrived as, while no component changed it.
    pub(crate) fn raw_text(&self) -> Option<&[u8]> {
        self.raw.as_ref().map(RawObject::text)
    }

    /// Whether no read-only program picked fields out of the text yet; marks it picked.
    pub(crate) fn first_pick(&mut self) -> bool {
        !std::mem::replace(&mut self.picked, true)
    }

    /// Whether a reader of named fields may take them out of the text (fewer than
    /// `limit` did); counts it if so.
    pub(crate) fn take_field_pick(&self, limit: u8) -> bool {
        let taken = self.field_picks.load(Ordering::Relaxed);
        if taken >= limit {
            return false;
        }
        self.field_picks.store(taken + 1, Ordering::Relaxed);
        true
    }

    /// Whether the text may be rewritten once more (fewer than `limit` rewrites made it);
    /// counts it if so.
    pub(crate) fn take_rewrite(&mut self, limit: u8) -> bool {
        if self.rewrites >= limit {
            return false;
        }
        self.rewrites += 1;
        true
    }

    /// Replaces the payload with new checked text; what read the old text is counted
    /// against the new one too.
    pub(crate) fn set_text(&mut self, raw: RawObject) {
        self.raw = Some(raw);
        self.value = OnceLock::new();
    }

    /// The JSON text, while it has not been parsed.
    pub(crate) fn unparsed_text(&self) -> Option<&[u8]> {
        self.unparsed_bytes().map(|text| &text[..])
    }

    /// [`Self::unparsed_text`] as the shared buffer it lives in, to take slices of.
    pub(crate) fn unparsed_bytes(&self) -> Option<&Bytes> {
        match self.value.get() {
            Some(_) => None,
            None => self.raw.as_ref().map(|r| &r.text),
        }
    }

    /// What the text holds, and what its parse would take (charged before it is made).
    pub(crate) fn raw_size(&self) -> Option<usize> {
        self.raw.as_ref().map(|r| r.text.len() + r.parsed_size)
    }
}

/// Parses checked text. Should the check and the parser ever disagree, the text is kept
/// whole as `message` rather than lost.
fn parse(raw: Option<&RawObject>) -> Value {
    let Some(raw) = raw else {
        return Value::Object(ObjectMap::new());
    };
    match serde_json::from_slice::<Value>(&raw.text) {
        Ok(value @ Value::Object(_)) => value,
        Ok(other) => Value::Object(ObjectMap::from([(KeyString::from("message"), other)])),
        Err(e) => {
            tracing::error!(error = %e, "checked JSON text did not parse; kept as message");
            Value::Object(ObjectMap::from([(
                KeyString::from("message"),
                Value::Bytes(raw.text.clone()),
            )]))
        }
    }
}
