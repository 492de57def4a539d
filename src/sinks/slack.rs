//! `slack`: alerts to a Slack incoming webhook.
//!
//! The message is made by a VRL formatter: `plugins/formatters/slack.vrl` (compiled into
//! the binary) unless `formatter_file` names another. It must produce an object with a
//! non-empty `text`; `blocks` are optional. Slack answers `ok` (200) on success and a
//! plain-text error otherwise: 429 is retried after `Retry-After`, 5xx retried, and every
//! other error (`invalid_payload`, `no_text`, `channel_not_found`, …) goes to the dead
//! letter with Slack's body.

use serde::Deserialize;
use std::path::PathBuf;

use crate::component::{BoxFuture, BuildError, ComponentTask, SinkConfig, SinkContext};
use crate::delivery::{DEAD_LETTER, EncodedEvents, EncodedRequest, HttpEncoder, RequestConfig};
use crate::event::Event;
use crate::net::FailureHandling;
use crate::plugins::{Formatter, text_field};

/// Posts events to a Slack incoming webhook, formatted by a VRL formatter.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlackConfig {
    /// The incoming webhook URL (it is the secret: keep it in `${…}`).
    pub(crate) webhook_url: String,
    /// A VRL formatter replacing the built-in one.
    pub(crate) formatter_file: Option<PathBuf>,
    /// Verify the server's TLS certificate (default true).
    #[serde(default = "crate::units::yes")]
    pub(crate) ssl_verify: bool,
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
    #[serde(default)]
    pub(crate) request: RequestConfig,
}

impl SlackConfig {
    fn encoder(&self) -> Result<SlackEncoder, BuildError> {
        let url = reqwest::Url::parse(&self.webhook_url)
            .map_err(|e| BuildError(format!("`webhook_url`: {e}")))?;
        self.failure_handling.check().map_err(BuildError)?;
        self.request.check().map_err(BuildError)?;
        Ok(SlackEncoder {
            url,
            formatter: Formatter::load("slack", "Slack", self.formatter_file.as_ref())?,
        })
    }
}

impl SinkConfig for SlackConfig {
    fn type_name(&self) -> &'static str {
        "slack"
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

struct SlackEncoder {
    url: reqwest::Url,
    formatter: Formatter,
}

impl HttpEncoder for SlackEncoder {
    fn encode_into(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        let value = self.formatter.format(event)?;
        if text_field(&value, "text").is_none() {
            return Err(
                "the Slack formatter produced no `text` (Slack would answer no_text)".into(),
            );
        }
        serde_json::to_writer(out, &value).map_err(|e| format!("cannot encode: {e}"))
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

    #[test]
    fn the_built_in_formatter_makes_a_message() {
        let config = SlackConfig {
            webhook_url: "http://127.0.0.1:9/x".into(),
            formatter_file: None,
            ssl_verify: true,
            failure_handling: FailureHandling::default(),
            request: RequestConfig::default(),
        };
        let encoder = config.encoder().expect("builds");
        let event = Event::new(
            serde_json::from_str(r#"{"status":"resolved","summary":"DiskFull"}"#).expect("json"),
            crate::event::SourceId::intern("t"),
            chrono::Utc::now(),
        );
        let bytes = encoder.encode_event(&event).expect("encodes");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["text"], "[RESOLVED] DiskFull");
    }
}
