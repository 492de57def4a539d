//! `teams`: alerts to a Microsoft Teams channel through a Workflows (Power Automate)
//! webhook, as an Adaptive Card.
//!
//! The card is made by a VRL formatter: `plugins/formatters/teams.vrl` (compiled into the
//! binary) unless `formatter_file` names another. It must produce an Adaptive Card
//! (`type: AdaptiveCard`, a `version`, a `body` array); the sink wraps it in the message
//! envelope (`type: message`, one attachment of content type
//! `application/vnd.microsoft.card.adaptive`). Teams takes a message only up to 28 KB
//! and answers 202 before the flow runs, so a larger card could never be delivered and
//! would fail silently: it goes to the dead letter instead. 429 is retried after
//! `Retry-After`, 5xx retried, any other error dead-lettered with the answer.

use serde::Deserialize;
use std::path::PathBuf;
use vrl::value::Value;

use crate::component::{BoxFuture, BuildError, ComponentTask, SinkConfig, SinkContext};
use crate::delivery::{DEAD_LETTER, EncodedEvents, EncodedRequest, HttpEncoder, RequestConfig};
use crate::event::Event;
use crate::net::FailureHandling;
use crate::plugins::{Formatter, text_field};

/// The largest message a Teams webhook accepts, envelope included.
const MAX_MESSAGE_BYTES: usize = 28 * 1024;

/// Posts events to a Microsoft Teams Workflows webhook as Adaptive Cards made by a VRL
/// formatter.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TeamsConfig {
    /// The Workflows webhook URL ("When a Teams webhook request is received"); it carries
    /// its signature, so it is the secret: keep it in `${…}`.
    pub(crate) webhook_url: String,
    /// A VRL formatter replacing the built-in one; it must produce an Adaptive Card.
    pub(crate) formatter_file: Option<PathBuf>,
    /// Verify the server's TLS certificate (default true).
    #[serde(default = "crate::units::yes")]
    pub(crate) ssl_verify: bool,
    /// Retries with backoff, then the `dead_letter` output.
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
    /// Timeouts, concurrency and rate limit of the requests.
    #[serde(default)]
    pub(crate) request: RequestConfig,
}

impl TeamsConfig {
    fn encoder(&self) -> Result<TeamsEncoder, BuildError> {
        if self.webhook_url.trim().is_empty() {
            return Err(BuildError(
                "`webhook_url` is empty (is its variable unset?): an empty secret is refused"
                    .into(),
            ));
        }
        let url = reqwest::Url::parse(&self.webhook_url)
            .map_err(|e| BuildError(format!("`webhook_url`: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(BuildError(format!(
                "`webhook_url` must be an https URL, not {}:",
                url.scheme()
            )));
        }
        self.failure_handling.check().map_err(BuildError)?;
        self.request.check().map_err(BuildError)?;
        Ok(TeamsEncoder {
            url,
            formatter: Formatter::load("teams", "Teams", self.formatter_file.as_ref())?,
        })
    }
}

impl SinkConfig for TeamsConfig {
    fn type_name(&self) -> &'static str {
        "teams"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn files(&self) -> Vec<PathBuf> {
        self.formatter_file.iter().cloned().collect()
    }

    fn check(&self) -> Result<(), BuildError> {
        self.encoder().map(drop)
    }

    fn healthcheck(
        &self,
        _timeout: std::time::Duration,
    ) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(crate::net::probe::without_credentials(
            &self.webhook_url,
            self.ssl_verify,
            self.request.timeout,
        )))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            crate::delivery::single_event_task(
                self.encoder()?,
                self.ssl_verify,
                self.failure_handling,
                self.request,
                cx,
            )
        })
    }
}

struct TeamsEncoder {
    url: reqwest::Url,
    formatter: Formatter,
}

/// Why a formatter's result is not an Adaptive Card Teams would render.
fn card_problem(card: &Value) -> Option<&'static str> {
    let Some(object) = card.as_object() else {
        return Some("the result is not an object");
    };
    if text_field(card, "type").as_deref() != Some("AdaptiveCard") {
        return Some("`type` is not \"AdaptiveCard\"");
    }
    if text_field(card, "version").is_none() {
        return Some("`version` is missing");
    }
    match object.get("body") {
        Some(Value::Array(items)) if !items.is_empty() => None,
        _ => Some("`body` is not a non-empty array"),
    }
}

impl HttpEncoder for TeamsEncoder {
    fn encode_into(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        let card = self.formatter.format(event)?;
        if let Some(problem) = card_problem(&card) {
            return Err(format!(
                "the Teams formatter did not produce an Adaptive Card: {problem}"
            ));
        }
        let message = serde_json::json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card,
            }],
        });
        let start = out.len();
        serde_json::to_writer(&mut *out, &message).map_err(|e| format!("cannot encode: {e}"))?;
        let len = out.len() - start;
        if len > MAX_MESSAGE_BYTES {
            return Err(format!(
                "the card is {len} bytes; Teams refuses messages over {MAX_MESSAGE_BYTES} bytes"
            ));
        }
        Ok(())
    }

    fn build_request(
        &self,
        _partition: &str,
        events: EncodedEvents,
    ) -> Result<EncodedRequest, String> {
        Ok(EncodedRequest::single_event_post(&self.url, events))
    }

    fn max_events(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder() -> TeamsEncoder {
        TeamsConfig {
            webhook_url: "http://127.0.0.1:9/x".into(),
            formatter_file: None,
            ssl_verify: true,
            failure_handling: FailureHandling::default(),
            request: RequestConfig::default(),
        }
        .encoder()
        .expect("builds")
    }

    fn event(json: &str) -> Event {
        Event::new(
            serde_json::from_str(json).expect("json"),
            crate::event::SourceId::intern("t"),
            chrono::Utc::now(),
        )
    }

    #[test]
    fn the_built_in_formatter_makes_a_card_in_its_envelope() {
        let bytes = encoder()
            .encode_event(&event(
                r#"{"status":"firing","severity":"critical","summary":"DiskFull","url":"https://g.example/d"}"#,
            ))
            .expect("encodes");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["type"], "message");
        let attachment = &v["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &attachment["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["body"][0]["text"], "[CRITICAL] DiskFull");
        assert_eq!(card["body"][0]["color"], "Attention");
        assert_eq!(card["actions"][0]["url"], "https://g.example/d");
    }

    #[test]
    fn big_alerts_are_cut_to_fit_and_a_bigger_card_is_refused() {
        let long = "x".repeat(40_000);
        let labels: Vec<String> = (0..20).map(|i| format!(r#""l{i}":"{long}""#)).collect();
        let json = format!(
            r#"{{"summary":"big","description":"{long}","url":"javascript:alert(1)","labels":{{{}}}}}"#,
            labels.join(",")
        );
        let bytes = encoder().encode_event(&event(&json)).expect("cut to fit");
        assert!(bytes.len() <= MAX_MESSAGE_BYTES, "{}", bytes.len());
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert!(
            v["attachments"][0]["content"].get("actions").is_none(),
            "no javascript: button"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let formatter = dir.path().join("big.vrl");
        std::fs::write(
            &formatter,
            r#". = { "type": "AdaptiveCard", "version": "1.4", "body": [{ "type": "TextBlock", "text": string!(.description) }] }"#,
        )
        .expect("write");
        let big = TeamsConfig {
            webhook_url: "http://127.0.0.1:9/x".into(),
            formatter_file: Some(formatter),
            ssl_verify: true,
            failure_handling: FailureHandling::default(),
            request: RequestConfig::default(),
        }
        .encoder()
        .expect("builds");
        let err = big.encode_event(&event(&json)).err().unwrap_or_default();
        assert!(
            err.contains("Teams refuses messages over 28672 bytes"),
            "{}",
            &err[..err.len().min(300)]
        );
    }
}
