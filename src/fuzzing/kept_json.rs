//! Generic JSON kept as text, against the parsing it stands in for.

use std::sync::{Arc, OnceLock};

use axum::http::HeaderMap;
use chrono::Utc;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::alert::Severity;
use crate::event::Event;
use crate::event::fields;
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
            let source: Arc<str> = Arc::from("fuzz");
            let mut line = Vec::new();
            for (k, p) in kept.into_iter().zip(parsed) {
                let k = Event::from_payload(k, Arc::clone(&source), Utc::now());
                let p = Event::from_payload(p, Arc::clone(&source), Utc::now());
                if let Some(text) = k.raw_json() {
                    assert!(!text.contains(&b'\n'), "kept text is one line");
                    let back: Value = serde_json::from_slice(text).expect("kept text is JSON");
                    assert_eq!(&back, p.value(), "kept text reads back as the parsed event");
                    picks_read_as_parsing_reads(text, p.value());
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
