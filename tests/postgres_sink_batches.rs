//! How the `postgres` sink writes batches, against the machine's real PostgreSQL
//! (127.0.0.1:5432, user postgres, database test), one fresh schema per test: the COPY
//! path agrees with the JSONB path, follows a table changed while sluice runs, and
//! joins queued batches. Under CI=true an unreachable server fails the tests;
//! elsewhere they are skipped with a printed reason.

mod common;

use std::time::Duration;

use common::postgres::{URL, database, drop_schema};
use common::{parse, start_with};
use sluice::testing::CaptureSink;
use sluice::topology::{Topology, TopologyOptions};

/// Records how each statement that writes `{schema}.{table}` wrote it, in
/// `{schema}.paths`: `copy` (a `COPY` straight into the table), `staged` (moved from the
/// COPY path's staging table) or `jsonb` (through `jsonb_populate_recordset`). A
/// statement rolled back leaves no record.
async fn record_paths(db: &tokio_postgres::Client, schema: &str, tables: &[&str]) {
    db.batch_execute(&format!(
        "CREATE TABLE {schema}.paths (t text, path text, at serial);
         CREATE FUNCTION {schema}.record_path() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO {schema}.paths (t, path) VALUES (TG_TABLE_NAME, CASE
             WHEN current_query() LIKE 'COPY %' THEN 'copy'
             WHEN current_query() LIKE '%sluice_staging%' THEN 'staged'
             WHEN current_query() LIKE '%jsonb_populate_recordset%' THEN 'jsonb'
             ELSE current_query() END); RETURN NULL; END $$;"
    ))
    .await
    .expect("paths");
    for t in tables {
        db.batch_execute(&format!(
            "CREATE TRIGGER path AFTER INSERT ON {schema}.{t} FOR EACH STATEMENT EXECUTE FUNCTION {schema}.record_path()"
        ))
        .await
        .expect("trigger");
    }
}

async fn paths(db: &tokio_postgres::Client, schema: &str, table: &str) -> Vec<String> {
    db.query(
        &format!("SELECT path FROM {schema}.paths WHERE t = $1 ORDER BY at"),
        &[&table],
    )
    .await
    .expect("paths")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A webhook (`POST /e`) into a `postgres` sink writing `{schema}.t` with `columns`,
/// and its dead letter.
async fn webhook_into_t(schema: &str, columns: &str) -> (Topology, u16, CaptureSink) {
    let port = common::free_port();
    let mut p = parse(&format!(
        r#"
sources:
  in: {{ type: webhook, address: "127.0.0.1:{port}", path: /e }}
sinks:
  db: {{ type: postgres, inputs: [in], url: "{URL}", schema: {schema}, table: t, create_table: false, columns: {{ {columns} }} }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["db.dead_letter"], 10);
    let (topo, _) = start_with(p, TopologyOptions::default()).await;
    common::wait_for_port(port).await;
    (topo, port, dead)
}

/// Posts one event to [`webhook_into_t`]'s webhook; its status.
async fn post(port: u16, body: serde_json::Value) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/e"))
        .json(&body)
        .send()
        .await
        .expect("POST")
        .status()
}

/// The COPY path (a table of scalar and `jsonb` columns) stores exactly what the JSONB
/// path stores (the same table with an array column, which keeps that path), for values
/// COPY's text format must escape and values a column reads through its type's input;
/// and the sink on the first table did go through COPY, straight into the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_path_stores_what_the_jsonb_path_stores() {
    let Some((db, schema)) = database().await else {
        return;
    };
    let marker = format!("m_{schema}");
    let cols = format!(
        "id uuid PRIMARY KEY, t text, j jsonb, n numeric, i integer, b boolean, ts timestamptz, v varchar(40), e {schema}.sev, raw bytea, {marker} text"
    );
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TYPE {schema}.sev AS ENUM ('low', 'high');
         CREATE TABLE {schema}.a ({cols}); CREATE TABLE {schema}.b ({cols}, arr text[]);"
    ))
    .await
    .expect("setup");
    record_paths(&db, &schema, &["a", "b"]).await;
    let columns = format!(
        "id: id, t: t, j: j, n: num, i: i, b: b, ts: ts, v: v, e: e, raw: raw, {marker}: marker"
    );
    let p = parse(&format!(
        r#"
sources:
  vals: {{ type: generator, count: 5, format: '{{"n": {{{{seq}}}}, "id": "6f1c2f64-0c9e-4a9f-9d8f-00000000000{{{{seq}}}}"}}' }}
  idle: {{ type: generator, rate: 1, format: '{{}}' }}
transforms:
  shape:
    type: remap
    inputs: [vals]
    source: |
      n = to_int!(.n)
      texts = ["tab\there", "line\nbreak\r\n", "back\\slash \\N", "ünïcödé ✓ \"q\"", ""]
      .t = get!(texts, [n])
      js = [{{"x": [1, "tab\t", null], "b": true}}, "s\\", null, 1.5, "\\N"]
      .j = get!(js, [n])
      nums = [1.25, "2.50", 9007199254740993, null, -0.5]
      .num = get!(nums, [n])
      .i = n * 10
      .b = if n == 1 || n == 3 {{ "false" }} else {{ true }}
      .ts = if n == 1 {{ "2026-11-21 11:00:00+02" }} else {{ t'2026-11-21T10:00:00.123456Z' }}
      .v = "short\t{{v}}"
      .e = if n == 2 {{ "low" }} else {{ "high" }}
      .raw = "\\x4142"
      .marker = "m"
      .arr = ["x", "y,z"]
  quiet: {{ type: filter, inputs: [idle], condition: 'false' }}
sinks:
  a: {{ type: postgres, inputs: [shape, quiet], url: "{URL}", schema: {schema}, table: a, create_table: false, columns: {{ {columns} }} }}
  b: {{ type: postgres, inputs: [shape, quiet], url: "{URL}", schema: {schema}, table: b, create_table: false, columns: {{ {columns}, arr: arr }} }}
"#
    ));
    let (topo, _) = start_with(p, TopologyOptions::default()).await;
    let count = |t: &'static str| {
        let (db, schema) = (&db, &schema);
        async move {
            db.query_one(&format!("SELECT count(*) FROM {schema}.{t}"), &[])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    for _ in 0..200 {
        if count("a").await == 5 && count("b").await == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!((count("a").await, count("b").await), (5, 5));
    let (a, b) = (
        paths(&db, &schema, "a").await,
        paths(&db, &schema, "b").await,
    );
    assert!(
        !a.is_empty() && a.iter().all(|p| p == "copy"),
        "sink a copied straight into its table: {a:?}"
    );
    assert!(
        !b.is_empty() && b.iter().all(|p| p == "jsonb"),
        "sink b (an array column) went through jsonb: {b:?}"
    );
    topo.stop(Duration::from_secs(5)).await;
    let rows = |t: &'static str| {
        let (db, schema) = (&db, &schema);
        async move {
            db.query(
                &format!("SELECT to_jsonb(x) - 'arr' FROM {schema}.{t} x ORDER BY id"),
                &[],
            )
            .await
            .expect("rows")
            .iter()
            .map(|r| r.get::<_, serde_json::Value>(0))
            .collect::<Vec<_>>()
        }
    };
    let (a, b) = (rows("a").await, rows("b").await);
    assert_eq!(a, b, "both paths store the same values");
    assert_eq!(a[0]["t"], "tab\there");
    assert_eq!(a[1]["t"], "line\nbreak\r\n");
    assert_eq!(a[2]["t"], "back\\slash \\N");
    assert_eq!(a[3]["t"], "ünïcödé ✓ \"q\"");
    assert_eq!(a[4]["t"], "", "an empty string is not NULL");
    assert_eq!(
        a[0]["j"],
        serde_json::json!({"x": [1, "tab\t", null], "b": true})
    );
    assert_eq!(a[1]["j"], "s\\");
    assert_eq!(a[2]["j"], serde_json::Value::Null);
    assert_eq!(a[4]["j"], "\\N", "a JSON string \\N is not NULL");
    assert_eq!(a[1]["n"], serde_json::json!(2.50));
    assert_eq!(a[2]["n"], serde_json::json!(9007199254740993u64));
    assert_eq!(a[1]["b"], false);
    assert_eq!(a[1]["ts"], "2026-11-21T09:00:00+00:00");
    assert_eq!(a[0]["ts"], "2026-11-21T10:00:00.123456+00:00");
    assert_eq!(a[0]["v"], "short\t{v}");
    assert_eq!(a[2]["e"], "low");
    assert_eq!(a[0]["raw"], "\\x4142");
    drop_schema(&db, &schema).await;
}

/// Columns' types changed while sluice runs (a migration). A batch that the old types
/// would still take (`"2"` into an integer, a time into a timestamptz) is written with
/// the new ones, as the JSONB path writes it (the text as sent, not converted through the
/// old type); one the old types would refuse is written too; nothing is dead-lettered;
/// and the next batches are copied with the new types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_altered_while_running_are_written_with_their_new_types() {
    let Some((db, schema)) = database().await else {
        return;
    };
    let (col, ts) = (format!("n_{schema}"), format!("ts_{schema}"));
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id text PRIMARY KEY, {col} integer, {ts} timestamptz);"
    ))
    .await
    .expect("setup");
    record_paths(&db, &schema, &["t"]).await;
    let (topo, port, dead) = webhook_into_t(&schema, &format!("id: id, {col}: n, {ts}: ts")).await;
    let post = |body| post(port, body);
    let time = "2024-01-01T00:00:00+05:00";
    assert_eq!(
        post(serde_json::json!({"id": "1", "n": 5, "ts": time})).await,
        200
    );
    db.batch_execute(&format!(
        "ALTER TABLE {schema}.t ALTER {col} TYPE text, ALTER {ts} TYPE text"
    ))
    .await
    .expect("alter");
    assert_eq!(
        post(serde_json::json!({"id": "2", "n": "02", "ts": time})).await,
        200
    );
    assert_eq!(
        post(serde_json::json!({"id": "3", "n": "three", "ts": time})).await,
        200
    );
    assert_eq!(
        post(serde_json::json!({"id": "4", "n": "four", "ts": time})).await,
        200
    );
    assert_eq!(
        paths(&db, &schema, "t").await,
        ["copy", "jsonb", "copy", "copy"],
        "the batch after the change through jsonb, then COPY with the new types"
    );
    topo.stop(Duration::from_secs(5)).await;
    let rows: Vec<(String, String, String)> = db
        .query(
            &format!("SELECT id, {col}, {ts} FROM {schema}.t ORDER BY id"),
            &[],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let row = |id: &str, n: &str, t: &str| (id.to_owned(), n.to_owned(), t.to_owned());
    assert_eq!(
        rows,
        [
            row("1", "5", "2023-12-31 19:00:00+00"),
            row("2", "02", time),
            row("3", "three", time),
            row("4", "four", time),
        ]
    );
    assert!(dead.values().is_empty(), "nothing dead-lettered");
    drop_schema(&db, &schema).await;
}

/// A batch with a row already in the table (a redelivery) fails the `COPY` straight
/// into the table and goes through the staging table's `ON CONFLICT DO NOTHING`: no
/// duplicate, nothing dead-lettered. The batch after it goes there too, and the one
/// after that is copied straight again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_row_goes_through_the_staging_table() {
    let Some((db, schema)) = database().await else {
        return;
    };
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id text PRIMARY KEY, n integer);"
    ))
    .await
    .expect("setup");
    record_paths(&db, &schema, &["t"]).await;
    let (topo, port, dead) = webhook_into_t(&schema, "id: id, n: n").await;
    for (id, n) in [("1", 1), ("1", 2), ("2", 3), ("3", 4)] {
        assert_eq!(post(port, serde_json::json!({"id": id, "n": n})).await, 200);
    }
    topo.stop(Duration::from_secs(5)).await;
    assert_eq!(
        paths(&db, &schema, "t").await,
        ["copy", "staged", "staged", "copy"]
    );
    let rows: Vec<(String, i32)> = db
        .query(&format!("SELECT id, n FROM {schema}.t ORDER BY id"), &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        [
            ("1".to_owned(), 1),
            ("2".to_owned(), 3),
            ("3".to_owned(), 4)
        ],
        "the first write of id 1 stands"
    );
    assert!(dead.values().is_empty(), "nothing dead-lettered");
    drop_schema(&db, &schema).await;
}

/// Batches that queued up while a transaction ran are joined into the next one, up to
/// `max_batch_rows`: a statement trigger with a transition table records how many rows
/// each INSERT wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_written_in_joined_batches_up_to_max_batch_rows() {
    let Some((db, schema)) = database().await else {
        return;
    };
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.t (n bigint PRIMARY KEY);
         CREATE TABLE {schema}.statements (rows bigint);
         CREATE FUNCTION {schema}.count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO {schema}.statements SELECT count(*) FROM new_rows; RETURN NULL; END $$;
         CREATE TRIGGER counted AFTER INSERT ON {schema}.t REFERENCING NEW TABLE AS new_rows
           FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_rows();"
    ))
    .await
    .expect("setup");
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 4000, batch_size: 100, format: '{{"n": {{{{seq}}}}}}' }}
sinks:
  db: {{ type: postgres, inputs: [gen], url: "{URL}", schema: {schema}, table: t, create_table: false, columns: {{ n: n }}, max_batch_rows: 1000, buffer: {{ max_events: 10000 }} }}
"#
    ));
    let (mut topo, _) = start_with(p, TopologyOptions::default()).await;
    topo.finished().await;
    let sizes: Vec<i64> = db
        .query(&format!("SELECT rows FROM {schema}.statements"), &[])
        .await
        .expect("statements")
        .iter()
        .map(|r| r.get(0))
        .filter(|&n: &i64| n > 0)
        .collect();
    assert_eq!(sizes.iter().sum::<i64>(), 4000, "every row once: {sizes:?}");
    assert!(
        sizes.len() < 40,
        "queued batches of 100 were joined: {sizes:?}"
    );
    assert!(
        sizes.iter().all(|&n| n <= 1099),
        "joining stops once 1000 rows are in hand: {sizes:?}"
    );
    drop_schema(&db, &schema).await;
}

#[test]
fn max_batch_rows_of_zero_is_refused_at_validate() {
    let mut p = parse(
        "sources:\n  gen: { type: generator }\nsinks:\n  db: { type: postgres, inputs: [gen], url: \"postgres://x@127.0.0.1/test\", max_batch_rows: 0 }\n",
    );
    let e = p.validate().expect_err("refused").to_string();
    assert!(e.contains("max_batch_rows") && e.contains("db"), "{e}");
}

/// A sink replaced while its write waits on a lock finishes the batch in hand, and hands
/// the batch it took ahead (received while writing) to its replacement: every row once,
/// the later ones written by the replacement's own connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_sink_hands_the_batch_it_took_ahead_to_its_replacement() {
    let Some((db, schema)) = database().await else {
        return;
    };
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.t (n bigint PRIMARY KEY);
         CREATE TABLE {schema}.statements (pid int, rows bigint);
         CREATE FUNCTION {schema}.count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO {schema}.statements SELECT pg_backend_pid(), count(*) FROM new_rows; RETURN NULL; END $$;
         CREATE TRIGGER counted AFTER INSERT ON {schema}.t REFERENCING NEW TABLE AS new_rows
           FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_rows();"
    ))
    .await
    .expect("setup");
    let pipeline = |rows: usize| {
        parse(&format!(
            r#"
sources:
  gen: {{ type: generator, count: 300, batch_size: 100, format: '{{"n": {{{{seq}}}}}}' }}
sinks:
  db: {{ type: postgres, inputs: [gen], url: "{URL}", schema: {schema}, table: t, create_table: false, columns: {{ n: n }}, max_batch_rows: {rows} }}
"#
        ))
    };
    // The table is locked before the sink's first write: that write waits while the
    // next batch is taken ahead.
    let (mut locker, _) = database().await.expect("a second connection");
    let lock = locker.transaction().await.expect("begin");
    lock.batch_execute(&format!("LOCK TABLE {schema}.t IN ACCESS EXCLUSIVE MODE"))
        .await
        .expect("lock");
    let options = TopologyOptions {
        drain_timeout: Duration::from_secs(10),
        ..TopologyOptions::default()
    };
    let (mut topo, _) = start_with(pipeline(100), options).await;
    let waiting = format!(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '{schema}.t'::regclass"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while db
        .query_one(&waiting, &[])
        .await
        .expect("pg_locks")
        .get::<_, i64>(0)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the sink never waited on the lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut next = pipeline(101);
    next.validate().expect("valid");
    let (changes, ()) = tokio::join!(topo.apply(next), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        lock.commit().await.expect("unlock");
    });
    let changes = changes.expect("reload");
    assert!(changes.aborted.is_empty(), "handed over, not aborted");
    topo.finished().await;
    let statements: Vec<(i32, i64)> = db
        .query(
            &format!("SELECT pid, rows FROM {schema}.statements WHERE rows > 0 ORDER BY ctid"),
            &[],
        )
        .await
        .expect("statements")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let count: i64 = db
        .query_one(&format!("SELECT count(DISTINCT n) FROM {schema}.t"), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 300, "every row once: {statements:?}");
    assert_eq!(
        statements.iter().map(|s| s.1).sum::<i64>(),
        300,
        "{statements:?}"
    );
    assert_eq!(statements[0].1, 100, "the batch in hand: {statements:?}");
    assert!(
        statements[1..].iter().all(|s| s.0 != statements[0].0),
        "the rest was written by the replacement: {statements:?}"
    );
    drop_schema(&db, &schema).await;
}
