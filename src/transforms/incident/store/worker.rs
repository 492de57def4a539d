//! The store's thread: one connection, the transform's transactions (a read under lock,
//! then the writes), and the API's calls in between.

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

use super::queries::{
    change_incident, claim_due, create, create_tables, find, list, lock_keys, stats, timeline,
    write,
};
use super::{ApiJob, OP_TIMEOUT, StoreError, Tables, Txn, db};
use crate::transforms::incident::state::Timing;

pub(super) struct Worker {
    pub(super) component: String,
    pub(super) pg: tokio_postgres::Config,
    pub(super) tables: Tables,
    pub(super) timing: Timing,
    pub(super) client: Option<Client>,
}

impl Worker {
    pub(super) async fn serve(
        mut self,
        mut txn: mpsc::UnboundedReceiver<Txn>,
        mut jobs: mpsc::UnboundedReceiver<ApiJob>,
    ) {
        let (mut txn_open, mut jobs_open) = (true, true);
        while txn_open || jobs_open {
            tokio::select! {
                t = txn.recv(), if txn_open => match t {
                    Some(t) => self.transaction(t, &mut txn).await,
                    None => txn_open = false,
                },
                j = jobs.recv(), if jobs_open => match j {
                    Some(j) => self.api(j).await,
                    None => jobs_open = false,
                },
            }
        }
    }

    /// A connected client, creating the tables on first connection.
    async fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let client = tokio::time::timeout(
                OP_TIMEOUT,
                crate::postgres::connect(&self.pg, &self.component),
            )
            .await
            .map_err(|_| StoreError::Timeout)?
            .map_err(db)?;
            // A session stuck in a transaction (its client partitioned away) must not
            // hold the keys' locks for long.
            client
                .batch_execute(&format!(
                    "SET statement_timeout = {ms}; SET lock_timeout = {ms}; \
                     SET idle_in_transaction_session_timeout = {idle};",
                    ms = OP_TIMEOUT.as_millis(),
                    idle = 2 * OP_TIMEOUT.as_millis()
                ))
                .await
                .map_err(db)?;
            create_tables(&client, &self.tables).await?;
            self.client = Some(client);
        }
        self.client.as_mut().ok_or(StoreError::Gone)
    }

    /// Forgets the connection after a failure that may have broken it.
    fn failed(&mut self, e: &StoreError) {
        if !matches!(e, StoreError::Database(_)) {
            self.client = None;
        }
    }

    async fn transaction(&mut self, first: Txn, rest: &mut mpsc::UnboundedReceiver<Txn>) {
        let (tables, component) = (self.tables.clone(), self.component.clone());
        let mut next = Some(first);
        while let Some(txn) = next.take() {
            let client = match self.client().await {
                Ok(c) => c,
                Err(e) => {
                    refuse(txn, e);
                    return;
                }
            };
            let (broken, again) = conversation(client, &tables, &component, txn, rest).await;
            if broken {
                self.client = None;
            }
            next = again;
        }
    }

    async fn api(&mut self, job: ApiJob) {
        let tables = self.tables.clone();
        let timing = self.timing;
        let component = self.component.clone();
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => {
                job.refuse(e);
                return;
            }
        };
        let c = &mut *client;
        let broke = match job {
            ApiJob::List { filter, reply } => {
                let r = timed(list(c, &tables, &component, &filter)).await;
                finish(reply, r)
            }
            ApiJob::Find { id, reply } => {
                let r = timed(find(c, &tables, &component, &id)).await;
                finish(reply, r)
            }
            ApiJob::Timeline { id, limit, reply } => {
                let r = timed(timeline(c, &tables, &id, limit)).await;
                finish(reply, r)
            }
            ApiJob::Create { spec, now, reply } => {
                let r = timed(create(c, &tables, &timing, &spec, now)).await;
                finish(reply, r)
            }
            ApiJob::Change {
                id,
                change,
                now,
                reply,
            } => {
                let r = timed(change_incident(
                    c, &tables, &component, &timing, &id, &change, now,
                ))
                .await;
                finish(reply, r)
            }
            ApiJob::Stats { reply } => {
                let r = timed(stats(c, &tables)).await;
                finish(reply, r)
            }
        };
        if let Some(e) = broke {
            self.failed(&e);
        }
    }
}

/// One transaction of the transform: read under lock (`first`), then the `Finish` that
/// follows. Returns whether the connection may be broken.
async fn conversation(
    client: &mut Client,
    tables: &Tables,
    component: &str,
    first: Txn,
    rest: &mut mpsc::UnboundedReceiver<Txn>,
) -> (bool, Option<Txn>) {
    let outcome = async {
        let tx = client.transaction().await.map_err(db)?;
        let loaded = match &first {
            Txn::Lock { keys, .. } => lock_keys(&tx, tables, component, keys).await,
            Txn::Claim { now, .. } => claim_due(&tx, tables, component, *now).await,
            Txn::Finish { .. } => Err(StoreError::Database("no transaction to finish".into())),
        };
        Ok::<_, StoreError>((tx, loaded))
    };
    let (tx, loaded) = match tokio::time::timeout(OP_TIMEOUT, outcome).await {
        Ok(Ok((tx, Ok(loaded)))) => (tx, loaded),
        Ok(Ok((_, Err(e))) | Err(e)) => {
            let broken = !matches!(e, StoreError::Database(_));
            refuse(first, e);
            return (broken, None);
        }
        Err(_) => {
            refuse(first, StoreError::Timeout);
            return (true, None);
        }
    };
    match first {
        Txn::Lock { reply, .. } | Txn::Claim { reply, .. } => {
            let _ = reply.send(Ok(loaded));
        }
        Txn::Finish { .. } => {}
    }
    // The transform answers with what to write; anything else rolls back.
    match rest.recv().await {
        Some(Txn::Finish { writes, reply }) => {
            let done = tokio::time::timeout(OP_TIMEOUT, async {
                write(&tx, tables, writes).await?;
                tx.commit().await.map_err(db)
            })
            .await
            .unwrap_or(Err(StoreError::Timeout));
            let broken = done
                .as_ref()
                .is_err_and(|e| !matches!(e, StoreError::Database(_)));
            let _ = reply.send(done);
            (broken, None)
        }
        // The transform gave up waiting on this one and began another: this one rolls
        // back, the new one runs.
        Some(other) => {
            drop(tx);
            (false, Some(other))
        }
        None => (false, None),
    }
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(OP_TIMEOUT, f)
        .await
        .unwrap_or(Err(StoreError::Timeout))
}

/// Sends `r`; returns the error when it may have broken the connection.
fn finish<T>(
    reply: oneshot::Sender<Result<T, StoreError>>,
    r: Result<T, StoreError>,
) -> Option<StoreError> {
    let broke = match &r {
        Err(StoreError::Unreachable(m)) => Some(StoreError::Unreachable(m.clone())),
        Err(StoreError::Timeout) => Some(StoreError::Timeout),
        _ => None,
    };
    let _ = reply.send(r);
    broke
}

fn refuse(t: Txn, e: StoreError) {
    match t {
        Txn::Lock { reply, .. } | Txn::Claim { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Txn::Finish { reply, .. } => {
            let _ = reply.send(Err(e));
        }
    }
}

impl ApiJob {
    fn refuse(self, e: StoreError) {
        match self {
            Self::List { reply, .. } => drop(reply.send(Err(e))),
            Self::Find { reply, .. } => drop(reply.send(Err(e))),
            Self::Timeline { reply, .. } => drop(reply.send(Err(e))),
            Self::Create { reply, .. } => drop(reply.send(Err(e))),
            Self::Change { reply, .. } => drop(reply.send(Err(e))),
            Self::Stats { reply } => drop(reply.send(Err(e))),
        }
    }
}
