//! `postgres`: events as rows, the monitoring system's events store.
//!
//! Each batch is written in one statement: the rows go to the server as one JSONB
//! array and `jsonb_populate_recordset(NULL::<schema>.<table>, $1)` converts every field
//! with the table's own column types, so user tables with other columns work without
//! declaring types here. `ON CONFLICT DO NOTHING` makes redelivery idempotent: `id` is
//! the event's `id` when it is a UUID, otherwise a UUID derived from the event's
//! content, the same on every redelivery.
//!
//! When a batch violates a constraint, its rows are written one by one: the bad ones go
//! to `<id>.dead_letter` with the database's message, the rest commit. Connection
//! failures (the server restarting, a backend killed) are retried with backoff on a
//! fresh pooled connection; nothing is settled before its rows are committed.
//! `retention_days` deletes older rows in batches of 1,000 at start and every hour.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use tokio_postgres::NoTls;
use tokio_postgres::types::Json as PgJson;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SinkConfig, SinkContext, delivered,
};
use crate::delivery::{DEAD_LETTER, DeadLetter, Failure};
use crate::event::Event;
use crate::net::{Backoff, FailureHandling};
use crate::postgres::{ident, qualified_table};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresConfig {
    /// `postgres://user@host:port/db` (or a key=value connection string).
    pub(crate) url: String,
    #[serde(default = "crate::postgres::default_schema")]
    pub(crate) schema: String,
    #[serde(default = "crate::postgres::default_table")]
    pub(crate) table: String,
    /// Create the events table (and schema) when missing.
    #[serde(default = "crate::units::yes")]
    pub(crate) create_table: bool,
    /// `column: field.path` (`.` for the whole event); the default maps the
    /// normalized schema onto the events table.
    pub(crate) columns: Option<IndexMap<String, String>>,
    pub(crate) retention_days: Option<u32>,
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
}

enum Source {
    Whole,
    Field(OwnedValuePath),
}

/// How each column is filled.
enum Column {
    Mapped(String, Source),
    /// The default mapping of the normalized schema.
    Default(&'static str),
}

impl Column {
    fn name(&self) -> &str {
        match self {
            Self::Mapped(n, _) => n,
            Self::Default(n) => n,
        }
    }
}

const DEFAULT_COLUMNS: [&str; 8] = [
    "id",
    "event_type",
    "source",
    "message",
    "level",
    "tags",
    "payload",
    "timestamp",
];

impl PostgresConfig {
    fn plan(&self) -> Result<Plan, BuildError> {
        crate::postgres::parse_url(&self.url, "url")?;
        self.failure_handling.check().map_err(BuildError)?;
        let table = qualified_table(&self.schema, &self.table)?;
        let columns: Vec<Column> = match &self.columns {
            None => DEFAULT_COLUMNS.iter().map(|c| Column::Default(c)).collect(),
            Some(map) => map
                .iter()
                .map(|(col, field)| {
                    ident(col)?;
                    let source = if field == "." {
                        Source::Whole
                    } else {
                        Source::Field(
                            vrl::path::parse_value_path(field)
                                .map_err(|e| BuildError(format!("`columns.{col}`: {e}")))?,
                        )
                    };
                    Ok(Column::Mapped(col.clone(), source))
                })
                .collect::<Result<_, BuildError>>()?,
        };
        if columns.is_empty() {
            return Err(BuildError("`columns` is empty".into()));
        }
        let list = columns
            .iter()
            .map(|c| format!("\"{}\"", c.name()))
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!(
            "INSERT INTO {table} ({list}) SELECT {list} FROM jsonb_populate_recordset(NULL::{table}, $1) ON CONFLICT DO NOTHING"
        );
        let timestamp_column = match &self.columns {
            None => Some("timestamp".to_owned()),
            Some(map) => map
                .contains_key("timestamp")
                .then(|| "timestamp".to_owned()),
        };
        if self.retention_days.is_some() && timestamp_column.is_none() {
            return Err(BuildError(
                "`retention_days` needs a `timestamp` column".into(),
            ));
        }
        Ok(Plan {
            table,
            schema: ident(&self.schema)?,
            columns,
            insert,
            timestamp_column,
        })
    }
}

struct Plan {
    table: String,
    schema: String,
    columns: Vec<Column>,
    insert: String,
    timestamp_column: Option<String>,
}

impl Plan {
    fn row(&self, event: &Event) -> Json {
        let whole = serde_json::to_value(&event.value).unwrap_or(Json::Null);
        let mut row = Map::new();
        for column in &self.columns {
            let value = match column {
                Column::Mapped(_, Source::Whole) => whole.clone(),
                Column::Mapped(_, Source::Field(p)) => event.value.get(p).map_or(Json::Null, |v| {
                    serde_json::to_value(v).unwrap_or(Json::Null)
                }),
                Column::Default(name) => default_column(name, event, &whole),
            };
            row.insert(column.name().to_owned(), value);
        }
        Json::Object(row)
    }
}

fn text(event: &Event, fields: &[&str]) -> Option<String> {
    fields.iter().find_map(|f| {
        event
            .get(f)
            .filter(|v| !matches!(v, Value::Null))
            .map(|v| v.to_string_lossy().into_owned())
    })
}

/// An event in the monitoring system's own shape (it has a `payload`) keeps its payload
/// as it is; any other event is its own payload, with its `event_type` (as the column
/// has it) so the `postgres` source reads it back whole.
fn payload(event: &Event, whole: &Json) -> Json {
    if let Some(p) = event.get("payload") {
        return serde_json::to_value(p).unwrap_or(Json::Null);
    }
    let mut whole = whole.clone();
    if let Json::Object(o) = &mut whole {
        o.entry("event_type").or_insert_with(|| json!("log"));
    }
    whole
}

/// When the event happened: its `timestamp` (the monitoring system's field) or `time`
/// (the normalized schema's), as a timestamp, text (PostgreSQL parses it; text it
/// cannot parse dead-letters the event) or Unix seconds or milliseconds; else when
/// sluice received it.
fn event_time(event: &Event) -> Json {
    let time = |v: &Value| match v {
        Value::Timestamp(t) => Some(json!(t.to_rfc3339())),
        Value::Integer(n) if n.unsigned_abs() < 100_000_000_000 => {
            chrono::DateTime::from_timestamp(*n, 0).map(|t| json!(t.to_rfc3339()))
        }
        Value::Integer(n) => {
            chrono::DateTime::from_timestamp_millis(*n).map(|t| json!(t.to_rfc3339()))
        }
        // Text (VRL has two kinds of it).
        other => other.to_str_lossy().map(|t| json!(t)),
    };
    ["timestamp", "time"]
        .iter()
        .find_map(|f| event.get(f).and_then(time))
        .unwrap_or_else(|| json!(event.meta.received_at.to_rfc3339()))
}

fn default_column(name: &str, event: &Event, whole: &Json) -> Json {
    match name {
        "id" => {
            let id = text(event, &["id"])
                .and_then(|s| uuid::Uuid::parse_str(&s).ok())
                .unwrap_or_else(|| {
                    // Stable across redeliveries of the same event.
                    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, whole.to_string().as_bytes())
                });
            json!(id.to_string())
        }
        "event_type" => json!(text(event, &["event_type"]).unwrap_or_else(|| "log".into())),
        "source" => {
            json!(text(event, &["source"]).unwrap_or_else(|| event.meta.source_id.to_string()))
        }
        "message" => text(event, &["summary", "message"]).map_or(Json::Null, Json::from),
        "level" => text(event, &["severity", "level"]).map_or(Json::Null, Json::from),
        "tags" => match event.get("tags").or_else(|| event.get("labels")) {
            Some(v @ Value::Object(_)) => serde_json::to_value(v).unwrap_or_else(|_| json!({})),
            _ => json!({}),
        },
        "payload" => payload(event, whole),
        "timestamp" => event_time(event),
        _ => Json::Null,
    }
}

impl SinkConfig for PostgresConfig {
    fn type_name(&self) -> &'static str {
        "postgres"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn check(&self) -> Result<(), BuildError> {
        self.plan().map(drop)
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let plan = self.plan()?;
            let mut pg = crate::postgres::parse_url(&self.url, "url")?;
            pg.application_name(format!("sluice:{}", cx.id));
            let manager = Manager::from_config(
                pg,
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Verified,
                },
            );
            let pool = Pool::builder(manager)
                .max_size(2)
                .build()
                .map_err(|e| BuildError(format!("cannot create the connection pool: {e}")))?;
            let writer = Writer {
                pool,
                plan,
                create_table: self.create_table,
                retention: self.retention_days,
                failure: self.failure_handling,
            };
            Ok(Box::pin(run(writer, cx)) as ComponentTask)
        })
    }
}

struct Writer {
    pool: Pool,
    plan: Plan,
    create_table: bool,
    retention: Option<u32>,
    failure: FailureHandling,
}

/// Why a write did not complete.
enum WriteError {
    /// Connection trouble and the like: retry the batch.
    Retry(String),
    /// The data's fault (a constraint, a bad value): isolate the bad rows.
    Integrity,
}

/// Transient trouble is retried: no database error at all (the connection broke), or
/// SQLSTATE classes 08 (connection), 40 (rollback: serialization, deadlock), 53
/// (insufficient resources), 57 (operator intervention: shutdown, terminated backend)
/// and 58 (system error). Anything else is the data's fault (a constraint, a value of
/// the wrong type, an unknown column) and retrying would only stall the pipeline.
fn classify(e: &tokio_postgres::Error) -> WriteError {
    match e.as_db_error() {
        Some(db)
            if ["08", "40", "53", "57", "58"]
                .iter()
                .any(|c| db.code().code().starts_with(c)) =>
        {
            WriteError::Retry(format!("{}: {}", db.code().code(), db.message()))
        }
        Some(_) => WriteError::Integrity,
        None => WriteError::Retry(crate::net::error_chain(e)),
    }
}

async fn run(w: Writer, mut cx: SinkContext) -> Result<(), ComponentError> {
    let dead_letter = DeadLetter::new(
        Arc::clone(&cx.id),
        cx.outputs.first().cloned(),
        Arc::clone(&cx.metrics),
    );
    let stop = cx.input.stop_token();
    let mut prepared = false;
    let mut last_retention: Option<std::time::Instant> = None;
    while let Some(batch) = cx.input.recv().await {
        cx.metrics.add_received(batch.len());
        let rows: Vec<Json> = batch.iter().map(|e| w.plan.row(e)).collect();
        let mut backoff = Backoff::new(w.failure);
        let outcome = loop {
            let attempt = async {
                if !prepared {
                    w.prepare().await?;
                    prepared = true;
                }
                w.insert(&rows).await
            };
            match attempt.await {
                Ok(()) => break Ok(()),
                Err(WriteError::Integrity) => break Err(()),
                Err(WriteError::Retry(reason)) => {
                    let Some(wait) = backoff.next(None) else {
                        break Err(());
                    };
                    tracing::warn!(component_id = %cx.id, error = %reason, wait = ?wait, "write failed; retrying");
                    tokio::select! {
                        () = cx.clock.sleep(wait) => {}
                        () = stop.cancelled() => {
                            // Replaced by a reload: the batch goes to the replacement.
                            cx.input.hand_back(batch);
                            return Ok(());
                        }
                    }
                }
            }
        };
        match outcome {
            Ok(()) => delivered(&cx.metrics, batch),
            Err(()) => {
                if let Some(rest) = w.row_by_row(batch, rows, &dead_letter, &cx).await {
                    // Replaced meanwhile: the rows not written yet go to the replacement.
                    cx.input.hand_back(rest);
                    return Ok(());
                }
            }
        }
        if w.retention.is_some()
            && last_retention.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600))
        {
            w.apply_retention(&cx.id).await;
            last_retention = Some(std::time::Instant::now());
        }
    }
    Ok(())
}

impl Writer {
    async fn client(&self) -> Result<deadpool_postgres::Object, WriteError> {
        self.pool
            .get()
            .await
            .map_err(|e| WriteError::Retry(format!("no connection: {e}")))
    }

    async fn prepare(&self) -> Result<(), WriteError> {
        if !self.create_table {
            return Ok(());
        }
        let client = self.client().await?;
        let t = &self.plan.table;
        let ddl = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {t} (
               id UUID PRIMARY KEY,
               event_type TEXT NOT NULL CHECK (event_type IN ('log','metric','trace','alert')),
               source TEXT NOT NULL,
               message TEXT,
               level TEXT,
               tags JSONB NOT NULL DEFAULT '{{}}',
               payload JSONB NOT NULL DEFAULT '{{}}',
               timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(),
               created_at TIMESTAMPTZ NOT NULL DEFAULT NOW());
             CREATE INDEX IF NOT EXISTS {idx1} ON {t} (event_type, timestamp);
             CREATE INDEX IF NOT EXISTS {idx2} ON {t} (source, timestamp);",
            schema = self.plan.schema,
            idx1 = crate::postgres::index_name(t, "type_ts"),
            idx2 = crate::postgres::index_name(t, "source_ts"),
        );
        client
            .batch_execute(&crate::postgres::serialized_ddl(&self.plan.schema, &ddl))
            .await
            .map_err(|e| classify(&e))
    }

    async fn insert(&self, rows: &[Json]) -> Result<(), WriteError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| classify(&e))?;
        tx.execute(&self.plan.insert, &[&PgJson(Json::Array(rows.to_vec()))])
            .await
            .map_err(|e| classify(&e))?;
        tx.commit().await.map_err(|e| classify(&e))
    }

    /// A batch with a bad row: each row on its own, bad ones to the dead letter. When the
    /// sink is replaced meanwhile, returns the events not written yet.
    async fn row_by_row(
        &self,
        batch: Vec<Event>,
        rows: Vec<Json>,
        dead_letter: &DeadLetter,
        cx: &SinkContext,
    ) -> Option<Vec<Event>> {
        let stop = cx.input.stop_token();
        let mut good = Vec::new();
        let mut pending = batch.into_iter().zip(rows);
        while let Some((event, row)) = pending.next() {
            let mut backoff = Backoff::new(self.failure);
            loop {
                let result = match self.client().await {
                    Ok(client) => client
                        .execute(
                            &self.plan.insert,
                            &[&PgJson(Json::Array(vec![row.clone()]))],
                        )
                        .await
                        .map(drop)
                        .map_err(|e| {
                            (
                                classify(&e),
                                e.as_db_error()
                                    .map(|d| d.message().to_owned())
                                    .unwrap_or_else(|| e.to_string()),
                            )
                        }),
                    Err(WriteError::Retry(r)) => Err((WriteError::Retry(r.clone()), r)),
                    Err(WriteError::Integrity) => Err((WriteError::Integrity, "integrity".into())),
                };
                match result {
                    Ok(()) => {
                        good.push(event);
                        break;
                    }
                    Err((WriteError::Integrity, message)) => {
                        let failure = Failure {
                            error: message,
                            status: None,
                            attempts: 1,
                            body: None,
                        };
                        dead_letter.send(vec![event], &failure).await;
                        break;
                    }
                    Err((WriteError::Retry(reason), _)) => match backoff.next(None) {
                        Some(wait) => {
                            tokio::select! {
                                () = cx.clock.sleep(wait) => {}
                                () = stop.cancelled() => {
                                    delivered(&cx.metrics, good);
                                    let mut rest = vec![event];
                                    rest.extend(pending.map(|(e, _)| e));
                                    return Some(rest);
                                }
                            }
                        }
                        None => {
                            let failure = Failure {
                                error: format!("gave up: {reason}"),
                                status: None,
                                attempts: backoff.retries() + 1,
                                body: None,
                            };
                            dead_letter.send(vec![event], &failure).await;
                            break;
                        }
                    },
                }
            }
        }
        delivered(&cx.metrics, good);
        None
    }

    async fn apply_retention(&self, id: &str) {
        let (Some(days), Some(ts)) = (self.retention, &self.plan.timestamp_column) else {
            return;
        };
        let Ok(client) = self.client().await else {
            return;
        };
        let t = &self.plan.table;
        let sql = format!(
            "DELETE FROM {t} WHERE ctid IN (SELECT ctid FROM {t} WHERE \"{ts}\" < NOW() - make_interval(days => $1) LIMIT 1000)"
        );
        let mut deleted: u64 = 0;
        loop {
            match client.execute(&sql, &[&(days as i32)]).await {
                Ok(0) => break,
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::warn!(component_id = %id, error = %e, "retention delete failed");
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(component_id = %id, deleted, "deleted rows older than retention_days");
        }
    }
}
