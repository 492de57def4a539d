//! Generic JSON kept as text, against the parsing it stands in for.

use std::sync::OnceLock;

use axum::http::HeaderMap;
use chrono::Utc;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::alert::Severity;
use crate::event::fields;
use crate::event::{Checked, Event, SourceId, check_object};
use crate::program::{self, CompiledProgram, Mode, Outcome, ProgramSource, Runner};
use crate::sources::webhook::{Decoder, Payload, decode_allowance};

/// A body for the `json` decoder, read the kept-text way and the parsing way: both
/// accept the same bodies with the same events, refuse the same bodies with the same
/// answer, and every kept text is one line of JSON that reads back as its event. The
/// first byte picks the request's event bound, so "too many events" is reachable.
pub fn json_events(data: &[u8]) {
    static DECODER: OnceLock<Decoder> = OnceLock::new();
    let decoder = DECODER.get_or_init(|| {
        Decoder::resolve("json", Severity::Medium, true).expect("the json decoder")
    });
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let max = if first & 0x80 == 0 {
        usize::from(first % 32) + 1
    } else {
        1000
    };
    let headers = HeaderMap::new();
    let allowance = decode_allowance(body.len());
    let kept = decoder.parse(&headers, body, max, allowance);
    let parsed = decoder.parse_into_values(&headers, body, max, allowance);
    match (kept, parsed) {
        (Ok(Payload::Events(kept)), Ok(Payload::Events(parsed))) => {
            assert_eq!(kept.len(), parsed.len(), "as many events as parsing finds");
            let source = SourceId::intern("fuzz");
            let mut line = Vec::new();
            for (k, p) in kept.into_iter().zip(parsed) {
                let k = Event::from_payload(k, source, Utc::now());
                let p = Event::from_payload(p, source, Utc::now());
                if let Some(text) = k.raw_json() {
                    assert!(!text.contains(&b'\n'), "kept text is one line");
                    let back: Value = serde_json::from_slice(text).expect("kept text is JSON");
                    assert_eq!(&back, p.value(), "kept text reads back as the parsed event");
                    picks_read_as_parsing_reads(text, p.value());
                    remaps_change_kept_text_as_parsed_events(&k, &p);
                }
                assert_eq!(k.value(), p.value(), "the same event either way");
                line.clear();
                k.to_json_line(&mut line).expect("an event serializes");
            }
        }
        (Err(k), Err(p)) => {
            assert_eq!(k.status, p.status, "{} | {}", k.message, p.message);
            assert_eq!(k.message, p.message);
        }
        (k, p) => panic!(
            "kept-text path: {:?}, parsing path: {:?}",
            k.map(|_| ()).map_err(|r| r.message),
            p.map(|_| ()).map_err(|r| r.message)
        ),
    }
}

/// A body read by the hand-written scan and by serde_json's check alone: whenever the
/// scan answers, serde_json's check finds the same events, with the same text and size
/// estimate, and so does the check of each object alone (the file source's lines). The
/// first byte picks the event bound. Returns whether the scan answered (so tests can
/// tell that it was exercised).
pub fn json_scan(data: &[u8]) -> bool {
    use crate::event::json_scan::{one_line_object, one_line_objects};
    use crate::event::raw_json::{Checked, check_object_by_serde};
    let Some((first, body)) = data.split_first() else {
        return false;
    };
    let max = usize::from(first % 32) + 1;
    let Ok(body) = std::str::from_utf8(body) else {
        return false;
    };
    let Some(found) = one_line_objects(body, max) else {
        return false;
    };
    let by_serde = crate::sources::webhook::read_by_serde(body, max)
        .expect("serde_json's check takes every body the scan takes");
    assert_eq!(found.len(), by_serde.len(), "as many objects either way");
    for (f, event) in found.iter().zip(&by_serde) {
        let text = &body[f.start..f.end];
        assert_eq!(event.raw_text(), Some(text.as_bytes()), "the same text");
        assert_eq!(
            event.raw_size(),
            Some(text.len() + f.parsed_size),
            "the same size"
        );
        assert_eq!(one_line_object(text, &[]), Some(f.parsed_size));
        assert_eq!(
            check_object_by_serde(text, &[]).ok(),
            Some(Checked::Object {
                parsed_size: f.parsed_size
            })
        );
    }
    true
}

/// Fields picked from kept text (what read-only programs see) are the parsed event's:
/// each field alone beside one that is absent, and all of them at once.
fn picks_read_as_parsing_reads(text: &[u8], parsed: &Value) {
    let Value::Object(parsed) = parsed else {
        panic!("a kept event parses to an object");
    };
    let all: Vec<KeyString> = parsed.keys().cloned().collect();
    let whole = fields::pick(text, &all).expect("kept text is an object");
    assert_eq!(
        whole.value,
        Value::Object(parsed.clone()),
        "every field picked"
    );
    for (key, value) in parsed {
        let names = [key.clone(), KeyString::from("\u{0}absent")];
        let one = fields::pick(text, &names).expect("kept text is an object");
        let want = ObjectMap::from([(key.clone(), value.clone())]);
        assert_eq!(one.value, Value::Object(want), "the field {key} picked");
    }
}

/// Programs that change events, run on kept text (on the fields they name, spliced back
/// into the text) and on the parsed event, leave the same event; text that stays is one
/// line of JSON, checked, with the size a check of it gives.
fn remaps_change_kept_text_as_parsed_events(kept: &Event, parsed: &Event) {
    static PROGRAMS: OnceLock<Vec<std::sync::Arc<CompiledProgram>>> = OnceLock::new();
    let programs = PROGRAMS.get_or_init(|| {
        [
            ".a = 1",
            "del(.b)",
            ".c = .a",
            ".b = [.a, .b]\ndel(.a)",
            ".a.x = .b",
            ".\"\" = \"é\\n\"",
            ".b = to_int!(.a) + 1",
        ]
        .iter()
        .map(|src| {
            program::compile(&ProgramSource::Inline((*src).into()), Mode::ReadWrite)
                .expect("the fuzz programs compile")
        })
        .collect()
    });
    let name = |o: &Outcome| match o {
        Outcome::Done(_) => "done",
        Outcome::Aborted(_) => "aborted",
        Outcome::Failed(_) => "failed",
    };
    for compiled in programs {
        let (mut k, mut p) = (kept.clone(), parsed.clone());
        let on_text = Runner::new(compiled.clone()).run_event(&mut k);
        let on_value = Runner::new(compiled.clone()).run_event(&mut p);
        assert_eq!(name(&on_text), name(&on_value), "the same outcome");
        assert_eq!(k.value(), p.value(), "the same event either way");
        if let Some(text) = k.raw_json() {
            assert!(!text.contains(&b'\n'), "spliced text is one line");
            let text = std::str::from_utf8(text).expect("spliced text is UTF-8");
            let Ok(Checked::Object { parsed_size }) = check_object(text, &[]) else {
                panic!("spliced text is a checked object: {text}");
            };
            assert_eq!(
                k.raw_json_size(),
                Some(text.len() + parsed_size),
                "the size a check gives"
            );
        }
    }
}
