//! The `pagerduty` sink against a loopback receiver that enforces the Events API v2
//! request schema (as documented; tests/fixtures/pagerduty) and answers with the
//! documented bodies.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pagerduty::{KEY, PagerDuty, fixture, validate};
use common::{eventually, free_port, parse, start_with, wait_for_port};
use serde_json::{Value, json};
use sluice::clock::ManualClock;
use sluice::testing::CaptureSink;
use sluice::topology::{Drained, TopologyOptions};

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
