//! Writing batches: one statement per batch, bad rows isolated to the dead letter,
//! transient failures retried, retention.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use serde_json::Value as Json;
use tokio_postgres::types::Json as PgJson;

use tokio_util::task::AbortOnDropHandle;

use crate::component::{ComponentError, SinkContext, delivered};
use crate::delivery::{DeadLetter, Failure};
use crate::event::Event;
use crate::net::{Backoff, FailureHandling, Pause};

use super::copy::{CopyPlan, DirectTries, Encoded, Written};
use super::plan::Plan;

pub(super) struct Writer {
    pub(super) pool: Pool,
    pub(super) plan: Plan,
    pub(super) create_table: bool,
    pub(super) retention: Option<u32>,
    pub(super) max_batch_rows: usize,
    pub(super) failure: FailureHandling,
}

/// How often rows older than `retention_days` are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// How soon a retention pass that failed (no connection, a failed delete) is tried
/// again, at the end of a batch.
const RETENTION_RETRY: Duration = Duration::from_secs(60);
/// Connections one retention pass may go through.
const RETENTION_TRIES: usize = 3;

/// Why a retention pass did not complete, and whether another connection may help.
struct Failed {
    transient: bool,
    reason: String,
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
            WriteError::Retry(describe(e))
        }
        Some(_) => WriteError::Integrity,
        None => WriteError::Retry(describe(e)),
    }
}

/// The SQLSTATE and message of a database error, else the error's chain of causes.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => crate::net::error_chain(e),
    }
}

pub(super) async fn run(w: Writer, mut cx: SinkContext) -> Result<(), ComponentError> {
    let w = Arc::new(w);
    let dead_letter = DeadLetter::new(
        Arc::clone(&cx.id),
        cx.outputs.first().cloned(),
        Arc::clone(&cx.metrics),
    );
    let stop = cx.input.stop_token();
    let mut state = State::default();
    // Due after the first batch, then every hour (every minute after a failed pass).
    let mut retention_due: Option<Instant> = None;
    // Received while the batch before it was being written, and encoded meanwhile: the
    // sink builds a batch while the server stores the one before. The write runs in a
    // task of its own, so encoding never delays its round trips.
    let mut next = Next::default();
    // Written; settled once the next write has started, off that write's path.
    let mut committed: Option<Committed> = None;
    let mut closed = false;
    loop {
        let mut ready = std::mem::take(&mut next);
        if stop.is_cancelled() && !ready.events.is_empty() {
            // Replaced by a reload: what was taken ahead goes to the replacement, as it
            // would have had it stayed in the buffer.
            cx.input.hand_back(ready.events);
            break;
        }
        if ready.events.is_empty() {
            // Nothing to write next: the batch before is settled now, not when the next
            // one comes.
            drop(committed.take());
            if closed {
                break;
            }
            let Some(batch) = cx.input.recv().await else {
                break;
            };
            cx.metrics.add_received(batch.len());
            ready.events = batch;
        }
        let mut batch = ready.events;
        while batch.len() < w.max_batch_rows
            && let Some(more) = cx.input.try_recv()
        {
            cx.metrics.add_received(more.len());
            batch.extend(more);
        }
        let plan_now = state.copy.clone().flatten();
        let mut write = {
            let (w, clock, id, stop) = (
                Arc::clone(&w),
                Arc::clone(&cx.clock),
                Arc::clone(&cx.id),
                stop.clone(),
            );
            let mut state = std::mem::take(&mut state);
            AbortOnDropHandle::new(tokio::spawn(async move {
                let outcome = w
                    .write_with_retries(&mut state, &batch, ready.encoded, &*clock, &id, &stop)
                    .await;
                (state, batch, outcome)
            }))
        };
        drop(committed.take());
        let (written_state, batch, outcome) = loop {
            tokio::select! {
                biased;
                done = &mut write => {
                    break done.map_err(|e| ComponentError::Other(format!("the write task failed: {e}")))?;
                }
                more = cx.input.recv(), if !closed && next.events.len() < w.max_batch_rows => {
                    match more {
                        Some(more) => {
                            cx.metrics.add_received(more.len());
                            next.add(more, plan_now.as_ref(), &w.plan);
                        }
                        None => closed = true,
                    }
                }
            }
        };
        state = written_state;
        let rest = match outcome {
            Outcome::Written => {
                committed = Some(Committed(Arc::clone(&cx.metrics), batch));
                None
            }
            Outcome::Failed => w.row_by_row(batch, &dead_letter, &cx).await,
            Outcome::Stopped => Some(batch),
        };
        if let Some(rest) = rest {
            // Replaced by a reload: what was not written yet goes to the replacement,
            // in the order it came.
            cx.input.hand_back(rest);
            if !next.events.is_empty() {
                cx.input.hand_back(next.events);
            }
            return Ok(());
        }
        if w.retention.is_some() && retention_due.is_none_or(|t| cx.clock.now() >= t) {
            let wait = if w.apply_retention(&cx.id).await {
                RETENTION_EVERY
            } else {
                RETENTION_RETRY
            };
            retention_due = Some(cx.clock.now() + wait);
        }
    }
    Ok(())
}

/// A batch written and committed: settled as delivered when dropped.
struct Committed(Arc<crate::telemetry::ComponentMetrics>, Vec<Event>);

impl Drop for Committed {
    fn drop(&mut self) {
        delivered(&self.0, std::mem::take(&mut self.1));
    }
}

/// How a batch's write ended.
enum Outcome {
    Written,
    /// The data's fault, or retries exhausted: the rows go one by one.
    Failed,
    /// Replaced by a reload while retrying.
    Stopped,
}

/// The next batch, and its first rows already encoded for the COPY path.
#[derive(Default)]
struct Next {
    events: Vec<Event>,
    encoded: Option<Encoded>,
}

impl Next {
    fn add(&mut self, more: Vec<Event>, copy: Option<&Arc<CopyPlan>>, plan: &Plan) {
        // Encoded only while every row so far was: the encoded rows are a prefix.
        if let Some(copy) = copy
            && self.encoded.is_some() != self.events.is_empty()
        {
            let encoded = self.encoded.get_or_insert_with(|| Encoded::new(copy));
            encoded.add(plan, &more);
        }
        self.events.extend(more);
    }
}

/// What the writer learned about the table on its first write.
#[derive(Default)]
struct State {
    prepared: bool,
    /// `None`: not read yet (or to read again); `Some(None)`: the table needs the
    /// JSONB path.
    copy: Option<Option<Arc<CopyPlan>>>,
    /// When the COPY path writes straight into the table; reset with the plan.
    direct: DirectTries,
}

impl Writer {
    /// A batch, retried with backoff while the server cannot take it.
    async fn write_with_retries(
        &self,
        state: &mut State,
        batch: &[Event],
        mut encoded: Option<Encoded>,
        clock: &dyn crate::clock::Clock,
        id: &str,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Outcome {
        let mut backoff = Backoff::new(self.failure);
        loop {
            match self.write(state, batch, encoded.take(), id).await {
                Ok(()) => return Outcome::Written,
                Err(WriteError::Integrity) => return Outcome::Failed,
                Err(WriteError::Retry(reason)) => {
                    let pause = backoff.pause(None, clock, Some(stop), |wait| {
                        tracing::warn!(component_id = %id, error = %reason, wait = ?wait, "write failed; retrying");
                    });
                    match pause.await {
                        Pause::Retry => {}
                        Pause::Exhausted => return Outcome::Failed,
                        Pause::Stopped => return Outcome::Stopped,
                    }
                }
            }
        }
    }

    /// One batch: through the COPY path when the table allows it, else the JSONB path.
    /// A batch the COPY path fails on for its data is tried on the JSONB path before
    /// the caller isolates its rows; when that succeeds, the table's types are read
    /// again (and its staging table made again) before the next batch.
    async fn write(
        &self,
        state: &mut State,
        events: &[Event],
        encoded: Option<Encoded>,
        id: &str,
    ) -> Result<(), WriteError> {
        if !state.prepared {
            self.prepare().await?;
            state.prepared = true;
        }
        if state.copy.is_none() {
            let client = self.client().await?;
            let plan = CopyPlan::read(&client, &self.plan)
                .await
                .map_err(|e| classify(&e))?;
            state.copy = Some(plan.map(Arc::new));
            state.direct = DirectTries::default();
        }
        let Some((copy, body)) = state
            .copy
            .as_ref()
            .and_then(Option::as_ref)
            .and_then(|copy| {
                let body = match encoded {
                    Some(encoded) if encoded.fits(copy, events) => {
                        encoded.finish(&self.plan, events)
                    }
                    _ => copy.encode(&self.plan, events),
                };
                Some((copy, body?))
            })
        else {
            let written = self.insert(events).await;
            if matches!(written, Err(WriteError::Integrity)) {
                // The table may have been created or changed since it was read.
                state.copy = None;
            }
            return written;
        };
        let client = self.client().await?;
        // Straight into the table when its turn comes, else (or after a conflict there)
        // through the staging table.
        let mut direct = copy.direct() && state.direct.turn();
        let error = loop {
            match copy.write(&client, &self.plan, body.clone(), direct).await {
                Ok(Written::Committed) => {
                    if direct {
                        state.direct.committed();
                    }
                    return Ok(());
                }
                Ok(Written::Stale) => {
                    drop(client);
                    state.copy = None;
                    return self.insert(events).await;
                }
                Err(e) if direct && matches!(classify(&e), WriteError::Integrity) => {
                    tracing::debug!(component_id = %id, error = %crate::net::error_chain(&e), "a batch COPY could not write straight into the table goes through the staging table");
                    state.direct.failed(&e);
                    direct = false;
                }
                Err(e) => break e,
            }
        };
        drop(client);
        if let WriteError::Retry(reason) = classify(&error) {
            return Err(WriteError::Retry(reason));
        }
        self.insert(events).await?;
        if error.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
            // No TEMP privilege on the database, say: every batch would fail the same way.
            tracing::info!(component_id = %id, error = %crate::net::error_chain(&error), "cannot COPY through a staging table; writing through jsonb_populate_recordset");
            state.copy = Some(None);
        } else {
            tracing::debug!(component_id = %id, error = %crate::net::error_chain(&error), "a batch that COPY refused was written through jsonb_populate_recordset");
            state.copy = None;
        }
        Ok(())
    }

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
        // A table that exists is used as it is: a role that may only write it (no CREATE
        // on the database) must not fail on `CREATE SCHEMA IF NOT EXISTS`, whose
        // privilege check comes before the existence check.
        let exists = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[t])
            .await
            .map_err(|e| classify(&e))?;
        if exists.get::<_, bool>(0) {
            return Ok(());
        }
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
        let created = client
            .batch_execute(&crate::postgres::serialized_ddl(&self.plan.schema, &ddl))
            .await;
        if let Err(e) = created {
            // The pooled connection must not stay inside the failed transaction: every
            // later statement on it would fail with "current transaction is aborted",
            // hiding this error.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(classify(&e));
        }
        Ok(())
    }

    /// The JSONB path: the batch as one JSONB array.
    async fn insert(&self, events: &[Event]) -> Result<(), WriteError> {
        let rows = Json::Array(events.iter().map(|e| self.plan.row(e)).collect());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| classify(&e))?;
        tx.execute(&self.plan.insert, &[&PgJson(rows)])
            .await
            .map_err(|e| classify(&e))?;
        tx.commit().await.map_err(|e| classify(&e))
    }

    /// A batch with a bad row: each row on its own, bad ones to the dead letter. When the
    /// sink is replaced meanwhile, returns the events not written yet.
    async fn row_by_row(
        &self,
        batch: Vec<Event>,
        dead_letter: &DeadLetter,
        cx: &SinkContext,
    ) -> Option<Vec<Event>> {
        let stop = cx.input.stop_token();
        let mut good = Vec::new();
        let mut pending = batch.into_iter();
        while let Some(event) = pending.next() {
            let row = Json::Array(vec![self.plan.row(&event)]);
            let mut backoff = Backoff::new(self.failure);
            loop {
                let result = match self.client().await {
                    Ok(client) => client
                        .execute(&self.plan.insert, &[&PgJson(&row)])
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
                    Err((WriteError::Retry(reason), _)) => {
                        match backoff.pause(None, &*cx.clock, Some(&stop), drop).await {
                            Pause::Retry => {}
                            Pause::Exhausted => {
                                let attempts = backoff.retries() + 1;
                                let failure = Failure::gave_up(attempts, &reason, None, None);
                                dead_letter.send(vec![event], &failure).await;
                                break;
                            }
                            Pause::Stopped => {
                                delivered(&cx.metrics, good);
                                let mut rest = vec![event];
                                rest.extend(pending);
                                return Some(rest);
                            }
                        }
                    }
                }
            }
        }
        delivered(&cx.metrics, good);
        None
    }

    /// Deletes rows older than `retention_days`; whether the pass completed. A connection
    /// lost under it (a restarted server, a terminated backend) is replaced at once, up
    /// to [`RETENTION_TRIES`] times, before the pass waits for a later batch.
    async fn apply_retention(&self, id: &str) -> bool {
        let (Some(days), Some(ts)) = (self.retention, &self.plan.timestamp_column) else {
            return true;
        };
        let t = &self.plan.table;
        let sql = format!(
            "DELETE FROM {t} WHERE ctid IN (SELECT ctid FROM {t} WHERE \"{ts}\" < NOW() - make_interval(days => $1) LIMIT 1000)"
        );
        let mut deleted: u64 = 0;
        let mut outcome = Ok(());
        for _ in 0..RETENTION_TRIES {
            outcome = self.retention_pass(&sql, days, &mut deleted).await;
            if !matches!(
                outcome,
                Err(Failed {
                    transient: true,
                    ..
                })
            ) {
                break;
            }
        }
        if deleted > 0 {
            tracing::info!(component_id = %id, deleted, "deleted rows older than retention_days");
        }
        let Err(Failed { reason, .. }) = outcome else {
            return true;
        };
        tracing::warn!(component_id = %id, error = %reason, "retention failed; trying again after a later batch");
        false
    }

    /// One retention pass on one connection, 1,000 rows per statement; adds to `deleted`.
    async fn retention_pass(&self, sql: &str, days: u32, deleted: &mut u64) -> Result<(), Failed> {
        let client = self.client().await.map_err(|e| Failed {
            transient: true,
            reason: match e {
                WriteError::Retry(reason) => reason,
                WriteError::Integrity => "no connection".to_owned(),
            },
        })?;
        loop {
            match client
                .execute(sql, &[&(days as i32)])
                .await
                .map_err(|e| Failed {
                    transient: matches!(classify(&e), WriteError::Retry(_)),
                    reason: describe(&e),
                })? {
                0 => return Ok(()),
                n => *deleted += n,
            }
        }
    }
}
