//! The Postgres end of `kafka → postgres`: a fresh schema whose `events` table stamps
//! each row with `clock_timestamp()` as it is inserted, read back after the run for
//! arrivals; and the `COPY` baseline into a twin table.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_postgres::{Client, NoTls};

use crate::cli::load::LoadError;
use crate::cli::load::marker::{FIELD, Mark};
use crate::cli::load::receiver::Recorder;

/// Where the bench's Postgres is: `$BENCH_PG_URL`, else the test server.
pub(crate) fn url() -> String {
    std::env::var("BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema for one run, dropped by [`Store::drop_schema`].
pub(crate) struct Store {
    client: Client,
    pub(crate) schema: String,
}

fn pg(e: tokio_postgres::Error) -> LoadError {
    LoadError::Postgres(e.to_string())
}

impl Store {
    pub(crate) async fn create() -> Result<Self, LoadError> {
        let (client, connection) = tokio_postgres::connect(&url(), NoTls).await.map_err(pg)?;
        tokio::spawn(connection);
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        // `id` is the driver's sequence number; `mark` the mark as text.
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.events (id bigint PRIMARY KEY, {FIELD} text NOT NULL,
                   arrived timestamptz NOT NULL DEFAULT clock_timestamp());
                 CREATE TABLE {schema}.copied (id bigint PRIMARY KEY, {FIELD} text NOT NULL,
                   arrived timestamptz NOT NULL DEFAULT clock_timestamp());"
            ))
            .await
            .map_err(pg)?;
        Ok(Self { client, schema })
    }

    pub(crate) async fn count(&self) -> Result<u64, LoadError> {
        let row = self
            .client
            .query_one(&format!("SELECT count(*) FROM {}.events", self.schema), &[])
            .await
            .map_err(pg)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// Waits until `expected` rows are in or `timeout` passes without a new row.
    pub(crate) async fn wait_for(
        &self,
        expected: u64,
        timeout: Duration,
    ) -> Result<u64, LoadError> {
        let (mut last, mut changed) = (0, Instant::now());
        loop {
            let n = self.count().await?;
            if n >= expected {
                return Ok(n);
            }
            if n != last {
                (last, changed) = (n, Instant::now());
            } else if changed.elapsed() > timeout {
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Feeds every stored row's mark and insert time to `recorder`.
    pub(crate) async fn record(&self, recorder: &Recorder) -> Result<(), LoadError> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {FIELD}, (extract(epoch FROM arrived) * 1000000)::bigint FROM {}.events",
                    self.schema
                ),
                &[],
            )
            .await
            .map_err(pg)?;
        for row in rows {
            let mark: String = row.get(0);
            let arrived_us: i64 = row.get(1);
            if let Some(m) = Mark::parse(&mark) {
                recorder.arrived(m, u64::try_from(arrived_us).unwrap_or(0) * 1_000);
            }
        }
        Ok(())
    }

    /// Rows/s of one `COPY` of `count` rows like the pipeline's into the twin table.
    pub(crate) async fn copy_baseline(&self, count: u64) -> Result<f64, LoadError> {
        let started = Instant::now();
        let sink = self
            .client
            .copy_in(&format!(
                "COPY {}.copied (id, {FIELD}) FROM STDIN",
                self.schema
            ))
            .await
            .map_err(pg)?;
        futures_util::pin_mut!(sink);
        let mut buf = String::new();
        for id in 0..count {
            buf.push_str(&format!("{id}\t{}\n", Mark::now(id).value()));
            if buf.len() > 1 << 20 {
                sink.send(bytes::Bytes::from(std::mem::take(&mut buf)))
                    .await
                    .map_err(pg)?;
            }
        }
        sink.send(bytes::Bytes::from(buf)).await.map_err(pg)?;
        sink.finish().await.map_err(pg)?;
        Ok(count as f64 / started.elapsed().as_secs_f64())
    }

    pub(crate) async fn drop_schema(self) -> Result<(), LoadError> {
        self.client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .await
            .map_err(pg)
    }
}
