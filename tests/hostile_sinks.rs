//! Templates that try to escape their sink (issue 21): event values that climb out of the
//! `file` sink's directory or through a link in it, retention deleting files the sink
//! never wrote, distinct names exhausting descriptors, one bad line blocking a file
//! source, URL values that change the request's path or server, and topic values that
//! reach Kafka's internal topics. Each attack runs through a real pipeline, against the
//! real file system, a real HTTP receiver or librdkafka's mock broker.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use common::{Receiver, eventually, free_port, parse, start_with, wait_for_port};
use sluice::clock::ManualClock;
use sluice::testing::CaptureSink;
use sluice::topology::{Drained, TopologyOptions};
use vrl::value::Value;

/// Every path under `root` (links not followed), relative, with `@` marking links.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            if meta.file_type().is_symlink() {
                out.insert(format!("{rel}@"));
            } else {
                if meta.is_dir() {
                    stack.push(path);
                }
                out.insert(rel);
            }
        }
    }
    out
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn dead_letter_error(v: &Value) -> String {
    match v {
        Value::Object(m) => match m.get("dead_letter") {
            Some(Value::Object(d)) => d
                .get("error")
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default(),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

/// The dead-letter reason of the event whose `n` is `n`.
fn reason_of(dead: &CaptureSink, n: i64) -> String {
    dead.values()
        .iter()
        .find(|v| common::int(v, "n") == n)
        .map(dead_letter_error)
        .unwrap_or_else(|| panic!("event {n} was not dead-lettered"))
}

fn options(data_dir: &Path, clock: Option<&ManualClock>) -> TopologyOptions {
    let mut o = TopologyOptions {
        data_dir: data_dir.to_path_buf(),
        ..TopologyOptions::default()
    };
    if let Some(c) = clock {
        o.clock = Arc::new(c.clone());
    }
    o
}

async fn post(port: u16, body: serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/"))
        .json(&body)
        .send()
        .await
        .expect("POST")
        .status()
        .as_u16()
}

#[tokio::test]
async fn file_paths_never_leave_their_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("a/b");
    let sink_dir = root.join("x");
    let outside = root.join("outside");
    std::fs::create_dir_all(&sink_dir).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    // What an attacker tries after `..`: a link in the directory pointing out of it.
    std::os::unix::fs::symlink(&outside, sink_dir.join("link")).expect("symlink");

    let hook = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out: {{ type: file, inputs: [hook], path: "{}/{{{{ team }}}}/{{{{ service }}}}.log", sync: always }}
"#,
        sink_dir.display()
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["out.dead_letter"], 100);
    let (topo, _) = start_with(p, options(&tmp.path().join("data"), None)).await;
    wait_for_port(hook).await;
    let long = "a".repeat(300);
    let events = serde_json::json!([
        {"n": 1, "team": "core", "service": "../../ESCAPED"},
        {"n": 2, "team": "..", "service": "db"},
        {"n": 3, "team": "/etc", "service": "passwd"},
        {"n": 4, "team": "core", "service": "nul\u{0}byte"},
        {"n": 5, "team": "core", "service": "new\nline"},
        {"n": 6, "team": "core", "service": long},
        {"n": 7, "team": "link", "service": "pwn"},
        {"n": 8, "service": "no-team"},
        {"n": 9, "team": "core", "service": "db"},
        {"n": 10, "team": "core", "service": "%2e%2e"},
        {"n": 11, "team": "core", "service": "sub/ok"},
        {"n": 12, "team": "link/..", "service": "pwn"},
    ]);
    assert_eq!(post(hook, events).await, 200);
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);

    let expected: BTreeSet<String> = [
        "outside",
        "x",
        "x/link@",
        "x/core",
        "x/core/db.log",
        "x/core/%2e%2e.log",
        "x/core/sub",
        "x/core/sub/ok.log",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(
        tree(&root),
        expected,
        "nothing written outside x/ or through the link"
    );
    assert_eq!(
        tree(tmp.path())
            .into_iter()
            .filter(|p| p.contains("ESCAPED"))
            .count(),
        0
    );
    assert_eq!(lines(&sink_dir.join("core/db.log"))[0]["n"], 9);
    assert_eq!(lines(&sink_dir.join("core/%2e%2e.log"))[0]["n"], 10);
    assert_eq!(lines(&sink_dir.join("core/sub/ok.log"))[0]["n"], 11);

    let mut rejected = dead.ints("n");
    rejected.sort_unstable();
    assert_eq!(rejected, [1, 2, 3, 4, 5, 6, 7, 8, 12]);
    for (n, why) in [
        (1, "`..` segment"),
        (2, "`..` segment"),
        (3, "empty segment"),
        (4, "NUL"),
        (5, "control character"),
        (6, "longer than 255 bytes"),
        (7, "symbolic link"),
        (8, "`team` is missing"),
        (12, "`..` segment"),
    ] {
        let reason = reason_of(&dead, n);
        assert!(reason.contains(why), "event {n}: {reason}");
    }
}

fn set_mtime(path: &Path, when: chrono::DateTime<chrono::Utc>) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(std::time::SystemTime::from(when))
        .expect("mtime");
}

#[tokio::test]
async fn retention_deletes_only_files_the_sink_created() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&logs).expect("mkdir");
    // Beside the sink's files: others' files, one of them a name `path` renders to
    // (`db.log`) and one a size rotation would have produced (`app.log.1`).
    let theirs = ["syslog.log", "app.log.1", "id_rsa", "database.db", "db.log"];
    for name in theirs {
        std::fs::write(logs.join(name), "not sluice's\n").expect("write");
    }
    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, "outside the sink's directory\n").expect("write");

    let pipeline = |hook: u16| {
        parse(&format!(
            r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out: {{ type: file, inputs: [hook], path: "{}/{{{{ service }}}}.log", rotation: size, max_bytes: 100, retention_days: 7 }}
"#,
            logs.display()
        ))
    };
    let january = chrono::Utc
        .with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .expect("date");
    let clock = ManualClock::starting_at(january);
    let hook = free_port();
    let (topo, _) = start_with(pipeline(hook), options(&data, Some(&clock))).await;
    wait_for_port(hook).await;
    let pad = "x".repeat(60);
    for service in ["app", "app", "web", "db"] {
        assert_eq!(
            post(hook, serde_json::json!({"service": service, "pad": pad})).await,
            200
        );
    }
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    let mut before: Vec<String> = tree(&logs).into_iter().collect();
    before.sort();
    assert_eq!(
        before,
        [
            "app.log",
            "app.log.1",
            "app.log.2",
            "database.db",
            "db.log",
            "id_rsa",
            "syslog.log",
            "web.log"
        ],
        "size rotation skipped the app.log.1 it did not write"
    );
    let db = std::fs::read_to_string(logs.join("db.log")).expect("db.log");
    assert!(
        db.starts_with("not sluice's\n") && db.contains("\"service\":\"db\""),
        "an existing file is appended to: {db}"
    );

    // A manifest edited to reach outside the directory must not delete anything there.
    let manifest = data.join("file_sink/out.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    let files = m["files"].as_array_mut().expect("files");
    let mut listed: Vec<String> = files
        .iter()
        .map(|f| f.as_str().expect("path").to_owned())
        .collect();
    listed.sort();
    let ours: Vec<String> = ["app.log", "app.log.2", "web.log"]
        .iter()
        .map(|n| logs.join(n).display().to_string())
        .collect();
    assert_eq!(listed, ours, "the manifest lists what the sink created");
    files.push(victim.display().to_string().into());
    files.push(format!("{}/../victim.txt", logs.display()).into());
    std::fs::write(&manifest, serde_json::to_vec(&m).expect("json")).expect("write");

    // Everything is now 100 days old; a restart 60 days later applies retention.
    let old = january - chrono::Duration::days(100);
    for entry in std::fs::read_dir(&logs).expect("dir") {
        set_mtime(&entry.expect("entry").path(), old);
    }
    set_mtime(&victim, old);
    let later = ManualClock::starting_at(january + chrono::Duration::days(60));
    let hook = free_port();
    let (topo, _) = start_with(pipeline(hook), options(&data, Some(&later))).await;
    wait_for_port(hook).await;
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);

    let left: BTreeSet<String> = tree(&logs);
    let expected: BTreeSet<String> = theirs.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(left, expected, "only the sink's own files were deleted");
    assert!(
        victim.exists(),
        "a manifest entry outside the directory is ignored"
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    assert_eq!(
        m["files"],
        serde_json::json!([]),
        "deleted and foreign entries are dropped"
    );
}

/// Descriptors this process holds on files under `dir`.
fn open_under(dir: &Path) -> usize {
    let dir = dir.canonicalize().expect("canonical");
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

#[tokio::test]
async fn max_open_files_bounds_descriptors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("by-host");
    let hook = free_port();
    let p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out: {{ type: file, inputs: [hook], path: "{}/{{{{ host }}}}.log", max_open_files: 4 }}
"#,
        dir.display()
    ));
    let (topo, _) = start_with(p, options(&tmp.path().join("data"), None)).await;
    wait_for_port(hook).await;
    let first: Vec<serde_json::Value> = (0..240)
        .map(|i| serde_json::json!({"host": format!("h{i}"), "round": 1}))
        .collect();
    assert_eq!(post(hook, serde_json::Value::Array(first)).await, 200);
    let held = open_under(&dir);
    assert!(
        held <= 4,
        "{held} descriptors open under the sink's directory"
    );
    // Files closed to make room are reopened and appended to.
    let again: Vec<serde_json::Value> = (0..10)
        .map(|i| serde_json::json!({"host": format!("h{i}"), "round": 2}))
        .collect();
    assert_eq!(post(hook, serde_json::Value::Array(again)).await, 200);
    assert!(open_under(&dir) <= 4);
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 240);
    for i in 0..240 {
        let rounds: Vec<i64> = lines(&dir.join(format!("h{i}.log")))
            .iter()
            .map(|l| l["round"].as_i64().expect("round"))
            .collect();
        let want: &[i64] = if i < 10 { &[1, 2] } else { &[1] };
        assert_eq!(rounds, want, "h{i}.log");
    }
}

#[tokio::test]
async fn a_line_without_the_template_field_does_not_block_the_file_source() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("in.log");
    let out = tmp.path().join("out");
    std::fs::write(
        &input,
        "{\"service\":\"a\",\"n\":1}\n{\"n\":2}\n{\"service\":\"b\",\"n\":3}\n",
    )
    .expect("write");
    let mut p = parse(&format!(
        r#"
sources:
  tail: {{ type: file, include: ["{}"], json: true, poll_interval: 10ms }}
sinks:
  out: {{ type: file, inputs: [tail], path: "{}/{{{{ service }}}}.log", sync: always }}
"#,
        input.display(),
        out.display()
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["out.dead_letter"], 100);
    let (topo, _) = start_with(p, options(&tmp.path().join("data"), None)).await;
    let b = out.join("b.log");
    eventually("the line after the bad one is delivered", || {
        std::fs::read_to_string(&b).is_ok_and(|s| s.lines().count() == 1)
            && dead.values().len() == 1
    })
    .await;
    // More lines keep flowing: the source is not stuck rewinding.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"service\":\"a\",\"n\":4}\n"))
        .expect("append");
    let a = out.join("a.log");
    eventually("a later line is delivered", || {
        std::fs::read_to_string(&a).is_ok_and(|s| s.lines().count() == 2)
    })
    .await;
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);

    let ns = |path: &PathBuf| -> Vec<i64> {
        lines(path)
            .iter()
            .map(|l| l["n"].as_i64().expect("n"))
            .collect()
    };
    assert_eq!(
        ns(&a),
        [1, 4],
        "each line once: the batch was never retried"
    );
    assert_eq!(ns(&b), [3]);
    assert_eq!(dead.ints("n"), [2]);
    assert!(
        reason_of(&dead, 2).contains("template field `service` is missing"),
        "{}",
        reason_of(&dead, 2)
    );
}

#[tokio::test]
async fn url_values_cannot_change_the_request_path() {
    let rx = Receiver::new(0).start().await;
    let hook = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out: {{ type: http, inputs: [hook], url: "http://127.0.0.1:{}/tenants/{{{{ tenant }}}}/events?src={{{{ src }}}}" }}
"#,
        rx.port
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["out.dead_letter"], 100);
    let (topo, _) = start_with(p, options(&std::env::temp_dir(), None)).await;
    wait_for_port(hook).await;
    let events = serde_json::json!([
        {"n": 1, "tenant": "x/../../../internal/delete?confirm=yes#", "src": "a"},
        {"n": 2, "tenant": "%2e%2e", "src": "a"},
        {"n": 3, "tenant": "..", "src": "a"},
        {"n": 4, "tenant": ".", "src": "a"},
        {"n": 5, "src": "a"},
        {"n": 6, "tenant": "evil.example:80@x", "src": "a&admin=1#frag"},
        {"n": 7, "tenant": "acme", "src": "new\nline"},
        {"n": 8, "tenant": "acme", "src": ".."},
    ]);
    assert_eq!(post(hook, events).await, 200);
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);

    let mut paths: Vec<String> = rx.requests().into_iter().map(|r| r.path).collect();
    paths.sort();
    let mut expected = vec![
        "/tenants/x%2F..%2F..%2F..%2Finternal%2Fdelete%3Fconfirm%3Dyes%23/events?src=a",
        "/tenants/%252e%252e/events?src=a",
        "/tenants/evil.example%3A80%40x/events?src=a%26admin%3D1%23frag",
        "/tenants/acme/events?src=new%0Aline",
        "/tenants/acme/events?src=..",
    ];
    expected.sort();
    assert_eq!(paths, expected);
    let mut rejected = dead.ints("n");
    rejected.sort_unstable();
    assert_eq!(rejected, [3, 4, 5]);
    assert!(reason_of(&dead, 3).contains("climbs the path"));
    assert!(reason_of(&dead, 4).contains("climbs the path"));
    assert!(reason_of(&dead, 5).contains("`tenant` is missing"));
}

/// A receiver that answers 302 towards another server: a sink does not follow it (a
/// POST turned into a bodyless GET elsewhere would count as delivered), and no request
/// carries the webhook URL (its secret) in a `Referer`.
#[tokio::test]
async fn a_redirect_is_not_followed_and_the_url_never_leaks() {
    let elsewhere = Receiver::new(0).start().await;
    let redirecting = Receiver::new(0).start().await;
    redirecting.set_fallback(common::Reply::status(302).with_header(
        "location",
        &format!("http://localhost:{}/collected", elsewhere.port),
    ));
    let hook = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out: {{ type: http, inputs: [hook], url: "http://127.0.0.1:{}/services/T0/B0/s3cretpath" }}
"#,
        redirecting.port
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["out.dead_letter"], 100);
    let (topo, telemetry) = start_with(p, options(&std::env::temp_dir(), None)).await;
    wait_for_port(hook).await;
    assert_eq!(
        post(hook, serde_json::json!([{"n": 1}, {"n": 2}])).await,
        200
    );
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
    let asked = redirecting.requests();
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|r| r.headers.get("referer").is_none()),
        "no Referer header"
    );
    let mut rejected = dead.ints("n");
    rejected.sort_unstable();
    assert_eq!(rejected, [1, 2]);
    assert!(
        reason_of(&dead, 1).contains("HTTP 302: a redirect"),
        "{}",
        reason_of(&dead, 1)
    );
    let body = telemetry.render_prometheus();
    assert!(
        body.contains("sluice_component_sent_events_total{component_id=\"out\",component_kind=\"sink\",component_type=\"http\"} 0\n"),
        "nothing counted as delivered: {body}"
    );
}

/// Loading an http sink `hooked` with this URL fails, naming the sink, the option and
/// `why`.
fn assert_url_refused(url: &str, why: &str) {
    let yaml = format!(
        "sources:\n  g: {{ type: generator }}\nsinks:\n  hooked: {{ type: http, inputs: [g], url: \"{url}\" }}\n"
    );
    let e = sluice::config::load_texts(&[("p.yaml".into(), yaml)], |_| None)
        .expect_err(url)
        .to_string();
    assert!(
        e.contains("hooked") && e.contains("`url`") && e.contains(why),
        "{url}: {e}"
    );
}

#[test]
fn templated_scheme_host_or_port_is_a_validate_error() {
    for url in [
        "http://{{ host }}/events",
        "http://10.0.0.1:{{ port }}/events",
        "{{ scheme }}://h/events",
        "http://u:{{ password }}@h/events",
    ] {
        assert_url_refused(url, "cannot be templated");
    }
}

/// A URL without fields is rendered once, when the pipeline loads: one that climbs its
/// path is refused then, rather than dead-lettering every event.
#[test]
fn a_static_url_that_climbs_its_path_is_a_validate_error() {
    for url in [
        "http://h/a/../events",
        "http://h/%2E%2e/events",
        "http://h/./events",
    ] {
        assert_url_refused(url, "climbs the path");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topic_values_cannot_reach_internal_or_illegal_topics() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;

    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("tenant-ok", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let hook = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out: {{ type: kafka, inputs: [hook], bootstrap_servers: "{bootstrap}", topic: "{{{{ dest }}}}" }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["out.dead_letter"], 100);
    let (topo, _) = start_with(p, options(&std::env::temp_dir(), None)).await;
    wait_for_port(hook).await;
    let events = serde_json::json!([
        {"n": 1, "dest": "__consumer_offsets"},
        {"n": 2, "dest": "../tenant-ok"},
        {"n": 3, "dest": ".."},
        {"n": 4},
        {"n": 5, "dest": "tenant-ok"},
    ]);
    assert_eq!(post(hook, events).await, 200);
    assert_eq!(topo.stop(Duration::from_secs(10)).await, Drained::Complete);

    let mut rejected = dead.ints("n");
    rejected.sort_unstable();
    assert_eq!(rejected, [1, 2, 3, 4]);
    assert!(reason_of(&dead, 1).contains("internal Kafka topic"));
    assert!(reason_of(&dead, 2).contains("not a Kafka topic name"));
    assert!(reason_of(&dead, 3).contains("not a Kafka topic name"));
    assert!(reason_of(&dead, 4).contains("`dest` is missing"));

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "hostile-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("tenant-ok", 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.is_empty() && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let body: serde_json::Value =
                serde_json::from_slice(m.payload().expect("payload")).expect("json");
            got.push(body["n"].as_i64().expect("n"));
        }
    }
    assert_eq!(got, [5], "the legal topic got its event");
}

/// A server that answers every request with `status` and a chunked body that never
/// ends (up to `cap` bytes); returns its port and the bytes it managed to send.
async fn endless_body(status: u16, cap: usize) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                // The request's head (and whatever of its body came with it).
                let mut buf = vec![0u8; 64 * 1024];
                if socket.read(&mut buf).await.is_err() {
                    return;
                }
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
                while counter.load(Ordering::Relaxed) < cap {
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    counter.fetch_add(64 * 1024, Ordering::Relaxed);
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (port, sent)
}

/// An endpoint (or its token endpoint) that answers with an endless body is read no
/// further than a bound: the event is dead-lettered with an excerpt, and the sink did
/// not take in the flood.
#[tokio::test]
async fn an_endless_response_body_is_read_no_further_than_a_bound() {
    use std::sync::atomic::Ordering;
    const CAP: usize = 512 * 1024 * 1024;
    let (endpoint, endpoint_sent) = endless_body(400, CAP).await;
    let (token, token_sent) = endless_body(200, CAP).await;
    let secret = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(secret.path(), "s3cret").expect("secret");
    let hook = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out: {{ type: http, inputs: [hook], url: "http://127.0.0.1:{endpoint}/in" }}
  ce:
    type: cloudevents
    inputs: [hook]
    sink: {{ endpoint: "http://127.0.0.1:{endpoint}/events" }}
    metadata: {{ cluster: prod-1 }}
    oidc: {{ token_url: "http://127.0.0.1:{token}/token", client_id: exporter, client_secret_file: "{}" }}
    failure_handling: {{ max_retries: 0 }}
"#,
        secret.path().display()
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["out.dead_letter", "ce.dead_letter"], 100);
    let (topo, _) = start_with(p, options(&std::env::temp_dir(), None)).await;
    wait_for_port(hook).await;
    assert_eq!(post(hook, serde_json::json!([{"n": 1}])).await, 200);
    eventually("both sinks dead-letter the event", || {
        dead.values().len() == 2
    })
    .await;
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);

    let errors: Vec<String> = dead.values().iter().map(dead_letter_error).collect();
    assert!(
        errors.iter().any(|e| e.contains("HTTP 400")),
        "the endpoint's answer: {errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("exceeds 65536 bytes")),
        "the token endpoint's answer: {errors:?}"
    );
    // Loopback socket buffers hold a few MiB; an unbounded read would take all 512.
    for (what, sent) in [("endpoint", endpoint_sent), ("token endpoint", token_sent)] {
        let sent = sent.load(Ordering::Relaxed);
        assert!(sent < 32 * 1024 * 1024, "the {what} sent {sent} bytes");
    }
}

/// Events a sink gives up on with nothing reading its dead_letter output are counted as
/// discarded, unintentionally, besides the delivery errors.
#[tokio::test]
async fn events_given_up_on_without_a_dead_letter_reader_count_as_lost() {
    let refusing = Receiver::new(0).start().await;
    refusing.set_fallback(common::Reply::status(400));
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 2 }}
sinks:
  out: {{ type: http, inputs: [gen], url: "http://127.0.0.1:{}/in" }}
"#,
        refusing.port
    ));
    let (topo, telemetry) = start_with(p, options(&std::env::temp_dir(), None)).await;
    eventually("the receiver refused them", || {
        !refusing.requests().is_empty()
    })
    .await;
    topo.stop(Duration::from_secs(5)).await;
    let body = telemetry.render_prometheus();
    let labels = "component_id=\"out\",component_kind=\"sink\",component_type=\"http\"";
    for line in [
        format!("sluice_component_discarded_events_total{{{labels},intentional=\"false\"}} 2\n"),
        format!(
            "sluice_component_errors_total{{{labels},error_type=\"delivery_failed\",stage=\"sending\"}} 2\n"
        ),
        format!("sluice_component_sent_events_total{{{labels}}} 0\n"),
    ] {
        assert!(body.contains(&line), "{line} missing from\n{body}");
    }
}
