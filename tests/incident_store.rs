//! The `incident` transform's shared store on the machine's real PostgreSQL
//! (127.0.0.1:5432, user postgres, database test), one fresh schema per test: two
//! sluice processes sharing incidents, a restart mid-incident, changes by hand,
//! timelines with the service's events, and `GET /stats`. Under CI=true an
//! unreachable server fails the tests; elsewhere they are skipped with a reason.

mod common;

use std::time::Duration;

use common::pagerduty::{KEY, PagerDuty};
use common::postgres::{URL, database, drop_schema};
use common::{Process, free_port, parse, run_pipeline, start_with, wait_for_port};
use serde_json::{Value, json};
use sluice::topology::{Drained, TopologyOptions};

/// An Alertmanager notification of one alert.
fn alert(name: &str, status: &str, service: &str) -> Value {
    json!({
        "version": "4", "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"), "truncatedAlerts": 0,
        "status": status, "receiver": "sluice", "externalURL": "http://alertmanager:9093",
        "groupLabels": {"alertname": name}, "commonLabels": {}, "commonAnnotations": {},
        "alerts": [{
            "status": status,
            "labels": {"alertname": name, "service": service, "severity": "critical"},
            "annotations": {"summary": format!("{name} on {service}")},
            "startsAt": "2026-03-01T12:00:01Z",
            "endsAt": if status == "resolved" { "2026-03-01T12:05:00Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": format!("fp-{name}")
        }]
    })
}

async fn post(client: &reqwest::Client, port: u16, body: &Value) -> u16 {
    let r = client
        .post(format!("http://127.0.0.1:{port}/alertmanager"))
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    if status != 200 {
        eprintln!(
            "POST answered {status}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    status
}

/// Component ids differ per test: the API finds components by id in this process.
/// A pipeline of [`pipeline`] running in-process, with a loopback PagerDuty and the
/// store reached on `db_port` (PostgreSQL's, or a proxy's in front of it).
struct Running {
    topo: sluice::topology::Topology,
    telemetry: std::sync::Arc<sluice::telemetry::Telemetry>,
    pd: PagerDuty,
    hook: u16,
    _dir: tempfile::TempDir,
}

async fn run(id: &str, schema: &str, db_port: u16) -> Running {
    let (pd_port, hook) = (free_port(), free_port());
    let pd = PagerDuty::default();
    pd.start(pd_port).await;
    let yaml = pipeline(id, hook, schema, pd_port, "")
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{db_port}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let options = TopologyOptions {
        data_dir: dir.path().to_path_buf(),
        ..TopologyOptions::default()
    };
    let (topo, telemetry) = start_with(parse(&yaml), options).await;
    wait_for_port(hook).await;
    Running {
        topo,
        telemetry,
        pd,
        hook,
        _dir: dir,
    }
}

fn pipeline(id: &str, hook: u16, schema: &str, pd_port: u16, extra: &str) -> String {
    format!(
        r#"
sources:
  alerts:
    type: webhook
    address: "127.0.0.1:{hook}"
    routes:
      - {{ path: /alertmanager, decoder: alertmanager }}
transforms:
  {id}:
    type: incident
    inputs: [alerts]
    key: "{{{{ labels.alertname }}}}"
    store:
      postgres: {{ url: "{URL}", schema: {schema}, events_table: events }}
sinks:
  pagerduty:
    type: pagerduty
    inputs: [{id}]
    routing_key: "{KEY}"
    url: "http://127.0.0.1:{pd_port}/v2/enqueue"
{extra}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aggregators_share_one_incident_per_key_through_the_store() {
    let Some((db, schema)) = database().await else {
        return;
    };
    let pd_port = free_port();
    let pd = PagerDuty::default();
    pd.start(pd_port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hooks = Vec::new();
    let mut processes = Vec::new();
    for n in 0..2 {
        let hook = free_port();
        let file = dir.path().join(format!("p{n}.yaml"));
        std::fs::write(&file, pipeline("incidents", hook, &schema, pd_port, "")).expect("write");
        let data = dir.path().join(format!("data{n}"));
        std::fs::create_dir_all(&data).expect("data dir");
        processes.push(Process::spawn(run_pipeline(&file, &data, None)));
        hooks.push(hook);
    }
    for hook in &hooks {
        wait_for_port(*hook).await;
    }
    let client = reqwest::Client::new();

    // The same alert, ten deliveries at once, five to each aggregator: one page.
    let deliveries: Vec<_> = (0..10)
        .map(|n| {
            let (client, port) = (client.clone(), hooks[n % 2]);
            tokio::spawn(
                async move { post(&client, port, &alert("disk_full", "firing", "db")).await },
            )
        })
        .collect();
    for d in deliveries {
        assert_eq!(d.await.expect("task"), 200);
    }
    let events = pd.events();
    assert_eq!(events.len(), 1, "one page: {events:?}");
    assert_eq!(events[0]["event_action"], "trigger");
    let dedup_key = events[0]["dedup_key"].as_str().expect("key").to_owned();
    let row = db
        .query_one(
            &format!("SELECT id, count, status FROM {schema}.incidents WHERE key = 'disk_full'"),
            &[],
        )
        .await
        .expect("one row");
    assert_eq!(row.get::<_, String>(0), dedup_key);
    assert_eq!(row.get::<_, i64>(1), 10, "every delivery counted once");
    assert_eq!(row.get::<_, String>(2), "open");

    // Ten other keys at once, across both: ten pages, ten incidents.
    let deliveries: Vec<_> = (0..10)
        .map(|n| {
            let (client, port) = (client.clone(), hooks[n % 2]);
            tokio::spawn(async move {
                post(&client, port, &alert(&format!("k{n}"), "firing", "db")).await
            })
        })
        .collect();
    for d in deliveries {
        assert_eq!(d.await.expect("task"), 200);
    }
    let triggers: std::collections::HashSet<String> = pd
        .events()
        .iter()
        .filter(|e| e["event_action"] == "trigger")
        .map(|e| e["dedup_key"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(triggers.len(), 11);

    // The other aggregator resolves what the first opened, with the trigger's key.
    assert_eq!(
        post(&client, hooks[1], &alert("disk_full", "resolved", "db")).await,
        200
    );
    assert_eq!(
        post(&client, hooks[0], &alert("disk_full", "resolved", "db")).await,
        200
    );
    let resolves: Vec<Value> = pd
        .events()
        .into_iter()
        .filter(|e| e["event_action"] == "resolve")
        .collect();
    assert_eq!(
        resolves.len(),
        1,
        "a repeated resolve pages nobody: {resolves:?}"
    );
    assert_eq!(resolves[0]["dedup_key"], dedup_key.as_str());
    let kinds: Vec<String> = db
        .query(
            &format!(
                "SELECT kind FROM {schema}.incident_events WHERE incident_id = $1 ORDER BY seq"
            ),
            &[&dedup_key],
        )
        .await
        .expect("timeline")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "alert").count(),
        12,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k != "alert").collect::<Vec<_>>(),
        ["opened", "resolved"]
    );
    drop(processes);
    drop_schema(&db, &schema).await;
}

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

/// A restart mid-incident, an acknowledgement by hand, the timeline with the
/// service's events from the events table, and the statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_incidents_across_restarts_with_timelines_and_statistics() {
    let Some((db, schema)) = database().await else {
        return;
    };
    let (pd_port, hook) = (free_port(), free_port());
    let pd = PagerDuty::default();
    pd.start(pd_port).await;
    // The events table, as the postgres sink keeps it, fed by the same webhook.
    let yaml = pipeline(
        "incidents_kept",
        hook,
        &schema,
        pd_port,
        &format!(
            "  events:\n    type: postgres\n    inputs: [alerts]\n    url: \"{URL}\"\n    schema: {schema}\n"
        ),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let options = TopologyOptions {
        data_dir: dir.path().to_path_buf(),
        ..TopologyOptions::default()
    };
    let (topo, _) = start_with(parse(&yaml), options.clone()).await;
    wait_for_port(hook).await;
    let client = reqwest::Client::new();
    assert_eq!(
        post(&client, hook, &alert("lb_down", "firing", "cart")).await,
        200
    );
    let id = pd.events()[0]["dedup_key"]
        .as_str()
        .expect("key")
        .to_owned();
    // Restart mid-incident: the repeat is no page, the resolve carries the key.
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    let (topo, telemetry) = start_with(parse(&yaml), options).await;
    wait_for_port(hook).await;
    assert_eq!(
        post(&client, hook, &alert("lb_down", "firing", "cart")).await,
        200
    );
    assert_eq!(pd.events().len(), 1, "a repeat after a restart is no page");

    // Events of the service around the incident, and others that are not.
    let t = |minutes: i64| (chrono::Utc::now() + chrono::Duration::minutes(minutes)).to_rfc3339();
    for (minutes, service, message) in [
        (-30, "cart", "deploy 42 of cart"),
        (-120, "cart", "an old deploy"),
        (-10, "search", "another service"),
    ] {
        db.execute(
            &format!(
                "INSERT INTO {schema}.events (id, event_type, source, message, payload, timestamp)
                 VALUES (gen_random_uuid(), 'log', 'deployer', $1, $2, $3::text::timestamptz)"
            ),
            &[
                &message,
                &tokio_postgres::types::Json(json!({"service": service})),
                &t(minutes),
            ],
        )
        .await
        .expect("event row");
    }

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
    let base = format!("http://{api}/incidents");
    let (status, listed) = get_json(&client, format!("{base}?status=open&service=cart")).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["incidents"][0]["id"], id.as_str());
    assert_eq!(listed["incidents"][0]["count"], 2);

    let r = client
        .put(format!("{base}/{id}"))
        .bearer_auth("sekret")
        .json(&json!({"status": "acknowledged", "note": "rolling back deploy 42"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json")["status"],
        "acknowledged"
    );
    common::eventually("the acknowledgement reaches PagerDuty", || {
        pd.events().len() == 2
    })
    .await;
    assert_eq!(pd.events()[1]["event_action"], "acknowledge");
    assert_eq!(pd.events()[1]["dedup_key"], id.as_str());

    let (_, timeline) = get_json(&client, format!("{base}/{id}/timeline")).await;
    let entries = timeline["timeline"].as_array().expect("entries");
    let texts: Vec<&str> = entries
        .iter()
        .filter(|e| e["origin"] == "event" && e["what"] == "log")
        .map(|e| e["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(texts, ["deploy 42 of cart"], "{timeline}");
    let own: Vec<&str> = entries
        .iter()
        .filter(|e| e["origin"] == "incident")
        .map(|e| e["what"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        own,
        ["alert", "opened", "alert", "acknowledged", "note"],
        "{timeline}"
    );
    let times: Vec<&str> = entries
        .iter()
        .map(|e| e["time"].as_str().unwrap_or_default())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "ordered by time");

    let anonymous = client
        .get(format!("http://{api}/stats"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), 401, "the statistics need the token");
    let (_, all) = get_json(&client, format!("http://{api}/stats")).await;
    let stats = &all["components"]["incidents_kept"];
    let counts = db
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE timestamp > now() - interval '1 hour') FROM {schema}.events"
            ),
            &[],
        )
        .await
        .expect("count");
    let (stored, recent): (i64, i64) = (counts.get(0), counts.get(1));
    assert!(stored >= 4, "the alerts and the three events: {stored}");
    assert_eq!(stats["total_events"], stored, "{stats}");
    assert_eq!(stats["events_last_hour"], recent, "{stats}");
    assert_eq!(recent, 2, "the alerts are dated by their startsAt");
    assert_eq!(stats["open_incidents"], 1);
    assert_eq!(stats["active_alerts"], 1);
    assert_eq!(stats["events_from"], "events_table");

    assert_eq!(
        post(&client, hook, &alert("lb_down", "resolved", "cart")).await,
        200
    );
    let last = pd.events().last().cloned().expect("event");
    assert_eq!(last["event_action"], "resolve");
    assert_eq!(last["dedup_key"], id.as_str());
    stop.cancel();
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    drop_schema(&db, &schema).await;
}

/// A TCP proxy to PostgreSQL that can be cut: while down it drops every connection.
struct Proxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, links2) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                links2.lock().expect("lock").push(task.abort_handle());
            }
        });
        Self { port, up, links }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            for link in self.links.lock().expect("lock").drain(..) {
                link.abort();
            }
        }
    }
}

/// The store goes away mid-stream: the alert waits in the transform (the sender's
/// request with it), no page goes out that the store does not hold, and once the store
/// is back the alert is taken in and paged, and the sender gets its 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_wait_for_an_unreachable_store_and_none_is_lost() {
    let Some((db, schema)) = database().await else {
        return;
    };
    let proxy = Proxy::start().await;
    let Running {
        topo,
        telemetry,
        pd,
        hook,
        _dir,
    } = run("incidents_cut", &schema, proxy.port).await;
    let client = reqwest::Client::new();
    assert_eq!(post(&client, hook, &alert("a1", "firing", "db")).await, 200);
    assert_eq!(pd.events().len(), 1);

    proxy.set_up(false);
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { post(&client, hook, &alert("a2", "firing", "db")).await })
    };
    let state = || {
        telemetry
            .components()
            .iter()
            .find(|c| c.id == "incidents_cut")
            .map(|c| c.state())
    };
    common::eventually("the component reports the outage to probes", || {
        matches!(
            state(),
            Some(sluice::telemetry::ComponentState::Degraded(_))
        )
    })
    .await;
    assert!(!waiting.is_finished(), "the alert waits for the store");
    assert_eq!(pd.events().len(), 1, "no page the store does not hold");

    proxy.set_up(true);
    assert_eq!(
        waiting.await.expect("task"),
        200,
        "taken in once the store is back"
    );
    let events = pd.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["event_action"], "trigger");
    let row = db
        .query_one(
            &format!("SELECT count(*) FROM {schema}.incidents WHERE key = 'a2'"),
            &[],
        )
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    drop_schema(&db, &schema).await;
}

/// `pipelines/incidents.yaml` as shipped, on a fresh schema: the same outage from
/// Alertmanager twice is one page and one Slack message, one incident row, and every
/// alert is a row of the events table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_incidents_pipeline_pages_once_and_keeps_everything_in_postgres() {
    let Some((db, schema)) = database().await else {
        return;
    };
    let (pd_port, hook) = (free_port(), free_port());
    let pd = PagerDuty::default();
    pd.start(pd_port).await;
    let slack = common::Receiver::new(0).start().await;
    slack.set_fallback(common::Reply::status(200).with_body("ok"));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/incidents.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    let env = |name: &str| -> Option<String> {
        match name {
            "ALERTS_ADDRESS" => Some(format!("127.0.0.1:{hook}")),
            "WEBHOOK_SECRET" => Some("s3cret".into()),
            "PAGERDUTY_ROUTING_KEY" => Some(KEY.into()),
            "PAGERDUTY_URL" => Some(format!("http://127.0.0.1:{pd_port}/v2/enqueue")),
            "SLACK_WEBHOOK_URL" => Some(format!("http://127.0.0.1:{}/services/T/B/x", slack.port)),
            "INCIDENT_STORE_URL" => Some(URL.into()),
            "INCIDENT_STORE_SCHEMA" => Some(schema.clone()),
            _ => None,
        }
    };
    let p = sluice::config::parse_texts(&[(path, text)], env).expect("parses");
    let dir = tempfile::tempdir().expect("tempdir");
    let options = TopologyOptions {
        data_dir: dir.path().to_path_buf(),
        ..TopologyOptions::default()
    };
    let (topo, _) = start_with(p, options).await;
    wait_for_port(hook).await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let r = client
            .post(format!("http://127.0.0.1:{hook}/alertmanager"))
            .bearer_auth("s3cret")
            .json(&alert("CheckoutDown", "firing", "checkout"))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200);
    }
    assert_eq!(pd.events().len(), 1, "{:?}", pd.events());
    assert_eq!(slack.requests().len(), 1);
    let count = |sql: String| {
        let db = &db;
        async move {
            db.query_one(&sql, &[])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        count(format!("SELECT count(*) FROM {schema}.incidents WHERE key = 'CheckoutDown/checkout' AND count = 2")).await,
        1
    );
    assert!(count(format!("SELECT count(*) FROM {schema}.events")).await >= 1);
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    drop_schema(&db, &schema).await;
}

/// Text PostgreSQL cannot hold (NUL) does not block an alert, nor the others sent with
/// it; NUL in what the API is asked is no store error either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_with_nul_characters_is_stored_and_paged() {
    let Some((db, schema)) = database().await else {
        return;
    };
    let Running {
        topo,
        telemetry,
        pd,
        hook,
        _dir,
    } = run("incidents_nul", &schema, 5432).await;
    let client = reqwest::Client::new();
    let mut body = alert("GOOD", "firing", "db");
    let mut poison = body["alerts"][0].clone();
    poison["labels"]["alertname"] = json!("POI\u{0}SON");
    poison["annotations"]["summary"] = json!("bad\u{0}byte");
    poison["fingerprint"] = json!("fp-poison");
    body["alerts"].as_array_mut().expect("alerts").push(poison);
    assert_eq!(post(&client, hook, &body).await, 200);
    assert_eq!(pd.events().len(), 2, "{:?}", pd.events());
    let summary: String = db
        .query_one(
            &format!("SELECT title FROM {schema}.incidents WHERE key LIKE 'POI%'"),
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(summary, "bad\u{fffd}byte");

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
    // Through the list (other tests' stores may be down meanwhile: they are named
    // under `unreachable`, ours must not be).
    let (status, listed) = get_json(&client, format!("http://{api}/incidents?service=a%00b")).await;
    assert_eq!(status, 200, "{listed}");
    let ours: Vec<&Value> = listed["incidents"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|i| i["component"] == "incidents_nul")
        .collect();
    assert!(ours.is_empty(), "{listed}");
    assert!(
        !listed["unreachable"].to_string().contains("incidents_nul"),
        "NUL in a filter is no store error: {listed}"
    );
    stop.cancel();
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    drop_schema(&db, &schema).await;
}

/// Stopping while alerts wait for an unreachable store: they go back to their senders
/// at once (503), instead of a 202 at the sender's timeout for alerts then dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_hands_waiting_alerts_back() {
    let Some((db, schema)) = database().await else {
        return;
    };
    let proxy = Proxy::start().await;
    proxy.set_up(false);
    let Running {
        topo,
        telemetry,
        pd,
        hook,
        _dir,
    } = run("incidents_stop", &schema, proxy.port).await;
    let client = reqwest::Client::new();
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { post(&client, hook, &alert("s1", "firing", "db")).await })
    };
    common::eventually("the alert waits for the store", || {
        telemetry.components().iter().any(|c| {
            c.id == "incidents_stop"
                && matches!(c.state(), sluice::telemetry::ComponentState::Degraded(_))
        })
    })
    .await;
    let started = std::time::Instant::now();
    topo.stop(Duration::from_secs(10)).await;
    assert_eq!(waiting.await.expect("task"), 503, "handed back");
    assert!(started.elapsed() < Duration::from_secs(5), "at once");
    assert!(pd.events().is_empty());
    drop_schema(&db, &schema).await;
}
