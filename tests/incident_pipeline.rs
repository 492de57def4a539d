//! The `incident` transform in a running pipeline: vendor webhooks in, a loopback
//! PagerDuty (enforcing the Events API v2 schema) and a Slack receiver out. What is
//! asserted is what the on-call engineer gets: how many pages, with which dedup_key.

mod common;

use std::time::Duration;

use common::pagerduty::{KEY, PagerDuty};
use common::{Receiver, Reply, free_port, parse, start_with, wait_for_port};
use serde_json::{Value, json};
use sluice::topology::{Drained, TopologyOptions};

/// A pipeline's own data dir, so no state of another run is picked up.
fn options(dir: &tempfile::TempDir) -> TopologyOptions {
    TopologyOptions {
        data_dir: dir.path().to_path_buf(),
        ..TopologyOptions::default()
    }
}

fn grafana(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/webhooks/grafana/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    // The fixture's alert, on the service the Alertmanager alert below names too.
    v["alerts"][0]["labels"]["service"] = json!("checkout");
    v
}

/// GET `url` with the test's API token; the answer's status and JSON body.
async fn get_json(client: &reqwest::Client, url: String) -> (u16, Value) {
    let r = client
        .get(url)
        .bearer_auth("sekret")
        .send()
        .await
        .expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn alertmanager_firing() -> Value {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"alert1\"}", "truncatedAlerts": 0,
        "status": "firing", "receiver": "sluice", "externalURL": "http://alertmanager:9093",
        "groupLabels": {"alertname": "alert1"}, "commonLabels": {}, "commonAnnotations": {},
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "alert1", "service": "checkout", "severity": "critical"},
            "annotations": {"summary": "checkout has no healthy backends"},
            "startsAt": "2026-03-01T12:00:01Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": "3c1f0a2b4d5e6f70"
        }]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vendors_and_retried_deliveries_make_one_page_that_the_resolve_closes() {
    let (pd_port, hook) = (free_port(), free_port());
    let pd = PagerDuty::default();
    // PagerDuty is down for the first two attempts.
    *pd.unavailable_next.lock().expect("lock") = 2;
    pd.start(pd_port).await;
    let slack = Receiver::new(0).start().await;
    slack.set_fallback(Reply::status(200).with_body("ok"));
    let p = parse(&format!(
        r#"
sources:
  alerts:
    type: webhook
    address: "127.0.0.1:{hook}"
    routes:
      - {{ path: /grafana, decoder: grafana }}
      - {{ path: /alertmanager, decoder: alertmanager }}
transforms:
  incidents:
    type: incident
    inputs: [alerts]
    key_source: 'string!(.labels.alertname) + "/" + (string(.service) ?? "-")'
sinks:
  pagerduty:
    type: pagerduty
    inputs: [incidents]
    routing_key: "{KEY}"
    url: "http://127.0.0.1:{pd_port}/v2/enqueue"
    failure_handling: {{ initial_backoff: 10ms, max_backoff: 20ms }}
  slack:
    type: slack
    inputs: [incidents]
    webhook_url: "http://127.0.0.1:{}/services/T0/B0/x"
"#,
        slack.port
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let (topo, _telemetry) = start_with(p, options(&dir)).await;
    wait_for_port(hook).await;
    let client = reqwest::Client::new();
    let post = |path: &'static str, body: Value| {
        let client = client.clone();
        async move {
            client
                .post(format!("http://127.0.0.1:{hook}{path}"))
                .json(&body)
                .send()
                .await
                .expect("POST")
                .status()
                .as_u16()
        }
    };

    // Grafana delivers the same notification three times (its retries, while PagerDuty
    // answers 503): every delivery is accepted, and there is one page.
    let firing = grafana("grafana-alerting_test_default_payload_single_firing.json");
    let deliveries = (0..3).map(|_| tokio::spawn(post("/grafana", firing.clone())));
    for d in deliveries {
        assert_eq!(d.await.expect("task"), 200);
    }
    let events = pd.events();
    assert_eq!(events.len(), 1, "one page: {events:?}");
    assert_eq!(events[0]["event_action"], "trigger");
    let dedup_key = events[0]["dedup_key"]
        .as_str()
        .expect("dedup_key")
        .to_owned();
    assert_eq!(dedup_key.len(), 36, "the incident id: {dedup_key}");
    assert_eq!(
        *pd.unavailable_next.lock().expect("lock"),
        0,
        "the 503s were retried"
    );

    // Alertmanager reports the same outage, as critical: the page escalates, it is not
    // a second incident.
    assert_eq!(post("/alertmanager", alertmanager_firing()).await, 200);
    let events = pd.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["event_action"], "trigger");
    assert_eq!(events[1]["dedup_key"], dedup_key.as_str());
    assert_eq!(events[1]["payload"]["severity"], "critical");

    // Grafana's alert resolves while Alertmanager's still fires: the page stays open.
    assert_eq!(
        post(
            "/grafana",
            grafana("grafana-alerting_test_resolved_single.json")
        )
        .await,
        200
    );
    assert_eq!(pd.events().len(), 2);
    // Alertmanager's resolve, the last alert of the incident, closes the page the
    // trigger opened.
    let mut late = alertmanager_firing();
    late["status"] = json!("resolved");
    late["alerts"][0]["status"] = json!("resolved");
    late["alerts"][0]["endsAt"] = json!("2026-03-01T12:05:00Z");
    assert_eq!(post("/alertmanager", late.clone()).await, 200);
    let events = pd.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["event_action"], "resolve");
    assert_eq!(events[2]["dedup_key"], dedup_key.as_str());
    // A repeated resolve pages nobody.
    assert_eq!(post("/alertmanager", late).await, 200);
    assert_eq!(pd.events().len(), 3);

    let texts: Vec<String> = slack
        .requests()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).expect("json");
            body["text"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(
        texts,
        [
            "[MEDIUM] alert1",
            "[UPDATED CRITICAL] checkout has no healthy backends",
            "[RESOLVED] checkout has no healthy backends"
        ]
    );
    let last: Value = serde_json::from_slice(&slack.requests()[2].body).expect("json");
    let context = last["blocks"]
        .as_array()
        .and_then(|b| b.last())
        .map(|b| b["elements"][0]["text"].clone())
        .expect("context block");
    assert_eq!(
        context,
        json!(format!(
            "Incident {dedup_key} · 4 alert(s) from alertmanager, grafana"
        ))
    );
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
}

/// Incidents by hand: an acknowledgement through the API reaches PagerDuty with the
/// trigger's dedup_key, the timeline records it, and bad requests are told why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_through_the_api_reaches_pagerduty() {
    let (pd_port, hook) = (free_port(), free_port());
    let pd = PagerDuty::default();
    pd.start(pd_port).await;
    let p = parse(&format!(
        r#"
sources:
  alerts:
    type: webhook
    address: "127.0.0.1:{hook}"
    routes:
      - {{ path: /alertmanager, decoder: alertmanager }}
transforms:
  incidents_by_hand:
    type: incident
    inputs: [alerts]
sinks:
  pagerduty:
    type: pagerduty
    inputs: [incidents_by_hand]
    routing_key: "{KEY}"
    url: "http://127.0.0.1:{pd_port}/v2/enqueue"
"#
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let (topo, telemetry) = start_with(p, options(&dir)).await;
    wait_for_port(hook).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let (api, _) = sluice::api::serve(
        "127.0.0.1:0",
        telemetry,
        None,
        Some("sekret".into()),
        stop.clone(),
    )
    .await
    .expect("API");
    let client = reqwest::Client::new();
    let r = client
        .post(format!("http://127.0.0.1:{hook}/alertmanager"))
        .json(&alertmanager_firing())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let id = pd.events()[0]["dedup_key"]
        .as_str()
        .expect("key")
        .to_owned();

    let base = format!("http://{api}/incidents");
    assert_eq!(
        client.get(&base).send().await.expect("GET").status(),
        401,
        "the token is required"
    );
    let (_, listed) = get_json(&client, format!("{base}?status=open&severity=critical")).await;
    let ours: Vec<&Value> = listed["incidents"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|i| i["component"] == "incidents_by_hand")
        .collect();
    assert_eq!(ours.len(), 1, "{listed}");
    assert_eq!(ours[0]["id"], id.as_str());
    assert_eq!(ours[0]["title"], "checkout has no healthy backends");
    assert_eq!(ours[0]["service"], "checkout");

    let put = |body: Value, target: String| {
        let client = client.clone();
        async move {
            let r = client
                .put(target)
                .bearer_auth("sekret")
                .json(&body)
                .send()
                .await
                .expect("PUT");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = put(
        json!({"status": "acknowledged", "assigned_to": "alice", "note": "looking at the LB"}),
        format!("{base}/{id}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "acknowledged");
    assert_eq!(body["assigned_to"], "alice");
    common::eventually("the acknowledgement reaches PagerDuty", || {
        pd.events().len() == 2
    })
    .await;
    let ack = &pd.events()[1];
    assert_eq!(ack["event_action"], "acknowledge");
    assert_eq!(ack["dedup_key"], id.as_str());

    let (_, all) = get_json(&client, format!("http://{api}/stats")).await;
    // Other tests of this binary run incident components too.
    let stats = &all["components"]["incidents_by_hand"];
    assert!(
        all["open_incidents"].as_u64() >= stats["open_incidents"].as_u64(),
        "{all}"
    );
    assert_eq!(stats["events_from"], "incident_intake", "{stats}");
    assert_eq!(stats["open_incidents"], 1, "{stats}");
    assert_eq!(stats["active_alerts"], 1, "{stats}");
    assert_eq!(stats["total_events"], 1, "{stats}");
    assert_eq!(stats["events_last_hour"], 1, "{stats}");

    let (_, timeline) = get_json(&client, format!("{base}/{id}/timeline")).await;
    let whats: Vec<&str> = timeline["timeline"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["what"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(whats, ["opened", "acknowledged", "assigned", "note"]);

    // Refusals say why.
    let (status, body) = put(json!({"status": "open"}), format!("{base}/{id}")).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("`status` `open` cannot be set")),
        "{body}"
    );
    let (status, _) = put(json!({"status": "resolved"}), format!("{base}/no-such-id")).await;
    assert_eq!(status, 404);
    let (status, body) = put(json!({"severity": "apocalyptic"}), format!("{base}/{id}")).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("critical, high, medium, low, info")),
        "{body}"
    );
    let (status, body) = get_json(&client, format!("{base}?limit=5000")).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("`limit`")),
        "{body}"
    );

    // Resolved by hand: PagerDuty closes the page.
    let (status, _) = put(
        json!({"status": "resolved", "root_cause": "LB config push"}),
        format!("{base}/{id}"),
    )
    .await;
    assert_eq!(status, 200);
    common::eventually("the resolve reaches PagerDuty", || pd.events().len() == 3).await;
    assert_eq!(pd.events()[2]["event_action"], "resolve");
    assert_eq!(pd.events()[2]["dedup_key"], id.as_str());

    // Opened by hand: paged like any other.
    let created = client
        .post(&base)
        .bearer_auth("sekret")
        .json(&json!({"title": "Payments degraded (reported by support)", "severity": "high", "component": "incidents_by_hand"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status(), 201);
    let new_id = created.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Acknowledged before its opening went out: PagerDuty hears both, in order.
    let (status, _) = put(
        json!({"status": "acknowledged"}),
        format!("{base}/{new_id}"),
    )
    .await;
    assert_eq!(status, 200);
    common::eventually(
        "the incident opened by hand is paged, then acknowledged",
        || pd.events().len() == 5,
    )
    .await;
    let page = &pd.events()[3];
    assert_eq!(page["event_action"], "trigger");
    assert_eq!(page["dedup_key"], new_id.as_str());
    assert_eq!(
        page["payload"]["summary"],
        "Payments degraded (reported by support)"
    );
    assert_eq!(page["payload"]["severity"], "error");
    assert_eq!(pd.events()[4]["event_action"], "acknowledge");
    assert_eq!(pd.events()[4]["dedup_key"], new_id.as_str());
    let untitled = client
        .post(&base)
        .bearer_auth("sekret")
        .json(&json!({"title": " ", "component": "incidents_by_hand"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(untitled.status(), 400);

    stop.cancel();
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
}

/// A page PagerDuty did not take (the sink gave up) is not lost: the webhook tells
/// Alertmanager to retry (503), and the incident announces its change again at the
/// next timer pass, which PagerDuty takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_the_sink_gave_up_on_is_announced_again() {
    let (pd_port, hook) = (free_port(), free_port());
    let pd = PagerDuty::default();
    *pd.unavailable_next.lock().expect("lock") = 2;
    pd.start(pd_port).await;
    let p = parse(&format!(
        r#"
sources:
  alerts:
    type: webhook
    address: "127.0.0.1:{hook}"
    routes:
      - {{ path: /alertmanager, decoder: alertmanager }}
transforms:
  incidents_redo:
    type: incident
    inputs: [alerts]
sinks:
  pagerduty:
    type: pagerduty
    inputs: [incidents_redo]
    routing_key: "{KEY}"
    url: "http://127.0.0.1:{pd_port}/v2/enqueue"
    failure_handling: {{ max_retries: 1, initial_backoff: 10ms, max_backoff: 20ms }}
"#
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let (topo, _telemetry) = start_with(p, options(&dir)).await;
    wait_for_port(hook).await;
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook}/alertmanager"))
        .json(&alertmanager_firing())
        .send()
        .await
        .expect("POST");
    assert!(
        r.status().is_server_error(),
        "the sender is told: {}",
        r.status()
    );
    assert!(pd.events().is_empty());
    common::eventually("the page is announced again", || pd.events().len() == 1).await;
    assert_eq!(pd.events()[0]["event_action"], "trigger");
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
}

/// An acknowledgement not yet announced is not swallowed by an update that follows it
/// (a higher severity): PagerDuty hears both, the acknowledgement first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_followed_at_once_by_an_escalation_reaches_pagerduty() {
    let (pd_port, hook) = (free_port(), free_port());
    let pd = PagerDuty::default();
    pd.start(pd_port).await;
    let p = parse(&format!(
        r#"
sources:
  alerts:
    type: webhook
    address: "127.0.0.1:{hook}"
    routes:
      - {{ path: /alertmanager, decoder: alertmanager }}
transforms:
  incidents_ack_then_up:
    type: incident
    inputs: [alerts]
sinks:
  pagerduty:
    type: pagerduty
    inputs: [incidents_ack_then_up]
    routing_key: "{KEY}"
    url: "http://127.0.0.1:{pd_port}/v2/enqueue"
    request: {{ concurrency: 1 }}
"#
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let (topo, telemetry) = start_with(p, options(&dir)).await;
    wait_for_port(hook).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let (api, _) = sluice::api::serve(
        "127.0.0.1:0",
        telemetry,
        None,
        Some("sekret".into()),
        stop.clone(),
    )
    .await
    .expect("API");
    let client = reqwest::Client::new();
    let alert = |severity: &str| {
        let mut a = alertmanager_firing();
        a["alerts"][0]["labels"]["severity"] = json!(severity);
        a
    };
    let post = |body: Value| {
        client
            .post(format!("http://127.0.0.1:{hook}/alertmanager"))
            .json(&body)
            .send()
    };
    assert_eq!(post(alert("warning")).await.expect("POST").status(), 200);
    let id = pd.events()[0]["dedup_key"]
        .as_str()
        .expect("key")
        .to_owned();
    let r = client
        .put(format!("http://{api}/incidents/{id}"))
        .bearer_auth("sekret")
        .json(&json!({"status": "acknowledged"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), 200);
    // Before the next timer pass announces the acknowledgement.
    assert_eq!(post(alert("critical")).await.expect("POST").status(), 200);
    common::eventually("both changes reach PagerDuty", || pd.events().len() == 3).await;
    let events = pd.events();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["event_action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(actions, ["trigger", "acknowledge", "trigger"]);
    assert_eq!(events[2]["payload"]["severity"], "critical");
    assert!(events.iter().all(|e| e["dedup_key"] == id.as_str()));
    stop.cancel();
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
}
