//! Batches into PackedForward messages: one per tag, split at the size limit.

use std::io::Write;

use base64::Engine;
use indexmap::IndexMap;
use vrl::value::{ObjectMap, Value};

use crate::delivery::Failure;
use crate::event::{Event, EventBatch};
use crate::fluent::handshake::random16;
use crate::fluent::message::packed_forward;
use crate::fluent::value::{write_str, write_time, write_value};
use crate::template::Template;

/// One message ready to send, and the events it carries.
pub(super) struct Message {
    pub(super) bytes: Vec<u8>,
    /// The `chunk` id the server must ack (`None` without `require_ack`).
    pub(super) chunk: Option<String>,
    pub(super) events: Vec<Event>,
}

/// Bytes of a PackedForward message besides its tag and entries, at most: the array,
/// the tag's and the entries' headers, and the options with a chunk id.
const MESSAGE_OVERHEAD: usize = 96;

#[derive(Default)]
struct Group {
    entries: Vec<u8>,
    events: Vec<Event>,
}

/// The messages of a batch, and the events that cannot be sent (their tag does not
/// render, or one record alone is over `max` bytes).
pub(super) fn messages(
    batch: EventBatch,
    template: &Template,
    max: usize,
    gzip: bool,
    ack: bool,
) -> (Vec<Message>, Vec<(Event, Failure)>) {
    let mut groups: IndexMap<String, Group> = IndexMap::new();
    let mut out = Vec::new();
    let mut refused = Vec::new();
    let refuse = |error: String| Failure {
        error,
        status: None,
        attempts: 0,
        body: None,
    };
    for event in batch {
        let tag = match template.render(&event) {
            Ok(tag) if !tag.is_empty() => tag,
            Ok(_) => {
                refused.push((event, refuse("`tag` rendered empty".into())));
                continue;
            }
            Err(e) => {
                refused.push((event, refuse(format!("`tag`: {e}"))));
                continue;
            }
        };
        let mut entry = Vec::new();
        write_entry(&mut entry, &event, &tag);
        // The message around the entries: its array, tag, bin header and option map.
        let max = max.saturating_sub(tag.len() + MESSAGE_OVERHEAD);
        if entry.len() > max {
            let error = format!(
                "a record of {} bytes is over max_message_bytes ({max})",
                entry.len()
            );
            refused.push((event, refuse(error)));
            continue;
        }
        let group = groups.entry(tag.clone()).or_default();
        if !group.entries.is_empty() && group.entries.len() + entry.len() > max {
            out.push(finish(&tag, std::mem::take(group), gzip, ack));
        }
        group.entries.extend_from_slice(&entry);
        group.events.push(event);
    }
    out.extend(
        groups
            .into_iter()
            .map(|(tag, g)| finish(&tag, g, gzip, ack)),
    );
    (out, refused)
}

/// `[time, record]`: the event's `timestamp` is the time (else when it was received),
/// and the record is its fields but those two sent apart (`timestamp`, and `tag` when
/// it is the message's tag).
fn write_entry(out: &mut Vec<u8>, event: &Event, tag: &str) {
    out.push(0x92);
    let empty = ObjectMap::new();
    let fields = match event.value() {
        Value::Object(m) => m,
        _ => &empty,
    };
    let time = match fields.get("timestamp") {
        Some(Value::Timestamp(t)) => *t,
        _ => event.meta.received_at,
    };
    write_time(out, time);
    let sent_apart = |k: &str, v: &Value| match (k, v) {
        ("timestamp", Value::Timestamp(_)) => true,
        ("tag", Value::Bytes(b)) => b.as_ref() == tag.as_bytes(),
        ("tag", Value::String(s)) => s.as_bytes() == tag.as_bytes(),
        _ => false,
    };
    let record = || fields.iter().filter(|(k, v)| !sent_apart(k, v));
    let _ = rmp::encode::write_map_len(out, record().count() as u32);
    for (k, v) in record() {
        write_str(out, k.as_bytes());
        write_value(out, v);
    }
}

fn finish(tag: &str, group: Group, gzip: bool, ack: bool) -> Message {
    let payload = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing to a Vec cannot fail.
        let _ = enc.write_all(&group.entries);
        enc.finish().unwrap_or_default()
    } else {
        group.entries
    };
    let chunk = ack.then(|| base64::engine::general_purpose::STANDARD.encode(random16()));
    Message {
        bytes: packed_forward(tag, &payload, group.events.len(), chunk.as_deref(), gzip),
        chunk,
        events: group.events,
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::fluent::message::{Bounds, Request, parse};

    #[test]
    fn messages_split_so_that_the_whole_message_fits_the_limit() {
        let template = Template::parse("app.{{ service }}").expect("template");
        let batch: EventBatch = (0..20)
            .map(|n| {
                let mut m = ObjectMap::new();
                m.insert("service".into(), Value::from("api"));
                m.insert("n".into(), Value::Integer(n));
                m.insert("pad".into(), Value::from("x".repeat(300)));
                Event::new(
                    Value::Object(m),
                    crate::event::SourceId::intern("t"),
                    chrono::Utc::now(),
                )
            })
            .collect();
        let max = 1000;
        let (messages, refused) = messages(batch, &template, max, false, true);
        assert!(refused.is_empty());
        assert!(messages.len() > 1);
        let mut seen = 0;
        for m in &messages {
            assert!(m.bytes.len() <= max, "{} bytes", m.bytes.len());
            let bounds = Bounds {
                max_depth: 8,
                max_entries: 100,
                max_decompressed: max,
                allowance: 1 << 20,
            };
            let Ok(Request::Events(events)) = parse(&m.bytes, &bounds) else {
                panic!("a valid message");
            };
            assert_eq!(events.tag, "app.api");
            seen += events.entries.len();
        }
        assert_eq!(seen, 20);
    }
}
