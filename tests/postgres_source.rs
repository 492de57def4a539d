//! Backfill from the real PostgreSQL into a real HTTP receiver: exactly once, paced,
//! bounded by age and count, resumable, and with its progress published.

mod common;

use std::time::{Duration, Instant};

use common::postgres::URL;
use common::{Receiver, parse, start_with};
use sluice::telemetry::Telemetry;
use sluice::telemetry::snapshot::{BackfillFill, snapshot};
use sluice::topology::TopologyOptions;

async fn seeded(rows: i64, old: i64) -> Option<(tokio_postgres::Client, String)> {
    let (db, schema) = common::postgres::database().await?;
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.events (id UUID PRIMARY KEY, event_type TEXT NOT NULL, source TEXT NOT NULL, message TEXT,
           level TEXT, tags JSONB NOT NULL DEFAULT '{{}}', payload JSONB NOT NULL DEFAULT '{{}}',
           timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(), created_at TIMESTAMPTZ NOT NULL DEFAULT NOW());
         INSERT INTO {schema}.events (id, event_type, source, message, payload, timestamp)
           SELECT gen_random_uuid(), 'alert', 'seed', 'row ' || i, jsonb_build_object('n', i), NOW() - ((100000 - i) || ' milliseconds')::interval
           FROM generate_series(1, {rows}) i;
         INSERT INTO {schema}.events (id, event_type, source, message, payload, timestamp)
           SELECT gen_random_uuid(), 'alert', 'seed', 'old ' || i, jsonb_build_object('n', -i), NOW() - INTERVAL '40 days'
           FROM generate_series(1, {old}) i;"
    ))
    .await
    .expect("seed");
    Some((db, schema))
}

fn ns(rx: &Receiver) -> Vec<i64> {
    // The seeded rows are in the monitoring system's shape: the data is the payload.
    common::ndjson_ints(&rx.requests(), "/payload/n")
}

fn pipeline(schema: &str, port: u16, backfill: &str) -> sluice::config::Pipeline {
    parse(&format!(
        r#"
sources:
  history: {{ type: postgres, url: "{URL}", schema: {schema}, backfill: {{ {backfill} }} }}
sinks:
  out: {{ type: http, inputs: [history], url: "http://127.0.0.1:{port}/", encoding: ndjson, batch: {{ max_events: 500, timeout: 10ms }} }}
"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_rows_arrive_exactly_once_and_old_rows_stay_out() {
    let Some((db, schema)) = seeded(50_000, 10).await else {
        return;
    };
    let rx = Receiver::new(0).start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let options = TopologyOptions {
        data_dir: dir.path().to_path_buf(),
        ..TopologyOptions::default()
    };
    let p = pipeline(
        &schema,
        rx.port,
        "max_age: 30d, batch_size: 1000, rate_limit: 1000000",
    );
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    assert_eq!(
        ns(&rx),
        (1..=50_000).collect::<Vec<_>>(),
        "each row once; the 40-day-old rows are past max_age"
    );
    let _ = db
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
}

/// `(done, total)` of the `history` source, as `GET /components` serves it.
fn backfill(t: &Telemetry) -> Option<(u64, u64)> {
    snapshot(t)
        .components
        .iter()
        .find(|c| c.id == "history")?
        .backfill
        .map(|BackfillFill { done, total }| (done, total))
}

#[tokio::test]
async fn progress_is_counted_at_start_and_reaches_all_rows() {
    let Some((db, schema)) = seeded(2000, 5).await else {
        return;
    };
    let rx = Receiver::new(0).start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let options = TopologyOptions {
        data_dir: dir.path().to_path_buf(),
        ..TopologyOptions::default()
    };
    // 250 at once, then 4000/s: about 440 ms of backfill to watch.
    let (mut topo, telemetry) = start_with(
        pipeline(&schema, rx.port, "batch_size: 250, rate_limit: 4000"),
        options,
    )
    .await;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = backfill(&telemetry);
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        if now == Some((2000, 2000)) {
            break;
        }
        assert!(Instant::now() < deadline, "never complete: {seen:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    topo.finished().await;
    assert_eq!(ns(&rx).len(), 2000);
    // Counted before the first batch (the 5 rows past max_age are not counted), then
    // advancing batch by batch.
    let midway: Vec<u64> = seen
        .iter()
        .flatten()
        .filter(|(done, total)| *total == 2000 && *done < 2000)
        .map(|(done, _)| *done)
        .collect();
    assert!(
        midway.len() >= 2 && midway.windows(2).all(|w| w[0] < w[1]),
        "progress was published along the way: {seen:?}"
    );
    assert!(
        seen.iter().flatten().all(|(done, total)| done <= total),
        "{seen:?}"
    );
    let metrics = telemetry.render_prometheus();
    assert!(
        metrics.contains("sluice_backfill_rows_done{component_id=\"history\",component_kind=\"source\",component_type=\"postgres\"} 2000\n"),
        "{metrics}"
    );
    let _ = db
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
}

#[tokio::test]
async fn the_rate_limit_paces_and_a_restart_resumes_where_it_stopped() {
    let Some((db, schema)) = seeded(3000, 0).await else {
        return;
    };
    let rx = Receiver::new(0).start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || TopologyOptions {
        data_dir: dir.path().to_path_buf(),
        ..TopologyOptions::default()
    };

    let started = Instant::now();
    let (mut topo, telemetry) = start_with(
        pipeline(
            &schema,
            rx.port,
            "max_events: 1000, batch_size: 250, rate_limit: 2000",
        ),
        options(),
    )
    .await;
    topo.finished().await;
    let took = started.elapsed();
    assert_eq!(ns(&rx), (1..=1000).collect::<Vec<_>>(), "max_events holds");
    assert_eq!(
        backfill(&telemetry),
        Some((1000, 1000)),
        "capped by max_events"
    );
    // 250 may pass at once; the other 750 at 2000/s take at least 375 ms.
    assert!(
        took >= Duration::from_millis(375),
        "paced by rate_limit: {took:?}"
    );

    // A restart with a larger cap resumes after the last delivered row.
    let (mut topo, telemetry) = start_with(
        pipeline(
            &schema,
            rx.port,
            "max_events: 2500, batch_size: 500, rate_limit: 1000000",
        ),
        options(),
    )
    .await;
    topo.finished().await;
    assert_eq!(
        ns(&rx),
        (1..=2500).collect::<Vec<_>>(),
        "rows 1001..=2500 added, none repeated"
    );
    assert_eq!(
        backfill(&telemetry),
        Some((2500, 2500)),
        "the rows of the first run count as done"
    );
    let _ = db
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
}

#[tokio::test]
async fn follow_keeps_polling_for_new_rows() {
    let Some((db, schema)) = seeded(10, 0).await else {
        return;
    };
    let rx = Receiver::new(0).start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let options = TopologyOptions {
        data_dir: dir.path().to_path_buf(),
        ..TopologyOptions::default()
    };
    let p = parse(&format!(
        r#"
sources:
  history: {{ type: postgres, url: "{URL}", schema: {schema}, follow: true, poll_interval: 50ms, backfill: {{ rate_limit: 100000 }} }}
sinks:
  out: {{ type: http, inputs: [history], url: "http://127.0.0.1:{}/", encoding: ndjson, batch: {{ max_events: 100, timeout: 10ms }} }}
"#,
        rx.port
    ));
    let (topo, _) = start_with(p, options).await;
    common::eventually("the first 10 rows", || ns(&rx).len() == 10).await;
    db.batch_execute(&format!(
        "INSERT INTO {schema}.events (id, event_type, source, payload, timestamp) VALUES (gen_random_uuid(), 'alert', 'late', '{{\"n\": 11}}', NOW())"
    ))
    .await
    .expect("insert");
    common::eventually("the row inserted later", || ns(&rx).len() == 11).await;
    assert_eq!(ns(&rx), (1..=11).collect::<Vec<_>>());
    assert_eq!(
        topo.stop(Duration::from_secs(5)).await,
        sluice::topology::Drained::Complete
    );
    let _ = db
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
}
