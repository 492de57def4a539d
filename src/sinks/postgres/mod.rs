//! `postgres`: events as rows, the monitoring system's events store.
//!
//! Batches that queued up while one was being written are joined, up to
//! `max_batch_rows`, and the next batch is received and encoded while the one before it
//! is written. Each batch is written in one transaction with `COPY` (`copy.rs`):
//! straight into the table, or, when a row is already there (a redelivery), into a
//! temporary staging table with the table's column types, then moved with
//! `INSERT … SELECT … ON CONFLICT DO NOTHING`. Tables with array, composite, range or
//! domain columns go through one statement instead: the rows go to the server as one
//! JSONB array and `jsonb_populate_recordset(NULL::<schema>.<table>, $1)` converts every
//! field. Either way the server converts each field with the table's own column types,
//! so user tables with other columns work without declaring types here. `ON CONFLICT DO
//! NOTHING` makes redelivery idempotent: `id` is the event's `id` when it is a UUID,
//! otherwise a UUID derived from the event's content, the same on every redelivery.
//!
//! When a batch violates a constraint, its rows are written one by one: the bad ones go
//! to `<id>.dead_letter` with the database's message, the rest commit. Connection
//! failures (the server restarting, a backend killed) are retried with backoff on a
//! fresh pooled connection; nothing is settled before its rows are committed.
//! `retention_days` deletes older rows in batches of 1,000 after the first batch written
//! and hourly after that (a pass that fails is tried again a minute later).
//!
//! Files: this one the options; `plan.rs` how an event becomes a row; `writer.rs`
//! writing batches, isolating bad rows, retention; `copy.rs` the COPY path; `query.rs`
//! reading the events table back for the API.

mod copy;
mod plan;
pub(crate) mod query;
mod writer;

use std::sync::Arc;

use writer::{Writer, run};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use indexmap::IndexMap;
use serde::Deserialize;
use tokio_postgres::NoTls;

use crate::component::{BoxFuture, BuildError, ComponentTask, SinkConfig, SinkContext};
use crate::delivery::DEAD_LETTER;
use crate::net::FailureHandling;

/// Stores events in PostgreSQL (the events store), batched and idempotent.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresConfig {
    /// `postgres://user@host:port/db` (or a key=value connection string).
    pub(crate) url: String,
    /// The table's schema (default `public`).
    #[serde(default = "crate::postgres::default_schema")]
    pub(crate) schema: String,
    /// The table (default `events`, the monitoring system's).
    #[serde(default = "crate::postgres::default_table")]
    pub(crate) table: String,
    /// Create the events table (and schema) when missing.
    #[serde(default = "crate::units::yes")]
    pub(crate) create_table: bool,
    /// `column: field.path` (`.` for the whole event); the default maps the
    /// normalized schema onto the events table.
    pub(crate) columns: Option<IndexMap<String, String>>,
    /// Delete rows whose `timestamp` is older than this many days, 1,000 at a time, after
    /// the first batch written and then after a batch once an hour (once a minute while
    /// the pass fails). Unset (the default): keep every row.
    pub(crate) retention_days: Option<u32>,
    /// Rows in hand before the sink stops joining batches into one transaction
    /// (default 5000): batches already waiting in the buffer are joined while fewer rows
    /// than this are in hand, so a backlog costs fewer commits. A batch never waits for
    /// more to arrive.
    #[serde(default = "default_max_batch_rows")]
    pub(crate) max_batch_rows: usize,
    /// Retries of a batch the server could not take (connection trouble); a row the
    /// data's fault goes to the `dead_letter` output at once.
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
}

fn default_max_batch_rows() -> usize {
    5000
}

impl SinkConfig for PostgresConfig {
    fn type_name(&self) -> &'static str {
        "postgres"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.max_batch_rows == 0 {
            return Err(BuildError("`max_batch_rows` must be at least 1".into()));
        }
        self.plan().map(drop)
    }

    fn healthcheck(
        &self,
        _timeout: std::time::Duration,
    ) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(async move {
            let plan = self.plan().map_err(|e| e.0)?;
            let pg = crate::postgres::parse_url(&self.url, "url").map_err(|e| e.0)?;
            crate::postgres::probe(&pg, &plan.schema, &plan.table, self.create_table).await
        }))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let plan = self.plan()?;
            let mut pg = crate::postgres::parse_url(&self.url, "url")?;
            pg.application_name(format!("sluice:{}", cx.id));
            let pool_of = |pg| {
                let manager = Manager::from_config(
                    pg,
                    NoTls,
                    ManagerConfig {
                        recycling_method: RecyclingMethod::Verified,
                    },
                );
                Pool::builder(manager)
                    .max_size(2)
                    .build()
                    .map_err(|e| BuildError(format!("cannot create the connection pool: {e}")))
            };
            let pool = pool_of(pg.clone())?;
            // The events table (not a `columns:` one) is readable through the API, on
            // connections of its own.
            let listed = match self.columns {
                Some(_) => None,
                None => Some(query::Listed::new(
                    Arc::clone(&cx.id),
                    query::EventsTable {
                        pool: pool_of(pg)?,
                        table: plan.table.clone(),
                    },
                )),
            };
            let writer = Writer {
                pool,
                plan,
                create_table: self.create_table,
                retention: self.retention_days,
                max_batch_rows: self.max_batch_rows,
                failure: self.failure_handling,
            };
            Ok(Box::pin(async move {
                let _listed = listed;
                run(writer, cx).await
            }) as ComponentTask)
        })
    }
}
