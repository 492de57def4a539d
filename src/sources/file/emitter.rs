//! Lines to events for the `file` source: the event fields (`message` or the parsed
//! JSON, `file`, `host`, `offset`), lossy UTF-8, the source's counters, and sending a
//! batch with an acknowledgement that reports back to the read loop.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use vrl::value::{KeyString, ObjectMap, Value};

use super::container::Noted;
use super::multiline::Message;
use super::tracker::{Ack, Tracker};
use crate::component::{SourceContext, SourceOutput};
use crate::event::{BatchAck, Event};
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

/// Turns lines into events and sends them.
pub(super) struct Emitter {
    source: Arc<str>,
    host: Value,
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
            source: Arc::clone(&cx.id),
            host: Value::Bytes(Bytes::from(host)),
            json,
            ack_tx,
            metrics: Arc::clone(&cx.metrics),
            latency: Arc::clone(cx.telemetry.latency()),
            counters: Counters::new(&cx.metrics),
        }
    }

    pub(super) fn value(&self, mut msg: Message, file: &Value) -> Value {
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
        values: Vec<Value>,
        end: u64,
        out: &mut SourceOutput,
    ) {
        let n = values.len();
        let (ack, done) = BatchAck::with_receiver(n, Some(Arc::clone(&self.latency)));
        let now = chrono::Utc::now();
        let batch: Vec<Event> = values
            .into_iter()
            .map(|v| Event::new(v, Arc::clone(&self.source), now).with_ack(ack.event_ack()))
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
