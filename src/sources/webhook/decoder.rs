//! Decoders: a vendor's payload in, normalized alert events out.
//!
//! The vendor knowledge lives in VRL plugins (`plugins/decoders/*.vrl`, see the README
//! there for the contract). This module runs them and enforces what every event must
//! carry afterwards, so a plugin edited by a user cannot emit an alert without a valid
//! status or severity. `json` passes events through untouched unless a plugin named
//! `json` exists.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use vrl::value::{KeyString, ObjectMap, Value};

use axum::http::HeaderMap;

use super::body::{self, JsonError};
use super::bounded_json;
use super::raw_events;
use super::reply::Rejection;
use crate::alert::{SEVERITIES, STATUSES, Severity, field};
use crate::component::BuildError;
use crate::event::Payload as EventPayload;
use crate::plugins::{self, Kind, Origin};
use crate::program::{self, CompiledProgram, Mode, Outcome, ProgramSource, Runner};

/// Built-in decoder names and the plugin file that implements each.
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    ("grafana", "alertmanager"),
    ("alertmanager", "alertmanager"),
    ("aws_sns", "aws"),
    ("aws_eventbridge", "aws"),
    ("gcp_monitoring", "gcp_monitoring"),
    ("azure_monitor", "azure_monitor"),
    ("oci", "oci"),
    ("cloudevents", "cloudevents"),
];

/// One configured decoder, ready to run.
pub struct Decoder {
    pub name: Arc<str>,
    program: Option<Arc<CompiledProgram>>,
    origin: Option<Origin>,
    runners: Mutex<Vec<Runner>>,
    default_severity: Severity,
    keep_raw: bool,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The plugin names to look for, most specific first.
fn candidates(name: &str) -> Vec<&str> {
    let mut names = vec![name];
    if let Some((_, file)) = BUILTIN.iter().find(|(n, _)| *n == name)
        && *file != name
    {
        names.push(file);
    }
    names
}

/// The plugin file on disk a decoder uses, if it comes from a `plugin_dirs` entry.
pub(crate) fn plugin_file(name: &str) -> Option<PathBuf> {
    match plugins::find(Kind::Decoder, &candidates(name)) {
        Ok(Some(p)) => match p.origin {
            Origin::File(path) => Some(path),
            Origin::Builtin => None,
        },
        _ => None,
    }
}

impl Decoder {
    pub fn resolve(
        name: &str,
        default_severity: Severity,
        keep_raw: bool,
    ) -> Result<Self, BuildError> {
        if !plugins::valid_name(name) {
            return Err(BuildError(format!(
                "`decoder`: `{name}` is not a valid decoder name (letters, digits, `_` and `-`)"
            )));
        }
        if name == "aws" {
            // The plugin's file name: usable as a decoder, it would skip SNS signatures.
            return Err(BuildError(
                "`decoder`: `aws` is the plugin behind `aws_sns` (SNS signatures verified) and `aws_eventbridge`: use one of those".into(),
            ));
        }
        let plugin = plugins::find(Kind::Decoder, &candidates(name))?;
        let (program, origin) = match plugin {
            Some(p) => {
                let program = program::compile(&ProgramSource::Inline(p.text), Mode::ReadWrite)
                    .map_err(|e| {
                        let at = match &p.origin {
                            Origin::Builtin => format!("built-in decoder plugin `{}`", p.name),
                            Origin::File(path) => format!("decoder plugin {}", path.display()),
                        };
                        BuildError(format!("{at}: {e}"))
                    })?;
                (Some(program), Some(p.origin))
            }
            None if name == "json" => (None, None),
            None => {
                let mut known: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
                known.push("json");
                return Err(BuildError(format!(
                    "`decoder`: unknown decoder `{name}`: expected one of {}, or a `decoders/{name}.vrl` in a plugin_dirs entry",
                    known.join(", ")
                )));
            }
        };
        Ok(Self {
            name: Arc::from(name),
            program,
            origin,
            runners: Mutex::new(Vec::new()),
            default_severity,
            keep_raw,
        })
    }

    /// Whether the payload is read as a stream of JSON documents (generic JSON) rather
    /// than as one vendor document.
    pub fn is_passthrough(&self) -> bool {
        self.program.is_none()
    }

    /// Whether this is sluice's own (plain JSON or a built-in plugin): linear in the
    /// body, benched per decoder. A plugin from disk may cost anything per byte.
    pub(crate) fn is_builtin(&self) -> bool {
        !matches!(self.origin, Some(Origin::File(_)))
    }

    pub(crate) fn malformed(&self, e: JsonError) -> Rejection {
        Rejection::malformed(&self.name, Some(e.path), e.message)
    }

    /// Reads a (decompressed) body the way this decoder expects it: generic JSON stops
    /// reading past `max_events` values, and the values read may take at most
    /// `allowance` bytes of memory (see [`super::decode_allowance`]; 413 above it).
    pub fn parse(
        &self,
        headers: &HeaderMap,
        content: &[u8],
        max_events: usize,
        allowance: usize,
    ) -> Result<Payload, Rejection> {
        self.parse_as(headers, content, max_events, allowance, KeepText::WhenPlain)
    }

    /// [`Decoder::parse`], but generic JSON is always parsed into values, never kept as
    /// text: the answer the kept-text path must give (the fuzz targets compare them).
    pub(crate) fn parse_into_values(
        &self,
        headers: &HeaderMap,
        content: &[u8],
        max_events: usize,
        allowance: usize,
    ) -> Result<Payload, Rejection> {
        self.parse_as(headers, content, max_events, allowance, KeepText::Never)
    }

    fn parse_as(
        &self,
        headers: &HeaderMap,
        content: &[u8],
        max_events: usize,
        allowance: usize,
        keep: KeepText,
    ) -> Result<Payload, Rejection> {
        let (parsed, limits) = bounded_json::with_allowance(allowance, max_events, || {
            self.parse_within(headers, content, max_events, keep)
        });
        if limits.memory {
            return Err(Rejection::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "too_costly",
                format!(
                    "the body decodes to more memory than its size allows (about {} bytes per byte, or what memory_limit leaves): send smaller requests",
                    crate::buffer::cost::DECODE_COST_PER_BYTE
                ),
            ));
        }
        if limits.items {
            return Err(too_many_events(max_events));
        }
        parsed
    }

    fn parse_within(
        &self,
        headers: &HeaderMap,
        content: &[u8],
        max_events: usize,
        keep: KeepText,
    ) -> Result<Payload, Rejection> {
        let binary_cloudevent =
            self.name.as_ref() == "cloudevents" && headers.contains_key("ce-specversion");
        if content.starts_with(b"\xEF\xBB\xBF") && !binary_cloudevent {
            return Err(self.malformed(JsonError {
                path: ".".into(),
                message:
                    "the body starts with a byte order mark (EF BB BF): send the JSON without one"
                        .into(),
            }));
        }
        if self.is_passthrough() {
            let left = bounded_json::remaining();
            if keep == KeepText::WhenPlain
                && !content.trim_ascii().is_empty()
                && let Some(events) = raw_events::read_at_most(content, max_events)
            {
                return Ok(Payload::Events(events));
            }
            bounded_json::reset(left);
            return match body::parse_json_stream_at_most(content, max_events) {
                Ok(values) => Ok(Payload::Events(
                    values.into_iter().map(EventPayload::parsed).collect(),
                )),
                Err(body::StreamError::Json(e)) => Err(self.malformed(e)),
                Err(body::StreamError::TooMany { max }) => Err(too_many_events(max)),
            };
        }
        let document = if self.name.as_ref() == "cloudevents" {
            super::cloudevents::payload(headers, content)
        } else {
            body::parse_json(content)
        };
        document
            .map(Payload::Document)
            .map_err(|e| self.malformed(e))
    }

    /// Runs the plugin on one parsed payload; `metadata` is the VRL `%` metadata
    /// (`decoder`, `headers`). Returns normalized events.
    pub fn decode(
        &self,
        payload: Value,
        metadata: &Value,
        ctx: &Stamp<'_>,
    ) -> Result<Vec<Value>, Rejection> {
        let Some(program) = &self.program else {
            return Ok(vec![payload]);
        };
        let mut runner = self
            .runners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| Runner::new(Arc::clone(program)));
        let mut target = payload;
        let mut meta = metadata.clone();
        let outcome = runner.run(&mut target, &mut meta);
        self.runners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(runner);
        match outcome {
            Outcome::Done(_) => {}
            Outcome::Aborted(message) | Outcome::Failed(message) => {
                return Err(self.reject_message(&message));
            }
        }
        let items = match target {
            Value::Array(items) => items,
            other => vec![other],
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| self.normalize(i, item, ctx))
            .collect()
    }

    /// `abort ".alerts: expected an array"` → path `.alerts`, message `expected an array`.
    fn reject_message(&self, message: &str) -> Rejection {
        match message.split_once(": ") {
            Some((path, rest)) if path.starts_with('.') && !path.contains(' ') => {
                Rejection::malformed(&self.name, Some(path.to_owned()), rest)
            }
            _ => Rejection::malformed(&self.name, None, message),
        }
    }

    fn normalize(&self, index: usize, item: Value, ctx: &Stamp<'_>) -> Result<Value, Rejection> {
        let Value::Object(mut fields) = item else {
            return Err(Rejection::malformed(
                &self.name,
                None,
                format!(
                    "the decoder produced {} at index {index}, expected an object",
                    item.kind_str()
                ),
            ));
        };
        let is_alert = match fields.get(field::EVENT_TYPE) {
            None | Some(Value::Null) => {
                fields.insert(field::EVENT_TYPE.into(), Value::from("alert"));
                true
            }
            Some(v) => v.to_str_lossy().as_deref() == Some("alert"),
        };
        set_default(&mut fields, field::ID, || {
            Value::from(uuid::Uuid::new_v4().to_string())
        });
        set_default(&mut fields, field::TIME, || Value::Timestamp(ctx.now));
        set_default(&mut fields, field::SOURCE, || {
            Value::from(self.name.as_ref())
        });
        set_default(&mut fields, field::LABELS, || {
            Value::Object(ObjectMap::new())
        });
        if is_alert {
            set_default(&mut fields, field::SEVERITY, || {
                Value::from(self.default_severity.as_str())
            });
            for (name, allowed) in [(field::STATUS, STATUSES), (field::SEVERITY, SEVERITIES)] {
                let value = fields
                    .get(name)
                    .and_then(|v| v.to_str_lossy())
                    .map(|v| v.into_owned());
                if !value.as_deref().is_some_and(|v| allowed.contains(&v)) {
                    return Err(Rejection::malformed(
                        &self.name,
                        None,
                        format!(
                            "the decoder produced an alert with {name} {}, expected one of {}",
                            value.map_or_else(|| "missing".to_owned(), |v| format!("`{v}`")),
                            allowed.join(", ")
                        ),
                    ));
                }
            }
        }
        if !self.keep_raw {
            fields.remove(field::RAW);
        }
        fields.insert("request_id".into(), Value::from(ctx.request_id));
        Ok(Value::Object(fields))
    }
}

/// 413 for a request that carries more events than `max_events_per_request`.
pub(crate) fn too_many_events(max: usize) -> Rejection {
    Rejection::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_events",
        format!(
            "the request carries more than max_events_per_request ({max}) events; send them in smaller requests"
        ),
    )
}

/// A parsed body.
pub enum Payload {
    /// Generic JSON: the events themselves, kept as text where they can be.
    Events(Vec<EventPayload>),
    /// One vendor document for the plugin.
    Document(Value),
}

/// What every event of one request is stamped with.
pub struct Stamp<'a> {
    pub now: chrono::DateTime<chrono::Utc>,
    pub request_id: &'a str,
}

fn set_default(fields: &mut ObjectMap, key: &str, value: impl FnOnce() -> Value) {
    match fields.get(key) {
        None | Some(Value::Null) => {
            fields.insert(KeyString::from(key), value());
        }
        Some(_) => {}
    }
}

/// Whether generic JSON events may keep the text they arrived as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeepText {
    /// One-line objects keep their text (see [`raw_events`]).
    WhenPlain,
    /// Every event is parsed into a value.
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp<'static> {
        Stamp {
            now: chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            request_id: "req-1",
        }
    }

    #[test]
    fn every_builtin_decoder_compiles() {
        for (name, _) in BUILTIN {
            let d = Decoder::resolve(name, Severity::Medium, true).expect(name);
            assert!(!d.is_passthrough(), "{name}");
        }
        assert!(
            Decoder::resolve("json", Severity::Medium, true)
                .expect("json")
                .is_passthrough()
        );
        let e = Decoder::resolve("acme", Severity::Medium, true).expect_err("unknown");
        assert!(e.0.contains("unknown decoder `acme`"), "{e}");
        assert!(Decoder::resolve("../x", Severity::Medium, true).is_err());
        let e = Decoder::resolve("aws", Severity::Medium, true).expect_err("the file name");
        assert!(e.0.contains("use one of those"), "{e}");
    }

    #[test]
    fn outputs_are_checked_and_defaulted() {
        let d = Decoder {
            name: Arc::from("test"),
            program: Some(
                program::compile(
                    &ProgramSource::Inline(
                        r#". = [{"status": "firing", "severity": null, "raw": 1}, {"event_type": "log"}]"#.into(),
                    ),
                    Mode::ReadWrite,
                )
                .expect("compile"),
            ),
            origin: None,
            runners: Mutex::new(Vec::new()),
            default_severity: Severity::High,
            keep_raw: false,
        };
        let out = d
            .decode(Value::Null, &Value::Null, &stamp())
            .expect("decode");
        assert_eq!(out.len(), 2);
        let first = out[0].as_object().expect("object");
        assert_eq!(first.get("severity"), Some(&Value::from("high")));
        assert_eq!(first.get("event_type"), Some(&Value::from("alert")));
        assert_eq!(first.get("source"), Some(&Value::from("test")));
        assert_eq!(first.get("request_id"), Some(&Value::from("req-1")));
        assert!(first.get("raw").is_none());
        assert_eq!(
            first
                .get("id")
                .and_then(|v| v.to_str_lossy())
                .map(|v| v.len()),
            Some(36)
        );
        assert!(out[1].as_object().expect("object").get("status").is_none());
    }

    #[test]
    fn bad_statuses_and_aborts_name_the_problem() {
        let with = |src: &str| Decoder {
            name: Arc::from("test"),
            program: Some(
                program::compile(&ProgramSource::Inline(src.into()), Mode::ReadWrite)
                    .expect("compile"),
            ),
            origin: None,
            runners: Mutex::new(Vec::new()),
            default_severity: Severity::Medium,
            keep_raw: true,
        };
        let e = with(r#". = {"status": "open"}"#)
            .decode(Value::Null, &Value::Null, &stamp())
            .expect_err("bad status");
        assert!(e.message.contains("status `open`"), "{}", e.message);
        let e = with(r#"abort ".alerts[0].labels: expected an object""#)
            .decode(Value::Null, &Value::Null, &stamp())
            .expect_err("abort");
        assert_eq!(e.path.as_deref(), Some(".alerts[0].labels"));
        assert_eq!(e.message, "expected an object");
        assert_eq!(e.decoder.as_deref(), Some("test"));
    }
}
