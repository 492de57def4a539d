//! The shared incident store: incidents as rows of PostgreSQL, so that several
//! aggregators (one Kafka consumer group) keep one incident per key between them.
//!
//! - `incidents`: one row per incident, with the monitoring system's columns (`id`,
//!   `title`, `description`, `severity`, `status` open | investigating | resolved |
//!   closed, `assigned_to`, `root_cause`, `created_at`, `updated_at`, `resolved_at`,
//!   `key`, `count`), plus `service`, `due_at` (its next timer) and `state` (what the
//!   state machine needs, as JSON). A resolved incident becomes `closed` when its key
//!   can no longer reopen it; rows are kept as history.
//! - `incident_events`: the timeline: every alert and every change, with its time.
//!
//! Concurrency: a batch runs in one transaction that first takes a transaction-scoped
//! advisory lock per correlation key (in hash order, so two aggregators never wait on
//! each other in a cycle), then the keys' rows `FOR UPDATE`. Timer passes claim due
//! rows `FOR UPDATE SKIP LOCKED`: an incident's timer fires in exactly one aggregator.
//! Notifications leave only after their transaction committed.
//!
//! The transform is synchronous, PostgreSQL's client is not: a thread of its own runs
//! the client on a small runtime, and the transform waits for its answers (with
//! `block_in_place` on a multi-threaded runtime, so other tasks keep running).
//!
//! Files: `worker.rs` the thread and its transactions, `queries.rs` the SQL.

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use tokio::sync::{mpsc, oneshot};
use vrl::value::Value;

mod queries;
pub(crate) use queries::stored_key;
mod worker;

use worker::Worker;

use super::config::PostgresStoreConfig;
use super::manual::{ChangeError, IncidentChange, NewIncident};
use super::state::{Incident, Timing};
use crate::alert::field;
use crate::component::BuildError;

/// How long one store operation may take before the connection is dropped.
const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// Due rows one timer pass claims at most.
const CLAIM_LIMIT: i64 = 1000;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("the incident store is unreachable: {0}")]
    Unreachable(String),
    #[error("the incident store refused: {0}")]
    Database(String),
    #[error("the incident store took longer than {}s", OP_TIMEOUT.as_secs())]
    Timeout,
    #[error("the incident store's thread is gone")]
    Gone,
}

fn db(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(d) => StoreError::Database(format!("{} ({})", d.message(), d.code().code())),
        None => {
            // "error connecting to server" alone does not say why: add the causes.
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            StoreError::Unreachable(text)
        }
    }
}

/// The quoted names of the store's tables.
#[derive(Debug, Clone)]
pub(super) struct Tables {
    schema: String,
    incidents: String,
    events: String,
    /// The events table the timelines and the statistics read.
    source_events: Option<String>,
    /// Prefix of the advisory lock keys: another schema locks other keys.
    lock_scope: String,
}

impl Tables {
    pub(super) fn new(cfg: &PostgresStoreConfig) -> Result<Self, BuildError> {
        Ok(Self {
            schema: crate::postgres::ident(&cfg.schema)?,
            incidents: crate::postgres::qualified_table(&cfg.schema, "incidents")?,
            events: crate::postgres::qualified_table(&cfg.schema, "incident_events")?,
            source_events: cfg.events_table()?,
            lock_scope: format!("sluice incident {}/", cfg.schema),
        })
    }
}

/// The store's row of one incident.
struct Row {
    key: String,
    incident: Incident,
    status: &'static str,
    due: Option<i64>,
}

/// What a batch or a timer pass writes, in the transaction that read the rows.
#[derive(Default)]
pub(super) struct Writes {
    rows: Vec<Row>,
    /// Incidents replaced by a new one of the same key.
    closed: Vec<String>,
    timeline: Vec<TimelineRow>,
}

struct TimelineRow {
    incident: String,
    at: i64,
    kind: String,
    text: Option<String>,
    alert: Option<Json>,
}

/// The monitoring system's status of an incident.
fn status_of(i: &Incident, closed: bool) -> &'static str {
    if closed {
        "closed"
    } else {
        i.phase.monitoring_word()
    }
}

impl Writes {
    /// Writes incident `i` (correlation key `key`), and the timeline entries it
    /// recorded since it was read (`recorded_before` of them then).
    pub(super) fn incident(
        &mut self,
        key: &str,
        i: &Incident,
        recorded_before: u64,
        closed: bool,
        t: &Timing,
    ) {
        let new = usize::try_from(i.recorded.saturating_sub(recorded_before)).unwrap_or(0);
        let skip = i.timeline.len().saturating_sub(new);
        for e in &i.timeline[skip..] {
            self.timeline.push(TimelineRow {
                incident: i.id.clone(),
                at: e.at,
                kind: e.what.clone(),
                text: e.text.clone(),
                alert: None,
            });
        }
        self.rows.push(Row {
            key: key.to_owned(),
            incident: i.clone(),
            status: status_of(i, closed),
            due: if closed { None } else { i.next_due(t) },
        });
    }

    /// The incident with id `id` gave way to a new one of its key.
    pub(super) fn close(&mut self, id: &str) {
        self.closed.push(id.to_owned());
    }

    /// An alert (see [`alert_detail`]) that joined incident `id`.
    pub(super) fn alert(&mut self, id: &str, at: i64, detail: Json) {
        let text = detail
            .get(field::STATUS)
            .and_then(Json::as_str)
            .map(str::to_owned);
        self.timeline.push(TimelineRow {
            incident: id.to_owned(),
            at,
            kind: "alert".into(),
            text,
            alert: Some(detail),
        });
    }
}

/// What the timeline keeps of an alert: its normalized text fields, each cut to
/// 1,024 characters.
pub(super) fn alert_detail(alert: &Value) -> Json {
    let mut detail = serde_json::Map::new();
    let Value::Object(o) = alert else {
        return Json::Object(detail);
    };
    for name in [
        field::SOURCE,
        field::STATUS,
        field::SEVERITY,
        field::SUMMARY,
        field::SERVICE,
        field::FINGERPRINT,
        field::URL,
    ] {
        if let Some(v) = o.get(name).filter(|v| !matches!(v, Value::Null)) {
            let cut: String = v.to_string_lossy().chars().take(1024).collect();
            detail.insert(name.into(), Json::from(cut));
        }
    }
    Json::Object(detail)
}

/// Incidents read under lock, by key, and how many incidents are open in the store.
pub(super) struct Loaded {
    pub(crate) incidents: Vec<(String, Incident)>,
    pub(crate) open: i64,
}

type Reply<T> = std_mpsc::SyncSender<Result<T, StoreError>>;

/// The transform's side of a transaction: read under lock, then write and commit.
enum Txn {
    /// Locks `keys` and reads their incidents; the transaction waits for `Finish`.
    Lock {
        keys: Vec<String>,
        reply: Reply<Loaded>,
    },
    /// Claims the incidents with a timer due at `now`; the transaction waits for `Finish`.
    Claim {
        now: i64,
        reply: Reply<Loaded>,
    },
    Finish {
        writes: Writes,
        reply: Reply<()>,
    },
}

/// One incident as the API lists it: key, incident, status in the store.
pub(crate) type Listed = (String, Incident, String);

/// What the API asks; each is a transaction of its own.
enum ApiJob {
    List {
        filter: Filter,
        reply: oneshot::Sender<Result<(Vec<Listed>, i64), StoreError>>,
    },
    Find {
        id: String,
        reply: oneshot::Sender<Result<Option<Listed>, StoreError>>,
    },
    Timeline {
        id: String,
        limit: i64,
        reply: oneshot::Sender<Result<Option<Vec<Json>>, StoreError>>,
    },
    Create {
        spec: Box<NewIncident>,
        now: i64,
        reply: oneshot::Sender<Result<Result<String, String>, StoreError>>,
    },
    Change {
        id: String,
        change: Box<IncidentChange>,
        now: i64,
        reply: oneshot::Sender<Result<Result<Listed, ChangeError>, StoreError>>,
    },
    Stats {
        reply: oneshot::Sender<Result<Json, StoreError>>,
    },
}

/// `GET /incidents` filters, in the store's vocabulary.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// open, investigating, resolved or closed.
    pub(crate) status: Option<String>,
    pub(crate) severity: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) limit: i64,
    pub(crate) offset: i64,
}

/// The transform's handle on the store.
pub(super) struct Store {
    txn: mpsc::UnboundedSender<Txn>,
    api: Arc<StoreApi>,
}

/// The API's handle on the store (several API calls may wait on it at once).
pub(crate) struct StoreApi {
    jobs: mpsc::UnboundedSender<ApiJob>,
    /// Alerts this instance took in (for `GET /stats` without an events table).
    pub(crate) intake: std::sync::Mutex<super::intake::Intake>,
}

impl Store {
    /// Starts the store's thread. It connects (and creates the tables) on first use,
    /// and reconnects after a failure.
    pub(super) fn start(
        id: &str,
        cfg: &PostgresStoreConfig,
        timing: Timing,
    ) -> Result<Self, BuildError> {
        let mut pg = crate::postgres::parse_url(&cfg.url, "store.postgres.url")?;
        // A dead peer is noticed in about a minute, not after the kernel's two hours.
        pg.keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name(format!("sluice:{id}"));
        let tables = Tables::new(cfg)?;
        let (txn, txn_rx) = mpsc::unbounded_channel();
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        // Two threads, each with its own connection: a slow API query (a long list)
        // never delays the alerts.
        let (_, no_jobs) = mpsc::unbounded_channel();
        let (_, no_txn) = mpsc::unbounded_channel();
        let worker = || Worker {
            component: id.to_owned(),
            pg: pg.clone(),
            tables: tables.clone(),
            timing,
            client: None,
        };
        spawn_worker(id, "alerts", worker(), txn_rx, no_jobs)?;
        spawn_worker(id, "api", worker(), no_txn, jobs_rx)?;
        Ok(Self {
            txn,
            api: Arc::new(StoreApi {
                jobs,
                intake: std::sync::Mutex::default(),
            }),
        })
    }

    pub(super) fn api(&self) -> Arc<StoreApi> {
        Arc::clone(&self.api)
    }

    pub(super) fn api_ref(&self) -> &StoreApi {
        &self.api
    }

    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Txn) -> Result<T, StoreError> {
        let (reply, answer) = std_mpsc::sync_channel(1);
        self.txn.send(make(reply)).map_err(|_| StoreError::Gone)?;
        let wait = || {
            answer
                .recv_timeout(OP_TIMEOUT + Duration::from_secs(5))
                .map_err(|e| match e {
                    std_mpsc::RecvTimeoutError::Timeout => StoreError::Timeout,
                    std_mpsc::RecvTimeoutError::Disconnected => StoreError::Gone,
                })?
        };
        let multi_threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_threaded {
            tokio::task::block_in_place(wait)
        } else {
            wait()
        }
    }

    /// Begins a transaction holding `keys` (in any order, repeats allowed) and reads
    /// their incidents.
    pub(super) fn lock(&self, mut keys: Vec<String>) -> Result<Loaded, StoreError> {
        keys.sort_unstable();
        keys.dedup();
        self.ask(|reply| Txn::Lock { keys, reply })
    }

    /// Begins a transaction holding the incidents with a timer due at `now`.
    pub(super) fn claim(&self, now: i64) -> Result<Loaded, StoreError> {
        self.ask(|reply| Txn::Claim { now, reply })
    }

    /// Writes and commits the open transaction.
    pub(super) fn finish(&self, writes: Writes) -> Result<(), StoreError> {
        self.ask(|reply| Txn::Finish { writes, reply })
    }
}

/// Runs `worker` on a thread of its own with a small runtime.
fn spawn_worker(
    id: &str,
    role: &str,
    worker: Worker,
    txn: mpsc::UnboundedReceiver<Txn>,
    jobs: mpsc::UnboundedReceiver<ApiJob>,
) -> Result<(), BuildError> {
    let name: String = id.chars().take(12).collect();
    std::thread::Builder::new()
        .name(format!("incident-{role}-{name}"))
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(worker.serve(txn, jobs)),
                Err(e) => {
                    tracing::error!(component_id = %worker.component, error = %e, "cannot start the incident store's runtime")
                }
            }
        })
        .map(|_| ())
        .map_err(|e| BuildError(format!("cannot start the incident store's thread: {e}")))
}

impl StoreApi {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> ApiJob,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(make(reply)).map_err(|_| StoreError::Gone)?;
        answer.await.map_err(|_| StoreError::Gone)?
    }

    pub(crate) async fn list(&self, mut filter: Filter) -> Result<(Vec<Listed>, i64), StoreError> {
        for f in [
            &mut filter.status,
            &mut filter.severity,
            &mut filter.service,
        ] {
            *f = f.as_deref().map(queries::clean);
        }
        self.ask(|reply| ApiJob::List { filter, reply }).await
    }

    pub(crate) async fn find(&self, id: &str) -> Result<Option<Listed>, StoreError> {
        let id = queries::clean(id);
        self.ask(|reply| ApiJob::Find { id, reply }).await
    }

    /// The incident's timeline with, when an events table is configured, the events
    /// of its service from an hour before it opened to its resolution; oldest first.
    pub(crate) async fn timeline(
        &self,
        id: &str,
        limit: i64,
    ) -> Result<Option<Vec<Json>>, StoreError> {
        let id = queries::clean(id);
        self.ask(|reply| ApiJob::Timeline { id, limit, reply })
            .await
    }

    pub(crate) async fn create(
        &self,
        spec: NewIncident,
        now: i64,
    ) -> Result<Result<String, String>, StoreError> {
        let spec = Box::new(spec);
        self.ask(|reply| ApiJob::Create { spec, now, reply }).await
    }

    pub(crate) async fn change(
        &self,
        id: &str,
        change: IncidentChange,
        now: i64,
    ) -> Result<Result<Listed, ChangeError>, StoreError> {
        let (id, change) = (queries::clean(id), Box::new(change));
        self.ask(|reply| ApiJob::Change {
            id,
            change,
            now,
            reply,
        })
        .await
    }

    /// Events in total and in the last hour (from the events table), active alerts
    /// and open incidents (from the store).
    pub(crate) async fn stats(&self) -> Result<Json, StoreError> {
        self.ask(|reply| ApiJob::Stats { reply }).await
    }
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

fn text_of(i: &Incident, name: &str) -> Option<String> {
    match &i.latest {
        Value::Object(o) => o
            .get(name)
            .filter(|v| !matches!(v, Value::Null))
            .map(|v| v.to_string_lossy().into_owned()),
        _ => None,
    }
}

/// An incident read back from its row.
fn incident_of(component: &str, key: &str, state: Json) -> Option<Incident> {
    match serde_json::from_value::<Incident>(state) {
        Ok(mut i) => {
            super::restore_times(&mut i.latest);
            Some(i)
        }
        Err(e) => {
            tracing::warn!(component_id = %component, key = %key.chars().take(100).collect::<String>(), error = %e, "unreadable incident row in the store; it is closed and the key starts afresh");
            None
        }
    }
}
