//! The `syslog` source and sink: util-linux `logger` (a real client) sends RFC 5424 and
//! RFC 3164 over UDP and TCP (newline and octet-counting framing); the sink writes RFC
//! 5424 that a plain socket reads byte for byte, and that sluice's own source reads back
//! over TLS with every field; a server that goes away is retried, then dead-lettered.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::{eventually, free_port, parse, start, start_with, wait_for_port};
use sluice::clock::ManualClock;
use sluice::testing::CaptureSink;
use sluice::topology::TopologyOptions;
use tokio::io::AsyncReadExt;
use vrl::value::Value;

fn text(v: &Value, path: &str) -> String {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur
            .as_object()
            .and_then(|m| m.get(part))
            .unwrap_or(&Value::Null);
    }
    match cur {
        Value::Null => String::new(),
        other => other.to_string_lossy().into_owned(),
    }
}

fn logger(args: &[&str]) {
    let out = Command::new("logger")
        .args(args)
        .output()
        .expect("logger runs");
    assert!(
        out.status.success(),
        "logger: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn source_pipeline(mode: &str, port: u16) -> (sluice::config::Pipeline, CaptureSink) {
    let mut p = parse(&format!(
        r#"
sources:
  sys: {{ type: syslog, mode: {mode}, address: "127.0.0.1:{port}" }}
"#
    ));
    let capture = CaptureSink::default();
    capture.attach(&mut p, "out", &["sys"], 100);
    (p, capture)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_udp_in_rfc5424_and_rfc3164() {
    let port = free_port();
    let (p, capture) = source_pipeline("udp", port);
    let (_topo, _) = start(p).await;
    let port_s = port.to_string();
    logger(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port_s,
        "--udp",
        "--rfc5424=notq",
        "--msgid",
        "ID7",
        "--sd-id",
        "meta@32473",
        "--sd-param",
        r#"team="core""#,
        "-t",
        "billing",
        "-p",
        "local4.notice",
        "payment failed",
    ]);
    logger(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port_s,
        "--udp",
        "--rfc3164",
        "-t",
        "cron",
        "-p",
        "auth.crit",
        "old style",
    ]);
    eventually("two messages", || capture.values().len() == 2).await;
    let events = capture.values();
    let new = events
        .iter()
        .find(|e| text(e, "message") == "payment failed")
        .expect("5424");
    assert_eq!(text(new, "appname"), "billing");
    assert_eq!(text(new, "msgid"), "ID7");
    assert_eq!(text(new, "facility"), "local4");
    assert_eq!(text(new, "severity"), "notice");
    assert_eq!(text(new, "version"), "1");
    assert_eq!(text(new, "structured_data.meta@32473.team"), "core");
    assert_eq!(text(new, "source_ip"), "127.0.0.1");
    let old = events
        .iter()
        .find(|e| text(e, "message") == "old style")
        .expect("3164");
    assert_eq!(text(old, "appname"), "cron");
    assert_eq!(text(old, "facility"), "auth");
    assert_eq!(text(old, "severity"), "crit");
    assert_eq!(text(old, "version"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_tcp_with_newline_and_octet_counting_framing() {
    let port = free_port();
    let (p, capture) = source_pipeline("tcp", port);
    let (_topo, _) = start(p).await;
    wait_for_port(port).await;
    let port_s = port.to_string();
    logger(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port_s,
        "--tcp",
        "-t",
        "a",
        "line one\nline two",
    ]);
    logger(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port_s,
        "--tcp",
        "--octet-count",
        "-t",
        "b",
        "counted\nwith a newline inside",
    ]);
    eventually("three messages", || capture.values().len() == 3).await;
    let messages: Vec<String> = capture
        .values()
        .iter()
        .map(|e| text(e, "message"))
        .collect();
    assert!(messages.contains(&"line one".to_string()), "{messages:?}");
    assert!(messages.contains(&"line two".to_string()), "{messages:?}");
    assert!(
        messages.contains(&"counted\nwith a newline inside".to_string()),
        "octet counting keeps the newline: {messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_messages_are_skipped_and_the_next_ones_arrive() {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  sys: {{ type: syslog, mode: tcp, address: "127.0.0.1:{port}", max_length: 64 }}
"#
    ));
    let capture = CaptureSink::default();
    capture.attach(&mut p, "out", &["sys"], 100);
    let (_topo, telemetry) = start(p).await;
    wait_for_port(port).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let long = "x".repeat(500);
    // A count over `max_length` is read as a line (too long here, skipped to its end).
    let body = format!(
        "<13>1 - h a - - - {long}\n<13>1 - h a - - - short\n600 {}\n<13>1 - h a - - - after\n1701234567 epoch line\n<11>appliance text\n",
        "y".repeat(600)
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, body.as_bytes())
        .await
        .expect("write");
    drop(stream);
    eventually("four messages", || capture.values().len() == 4).await;
    let events = capture.values();
    let messages: Vec<String> = events.iter().map(|e| text(e, "message")).collect();
    assert_eq!(
        messages,
        ["short", "after", "1701234567 epoch line", "appliance text"]
    );
    assert_eq!(
        text(&events[3], "severity"),
        "err",
        "the PRI of a bare message is kept"
    );
    let errors = telemetry.render_prometheus();
    assert!(
        errors.contains(r#"sluice_component_errors_total{component_id="sys",component_kind="source",component_type="syslog",error_type="parse_failed",stage="receiving"} 2"#),
        "{errors}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_writes_octet_counted_rfc5424() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 2, format: '{{"message": "m{{{{seq}}}}", "hostname": "db1", "appname": "pg", "severity": "critical", "facility": "local3", "structured_data": {{"x@1": {{"k": "v]"}}}}}}' }}
sinks:
  out: {{ type: syslog, inputs: [gen], address: "127.0.0.1:{port}" }}
"#
    ));
    let (mut topo, _) = start(p).await;
    let (mut conn, _) = listener.accept().await.expect("accept");
    topo.finished().await;
    let mut bytes = Vec::new();
    conn.read_to_end(&mut bytes).await.expect("read");
    let wire = String::from_utf8(bytes).expect("utf8");
    let mut rest = wire.as_str();
    let mut lines = Vec::new();
    while let Some((count, after)) = rest.split_once(' ') {
        let n: usize = count.parse().expect("an octet count");
        lines.push(&after[..n]);
        rest = &after[n..];
    }
    assert_eq!(lines.len(), 2, "{wire}");
    for (i, line) in lines.iter().enumerate() {
        assert!(line.starts_with("<154>1 "), "local3.crit is 19*8+2: {line}");
        assert!(
            line.ends_with(&format!(r#" db1 pg - - [x@1 k="v\]"] m{i}"#)),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_to_source_over_tls_keeps_every_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).expect("write");
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).expect("write");
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  sys:
    type: syslog
    mode: tcp
    address: "127.0.0.1:{port}"
    tls: {{ cert: "{cert}", key: "{key}" }}
  gen: {{ type: generator, count: 3, format: '{{"message": "hello {{{{seq}}}}", "appname": "app", "procid": 77, "msgid": "M1", "severity": "warning", "structured_data": {{"origin@1": {{"ip": "10.1.2.3"}}}}}}' }}
sinks:
  relay:
    type: syslog
    inputs: [gen]
    address: "localhost:{port}"
    tls: {{ ca_file: "{cert}" }}
"#,
        cert = cert_pem.display(),
        key = key_pem.display(),
    ));
    let capture = CaptureSink::default();
    capture.attach(&mut p, "out", &["sys"], 100);
    let (_topo, _) = start(p).await;
    eventually("three messages", || capture.values().len() == 3).await;
    let mut events = capture.values();
    events.sort_by_key(|e| text(e, "message"));
    for (i, e) in events.iter().enumerate() {
        assert_eq!(text(e, "message"), format!("hello {i}"));
        assert_eq!(text(e, "appname"), "app");
        assert_eq!(text(e, "procid"), "77");
        assert_eq!(text(e, "msgid"), "M1");
        assert_eq!(text(e, "severity"), "warning");
        assert_eq!(text(e, "facility"), "user");
        assert_eq!(text(e, "structured_data.origin@1.ip"), "10.1.2.3");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_retried_then_dead_lettered() {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 1, format: '{{"message": "lost?"}}' }}
sinks:
  out: {{ type: syslog, inputs: [gen], address: "127.0.0.1:{port}", failure_handling: {{ max_retries: 3 }} }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["out.dead_letter"], 10);
    let clock = ManualClock::default();
    let options = TopologyOptions {
        clock: Arc::new(clock.clone()),
        ..TopologyOptions::default()
    };
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("dead letter", || dead.values().len() == 1).await;
    assert_eq!(clock.sleeps().len(), 3);
    let record = &dead.values()[0];
    assert_eq!(text(record, "message"), "lost?");
    assert!(
        text(record, "dead_letter.error").contains("gave up after 4 attempts: cannot connect"),
        "{record:?}"
    );
}
