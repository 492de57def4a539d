//! One event as an RFC 5424 message, framed for a stream (RFC 6587 octet counting, as
//! RFC 5425 requires over TLS, or a newline).
//!
//! The header fields come from the event's fields of the same names (as the `syslog`
//! source writes them), so a message relayed through sluice keeps them; each is made
//! printable US-ASCII without spaces and cut to the RFC's length, `-` when empty.

use chrono::{DateTime, SecondsFormat, Utc};
use vrl::value::Value;

use super::{Framing, SyslogSinkConfig};
use crate::event::Event;
use crate::template::Template;

/// RFC 5424's facility codes, by the names the source writes.
const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clockd", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
/// RFC 5424's severity codes, by name.
const SEVERITIES: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The syslog severity of a `severity` field: a syslog name, or a normalized alert's
/// (critical, high, medium, low, info).
fn severity_code(name: &str) -> Option<u8> {
    let name = name.to_ascii_lowercase();
    let name = match name.as_str() {
        "critical" => "crit",
        "high" | "error" => "err",
        "medium" | "warn" => "warning",
        "low" => "notice",
        "emergency" | "panic" => "emerg",
        other => other,
    };
    SEVERITIES.iter().position(|s| *s == name).map(|i| i as u8)
}

fn facility_code(name: &str) -> Option<u8> {
    let name = name.to_ascii_lowercase();
    FACILITIES.iter().position(|f| *f == name).map(|i| i as u8)
}

/// A header field: printable US-ASCII (33..=126) only, at most `max` characters.
fn header(value: Option<&str>, max: usize) -> String {
    let clean: String = value
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if clean.is_empty() { "-".into() } else { clean }
}

/// An SD-NAME: printable US-ASCII except `=`, space, `]` and `"`, at most 32.
fn sd_name(name: &str) -> Option<String> {
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"'))
        .take(32)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

/// A PARAM-VALUE with `"`, `\` and `]` escaped.
fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

fn structured_data(event: &Event) -> String {
    let Some(Value::Object(elements)) = event.get("structured_data") else {
        return "-".into();
    };
    let mut out = String::new();
    for (id, params) in elements {
        let (Some(id), Value::Object(params)) = (sd_name(id), params) else {
            continue;
        };
        out.push('[');
        out.push_str(&id);
        for (name, value) in params {
            let (Some(name), false) = (sd_name(name), value.is_null()) else {
                continue;
            };
            out.push(' ');
            out.push_str(&name);
            out.push_str("=\"");
            escape(&value.to_string_lossy(), &mut out);
            out.push('"');
        }
        out.push(']');
    }
    if out.is_empty() { "-".into() } else { out }
}

pub(super) struct Encoder {
    pub(super) framing: Framing,
    pub(super) facility: u8,
    pub(super) severity: u8,
    pub(super) app_name: Option<Template>,
    pub(super) message: Option<Template>,
    pub(super) hostname: String,
}

impl Encoder {
    pub(super) fn new(config: &SyslogSinkConfig) -> Result<Self, String> {
        let facility = facility_code(&config.facility)
            .ok_or_else(|| format!("`facility` `{}` is not a syslog facility", config.facility))?;
        let severity = severity_code(&config.severity)
            .ok_or_else(|| format!("`severity` `{}` is not a syslog severity", config.severity))?;
        let template = |name: &str, t: &Option<String>| {
            t.as_deref()
                .map(Template::parse)
                .transpose()
                .map_err(|e| format!("`{name}`: {e}"))
        };
        Ok(Self {
            framing: config.framing,
            facility,
            severity,
            app_name: template("app_name", &config.app_name)?,
            message: template("message", &config.message)?,
            hostname: hostname::get()
                .map_or_else(|_| "-".into(), |h| h.to_string_lossy().into_owned()),
        })
    }

    /// The framed message of one event.
    pub(super) fn encode(&self, event: &Event, now: DateTime<Utc>) -> Result<Vec<u8>, String> {
        let facility = event
            .text("facility")
            .and_then(|f| facility_code(&f))
            .unwrap_or(self.facility);
        let severity = event
            .text("severity")
            .and_then(|s| severity_code(&s))
            .unwrap_or(self.severity);
        // RFC 5424 timestamps have four-digit years.
        let timestamp = match event.get("timestamp") {
            Some(Value::Timestamp(t)) if (0..=9999).contains(&chrono::Datelike::year(t)) => *t,
            _ => now,
        };
        let app_name = match &self.app_name {
            Some(t) => Some(t.render(event)?),
            None => event.text("appname"),
        };
        let message = match &self.message {
            Some(t) => t.render(event)?,
            None => match event.get("message") {
                Some(Value::Bytes(_) | Value::String(_)) => {
                    event.text("message").unwrap_or_default()
                }
                _ => serde_json::to_string(event.value())
                    .map_err(|e| format!("cannot encode the event: {e}"))?,
            },
        };
        let line = format!(
            "<{}>1 {} {} {} {} {} {} {}",
            u16::from(facility) * 8 + u16::from(severity),
            timestamp.to_rfc3339_opts(SecondsFormat::Micros, true),
            header(
                Some(event.text("hostname").as_deref().unwrap_or(&self.hostname)),
                255
            ),
            header(app_name.as_deref(), 48),
            header(event.text("procid").as_deref(), 128),
            header(event.text("msgid").as_deref(), 32),
            structured_data(event),
            message
        );
        let mut out = Vec::with_capacity(line.len() + 8);
        match self.framing {
            Framing::OctetCounting => {
                out.extend_from_slice(line.len().to_string().as_bytes());
                out.push(b' ');
                out.extend_from_slice(line.as_bytes());
            }
            Framing::Newline => {
                // A newline inside the message would end it early.
                out.extend(line.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
                out.push(b'\n');
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(framing: Framing) -> Encoder {
        Encoder {
            framing,
            facility: 1,
            severity: 6,
            app_name: None,
            message: None,
            hostname: "box".into(),
        }
    }

    fn event(json: &str) -> Event {
        Event::new(
            serde_json::from_str(json).expect("json"),
            crate::event::SourceId::intern("t"),
            Utc::now(),
        )
    }

    #[test]
    fn fields_become_the_header_and_structured_data_is_escaped() {
        let now = "2026-12-05T10:00:00.5Z".parse().expect("time");
        let e = event(
            r#"{"message": "disk full", "hostname": "db 1", "appname": "pg", "procid": 42, "msgid": "ID7", "facility": "local4", "severity": "critical", "structured_data": {"meta@1": {"k": "a\"b]c\\d", "bad=name": "x"}}}"#,
        );
        let bytes = encoder(Framing::OctetCounting)
            .encode(&e, now)
            .expect("encodes");
        let text = String::from_utf8(bytes).expect("utf8");
        let (count, line) = text.split_once(' ').expect("framed");
        assert_eq!(count.parse::<usize>().ok(), Some(line.len()));
        assert_eq!(
            line,
            r#"<162>1 2026-12-05T10:00:00.500000Z db_1 pg 42 ID7 [meta@1 badname="x" k="a\"b\]c\\d"] disk full"#
        );
    }

    #[test]
    fn an_event_without_message_is_sent_as_json_on_one_line() {
        let now = Utc::now();
        let e = event(r#"{"status": "firing", "summary": "two\nlines"}"#);
        let bytes = encoder(Framing::Newline).encode(&e, now).expect("encodes");
        let text = String::from_utf8(bytes).expect("utf8");
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.starts_with("<14>1 "), "{text}");
        assert!(
            text.contains(r#"box - - - - {"status":"firing","summary":"two\nlines"}"#),
            "{text}"
        );
    }
}
