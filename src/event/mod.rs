//! The event model: a `vrl::value::Value` plus the metadata the engine needs.
//!
//! VRL runs directly on [`Event::value`], so no conversion happens between components;
//! JSON exists only at the edges (decoders and encoders). Events travel in batches
//! ([`EventBatch`]) over bounded channels.

mod ack;
pub(crate) mod field_splice;
mod field_target;
pub(crate) mod fields;
pub(crate) mod flatten;
pub(crate) mod json_scan;
pub(crate) mod json_size;
pub(crate) mod latency;
mod payload;
pub(crate) mod raw_json;
mod source_id;
mod vrl_metadata;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use vrl::value::{KeyString, ObjectMap, Value};

pub use ack::{BatchAck, BatchReceiver, EventAck, EventStatus};
pub(crate) use field_target::FieldTarget;
pub use payload::Payload;
pub(crate) use payload::RawObject;
pub(crate) use raw_json::{Checked, check_object};
pub use source_id::SourceId;
pub(crate) use vrl_metadata::{EventTarget, EventView, VrlMetadata};

/// A batch of events; the unit that moves over channels.
pub type EventBatch = Vec<Event>;

/// One monitoring event.
#[derive(Debug, Clone)]
pub struct Event {
    /// The payload: always an object once it left its source, parsed or as JSON text.
    payload: Payload,
    pub(crate) meta: EventMetadata,
}

/// What travels with an event but is not its payload.
#[derive(Debug, Clone)]
pub(crate) struct EventMetadata {
    /// Id of the component that created the event.
    pub(crate) source_id: SourceId,
    /// When the source received or created it.
    pub(crate) received_at: DateTime<Utc>,
    /// VRL's `%` metadata (Kafka topic and offset, HTTP headers, …). An empty object by
    /// default, which does not allocate; shared between the events of one request.
    pub(crate) vrl: VrlMetadata,
    pub(crate) ack: EventAck,
}

impl Event {
    /// Wraps `value` into an event. Objects are kept as they are; anything else becomes
    /// `{ "message": value }`, so downstream components can rely on an object root.
    pub fn new(value: Value, source_id: SourceId, received_at: DateTime<Utc>) -> Self {
        Self::from_payload(Payload::parsed(value), source_id, received_at)
    }

    /// [`Event::new`] for a payload that may be JSON text.
    pub(crate) fn from_payload(
        payload: Payload,
        source_id: SourceId,
        received_at: DateTime<Utc>,
    ) -> Self {
        let payload = match payload.raw_text() {
            Some(_) => payload,
            None => Payload::parsed(into_object(payload.into_value())),
        };
        Self {
            payload,
            meta: EventMetadata {
                source_id,
                received_at,
                vrl: VrlMetadata::default(),
                ack: EventAck::none(),
            },
        }
    }

    /// The payload: always a `Value::Object` once it left its source.
    /// Parses a payload that is still JSON text, once.
    pub fn value(&self) -> &Value {
        self.payload.value()
    }

    /// The payload, to change in place.
    pub fn value_mut(&mut self) -> &mut Value {
        self.payload.get_mut()
    }

    /// The payload, leaving the event (and its acknowledgement) behind.
    pub fn into_value(self) -> Value {
        self.payload.into_value()
    }

    /// The payload and the VRL `%` metadata, both to change (a VRL program's target).
    pub(crate) fn parts_mut(&mut self) -> (&mut Value, &mut VrlMetadata) {
        (self.payload.get_mut(), &mut self.meta.vrl)
    }

    /// The JSON text of a payload not parsed yet (reading fields from it saves parsing).
    pub(crate) fn unparsed_json(&self) -> Option<&[u8]> {
        self.payload.unparsed_text()
    }

    /// [`Self::unparsed_json`] as the shared buffer it lives in: strings read from it
    /// can be slices of it rather than copies.
    pub(crate) fn unparsed_json_bytes(&self) -> Option<&Bytes> {
        self.payload.unparsed_bytes()
    }

    /// Whether fields may be picked out of the payload's text (the first time only: a
    /// second reader parses it whole, so a chain of conditions reads the text at most
    /// twice).
    pub(crate) fn first_pick(&mut self) -> bool {
        self.payload.first_pick()
    }

    /// An event kept as the JSON text of an object, as the webhook and file sources make
    /// them (tests).
    #[cfg(test)]
    pub(crate) fn kept_json(text: &str) -> Self {
        let Ok(Checked::Object { parsed_size }) = check_object(text, &[]) else {
            panic!("{text} is kept as text");
        };
        let raw = RawObject::checked(bytes::Bytes::copy_from_slice(text.as_bytes()), parsed_size);
        Self::from_payload(Payload::raw(raw), SourceId::intern("test"), Utc::now())
    }

    /// An event of the JSON object `text`: kept as that text (as sources keep it) or
    /// parsed (tests comparing the two).
    #[cfg(test)]
    pub(crate) fn json(text: &str, kept: bool) -> Self {
        match kept {
            true => Self::kept_json(text),
            false => Self::new(
                serde_json::from_str(text).expect("JSON"),
                SourceId::intern("test"),
                Utc::now(),
            ),
        }
    }

    /// The VRL `%` metadata, to read.
    pub(crate) fn vrl_metadata(&self) -> &VrlMetadata {
        &self.meta.vrl
    }

    /// Replaces the payload.
    pub fn set_value(&mut self, value: Value) {
        self.payload.set(value);
    }

    /// The JSON text the payload arrived as, while no component changed it.
    pub(crate) fn raw_json(&self) -> Option<&[u8]> {
        self.payload.raw_text()
    }

    /// What the payload holds in memory (see [`crate::buffer`]'s estimate): for JSON
    /// text, the text and what parsing it would take, whether or not it was parsed yet;
    /// `None` for a payload that is only a value.
    pub(crate) fn raw_json_size(&self) -> Option<usize> {
        self.payload.raw_size()
    }

    /// Builder-style: attach the acknowledgement obligation.
    pub fn with_ack(mut self, ack: EventAck) -> Self {
        self.meta.ack = ack;
        self
    }

    /// Reports this event's outcome to its source and consumes it.
    pub fn settle(mut self, status: EventStatus) {
        self.meta.ack.take().settle(status);
    }

    /// Serializes the payload as one line of JSON (no trailing newline).
    /// A payload still in the JSON text it arrived as is written as it came.
    pub(crate) fn to_json_line(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match self.payload.raw_text() {
            Some(text) => {
                out.extend_from_slice(text);
                Ok(())
            }
            None => serde_json::to_writer(out, self.payload.value()),
        }
    }

    /// Sets a top-level field.
    pub fn insert(&mut self, key: &str, value: impl Into<Value>) {
        if let Value::Object(map) = self.payload.get_mut() {
            map.insert(KeyString::from(key), value.into());
        }
    }

    /// A top-level field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self.payload.value() {
            Value::Object(map) => map.get(key),
            _ => None,
        }
    }

    /// A top-level field as text: strings as they are, timestamps in RFC 3339, anything
    /// else as VRL writes it; `None` when missing or null.
    pub(crate) fn text(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::Null => None,
            Value::Timestamp(t) => Some(t.to_rfc3339()),
            other => Some(other.to_string_lossy().into_owned()),
        }
    }
}

/// Ensures an object root, wrapping scalars and arrays under `message`.
pub(crate) fn into_object(value: Value) -> Value {
    match value {
        Value::Object(_) => value,
        other => {
            let mut map = ObjectMap::new();
            map.insert(KeyString::from("message"), other);
            Value::Object(map)
        }
    }
}

/// Settles every event of a batch with one status.
pub fn settle_all(batch: EventBatch, status: EventStatus) {
    for event in batch {
        event.settle(status);
    }
}

/// A VRL timestamp of wall-clock milliseconds (`null` when out of range).
pub(crate) fn timestamp_ms(ms: i64) -> Value {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or(Value::Null, Value::Timestamp)
}

/// When an event happened: its `timestamp` (a timestamp, or RFC 3339 text as webhook
/// JSON carries it), else when sluice received it.
pub(crate) fn time_of(event: &Event) -> DateTime<Utc> {
    match event.get("timestamp") {
        Some(Value::Timestamp(t)) => *t,
        Some(v @ (Value::Bytes(_) | Value::String(_))) => {
            DateTime::parse_from_rfc3339(&v.to_string_lossy())
                .map_or(event.meta.received_at, |t| t.with_timezone(&Utc))
        }
        _ => event.meta.received_at,
    }
}

/// A numeric value as `f64`; `None` for anything else.
pub(crate) fn as_f64(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(f.into_inner()),
        _ => None,
    }
}

/// The event as a line of text: its `message` when that is text (or another scalar),
/// else the whole event as JSON. No newline is added.
pub(crate) fn message_or_json(event: &Event, out: &mut Vec<u8>) {
    match event.get("message") {
        Some(Value::Bytes(b)) => out.extend_from_slice(b),
        Some(other) if !matches!(other, Value::Object(_) | Value::Array(_)) => {
            out.extend_from_slice(other.to_string_lossy().as_bytes());
        }
        _ => {
            if let Err(e) = event.to_json_line(out) {
                tracing::error!(error = %e, "event could not be serialized");
            }
        }
    }
}

/// JSON bytes as a value; `Err` holds bytes that are not JSON, as text.
pub(crate) fn json_or_text(bytes: &[u8]) -> Result<Value, Value> {
    serde_json::from_slice::<Value>(bytes)
        .map_err(|_| Value::from(String::from_utf8_lossy(bytes).into_owned()))
}

/// The integer `field` of each event (-1 where it has none), once every event is checked
/// to be still unparsed when `kept` (tests of components that read fields out
/// of kept text: the same events must pass, and pass unparsed).
#[cfg(test)]
pub(crate) fn passed_ints(events: &[Event], field: &str, kept: bool) -> Vec<i64> {
    if kept {
        assert!(
            events.iter().all(|e| e.unparsed_json().is_some()),
            "an event kept as text was parsed"
        );
    }
    events
        .iter()
        .map(|e| e.get(field).and_then(|v| v.as_integer()).unwrap_or(-1))
        .collect()
}
