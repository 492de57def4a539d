//! The `datadog` sink against a loopback Datadog API that enforces the documented
//! contract (tests/common/datadog.rs): the key header, gzip, the logs intake's 5 MB and
//! 1,000-entry limits, the series API's 512,000 bytes, the events API's required
//! fields; 429 retried after `Retry-After`, a wrong key dead-lettered at once.

mod common;

use common::datadog::{API_KEY, Datadog};
use common::manual as options;
use common::{eventually, parse, start_with};
use serde_json::Value;
use sluice::testing::CaptureSink;

fn dead_letter(dead: &CaptureSink, i: usize) -> Value {
    serde_json::to_value(&dead.values()[i]).expect("json")["dead_letter"].clone()
}

#[tokio::test]
async fn logs_are_split_at_a_thousand_entries_and_five_megabytes() {
    let dd = Datadog::default();
    let port = dd.start().await;
    // 2,500 small logs, then 12 of 600 KB (7.2 MB in all), then one over 1 MB.
    let big = "x".repeat(600_000);
    let huge = "y".repeat(1_100_000);
    let mut p = parse(&format!(
        r#"
sources:
  small: {{ type: generator, count: 2500, batch_size: 500, format: '{{"summary": "disk {{{{seq}}}} full", "severity": "high", "host": "db{{{{seq}}}}"}}' }}
  big: {{ type: generator, count: 12, batch_size: 12, format: '{{"message": "{big}", "n": {{{{seq}}}}}}' }}
  huge: {{ type: generator, count: 1, format: '{{"message": "{huge}"}}' }}
sinks:
  dd:
    type: datadog
    inputs: [small, big, huge]
    api_key: "{API_KEY}"
    endpoint: "http://127.0.0.1:{port}"
    hostname: "{{{{ host }}}}"
    service: checkout
    tags: {{ env: test, severity: "{{{{ severity }}}}" }}
    batch: {{ max_events: 5000, max_bytes: 100000000, timeout: 50ms }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["dd.dead_letter"], 10);
    let (_, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("the oversized log's dead letter", || {
        dead.values().len() == 1
    })
    .await;
    let st = dd.state.lock().expect("lock");
    assert_eq!(st.logs.len(), 2512, "every log but the oversized one");
    assert_eq!(st.truncated, 0);
    assert!(
        st.requests.iter().all(|(n, _, _)| *n <= 1000),
        "{:?}",
        st.requests
    );
    let small = st
        .logs
        .iter()
        .find(|l| l["message"] == "disk 7 full")
        .expect("the seventh small log, its summary as message");
    assert_eq!(small["ddsource"], "sluice");
    assert_eq!(small["service"], "checkout");
    assert_eq!(small["hostname"], "db7");
    assert_eq!(small["ddtags"], "env:test,severity:high");
    let bigs: Vec<_> = st.logs.iter().filter(|l| l["n"].is_i64()).collect();
    assert_eq!(bigs.len(), 12);
    assert!(
        st.requests.iter().filter(|r| r.2 > 1_000_000).count() >= 2,
        "7.2 MB of logs went in at least two requests: {:?}",
        st.requests
    );
    drop(st);
    let record = dead_letter(&dead, 0);
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("at most 1000000 per log")),
        "{record}"
    );
}

#[tokio::test]
async fn alerts_become_events_and_a_resolve_joins_its_firing() {
    let dd = Datadog::default();
    dd.state.lock().expect("lock").throttle = 1;
    let port = dd.start().await;
    let mut p = parse(&format!(
        r#"
sources:
  alerts: {{ type: generator, count: 2, batch_size: 2, format: '{{"summary": "API latency high", "description": "p99 above 2s", "severity": "critical", "fingerprint": "fp-1", "status": "firing", "seq": {{{{seq}}}}}}' }}
transforms:
  shape: {{ type: remap, inputs: [alerts], source: 'if .seq == 1 {{ .status = "resolved" }}' }}
sinks:
  dd: {{ type: datadog, data: events, inputs: [shape], api_key: "{API_KEY}", endpoint: "http://127.0.0.1:{port}", tags: {{ team: sre }} }}
  wrong: {{ type: datadog, data: events, inputs: [shape], api_key: "not-the-key", endpoint: "http://127.0.0.1:{port}" }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["wrong.dead_letter", "dd.dead_letter"], 10);
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("two dead letters for the wrong key", || {
        dead.values().len() == 2
    })
    .await;
    let st = dd.state.lock().expect("lock");
    assert_eq!(st.events.len(), 2, "{:?}", st.events);
    assert_eq!(st.forbidden, 2, "the wrong key was not retried");
    let types: Vec<&str> = st
        .events
        .iter()
        .filter_map(|e| e["alert_type"].as_str())
        .collect();
    assert_eq!(types, ["error", "success"]);
    for e in &st.events {
        assert_eq!(e["title"], "API latency high");
        assert_eq!(e["text"], "p99 above 2s");
        assert_eq!(e["aggregation_key"], "fp-1");
        assert_eq!(e["tags"], serde_json::json!(["team:sre"]));
        assert_eq!(e["source_type_name"], "sluice");
    }
    drop(st);
    assert_eq!(
        clock.sleeps(),
        [std::time::Duration::from_secs(2)],
        "the 429 was retried after its Retry-After"
    );
    let record = dead_letter(&dead, 0);
    assert_eq!(record["status"], 403);
}

#[tokio::test]
async fn metrics_become_typed_series_within_the_payload_limit() {
    let dd = Datadog::default();
    dd.state.lock().expect("lock").unavailable = 1;
    let port = dd.start().await;
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 6000, batch_size: 1000, format: '{{"severity": "low", "host": "web-{{{{seq}}}}-with-a-long-host-name-to-fill-the-series-payload", "latency": {{{{seq}}}}.5}}' }}
sinks:
  dd:
    type: datadog
    data: metrics
    inputs: [gen]
    api_key: "{API_KEY}"
    endpoint: "http://127.0.0.1:{port}/"
    compression: none
    hostname: "{{{{ host }}}}"
    batch: {{ max_events: 6000, max_bytes: 100000000, timeout: 50ms }}
    metrics:
      - {{ name: sluice.alerts, interval: 10, tags: {{ severity: "{{{{ severity }}}}" }} }}
      - {{ name: sluice.latency, type: gauge, field: latency }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["dd.dead_letter"], 10);
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    let st = dd.state.lock().expect("lock");
    assert_eq!(st.series.len(), 12_000, "two points per event");
    assert!(
        st.requests.len() > 1 && st.requests.iter().all(|(_, bytes, _)| *bytes <= 512_000),
        "{:?}",
        st.requests
    );
    let latency = st
        .series
        .iter()
        .find(|s| s["metric"] == "sluice.latency" && s["points"][0]["value"] == 41.5)
        .expect("event 41's gauge");
    assert_eq!(latency["type"], 3);
    assert_eq!(
        latency["resources"][0]["name"],
        "web-41-with-a-long-host-name-to-fill-the-series-payload"
    );
    let count = st
        .series
        .iter()
        .find(|s| s["metric"] == "sluice.alerts")
        .expect("a count");
    assert_eq!(count["type"], 1);
    assert_eq!(count["interval"], 10);
    assert_eq!(count["points"][0]["value"], 1.0);
    assert_eq!(count["tags"], serde_json::json!(["severity:low"]));
    drop(st);
    assert_eq!(clock.sleeps().len(), 1, "the 503 was retried once");
    assert!(dead.values().is_empty());
}
