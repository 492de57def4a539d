//! What the `kafka` source and sink share: client settings and librdkafka's own logs.
//!
//! Both components hand `librdkafka_options` to librdkafka unchanged, after the options
//! sluice sets itself, so an operator can override anything (and is told at `validate`
//! time when a key or value is one librdkafka does not know).

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::error::BuildError;

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
