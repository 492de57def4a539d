//! Fuzz entry points for what arrives over the network apart from webhook bodies: the
//! Forward, syslog, remote-write and OTLP readers, and the label matchers the API takes.

use chrono::Utc;

use crate::event::{Event, SourceId};

/// A Forward protocol connection's bytes (the `fluent` source): framing under any read
/// sizes (the first byte picks them) finds the same messages as framing them whole;
/// every message decodes or fails with a reason, within its bounds; every record
/// becomes an event that serializes; the handshake readers never panic.
pub fn fluent_stream(data: &[u8]) {
    use crate::fluent::frame::{Limits, Scanner};
    use crate::fluent::handshake;
    use crate::fluent::message::{self, Bounds, Request};

    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_bytes: 64 * 1024,
        max_depth: 32,
    };
    let frames = |step: usize| {
        let mut scanner = Scanner::new(limits);
        let (mut start, mut end, mut found) = (0, 0, Vec::new());
        while end < data.len() {
            end = (end + step).min(data.len());
            loop {
                match scanner.scan(&data[start..end]) {
                    Ok(Some(n)) => {
                        found.push(Ok(start..start + n));
                        start += n;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        found.push(Err(e));
                        return found;
                    }
                }
            }
        }
        found
    };
    let whole = frames(data.len().max(1));
    assert_eq!(
        whole,
        frames(usize::from(step % 16) + 1),
        "read sizes change what is framed"
    );
    let bounds = Bounds {
        max_depth: 32,
        max_entries: 1000,
        max_decompressed: 64 * 1024,
        allowance: crate::buffer::cost::decode_allowance(data.len()),
    };
    let source = SourceId::intern("fuzz");
    let mut line = Vec::new();
    for frame in whole.into_iter().flatten() {
        let frame = &data[frame];
        let _ = handshake::parse_ping(frame);
        let _ = handshake::parse_helo(frame);
        let Ok(Request::Events(events)) = message::parse(frame, &bounds) else {
            continue;
        };
        assert!(events.entries.len() <= bounds.max_entries);
        for (_, record) in events.entries {
            let event = Event::new(vrl::value::Value::Object(record), source, Utc::now());
            line.clear();
            event
                .to_json_line(&mut line)
                .expect("a record serializes to JSON");
        }
    }
}

/// Prometheus remote-write bodies: decoding never panics, stays within its bounds, and
/// every sample it yields is a metric event with a name and a number.
pub fn remote_write(data: &[u8]) {
    const MAX_SAMPLES: usize = 1000;
    let Ok(decoded) = crate::sources::prometheus_remote_write::decode(data, 1 << 20, MAX_SAMPLES)
    else {
        return;
    };
    assert!(decoded.events.len() + decoded.stale <= MAX_SAMPLES);
    for event in &decoded.events {
        let object = event.as_object().expect("an object");
        assert!(object.get("name").is_some_and(|n| n.is_bytes()));
        assert!(object.get("value").is_some_and(|v| v.is_float()));
    }
}

/// A syslog TCP stream (`syslog` source): framing under any read sizes (the first byte
/// picks them) finds the same messages as framing the bytes whole; no message is longer
/// than `max_length` or than the input; every message parses into an event with a
/// `message` that serializes.
pub fn syslog_stream(data: &[u8]) {
    use crate::sources::syslog::{Decoder, event_value};
    use bytes::BytesMut;
    const MAX: usize = 64;
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let frames = |chunk: usize| {
        let mut decoder = Decoder::new(MAX);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.next(&mut buf) {
                    Ok(Some(m)) => out.push(m),
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
        }
        out.extend(decoder.finish(&mut buf));
        out
    };
    let whole = frames(stream.len());
    let pieces = frames(usize::from(first % 16) + 1);
    assert_eq!(whole, pieces, "read sizes changed the framing");
    let total: usize = whole.iter().map(|m| m.len()).sum();
    assert!(total <= stream.len());
    for m in whole {
        assert!(m.len() <= MAX, "a message over max_length");
        let value = event_value(&String::from_utf8_lossy(&m), Utc::now(), Some("127.0.0.1"));
        let object = value.as_object().expect("an object");
        assert!(object.contains_key("message"));
        serde_json::to_vec(&value).expect("the event serializes");
    }
}

/// OTLP/HTTP bodies (`otlp` source): the first byte picks the signal (logs, metrics,
/// traces), protobuf or JSON, and gzip (decompressed within 1 MiB); decoding never
/// panics, and every item becomes an object event that serializes.
pub fn otlp_body(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let (json, gzip) = (first & 0x10 != 0, first & 0x20 != 0);
    let values = crate::sources::otlp::body_events(first, json, gzip, body, 1 << 20);
    for v in values.unwrap_or_default() {
        let event = Event::new(v, SourceId::intern("fuzz"), Utc::now());
        assert!(
            event.value().is_object(),
            "events always have an object root"
        );
        event
            .to_json_line(&mut Vec::new())
            .expect("an OTLP event serializes to JSON");
    }
}

/// Label matchers as the API takes them in silences and subscriptions: `label OP value`
/// on the first line, a label value to match on the second. Parsing (strict and
/// lenient), Go regex translation and compiling never panic; a parsed matcher's text
/// form parses back to the same matcher; and matching answers.
pub fn label_matchers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (matcher, value) = text.split_once('\n').unwrap_or((&text, ""));
    // Any text at all, as a Go regex: translated and compiled within the size bound.
    if let Ok(re) = crate::matchers::anchored_regex(matcher) {
        let _ = re.is_match(value);
    }
    for parsed in [
        crate::matchers::Matcher::parse(matcher),
        crate::matchers::Matcher::parse_lenient(matcher),
    ]
    .into_iter()
    .flatten()
    {
        let again = crate::matchers::Matcher::parse(&parsed.to_string())
            .expect("a matcher's text form parses");
        assert_eq!(
            again.to_string(),
            parsed.to_string(),
            "the text form is stable"
        );
        assert_eq!(again.matches(Some(value)), parsed.matches(Some(value)));
    }
}
