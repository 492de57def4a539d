//! `fluent`: events out over fluentd's Forward protocol, to a fluentd or Fluent Bit
//! aggregator (or another sluice's `fluent` source).
//!
//! Each batch becomes PackedForward messages, one per tag (the `tag` template), split
//! at `max_message_bytes`, gzip-compressed with `compression: gzip`
//! (CompressedPackedForward). An event's `timestamp` (when it is a timestamp) is sent
//! as the record's time, with nanoseconds, and its `tag` field when it equals the
//! tag; the other fields are the record. With `require_ack` (the default) each
//! message carries a `chunk` id and counts as delivered only when the server answers
//! `{"ack": id}`; a message not acknowledged in `ack_timeout` is sent again on a new
//! connection (at least once), with backoff, then dead-lettered.

mod client;
mod encode;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SinkConfig, SinkContext, delivered,
};
use crate::delivery::{DEAD_LETTER, DeadLetter, Failure};
use crate::event::Event;
use crate::net::client_tls::ClientTls;
use crate::net::{Backoff, FailureHandling, Pause};
use crate::template::Template;

/// Sends events to fluentd or Fluent Bit over the Forward protocol, waiting for acks.
/// PackedForward messages, optional gzip, the shared-key handshake and TLS.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FluentSinkConfig {
    /// `host:port` of the fluentd, Fluent Bit or sluice `fluent` source.
    pub(crate) address: String,
    /// The tag of each event, a template (`"{{ tag }}"` keeps the tag events came in
    /// with through a `fluent` source; `"app.{{ service }}"`).
    pub(crate) tag: String,
    /// Connect with TLS. The server's certificate must be a server (leaf) certificate
    /// signed by a trusted CA: a self-signed one that is its own CA (`openssl req -x509`
    /// without `-addext basicConstraints=critical,CA:FALSE`) is refused.
    pub(crate) tls: Option<ClientTls>,
    /// Do the handshake with this shared key (the server's `shared_key`).
    pub(crate) shared_key: Option<String>,
    /// With `shared_key`, log in as this user when the server asks for one.
    pub(crate) username: Option<String>,
    /// The password of `username` (use a `${VARIABLE}`).
    pub(crate) password: Option<String>,
    /// The hostname this sink gives in the handshake (default: the machine's).
    pub(crate) self_hostname: Option<String>,
    /// `gzip` sends CompressedPackedForward; `none` (default) PackedForward.
    #[serde(default)]
    pub(crate) compression: Compression,
    /// Wait for the server's ack of each message before counting it delivered
    /// (default true); without it a message counts as delivered once written.
    #[serde(default = "crate::units::yes")]
    pub(crate) require_ack: bool,
    /// How long to wait for an ack (default 30s) before sending the message again.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub(crate) ack_timeout: Duration,
    /// How long connecting, TLS and the handshake may take (default 10s).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub(crate) connect_timeout: Duration,
    /// Largest message sent, before compression (default 8 MiB, the `fluent` source's
    /// default limit); a batch is split to fit, and one record larger than this is
    /// dead-lettered.
    #[serde(default = "default_max_message_bytes")]
    pub(crate) max_message_bytes: usize,
    /// Retries with backoff of a message that was not acknowledged, then the
    /// `dead_letter` output.
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
}

/// How message entries are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Compression {
    /// PackedForward.
    #[default]
    None,
    /// CompressedPackedForward (gzip).
    Gzip,
}

fn default_ack_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_message_bytes() -> usize {
    8 * 1024 * 1024
}

impl FluentSinkConfig {
    fn template(&self) -> Result<Template, BuildError> {
        if self.tag.is_empty() {
            return Err(BuildError("`tag` must not be empty".into()));
        }
        Template::parse(&self.tag).map_err(|e| BuildError(format!("`tag`: {e}")))
    }
}

impl SinkConfig for FluentSinkConfig {
    fn type_name(&self) -> &'static str {
        "fluent"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn check(&self) -> Result<(), BuildError> {
        self.template()?;
        self.failure_handling.check().map_err(BuildError)?;
        if self.address.rsplit_once(':').is_none() {
            return Err(BuildError(format!(
                "`address` `{}` must be host:port",
                self.address
            )));
        }
        let blank = |s: &Option<String>| s.as_deref().is_some_and(|s| s.trim().is_empty());
        if blank(&self.shared_key) || blank(&self.password) {
            return Err(BuildError(
                "`shared_key` or `password` is empty (is its variable unset?): an empty secret is refused".into(),
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(BuildError(
                "give both `username` and `password`, or neither".into(),
            ));
        }
        if self.username.is_some() && self.shared_key.is_none() {
            return Err(BuildError(
                "`username` needs `shared_key`: users log in during the shared-key handshake"
                    .into(),
            ));
        }
        if self.max_message_bytes == 0
            || self.ack_timeout.is_zero()
            || self.connect_timeout.is_zero()
        {
            return Err(BuildError(
                "`max_message_bytes`, `ack_timeout` and `connect_timeout` must be above zero"
                    .into(),
            ));
        }
        if let Some(tls) = &self.tls {
            crate::net::client_tls::tls_connector(tls).map_err(BuildError)?;
            crate::net::client_tls::server_name(tls, &self.address).map_err(BuildError)?;
        }
        Ok(())
    }

    fn healthcheck(
        &self,
        _timeout: std::time::Duration,
    ) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(async move {
            client::Client::new(self).map_err(|e| e.0)?.probe().await
        }))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check()?;
            let template = self.template()?;
            let client = client::Client::new(self)?;
            let config = self.clone();
            Ok(Box::pin(run(config, template, client, cx)) as ComponentTask)
        })
    }
}

async fn run(
    config: FluentSinkConfig,
    template: Template,
    mut client: client::Client,
    mut cx: SinkContext,
) -> Result<(), ComponentError> {
    let dead_letter = DeadLetter::new(
        Arc::clone(&cx.id),
        cx.outputs.first().cloned(),
        Arc::clone(&cx.metrics),
    );
    let stop = cx.input.stop_token();
    let gzip = config.compression == Compression::Gzip;
    while let Some(batch) = cx.input.recv().await {
        cx.metrics.add_received(batch.len());
        let (messages, refused) = encode::messages(
            batch,
            &template,
            config.max_message_bytes,
            gzip,
            config.require_ack,
        );
        for (events, failure) in refused {
            dead_letter.send(vec![events], &failure).await;
        }
        let mut pending = messages.into_iter();
        while let Some(message) = pending.next() {
            let mut backoff = Backoff::new(config.failure_handling);
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                let error = match client.send(&message.bytes, message.chunk.as_deref()).await {
                    Ok(()) => {
                        cx.metrics.add_sent_bytes(message.bytes.len());
                        delivered(&cx.metrics, message.events);
                        break;
                    }
                    Err(e) => e,
                };
                client.disconnect();
                let pause = backoff.pause(None, &*cx.clock, Some(&stop), |wait| {
                    tracing::warn!(component_id = %cx.id, error = %error, wait = ?wait, "forward failed; retrying");
                });
                match pause.await {
                    Pause::Retry => {}
                    Pause::Exhausted => {
                        let failure = Failure::gave_up(attempts, &error, None, None);
                        dead_letter.send(message.events, &failure).await;
                        break;
                    }
                    Pause::Stopped => {
                        // Replaced by a reload: what is not sent goes to the replacement.
                        let mut rest: Vec<Event> = message.events;
                        rest.extend(pending.flat_map(|m| m.events));
                        cx.input.hand_back(rest);
                        client.close().await;
                        return Ok(());
                    }
                }
            }
        }
    }
    client.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> FluentSinkConfig {
        serde_json::from_value(json).expect("a config")
    }

    #[test]
    fn a_certificate_name_no_certificate_can_carry_is_a_validate_error() {
        let bad = config(serde_json::json!({
            "address": "127.0.0.1:24224",
            "tag": "t",
            "tls": {"server_name": "bad name!"},
        }));
        let err = bad.check().expect_err("refused").0;
        assert!(err.contains("`tls.server_name` `bad name!`"), "{err}");
        let bad_host = config(serde_json::json!({
            "address": "bad_host!:24224",
            "tag": "t",
            "tls": {},
        }));
        let err = bad_host.check().expect_err("refused").0;
        assert!(err.contains("`address` `bad_host!`"), "{err}");
        let named = config(serde_json::json!({
            "address": "10.0.0.1:24224",
            "tag": "t",
            "tls": {"server_name": "fluentd.example"},
        }));
        assert!(named.check().is_ok());
        // Without TLS the host is only dialled, never matched against a certificate.
        let plain = config(serde_json::json!({"address": "bad_host!:24224", "tag": "t"}));
        assert!(plain.check().is_ok());
    }
}
