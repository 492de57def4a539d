//! `sluice config`: the pipeline as `run` would take it: its files merged, variables
//! filled in, secrets redacted. Printed as JSON, which is YAML too, so the output can be
//! given back to `--config`.

use serde_json::{Map, Value};

use super::EXIT_CONFIG;
use super::validate::{ValidateArgs, load};
use crate::redact::{REDACTED, is_secret_key, redact};

pub(crate) fn config(args: &ValidateArgs) -> u8 {
    // Loading validates the files and registers the secrets they hold for redaction.
    let pipeline = match load(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut merged = Map::new();
    for file in &pipeline.files {
        let text = if file.as_os_str() == crate::config::DEFAULT_PIPELINE_NAME {
            crate::config::DEFAULT_PIPELINE.to_owned()
        } else {
            match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return EXIT_CONFIG;
                }
            }
        };
        let parsed = crate::config::interpolate(&text, |name| std::env::var(name).ok())
            .map_err(|_| "a variable is not set".to_owned())
            .and_then(|(text, _)| {
                serde_saphyr::from_str::<Value>(&text).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(Value::Object(map)) => merge(&mut merged, map),
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                return EXIT_CONFIG;
            }
        }
    }
    let mut value = Value::Object(merged);
    scrub(&mut value, false);
    match serde_json::to_string_pretty(&value) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Components of later files join those of earlier ones (validation already refused
/// an id declared twice); `tests` accumulate.
fn merge(into: &mut Map<String, Value>, file: Map<String, Value>) {
    for (section, value) in file {
        match (into.get_mut(&section), value) {
            (Some(Value::Object(have)), Value::Object(more)) => have.extend(more),
            (Some(Value::Array(have)), Value::Array(more)) => have.extend(more),
            (_, value) => {
                into.insert(section, value);
            }
        }
    }
}

/// Replaces the values of secret options, and secrets and URL credentials anywhere.
fn scrub(value: &mut Value, secret: bool) {
    match value {
        Value::String(s) if secret => *s = REDACTED.to_owned(),
        Value::String(s) => {
            let clean = redact(s).into_owned();
            *s = clean;
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub(v, secret)),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                scrub(v, secret || is_secret_key(key));
            }
        }
        Value::Number(_) | Value::Bool(_) | Value::Null if secret => {
            *value = Value::String(REDACTED.to_owned())
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_options_and_url_credentials_are_redacted() {
        let mut v = serde_json::json!({
            "sinks": {
                "pd": { "type": "pagerduty", "routing_key": "0123456789abcdef0123456789abcdef" },
                "db": { "type": "postgres", "url": "postgres://app:hunter2@db:5432/events" },
                "hook": { "type": "http", "url": "https://example.com/x", "auth": { "password": 12345 } }
            }
        });
        scrub(&mut v, false);
        let text = v.to_string();
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("12345"), "{text}");
        assert!(text.contains("https://example.com/x"), "{text}");
        assert_eq!(v["sinks"]["pd"]["routing_key"], REDACTED);
    }
}
