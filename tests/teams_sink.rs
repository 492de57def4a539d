//! The `teams` sink against a loopback Workflows webhook that enforces Teams' Adaptive
//! Card contract (tests/common/teams.rs).

mod common;

use common::manual as options;

use common::teams::{PATH, Teams};
use common::{eventually, parse, start_with};
use serde_json::Value;
use sluice::testing::CaptureSink;

fn url(port: u16) -> String {
    format!(
        "http://127.0.0.1:{port}{PATH}?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=abc123signature"
    )
}

#[tokio::test]
async fn firing_and_resolved_alerts_arrive_as_cards_after_throttling() {
    let teams = Teams::default();
    *teams.throttle_next.lock().expect("lock") = 1;
    let port = teams.start().await;
    let p = parse(&format!(
        r#"
sources:
  alerts:
    type: generator
    count: 1
    format: '{{"status": "firing", "severity": "critical", "summary": "DiskFull on db1", "service": "postgres", "labels": {{"team": "core"}}, "description": "disk at 99%", "url": "https://grafana.example/d/1"}}'
  resolved: {{ type: generator, count: 1, format: '{{"status": "resolved", "severity": "critical", "summary": "DiskFull on db1"}}' }}
sinks:
  chat: {{ type: teams, inputs: [alerts, resolved], webhook_url: "{}" }}
"#,
        url(port)
    ));
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    let cards = teams.cards();
    assert_eq!(cards.len(), 2, "{cards:?}");
    assert_eq!(clock.sleeps().len(), 1, "the 429 was retried once");
    let firing = cards
        .iter()
        .find(|c| c["body"][0]["text"] == "[CRITICAL] DiskFull on db1")
        .expect("firing card");
    assert_eq!(firing["body"][0]["color"], "Attention");
    let facts = firing["body"][1]["facts"].to_string();
    for want in [
        r#"{"title":"Severity","value":"critical"}"#,
        r#"{"title":"service","value":"postgres"}"#,
        r#"{"title":"team","value":"core"}"#,
    ] {
        assert!(facts.contains(want), "{want} in {facts}");
    }
    assert_eq!(firing["body"][2]["text"], "disk at 99%");
    assert_eq!(firing["actions"][0]["url"], "https://grafana.example/d/1");
    let resolved = cards
        .iter()
        .find(|c| c["body"][0]["text"] == "[RESOLVED] DiskFull on db1")
        .expect("resolved card");
    assert_eq!(resolved["body"][0]["color"], "Good");
}

#[tokio::test]
async fn a_formatter_that_makes_no_card_dead_letters_with_the_reason() {
    let teams = Teams::default();
    let port = teams.start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let formatter = dir.path().join("teams.vrl");
    std::fs::write(&formatter, r#". = { "text": "not a card" }"#).expect("write");
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 1, format: '{{"summary": "s"}}' }}
sinks:
  chat: {{ type: teams, inputs: [gen], webhook_url: "{}", formatter_file: "{}" }}
"#,
        url(port),
        formatter.display()
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["chat.dead_letter"], 10);
    let (_, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("dead letter", || dead.values().len() == 1).await;
    let record: Value =
        serde_json::to_value(&dead.values()[0]).expect("json")["dead_letter"].clone();
    assert!(
        record["error"].as_str().is_some_and(
            |e| e.contains("did not produce an Adaptive Card: `type` is not \"AdaptiveCard\"")
        ),
        "{record}"
    );
    assert!(teams.cards().is_empty());
}
