//! The `postgres` sink against the machine's real PostgreSQL (127.0.0.1:5432, user
//! postgres, database test), one fresh schema per test. Under CI=true an unreachable
//! server fails the tests; elsewhere they are skipped with a printed reason.

mod common;

use std::time::Duration;

use common::postgres::{URL, database, drop_schema};
use common::{parse, start_with};
use sluice::testing::CaptureSink;
use sluice::topology::TopologyOptions;

#[tokio::test]
async fn rows_land_typed_and_redelivery_adds_no_duplicates_and_bad_rows_are_dead_lettered() {
    let Some((db, schema)) = database().await else {
        return;
    };
    let yaml = format!(
        r#"
sources:
  alerts: {{ type: generator, count: 3, format: '{{"id": "6f1c2f64-0c9e-4a9f-9d8f-{{{{seq}}}}00000000000", "event_type": "alert", "source": "grafana", "summary": "disk {{{{seq}}}}", "severity": "high", "labels": {{"team": "core"}}, "time": "2026-11-21T10:00:0{{{{seq}}}}Z"}}' }}
  derived: {{ type: generator, count: 2, format: '{{"summary": "no id {{{{seq}}}}"}}' }}
  bad: {{ type: generator, count: 1, format: '{{"event_type": "bogus", "summary": "violates the check"}}' }}
  bad_time: {{ type: generator, count: 1, format: '{{"summary": "not a time", "time": "yesterday-ish"}}' }}
sinks:
  db: {{ type: postgres, inputs: [alerts, derived, bad, bad_time], url: "{URL}", schema: {schema} }}
"#
    );
    for _ in 0..2 {
        let mut p = parse(&yaml);
        let dead = CaptureSink::default();
        dead.attach(&mut p, "dead", &["db.dead_letter"], 10);
        let (mut topo, _) = start_with(p, TopologyOptions::default()).await;
        topo.finished().await;
        let errors: Vec<String> = dead
            .values()
            .iter()
            .map(|v| {
                serde_json::to_value(v).expect("json")["dead_letter"]["error"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(
            errors.len(),
            2,
            "the check violation and the bad timestamp: {errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("check constraint")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("yesterday-ish")),
            "a bad value is dead-lettered, not retried: {errors:?}"
        );
    }
    let rows = db
        .query(
            &format!("SELECT id::text, event_type, source, message, level, tags, payload, timestamp::text FROM {schema}.events ORDER BY message"),
            &[],
        )
        .await
        .expect("query");
    assert_eq!(rows.len(), 5, "5 good events, written twice, stored once");
    let first = &rows[0];
    assert_eq!(
        first.get::<_, String>(0),
        "6f1c2f64-0c9e-4a9f-9d8f-000000000000"
    );
    assert_eq!(first.get::<_, String>(1), "alert");
    assert_eq!(first.get::<_, String>(2), "grafana");
    assert_eq!(first.get::<_, String>(3), "disk 0");
    assert_eq!(first.get::<_, String>(4), "high");
    assert_eq!(
        first.get::<_, serde_json::Value>(5),
        serde_json::json!({"team": "core"})
    );
    assert_eq!(first.get::<_, serde_json::Value>(6)["summary"], "disk 0");
    assert_eq!(first.get::<_, String>(7), "2026-11-21 10:00:00+00");
    let derived: Vec<&tokio_postgres::Row> = rows
        .iter()
        .filter(|r| r.get::<_, String>(3).starts_with("no id"))
        .collect();
    assert_eq!(derived.len(), 2);
    assert!(
        derived
            .iter()
            .all(|r| r.get::<_, String>(1) == "log" && r.get::<_, String>(2) == "derived")
    );
    drop_schema(&db, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_backend_mid_stream_loses_nothing() {
    let Some((db, schema)) = database().await else {
        return;
    };
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, rate: 4000, count: 4000, batch_size: 50, format: '{{"n": {{{{seq}}}}, "summary": "row {{{{seq}}}}"}}' }}
sinks:
  killed_db:
    type: postgres
    inputs: [gen]
    url: "{URL}"
    schema: {schema}
    failure_handling: {{ initial_backoff: 10ms, max_backoff: 100ms, max_retries: 1000 }}
"#
    ));
    let (mut topo, _) = start_with(p, TopologyOptions::default()).await;
    let mut killed = 0u64;
    let killer = async {
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            let rows = db
                .query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sluice:killed_db'", &[])
                .await
                .expect("terminate");
            killed += rows.len() as u64;
        }
    };
    let ((), ()) = tokio::join!(killer, topo.finished());
    assert!(killed > 0, "the test did kill connections");
    let count: i64 = db
        .query_one(
            &format!("SELECT count(DISTINCT payload->>'n') FROM {schema}.events"),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    let total: i64 = db
        .query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        (count, total),
        (4000, 4000),
        "every event once ({killed} backends killed)"
    );
    drop_schema(&db, &schema).await;
}

#[tokio::test]
async fn user_tables_and_retention() {
    let Some((db, schema)) = database().await else {
        return;
    };
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.alerts (fp TEXT PRIMARY KEY, severity TEXT, body JSONB, \"timestamp\" TIMESTAMPTZ NOT NULL);
         INSERT INTO {schema}.alerts VALUES ('old', 'low', '{{}}', NOW() - INTERVAL '40 days');"
    ))
    .await
    .expect("setup");
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 2, format: '{{"fingerprint": "fp{{{{seq}}}}", "severity": "critical", "time": "2026-11-21T10:00:00Z"}}' }}
sinks:
  db:
    type: postgres
    inputs: [gen]
    url: "{URL}"
    schema: {schema}
    table: alerts
    create_table: false
    retention_days: 30
    columns: {{ fp: fingerprint, severity: severity, body: ".", timestamp: time }}
"#
    ));
    let (mut topo, _) = start_with(p, TopologyOptions::default()).await;
    topo.finished().await;
    let rows = db
        .query(
            &format!("SELECT fp, severity, body->>'fingerprint' FROM {schema}.alerts ORDER BY fp"),
            &[],
        )
        .await
        .expect("query");
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("fp0".into(), "critical".into(), "fp0".into()),
            ("fp1".into(), "critical".into(), "fp1".into()),
        ],
        "the 40-day-old row is gone with retention_days: 30"
    );
    drop_schema(&db, &schema).await;
}

#[tokio::test]
async fn the_example_webhooks_to_postgres_pipeline_stores_posted_alerts() {
    let Some((db, schema)) = database().await else {
        return;
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines/webhooks-to-postgres.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    let port = common::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let (address, dead_dir) = (
        format!("127.0.0.1:{port}"),
        dir.path().display().to_string(),
    );
    let p = sluice::config::parse_texts(&[(path, text)], |name| match name {
        "ALERTS_ADDRESS" => Some(address.clone()),
        "EVENTS_SCHEMA" => Some(schema.clone()),
        "DEAD_LETTER_DIR" => Some(dead_dir.clone()),
        _ => None,
    })
    .expect("parses");
    let (topo, _) = start_with(p, TopologyOptions::default()).await;
    common::wait_for_port(port).await;
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/alerts"))
        .json(&serde_json::json!({"summary": "disk full", "severity": "high", "labels": {"team": "core"}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200, "answered once the row is committed");
    let row = db
        .query_one(
            &format!("SELECT event_type, source, message, level, tags FROM {schema}.events"),
            &[],
        )
        .await
        .expect("one row");
    assert_eq!(row.get::<_, String>(0), "alert");
    assert_eq!(row.get::<_, String>(1), "webhook");
    assert_eq!(row.get::<_, String>(2), "disk full");
    assert_eq!(row.get::<_, String>(3), "high");
    assert_eq!(
        row.get::<_, serde_json::Value>(4),
        serde_json::json!({"team": "core"})
    );
    topo.stop(Duration::from_secs(5)).await;
    drop_schema(&db, &schema).await;
}

/// An event in the monitoring system's own shape round-trips unchanged: its `tags`,
/// `payload` and `timestamp` land in their columns, and the `postgres` source reads the
/// row back as the same event. Any other event is stored whole, with its `event_type`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_in_the_monitoring_systems_shape_round_trips_unchanged() {
    let Some((db, schema)) = database().await else {
        return;
    };
    let original = serde_json::json!({
        "id": "0b6f3e52-7c1a-4a5e-9a43-5d2b8e1f0c11",
        "event_type": "metric", "source": "billing", "message": "queue depth",
        "level": "warning", "tags": {"region": "eu-west-1", "team": "pay"},
        "payload": {"name": "queue_depth", "value": 41.5, "labels": {"q": "invoices"}},
        "timestamp": "2026-11-30T08:15:00Z",
    });
    let line = serde_json::to_string(&original).expect("json");
    let format = line.replace('\'', "''");
    let p = parse(&format!(
        r#"
sources:
  shaped: {{ type: generator, count: 1, format: '{format}' }}
  plain: {{ type: generator, count: 1, format: '{{"summary": "a plain log", "labels": {{"team": "ops"}}}}' }}
sinks:
  db: {{ type: postgres, inputs: [shaped, plain], url: "{URL}", schema: {schema} }}
"#
    ));
    let (mut topo, _) = start_with(p, TopologyOptions::default()).await;
    topo.finished().await;
    let row = db
        .query_one(
            &format!("SELECT tags, payload, timestamp = '2026-11-30T08:15:00Z'::timestamptz FROM {schema}.events WHERE source = 'billing'"),
            &[],
        )
        .await
        .expect("the shaped row");
    assert_eq!(row.get::<_, serde_json::Value>(0), original["tags"]);
    assert_eq!(row.get::<_, serde_json::Value>(1), original["payload"]);
    assert!(
        row.get::<_, bool>(2),
        "the event's own time, not the time of receipt"
    );
    let plain = db
        .query_one(
            &format!("SELECT tags, payload FROM {schema}.events WHERE source = 'plain'"),
            &[],
        )
        .await
        .expect("the plain row");
    assert_eq!(
        plain.get::<_, serde_json::Value>(0),
        serde_json::json!({"team": "ops"})
    );
    assert_eq!(
        plain.get::<_, serde_json::Value>(1),
        serde_json::json!({"summary": "a plain log", "labels": {"team": "ops"}, "event_type": "log"})
    );

    // Read back by the postgres source: the same events.
    let rx = common::Receiver::new(0).start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = parse(&format!(
        r#"
sources:
  history: {{ type: postgres, url: "{URL}", schema: {schema}, backfill: {{ max_age: 3650d }} }}
sinks:
  out: {{ type: http, inputs: [history], url: "http://127.0.0.1:{}/", encoding: ndjson, batch: {{ timeout: 10ms }} }}
"#,
        rx.port
    ));
    let options = TopologyOptions {
        data_dir: dir.path().to_path_buf(),
        ..TopologyOptions::default()
    };
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    let mut events: Vec<serde_json::Value> = rx
        .requests()
        .iter()
        .flat_map(|r| {
            String::from_utf8_lossy(&r.body)
                .lines()
                .map(|l| serde_json::from_str(l).expect("json"))
                .collect::<Vec<serde_json::Value>>()
        })
        .collect();
    events.sort_by_key(|e| e["source"].as_str().unwrap_or_default().to_owned());
    assert_eq!(events.len(), 2);
    let mut back = events[0].clone();
    assert_eq!(back["timestamp"], "2026-11-30T08:15:00Z");
    back["timestamp"] = original["timestamp"].clone();
    assert_eq!(back, original, "the shaped event, unchanged");
    assert_eq!(events[1]["summary"], "a plain log", "the plain one, whole");
    assert_eq!(events[1]["source"], "plain");
    drop_schema(&db, &schema).await;
}
