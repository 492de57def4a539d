//! Rows per second into PostgreSQL: the `postgres` sink (generator → sink, batches of
//! 500 joined up to 5,000 per transaction, each copied straight into the table) next to
//! a plain `COPY` of the same rows (the same columns and values the sink writes: the
//! whole event as the payload, its time), in one transaction, into a table made as the
//! sink makes its events table (the same check and the same two indexes besides the
//! key), in the same run.
//!
//! `cargo bench --bench postgres` measures 50,000 rows; under `cargo test` it runs a
//! small round. Needs the server at 127.0.0.1:5432 (`.ci/run` starts it).

use std::path::PathBuf;
use std::time::Instant;

use futures_util::SinkExt;
use sluice::config::load_texts;
use sluice::telemetry::Telemetry;
use sluice::topology::{self, TopologyOptions};
use tokio_postgres::NoTls;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn rows(n: u64) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("6f1c2f64-0c9e-4a9f-9d8f-{i:012}"),
                format!("disk almost full {i}"),
            )
        })
        .collect()
}

async fn copy(client: &tokio_postgres::Client, schema: &str, n: u64) -> f64 {
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.copied (id UUID PRIMARY KEY, event_type TEXT NOT NULL CHECK (event_type IN ('log','metric','trace','alert')), source TEXT NOT NULL, message TEXT, level TEXT, tags JSONB NOT NULL DEFAULT '{{}}', payload JSONB NOT NULL DEFAULT '{{}}', timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(), created_at TIMESTAMPTZ NOT NULL DEFAULT NOW());
             CREATE INDEX ON {schema}.copied (event_type, timestamp);
             CREATE INDEX ON {schema}.copied (source, timestamp);"
        ))
        .await
        .expect("table");
    let started = Instant::now();
    let sink = client
        .copy_in(&format!("COPY {schema}.copied (id, event_type, source, message, level, tags, payload, timestamp) FROM STDIN"))
        .await
        .expect("copy");
    futures_util::pin_mut!(sink);
    let mut buf = String::new();
    for (id, message) in rows(n) {
        buf.push_str(&format!(
            "{id}\talert\tbench\t{message}\thigh\t{{\"team\":\"core\"}}\t{{\"event_type\":\"alert\",\"labels\":{{\"team\":\"core\"}},\"severity\":\"high\",\"source\":\"bench\",\"summary\":\"{message}\"}}\t2026-12-06T10:00:00.123456789+00:00\n"
        ));
        if buf.len() > 1 << 20 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut buf)))
                .await
                .expect("send");
        }
    }
    sink.send(bytes::Bytes::from(buf)).await.expect("send");
    sink.finish().await.expect("finish");
    n as f64 / started.elapsed().as_secs_f64()
}

async fn sluice_rows(schema: &str, n: u64) -> f64 {
    let yaml = format!(
        "sources:\n  gen: {{ type: generator, count: {n}, batch_size: 500, format: '{{\"event_type\": \"alert\", \"source\": \"bench\", \"summary\": \"disk almost full {{{{seq}}}}\", \"severity\": \"high\", \"labels\": {{\"team\": \"core\"}}}}' }}\nsinks:\n  db: {{ type: postgres, inputs: [gen], url: \"{URL}\", schema: {schema}, buffer: {{ max_events: 5000 }} }}\n"
    );
    // No `id` field: the sink derives a stable UUID from each event's content.
    let p = load_texts(&[(PathBuf::from("bench.yaml"), yaml)], |_| None).expect("valid");
    let started = Instant::now();
    let mut running = topology::start(p, Telemetry::new(), &TopologyOptions::default())
        .await
        .expect("starts");
    running.finished().await;
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let n: u64 = if measuring { 50_000 } else { 500 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, connection) = match tokio_postgres::connect(URL, NoTls).await {
            Ok(c) => c,
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("PostgreSQL unreachable: {e}")
            }
            Err(e) => {
                eprintln!("skipping the postgres bench: {e}");
                return;
            }
        };
        tokio::spawn(connection);
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("schema");
        let copied = copy(&client, &schema, n).await;
        let sluiced = sluice_rows(&schema, n).await;
        let stored: i64 = client
            .query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(stored as u64, n, "every row stored");
        println!(
            "postgres rows/s ({n} rows): COPY {copied:.0}, sluice {sluiced:.0}, ratio {:.2}",
            sluiced / copied
        );
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop");
    });
}
