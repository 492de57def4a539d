//! The `opsgenie` sink against a loopback Alert API v2 that enforces the documented
//! contract (tests/common/opsgenie.rs): an alert's notifications create, de-duplicate,
//! acknowledge and close one Opsgenie alert through its alias.

mod common;

use common::manual as options;

use std::time::Duration;

use common::opsgenie::{KEY, Opsgenie};
use common::{eventually, free_port, parse, start_with, wait_for_port};
use serde_json::{Value, json};
use sluice::testing::CaptureSink;
use sluice::topology::Drained;

fn dead_reason(dead: &CaptureSink, i: usize) -> Value {
    serde_json::to_value(&dead.values()[i]).expect("json")["dead_letter"].clone()
}

#[tokio::test]
async fn an_alert_is_created_once_acknowledged_and_closed_by_its_alias() {
    let opsgenie = Opsgenie::default();
    let port = opsgenie.start().await;
    let hook = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  alerts: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  og:
    type: opsgenie
    inputs: [alerts]
    api_key: "{KEY}"
    endpoint: "http://127.0.0.1:{port}"
    tags: ["{{{{ service }}}}", sluice]
    responders: [{{ type: team, name: dba }}]
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["og.dead_letter"], 10);
    let (_, options) = options();
    let (topo, _) = start_with(p, options).await;
    wait_for_port(hook).await;
    let fingerprint = "db1/DiskFull?x#y";
    let firing = json!({
        "status": "firing", "fingerprint": fingerprint, "severity": "critical",
        "summary": "x".repeat(200), "service": "postgres", "labels": {"team": "core", "replicas": 3},
        "description": "disk at 99%",
    });
    let client = reqwest::Client::new();
    for body in [
        firing.clone(),
        firing,
        json!({"status": "acknowledged", "fingerprint": fingerprint}),
        json!({"status": "resolved", "fingerprint": fingerprint}),
    ] {
        let r = client
            .post(format!("http://127.0.0.1:{hook}/"))
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200, "delivered before the webhook answered");
    }
    let alerts = opsgenie.alerts();
    assert_eq!(alerts.len(), 1, "one alert per alias: {alerts:?}");
    let alert = &alerts[0];
    assert_eq!(
        alert.alias, fingerprint,
        "the alias came through its path segment whole"
    );
    assert_eq!(alert.count, 2, "the second create de-duplicated");
    assert!(alert.acknowledged);
    assert!(!alert.open, "closed");
    assert!(opsgenie.failed().is_empty(), "{:?}", opsgenie.failed());
    let create = &alert.create;
    assert_eq!(create["message"].as_str().map(str::len), Some(130));
    assert_eq!(create["priority"], "P1");
    assert_eq!(create["entity"], "postgres");
    assert_eq!(create["tags"], json!(["postgres", "sluice"]));
    assert_eq!(create["details"], json!({"team": "core", "replicas": "3"}));
    assert_eq!(
        create["responders"],
        json!([{"type": "team", "name": "dba"}])
    );
    assert_eq!(create["description"], "disk at 99%");
    let paths: Vec<String> = opsgenie
        .requests
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.0.clone())
        .collect();
    assert_eq!(paths[2], "POST /v2/alerts/db1/DiskFull?x#y/acknowledge");
    assert!(dead.values().is_empty());
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
}

#[tokio::test]
async fn throttling_is_retried_and_an_event_without_alias_is_dead_lettered() {
    let opsgenie = Opsgenie::default();
    *opsgenie.throttle_next.lock().expect("lock") = 2;
    let port = opsgenie.start().await;
    let mut p = parse(&format!(
        r#"
sources:
  blank: {{ type: generator, count: 1, format: '{{"status": "firing", "fingerprint": "b", "summary": "   "}}' }}
  none: {{ type: generator, count: 1, format: '{{"status": "resolved", "summary": "no fingerprint"}}' }}
sinks:
  og: {{ type: opsgenie, inputs: [blank, none], api_key: "{KEY}", endpoint: "http://127.0.0.1:{port}", message: "{{{{ summary }}}}" }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["og.dead_letter"], 10);
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("dead letter", || dead.values().len() == 1).await;
    let alerts = opsgenie.alerts();
    assert_eq!(alerts.len(), 1, "delivered after two 429s");
    assert_eq!(
        alerts[0].create["message"], "Alert",
        "a blank message is never sent"
    );
    assert_eq!(clock.sleeps().len(), 2, "one pause per 429");
    let record = dead_reason(&dead, 0);
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("no alias")),
        "{record}"
    );
}

#[tokio::test]
async fn a_422_is_dead_lettered_at_once_with_opsgenies_answer() {
    let rejecting = common::Receiver::new(0).start().await;
    let answer = serde_json::json!({"message": "Request body is not processable. Please check the errors.", "errors": {"message": "Message can not be empty."}, "took": 0.002, "requestId": "r1"});
    rejecting.set_fallback(common::Reply::status(422).with_body(&answer.to_string()));
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 1, format: '{{"status": "firing", "fingerprint": "a"}}' }}
sinks:
  og: {{ type: opsgenie, inputs: [gen], api_key: "{KEY}", endpoint: "http://127.0.0.1:{}" }}
"#,
        rejecting.port
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["og.dead_letter"], 10);
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("dead letter", || dead.values().len() == 1).await;
    assert!(clock.sleeps().is_empty(), "a 422 is not retried");
    let record = dead_reason(&dead, 0);
    assert_eq!(record["status"], 422);
    assert!(
        record["body"]
            .as_str()
            .is_some_and(|b| b.contains("Message can not be empty")),
        "{record}"
    );
}

#[tokio::test]
async fn a_wrong_key_is_dead_lettered_and_never_logged_or_echoed() {
    let opsgenie = Opsgenie::default();
    let port = opsgenie.start().await;
    let wrong = "11111111-2222-3333-4444-555555555555";
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 1, format: '{{"status": "firing", "fingerprint": "a"}}' }}
sinks:
  og: {{ type: opsgenie, inputs: [gen], api_key: "{wrong}", endpoint: "http://127.0.0.1:{port}" }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["og.dead_letter"], 10);
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("dead letter", || dead.values().len() == 1).await;
    assert!(clock.sleeps().is_empty(), "401 is not retried");
    let record = dead_reason(&dead, 0);
    assert_eq!(record["status"], 401);
    assert!(!record.to_string().contains(wrong), "{record}");
    assert!(opsgenie.alerts().is_empty());
}
