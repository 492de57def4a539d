//! Entry points for fuzzing the parsers of untrusted input. The cargo-fuzz targets in
//! `fuzz/` and the property tests in `tests/robustness.rs` call the same functions, so
//! the invariants checked here run in CI on every change. Each function panics only if
//! an invariant is broken.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;

use crate::event::{Event, SourceId};

mod kept_json;
mod network;
pub use kept_json::{json_events, json_scan};
pub use network::{fluent_stream, label_matchers, otlp_body, remote_write, syslog_stream};

/// Webhook request bodies: decoding never panics, and every decoded event serializes.
pub fn webhook_body(data: &[u8]) {
    let Ok(values) = crate::sources::webhook::parse_json_stream(data) else {
        return;
    };
    let source = SourceId::intern("fuzz");
    let mut line = Vec::new();
    for v in values {
        let event = Event::new(v, source, Utc::now());
        line.clear();
        assert!(
            event.value().is_object(),
            "events always have an object root"
        );
        event
            .to_json_line(&mut line)
            .expect("a decoded event serializes back to JSON");
    }
}

/// A vendor decoder on any body: it yields valid normalized events or a 400 that names
/// the decoder; it never panics. Binary CloudEvents are fuzzed through their headers
/// too: for `cloudevents`, a first byte that is odd sends the rest as a binary-mode body.
pub fn decoder(name: &str, data: &[u8]) {
    use crate::alert::Severity;
    use crate::sources::webhook::{Decoder, Payload, Stamp, decode_allowance};
    use axum::http::{HeaderMap, HeaderValue};
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    static DECODERS: OnceLock<Mutex<HashMap<String, Arc<Decoder>>>> = OnceLock::new();
    let decoder = {
        let mut map = DECODERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Decoder::resolve(name, Severity::Medium, true).expect("a built-in decoder"))
        }))
    };
    let mut headers = HeaderMap::new();
    let mut body = data;
    if name == "cloudevents"
        && let Some((first, rest)) = data.split_first()
        && first % 2 == 1
    {
        headers.insert("ce-specversion", HeaderValue::from_static("1.0"));
        headers.insert("ce-id", HeaderValue::from_static("1"));
        headers.insert("ce-source", HeaderValue::from_static("/fuzz"));
        headers.insert("ce-type", HeaderValue::from_static("fuzz"));
        let content_type = if first % 4 == 1 {
            "application/json"
        } else {
            "text/plain"
        };
        headers.insert("content-type", HeaderValue::from_static(content_type));
        body = rest;
    }
    let stamp = Stamp {
        now: Utc::now(),
        request_id: "fuzz",
    };
    let mut metadata = vrl::value::ObjectMap::new();
    metadata.insert("decoder".into(), vrl::value::Value::from(name));
    let metadata = vrl::value::Value::Object(metadata);
    let result = match decoder.parse(&headers, body, usize::MAX, decode_allowance(body.len())) {
        Ok(Payload::Document(doc)) => {
            if name == "aws_sns"
                && let Ok(signed) = crate::sources::webhook::signed_parts(&doc)
            {
                assert!(
                    signed.text.ends_with('\n'),
                    "every signed pair ends with a newline"
                );
            }
            decoder.decode(doc, &metadata, &stamp).map(|values| {
                values
                    .into_iter()
                    .map(|v| Event::new(v, SourceId::intern("fuzz"), Utc::now()))
                    .collect::<Vec<_>>()
            })
        }
        Ok(Payload::Events(events)) => Ok(events
            .into_iter()
            .map(|p| Event::from_payload(p, SourceId::intern("fuzz"), Utc::now()))
            .collect()),
        Err(e) => Err(e),
    };
    match result {
        Ok(events) => {
            let mut line = Vec::new();
            for event in events {
                let fields = event.value().as_object().expect("events are objects");
                if fields
                    .get("event_type")
                    .and_then(|t| t.to_str_lossy())
                    .as_deref()
                    == Some("alert")
                {
                    let status = fields
                        .get("status")
                        .and_then(|s| s.to_str_lossy())
                        .map(|s| s.into_owned());
                    assert!(
                        matches!(status.as_deref(), Some("firing" | "resolved")),
                        "alert status {status:?}"
                    );
                }
                line.clear();
                event
                    .to_json_line(&mut line)
                    .expect("a decoded event serializes to JSON");
                // Text carried as it came reads back as the event it stands for.
                let back: vrl::value::Value =
                    serde_json::from_slice(&line).expect("the written event is JSON");
                if event.raw_json().is_some() {
                    assert_eq!(&back, event.value());
                }
            }
        }
        Err(rejection) => {
            assert_eq!(rejection.status.as_u16(), 400, "{}", rejection.message);
            assert_eq!(rejection.decoder.as_deref(), Some(name));
        }
    }
}

/// Pipeline files: loading any text either yields a pipeline or located errors.
pub fn pipeline_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let texts = [(PathBuf::from("fuzz.yaml"), text)];
    if let Err(errors) = crate::config::load_texts(&texts, |name| Some(format!("v_{name}"))) {
        assert!(
            !errors.0.is_empty(),
            "a failed load reports at least one error"
        );
    }
}

/// Interpolation: positions in the output map back inside the original text.
pub fn interpolation(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lookup =
        |name: &str| (!name.len().is_multiple_of(3)).then(|| "x\ny".repeat(name.len() % 4));
    let Ok((out, map)) = crate::config::interpolate(&text, lookup) else {
        return;
    };
    let original_lines = text.split_inclusive('\n').count().max(1) as u64;
    for (i, line) in out.split_inclusive('\n').enumerate() {
        let (l, c) = map.original(i as u64 + 1, line.chars().count() as u64 + 1);
        assert!(
            l >= 1 && l <= original_lines,
            "line {l} outside 1..={original_lines}"
        );
        assert!(c >= 1, "column starts at 1");
    }
}

/// Status feed bodies (RSS, Atom, Statuspage and GCP JSON). The first byte picks the
/// provider, the format and the `initial` mode; the rest is the body. Parsing never
/// panics; every incident has a key of its own; every event is a valid outage event;
/// and a second poll of the same body emits nothing (a state is announced once).
pub fn status_feed(data: &[u8]) {
    use crate::alert::Status;
    use crate::sources::status_feed::{Format, Initial, Provider, parse_incidents, plan_twice};
    const PROVIDERS: [Provider; 6] = [
        Provider::Aws,
        Provider::Gcp,
        Provider::Azure,
        Provider::Oci,
        Provider::Statuspage,
        Provider::Generic,
    ];
    const FORMATS: [Format; 5] = [
        Format::Auto,
        Format::Rss,
        Format::Atom,
        Format::StatuspageJson,
        Format::GcpIncidentsJson,
    ];
    const INITIAL: [Initial; 3] = [Initial::SkipExisting, Initial::EmitOpen, Initial::EmitAll];
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let selector = usize::from(selector);
    let provider = PROVIDERS[selector % 6];
    let format = FORMATS[selector / 6 % 5];
    let initial = INITIAL[selector / 30 % 3];
    let Ok(incidents) = parse_incidents(provider, format, body) else {
        return;
    };
    let mut keys = std::collections::HashSet::new();
    for i in &incidents {
        assert!(!i.key.is_empty(), "an incident without a key");
        assert!(
            keys.insert(i.key.clone()),
            "two incidents with key {:?}",
            i.key
        );
        assert!(
            i.status == Status::Resolved || i.ends_at.is_none(),
            "a firing incident with an end"
        );
    }
    let open = incidents
        .iter()
        .filter(|i| i.status == Status::Firing)
        .count();
    let total = incidents.len();
    let (first, second) = plan_twice(provider, incidents, initial);
    assert!(
        second.is_empty(),
        "a second poll of one body emitted {second:?}"
    );
    let expected = match initial {
        Initial::SkipExisting => 0,
        Initial::EmitOpen => open,
        Initial::EmitAll => total,
    };
    assert_eq!(first.len(), expected, "first poll with {initial:?}");
    let mut line = Vec::new();
    for v in first {
        let json = serde_json::to_value(&v).expect("an event serializes");
        assert_eq!(json["kind"], "outage");
        assert!(matches!(
            json["status"].as_str(),
            Some("firing" | "resolved")
        ));
        assert!(matches!(
            json["severity"].as_str(),
            Some("critical" | "high" | "medium" | "low" | "info")
        ));
        let fingerprint = json["fingerprint"].as_str().unwrap_or_default();
        assert!(
            fingerprint.len() == 32 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()),
            "fingerprint {fingerprint:?}"
        );
        line.clear();
        Event::new(v, SourceId::intern("fuzz"), Utc::now())
            .to_json_line(&mut line)
            .expect("an event serializes to JSON");
    }
}

/// File-tail framing and multiline grouping over any bytes: the lines do not depend on
/// how the file was chunked by reads, never hold a newline, stay within `max_line_bytes`,
/// and cover the file in order; multiline messages (every mode) keep that order.
pub fn file_lines(data: &[u8]) {
    use crate::sources::file::container::{Joiner, RawLine, Runtime};
    use crate::sources::file::lines::Framer;
    use crate::sources::file::multiline::{Aggregator, Message, Mode, MultilineConfig};

    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let max = usize::from(control % 64) + 1;
    let chunk = usize::from(control / 64) * 7 + 1;
    let frame = |step: usize| {
        let mut framer = Framer::new(max, 0);
        let mut lines = Vec::new();
        for piece in body.chunks(step) {
            framer.feed(piece, |l| {
                lines.push((l.bytes.to_vec(), l.offset, l.end, l.truncated));
            });
        }
        (lines, framer.line_start())
    };
    let (whole, start) = frame(body.len().max(1));
    let (chunked, chunked_start) = frame(chunk);
    assert_eq!(whole, chunked, "framing does not depend on read sizes");
    assert_eq!(start, chunked_start);
    let mut previous_end = 0;
    for (bytes, offset, end, truncated) in &whole {
        assert!(!bytes.contains(&b'\n'), "a line holds no newline");
        assert!(bytes.len() <= max, "a line stays within max_line_bytes");
        assert!(
            *offset >= previous_end && end > offset,
            "lines cover the file in order"
        );
        assert_eq!(
            body.get(*end as usize - 1),
            Some(&b'\n'),
            "a line ends at a newline"
        );
        assert!(*truncated || (*end - *offset) as usize <= max + 2);
        previous_end = *end;
    }
    let last_newline = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    assert_eq!(
        start as usize, last_newline,
        "what follows the last newline stays pending"
    );

    // Compiling the patterns per input would dominate the run; compile each mode once.
    static RULES: std::sync::OnceLock<Vec<crate::sources::file::multiline::Rules>> =
        std::sync::OnceLock::new();
    let rules = RULES.get_or_init(|| {
        [
            Mode::ContinueThrough,
            Mode::ContinuePast,
            Mode::HaltBefore,
            Mode::HaltWith,
        ]
        .into_iter()
        .filter_map(|mode| {
            MultilineConfig {
                start_pattern: Some(r"^\S".into()),
                condition_pattern: Some(r"^[\s\\]|\\$".into()),
                mode: Some(mode),
                timeout: std::time::Duration::from_secs(1),
            }
            .compile()
            .ok()
        })
        .collect()
    });
    let Some(rules) = rules.get(usize::from(control % 4)).cloned() else {
        return;
    };
    let lines: Vec<Message> = whole
        .into_iter()
        .map(|(bytes, offset, end, _)| Message {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            offset,
            end,
            meta: None,
        })
        .collect();
    let now = std::time::Instant::now();
    for runtime in [Runtime::Cri, Runtime::Docker] {
        let mut joiner = Joiner::new(runtime, max);
        let mut joined = Vec::new();
        for line in &lines {
            let raw = RawLine {
                bytes: line.text.as_bytes(),
                offset: line.offset,
                end: line.end,
                truncated: false,
            };
            joiner.push(raw, now, &mut joined);
            if let Some(first) = joiner.pending_offset() {
                assert!(
                    joined.iter().all(|j| j.offset != first),
                    "a pending line was not emitted"
                );
            }
        }
        joiner.flush(now, true, &mut joined);
        assert!(joiner.is_empty() && joiner.pending_offset().is_none());
        for j in &joined {
            assert!(j.end > j.offset, "a joined line covers its fragments");
            if j.meta.is_some() {
                assert!(j.bytes.len() <= max, "a joined line stays within its bound");
            }
        }
    }
    let mut aggregator = Aggregator::new(rules);
    let mut out = Vec::new();
    for line in lines {
        aggregator.push(line, now, &mut out);
    }
    aggregator.flush(now, true, &mut out);
    let mut previous_end = 0;
    for m in &out {
        assert!(
            m.offset >= previous_end && m.end > m.offset,
            "messages stay in file order"
        );
        previous_end = m.end;
    }
}

/// Disk buffer segments as a crash or a bad disk may leave them: reading never panics,
/// moves forward on every step, stays inside the file, and every record that passes its
/// checksum either decodes or is reported as undecodable.
pub fn disk_segment(data: &[u8]) {
    use crate::buffer::disk::{codec, segment};
    use std::sync::atomic::{AtomicU64, Ordering};

    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "sluice-fuzz-{}-{}.seg",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(mut reader) = segment::SegmentReader::open(&path) else {
        let _ = std::fs::remove_file(&path);
        return;
    };
    let mut at = 0u64;
    loop {
        match reader.step(at, u64::MAX) {
            Ok(segment::Step::Record { payload, end, .. }) => {
                assert!(
                    end > at && end <= data.len() as u64,
                    "records move forward inside the file"
                );
                if let Ok(event) = codec::decode(&payload) {
                    let mut again = Vec::new();
                    codec::encode(&event, &mut again);
                    let back =
                        codec::decode(&again).expect("a decoded event encodes and decodes again");
                    assert_eq!(back.value(), event.value());
                }
                at = end;
            }
            Ok(segment::Step::Damaged { resume: Some(next) }) => {
                assert!(
                    next > at && next < data.len() as u64,
                    "resync moves forward"
                );
                at = next;
            }
            Ok(segment::Step::Damaged { resume: None } | segment::Step::End) | Err(_) => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// One disk buffer record payload: decoding never panics, and what decodes round-trips.
pub fn disk_record(data: &[u8]) {
    use crate::buffer::disk::codec;
    if let Ok(event) = codec::decode(data) {
        let mut again = Vec::new();
        codec::encode(&event, &mut again);
        let back = codec::decode(&again).expect("re-encoded event decodes");
        assert_eq!(back.value(), event.value());
        assert_eq!(back.meta.vrl, event.meta.vrl);
    }
}

/// A valid segment of `n` small events (records 0..n), to damage in property tests and
/// to seed the fuzzer.
pub fn disk_segment_sample(n: usize) -> Vec<u8> {
    use crate::buffer::disk::{codec, segment};
    let source = SourceId::intern("fuzz");
    let mut out = Vec::new();
    for i in 0..n {
        let mut event = Event::new(
            vrl::value::Value::Object(Default::default()),
            source,
            Utc::now(),
        );
        event.insert("n", i as i64);
        event.insert("msg", "disk almost full");
        let mut payload = Vec::new();
        codec::encode(&event, &mut payload);
        segment::frame(i as u64, &payload, &mut out);
    }
    out
}
