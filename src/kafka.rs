//! What the `kafka` source and sink share: client settings and librdkafka's own logs.
//!
//! Both components hand `librdkafka_options` to librdkafka unchanged, after the options
//! sluice sets itself, so an operator can override anything (and is told at `validate`
//! time when a key or value is one librdkafka does not know).

use std::collections::BTreeMap;
use std::path::PathBuf;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::error::BuildError;

/// `tls:` TLS towards the brokers (librdkafka's `ssl.*` settings).
#[derive(Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KafkaTls {
    /// PEM file of the CA certificates that sign the brokers' (default: the system's).
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that require mutual TLS.
    pub(crate) crt_file: Option<PathBuf>,
    /// PEM private key of `crt_file`.
    pub(crate) key_file: Option<PathBuf>,
    /// The password of an encrypted `key_file` (use a `${VARIABLE}`).
    pub(crate) key_password: Option<String>,
    /// Check that each broker's certificate carries the host name it was reached by
    /// (default true).
    #[serde(default = "crate::units::yes")]
    pub(crate) verify_hostname: bool,
}

/// `sasl:` authentication to the brokers.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KafkaSasl {
    /// `plain`, `scram_sha_256` or `scram_sha_512`.
    pub(crate) mechanism: SaslMechanism,
    /// The user name.
    pub(crate) username: String,
    /// The password (use a `${VARIABLE}`).
    pub(crate) password: String,
}

/// A SASL mechanism librdkafka speaks without system libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SaslMechanism {
    /// PLAIN (send it only over TLS).
    #[serde(alias = "PLAIN")]
    Plain,
    /// SCRAM-SHA-256.
    #[serde(rename = "scram_sha_256", alias = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[serde(rename = "scram_sha_512", alias = "SCRAM-SHA-512")]
    ScramSha512,
}

/// librdkafka settings for `tls` and `sasl`: `security.protocol` and what each needs.
pub(crate) fn security_settings(
    tls: Option<&KafkaTls>,
    sasl: Option<&KafkaSasl>,
) -> Result<Vec<(&'static str, String)>, BuildError> {
    let protocol = match (tls.is_some(), sasl.is_some()) {
        (false, false) => return Ok(Vec::new()),
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    let mut out = vec![("security.protocol", protocol.to_owned())];
    if let Some(tls) = tls {
        let path = |option: &str, p: &PathBuf| -> Result<String, BuildError> {
            if !p.is_file() {
                return Err(BuildError(format!(
                    "`tls.{option}` {} is not a readable file",
                    p.display()
                )));
            }
            Ok(p.display().to_string())
        };
        if let Some(ca) = &tls.ca_file {
            out.push(("ssl.ca.location", path("ca_file", ca)?));
        }
        match (&tls.crt_file, &tls.key_file) {
            (Some(crt), Some(key)) => {
                out.push(("ssl.certificate.location", path("crt_file", crt)?));
                out.push(("ssl.key.location", path("key_file", key)?));
            }
            (None, None) => {}
            _ => {
                return Err(BuildError(
                    "give both `tls.crt_file` and `tls.key_file`, or neither".into(),
                ));
            }
        }
        if let Some(password) = &tls.key_password {
            if password.trim().is_empty() {
                return Err(BuildError(
                    "`tls.key_password` is empty (is its variable unset?): an empty secret is refused".into(),
                ));
            }
            out.push(("ssl.key.password", password.clone()));
        }
        let check = if tls.verify_hostname { "https" } else { "none" };
        out.push(("ssl.endpoint.identification.algorithm", check.to_owned()));
    }
    if let Some(sasl) = sasl {
        if sasl.username.trim().is_empty() || sasl.password.trim().is_empty() {
            return Err(BuildError(
                "`sasl.username` or `sasl.password` is empty (is its variable unset?): an empty secret is refused".into(),
            ));
        }
        let mechanism = match sasl.mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        };
        out.push(("sasl.mechanism", mechanism.to_owned()));
        out.push(("sasl.username", sasl.username.clone()));
        out.push(("sasl.password", sasl.password.clone()));
    }
    Ok(out)
}

/// The librdkafka settings for `bootstrap_servers` plus sluice's defaults (`ours`), then
/// the user's passthrough options, which win.
pub(crate) fn client_config(
    bootstrap_servers: &str,
    ours: &[(&str, String)],
    user: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers);
    for (key, value) in ours {
        config.set(*key, value);
    }
    for (key, value) in user {
        config.set(key, value);
    }
    // rdkafka takes its log level from the `log` crate, which sluice does not use (it
    // logs through `tracing`); without this librdkafka's warnings would be silenced. A
    // user's `debug` option (librdkafka's debug contexts) needs debug level.
    config.set_log_level(if user.contains_key("debug") {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Info
    });
    config
}

/// Asks librdkafka whether it accepts every key and value, without creating a client
/// (which would start threads and connect). An empty secret (`sasl.password`, …) is
/// refused first: it is almost always a variable that was not set.
pub(crate) fn check_config(config: &ClientConfig) -> Result<(), BuildError> {
    // `config_map` masks sensitive values; `get` reads them.
    if let Some(key) = config.config_map().into_keys().find(|k| {
        crate::redact::is_secret_key(k) && config.get(k).is_some_and(|v| v.trim().is_empty())
    }) {
        return Err(BuildError(format!(
            "`librdkafka_options.{key}` is empty (is its variable unset?): give the secret, \
             or remove the option"
        )));
    }
    config
        .create_native_config()
        .map(drop)
        .map_err(|e| BuildError(format!("librdkafka rejects the client settings: {e}")))
}

/// Routes librdkafka's logs and errors to `tracing`, tagged with the component id.
pub(crate) struct LoggingContext {
    pub(crate) component_id: std::sync::Arc<str>,
}

impl ClientContext for LoggingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let id = &*self.component_id;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(component_id = id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(component_id = id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(component_id = id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(component_id = id, facility, "librdkafka: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Transport errors repeat while a broker is down; librdkafka reconnects by itself.
        tracing::warn!(component_id = &*self.component_id, error = %error, "kafka client error: {reason}");
    }
}

/// `validate --check-sinks`: connects with `config` (TLS and SASL included) and reads
/// the cluster's metadata, then looks `topic` up in it. Asking for every topic, not
/// for `topic`, keeps a broker that creates topics on demand from creating it. A failure
/// carries the first reason librdkafka gave (a TLS handshake, a SASL refusal), which its
/// metadata error alone does not. Blocking: run it off the async workers.
pub(crate) fn probe(
    config: &ClientConfig,
    topic: Option<&str>,
    timeout: std::time::Duration,
) -> Result<String, String> {
    use rdkafka::producer::{BaseProducer, Producer};
    let producer: BaseProducer<ProbeContext> = config
        .create_with_context(ProbeContext::default())
        .map_err(|e| format!("cannot create a Kafka client: {e}"))?;
    let metadata = producer
        .client()
        .fetch_metadata(None, timeout)
        .map_err(|e| {
            // Errors reach the context through the client's event queue.
            producer.poll(std::time::Duration::from_millis(100));
            match producer.context().first_error() {
                Some(reason) => format!("no answer from the brokers: {e}: {reason}"),
                None => format!("no answer from the brokers: {e}"),
            }
        })?;
    let brokers = metadata.brokers().len();
    let mut said = format!("{brokers} broker(s) answered");
    if let Some(topic) = topic {
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) => said.push_str(&format!(
                ", topic `{topic}` has {} partition(s)",
                t.partitions().len()
            )),
            None => {
                return Err(format!(
                    "{said}, but topic `{topic}` does not exist (create it, or let the \
                     brokers create topics on first write)"
                ));
            }
        }
    }
    Ok(said)
}

/// Keeps the first error librdkafka reported, for [`probe`]'s message.
#[derive(Default)]
struct ProbeContext(std::sync::Mutex<Option<String>>);

impl ProbeContext {
    fn first_error(&self) -> Option<String> {
        crate::state_file::lock(&self.0).clone()
    }
}

impl ClientContext for ProbeContext {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}

    fn error(&self, error: KafkaError, reason: &str) {
        // The first reason is the cause (a TLS handshake, a SASL refusal); "all brokers
        // are down" follows from it.
        let mut last = crate::state_file::lock(&self.0);
        if last.is_none() {
            *last = Some(if reason.is_empty() {
                error.to_string()
            } else {
                reason.to_owned()
            });
        }
    }
}

impl rdkafka::producer::ProducerContext for ProbeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

#[cfg(test)]
mod security_tests {
    use super::*;

    #[test]
    fn tls_and_sasl_pick_the_protocol_and_the_settings() {
        let sasl = KafkaSasl {
            mechanism: SaslMechanism::ScramSha256,
            username: "u".into(),
            password: "pw-secret".into(),
        };
        let tls = KafkaTls {
            verify_hostname: false,
            ..KafkaTls::default()
        };
        let get = |settings: &[(&str, String)], key: &str| {
            settings
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        let both = security_settings(Some(&tls), Some(&sasl)).expect("valid");
        assert_eq!(get(&both, "security.protocol").as_deref(), Some("sasl_ssl"));
        assert_eq!(
            get(&both, "sasl.mechanism").as_deref(),
            Some("SCRAM-SHA-256")
        );
        assert_eq!(
            get(&both, "ssl.endpoint.identification.algorithm").as_deref(),
            Some("none")
        );
        let only_sasl = security_settings(None, Some(&sasl)).expect("valid");
        assert_eq!(
            get(&only_sasl, "security.protocol").as_deref(),
            Some("sasl_plaintext")
        );
        assert!(security_settings(None, None).expect("valid").is_empty());
        let half = KafkaTls {
            crt_file: Some("/etc/hostname".into()),
            ..KafkaTls::default()
        };
        let err = security_settings(Some(&half), None)
            .expect_err("half a pair")
            .0;
        assert!(
            err.contains("both `tls.crt_file` and `tls.key_file`"),
            "{err}"
        );
    }
}
