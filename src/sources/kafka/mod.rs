//! `kafka`: reads topics as a member of a consumer group, with at-least-once delivery.
//!
//! A message's offset is stored only once every event made from it (and every earlier
//! message of its partition) was settled delivered downstream; librdkafka commits the
//! stored offsets every `commit_interval`, and the source commits synchronously when a
//! partition is revoked and at shutdown, after waiting up to `drain_timeout` for the
//! events in flight. A crash therefore re-reads at most what was in flight, and a clean
//! stop re-reads nothing. See [`offsets`] for the rules and [`consumer`] for who does what.
//!
//! Each event carries `%kafka` (topic, partition, offset, key, headers, timestamp).

mod consumer;
pub(crate) mod offsets;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SourceConfig, SourceContext,
};
use crate::kafka::{LoggingContext, check_config, client_config};
use crate::telemetry::ComponentState;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KafkaDecoding {
    /// One JSON document per message (an invalid one is kept as `message`, and counted).
    #[default]
    Json,
    /// One JSON document per line of each message.
    Ndjson,
    /// The message as text, in `message`.
    Text,
}

/// Where a group with no committed offset starts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AutoOffsetReset {
    Earliest,
    #[default]
    Latest,
}

/// Consumes Kafka topics as a consumer group member, committing offsets only up to what was delivered.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KafkaSourceConfig {
    /// `host:port[,host:port…]`.
    pub(crate) bootstrap_servers: String,
    /// Topic names; an entry starting with `^` is a regular expression.
    pub(crate) topics: Vec<String>,
    /// The consumer group: its members share the partitions, and its committed offsets
    /// are where reading resumes.
    pub(crate) group_id: String,
    #[serde(default)]
    pub(crate) auto_offset_reset: AutoOffsetReset,
    /// How a message becomes events: `json` (default), `ndjson` or `text`.
    #[serde(default)]
    pub(crate) decoding: KafkaDecoding,
    /// How often stored offsets are committed.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) commit_interval: Duration,
    /// How long a revocation or a shutdown waits for events in flight.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) drain_timeout: Duration,
    /// How long before a partition whose events errored downstream is read again.
    #[serde(default = "default_retry_backoff", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) retry_backoff: Duration,
    /// librdkafka's `session.timeout.ms` (default 10s): a member not heard from for this
    /// long leaves the group and its partitions are reassigned.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) session_timeout: Duration,
    /// Most messages per batch sent downstream.
    #[serde(default = "default_batch_size")]
    pub(crate) batch_size: usize,
    /// TLS towards the brokers (`security.protocol` ssl, or sasl_ssl with `sasl`).
    pub(crate) tls: Option<crate::kafka::KafkaTls>,
    /// SASL authentication (`security.protocol` sasl_plaintext, or sasl_ssl with `tls`).
    pub(crate) sasl: Option<crate::kafka::KafkaSasl>,
    /// Passed to librdkafka as they are, after sluice's own settings (so they win).
    #[serde(default)]
    pub(crate) librdkafka_options: BTreeMap<String, String>,
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retry_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_batch_size() -> usize {
    1000
}

impl KafkaSourceConfig {
    fn client_config(&self) -> Result<rdkafka::ClientConfig, BuildError> {
        let reset = match self.auto_offset_reset {
            AutoOffsetReset::Earliest => "earliest",
            AutoOffsetReset::Latest => "latest",
        };
        let mut ours = vec![
            ("group.id", self.group_id.clone()),
            ("auto.offset.reset", reset.into()),
            ("enable.auto.commit", "true".into()),
            ("enable.auto.offset.store", "false".into()),
            (
                "auto.commit.interval.ms",
                self.commit_interval.as_millis().to_string(),
            ),
            (
                "session.timeout.ms",
                self.session_timeout.as_millis().to_string(),
            ),
            ("enable.partition.eof", "false".into()),
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
}

impl SourceConfig for KafkaSourceConfig {
    fn type_name(&self) -> &'static str {
        "kafka"
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(BuildError("`bootstrap_servers` is empty".into()));
        }
        if self.group_id.trim().is_empty() {
            return Err(BuildError("`group_id` is empty".into()));
        }
        if self.topics.is_empty() {
            return Err(BuildError("`topics` is empty".into()));
        }
        for topic in &self.topics {
            if topic.starts_with('^') {
                regex::Regex::new(topic).map_err(|e| {
                    BuildError(format!(
                        "topic pattern `{topic}` is not a regular expression: {}",
                        crate::text::regex_error(&e)
                    ))
                })?;
            } else if topic.is_empty() {
                return Err(BuildError("a topic name is empty".into()));
            }
        }
        if self.batch_size == 0 {
            return Err(BuildError("`batch_size` must be at least 1".into()));
        }
        if self.commit_interval.is_zero() {
            return Err(BuildError("`commit_interval` must be more than 0".into()));
        }
        check_config(&self.client_config()?)
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check()?;
            let shared = Arc::new(consumer::Shared::new(
                cx.id,
                Arc::clone(&cx.metrics),
                self.drain_timeout,
                self.retry_backoff,
            ));
            let context = consumer::SourceContext {
                shared: Arc::clone(&shared),
                logs: LoggingContext {
                    component_id: Arc::from(cx.id.as_str()),
                    bearer: crate::kafka::OAuthBearer::of(
                        self.sasl.as_ref(),
                        Arc::clone(&cx.clock),
                    )?,
                },
            };
            let consumer: BaseConsumer<consumer::SourceContext> = self
                .client_config()?
                .create_with_context(context)
                .map_err(|e| BuildError(format!("kafka consumer: {e}")))?;
            let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&topics)
                .map_err(|e| BuildError(format!("subscribing to {topics:?}: {e}")))?;
            let settings = consumer::Settings {
                decoding: self.decoding,
                batch_size: self.batch_size,
                latency: Arc::clone(cx.telemetry.latency()),
                runtime: tokio::runtime::Handle::current(),
            };
            Ok(Box::pin(run(Arc::new(consumer), shared, settings, cx)) as ComponentTask)
        })
    }
}

/// Forwards the consumer thread's batches downstream until it stops.
async fn run(
    consumer: Arc<BaseConsumer<consumer::SourceContext>>,
    shared: Arc<consumer::Shared>,
    settings: consumer::Settings,
    mut cx: SourceContext,
) -> Result<(), ComponentError> {
    // Two batches in hand at most: more waiting here would only be read and not yet
    // acknowledged, and grows what a crash makes us read again.
    let (tx, mut rx) = mpsc::channel(2);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread_shared = Arc::clone(&shared);
    std::thread::Builder::new()
        .name(format!("kafka-{}", cx.id))
        .spawn(move || {
            consumer::run(consumer, thread_shared, tx, settings);
            let _ = done_tx.send(());
        })
        .map_err(ComponentError::Io)?;
    cx.metrics.set_state(ComponentState::Running);
    let stop = cx.shutdown.clone();
    let stopper = Arc::clone(&shared);
    tokio::spawn(async move {
        stop.cancelled().await;
        stopper.stop.store(true, Ordering::Release);
    });
    while let Some(batch) = rx.recv().await {
        cx.out.send(batch).await;
    }
    // The thread has stopped sending; it now waits for the batches sent to settle and
    // commits. Our output must stay open until then so those batches flow.
    let _ = done_rx.await;
    cx.metrics.set_state(ComponentState::Stopped);
    Ok(())
}
