//! `kafka`: produces each event as one message, settled by its delivery report.
//!
//! An event counts as delivered only when librdkafka's delivery report says the broker
//! has it (with `acks: all` and the idempotent producer by default, so retries inside
//! librdkafka neither lose nor duplicate). A full local queue is backpressure: the sink
//! waits for reports before producing more, and stops reading its input meanwhile. A
//! message librdkafka gives up on (after `message_timeout`), or cannot take at all (too
//! large, no such topic), goes to the `dead_letter` output.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SinkConfig, SinkContext,
};
use crate::delivery::{DEAD_LETTER, DeadLetter, Failure};
use crate::event::{Event, EventStatus};
use crate::kafka::{LoggingContext, check_config, client_config};
use crate::telemetry::ComponentState;
use crate::telemetry::{ErrorType, Stage};
use crate::template::Template;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KafkaEncoding {
    /// The event as JSON.
    #[default]
    Json,
    /// The `message` field as text (the event's JSON when it has none).
    Text,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Produces events to Kafka topics, each delivered on the broker's acknowledgement.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KafkaSinkConfig {
    /// `host:port[,host:port…]`.
    pub(crate) bootstrap_servers: String,
    /// The topic, templated per event (`alerts-{{ service }}`).
    pub(crate) topic: String,
    /// The field whose value is the message key (messages with one key keep their order).
    #[serde(default)]
    pub(crate) key_field: Option<String>,
    /// Message headers: name → template (`{{ labels.tenant }}`). A header whose fields are
    /// missing from an event is left out.
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    /// The message value: `json` (default) or `text`.
    #[serde(default)]
    pub(crate) encoding: KafkaEncoding,
    /// librdkafka's `compression.type`: `none` (default), `gzip`, `snappy`, `lz4` or
    /// `zstd`.
    #[serde(default)]
    pub(crate) compression: Compression,
    /// `all`, `1` or `0`.
    #[serde(default = "default_acks")]
    pub(crate) acks: String,
    /// librdkafka's `enable.idempotence` (default true): its retries do not duplicate
    /// messages. Needs `acks: all`.
    #[serde(default = "crate::units::yes")]
    pub(crate) idempotence: bool,
    /// How long librdkafka keeps retrying a message before it is dead-lettered.
    #[serde(default = "default_message_timeout", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) message_timeout: Duration,
    /// Messages produced and not yet reported, at most.
    #[serde(default = "default_max_in_flight")]
    pub(crate) max_in_flight: usize,
    /// TLS towards the brokers (`security.protocol` ssl, or sasl_ssl with `sasl`).
    pub(crate) tls: Option<crate::kafka::KafkaTls>,
    /// SASL authentication (`security.protocol` sasl_plaintext, or sasl_ssl with `tls`).
    pub(crate) sasl: Option<crate::kafka::KafkaSasl>,
    /// Passed to librdkafka as they are, after sluice's own settings (so they win).
    #[serde(default)]
    pub(crate) librdkafka_options: BTreeMap<String, String>,
}

fn default_acks() -> String {
    "all".into()
}
fn default_message_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_max_in_flight() -> usize {
    10_000
}

impl KafkaSinkConfig {
    fn client_config(&self) -> Result<rdkafka::ClientConfig, BuildError> {
        let compression = match self.compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        };
        let mut ours = vec![
            ("acks", self.acks.clone()),
            ("enable.idempotence", self.idempotence.to_string()),
            ("compression.type", compression.into()),
            (
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            ),
        ];
        ours.extend(crate::kafka::security_settings(
            self.tls.as_ref(),
            self.sasl.as_ref(),
        )?);
        Ok(client_config(
            &self.bootstrap_servers,
            &ours,
            &self.librdkafka_options,
        ))
    }

    fn parts(&self) -> Result<Parts, BuildError> {
        let topic =
            Template::parse(&self.topic).map_err(|e| BuildError(format!("`topic`: {e}")))?;
        if topic.is_static() {
            topic_name(self.topic.clone(), "`topic`: ", false).map_err(BuildError)?;
        }
        let key = self
            .key_field
            .as_deref()
            .map(|f| {
                vrl::path::parse_value_path(f)
                    .map_err(|e| BuildError(format!("`key_field` `{f}` is not a field path: {e}")))
            })
            .transpose()?;
        let headers = self
            .headers
            .iter()
            .map(|(name, t)| {
                Template::parse(t)
                    .map(|t| (name.clone(), t))
                    .map_err(|e| BuildError(format!("`headers.{name}`: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Parts {
            topic,
            key,
            headers,
            encoding: self.encoding,
        })
    }
}

/// What an event is turned into, parsed once.
struct Parts {
    topic: Template,
    key: Option<OwnedValuePath>,
    headers: Vec<(String, Template)>,
    encoding: KafkaEncoding,
}

impl SinkConfig for KafkaSinkConfig {
    fn type_name(&self) -> &'static str {
        "kafka"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(BuildError("`bootstrap_servers` is empty".into()));
        }
        if !matches!(self.acks.as_str(), "all" | "-1" | "1" | "0") {
            return Err(BuildError(format!(
                "`acks` is `{}`; expected all, 1 or 0",
                self.acks
            )));
        }
        if self.idempotence && !matches!(self.acks.as_str(), "all" | "-1") {
            return Err(BuildError(
                "the idempotent producer needs `acks: all` (or set `idempotence: false`)".into(),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(BuildError("`max_in_flight` must be at least 1".into()));
        }
        self.parts()?;
        check_config(&self.client_config()?)
    }

    fn healthcheck(
        &self,
        timeout: std::time::Duration,
    ) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(async move {
            let config = self.client_config().map_err(|e| e.0)?;
            // A templated topic is only known per event.
            let topic = (!self.topic.contains("{{")).then(|| self.topic.clone());
            // Within the check's own time, so the broker's last error is still reported.
            let timeout = timeout.mul_f64(0.75);
            let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::TokioClock);
            let bearer =
                crate::kafka::OAuthBearer::of(self.sasl.as_ref(), clock).map_err(|e| e.0)?;
            tokio::task::spawn_blocking(move || {
                crate::kafka::probe(&config, topic.as_deref(), timeout, bearer)
            })
            .await
            .map_err(|e| format!("the check did not finish: {e}"))?
        }))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check()?;
            let parts = self.parts()?;
            let producer: FutureProducer<LoggingContext> = self
                .client_config()?
                .create_with_context(LoggingContext {
                    component_id: Arc::clone(&cx.id),
                    bearer: crate::kafka::OAuthBearer::of(
                        self.sasl.as_ref(),
                        Arc::clone(&cx.clock),
                    )?,
                })
                .map_err(|e| BuildError(format!("kafka producer: {e}")))?;
            let max_in_flight = self.max_in_flight;
            Ok(Box::pin(run(producer, parts, max_in_flight, cx)) as ComponentTask)
        })
    }
}

/// What became of one produced event.
enum Outcome {
    /// With the bytes of the record (key and payload).
    Delivered(usize),
    Failed(String),
    /// The producer went away before reporting.
    Lost,
}

type Report = (Outcome, Event);

async fn run(
    producer: FutureProducer<LoggingContext>,
    parts: Parts,
    max_in_flight: usize,
    mut cx: SinkContext,
) -> Result<(), ComponentError> {
    let dead_letter = DeadLetter::new(
        Arc::clone(&cx.id),
        cx.outputs.first().cloned(),
        Arc::clone(&cx.metrics),
    );
    let mut reports: FuturesUnordered<BoxFuture<'static, Report>> = FuturesUnordered::new();
    let mut payload = Vec::with_capacity(1024);
    cx.metrics.set_state(ComponentState::Running);
    loop {
        tokio::select! {
            biased;
            Some(report) = reports.next(), if !reports.is_empty() => {
                settle(report, &cx, &dead_letter).await;
            }
            batch = cx.input.recv(), if reports.len() < max_in_flight => {
                let Some(batch) = batch else { break };
                cx.metrics.add_received(batch.len());
                for event in batch {
                    produce(&producer, &parts, event, &mut payload, &mut reports, &cx, &dead_letter).await;
                }
            }
        }
    }
    while let Some(report) = reports.next().await {
        settle(report, &cx, &dead_letter).await;
    }
    cx.metrics.set_state(ComponentState::Stopped);
    Ok(())
}

/// Hands one event to librdkafka, waiting for reports while its queue is full.
async fn produce(
    producer: &FutureProducer<LoggingContext>,
    parts: &Parts,
    event: Event,
    payload: &mut Vec<u8>,
    reports: &mut FuturesUnordered<BoxFuture<'static, Report>>,
    cx: &SinkContext,
    dead_letter: &DeadLetter,
) {
    let topic = match parts
        .topic
        .render(&event)
        .and_then(|t| topic_name(t, "", !parts.topic.is_static()))
    {
        Ok(t) => t,
        Err(e) => return reject(event, e, dead_letter).await,
    };
    payload.clear();
    encode(parts.encoding, &event, payload);
    let key = parts
        .key
        .as_ref()
        .and_then(|path| match event.value().get(path) {
            None | Some(Value::Null) => None,
            Some(Value::Bytes(b)) => Some(b.to_vec()),
            Some(other) => Some(other.to_string_lossy().into_owned().into_bytes()),
        });
    let mut headers = OwnedHeaders::new_with_capacity(parts.headers.len());
    for (name, template) in &parts.headers {
        if let Ok(value) = template.render(&event) {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
    }
    loop {
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic)
            .payload(payload.as_slice())
            .headers(headers.clone());
        if let Some(key) = &key {
            record = record.key(key.as_slice());
        }
        match producer.send_result(record) {
            Ok(delivery) => {
                let bytes = payload.len() + key.as_ref().map_or(0, Vec::len);
                reports.push(Box::pin(report(delivery, event, bytes)));
                return;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // Backpressure: wait for a report to free a slot, or briefly for
                // librdkafka to drain its queue when none of ours is pending.
                match reports.next().await {
                    Some(report) => settle(report, cx, dead_letter).await,
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            Err((e, _)) => return reject(event, e.to_string(), dead_letter).await,
        }
    }
}

/// Kafka's rule for topic names (1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`), and
/// when `templated`, no `__` prefix: those are the broker's internal topics
/// (`__consumer_offsets`), which an event value must not be able to write into. Checked before producing so the
/// event is rejected with a reason instead of after a round trip to the broker.
fn topic_name(topic: String, context: &str, templated: bool) -> Result<String, String> {
    let legal = topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if topic.is_empty() || topic.len() > 249 || !legal || topic == "." || topic == ".." {
        let shown: String = topic.chars().take(100).collect();
        return Err(format!(
            "{context}`{}` is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, `.`, `_`, `-`)",
            shown.escape_debug()
        ));
    }
    if templated && topic.starts_with("__") {
        return Err(format!(
            "{context}`{topic}` is an internal Kafka topic (`__` prefix)"
        ));
    }
    Ok(topic)
}

async fn report(delivery: DeliveryFuture, event: Event, bytes: usize) -> Report {
    let outcome = match delivery.await {
        Ok(Ok(_)) => Outcome::Delivered(bytes),
        Ok(Err((e, _))) => Outcome::Failed(e.to_string()),
        Err(_) => Outcome::Lost,
    };
    (outcome, event)
}

async fn settle((outcome, event): Report, cx: &SinkContext, dead_letter: &DeadLetter) {
    match outcome {
        Outcome::Delivered(bytes) => {
            cx.metrics.add_sent(1);
            cx.metrics.add_sent_bytes(bytes);
            // Kafka reports deliveries one by one: so is the timing.
            cx.metrics.record_leaving(std::slice::from_ref(&event));
            event.settle(EventStatus::Delivered);
        }
        Outcome::Failed(error) => reject(event, error, dead_letter).await,
        Outcome::Lost => {
            cx.metrics
                .add_errors(1, ErrorType::Delivery, Stage::Sending);
            event.settle(EventStatus::Errored);
        }
    }
}

async fn reject(event: Event, error: String, dead_letter: &DeadLetter) {
    let failure = Failure {
        error,
        status: None,
        attempts: 1,
        body: None,
    };
    dead_letter.send(vec![event], &failure).await;
}

fn encode(encoding: KafkaEncoding, event: &Event, out: &mut Vec<u8>) {
    if encoding == KafkaEncoding::Text {
        crate::event::message_or_json(event, out);
    } else if let Err(e) = event.to_json_line(out) {
        tracing::error!(error = %e, "event could not be serialized");
    }
}

#[cfg(test)]
mod tests {
    use super::topic_name;

    #[test]
    fn rendered_topics_must_be_legal_and_not_internal() {
        assert_eq!(
            topic_name("alerts-db.v1_x".into(), "", true),
            Ok("alerts-db.v1_x".into())
        );
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "new\nline",
            "__consumer_offsets",
        ] {
            assert!(topic_name(bad.into(), "", true).is_err(), "{bad:?}");
        }
        assert!(topic_name("x".repeat(250), "", true).is_err());
        assert!(topic_name("x".repeat(249), "", true).is_ok());
        assert!(
            topic_name("__ops".into(), "", false).is_ok(),
            "an operator may name an internal topic statically"
        );
    }
}
