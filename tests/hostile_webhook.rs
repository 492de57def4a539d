//! The webhook port as an attacker sees it: forged and replayed SNS messages, one request
//! that tries to take the process down, bodies a careless client sends, and settings that
//! would open the door. Each test reproduces an attack against the real HTTP server and
//! asserts what reached the sink.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, parse, sign_sns, start, start_with, string, wait_for_port};
use serde_json::{Value as Json, json};
use sluice::buffer::MemoryBudget;
use sluice::testing::CaptureSink;
use sluice::topology::TopologyOptions;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const CERT_URL: &str = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem";
const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:alarms";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn body_json(r: reqwest::Response) -> Json {
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON body ({e}): {text}"))
}

/// A CloudWatch alarm message in the given state.
fn alarm(state: &str) -> String {
    json!({
        "AlarmName": "HighCPU",
        "AWSAccountId": "123456789012",
        "NewStateValue": state,
        "OldStateValue": if state == "OK" { "ALARM" } else { "OK" },
        "NewStateReason": "threshold crossed",
        "StateChangeTime": "2026-11-21T12:00:00.000+0000",
        "Region": "EU (Ireland)",
        "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:HighCPU",
        "Trigger": { "MetricName": "CPUUtilization", "Namespace": "AWS/EC2", "Dimensions": [] }
    })
    .to_string()
}

/// An SNS notification signed with the test key (SignatureVersion 2).
fn signed(message: &str, message_id: &str, timestamp: &str) -> serde_json::Map<String, Json> {
    let fields = [
        ("Message", message),
        ("MessageId", message_id),
        ("Timestamp", timestamp),
        ("TopicArn", TOPIC),
        ("Type", "Notification"),
    ];
    let mut doc = serde_json::Map::new();
    for (k, v) in fields {
        doc.insert(k.into(), Json::String(v.into()));
    }
    doc.insert("SignatureVersion".into(), "2".into());
    doc.insert(
        "Signature".into(),
        sign_sns(&fields, &format!("{FIXTURES}/sns/test-signing-key.pem")).into(),
    );
    doc.insert("SigningCertURL".into(), CERT_URL.into());
    doc
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn sns_pipeline(extra: &str) -> (u16, CaptureSink, sluice::topology::Topology) {
    sns_pipeline_into(extra, CaptureSink::default()).await
}

/// The SNS webhook with the test signing certificate pinned, delivering into `sink`.
async fn sns_pipeline_into(
    extra: &str,
    sink: CaptureSink,
) -> (u16, CaptureSink, sluice::topology::Topology) {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  sns:
    type: webhook
    address: "127.0.0.1:{port}"
    decoder: aws_sns
    sns:
      certificates: {{ "{CERT_URL}": "{FIXTURES}/sns/test-signing-cert.pem" }}
{extra}
"#
    ));
    sink.attach(&mut p, "out", &["sns"], 100);
    let (topo, _) = start(p).await;
    wait_for_port(port).await;
    (port, sink, topo)
}

/// A captured signed message cannot carry unsigned `Records` beside it: only the signed
/// `Message` becomes an event, so a forged "resolved" cannot silence the real page.
#[tokio::test]
async fn unsigned_records_beside_a_signed_message_are_ignored() {
    let (port, sink, _topo) = sns_pipeline("").await;
    let mut forged = signed(&alarm("ALARM"), "m-records", &now_rfc3339());
    forged.insert(
        "Records".into(),
        json!([{ "Sns": {
            "Type": "Notification",
            "TopicArn": TOPIC,
            "MessageId": "forged",
            "Timestamp": now_rfc3339(),
            "Message": alarm("OK"),
        }}]),
    );
    forged.insert(
        "MessageAttributes".into(),
        json!({ "status": { "Type": "String", "Value": "resolved" } }),
    );
    let r = client()
        .post(format!("http://127.0.0.1:{port}/"))
        .header("content-type", "text/plain; charset=UTF-8")
        .json(&Json::Object(forged))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    assert_eq!(body_json(r).await["accepted"], 1);
    let events = sink.values();
    assert_eq!(events.len(), 1, "one event, from the signed Message only");
    assert_eq!(string(&events[0], "status").as_deref(), Some("firing"));
    assert_eq!(string(&events[0], "summary").as_deref(), Some("HighCPU"));
}

/// A stale signed message is refused; a fresh one accepted twice is delivered once.
#[tokio::test]
async fn replayed_sns_messages_are_refused_or_dropped() {
    let (port, sink, _topo) = sns_pipeline("").await;
    let url = format!("http://127.0.0.1:{port}/");

    let stale = signed(&alarm("OK"), "m-2020", "2020-01-01T00:00:00.000Z");
    for _ in 0..3 {
        let r = client()
            .post(&url)
            .json(&Json::Object(stale.clone()))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 403);
        let error = body_json(r).await["error"].as_str().map(str::to_owned);
        assert!(
            error.as_deref().is_some_and(|e| e.contains("sns.max_age")),
            "{error:?}"
        );
    }
    assert!(sink.values().is_empty());

    let fresh = signed(&alarm("ALARM"), "m-fresh", &now_rfc3339());
    let first = client()
        .post(&url)
        .json(&Json::Object(fresh.clone()))
        .send()
        .await
        .expect("POST");
    assert_eq!(first.status(), 200);
    assert_eq!(body_json(first).await, json!({ "accepted": 1 }));
    let again = client()
        .post(&url)
        .json(&Json::Object(fresh))
        .send()
        .await
        .expect("POST");
    assert_eq!(again.status(), 200, "SNS must stop retrying");
    assert_eq!(
        body_json(again).await,
        json!({ "accepted": 0, "duplicate": true })
    );
    assert_eq!(sink.values().len(), 1, "the replay sent nothing");
}

/// The signed text is `key\nvalue\n` pairs and `Subject` is optional: moving a captured
/// message's Subject into its MessageId signs the same text under a new id. Refused.
#[tokio::test]
async fn a_subject_shifted_into_the_message_id_is_refused() {
    let (port, sink, _topo) = sns_pipeline("").await;
    let now = now_rfc3339();
    let message = alarm("OK");
    let fields = [
        ("Message", message.as_str()),
        ("MessageId", "m-shift"),
        ("Subject", "OK: HighCPU"),
        ("Timestamp", now.as_str()),
        ("TopicArn", TOPIC),
        ("Type", "Notification"),
    ];
    let signature = sign_sns(&fields, &format!("{FIXTURES}/sns/test-signing-key.pem"));
    let envelope = |pairs: &[(&str, &str)]| {
        let mut doc = serde_json::Map::new();
        for (k, v) in pairs {
            doc.insert((*k).into(), Json::String((*v).into()));
        }
        doc.insert("SignatureVersion".into(), "2".into());
        doc.insert("Signature".into(), signature.clone().into());
        doc.insert("SigningCertURL".into(), CERT_URL.into());
        Json::Object(doc)
    };
    let url = format!("http://127.0.0.1:{port}/");
    let r = client()
        .post(&url)
        .json(&envelope(&fields))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let shifted = [
        ("Message", message.as_str()),
        ("MessageId", "m-shift\nSubject\nOK: HighCPU"),
        ("Timestamp", now.as_str()),
        ("TopicArn", TOPIC),
        ("Type", "Notification"),
    ];
    let r = client()
        .post(&url)
        .json(&envelope(&shifted))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403);
    let error = body_json(r).await["error"].as_str().map(str::to_owned);
    assert_eq!(error.as_deref(), Some("`MessageId` holds a line break"));
    assert_eq!(sink.values().len(), 1, "the shifted copy sent nothing");
}

/// `max_age` widens the window for topics whose delivery policy retries for longer.
#[tokio::test]
async fn max_age_is_the_replay_window() {
    let (port, sink, _topo) = sns_pipeline("      max_age: 3h").await;
    let two_hours_ago = (chrono::Utc::now() - chrono::Duration::hours(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let r = client()
        .post(format!("http://127.0.0.1:{port}/"))
        .json(&Json::Object(signed(
            &alarm("ALARM"),
            "m-old",
            &two_hours_ago,
        )))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    assert_eq!(sink.values().len(), 1);
}

/// A message whose delivery failed is not remembered: SNS's retry is taken.
#[tokio::test]
async fn a_failed_delivery_leaves_the_message_id_free_for_the_retry() {
    let failing = CaptureSink {
        status: sluice::event::EventStatus::Errored,
        ..CaptureSink::default()
    };
    let (port, sink, _topo) = sns_pipeline_into("", failing).await;
    let message = signed(&alarm("ALARM"), "m-retry", &now_rfc3339());
    for attempt in 1..=2 {
        let r = client()
            .post(format!("http://127.0.0.1:{port}/"))
            .json(&Json::Object(message.clone()))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 503, "attempt {attempt} is delivered, and fails");
        assert_eq!(sink.values().len(), attempt);
    }
}

fn validate(yaml: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, yaml).expect("write");
    let mut cmd = common::sluice();
    cmd.args(["validate", "-c"]).arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("validate runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Settings that would let anyone in are refused before anything listens.
#[test]
fn open_doors_are_validate_errors() {
    let (code, stderr) = validate(
        r#"
sources:
  sns: { type: webhook, address: "127.0.0.1:0", decoder: aws_sns, sns: { auto_confirm: true } }
sinks:
  out: { type: console, inputs: [sns] }
"#,
        &[],
    );
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("sources.sns")
            && stderr.contains("`sns.auto_confirm` needs `sns.topic_arns`"),
        "{stderr}"
    );
    // A pattern that pins no account is no restriction; an empty entry (an unset
    // variable) refuses every message without a word.
    for (topics, env, says) in [
        (r#"["*"]"#, vec![], "does not name an AWS account"),
        (
            r#"["arn:aws:sns:*:*:alerts"]"#,
            vec![],
            "does not name an AWS account",
        ),
        (
            r#"["${SNS_TOPIC}"]"#,
            vec![("SNS_TOPIC", "")],
            "empty entry",
        ),
    ] {
        let (code, stderr) = validate(
            &format!(
                r#"
sources:
  sns: {{ type: webhook, address: "127.0.0.1:0", decoder: aws_sns, sns: {{ auto_confirm: true, topic_arns: {topics} }} }}
sinks:
  out: {{ type: console, inputs: [sns] }}
"#
            ),
            &env,
        );
        assert_eq!(code, Some(78), "{topics}: {stderr}");
        assert!(stderr.contains(says), "{topics}: {stderr}");
    }

    let (code, stderr) = validate(
        r#"
sources:
  hook:
    type: webhook
    address: "127.0.0.1:0"
    auth: { basic: { user: alice, password: "${BASIC_PW}" } }
sinks:
  out: { type: console, inputs: [hook] }
"#,
        &[("BASIC_PW", "")],
    );
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("sources.hook") && stderr.contains("`password` must not be empty"),
        "{stderr}"
    );
}

async fn json_pipeline(
    options: &str,
    sink_capacity: usize,
) -> (u16, CaptureSink, sluice::topology::Topology) {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{port}"{options} }}
"#
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["hook"], sink_capacity);
    let (topo, _) = start(p).await;
    wait_for_port(port).await;
    (port, sink, topo)
}

/// 10 MiB of `1\n` was 5 million events; now reading stops past
/// `max_events_per_request` and the request is refused whole.
#[tokio::test]
async fn one_request_cannot_become_millions_of_events() {
    let (port, sink, _topo) = json_pipeline("", 100).await;
    let body = "1\n".repeat(5 * 1024 * 1024);
    let r = client()
        .post(format!("http://127.0.0.1:{port}/"))
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 413);
    let error = body_json(r).await["error"].as_str().map(str::to_owned);
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("max_events_per_request (10000)")),
        "{error:?}"
    );
    assert!(sink.values().is_empty(), "nothing of it was accepted");
}

/// The bound is exact, for generic JSON and for vendor decoders alike.
#[tokio::test]
async fn max_events_per_request_is_all_or_nothing() {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook:
    type: webhook
    address: "127.0.0.1:{port}"
    max_events_per_request: 3
    routes:
      - {{ path: /json }}
      - {{ path: /am, decoder: alertmanager }}
"#
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["hook"], 100);
    let (_topo, _) = start(p).await;
    wait_for_port(port).await;
    let post = |path: &'static str, body: String| {
        client()
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        post("/json", "[1,2,3]".into())
            .await
            .expect("POST")
            .status(),
        200
    );
    assert_eq!(
        post("/json", "[4,5,6,7]".into())
            .await
            .expect("POST")
            .status(),
        413
    );
    let alerts = |n: usize| {
        let alerts: Vec<Json> = (0..n)
            .map(|i| json!({ "status": "firing", "labels": { "alertname": format!("A{i}") } }))
            .collect();
        json!({ "version": "4", "status": "firing", "alerts": alerts }).to_string()
    };
    assert_eq!(post("/am", alerts(4)).await.expect("POST").status(), 413);
    assert_eq!(sink.values().len(), 3, "only the first request's events");
    assert_eq!(post("/am", alerts(3)).await.expect("POST").status(), 200);
    assert_eq!(sink.values().len(), 6);
}

/// A client that writes its whole body before reading (Python's http.client) reads the
/// 413, not a connection reset.
#[tokio::test]
async fn an_oversized_body_is_answered_not_reset() {
    let (port, sink, _topo) = json_pipeline(", max_body_bytes: 65536", 100).await;
    let exchange = move |chunked: bool| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let body = vec![b' '; 4 * 1024 * 1024];
        let head = if chunked {
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_owned()
        } else {
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
        };
        stream.write_all(head.as_bytes()).expect("head");
        if chunked {
            for piece in body.chunks(64 * 1024) {
                write!(stream, "{:x}\r\n", piece.len()).expect("chunk");
                stream.write_all(piece).expect("the whole body is written");
                stream.write_all(b"\r\n").expect("chunk end");
            }
            stream.write_all(b"0\r\n\r\n").expect("last chunk");
        } else {
            stream.write_all(&body).expect("the whole body is written");
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    for chunked in [false, true] {
        let answer = tokio::task::spawn_blocking(move || exchange(chunked))
            .await
            .expect("client");
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "chunked={chunked}: {answer:?}"
        );
        assert!(answer.contains("max_body_bytes (65536 bytes)"), "{answer}");
    }
    assert!(sink.values().is_empty());
}

/// Only JSON is read: a form or multipart body (what a web page can send cross-site) is
/// 415 and sends nothing.
#[tokio::test]
async fn bodies_that_are_not_json_are_unsupported_media() {
    let (port, sink, _topo) = json_pipeline("", 100).await;
    let url = format!("http://127.0.0.1:{port}/");
    let post = |content_type: &'static str, body: &'static str| {
        let request = client()
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        async move {
            let r = request.send().await.expect("POST");
            let status = r.status().as_u16();
            let error = body_json(r).await["error"].as_str().map(str::to_owned);
            (status, error)
        }
    };
    // Refused, with the error naming what was wrong: forms and other types, a declared
    // UTF-16, a byte order mark (named, not "expected value at column 1").
    for (content_type, body, status, names) in [
        (
            "application/x-www-form-urlencoded",
            "{\"n\":1}",
            415,
            "application/x-www-form-urlencoded",
        ),
        (
            "multipart/form-data; boundary=x",
            "{\"n\":1}",
            415,
            "multipart/form-data; boundary=x",
        ),
        ("text/html", "{\"n\":1}", 415, "text/html"),
        (
            "application/json; charset=utf-16",
            "{\"n\":3}",
            415,
            "charset",
        ),
        (
            "application/json",
            "\u{feff}{\"n\":4}",
            400,
            "byte order mark",
        ),
    ] {
        let (got, error) = post(content_type, body).await;
        assert_eq!(got, status, "{content_type}");
        assert!(
            error.as_deref().is_some_and(|e| e.contains(names)),
            "{error:?}"
        );
    }
    for content_type in ["application/json", "application/x-ndjson", "text/plain"] {
        let (got, _) = post(content_type, "{\"n\":2}").await;
        assert_eq!(got, 200, "{content_type}");
    }
    assert_eq!(sink.ints("n"), vec![2, 2, 2]);
}

/// With `memory_limit` spent by events the sink has not taken, a new request is not
/// even read: it waits for room, then is answered 503, and nothing of it enters.
#[tokio::test]
async fn a_request_is_charged_to_memory_limit_before_it_is_read() {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{port}", request_timeout: 300ms }}
"#
    ));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let sink = CaptureSink {
        gate: Some(Arc::clone(&gate)),
        ..CaptureSink::default()
    };
    sink.attach(&mut p, "out", &["hook"], 10_000);
    let options = TopologyOptions {
        memory_budget: Some(MemoryBudget::new(2 * 1024 * 1024)),
        ..TopologyOptions::default()
    };
    let (_topo, _) = start_with(p, options).await;
    wait_for_port(port).await;
    let url = format!("http://127.0.0.1:{port}/");
    let ndjson = |from: i64, n: i64| {
        (from..from + n)
            .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(200)))
            .collect::<String>()
    };
    // The sink takes the first request's batch and blocks; the second waits in its
    // buffer, charged to the budget. A large request may fill at most three quarters of
    // the budget, so the third one no longer fits.
    for (from, expected) in [(0, 202), (1000, 202)] {
        let r = client()
            .post(&url)
            .body(ndjson(from, 500))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), expected);
    }
    let r = client()
        .post(&url)
        .body(ndjson(5000, 500))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let error = body_json(r).await["error"].as_str().map(str::to_owned);
    assert_eq!(
        error.as_deref(),
        Some("memory_limit is reached; retry later")
    );
    gate.add_permits(1_000_000);
    common::eventually("both accepted requests are delivered", || {
        sink.values().len() == 1000
    })
    .await;
    let ns = sink.ints("n");
    assert!(
        ns.iter().all(|n| *n < 5000),
        "the refused request sent nothing"
    );
}

/// A webhook source with `decode_timeout: 50ms`, a `/slow` route whose decoder plugin
/// hashes the whole payload once per item (quadratic on purpose) and a `/json` route.
async fn slow_plugin_pipeline() -> (
    u16,
    CaptureSink,
    sluice::topology::Topology,
    tempfile::TempDir,
) {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("decoders")).expect("mkdir");
    std::fs::write(
        dir.path().join("decoders/slow.vrl"),
        r#"
payload = .
for_each(array!(.items)) -> |_i, _v| { _h = sha2(encode_json(payload), variant: "SHA-512") }
. = [{"status": "firing", "summary": "slow"}]
"#,
    )
    .expect("plugin");
    sluice::plugins::set_dirs(vec![dir.path().to_path_buf()]);
    let mut p = parse(&format!(
        r#"
sources:
  hook:
    type: webhook
    address: "127.0.0.1:{port}"
    decode_timeout: 50ms
    routes:
      - {{ path: /slow, decoder: slow }}
      - {{ path: /json }}
"#
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["hook"], 100);
    let (topo, _) = start(p).await;
    wait_for_port(port).await;
    (port, sink, topo, dir)
}

/// A decoder that takes too long is cut off with 413 naming `decode_timeout`.
#[tokio::test]
async fn slow_decoding_is_cut_off() {
    let (port, sink, _topo, _dir) = slow_plugin_pipeline().await;
    let items: Vec<Json> = (0..1_000)
        .map(|i| json!({ "i": i, "pad": "yyyyyyyy" }))
        .collect();
    let r = client()
        .post(format!("http://127.0.0.1:{port}/slow"))
        .json(&json!({ "items": items }))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 413);
    let error = body_json(r).await["error"].as_str().map(str::to_owned);
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("decode_timeout (50ms)")),
        "{error:?}"
    );
    // The other route still answers while the slow decode finishes off the runtime.
    let r = client()
        .post(format!("http://127.0.0.1:{port}/json"))
        .body("{\"n\":1}")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    assert_eq!(sink.ints("n"), vec![1]);
}

/// Time spent queueing for a decode slot is not decoding: a body that waited behind
/// slow ones is decoded with its whole `decode_timeout`, not answered 413 ("send fewer
/// alerts") for a wait it did not cause.
#[tokio::test]
async fn waiting_for_a_decode_slot_does_not_spend_decode_timeout() {
    let (port, sink, _topo, _dir) = slow_plugin_pipeline().await;
    // As many slow bodies as there are slots: each is answered 413 after 50 ms and keeps
    // its slot until its work ends, hundreds of milliseconds later.
    let slots = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let items: Vec<Json> = (0..2_000)
        .map(|i| json!({ "i": i, "pad": "yyyyyyyy" }))
        .collect();
    let slow = json!({ "items": items });
    let mut answers = Vec::new();
    for _ in 0..slots {
        let slow = slow.clone();
        answers.push(tokio::spawn(async move {
            client()
                .post(format!("http://127.0.0.1:{port}/slow"))
                .json(&slow)
                .send()
                .await
                .expect("POST")
                .status()
        }));
    }
    for answer in answers {
        assert_eq!(answer.await.expect("task"), 413);
    }
    // Over the inline size, so it needs a slot; quick to decode once it has one.
    let body = json!({ "n": 7, "pad": "z".repeat(20_000) }).to_string();
    let r = client()
        .post(format!("http://127.0.0.1:{port}/json"))
        .body(body)
        .send()
        .await
        .expect("POST");
    let status = r.status();
    assert_eq!(status, 200, "{}", r.text().await.unwrap_or_default());
    assert_eq!(sink.ints("n"), vec![7]);
}

/// A route's path may be its only secret: the 404 for any other path names none.
#[tokio::test]
async fn a_wrong_path_does_not_list_the_routes() {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook:
    type: webhook
    address: "127.0.0.1:{port}"
    routes:
      - {{ path: /hooks/8f3a9c2e71d04b5aa1c0ffee }}
      - {{ path: /grafana, decoder: grafana }}
"#
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["hook"], 100);
    let (_topo, _) = start(p).await;
    wait_for_port(port).await;
    for path in ["/anything", "/", "/hooks/"] {
        let r = client()
            .post(format!("http://127.0.0.1:{port}{path}"))
            .json(&json!({}))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 404);
        let text = r.text().await.expect("body");
        assert!(text.contains("no route here"), "{text}");
        assert!(
            !text.contains("8f3a9c2e") && !text.contains("grafana"),
            "{path}: {text}"
        );
    }
    let r = client()
        .post(format!(
            "http://127.0.0.1:{port}/hooks/8f3a9c2e71d04b5aa1c0ffee"
        ))
        .json(&json!({ "n": 1 }))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    assert_eq!(sink.ints("n"), vec![1]);
}
