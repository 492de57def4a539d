//! The `slack` sink against a loopback receiver that behaves as Slack's incoming
//! webhooks are documented to (tests/fixtures/slack): `ok` in plain text, plain-text
//! error strings, 429 with `Retry-After`.

mod common;

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use common::{Receiver, Reply, free_port, parse, start_with};
use serde_json::Value;
use sluice::clock::ManualClock;
use sluice::testing::CaptureSink;
use sluice::topology::TopologyOptions;

#[derive(Clone, Default)]
struct Slack {
    messages: Arc<Mutex<Vec<Value>>>,
}

impl Slack {
    /// Accepts a message with a non-empty `text` (and `blocks`, if any, an array).
    async fn start(&self) -> u16 {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/services/T000/B000/XXXX",
            axum::routing::post(move |body: bytes::Bytes| {
                let me = me.clone();
                async move {
                    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
                        return (StatusCode::BAD_REQUEST, "invalid_payload");
                    };
                    if msg["text"].as_str().is_none_or(str::is_empty) {
                        return (StatusCode::BAD_REQUEST, "no_text");
                    }
                    if msg.get("blocks").is_some_and(|b| !b.is_array()) {
                        return (StatusCode::BAD_REQUEST, "invalid_payload");
                    }
                    me.messages.lock().expect("lock").push(msg);
                    (StatusCode::OK, "ok")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        port
    }
}

fn manual() -> (ManualClock, TopologyOptions) {
    let clock = ManualClock::default();
    (
        clock.clone(),
        TopologyOptions {
            clock: Arc::new(clock),
            ..TopologyOptions::default()
        },
    )
}

fn texts(blocks: &Value) -> String {
    blocks.to_string()
}

#[tokio::test]
async fn firing_and_resolved_alerts_have_distinct_messages() {
    free_port();
    let slack = Slack::default();
    let port = slack.start().await;
    let p = parse(&format!(
        r#"
sources:
  firing: {{ type: generator, count: 1, format: '{{"status": "firing", "severity": "critical", "summary": "DiskFull on db1", "service": "postgres", "region": "eu-west-1", "labels": {{"team": "core"}}, "description": "disk at 99%", "url": "https://grafana.example/d/1"}}' }}
sinks:
  chat: {{ type: slack, inputs: [firing], webhook_url: "http://127.0.0.1:{port}/services/T000/B000/XXXX" }}
"#
    ));
    let (_, options) = manual();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    let p = parse(&format!(
        r#"
sources:
  resolved: {{ type: generator, count: 1, format: '{{"status": "resolved", "severity": "critical", "summary": "DiskFull on db1", "service": "postgres"}}' }}
sinks:
  chat: {{ type: slack, inputs: [resolved], webhook_url: "http://127.0.0.1:{port}/services/T000/B000/XXXX" }}
"#
    ));
    let (_, options) = manual();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;

    let messages = slack.messages.lock().expect("lock").clone();
    assert_eq!(messages.len(), 2);
    let (firing, resolved) = (&messages[0], &messages[1]);
    assert_eq!(firing["text"], "[CRITICAL] DiskFull on db1");
    assert_eq!(resolved["text"], "[RESOLVED] DiskFull on db1");
    let blocks = firing["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        ":red_circle: [CRITICAL] DiskFull on db1"
    );
    let fields = texts(&blocks[1]["fields"]);
    for want in [
        "*Severity*\\ncritical",
        "*service*\\npostgres",
        "*region*\\neu-west-1",
        "*team*\\ncore",
    ] {
        assert!(fields.contains(want), "{want} in {fields}");
    }
    assert_eq!(blocks[2]["text"]["text"], "disk at 99%");
    assert_eq!(
        blocks[3]["elements"][0]["url"],
        "https://grafana.example/d/1"
    );
    let resolved_blocks = resolved["blocks"].as_array().expect("blocks");
    assert_eq!(
        resolved_blocks[0]["text"]["text"],
        ":white_check_mark: [RESOLVED] DiskFull on db1"
    );
    assert!(
        !texts(&resolved["blocks"]).contains("Severity"),
        "no severity once resolved"
    );
}

#[tokio::test]
async fn rate_limits_are_retried_and_slack_errors_are_dead_lettered() {
    let rx = Receiver::new(0).start().await;
    rx.script([
        Reply::status(429).with_header("Retry-After", "1"),
        Reply::status(200).with_body("ok"),
        Reply::status(404).with_body("channel_not_found"),
    ]);
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 2, batch_size: 1, format: '{{"summary": "alert {{{{seq}}}}"}}' }}
sinks:
  chat: {{ type: slack, inputs: [gen], webhook_url: "http://127.0.0.1:{}/hook" }}
"#,
        rx.port
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["chat.dead_letter"], 10);
    let (clock, options) = manual();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    assert_eq!(clock.sleeps(), vec![std::time::Duration::from_secs(1)]);
    assert_eq!(rx.requests().len(), 3);
    let dead = dead.values();
    assert_eq!(dead.len(), 1);
    let record = serde_json::to_value(&dead[0]).expect("json")["dead_letter"].clone();
    assert_eq!(record["status"], 404);
    assert_eq!(record["body"], "channel_not_found");
    assert_eq!(
        serde_json::to_value(&dead[0]).expect("json")["summary"],
        "alert 1"
    );
}

#[tokio::test]
async fn a_formatter_file_overrides_the_built_in_one_and_must_produce_text() {
    let slack = Slack::default();
    let port = slack.start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let custom = dir.path().join("custom.vrl");
    std::fs::write(
        &custom,
        r#". = { "text": "custom: " + (string(.summary) ?? "?") }"#,
    )
    .expect("write");
    let silent = dir.path().join("silent.vrl");
    std::fs::write(&silent, r#". = { "blocks": [] }"#).expect("write");
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 1, format: '{{"summary": "hello"}}' }}
sinks:
  custom: {{ type: slack, inputs: [gen], webhook_url: "http://127.0.0.1:{port}/services/T000/B000/XXXX", formatter_file: "{}" }}
  silent: {{ type: slack, inputs: [gen], webhook_url: "http://127.0.0.1:{port}/services/T000/B000/XXXX", formatter_file: "{}" }}
"#,
        custom.display(),
        silent.display()
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["silent.dead_letter"], 10);
    let (_, options) = manual();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    let messages = slack.messages.lock().expect("lock").clone();
    assert_eq!(messages, vec![serde_json::json!({"text": "custom: hello"})]);
    let record = serde_json::to_value(&dead.values()[0]).expect("json")["dead_letter"].clone();
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("produced no `text`")),
        "{record}"
    );
}
