//! From events to mail: rendering each event's envelope and formatting its part, then
//! building one message from the parts of a group (one part per event, or a digest).

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart};

use super::EmailConfig;
use crate::component::BuildError;
use crate::event::{Event, SourceId};
use crate::plugins::{Formatter, text_field};
use crate::template::Template;

/// Subjects past this are cut (mail headers are folded, but clients show a line).
const MAX_SUBJECT_CHARS: usize = 250;

/// Who a message is from and to, rendered from one event.
#[derive(Debug, Clone)]
pub(super) struct Envelope {
    pub(super) from: Mailbox,
    pub(super) to: Vec<Mailbox>,
    pub(super) cc: Vec<Mailbox>,
}

impl Envelope {
    /// Events with equal keys may share a digest.
    pub(super) fn key(&self) -> String {
        let list = |m: &[Mailbox]| {
            m.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        format!("{}\n{}\n{}", self.from, list(&self.to), list(&self.cc))
    }
}

/// One event's share of a message.
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub(super) subject: String,
    pub(super) text: String,
    pub(super) html: Option<String>,
}

pub(super) struct Composer {
    from: Template,
    to: Vec<Template>,
    cc: Vec<Template>,
    subject: Option<Template>,
    formatter: Formatter,
}

fn templates(option: &str, sources: &[String]) -> Result<Vec<Template>, BuildError> {
    sources
        .iter()
        .map(|s| Template::parse(s).map_err(|e| BuildError(format!("`{option}`: {e}"))))
        .collect()
}

/// One address from a rendered template: a second address (`a@x, b@y`) is an error, so
/// a value in an event can never add a recipient.
fn mailbox(option: &str, text: &str) -> Result<Mailbox, String> {
    text.trim()
        .parse::<Mailbox>()
        .map_err(|e| format!("`{option}` rendered {text:?}, not one email address: {e}"))
}

impl Composer {
    pub(super) fn new(config: &EmailConfig) -> Result<Self, BuildError> {
        let from = Template::parse(&config.from).map_err(|e| BuildError(format!("`from`: {e}")))?;
        let composer = Self {
            from,
            to: templates("to", &config.to)?,
            cc: templates("cc", &config.cc)?,
            subject: config
                .subject
                .as_deref()
                .map(Template::parse)
                .transpose()
                .map_err(|e| BuildError(format!("`subject`: {e}")))?,
            formatter: Formatter::load("email", "email", config.formatter_file.as_ref())?,
        };
        // Addresses without fields can be checked now rather than per event.
        let empty = Event::new(
            vrl::value::Value::Object(Default::default()),
            SourceId::intern(""),
            chrono::Utc::now(),
        );
        for (option, t) in std::iter::once(("from", &composer.from))
            .chain(composer.to.iter().map(|t| ("to", t)))
            .chain(composer.cc.iter().map(|t| ("cc", t)))
        {
            if t.is_static() {
                let text = t.render(&empty).map_err(BuildError)?;
                mailbox(option, &text).map_err(BuildError)?;
            }
        }
        Ok(composer)
    }

    pub(super) fn envelope(&self, event: &Event) -> Result<Envelope, String> {
        let render = |option: &str, ts: &[Template]| {
            ts.iter()
                .map(|t| mailbox(option, &t.render(event)?))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Envelope {
            from: mailbox("from", &self.from.render(event)?)?,
            to: render("to", &self.to)?,
            cc: render("cc", &self.cc)?,
        })
    }

    pub(super) fn part(&self, event: &Event) -> Result<Part, String> {
        let formatted = self.formatter.format(event)?;
        let subject = match &self.subject {
            Some(t) => t.render(event)?,
            None => text_field(&formatted, "subject").unwrap_or_else(|| "Alert".into()),
        };
        let text = text_field(&formatted, "text")
            .ok_or("the email formatter produced no `text` (the plain-text body)")?;
        Ok(Part {
            subject: crate::text::prefix_chars(subject.trim(), MAX_SUBJECT_CHARS).to_owned(),
            text,
            html: text_field(&formatted, "html"),
        })
    }
}

/// Escapes text for an HTML body (a part whose formatter gave no `html`, in a digest
/// where others did).
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The message carrying `parts` (one: that event's message; more: a digest).
pub(super) fn build(envelope: &Envelope, parts: &[Part]) -> Result<Message, String> {
    let first = parts.first().ok_or("no event to send")?;
    let (subject, text, html) = if let [only] = parts {
        (only.subject.clone(), only.text.clone(), only.html.clone())
    } else {
        let subject = format!("{} alerts: {}", parts.len(), first.subject);
        let text = parts
            .iter()
            .map(|p| p.text.trim_end())
            .collect::<Vec<_>>()
            .join("\n\n----------\n\n");
        let html = parts.iter().any(|p| p.html.is_some()).then(|| {
            parts
                .iter()
                .map(|p| match &p.html {
                    Some(h) => h.clone(),
                    None => format!("<pre>{}</pre>", escape_html(&p.text)),
                })
                .collect::<Vec<_>>()
                .join("<hr>")
        });
        (subject, text, html)
    };
    let mut builder = Message::builder()
        .from(envelope.from.clone())
        .subject(subject)
        .message_id(None);
    for to in &envelope.to {
        builder = builder.to(to.clone());
    }
    for cc in &envelope.cc {
        builder = builder.cc(cc.clone());
    }
    let built = match html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            text,
            format!("<html><body>{html}</body></html>"),
        )),
        None => builder.header(ContentType::TEXT_PLAIN).body(text),
    };
    built.map_err(|e| format!("cannot build the message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> EmailConfig {
        let mut c = serde_json::json!({"host": "smtp.example", "from": "Alerts <alerts@example.com>", "to": ["{{ owner }}"]});
        if let (Some(c), serde_json::Value::Object(e)) = (c.as_object_mut(), extra) {
            c.extend(e);
        }
        serde_json::from_value(c).expect("config")
    }

    fn event(json: &str) -> Event {
        Event::new(
            serde_json::from_str(json).expect("json"),
            SourceId::intern("t"),
            chrono::Utc::now(),
        )
    }

    #[test]
    fn an_event_cannot_add_a_recipient_or_a_header() {
        let composer = Composer::new(&config(serde_json::json!({"subject": "{{ summary }}"})))
            .expect("composer");
        let two = event(r#"{"owner": "a@example.com, evil@example.net"}"#);
        let err = composer.envelope(&two).expect_err("two addresses");
        assert!(err.contains("not one email address"), "{err}");
        let injected = event(
            r#"{"owner": "a@example.com", "summary": "Disk\r\nBcc: evil@example.net\r\n\r\nbody"}"#,
        );
        let envelope = composer.envelope(&injected).expect("envelope");
        let part = composer.part(&injected).expect("part");
        let raw = String::from_utf8(build(&envelope, &[part]).expect("message").formatted())
            .expect("utf8");
        let headers = raw.split("\r\n\r\n").next().unwrap_or("");
        assert!(
            !headers
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{headers}"
        );
    }

    #[test]
    fn alert_text_is_escaped_in_the_html_body() {
        let composer = Composer::new(&config(serde_json::json!({}))).expect("composer");
        let e = event(
            r#"{"owner": "a@example.com", "summary": "<script>x</script>", "url": "javascript:alert(1)"}"#,
        );
        let part = composer.part(&e).expect("part");
        let html = part.html.expect("html");
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("href=\"javascript:"), "{html}");
    }

    #[test]
    fn a_static_address_that_is_not_one_is_a_config_error() {
        let err = Composer::new(&config(serde_json::json!({"cc": ["not an address"]})))
            .err()
            .expect("refused")
            .0;
        assert!(err.contains("`cc` rendered \"not an address\""), "{err}");
    }
}
