//! The `email` sink against a real SMTP server: aiosmtpd (PyPI, which `.ci/run`
//! installs) run by tests/clients/smtp_server.py with STARTTLS or implicit TLS and AUTH.
//! What arrived is read back as Python's email package parsed it: the envelope, the
//! headers, the multipart bodies and the digest; 4xx replies are retried, 5xx
//! dead-lettered.

mod common;

use common::manual as options;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{KillOnDrop, eventually, free_port, parse, start_with};
use serde_json::Value;
use sluice::testing::CaptureSink;

const USER: &str = "alerts@example.com";
const PASSWORD: &str = "s3cret-smtp-password";

struct Smtp {
    _process: KillOnDrop,
    port: u16,
    out: PathBuf,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Smtp {
    /// Starts the server; `None` (the test skips) when aiosmtpd is missing outside CI.
    fn start(mode: &str, extra: &[&str]) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("cert");
        let (ca, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&ca, cert.cert.pem()).expect("write");
        std::fs::write(&key, cert.signing_key.serialize_pem()).expect("write");
        let tools = PathBuf::from(std::env::var_os("HOME")?).join(".cache/sluice-tools/python");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/smtp_server.py");
        let has_aiosmtpd = Command::new("python3")
            .env("PYTHONPATH", &tools)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !has_aiosmtpd {
            sluice::testing::skip("aiosmtpd is not installed (.ci/run installs it)");
            return None;
        }
        let port = free_port();
        let out = dir.path().join("received.jsonl");
        let mut child = Command::new("python3")
            .env("PYTHONPATH", &tools)
            .arg(&script)
            .args(["--port", &port.to_string(), "--mode", mode])
            .arg("--cert")
            .arg(&ca)
            .arg("--key")
            .arg(&key)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        Some(Self {
            _process: KillOnDrop(child),
            port,
            out,
            ca,
            _dir: dir,
        })
    }

    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

const FIRING: &str = r#"{"status": "firing", "severity": "critical", "summary": "DiskFull on db1", "service": "postgres", "owner": "dba@example.org", "labels": {"team": "core"}, "description": "disk at <b>99%</b>", "url": "https://grafana.example/d/1"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_auth_plain_deliver_one_multipart_message_per_event() {
    let Some(smtp) = Smtp::start("starttls", &["--user", USER, "--password", PASSWORD]) else {
        return;
    };
    let mut p = parse(&format!(
        r#"
sources:
  alerts: {{ type: generator, count: 2, format: '{FIRING}' }}
sinks:
  mail:
    type: email
    inputs: [alerts]
    host: 127.0.0.1
    port: {port}
    ca_file: "{ca}"
    username: "{USER}"
    password: "{PASSWORD}"
    from: "Alerts <{USER}>"
    to: ["{{{{ owner }}}}"]
    cc: [oncall@example.org]
"#,
        port = smtp.port,
        ca = smtp.ca.display(),
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["mail.dead_letter"], 10);
    let (_, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    let received = smtp.received();
    assert_eq!(received.len(), 2, "{received:?} dead: {:?}", dead.values());
    let m = &received[0];
    assert_eq!(m["tls"], true);
    assert_eq!(m["login"], USER);
    assert_eq!(m["mail_from"], USER);
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["dba@example.org", "oncall@example.org"])
    );
    assert_eq!(m["headers"]["subject"], "[CRITICAL] DiskFull on db1");
    assert_eq!(m["headers"]["from"], format!("Alerts <{USER}>"));
    assert_eq!(m["headers"]["to"], "dba@example.org");
    assert_eq!(m["headers"]["cc"], "oncall@example.org");
    assert!(
        m["headers"]["message-id"]
            .as_str()
            .is_some_and(|id| id.starts_with('<'))
    );
    assert_eq!(m["content_type"], "multipart/alternative");
    let text = m["text"].as_str().expect("a text/plain part");
    for want in [
        "severity: critical",
        "service: postgres",
        "team: core",
        "disk at <b>99%</b>",
        "Open: https://grafana.example/d/1",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    let html = m["html"].as_str().expect("a text/html part");
    assert!(html.contains("disk at &lt;b&gt;99%&lt;/b&gt;"), "{html}");
    assert!(
        html.contains(r#"<a href="https://grafana.example/d/1">Open</a>"#),
        "{html}"
    );
    assert!(dead.values().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_and_auth_login_send_a_digest() {
    let Some(smtp) = Smtp::start(
        "tls",
        &["--user", USER, "--password", PASSWORD, "--only-login"],
    ) else {
        return;
    };
    let mut p = parse(&format!(
        r#"
sources:
  alerts: {{ type: generator, count: 3, format: '{{"status": "firing", "severity": "high", "summary": "alert {{{{seq}}}}"}}' }}
sinks:
  mail:
    type: email
    inputs: [alerts]
    host: 127.0.0.1
    port: {port}
    tls: tls
    ca_file: "{ca}"
    username: "{USER}"
    password: "{PASSWORD}"
    from: "{USER}"
    to: [team@example.org]
    mode: digest
    batch: {{ max_events: 10, timeout: 1h }}
"#,
        port = smtp.port,
        ca = smtp.ca.display(),
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["mail.dead_letter"], 10);
    let (_, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    let received = smtp.received();
    assert_eq!(
        received.len(),
        1,
        "one digest: {received:?} {:?}",
        dead.values()
    );
    let m = &received[0];
    assert_eq!(m["tls"], true);
    assert_eq!(m["login"], USER);
    assert_eq!(m["headers"]["subject"], "3 alerts: [HIGH] alert 0");
    let text = m["text"].as_str().expect("text");
    for n in 0..3 {
        assert!(text.contains(&format!("[HIGH] alert {n}")), "{text}");
    }
    assert_eq!(
        m["html"].as_str().map(|h| h.matches("<hr>").count()),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_retried_and_a_5xx_is_dead_lettered_with_the_reply() {
    let Some(smtp) = Smtp::start("starttls", &["--defer", "2"]) else {
        return;
    };
    let mut p = parse(&format!(
        r#"
sources:
  alerts: {{ type: generator, count: 1, format: '{{"summary": "deferred", "owner": "a@example.org"}}' }}
  rejected: {{ type: generator, count: 1, format: '{{"summary": "refused", "owner": "nobody@rejected.example"}}' }}
sinks:
  mail:
    type: email
    inputs: [alerts, rejected]
    host: 127.0.0.1
    port: {port}
    ca_file: "{ca}"
    from: alerts@example.com
    to: ["{{{{ owner }}}}"]
"#,
        port = smtp.port,
        ca = smtp.ca.display(),
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["mail.dead_letter"], 10);
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("dead letter", || dead.values().len() == 1).await;
    let received = smtp.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["headers"]["subject"], "[INFO] deferred");
    assert_eq!(
        clock.sleeps().len(),
        2,
        "one pause per 451, none for the 550"
    );
    let record = serde_json::to_value(&dead.values()[0]).expect("json")["dead_letter"].clone();
    assert_eq!(record["status"], 550, "{record}");
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("mailbox unavailable")),
        "{record}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_nobody_trusts_is_refused_without_retries() {
    let Some(smtp) = Smtp::start("starttls", &[]) else {
        return;
    };
    let mut p = parse(&format!(
        r#"
sources:
  alerts: {{ type: generator, count: 1, format: '{{"summary": "s"}}' }}
sinks:
  mail: {{ type: email, inputs: [alerts], host: 127.0.0.1, port: {}, from: a@example.com, to: [b@example.org] }}
"#,
        smtp.port
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["mail.dead_letter"], 10);
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("dead letter", || dead.values().len() == 1).await;
    assert!(clock.sleeps().is_empty(), "{:?}", dead.values());
    let record = serde_json::to_value(&dead.values()[0]).expect("json")["dead_letter"].clone();
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate")),
        "{record}"
    );
    assert!(smtp.received().is_empty());
}

#[test]
fn credentials_without_tls_and_empty_secrets_are_config_errors() {
    let err = |extra: &str| {
        let text = format!(
            "sinks:\n  mail: {{ type: email, inputs: [x], host: h, from: a@example.com, {extra} }}\nsources:\n  x: {{ type: generator, count: 1 }}\n"
        );
        let mut pipeline = parse(&text);
        pipeline
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(
        err("to: [b@example.org], tls: none, username: u, password: pw12")
            .contains("password would cross the network in clear")
    );
    assert!(err("to: [b@example.org], username: u, password: ' '").contains("empty secret"));
    assert!(err("to: []").contains("at least one recipient"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_fails_the_attempt_at_timeout() {
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let mut p = parse(&format!(
        r#"
sources:
  alerts: {{ type: generator, count: 1, format: '{{"summary": "s"}}' }}
sinks:
  mail: {{ type: email, inputs: [alerts], host: 127.0.0.1, port: {port}, tls: none, from: a@example.com, to: [b@example.org], timeout: 200ms, failure_handling: {{ max_retries: 2 }} }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["mail.dead_letter"], 10);
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("dead letter", || dead.values().len() == 1).await;
    assert_eq!(clock.sleeps().len(), 2, "each silent attempt was retried");
    let record = serde_json::to_value(&dead.values()[0]).expect("json")["dead_letter"].clone();
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not finish the delivery within 200ms")),
        "{record}"
    );
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_hold_at_most_max_events_and_go_out_at_shutdown() {
    let Some(smtp) = Smtp::start("starttls", &[]) else {
        return;
    };
    let hook = free_port();
    let p = parse(&format!(
        r#"
sources:
  alerts: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  mail:
    type: email
    inputs: [alerts]
    host: 127.0.0.1
    port: {port}
    ca_file: "{ca}"
    from: alerts@example.com
    to: [team@example.org]
    mode: digest
    batch: {{ max_events: 2, timeout: 1h }}
"#,
        port = smtp.port,
        ca = smtp.ca.display(),
    ));
    let (_, options) = options();
    let (topo, _) = start_with(p, options).await;
    common::wait_for_port(hook).await;
    let events: Vec<Value> = (0..5)
        .map(|n| serde_json::json!({"summary": format!("alert {n}")}))
        .collect();
    let post = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{hook}/"))
            .json(&events)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    // Full digests go out at once; the fifth event waits for the timer or a shutdown.
    eventually("two full digests", || smtp.received().len() == 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(smtp.received().len(), 2);
    assert!(!post.is_finished(), "the request waits for its last event");
    let drained = topo.stop(std::time::Duration::from_secs(10)).await;
    assert_eq!(drained, sluice::topology::Drained::Complete);
    assert_eq!(post.await.expect("join").expect("answered"), 200);
    let subjects: Vec<String> = smtp
        .received()
        .iter()
        .map(|m| m["headers"]["subject"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        subjects,
        [
            "2 alerts: [INFO] alert 0",
            "2 alerts: [INFO] alert 2",
            "[INFO] alert 4"
        ]
    );
}
