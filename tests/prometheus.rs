//! A real Prometheus (Debian's `prometheus`, started here on loopback) treats sluice as
//! its Alertmanager: it scrapes a target, its rule fires, it posts the alert to sluice's
//! `POST /api/v2/alerts` again and again while it fires, and sends it resolved once the
//! value drops. Through an `incident` transform that is one PagerDuty trigger and one
//! resolve with the same dedup key.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::pagerduty::{KEY, PagerDuty};
use common::{KillOnDrop, free_port, parse, wait_for_port};
use sluice::telemetry::Telemetry;
use tokio_util::sync::CancellationToken;

const BINARY: &str = "prometheus";

fn available() -> bool {
    common::tool_or_skip(BINARY, "prometheus")
}

/// A Prometheus with `config` (prometheus.yml's text) and its storage in `dir`, and
/// the port of its web API, once it listens.
async fn start_prometheus(
    dir: &std::path::Path,
    config: &str,
    extra: &[&str],
) -> (KillOnDrop, u16) {
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).expect("config");
    let web = free_port();
    let mut cmd = Command::new(BINARY);
    cmd.arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let prometheus = KillOnDrop(cmd.spawn().expect("prometheus starts"));
    wait_for_port(web).await;
    (prometheus, web)
}

/// Waits up to `secs` for `cond`: Prometheus takes a few seconds to start notifying.
async fn within(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A scrape target exposing `queue_depth`, settable by the test.
async fn target(depth: Arc<AtomicU64>) -> u16 {
    let port = free_port();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let depth = depth.load(Ordering::SeqCst);
            async move {
                format!("# HELP queue_depth Jobs waiting.\n# TYPE queue_depth gauge\nqueue_depth {depth}\n")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_rule_pages_once_through_sluice_and_resolves() {
    if !available() {
        return;
    }
    let pd_port = free_port();
    let pd = PagerDuty::default();
    pd.start(pd_port).await;
    let p = parse(&format!(
        r#"
sources:
  prometheus: {{ type: api }}
transforms:
  incidents:
    type: incident
    inputs: [prometheus]
sinks:
  pagerduty:
    type: pagerduty
    inputs: [incidents]
    routing_key: "{KEY}"
    url: "http://127.0.0.1:{pd_port}/v2/enqueue"
"#
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let options = sluice::topology::TopologyOptions {
        data_dir: dir.path().join("sluice"),
        ..sluice::topology::TopologyOptions::default()
    };
    let (_topology, telemetry) = common::start_with(p, options).await;
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let (api, _) = sluice::api::serve("127.0.0.1:0", Telemetry::new(), None, None, stop)
        .await
        .expect("API");

    let depth = Arc::new(AtomicU64::new(50));
    let scrape = target(Arc::clone(&depth)).await;
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        r#"
groups:
  - name: queues
    interval: 1s
    rules:
      - alert: QueueBacklog
        expr: queue_depth > 10
        labels: { severity: critical }
        annotations:
          summary: "Queue on {{ $labels.instance }} holds {{ $value }} jobs"
"#,
    )
    .expect("rules");
    let config = format!(
        r#"
global: {{ scrape_interval: 1s, evaluation_interval: 1s }}
rule_files: ["{}"]
alerting:
  alertmanagers:
    - api_version: v2
      static_configs: [{{ targets: ["{api}"] }}]
scrape_configs:
  - job_name: app
    static_configs: [{{ targets: ["127.0.0.1:{scrape}"] }}]
"#,
        rules.display()
    );
    // Firing alerts are sent again every second, not every minute: repeats must
    // not page again.
    let (_prometheus, _) =
        start_prometheus(dir.path(), &config, &["--rules.alert.resend-delay=1s"]).await;

    within(60, "the trigger", || !pd.events().is_empty()).await;
    // Prometheus keeps sending the firing alert; wait for three more of it.
    let received = || {
        common::metric(
            &telemetry.render_prometheus(),
            "sluice_component_sent_events_total",
            "prometheus",
        )
        .unwrap_or(0.0)
    };
    let first = received();
    within(30, "three repeats of the firing alert", || {
        received() >= first + 3.0
    })
    .await;
    assert_eq!(pd.events().len(), 1, "repeats are not paged again");

    depth.store(0, Ordering::SeqCst);
    within(60, "the resolve", || pd.events().len() >= 2).await;
    let events = pd.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["event_action"], "trigger");
    assert_eq!(events[1]["event_action"], "resolve");
    assert_eq!(events[0]["dedup_key"], events[1]["dedup_key"]);
    let summary = events[0]["payload"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!("Queue on 127.0.0.1:{scrape} holds 50 jobs")),
        "{summary}"
    );
    assert_eq!(events[0]["payload"]["severity"], "critical", "{events:?}");
}

/// Runs a query against Prometheus's HTTP API: each result's labels and value.
async fn query(web: u16, promql: &str) -> Vec<(serde_json::Value, f64)> {
    let mut url = url::Url::parse(&format!("http://127.0.0.1:{web}/api/v1/query")).expect("url");
    url.query_pairs_mut().append_pair("query", promql);
    let Ok(r) = reqwest::get(url).await else {
        return Vec::new();
    };
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    body["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let value = s["value"][1].as_str()?.parse().ok()?;
            Some((s["metric"].clone(), value))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_exporter_and_reads_what_was_sent() {
    if !available() {
        return;
    }
    let (hook, exporter) = (free_port(), free_port());
    let p = parse(&format!(
        r#"
sources:
  events: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  metrics:
    type: prometheus_exporter
    inputs: [events]
    address: "127.0.0.1:{exporter}"
    auth: {{ bearer: scrape-token }}
    metrics:
      - {{ name: monitoring_total_events, type: counter, labels: {{ source: "{{{{ source }}}}" }} }}
      - {{ name: monitoring_active_alerts, type: active_alerts, labels: {{ severity: "{{{{ severity }}}}" }} }}
      - {{ name: request_seconds, type: histogram, field: took, buckets: [0.1, 1] }}
"#
    ));
    let (_topology, _) = common::start(p).await;
    wait_for_port(exporter).await;
    let events = [
        r#"{"source":"grafana","status":"firing","fingerprint":"a","severity":"critical","took":0.05}"#,
        r#"{"source":"grafana","status":"firing","fingerprint":"b","severity":"critical","took":0.5}"#,
        r#"{"source":"aws","status":"firing","fingerprint":"c","severity":"low","took":3}"#,
        r#"{"source":"aws","status":"resolved","fingerprint":"c","severity":"low","took":0.2}"#,
    ];
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook}/"))
        .header("content-type", "application/x-ndjson")
        .body(events.join("\n"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);

    // Without the token, a scrape is refused.
    let scrape = format!("http://127.0.0.1:{exporter}/metrics");
    let refused = reqwest::get(&scrape).await.expect("GET");
    assert_eq!(refused.status(), 401);
    let body = reqwest::Client::new()
        .get(&scrape)
        .bearer_auth("scrape-token")
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    // promtool, Prometheus's own linter, parses the exposition and has no advice but
    // one: `monitoring_total_events` keeps the name the monitoring system gave it,
    // where a new counter would end in `_total`.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(&mut lint.stdin.take().expect("stdin"), body.as_bytes())
        .expect("write");
    let out = lint.wait_with_output().expect("promtool runs");
    let advice = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        advice.trim(),
        "monitoring_total_events counter metrics should have \"_total\" suffix",
        "{body}"
    );
    // 3 is promtool's "lint advice only"; a parse error would be 1.
    assert_eq!(out.status.code(), Some(3), "{advice}\n{body}");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"
global: {{ scrape_interval: 1s }}
scrape_configs:
  - job_name: sluice
    authorization: {{ credentials: scrape-token }}
    static_configs: [{{ targets: ["127.0.0.1:{exporter}"] }}]
"#
    );
    let (_prometheus, web) = start_prometheus(dir.path(), &config, &[]).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut totals = Vec::new();
    while tokio::time::Instant::now() < deadline {
        totals = query(web, "monitoring_total_events").await;
        if totals.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let by = |series: &[(serde_json::Value, f64)], label: &str, value: &str| {
        series
            .iter()
            .find(|(m, _)| m[label] == value)
            .map(|(_, v)| *v)
    };
    assert_eq!(by(&totals, "source", "grafana"), Some(2.0), "{totals:?}");
    assert_eq!(by(&totals, "source", "aws"), Some(2.0), "{totals:?}");
    let active = query(web, "monitoring_active_alerts").await;
    assert_eq!(by(&active, "severity", "critical"), Some(2.0), "{active:?}");
    assert_eq!(by(&active, "severity", "low"), Some(0.0), "{active:?}");
    let count = query(web, "request_seconds_count").await;
    assert_eq!(count.first().map(|s| s.1), Some(4.0), "{count:?}");
    let fast = query(web, "request_seconds_bucket{le=\"0.1\"}").await;
    assert_eq!(fast.first().map(|s| s.1), Some(1.0), "{fast:?}");
    let sum = query(web, "request_seconds_sum").await;
    assert!(
        sum.first().is_some_and(|s| (s.1 - 3.75).abs() < 1e-9),
        "{sum:?}"
    );
    // The scrape target is healthy in Prometheus's own eyes.
    let up = query(web, "up{job=\"sluice\"}").await;
    assert_eq!(up.first().map(|s| s.1), Some(1.0), "{up:?}");
}

/// A remote-write body of one series with one sample.
fn remote_write_body(name: &str, value: f64) -> Vec<u8> {
    // prometheus.WriteRequest { timeseries: [{ labels: [{__name__, name}], samples: [{value, ts}] }] },
    // written out field by field: the test must not share the decoder's own types.
    fn field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
        out.push(tag << 3 | 2);
        out.push(u8::try_from(bytes.len()).expect("short"));
        out.extend_from_slice(bytes);
    }
    let mut label = Vec::new();
    field(1, b"__name__", &mut label);
    field(2, name.as_bytes(), &mut label);
    let mut sample = vec![1 << 3 | 1];
    sample.extend_from_slice(&value.to_le_bytes());
    sample.extend_from_slice(&[2 << 3, 1]);
    let mut series = Vec::new();
    field(1, &label, &mut series);
    field(2, &sample, &mut series);
    let mut request = Vec::new();
    field(1, &series, &mut request);
    snap::raw::Encoder::new()
        .compress_vec(&request)
        .expect("compress")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_refuses_what_is_not_an_authenticated_bounded_write_request() {
    let rw = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  rw: {{ type: prometheus_remote_write, address: "127.0.0.1:{rw}", auth: {{ bearer: rw-token }}, max_body_bytes: 1024, max_samples_per_request: 1 }}
"#
    ));
    let sink = sluice::testing::CaptureSink::default();
    sink.attach(&mut p, "out", &["rw"], 100);
    let (_topology, _) = common::start(p).await;
    wait_for_port(rw).await;
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>, token: &'static str, encoding: &'static str| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("http://127.0.0.1:{rw}/api/v1/write"))
                .bearer_auth(token)
                .header("content-encoding", encoding)
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .expect("POST");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };
    let good = remote_write_body("queue_depth", 7.0);
    assert_eq!(post(good.clone(), "wrong", "snappy").await.0, 401);
    // The scheme is case-insensitive (RFC 7235); the token is not.
    let lower = client
        .post(format!("http://127.0.0.1:{rw}/api/v1/write"))
        .header("authorization", "bearer RW-TOKEN")
        .header("content-encoding", "snappy")
        .body(good.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(lower.status(), 401);
    let (status, text) = post(good.clone(), "rw-token", "gzip").await;
    assert_eq!(status, 415, "{text}");
    assert!(text.contains("snappy"), "{text}");
    let (status, text) = post(b"garbage".to_vec(), "rw-token", "snappy").await;
    assert_eq!(status, 400, "{text}");
    let (status, _) = post(vec![0; 2048], "rw-token", "snappy").await;
    assert_eq!(status, 413);
    let two = {
        let mut raw = snap::raw::Decoder::new()
            .decompress_vec(&good)
            .expect("decompress");
        let again = raw.clone();
        raw.extend(again);
        snap::raw::Encoder::new()
            .compress_vec(&raw)
            .expect("compress")
    };
    let (status, text) = post(two, "rw-token", "snappy").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("max_samples_per_request"), "{text}");
    assert!(sink.values().is_empty(), "nothing refused got in");
    let lower = client
        .post(format!("http://127.0.0.1:{rw}/api/v1/write"))
        .header("authorization", "bearer rw-token")
        .header("content-encoding", "snappy")
        .body(good.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(lower.status(), 204);
    assert_eq!(post(good, "rw-token", "snappy").await.0, 204);
    let events = sink.values();
    assert_eq!(events.len(), 2);
    assert_eq!(
        common::string(&events[0], "name").as_deref(),
        Some("queue_depth")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_write_feeds_an_alert_rule_that_fires() {
    if !available() {
        return;
    }
    let rw = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  rw: {{ type: prometheus_remote_write, address: "127.0.0.1:{rw}", auth: {{ bearer: rw-token }} }}
transforms:
  rules:
    type: alert_rule
    inputs: [rw]
    evaluation_interval: 1s
    group_wait: 0s
    rules:
      - name: QueueBacklog
        expr: queue_depth > 10
        group_by: [instance]
        severity: critical
        annotations: {{ summary: "{{{{ value }}}} jobs on {{{{ labels.instance }}}}" }}
"#
    ));
    let sink = sluice::testing::CaptureSink::default();
    sink.attach(&mut p, "out", &["rules"], 100);
    let (_topology, _) = common::start(p).await;
    wait_for_port(rw).await;

    let depth = Arc::new(AtomicU64::new(50));
    let scrape = target(Arc::clone(&depth)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"
global: {{ scrape_interval: 1s }}
scrape_configs:
  - job_name: app
    static_configs: [{{ targets: ["127.0.0.1:{scrape}"] }}]
remote_write:
  - url: http://127.0.0.1:{rw}/api/v1/write
    authorization: {{ credentials: rw-token }}
    queue_config: {{ batch_send_deadline: 1s }}
"#
    );
    let (_prometheus, _) = start_prometheus(dir.path(), &config, &[]).await;

    within(60, "the alert", || {
        sink.values()
            .iter()
            .any(|e| common::string(e, "status").as_deref() == Some("firing"))
    })
    .await;
    let alerts = sink.values();
    let firing = alerts
        .iter()
        .find(|e| common::string(e, "status").as_deref() == Some("firing"))
        .expect("firing");
    assert_eq!(
        common::string(firing, "summary"),
        Some(format!("50 jobs on 127.0.0.1:{scrape}"))
    );
    let labels = common::field(firing, "labels");
    assert_eq!(
        common::string(&labels, "alertname").as_deref(),
        Some("QueueBacklog")
    );
}
