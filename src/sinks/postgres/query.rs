//! Reading the events table back for the API (`GET /events`, `GET /metrics/query`).
//!
//! Every running `postgres` sink writing the events table (no `columns:`) lists its
//! table in [`TABLES`] while it runs, with a pool of its own so a long query never
//! delays writes. Queries take bound parameters only, are cut at [`QUERY_TIMEOUT`],
//! and return at most [`MAX_LIMIT`] rows.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::{Value as Json, json};

use crate::component::Live;

/// The events tables of the running `postgres` sinks, by sink id.
pub(crate) static TABLES: Live<EventsTable> = Live::new();

/// Rows one query returns at most.
pub(crate) const MAX_LIMIT: i64 = 1000;
/// Longest a query may run.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// An events table, and how to reach it.
pub(crate) struct EventsTable {
    pub(super) pool: Pool,
    /// Quoted and schema-qualified.
    pub(super) table: String,
}

/// `GET /events` filters; `None`: any.
#[derive(Debug, Default)]
pub(crate) struct EventFilter {
    pub(crate) event_type: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) level: Option<String>,
    pub(crate) start_time: Option<DateTime<Utc>>,
    pub(crate) end_time: Option<DateTime<Utc>>,
    pub(crate) limit: i64,
    pub(crate) offset: i64,
}

/// Lists a sink's table in [`TABLES`] for as long as it lives.
pub(super) struct Listed {
    id: Arc<str>,
    table: Arc<EventsTable>,
}

impl Listed {
    pub(super) fn new(id: Arc<str>, table: EventsTable) -> Self {
        let table = Arc::new(table);
        TABLES.add(&id, &table);
        Self { id, table }
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        TABLES.remove(&self.id, &self.table);
    }
}

impl EventsTable {
    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, String> {
        let run = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|e| format!("no connection to the events table: {e}"))?;
            client
                .query(sql, params)
                .await
                .map_err(|e| format!("the events table: {}", crate::net::error_chain(&e)))
        };
        tokio::time::timeout(QUERY_TIMEOUT, run)
            .await
            .map_err(|_| format!("the query took longer than {QUERY_TIMEOUT:?}"))?
    }

    /// Events matching `f`, newest first, in the monitoring system's shape.
    pub(crate) async fn events(&self, f: &EventFilter) -> Result<Vec<Json>, String> {
        let sql = format!(
            "SELECT id::text, event_type, source, message, level, tags, payload, \"timestamp\"
             FROM {} WHERE ($1::text IS NULL OR event_type = $1)
               AND ($2::text IS NULL OR source = $2) AND ($3::text IS NULL OR level = $3)
               AND ($4::timestamptz IS NULL OR \"timestamp\" >= $4)
               AND ($5::timestamptz IS NULL OR \"timestamp\" < $5)
             ORDER BY \"timestamp\" DESC, id LIMIT $6 OFFSET $7",
            self.table
        );
        let rows = self
            .rows(
                &sql,
                &[
                    &f.event_type,
                    &f.source,
                    &f.level,
                    &f.start_time,
                    &f.end_time,
                    &f.limit.clamp(0, MAX_LIMIT),
                    &f.offset.max(0),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                json!({
                    "id": r.get::<_, Option<String>>(0),
                    "event_type": r.get::<_, Option<String>>(1),
                    "source": r.get::<_, Option<String>>(2),
                    "message": r.get::<_, Option<String>>(3),
                    "level": r.get::<_, Option<String>>(4),
                    "tags": r.get::<_, Option<Json>>(5),
                    "payload": r.get::<_, Option<Json>>(6),
                    "timestamp": r.get::<_, Option<DateTime<Utc>>>(7).map(|t| t.to_rfc3339()),
                })
            })
            .collect())
    }

    /// Samples of metric `name` since `start` (and before `end`), oldest first: the
    /// metric events whose payload names it (as `POST /metrics` and `POST /events`
    /// store them).
    pub(crate) async fn samples(
        &self,
        name: &str,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<Json>, String> {
        let sql = format!(
            "SELECT \"timestamp\", payload->'value', payload->>'metric_type',
                    COALESCE(payload->'labels', tags), source
             FROM {} WHERE event_type = 'metric' AND payload->>'name' = $1
               AND ($2::timestamptz IS NULL OR \"timestamp\" >= $2)
               AND ($3::timestamptz IS NULL OR \"timestamp\" < $3)
             ORDER BY \"timestamp\", id LIMIT $4",
            self.table
        );
        let rows = self
            .rows(&sql, &[&name, &start, &end, &limit.clamp(0, MAX_LIMIT)])
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                json!({
                    "timestamp": r.get::<_, Option<DateTime<Utc>>>(0).map(|t| t.to_rfc3339()),
                    "value": r.get::<_, Option<Json>>(1),
                    "metric_type": r.get::<_, Option<String>>(2),
                    "labels": r.get::<_, Option<Json>>(3),
                    "source": r.get::<_, Option<String>>(4),
                })
            })
            .collect())
    }
}
