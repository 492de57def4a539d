//! Entry points for fuzzing the parsers of untrusted input. The cargo-fuzz targets in
//! `fuzz/` and the property tests in `tests/robustness.rs` call the same functions, so
//! the invariants checked here run in CI on every change. Each function panics only if
//! an invariant is broken.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;

use crate::event::Event;

/// Webhook request bodies: decoding never panics, and every decoded event serializes.
pub fn webhook_body(data: &[u8]) {
    let Ok(values) = crate::sources::webhook::decode_body(data) else {
        return;
    };
    let source: Arc<str> = Arc::from("fuzz");
    let mut line = Vec::new();
    for v in values {
        let event = Event::new(v, Arc::clone(&source), Utc::now());
        line.clear();
        assert!(event.value.is_object(), "events always have an object root");
        event
            .to_json_line(&mut line)
            .expect("a decoded event serializes back to JSON");
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
