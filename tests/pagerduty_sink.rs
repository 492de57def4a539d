//! The `pagerduty` sink against a loopback receiver that enforces the Events API v2
//! request schema (as documented; tests/fixtures/pagerduty) and answers with the
//! documented bodies.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use common::{eventually, free_port, parse, start_with, wait_for_port};
use serde_json::{Value, json};
use sluice::clock::ManualClock;
use sluice::testing::CaptureSink;
use sluice::topology::{Drained, TopologyOptions};

const KEY: &str = "e93facc04764012d7bfb002500d5d1a6";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/pagerduty/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// The documented rules of POST /v2/enqueue; `Err` is the reason a real endpoint
/// would answer 400.
fn validate(body: &Value) -> Result<(), String> {
    let key = body["routing_key"].as_str().ok_or("routing_key missing")?;
    if key.len() != 32 {
        return Err("Length of 'routing_key' is incorrect (should be 32 characters)".into());
    }
    let action = body["event_action"]
        .as_str()
        .ok_or("event_action missing")?;
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        return Err(format!("event_action '{action}' is invalid"));
    }
    if let Some(d) = body.get("dedup_key") {
        let d = d.as_str().ok_or("dedup_key must be a string")?;
        if d.len() > 255 {
            return Err("dedup_key too long".into());
        }
    } else if action != "trigger" {
        return Err("dedup_key is required for acknowledge and resolve".into());
    }
    if action == "trigger" {
        let p = body["payload"].as_object().ok_or("payload missing")?;
        let summary = p
            .get("summary")
            .and_then(Value::as_str)
            .ok_or("summary missing")?;
        if summary.chars().count() > 1024 {
            return Err("summary longer than 1024".into());
        }
        p.get("source")
            .and_then(Value::as_str)
            .ok_or("source missing")?;
        let sev = p
            .get("severity")
            .and_then(Value::as_str)
            .ok_or("severity missing")?;
        if !["critical", "error", "warning", "info"].contains(&sev) {
            return Err(format!("severity '{sev}' is invalid"));
        }
    }
    Ok(())
}

#[derive(Clone, Default)]
struct PagerDuty {
    events: Arc<Mutex<Vec<Value>>>,
    throttle_next: Arc<Mutex<u32>>,
}

impl PagerDuty {
    async fn start(&self, port: u16) {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/v2/enqueue",
            axum::routing::post(move |body: bytes::Bytes| {
                let me = me.clone();
                async move {
                    {
                        let mut t = me.throttle_next.lock().expect("lock");
                        if *t > 0 {
                            *t -= 1;
                            return (StatusCode::TOO_MANY_REQUESTS, String::new());
                        }
                    }
                    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
                        return (
                            StatusCode::BAD_REQUEST,
                            fixture("response_400_invalid_event_alertmanager-test.json"),
                        );
                    };
                    if let Err(reason) = validate(&event) {
                        let mut bad: Value = serde_json::from_str(&fixture(
                            "response_400_invalid_event_alertmanager-test.json",
                        ))
                        .expect("json");
                        bad["errors"] = json!([reason]);
                        return (StatusCode::BAD_REQUEST, bad.to_string());
                    }
                    let mut ok: Value =
                        serde_json::from_str(&fixture("response_202_success_openapi.json"))
                            .expect("json");
                    ok["dedup_key"] = event
                        .get("dedup_key")
                        .cloned()
                        .unwrap_or(json!("generated"));
                    me.events.lock().expect("lock").push(event);
                    (StatusCode::ACCEPTED, ok.to_string())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().expect("lock").clone()
    }
}

fn options() -> (ManualClock, TopologyOptions) {
    let clock = ManualClock::default();
    (
        clock.clone(),
        TopologyOptions {
            clock: Arc::new(clock),
            ..TopologyOptions::default()
        },
    )
}

#[test]
fn the_documented_examples_pass_the_receivers_rules() {
    for name in [
        "request_trigger_full_docs.json",
        "request_resolve_docs.json",
    ] {
        let mut v: Value = serde_json::from_str(&fixture(name)).expect("json");
        v["routing_key"] = json!(KEY);
        validate(&v).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn firing_then_resolved_trigger_then_resolve_with_one_dedup_key() {
    let (pd_port, hook) = (free_port(), free_port());
    let pd = PagerDuty::default();
    pd.start(pd_port).await;
    let mut p = parse(&format!(
        r#"
sources:
  alerts: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  page: {{ type: pagerduty, inputs: [alerts], routing_key: "{KEY}", url: "http://127.0.0.1:{pd_port}/v2/enqueue" }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["page.dead_letter"], 10);
    let (_, options) = options();
    let (topo, _) = start_with(p, options).await;
    wait_for_port(hook).await;
    let long_summary = "x".repeat(1500);
    let firing = json!({
        "status": "firing", "fingerprint": "db1/DiskFull", "severity": "high",
        "summary": long_summary, "source": "grafana", "service": "postgres", "project": "prod",
        "kind": "grafana_alert", "labels": {"team": "core"}, "description": "disk at 99%",
        "url": "https://grafana.example/d/1", "starts_at": "2026-11-21T10:00:00Z"
    });
    let resolved = json!({ "status": "resolved", "fingerprint": "db1/DiskFull" });
    let client = reqwest::Client::new();
    for body in [&firing, &resolved] {
        let r = client
            .post(format!("http://127.0.0.1:{hook}/"))
            .json(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(
            r.status(),
            200,
            "delivered to PagerDuty before the webhook answered"
        );
    }
    let events = pd.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_action"], "trigger");
    assert_eq!(events[1]["event_action"], "resolve");
    assert_eq!(events[0]["dedup_key"], "db1/DiskFull");
    assert_eq!(events[1]["dedup_key"], "db1/DiskFull");
    let payload = &events[0]["payload"];
    assert_eq!(
        payload["summary"].as_str().map(|s| s.chars().count()),
        Some(1024)
    );
    assert_eq!(payload["severity"], "error");
    assert_eq!(payload["source"], "grafana");
    assert_eq!(payload["component"], "postgres");
    assert_eq!(payload["group"], "prod");
    assert_eq!(payload["class"], "grafana_alert");
    assert_eq!(payload["timestamp"], "2026-11-21T10:00:00Z");
    assert_eq!(
        payload["custom_details"],
        json!({"team": "core", "description": "disk at 99%"})
    );
    assert_eq!(
        events[0]["links"],
        json!([{"href": "https://grafana.example/d/1", "text": "Source"}])
    );
    assert!(
        events[1].get("payload").is_none(),
        "a resolve carries no payload"
    );
    assert!(dead.values().is_empty());
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
}

#[tokio::test]
async fn throttling_is_retried_and_invalid_events_are_dead_lettered() {
    let pd_port = free_port();
    let pd = PagerDuty::default();
    *pd.throttle_next.lock().expect("lock") = 2;
    pd.start(pd_port).await;
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 1, format: '{{"status": "firing", "fingerprint": "a", "summary": "s"}}' }}
  bad: {{ type: generator, count: 1, format: '{{"status": "resolved", "summary": "no fingerprint"}}' }}
sinks:
  page: {{ type: pagerduty, inputs: [gen, bad], routing_key: "{KEY}", url: "http://127.0.0.1:{pd_port}/v2/enqueue" }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["page.dead_letter"], 10);
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    assert_eq!(pd.events().len(), 1, "delivered after two 429s");
    assert_eq!(clock.sleeps().len(), 2);
    let dead = dead.values();
    assert_eq!(dead.len(), 1);
    let reason = serde_json::to_value(&dead[0]).expect("json")["dead_letter"]["error"].clone();
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.contains("cannot resolve without a `fingerprint`")),
        "{reason}"
    );
}

#[tokio::test]
async fn a_400_from_pagerduty_is_not_retried() {
    // A receiver answering PagerDuty's documented 400 to everything.
    let rejecting = common::Receiver::new(0).start().await;
    rejecting.set_fallback(common::Reply::status(400).with_body(&fixture(
        "response_400_invalid_event_alertmanager-test.json",
    )));
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 1, format: '{{"status": "firing", "fingerprint": "a"}}' }}
sinks:
  page: {{ type: pagerduty, inputs: [gen], routing_key: "{KEY}", url: "http://127.0.0.1:{}/v2/enqueue" }}
"#,
        rejecting.port
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["page.dead_letter"], 10);
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("dead letter", || dead.values().len() == 1).await;
    assert!(clock.sleeps().is_empty());
    let record = serde_json::to_value(&dead.values()[0]).expect("json")["dead_letter"].clone();
    assert_eq!(record["status"], 400);
    assert!(
        record["body"]
            .as_str()
            .is_some_and(|b| b.contains("Event object is invalid")),
        "{record}"
    );
}

#[test]
fn a_routing_key_of_the_wrong_length_is_a_config_error() {
    let yaml = "sources:\n  g: { type: generator }\nsinks:\n  p: { type: pagerduty, inputs: [g], routing_key: short }\n";
    let e = sluice::config::load_texts(&[("p.yaml".into(), yaml.into())], |_| None)
        .expect_err("invalid");
    assert!(
        e.to_string()
            .contains("`routing_key` must be the 32-character integration key"),
        "{e}"
    );
}
