//! `sluice config`: the pipeline as `run` would take it: its files merged, variables
//! filled in, secrets redacted. Printed as JSON, which is YAML too, so the output can be
//! given back to `--config` (with the secrets put back). Scalars are shown as YAML
//! reads them: an unquoted `007` in the file is the number 7 here, while the option it
//! sets may have read it as text.

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
        let parsed = crate::config::interpolate(&text, crate::config::lookup_env)
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

/// Headers and `extra_args` whose names suggest credentials, beyond the secret option
/// names (`X-Auth-Key`, `X-Session-Cookie`, `X-Goog-Api-Key`).
fn credential_like(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    is_secret_key(&name)
        || ["auth", "cookie", "key", "token", "secret", "session"]
            .iter()
            .any(|w| name.contains(w))
}

/// Replaces the values of secret options, and secrets and URL credentials anywhere;
/// `$` is written `$$`, so that the output, read as a pipeline file, means what it says.
fn scrub(value: &mut Value, secret: bool) {
    scrub_in(value, secret, false);
}

fn scrub_in(value: &mut Value, secret: bool, key_values: bool) {
    match value {
        Value::String(s) if secret => *s = REDACTED.to_owned(),
        // `headers` or `extra_args` as one `Name=value,Name2=value2` string.
        Value::String(s) if key_values => {
            let pairs: Vec<String> = s
                .split(',')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if credential_like(k.trim()) => format!("{k}={REDACTED}"),
                    _ => pair.to_owned(),
                })
                .collect();
            *s = redact(&pairs.join(",")).replace('$', "$$");
        }
        Value::String(s) => {
            let clean = redact(s).replace('$', "$$");
            *s = clean;
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_in(v, secret, false)),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let pairs = matches!(key.as_str(), "headers" | "extra_args");
                let hidden = secret || is_secret_key(key) || (key_values && credential_like(key));
                scrub_in(v, hidden, pairs);
            }
        }
        Value::Number(_) | Value::Bool(_) | Value::Null if secret => {
            *value = Value::String(REDACTED.to_owned());
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

    #[test]
    fn headers_in_either_form_and_dollars_are_written_safely() {
        let mut v = serde_json::json!({
            "sinks": {
                "a": { "headers": "Authorization=Bearer HDRSTR22,X-Trace=on,X-Auth-Key=K123456" },
                "b": { "headers": { "Cookie": "session=COOKIE20", "X-Trace": "on" },
                       "extra_args": "api_key=EXTRAARGS12,team=db" },
                "c": { "source": ".price = \"${HOME} costs $5\"" }
            }
        });
        scrub(&mut v, false);
        let text = v.to_string();
        for secret in ["HDRSTR22", "K123456", "COOKIE20", "EXTRAARGS12"] {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
        assert!(
            text.contains("X-Trace=on") && text.contains("team=db"),
            "{text}"
        );
        assert_eq!(v["sinks"]["b"]["headers"]["X-Trace"], "on");
        assert_eq!(v["sinks"]["c"]["source"], ".price = \"$${HOME} costs $$5\"");
    }
}
