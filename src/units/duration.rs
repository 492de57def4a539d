//! Durations as users write them (`humantime`: `500ms`, `30s`, `1h 30m`).

use schemars::{Schema, SchemaGenerator, json_schema};

/// What a duration option accepts (`humantime`: `500ms`, `30s`, `1h 30m`).
pub(crate) const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*[a-zA-Zµ]+\s*)+$";

/// The schema of a `humantime_serde` duration, for `#[schemars(schema_with = …)]`.
pub(crate) fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": DURATION_PATTERN,
        "examples": ["500ms", "30s", "1h 30m"],
    })
}

/// `d` in whole milliseconds, saturating (state machines count in ms).
pub(crate) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
