//! The `fluent` source and sink against real Forward protocol clients and servers on
//! loopback: fluent-logger (PyPI), a msgpack client asking for acks, sluice to sluice
//! (plain and gzip), TLS with the shared-key handshake, and hostile bytes.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Receiver, Reply, free_port, metric, parse, start, wait_for_port};
use sluice::testing::CaptureSink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vrl::value::Value;

/// Runs `tests/clients/fluent_client.py` with the Python packages `.ci/run` installs;
/// `None` (the test skips) when fluent-logger is missing outside CI.
async fn python_client(mode: &str, port: u16, tag: &str, n: usize) -> Option<serde_json::Value> {
    let tools = PathBuf::from(std::env::var_os("HOME")?).join(".cache/sluice-tools/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/fluent_client.py");
    let args = [
        mode.to_owned(),
        "127.0.0.1".into(),
        port.to_string(),
        tag.to_owned(),
        n.to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .env("PYTHONPATH", &tools)
            .arg(&script)
            .args(&args)
            .output()
    })
    .await
    .expect("join")
    .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'fluent'") || stderr.contains("No module named 'msgpack'") {
        sluice::testing::skip("fluent-logger is not installed (.ci/run installs it)");
        return None;
    }
    assert!(out.status.success(), "client failed: {stderr}");
    Some(serde_json::from_slice(&out.stdout).expect("the client prints JSON"))
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    common::eventually(what, cond).await;
}

fn text(v: &Value, field: &str) -> String {
    common::string(v, field).unwrap_or_default()
}

fn timestamp(v: &Value) -> chrono::DateTime<chrono::Utc> {
    match common::field(v, "timestamp") {
        Value::Timestamp(t) => t,
        other => panic!("timestamp is not a timestamp: {other:?}"),
    }
}

/// A `fluent` source on a free port (with extra `options`, `, key: value` pairs) into a
/// capture sink, listening.
async fn fluent_into_capture(
    options: &str,
) -> (
    u16,
    CaptureSink,
    sluice::topology::Topology,
    std::sync::Arc<sluice::telemetry::Telemetry>,
) {
    let port = free_port();
    let mut p = parse(&format!(
        "sources:\n  fwd: {{ type: fluent, address: \"127.0.0.1:{port}\"{options} }}\n"
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["fwd"], 100);
    let (topology, telemetry) = start(p).await;
    wait_for_port(port).await;
    (port, sink, topology, telemetry)
}

/// A fluent source into a capture sink holding `capacity` events, under a
/// `memory_limit` of `mib` MiB.
async fn fluent_under_memory_limit(
    mib: usize,
    capacity: usize,
) -> (
    u16,
    CaptureSink,
    sluice::topology::Topology,
    std::sync::Arc<sluice::telemetry::Telemetry>,
) {
    let port = free_port();
    let mut p = parse(&format!(
        "sources:\n  fwd: {{ type: fluent, address: \"127.0.0.1:{port}\" }}\n"
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["fwd"], capacity);
    let options = sluice::topology::TopologyOptions {
        memory_budget: Some(sluice::buffer::MemoryBudget::new(mib * 1024 * 1024)),
        ..sluice::topology::TopologyOptions::default()
    };
    let (topology, telemetry) = common::start_with(p, options).await;
    wait_for_port(port).await;
    (port, sink, topology, telemetry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluent_logger_records_arrive_with_their_tag_and_time() {
    let (port, sink, _topology, telemetry) = fluent_into_capture("").await;
    let Some(summary) = python_client("logger", port, "app", 20).await else {
        return;
    };
    assert_eq!(summary["sent"], 20);
    eventually("20 records", || sink.values().len() == 20).await;
    let values = sink.values();
    let mut ns: Vec<i64> = values.iter().map(|v| common::int(v, "n")).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..20).collect::<Vec<_>>());
    for v in &values {
        let n = common::int(v, "n");
        assert_eq!(text(v, "tag"), "app.web");
        assert_eq!(text(v, "msg"), "héllo");
        let t = timestamp(v);
        assert_eq!(t.timestamp(), 1_700_000_000 + n, "the record's seconds");
        // fluent-logger builds EventTime from a float: nanoseconds to within a microsecond.
        let nanos = i64::from(t.timestamp_subsec_nanos());
        assert!(
            (nanos - 123_456_789).abs() < 1_000,
            "nanoseconds kept: {nanos}"
        );
    }
    let body = telemetry.render_prometheus();
    assert_eq!(
        metric(&body, "sluice_component_received_events_total", "fwd"),
        Some(20.0)
    );
}

/// A pipeline of a `fluent` source into an HTTP sink that answers from `replies`.
async fn into_http(
    receiver: &Receiver,
    ack_timeout: &str,
) -> (
    u16,
    sluice::topology::Topology,
    std::sync::Arc<sluice::telemetry::Telemetry>,
) {
    let port = free_port();
    let p = parse(&format!(
        r#"
sources:
  fwd: {{ type: fluent, address: "127.0.0.1:{port}", ack_timeout: {ack_timeout} }}
sinks:
  out:
    type: http
    inputs: [fwd]
    url: "http://127.0.0.1:{rport}/in"
    batch: {{ max_events: 100, timeout: 20ms }}
    encoding: ndjson
    failure_handling: {{ max_retries: 20, initial_backoff: 100ms, max_backoff: 100ms }}
"#,
        rport = receiver.port
    ));
    let (topology, telemetry) = start(p).await;
    wait_for_port(port).await;
    (port, topology, telemetry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ack_comes_only_once_the_sink_received_the_records() {
    let receiver = Receiver::new(0).start().await;
    receiver.set_delay(Duration::from_millis(300));
    let (port, _topology, _telemetry) = into_http(&receiver, "10s").await;
    let Some(summary) = python_client("chunks", port, "acked", 30).await else {
        return;
    };
    assert_eq!(summary["acked"], true, "{summary}");
    assert_eq!(summary["closed"], 0, "{summary}");
    // The receiver holds each request 300 ms before answering: an ack sent before the
    // sink's delivery would come sooner.
    let elapsed = summary["elapsed_ms"].as_i64().expect("elapsed");
    assert!(elapsed >= 300, "acked after {elapsed} ms");
    let got = common::ndjson_ints(&receiver.requests(), "n");
    assert_eq!(got, (0..30).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_outage_makes_the_client_resend_and_nothing_is_lost() {
    let receiver = Receiver::new(0).start().await;
    // Down for the first four requests (about 400 ms of retries), then up.
    receiver.script((0..4).map(|_| Reply::status(503)));
    let (port, _topology, telemetry) = into_http(&receiver, "250ms").await;
    let Some(summary) = python_client("chunks", port, "outage", 25).await else {
        return;
    };
    assert_eq!(summary["acked"], true, "{summary}");
    assert!(
        summary["closed"].as_i64() >= Some(1),
        "the client was made to resend: {summary}"
    );
    let delivered: Vec<_> = receiver
        .requests()
        .into_iter()
        .filter(|r| r.status_ok())
        .collect();
    let mut got = common::ndjson_ints(&delivered, "n");
    got.dedup();
    assert_eq!(got, (0..25).collect::<Vec<_>>(), "every record delivered");
    let body = telemetry.render_prometheus();
    assert!(body.contains("sluice_fluent_connection_errors_total{component_id=\"fwd\""));
    assert!(body.contains("reason=\"no_ack\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_to_sluice_keeps_tags_times_and_records_plain_and_gzip() {
    let (plain, gzip) = (free_port(), free_port());
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 40, batch_size: 7, format: '{{"n": {{{{seq}}}}, "service": "api", "nested": {{"a": [1, "two", null]}}}}' }}
  plain_in: {{ type: fluent, address: "127.0.0.1:{plain}" }}
  gzip_in: {{ type: fluent, address: "127.0.0.1:{gzip}" }}
transforms:
  stamp:
    type: remap
    inputs: [gen]
    source: '.timestamp = parse_timestamp!("2023-11-14T22:13:20.123456789Z", "%+")'
sinks:
  plain_out: {{ type: fluent, inputs: [stamp], address: "127.0.0.1:{plain}", tag: "gen.{{{{ service }}}}" }}
  gzip_out: {{ type: fluent, inputs: [stamp], address: "127.0.0.1:{gzip}", tag: "zip.{{{{ service }}}}", compression: gzip }}
"#
    ));
    let (a, b) = (CaptureSink::default(), CaptureSink::default());
    a.attach(&mut p, "a", &["plain_in"], 100);
    b.attach(&mut p, "b", &["gzip_in"], 100);
    let (_topology, telemetry) = start(p).await;
    eventually("40 events through each", || {
        a.values().len() == 40 && b.values().len() == 40
    })
    .await;
    let at = chrono::DateTime::parse_from_rfc3339("2023-11-14T22:13:20.123456789Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    for (sink, tag) in [(&a, "gen.api"), (&b, "zip.api")] {
        let mut ns = sink.ints("n");
        ns.sort_unstable();
        assert_eq!(ns, (0..40).collect::<Vec<_>>());
        for v in sink.values() {
            assert_eq!(text(&v, "tag"), tag);
            assert_eq!(timestamp(&v), at, "nanoseconds survive the hop");
            assert_eq!(text(&v, "service"), "api");
            let nested = common::field(&v, "nested");
            assert_eq!(
                nested,
                Value::from(serde_json::json!({"a": [1, "two", null]}))
            );
        }
    }
    let body = telemetry.render_prometheus();
    for sink in ["plain_out", "gzip_out"] {
        assert_eq!(
            metric(&body, "sluice_component_sent_events_total", sink),
            Some(40.0),
            "{sink} counted its acked events"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_the_shared_key_let_the_right_client_in_and_keep_the_wrong_one_out() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("write");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).expect("write");
    let d = dir.path().display();
    let sink_tls = format!(r#"tls: {{ ca_file: "{d}/cert.pem", server_name: localhost }}"#);
    let mut p = parse(&format!(
        r#"
sources:
  right: {{ type: generator, count: 5, format: '{{"n": {{{{seq}}}}}}' }}
  wrong_key: {{ type: generator, count: 3, format: '{{"n": {{{{seq}}}}}}' }}
  wrong_user: {{ type: generator, count: 3, format: '{{"n": {{{{seq}}}}}}' }}
  fwd:
    type: fluent
    address: "127.0.0.1:{port}"
    tls: {{ cert: "{d}/cert.pem", key: "{d}/key.pem" }}
    shared_key: s3cret
    self_hostname: aggregator
    users: [{{ username: alice, password: pw }}]
sinks:
  good:
    type: fluent
    inputs: [right]
    address: "127.0.0.1:{port}"
    tag: right
    {sink_tls}
    shared_key: s3cret
    username: alice
    password: pw
  bad_key:
    type: fluent
    inputs: [wrong_key]
    address: "127.0.0.1:{port}"
    tag: wrong
    {sink_tls}
    shared_key: guess
    username: alice
    password: pw
    failure_handling: {{ max_retries: 0 }}
  bad_user:
    type: fluent
    inputs: [wrong_user]
    address: "127.0.0.1:{port}"
    tag: wrong
    {sink_tls}
    shared_key: s3cret
    username: alice
    password: nope
    failure_handling: {{ max_retries: 0 }}
"#
    ));
    let (got, dead) = (CaptureSink::default(), CaptureSink::default());
    got.attach(&mut p, "got", &["fwd"], 100);
    dead.attach(
        &mut p,
        "dead",
        &["bad_key.dead_letter", "bad_user.dead_letter"],
        100,
    );
    let (_topology, telemetry) = start(p).await;
    eventually("5 events in, 6 refused", || {
        got.values().len() == 5 && dead.values().len() == 6
    })
    .await;
    assert!(got.values().iter().all(|v| text(v, "tag") == "right"));
    let errors: Vec<String> = dead
        .values()
        .iter()
        .map(|v| {
            let record = common::field(v, "dead_letter");
            common::string(&record, "error").unwrap_or_default()
        })
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("shared_key mismatch")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("username/password mismatch")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .all(|e| !e.contains("s3cret") && !e.contains("nope"))
    );
    let body = telemetry.render_prometheus();
    assert!(body.contains("reason=\"handshake\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_of_a_tls_listener_is_told_to_set_tls() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("write");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).expect("write");
    let d = dir.path().display();
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 2, format: '{{"n": {{{{seq}}}}}}' }}
  fwd:
    type: fluent
    address: "127.0.0.1:{port}"
    tls: {{ cert: "{d}/cert.pem", key: "{d}/key.pem" }}
sinks:
  plain:
    type: fluent
    inputs: [gen]
    address: "127.0.0.1:{port}"
    tag: plain
    failure_handling: {{ max_retries: 0 }}
"#
    ));
    let (got, dead) = (CaptureSink::default(), CaptureSink::default());
    got.attach(&mut p, "got", &["fwd"], 100);
    dead.attach(&mut p, "dead", &["plain.dead_letter"], 100);
    let (_topology, telemetry) = start(p).await;
    eventually("both events dead-lettered", || dead.values().len() == 2).await;
    assert!(got.values().is_empty());
    let record = common::field(&dead.values()[0], "dead_letter");
    let error = common::string(&record, "error").unwrap_or_default();
    assert!(error.contains("set `tls`"), "{error}");
    let body = telemetry.render_prometheus();
    assert!(body.contains("reason=\"tls\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_reconnects_when_the_server_closed_an_idle_connection() {
    // The source closes connections idle for 200 ms; the sink sends every 500 ms. Without
    // acks nothing would tell the sink that a write went to a closed connection.
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, rate: 2, count: 4, format: '{{"n": {{{{seq}}}}}}' }}
  fwd: {{ type: fluent, address: "127.0.0.1:{port}", idle_timeout: 200ms }}
sinks:
  out:
    type: fluent
    inputs: [gen]
    address: "127.0.0.1:{port}"
    tag: t
    require_ack: false
"#
    ));
    let (got, dead) = (CaptureSink::default(), CaptureSink::default());
    got.attach(&mut p, "got", &["fwd"], 100);
    dead.attach(&mut p, "dead", &["out.dead_letter"], 100);
    let (_topology, telemetry) = start(p).await;
    eventually("all four events", || got.values().len() == 4).await;
    assert!(dead.values().is_empty());
    let body = telemetry.render_prometheus();
    assert!(
        !body.contains("sluice_fluent_connection_errors_total"),
        "closing an idle connection is routine: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_alone_do_not_keep_a_connection_open() {
    let (port, _sink, _topology, _telemetry) = fluent_into_capture(", idle_timeout: 300ms").await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 8];
    loop {
        // A heartbeat (nil) every 100 ms, as a client keeping its slot would send.
        if s.write_all(&[0xc0]).await.is_err() {
            break;
        }
        let read = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "heartbeats kept the connection open"
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// Sends `bytes` on a new connection and reads until the server closes it.
async fn closed_after(port: u16, bytes: &[u8], then_shut: bool) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(bytes).await.expect("write");
    if then_shut {
        s.shutdown().await.expect("shutdown");
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_their_connection_and_the_others_go_on() {
    let (port, sink, _topology, telemetry) =
        fluent_into_capture(", max_message_bytes: 65536").await;
    // A good client stays connected through all of it.
    let mut good = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let record = |n: i64| {
        let mut out = Vec::new();
        rmpv::encode::write_value(
            &mut out,
            &rmpv::Value::Array(vec![
                "good".into(),
                1_700_000_000.into(),
                rmpv::Value::Map(vec![("n".into(), n.into())]),
            ]),
        )
        .expect("encode");
        out
    };
    good.write_all(&record(0)).await.expect("write");

    let mut truncated = record(1);
    truncated.truncate(truncated.len() - 2);
    let deep = vec![0x91u8; 100_000];
    let n = |n: i64| rmpv::Value::Map(vec![("n".into(), n.into())]);
    // A good entry beside one whose time no timestamp can hold: neither is taken.
    let far_future = forward_message(
        "good",
        "c1",
        [
            rmpv::Value::Array(vec![1.into(), n(9)]),
            rmpv::Value::Array(vec![(1_i64 << 62).into(), n(10)]),
        ]
        .into_iter(),
    );
    let attacks: [(&str, Vec<u8>, bool); 6] = [
        ("a time 2^62 seconds after 1970", far_future, false),
        ("a truncated message", truncated, true),
        (
            "an array header claiming 4 billion entries",
            vec![0xdd, 0xff, 0xff, 0xff, 0xff],
            false,
        ),
        ("100k-deep nesting", deep, false),
        (
            "a bin32 header claiming 1 GiB",
            vec![0x92, 0xa1, b't', 0xc6, 0x40, 0, 0, 0],
            false,
        ),
        (
            "a string instead of a request",
            vec![0xa3, b'a', b'b', b'c'],
            false,
        ),
    ];
    for (what, bytes, shut) in attacks {
        let answer = closed_after(port, &bytes, shut).await;
        assert!(answer.is_empty(), "{what}: no answer, just a close");
    }
    good.write_all(&record(2))
        .await
        .expect("the good connection is still open");
    eventually("both good records", || sink.ints("n").len() == 2).await;
    assert_eq!(sink.ints("n"), [0, 2]);
    // Each is counted once its connection's task ends, just after the socket closes.
    let malformed = || {
        telemetry
            .render_prometheus()
            .lines()
            .find(|l| {
                l.starts_with("sluice_fluent_connection_errors_total") && l.contains("malformed")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    eventually("six malformed counted", || malformed() == Some(6.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unset_time_is_stamped_with_the_receive_time_as_fluentd_does() {
    let (port, sink, _topology, _telemetry) = fluent_into_capture("").await;
    let before = chrono::Utc::now();
    let entry = |time: rmpv::Value, m: &str| {
        rmpv::Value::Array(vec![time, rmpv::Value::Map(vec![("m".into(), m.into())])])
    };
    let message = forward_message(
        "t",
        "c1",
        [
            entry(rmpv::Value::Nil, "nil"),
            entry(0.into(), "zero"),
            entry(rmpv::Value::F64(1_700_000_000.5), "float"),
        ]
        .into_iter(),
    );
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    client.write_all(&message).await.expect("write");
    eventually("three records", || sink.values().len() == 3).await;
    let after = chrono::Utc::now();
    let values = sink.values();
    for v in &values[..2] {
        let t = timestamp(v);
        assert!(before <= t && t <= after, "{}: {t}", text(v, "m"));
    }
    assert_eq!(
        timestamp(&values[2]).timestamp_millis(),
        1_700_000_000_500,
        "fractional seconds are kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ping_a_handshake_source_takes_nothing() {
    let (port, sink, _topology, telemetry) = fluent_into_capture(", shared_key: k").await;
    let mut message = Vec::new();
    rmpv::encode::write_value(
        &mut message,
        &rmpv::Value::Array(vec![
            "sneaky".into(),
            1.into(),
            rmpv::Value::Map(vec![("n".into(), 1.into())]),
        ]),
    )
    .expect("encode");
    let answer = closed_after(port, &message, false).await;
    // Only the server's HELO came back.
    assert!(
        answer.starts_with(&[0x92, 0xa4, b'H', b'E', b'L', b'O']),
        "{answer:?}"
    );
    assert!(sink.values().is_empty());
    eventually("the refusal counted", || {
        telemetry
            .render_prometheus()
            .contains("reason=\"handshake\"")
    })
    .await;
}

/// One request read from a raw connection, and the chunk id it asks to be acked.
async fn read_request(s: &mut tokio::net::TcpStream) -> Option<(rmpv::Value, String)> {
    let mut buf = Vec::new();
    loop {
        let mut cursor = std::io::Cursor::new(&buf[..]);
        if let Ok(v) = rmpv::decode::read_value(&mut cursor) {
            let chunk = v.as_array()?.get(2)?.as_map()?.iter().find_map(|(k, v)| {
                (k.as_str() == Some("chunk")).then(|| v.as_str().map(str::to_owned))?
            })?;
            return Some((v, chunk));
        }
        let mut more = [0u8; 4096];
        let n = s.read(&mut more).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&more[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_sends_an_unacknowledged_chunk_again() {
    // A server that drops the first connection without acking, then acks.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for ack in [false, true] {
            let (mut s, _) = listener.accept().await.expect("accept");
            let (request, chunk) = read_request(&mut s).await.expect("a request with a chunk");
            seen.push((request, chunk.clone()));
            if ack {
                let mut out = Vec::new();
                let reply = rmpv::Value::Map(vec![("ack".into(), chunk.as_str().into())]);
                rmpv::encode::write_value(&mut out, &reply).expect("encode");
                s.write_all(&out).await.expect("ack");
                // Keep the connection open until the client is done with it.
                let mut rest = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
            }
        }
        seen
    });
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 4, batch_size: 4, format: '{{"n": {{{{seq}}}}}}' }}
sinks:
  out:
    type: fluent
    inputs: [gen]
    address: "127.0.0.1:{port}"
    tag: unacked
    ack_timeout: 200ms
    failure_handling: {{ max_retries: 3, initial_backoff: 10ms, max_backoff: 10ms }}
"#
    ));
    let (topology, telemetry) = start(p).await;
    eventually("4 events acked", || {
        metric(
            &telemetry.render_prometheus(),
            "sluice_component_sent_events_total",
            "out",
        ) == Some(4.0)
    })
    .await;
    drop(topology);
    let seen = server.await.expect("server");
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0], seen[1],
        "the same message, chunk id and all, sent again"
    );
    assert_eq!(
        seen[0].0.as_array().map(|a| a[0].as_str()),
        Some(Some("unacked"))
    );
}

/// `[tag, entries, {compressed: gzip, chunk}]` of `n` records.
fn gzip_message(tag: &str, n: i64, chunk: &str) -> Vec<u8> {
    let mut stream = Vec::new();
    for i in 0..n {
        let entry = rmpv::Value::Array(vec![
            1_700_000_000.into(),
            rmpv::Value::Map(vec![("n".into(), i.into())]),
        ]);
        rmpv::encode::write_value(&mut stream, &entry).expect("encode");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &stream).expect("gzip");
    let mut out = Vec::new();
    let message = rmpv::Value::Array(vec![
        tag.into(),
        rmpv::Value::Binary(gz.finish().expect("gzip")),
        rmpv::Value::Map(vec![
            ("compressed".into(), "gzip".into()),
            ("chunk".into(), chunk.into()),
        ]),
    ]);
    rmpv::encode::write_value(&mut out, &message).expect("encode");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_is_acked_while_other_connections_are_open() {
    let (port, sink, _topology, _telemetry) = fluent_into_capture("").await;
    // Idle clients and one halfway through a message hold no budget a gzip needs.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    idle[0]
        .write_all(&[0x93, 0xa1])
        .await
        .expect("half a message");
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    client
        .write_all(&gzip_message("zipped", 50, "z1"))
        .await
        .expect("write");
    let mut ack = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut ack))
        .await
        .expect("acked without waiting for the idle connections")
        .expect("read");
    assert_eq!(&ack[..n], &[0x81, 0xa3, b'a', b'c', b'k', 0xa2, b'z', b'1']);
    assert_eq!(sink.values().len(), 50);
}

/// A Forward message of `n` entries `[time, record]`, acked as `chunk`.
fn forward_message(tag: &str, chunk: &str, entries: impl Iterator<Item = rmpv::Value>) -> Vec<u8> {
    let message = rmpv::Value::Array(vec![
        tag.into(),
        rmpv::Value::Array(entries.collect()),
        rmpv::Value::Map(vec![("chunk".into(), chunk.into())]),
    ]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &message).expect("encode");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_records_are_charged_what_they_take_and_a_flood_of_empty_ones_is_refused() {
    let (port, sink, _topology, telemetry) = fluent_under_memory_limit(64, 100_000).await;

    // Fluent Bit's chunks hold thousands of records like `{"log": "x"}` with an
    // EventTime: about 18 bytes each, whose events take far more than 64 per byte.
    let event_time = rmpv::Value::Ext(0, vec![0x65, 0x5f, 0x00, 0x00, 0, 0, 0, 1]);
    let small = forward_message(
        "small",
        "s1",
        (0..5000).map(|n| {
            rmpv::Value::Array(vec![
                event_time.clone(),
                rmpv::Value::Map(vec![("log".into(), format!("{}", n % 10).into())]),
            ])
        }),
    );
    assert!(small.len() / 5000 < 20, "{} bytes each", small.len() / 5000);
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    client.write_all(&small).await.expect("write");
    let mut ack = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut ack))
        .await
        .expect("acked")
        .expect("read");
    assert_eq!(&ack[..n], &[0x81, 0xa3, b'a', b'c', b'k', 0xa2, b's', b'1']);
    assert_eq!(sink.values().len(), 5000);

    // 300 KB of `[1, {}]` would become 100,000 events taking about 90 MB: more than one
    // message may hold of a 64 MiB memory_limit, so none of it is taken.
    let flood = forward_message(
        "flood",
        "f1",
        (0..100_000).map(|_| rmpv::Value::Array(vec![1.into(), rmpv::Value::Map(vec![])])),
    );
    assert!(closed_after(port, &flood, false).await.is_empty());
    assert_eq!(sink.values().len(), 5000, "nothing of the flood was taken");
    // Counted once the connection's task ends, just after the socket closes.
    eventually("the refusal counted", || {
        telemetry
            .render_prometheus()
            .contains("reason=\"memory_limit\"")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_gives_up_on_a_server_that_stops_reading() {
    // A server that accepts and never reads, as a fluentd with a full buffer does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let pad = "x".repeat(10_000);
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 2000, batch_size: 2000, format: '{{"n": {{{{seq}}}}, "pad": "{pad}"}}' }}
sinks:
  out:
    type: fluent
    inputs: [gen]
    address: "127.0.0.1:{port}"
    tag: stuck
    ack_timeout: 300ms
    failure_handling: {{ max_retries: 1, initial_backoff: 10ms, max_backoff: 10ms }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["out.dead_letter"], 5000);
    let (_topology, _telemetry) = start(p).await;
    eventually("every event dead-lettered", || dead.values().len() == 2000).await;
    let record = common::field(&dead.values()[0], "dead_letter");
    let error = common::string(&record, "error").unwrap_or_default();
    assert!(error.contains("read nothing"), "{error}");
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_without_the_shared_key_is_told_the_server_wants_one() {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 2, format: '{{"n": {{{{seq}}}}}}' }}
  fwd: {{ type: fluent, address: "127.0.0.1:{port}", shared_key: k }}
sinks:
  out:
    type: fluent
    inputs: [gen]
    address: "127.0.0.1:{port}"
    tag: keyless
    failure_handling: {{ max_retries: 0 }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["out.dead_letter"], 100);
    let (_topology, _telemetry) = start(p).await;
    eventually("both events dead-lettered", || dead.values().len() == 2).await;
    let record = common::field(&dead.values()[0], "dead_letter");
    let error = common::string(&record, "error").unwrap_or_default();
    assert!(error.contains("requires the handshake"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_trickled_in_small_writes_under_memory_limit_are_acked() {
    let (port, sink, _topology, _telemetry) = fluent_under_memory_limit(16, 10_000).await;
    // Two clients at once, each a 1 MB message in 16 KiB writes (a slow link, or TLS
    // records): neither may hold the budget the other, or its own events, need.
    let send = |tag: &'static str| async move {
        let pad = "x".repeat(200);
        let entries = rmpv::Value::Array(
            (0..4000)
                .map(|n| {
                    rmpv::Value::Array(vec![
                        1_700_000_000.into(),
                        rmpv::Value::Map(vec![
                            ("n".into(), n.into()),
                            ("pad".into(), pad.as_str().into()),
                        ]),
                    ])
                })
                .collect(),
        );
        let message = rmpv::Value::Array(vec![
            tag.into(),
            entries,
            rmpv::Value::Map(vec![("chunk".into(), tag.into())]),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &message).expect("encode");
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        for piece in bytes.chunks(16 * 1024) {
            s.write_all(piece).await.expect("write");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut ack = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut ack))
            .await
            .expect("acked in time")
            .expect("read");
        assert!(
            n > 0 && ack[..n].ends_with(tag.as_bytes()),
            "{tag}: {:?}",
            &ack[..n]
        );
    };
    tokio::join!(send("slow-a"), send("slow-b"));
    assert_eq!(sink.values().len(), 8000);
}

/// Several clients each sending a large message at once, more than `memory_limit` can
/// decode together: each client resends when its connection closes (as Fluent Bit
/// does), and every message is acked and delivered once, instead of all of them
/// waiting on each other until `read_timeout` and being dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_sent_at_once_under_memory_limit_are_all_delivered() {
    let (port, sink, _topology, telemetry) = fluent_under_memory_limit(32, 100_000).await;
    let send = |tag: &'static str| async move {
        let pad = "x".repeat(1000);
        let mut entries = Vec::new();
        for n in 0..6000u64 {
            let entry = rmpv::Value::Array(vec![
                1_700_000_000.into(),
                rmpv::Value::Map(vec![
                    ("n".into(), n.into()),
                    ("pad".into(), pad.as_str().into()),
                ]),
            ]);
            rmpv::encode::write_value(&mut entries, &entry).expect("encode");
        }
        let message = rmpv::Value::Array(vec![
            tag.into(),
            rmpv::Value::Binary(entries),
            rmpv::Value::Map(vec![("chunk".into(), tag.into())]),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &message).expect("encode");
        for attempt in 1..=20 {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                continue;
            };
            let mut ack = [0u8; 64];
            let acked = async {
                s.write_all(&bytes).await.ok()?;
                let n = s.read(&mut ack).await.ok()?;
                (n > 0 && ack[..n].ends_with(tag.as_bytes())).then_some(())
            };
            if tokio::time::timeout(Duration::from_secs(20), acked)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return attempt;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{tag}: never acked");
    };
    let (a, b, c) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(send("big-a"), send("big-b"), send("big-c"))
    })
    .await
    .expect("every message is acked well before read_timeouts pile up");
    eventually("18000 records", || sink.values().len() == 18_000).await;
    let mut seen: Vec<(String, i64)> = sink
        .values()
        .iter()
        .map(|v| (text(v, "tag"), common::int(v, "n")))
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 18_000, "each record once");
    eprintln!("attempts: {a}, {b}, {c}");
    let _ = telemetry;
}

/// Many clients sending large messages without acks under a small `memory_limit`:
/// a message holding much of the budget while it waits to hand its events over must
/// not stall the connection that holds the pipeline and waits for room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_without_acks_under_memory_limit_all_arrive() {
    let (port, sink, _topology, _telemetry) = fluent_under_memory_limit(16, 100_000).await;
    let send = |client: u64| async move {
        let pad = "y".repeat(1000);
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        for m in 0..2u64 {
            let mut entries = Vec::new();
            for n in 0..2000u64 {
                let entry = rmpv::Value::Array(vec![
                    1_700_000_000.into(),
                    rmpv::Value::Map(vec![
                        ("id".into(), (client * 1_000_000 + m * 10_000 + n).into()),
                        ("pad".into(), pad.as_str().into()),
                    ]),
                ]);
                rmpv::encode::write_value(&mut entries, &entry).expect("encode");
            }
            let message = rmpv::Value::Array(vec!["bulk".into(), rmpv::Value::Binary(entries)]);
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &message).expect("encode");
            s.write_all(&bytes).await.expect("write");
        }
        s.shutdown().await.expect("close");
    };
    tokio::join!(send(1), send(2), send(3), send(4), send(5), send(6));
    eventually("24000 records", || sink.values().len() == 24_000).await;
    let mut ids: Vec<i64> = sink.values().iter().map(|v| common::int(v, "id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 24_000);
}
