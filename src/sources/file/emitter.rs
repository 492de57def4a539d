//! Lines to events for the `file` source: the event fields (`message` or the parsed
//! JSON, `file`, `host`, `offset`), lossy UTF-8, the source's counters, and sending a
//! batch with an acknowledgement that reports back to the read loop.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use vrl::value::{KeyString, ObjectMap, Value};

use super::container::Noted;
use super::multiline::Message;
use super::tracker::{Ack, Tracker};
use crate::component::{SourceContext, SourceOutput};
use crate::event::json_size::MAP_NODE;
use crate::event::{BatchAck, Checked, Event, Payload, RawObject, SourceId, check_object};
use crate::telemetry::{ComponentMetrics, LabeledCounter, LatencyRecorder};
use crate::telemetry::{ErrorType, Stage};

pub(super) struct Counters {
    pub(super) truncated_lines: Arc<LabeledCounter>,
    invalid_utf8: Arc<LabeledCounter>,
    json_errors: Arc<LabeledCounter>,
    format_errors: Arc<LabeledCounter>,
    pub(super) files_added: Arc<LabeledCounter>,
    pub(super) files_rotated: Arc<LabeledCounter>,
    pub(super) files_truncated: Arc<LabeledCounter>,
    pub(super) files_released: Arc<LabeledCounter>,
    pub(super) files_removed: Arc<LabeledCounter>,
}

impl Counters {
    fn new(m: &ComponentMetrics) -> Self {
        Self {
            truncated_lines: m.counter("sluice_file_truncated_lines_total", &[]),
            invalid_utf8: m.counter("sluice_file_invalid_utf8_lines_total", &[]),
            json_errors: m.counter("sluice_file_json_errors_total", &[]),
            format_errors: m.counter("sluice_file_format_errors_total", &[]),
            files_added: m.counter("sluice_file_files_added_total", &[]),
            files_rotated: m.counter("sluice_file_files_rotated_total", &[]),
            files_truncated: m.counter("sluice_file_files_truncated_total", &[]),
            files_released: m.counter("sluice_file_files_released_total", &[]),
            files_removed: m.counter("sluice_file_files_removed_total", &[]),
        }
    }
}

impl Counters {
    /// Counts what the container-format joiner saw.
    pub(super) fn note(&self, noted: Noted) {
        if noted.malformed {
            self.format_errors.add(1);
        }
    }
}

/// The keys the source adds to every event; a line that has one at its top level is
/// parsed, so the source's value wins exactly as it does for parsed lines.
const ADDED_KEYS: &[&str] = &["file", "host", "offset"];

/// Turns lines into events and sends them.
pub(super) struct Emitter {
    source: SourceId,
    host: Value,
    /// `host` as JSON text, written into every JSON line kept as text.
    host_json: String,
    json: bool,
    ack_tx: mpsc::UnboundedSender<Ack>,
    pub(super) metrics: Arc<ComponentMetrics>,
    latency: Arc<LatencyRecorder>,
    pub(super) counters: Counters,
}

impl Emitter {
    pub(super) fn new(
        cx: &SourceContext,
        host: String,
        json: bool,
        ack_tx: mpsc::UnboundedSender<Ack>,
    ) -> Self {
        Self {
            source: cx.id,
            host_json: serde_json::to_string(&host).unwrap_or_else(|_| "\"\"".to_owned()),
            host: Value::Bytes(Bytes::from(host)),
            json,
            ack_tx,
            metrics: Arc::clone(&cx.metrics),
            latency: Arc::clone(cx.telemetry.latency()),
            counters: Counters::new(&cx.metrics),
        }
    }

    /// A line's event: a JSON line without container metadata keeps its text, with the
    /// source's fields written after its own (see [`crate::event::Payload`]).
    pub(super) fn payload(&self, msg: Message, file: &Value) -> Payload {
        if self.json && msg.meta.is_none() {
            match check_object(&msg.text, ADDED_KEYS) {
                Ok(Checked::Object { parsed_size }) => {
                    return Payload::raw(self.with_added_keys(msg, file, parsed_size));
                }
                Ok(Checked::Other) => {}
                Err(_) => return Payload::parsed(self.value(msg, file)),
            }
        }
        Payload::parsed(self.value(msg, file))
    }

    /// The line's object with `file`, `host` and `offset` appended, which parses to what
    /// [`Self::value`] builds: the line has none of these keys at its top level.
    fn with_added_keys(&self, msg: Message, file: &Value, parsed_size: usize) -> RawObject {
        let line = msg.text.trim_ascii();
        let open = line.strip_suffix('}').unwrap_or(line);
        let empty = open
            .strip_prefix('{')
            .unwrap_or(open)
            .trim_ascii()
            .is_empty();
        // The keys, the offset's digits and the closing brace take 48 bytes; the path's
        // quotes 2 more (its escapes are rare). Too little here reallocated every line.
        let file_len = match file {
            Value::Bytes(b) => b.len() + 2,
            _ => 64,
        };
        let mut text = Vec::with_capacity(open.len() + file_len + self.host_json.len() + 48);
        text.extend_from_slice(open.as_bytes());
        text.extend_from_slice(if empty { b"\"file\":" } else { b",\"file\":" });
        let _ = serde_json::to_writer(&mut text, file);
        text.extend_from_slice(b",\"host\":");
        text.extend_from_slice(self.host_json.as_bytes());
        let _ = write!(
            text,
            ",\"offset\":{}}}",
            i64::try_from(msg.offset).unwrap_or(i64::MAX)
        );
        // Room for the three entries, their strings and a B-tree node they may need.
        let added = MAP_NODE + text.len() - open.len() + 3 * 16;
        RawObject::checked(Bytes::from(text), parsed_size + added)
    }

    fn value(&self, mut msg: Message, file: &Value) -> Value {
        let msg_meta = msg.meta.take().map(|m| *m);
        let mut map = if self.json {
            match serde_json::from_str::<Value>(&msg.text) {
                Ok(Value::Object(m)) => m,
                Ok(other) => ObjectMap::from([(KeyString::from("message"), other)]),
                Err(_) => {
                    self.counters.json_errors.add(1);
                    self.metrics
                        .add_errors(1, ErrorType::Parse, Stage::Receiving);
                    ObjectMap::from([(
                        KeyString::from("message"),
                        Value::Bytes(Bytes::from(msg.text)),
                    )])
                }
            }
        } else {
            ObjectMap::from([(
                KeyString::from("message"),
                Value::Bytes(Bytes::from(msg.text)),
            )])
        };
        if let Some(meta) = msg_meta {
            map.insert(
                KeyString::from("stream"),
                Value::Bytes(Bytes::from(meta.stream)),
            );
            if let Some(time) = meta.time {
                // The runtime's own clock, as a timestamp; kept as text if it is none.
                let value = match chrono::DateTime::parse_from_rfc3339(&time) {
                    Ok(t) => Value::Timestamp(t.with_timezone(&chrono::Utc)),
                    Err(_) => Value::Bytes(Bytes::from(time)),
                };
                map.insert(KeyString::from("timestamp"), value);
            }
        }
        map.insert(KeyString::from("file"), file.clone());
        map.insert(KeyString::from("host"), self.host.clone());
        map.insert(
            KeyString::from("offset"),
            Value::Integer(i64::try_from(msg.offset).unwrap_or(i64::MAX)),
        );
        Value::Object(map)
    }

    /// Sends one batch ending at `end` and tracks its acknowledgement.
    pub(super) async fn send(
        &self,
        tracker: &mut Tracker,
        values: Vec<Payload>,
        end: u64,
        out: &mut SourceOutput,
    ) {
        let n = values.len();
        let (ack, done) = BatchAck::with_receiver(n, Some(Arc::clone(&self.latency)));
        let now = chrono::Utc::now();
        let batch: Vec<Event> = values
            .into_iter()
            .map(|v| Event::from_payload(v, self.source, now).with_ack(ack.event_ack()))
            .collect();
        drop(ack);
        let seq = tracker.push(end);
        let (tx, id) = (self.ack_tx.clone(), tracker.id);
        tokio::spawn(async move {
            let status = done.wait().await;
            let _ = tx.send(Ack {
                tracker: id,
                seq,
                status,
            });
        });
        self.metrics.add_received(n);
        out.send(batch).await;
    }
}

/// Decodes a framed line: lossy UTF-8 (counted), except that a multi-byte character cut
/// by truncation is dropped rather than counted as invalid.
pub(super) fn decode(bytes: &[u8], truncated: bool, counters: &Counters) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(e) if truncated && e.error_len().is_none() => {
            String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned()
        }
        Err(_) => {
            counters.invalid_utf8.add(1);
            String::from_utf8_lossy(bytes).into_owned()
        }
    }
}
