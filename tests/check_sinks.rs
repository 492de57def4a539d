//! `sluice validate --check-sinks` against real endpoints on loopback: an HTTP receiver,
//! the machine's PostgreSQL, librdkafka's mock cluster, a Forward listener and folders.
//! Each sink's line says what answered, or which step failed, and never the secrets.

mod common;

use std::process::Output;

use common::{Receiver, Reply, postgres};

fn validate(pipeline: &str) -> (Output, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, pipeline).expect("write");
    let out = common::sluice()
        .args(["validate", "--check-sinks", "--check-timeout", "20s", "-c"])
        .arg(&path)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn line<'a>(text: &'a str, sink: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(&format!("sink `{sink}`")))
        .unwrap_or_else(|| panic!("no line for {sink} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reachable_sinks_say_what_answered() {
    let Some((client, schema)) = postgres::database().await else {
        return;
    };
    let receiver = Receiver::new(0).start().await;
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("alerts", 3, 1).expect("topic");
    let forward = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let forward_port = forward.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = forward.accept().await {
            drop(socket);
        }
    });
    let folder = tempfile::tempdir().expect("tempdir");
    let pipeline = format!(
        r#"
sources:
  in: {{ type: generator }}
sinks:
  hook:
    type: http
    inputs: [in]
    url: "http://127.0.0.1:{port}/events/{{{{ team }}}}"
    auth: {{ strategy: bearer, token: s3cret-token-value }}
  pages:
    type: pagerduty
    inputs: [in]
    routing_key: R0UT1NGKEY0000000000000000000000
    url: "http://127.0.0.1:{port}/v2/enqueue"
  rows:
    type: postgres
    inputs: [in]
    url: "{pg}"
    schema: {schema}
  bus:
    type: kafka
    inputs: [in]
    bootstrap_servers: "{bootstrap}"
    topic: alerts
  fwd:
    type: fluent
    inputs: [in]
    address: "127.0.0.1:{forward_port}"
    tag: app
  archive:
    type: file
    inputs: [in]
    path: "{folder}/new/%Y-%m-%d.log"
  screen:
    type: console
    inputs: [in]
"#,
        port = receiver.port,
        pg = postgres::URL,
        bootstrap = cluster.bootstrap_servers(),
        folder = folder.path().display(),
    );
    let (out, stdout, stderr) = validate(&pipeline);
    postgres::drop_schema(&client, &schema).await;
    assert!(out.status.success(), "{stdout}{stderr}");
    let hook = line(&stdout, "hook");
    assert!(
        hook.contains("reachable: 127.0.0.1:")
            && hook.contains("resolved (1 address)")
            && hook.contains("HEAD answered HTTP 200"),
        "{hook}"
    );
    // The HEAD carried the sink's credentials, to the URL cut at its template.
    let heads = receiver.requests();
    let head = heads
        .iter()
        .find(|r| r.path == "/events/")
        .expect("the HEAD to hook");
    assert_eq!(head.method, "HEAD");
    assert_eq!(
        head.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer s3cret-token-value")
    );
    assert!(
        line(&stdout, "pages").contains("HEAD answered HTTP 200"),
        "{stdout}"
    );
    let rows = line(&stdout, "rows");
    assert!(
        rows.contains("connected to `test` as `postgres`")
            && rows.contains(&format!("\"{schema}\".\"events\" will be created")),
        "{rows}"
    );
    assert!(
        line(&stdout, "bus").contains("1 broker(s) answered, topic `alerts` has 3 partition(s)"),
        "{stdout}"
    );
    assert!(line(&stdout, "fwd").contains("connected"), "{stdout}");
    assert!(
        line(&stdout, "archive").contains("will be created in"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "screen").contains("nothing outside sluice to reach"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret-token-value") && !stderr.contains("s3cret-token-value"));
    // Nothing was written or created by the checks.
    assert!(!folder.path().join("new").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failing_step_is_named_and_the_exit_code_is_69() {
    let Some((client, schema)) = postgres::database().await else {
        return;
    };
    let refusing = Receiver::new(0).start().await;
    refusing.set_fallback(Reply::status(401));
    let closed = common::free_port();
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let not_a_folder = tempfile::NamedTempFile::new().expect("file");
    let links = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(links.path().join("nowhere"), links.path().join("dangling"))
        .expect("symlink");
    let pipeline = format!(
        r#"
sources:
  in: {{ type: generator }}
sinks:
  refused:
    type: http
    inputs: [in]
    url: "http://127.0.0.1:{port}/in"
    auth: {{ strategy: basic, user: alice, password: wrong-password-value }}
  closed:
    type: slack
    inputs: [in]
    webhook_url: "http://127.0.0.1:{closed}/services/T000/B000/secretpathvalue"
  nowhere:
    type: http
    inputs: [in]
    url: "https://no-such-host.invalid/in"
  rows:
    type: postgres
    inputs: [in]
    url: "{pg}"
    schema: {schema}
    create_table: false
  bus:
    type: kafka
    inputs: [in]
    bootstrap_servers: "{bootstrap}"
    topic: missing-topic
  archive:
    type: file
    inputs: [in]
    path: "{file}/sub/out.log"
  through_a_dead_link:
    type: file
    inputs: [in]
    path: "{links}/dangling/sub/out.log"
"#,
        port = refusing.port,
        pg = postgres::URL,
        bootstrap = cluster.bootstrap_servers(),
        file = not_a_folder.path().display(),
        links = links.path().display(),
    );
    let (out, stdout, stderr) = validate(&pipeline);
    postgres::drop_schema(&client, &schema).await;
    assert_eq!(out.status.code(), Some(69), "{stdout}{stderr}");
    assert!(
        stderr.contains("7 of 7 sink(s) cannot be reached"),
        "{stderr}"
    );
    for (sink, said) in [
        (
            "refused",
            "refused the credentials (HTTP 401 to a HEAD request)".to_owned(),
        ),
        ("closed", format!("cannot connect to 127.0.0.1:{closed}")),
        (
            "nowhere",
            "cannot resolve `no-such-host.invalid`".to_owned(),
        ),
        (
            "rows",
            "does not exist and create_table is false".to_owned(),
        ),
        ("bus", "topic `missing-topic` does not exist".to_owned()),
        ("archive", "is not a folder".to_owned()),
        (
            "through_a_dead_link",
            "dangling` is not a folder".to_owned(),
        ),
    ] {
        let l = line(&stderr, sink);
        assert!(l.starts_with("error: ") && l.contains(&said), "{sink}: {l}");
    }
    for secret in ["wrong-password-value", "secretpathvalue"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked"
        );
    }
}

#[test]
fn check_timeout_needs_check_sinks() {
    let out = common::sluice()
        .args(["validate", "--check-timeout", "5s"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--check-sinks"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_zero_check_timeout_is_refused() {
    let out = common::sluice()
        .args(["validate", "--check-sinks", "--check-timeout", "0s"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must be more than 0"), "{stderr}");
}

/// A role that may only INSERT into an existing table (no CREATE on the database): the
/// check says so, and the sink writes its rows (it no longer runs `CREATE SCHEMA IF NOT
/// EXISTS`, whose privilege check fails first). The same role cannot create a missing
/// table, which the check names before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_may_only_insert_is_checked_and_writes() {
    let Some((client, schema)) = postgres::database().await else {
        return;
    };
    let role = format!("r_{}", &schema[2..14]);
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             CREATE SCHEMA {schema};
             CREATE TABLE {schema}.events (
               id UUID PRIMARY KEY, event_type TEXT NOT NULL, source TEXT NOT NULL,
               message TEXT, level TEXT, tags JSONB NOT NULL DEFAULT '{{}}',
               payload JSONB NOT NULL DEFAULT '{{}}',
               timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(),
               created_at TIMESTAMPTZ NOT NULL DEFAULT NOW());
             GRANT USAGE ON SCHEMA {schema} TO {role};
             GRANT INSERT ON {schema}.events TO {role};"
        ))
        .await
        .expect("role and table");
    let url = format!("postgres://{role}@127.0.0.1:5432/test");
    let pipeline = format!(
        r#"
sources:
  in: {{ type: generator, count: 3, format: '{{"event_type": "alert", "source": "grafana", "summary": "disk {{{{seq}}}}"}}' }}
sinks:
  rows: {{ type: postgres, inputs: [in], url: "{url}", schema: {schema} }}
  elsewhere: {{ type: postgres, inputs: [in], url: "{url}", schema: {schema}, table: other }}
"#
    );
    let (out, stdout, stderr) = validate(&pipeline);
    assert_eq!(out.status.code(), Some(69), "{stdout}{stderr}");
    assert!(
        line(&stdout, "rows").contains(&format!("may INSERT into \"{schema}\".\"events\"")),
        "{stdout}"
    );
    assert!(
        line(&stderr, "elsewhere").contains(&format!(
            "does not exist and `{role}` may not CREATE in schema \"{schema}\""
        )),
        "{stderr}"
    );

    let only_rows = pipeline
        .lines()
        .filter(|l| !l.contains("elsewhere"))
        .collect::<Vec<_>>()
        .join("\n");
    let (topo, telemetry) = common::start(common::parse(&only_rows)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let count = loop {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
            .await
            .expect("count")
            .get(0);
        if n == 3 || std::time::Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    topo.stop(std::time::Duration::from_secs(5)).await;
    let body = telemetry.render_prometheus();
    postgres::drop_schema(&client, &schema).await;
    let _ = client
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role};"))
        .await;
    assert_eq!(count, 3, "{body}");
}
