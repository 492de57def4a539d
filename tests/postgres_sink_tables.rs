//! The `postgres` sink on tables whose kind or constraints change how a batch may be
//! written, against the machine's real PostgreSQL (127.0.0.1:5432, user postgres,
//! database test), one fresh schema per test: a partitioned table, an identity column
//! `GENERATED ALWAYS`, a deferrable unique constraint. Under CI=true an unreachable
//! server fails the tests; elsewhere they are skipped with a printed reason.

mod common;

use std::time::Duration;

use common::postgres::{URL, database, drop_schema};
use common::{parse, start_with};
use sluice::testing::CaptureSink;
use sluice::topology::TopologyOptions;

/// A lock on one partition (maintenance such as `REINDEX` or `VACUUM FULL` takes one)
/// does not stop rows bound for another: the sink locks the partitioned table only, as
/// an `INSERT` does, not each of its partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_partition_does_not_stop_rows_bound_for_another() {
    let Some((db, schema)) = database().await else {
        return;
    };
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.p (k text, part text, PRIMARY KEY (k, part)) PARTITION BY LIST (part);
         CREATE TABLE {schema}.p_a PARTITION OF {schema}.p FOR VALUES IN ('a');
         CREATE TABLE {schema}.p_b PARTITION OF {schema}.p FOR VALUES IN ('b');"
    ))
    .await
    .expect("setup");
    let (mut locker, _) = database().await.expect("a second connection");
    let lock = locker.transaction().await.expect("begin");
    lock.batch_execute(&format!("LOCK TABLE {schema}.p_b IN ACCESS EXCLUSIVE MODE"))
        .await
        .expect("lock");
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 3, format: '{{"k": "k{{{{seq}}}}", "part": "a"}}' }}
sinks:
  db: {{ type: postgres, inputs: [gen], url: "{URL}", schema: {schema}, table: p, create_table: false, columns: {{ k: k, part: part }} }}
"#
    ));
    let (mut topo, _) = start_with(p, TopologyOptions::default()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows: i64 = db
            .query_one(&format!("SELECT count(*) FROM {schema}.p_a"), &[])
            .await
            .expect("count")
            .get(0);
        if rows == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rows for partition a waited on the lock of partition b ({rows} of 3 written)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lock.commit().await.expect("unlock");
    topo.finished().await;
    drop_schema(&db, &schema).await;
}

/// Runs `count` events made from the generator `format` into `table` and returns what
/// reached the dead letter.
async fn dead_lettered(
    schema: &str,
    table: &str,
    columns: &str,
    format: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: {count}, format: '{format}' }}
sinks:
  db: {{ type: postgres, inputs: [gen], url: "{URL}", schema: {schema}, table: {table}, create_table: false, columns: {{ {columns} }} }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["db.dead_letter"], 10);
    let (mut topo, _) = start_with(p, TopologyOptions::default()).await;
    topo.finished().await;
    dead.values()
        .iter()
        .map(|v| serde_json::to_value(v).expect("json"))
        .collect()
}

/// An identity column `GENERATED ALWAYS` refuses a value from an `INSERT`; `COPY` would
/// take it. The sink never copies into such a column directly, so the row goes to the
/// dead letter with the server's reason whichever path its batch took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_for_an_always_identity_column_is_refused_as_insert_refuses_it() {
    let Some((db, schema)) = database().await else {
        return;
    };
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.c (k text PRIMARY KEY, i bigint GENERATED ALWAYS AS IDENTITY, msg text);"
    ))
    .await
    .expect("setup");
    let dead = dead_lettered(
        &schema,
        "c",
        "k: k, i: i, msg: msg",
        r#"{"k": "x{{seq}}", "i": 42}"#,
        2,
    )
    .await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead.iter().all(|d| d["dead_letter"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("non-DEFAULT"))),
        "{dead:?}"
    );
    let rows: i64 = db
        .query_one(&format!("SELECT count(*) FROM {schema}.c"), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 0);
    drop_schema(&db, &schema).await;
}

/// `ON CONFLICT` refuses a table with a deferrable unique constraint, and `COPY` does
/// not: the sink never copies into such a table directly, so every row meets the same
/// refusal (the dead letter, with the server's reason) instead of depending on the path
/// its batch happened to take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_with_a_deferrable_unique_constraint_gets_one_answer_for_every_row() {
    let Some((db, schema)) = database().await else {
        return;
    };
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.d (k text PRIMARY KEY, msg text, UNIQUE (msg) DEFERRABLE INITIALLY DEFERRED);"
    ))
    .await
    .expect("setup");
    let dead = dead_lettered(
        &schema,
        "d",
        "k: k, msg: msg",
        r#"{"k": "{{seq}}", "msg": "m{{seq}}"}"#,
        2,
    )
    .await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead.iter().all(|d| d["dead_letter"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("deferrable"))),
        "{dead:?}"
    );
    drop_schema(&db, &schema).await;
}
