//! `postgres`: backfill, reading the events table (as the `postgres` sink writes it)
//! back into the pipeline.
//!
//! Rows newer than `backfill.max_age` are read in `(timestamp, id)` order with keyset
//! pagination, `batch_size` at a time, paced to `rate_limit` events/s (governor), up to
//! `max_events` in all. A row whose `payload` is a whole event (it has an `event_type`,
//! as the `postgres` sink writes it) is that event, with `id`, `source` and `time`
//! filled in from their columns when missing; any other row (the monitoring system's
//! shape) is the event `{id, event_type, source, message, level, tags, payload,
//! timestamp}`.
//!
//! Progress is a checkpoint in `data_dir` (the last key and the count), written
//! atomically once a batch's acknowledgement came back *delivered*: a restart resumes
//! after the last delivered row, and a batch that failed is read again after a backoff.
//! When it has caught up the source stops, or with `follow: true` polls for new rows.
//!
//! Progress (rows delivered out of rows to read) is published as the component's
//! backfill gauges ([`crate::telemetry::backfill`]): the rows to read are counted once
//! at start with the query's own `WHERE`, plus what a previous run already delivered.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use vrl::value::{ObjectMap, Value};

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SourceConfig, SourceContext,
};
use crate::event::{BatchAck, Event, EventStatus};
use crate::net::{Backoff, FailureHandling};
use crate::telemetry::ComponentState;
use crate::telemetry::backfill::BackfillProgress;
use crate::telemetry::{ErrorType, Stage};

fn default_max_age() -> Duration {
    Duration::from_secs(720 * 3600)
}
fn default_max_events() -> u64 {
    1_000_000
}
fn default_batch_size() -> u32 {
    500
}
fn default_rate_limit() -> u32 {
    1000
}
fn default_poll() -> Duration {
    Duration::from_secs(5)
}

/// `backfill:` which rows are read, and how fast.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Backfill {
    /// Read the table (default true); `false` stops the source at once.
    #[serde(default = "crate::units::yes")]
    pub(crate) enabled: bool,
    /// Only rows at most this old, counted from the first start (kept in the
    /// checkpoint), are read (default 30 days).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub(crate) max_age: Duration,
    /// Most rows read in all, across restarts (default 1000000); then the source stops.
    #[serde(default = "default_max_events")]
    pub(crate) max_events: u64,
    /// Rows per query and per batch sent downstream (default 500); also the rate
    /// limit's burst.
    #[serde(default = "default_batch_size")]
    pub(crate) batch_size: u32,
    /// Events per second.
    #[serde(default = "default_rate_limit")]
    pub(crate) rate_limit: u32,
}

/// Reads stored events back from PostgreSQL (backfill), paced and resumable.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresSourceConfig {
    /// The PostgreSQL connection string (`postgres://user:password@host:5432/db`);
    /// connects without TLS.
    pub(crate) url: String,
    /// The schema of the table (default `public`).
    #[serde(default = "crate::postgres::default_schema")]
    pub(crate) schema: String,
    /// The events table to read, as the `postgres` sink writes it (default `events`).
    #[serde(default = "crate::postgres::default_table")]
    pub(crate) table: String,
    pub(crate) backfill: Backfill,
    /// Keep polling for new rows after catching up.
    #[serde(default)]
    pub(crate) follow: bool,
    /// With `follow`, how long to wait before looking for new rows again once caught
    /// up (default 5s).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub(crate) poll_interval: Duration,
}

/// Where a backfill stands; in `data_dir/postgres-<id>.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Checkpoint {
    pub(crate) since: Option<DateTime<Utc>>,
    pub(crate) last: Option<(DateTime<Utc>, String)>,
    pub(crate) emitted: u64,
}

impl PostgresSourceConfig {
    fn table(&self) -> Result<String, BuildError> {
        crate::postgres::parse_url(&self.url, "url")?;
        if self.backfill.batch_size == 0 || self.backfill.rate_limit == 0 {
            return Err(BuildError(
                "`backfill.batch_size` and `backfill.rate_limit` must be at least 1".into(),
            ));
        }
        crate::postgres::qualified_table(&self.schema, &self.table)
    }
}

impl SourceConfig for PostgresSourceConfig {
    fn type_name(&self) -> &'static str {
        "postgres"
    }

    fn check(&self) -> Result<(), BuildError> {
        self.table().map(drop)
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let table = self.table()?;
            let checkpoint_path = cx.data_dir.join(format!("postgres-{}.json", cx.id));
            let config = self.clone();
            Ok(Box::pin(run(config, table, checkpoint_path, cx)) as ComponentTask)
        })
    }
}

fn load_checkpoint(path: &std::path::Path) -> Result<Checkpoint, ComponentError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            ComponentError::Other(format!("checkpoint {} is corrupt: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checkpoint::default()),
        Err(e) => Err(e.into()),
    }
}

/// Temp file, fsync, rename: a crash leaves the old or the new checkpoint, never half.
fn save_checkpoint(path: &std::path::Path, c: &Checkpoint) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(c).map_err(std::io::Error::other)?;
    crate::state_file::write_atomically(path, &bytes)
}

async fn run(
    config: PostgresSourceConfig,
    table: String,
    checkpoint_path: PathBuf,
    mut cx: SourceContext,
) -> Result<(), ComponentError> {
    if !config.backfill.enabled {
        cx.metrics.set_state(ComponentState::Stopped);
        return Ok(());
    }
    let mut checkpoint = load_checkpoint(&checkpoint_path)?;
    let since = *checkpoint.since.get_or_insert_with(|| {
        chrono::Duration::from_std(config.backfill.max_age)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    });
    let b = &config.backfill;
    let burst = NonZeroU32::new(b.batch_size).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::per_second(NonZeroU32::new(b.rate_limit).unwrap_or(NonZeroU32::MIN))
        .allow_burst(burst);
    let limiter = RateLimiter::direct(quota);
    let after_key = "\"timestamp\" >= $1 AND (\"timestamp\", id::text) > ($2, $3)";
    let query = format!(
        "SELECT id::text, event_type, source, \"timestamp\", payload, message, level, tags FROM {table}
         WHERE {after_key} ORDER BY \"timestamp\", id::text LIMIT $4"
    );
    let count_query = format!("SELECT COUNT(*) FROM {table} WHERE {after_key}");
    let progress = BackfillProgress::attach(&cx.metrics);
    progress.set_done(checkpoint.emitted);
    let mut counted = false;
    // Past the catch-up, rows only follow: the backfill stays complete as they arrive.
    let mut caught_up = false;
    let pg =
        crate::postgres::parse_url(&config.url, "url").map_err(|e| ComponentError::Other(e.0))?;
    let mut client: Option<tokio_postgres::Client> = None;
    let mut backoff = Backoff::new(FailureHandling {
        max_retries: u32::MAX,
        ..FailureHandling::default()
    });
    let source = cx.id;
    tracing::info!(component_id = %cx.id, since = %since, resumed_after = checkpoint.emitted, "backfill starting");

    while checkpoint.emitted < b.max_events && !cx.shutdown.is_cancelled() {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            match crate::postgres::connect(&pg, &cx.id).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    wait(&cx, &mut backoff, &format!("cannot connect: {e}")).await;
                    continue;
                }
            }
        }
        let Some(db) = client.as_ref() else { continue };
        let (last_ts, last_id) = checkpoint
            .last
            .clone()
            .unwrap_or((since - chrono::Duration::seconds(1), String::new()));
        if !counted {
            match db
                .query_one(&count_query, &[&since, &last_ts, &last_id])
                .await
                .and_then(|row| row.try_get::<_, i64>(0))
            {
                Ok(rows) => {
                    let left = u64::try_from(rows).unwrap_or(0);
                    progress.set_total(
                        checkpoint
                            .emitted
                            .saturating_add(left)
                            .min(b.max_events.max(checkpoint.emitted)),
                    );
                    counted = true;
                }
                Err(e) => {
                    wait(&cx, &mut backoff, &format!("count query failed: {e}")).await;
                    continue;
                }
            }
        }
        let left =
            i64::try_from(b.max_events.saturating_sub(checkpoint.emitted)).unwrap_or(i64::MAX);
        let limit = i64::from(b.batch_size).min(left);
        let rows = match db
            .query(&query, &[&since, &last_ts, &last_id, &limit])
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                wait(&cx, &mut backoff, &format!("query failed: {e}")).await;
                continue;
            }
        };
        if rows.is_empty() {
            progress.finish(checkpoint.emitted);
            caught_up = true;
            if !config.follow {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(config.poll_interval) => continue,
                () = cx.shutdown.cancelled() => break,
            }
        }
        let mut values = Vec::with_capacity(rows.len());
        let mut key = None;
        for row in &rows {
            // Columns of a user table may be NULL or of another type: never panic.
            let (Ok(id), Ok(ts)) = (
                row.try_get::<_, String>(0),
                row.try_get::<_, DateTime<Utc>>(3),
            ) else {
                cx.metrics.add_errors(1, ErrorType::Parse, Stage::Receiving);
                tracing::warn!(component_id = %cx.id, "row without an id or a timestamp skipped");
                continue;
            };
            let payload: Option<serde_json::Value> = row.try_get(4).ok().flatten();
            let mut v = match payload.map(Value::from) {
                // A whole event, as the `postgres` sink writes one.
                Some(Value::Object(o)) if o.contains_key("event_type") => Value::Object(o),
                // A row in the monitoring system's shape: the event is the row.
                payload => monitoring_shape(row, payload, ts),
            };
            if let Value::Object(m) = &mut v {
                m.entry("id".into())
                    .or_insert_with(|| Value::from(id.as_str()));
                if let Ok(Some(t)) = row.try_get::<_, Option<String>>(1) {
                    m.entry("event_type".into())
                        .or_insert_with(|| Value::from(t));
                }
                if let Ok(Some(src)) = row.try_get::<_, Option<String>>(2) {
                    m.entry("source".into()).or_insert_with(|| Value::from(src));
                }
                if !m.contains_key("timestamp") {
                    m.entry("time".into()).or_insert(Value::Timestamp(ts));
                }
            }
            values.push(v);
            key = Some((ts, id));
        }
        let n = values.len();
        if let Some(n32) = NonZeroU32::new(n as u32) {
            let _ = limiter.until_n_ready(n32).await;
        }
        let (ack, done) = BatchAck::with_receiver(n, Some(Arc::clone(cx.telemetry.latency())));
        let now = Utc::now();
        let batch: Vec<Event> = values
            .into_iter()
            .map(|v| Event::new(v, source, now).with_ack(ack.event_ack()))
            .collect();
        drop(ack);
        cx.metrics.add_received(n);
        cx.out.send(batch).await;
        match done.wait().await {
            EventStatus::Delivered => {
                checkpoint.last = key;
                checkpoint.emitted += n as u64;
                save_checkpoint(&checkpoint_path, &checkpoint)?;
                if caught_up {
                    progress.finish(checkpoint.emitted);
                } else {
                    progress.set_done(checkpoint.emitted);
                }
                backoff = Backoff::new(FailureHandling {
                    max_retries: u32::MAX,
                    ..FailureHandling::default()
                });
                tracing::debug!(component_id = %cx.id, emitted = checkpoint.emitted, "backfill progress");
            }
            status => {
                wait(
                    &cx,
                    &mut backoff,
                    &format!("batch not delivered ({status:?}); reading it again"),
                )
                .await
            }
        }
    }
    if checkpoint.emitted >= b.max_events {
        progress.finish(checkpoint.emitted);
    }
    tracing::info!(component_id = %cx.id, emitted = checkpoint.emitted, "backfill finished");
    cx.metrics.set_state(ComponentState::Stopped);
    Ok(())
}

async fn wait(cx: &SourceContext, backoff: &mut Backoff, reason: &str) {
    let delay = backoff.next(None).unwrap_or(Duration::from_secs(60));
    tracing::warn!(component_id = %cx.id, error = %reason, wait = ?delay, "backfill retrying");
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = cx.shutdown.cancelled() => {}
    }
}

/// A row whose payload is only the event's data (the monitoring system writes such rows,
/// and the `postgres` sink for events in that shape): the event is the row's fields.
fn monitoring_shape(row: &tokio_postgres::Row, payload: Option<Value>, ts: DateTime<Utc>) -> Value {
    let mut m = ObjectMap::new();
    for (i, name) in [(5, "message"), (6, "level")] {
        if let Ok(Some(text)) = row.try_get::<_, Option<String>>(i) {
            m.insert(name.into(), Value::from(text));
        }
    }
    if let Ok(Some(tags)) = row.try_get::<_, Option<serde_json::Value>>(7) {
        m.insert("tags".into(), Value::from(tags));
    }
    m.insert("payload".into(), payload.unwrap_or(Value::Null));
    m.insert("timestamp".into(), Value::Timestamp(ts));
    Value::Object(m)
}
