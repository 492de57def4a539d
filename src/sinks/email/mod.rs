//! `email`: alerts by SMTP, one message per event or a digest per `batch.timeout`.
//!
//! The message is made by a VRL formatter (`plugins/formatters/email.vrl`, compiled into
//! the binary, unless `formatter_file` names another) that returns `subject`, `text` and
//! optionally `html`; with `html` the mail is `multipart/alternative`. `from`, `to`, `cc`
//! and `subject` are templates, rendered per event; each renders to exactly one address
//! (an event cannot add recipients), and header values are encoded by the mail builder,
//! so a line break in alert text cannot add a header.
//!
//! In `digest` mode, events with the same sender and recipients are gathered into one
//! message until `batch.timeout` passes or `batch.max_events` are waiting.
//!
//! Delivery follows SMTP's reply classes: a 4xx reply (or a connection failure, or a
//! server silent past `timeout`) is retried with backoff, a 5xx reply dead-letters the
//! message's events at once with the server's answer; so does a recipient the server
//! refuses, for the whole message (SMTP has no partial delivery to report), and a TLS
//! or login mismatch that waiting cannot fix. A shutdown sends held digests at once. TLS is required by default (STARTTLS on port 587); `tls: none` must be
//! chosen explicitly, and credentials are refused without TLS.

mod message;
mod send;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{BoxFuture, BuildError, ComponentTask, SinkConfig, SinkContext};
use crate::delivery::DEAD_LETTER;
use crate::net::FailureHandling;

/// Sends events as email over SMTP (STARTTLS or implicit TLS, AUTH PLAIN or LOGIN), one
/// message per event or a digest.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmailConfig {
    /// The SMTP server's host name (it is also the name its certificate must carry).
    pub(crate) host: String,
    /// The server's port (default: 587 with `starttls`, 465 with `tls`, 25 with `none`).
    pub(crate) port: Option<u16>,
    /// `starttls` (default: upgrade the connection and refuse a server that cannot),
    /// `tls` (implicit TLS, "SMTPS") or `none` (plain text, only for a relay on the same
    /// host).
    #[serde(default)]
    pub(crate) tls: TlsMode,
    /// PEM file with extra trusted CA certificates (added to the system's).
    pub(crate) ca_file: Option<PathBuf>,
    /// The user to log in as (AUTH PLAIN or LOGIN); needs `password` and TLS.
    pub(crate) username: Option<String>,
    /// The password of `username` (use a `${VARIABLE}`).
    pub(crate) password: Option<String>,
    /// The sender address, as a template (`"Alerts <alerts@example.com>"`).
    pub(crate) from: String,
    /// Recipients, each a template rendering to one address.
    pub(crate) to: Vec<String>,
    /// Copy recipients, each a template rendering to one address.
    #[serde(default)]
    pub(crate) cc: Vec<String>,
    /// The subject, as a template, replacing the formatter's.
    pub(crate) subject: Option<String>,
    /// A VRL formatter replacing the built-in one (it returns `subject`, `text`, `html`).
    pub(crate) formatter_file: Option<PathBuf>,
    /// `per_event` (default) sends each event as its own message; `digest` gathers the
    /// events of a `batch` into one.
    #[serde(default)]
    pub(crate) mode: Mode,
    /// How a digest is gathered.
    #[serde(default)]
    pub(crate) batch: DigestBatch,
    /// How long one delivery attempt may take: connecting, TLS, login and the whole
    /// SMTP dialogue (default 30s). A server that stops answering fails the attempt,
    /// which is retried.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
    /// Retries with backoff of a message the server deferred (4xx) or that could not be
    /// sent, then the `dead_letter` output.
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TlsMode {
    /// Plain connection upgraded with STARTTLS; a server that does not offer it is refused.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No encryption.
    None,
}

/// One message per event, or digests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// Each event is one message.
    #[default]
    PerEvent,
    /// Events are gathered into one message per sender and recipients.
    Digest,
}

/// `batch:` how a digest is gathered.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DigestBatch {
    /// Most events in one digest (default 100); more make several messages. At most
    /// 10,000 events wait for digests at once, across all recipients: past that the
    /// oldest digests go out early.
    #[serde(default = "default_max_events")]
    pub(crate) max_events: usize,
    /// How long the first event of a digest waits for others (default 5m).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_digest_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
}

impl Default for DigestBatch {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            timeout: default_digest_timeout(),
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_events() -> usize {
    100
}
fn default_digest_timeout() -> Duration {
    Duration::from_secs(300)
}

impl EmailConfig {
    fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        })
    }

    fn check_options(&self) -> Result<(), BuildError> {
        let fail = |s: &str| Err(BuildError(s.into()));
        let ip = self.host.parse::<std::net::IpAddr>().is_ok();
        if self.host.trim().is_empty()
            || self
                .host
                .contains(|c: char| c.is_whitespace() || matches!(c, '/' | '@'))
            || (self.host.contains(':') && !ip)
        {
            return Err(BuildError(format!(
                "`host` `{}` must be a host name or an IP address alone (the port goes in `port`)",
                self.host
            )));
        }
        if self.port == Some(0) {
            return fail("`port` must not be 0");
        }
        if self.to.is_empty() {
            return fail("`to` needs at least one recipient");
        }
        let blank = |s: &Option<String>| s.as_deref().is_some_and(|s| s.trim().is_empty());
        if blank(&self.password) || blank(&self.username) {
            return fail(
                "`username` or `password` is empty (is its variable unset?): an empty secret is refused",
            );
        }
        if self.username.is_some() != self.password.is_some() {
            return fail("give both `username` and `password`, or neither");
        }
        if self.username.is_some() && self.tls == TlsMode::None {
            return fail(
                "`username` and `password` need `tls: starttls` or `tls: tls`: without TLS the password would cross the network in clear",
            );
        }
        if self.batch.max_events == 0 || self.batch.timeout.is_zero() || self.timeout.is_zero() {
            return fail("`batch.max_events`, `batch.timeout` and `timeout` must be above zero");
        }
        self.failure_handling.check().map_err(BuildError)
    }
}

impl SinkConfig for EmailConfig {
    fn type_name(&self) -> &'static str {
        "email"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn files(&self) -> Vec<PathBuf> {
        self.formatter_file
            .iter()
            .chain(self.ca_file.iter())
            .cloned()
            .collect()
    }

    fn check(&self) -> Result<(), BuildError> {
        self.check_options()?;
        message::Composer::new(self)?;
        send::transport(self)?;
        Ok(())
    }

    fn healthcheck(&self, _timeout: Duration) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(send::probe(self)))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check_options()?;
            let composer = message::Composer::new(self)?;
            let transport = send::transport(self)?;
            Ok(Box::pin(send::run(self.clone(), composer, transport, cx)) as ComponentTask)
        })
    }
}
