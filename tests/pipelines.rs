//! Every pipeline in `pipelines/` is valid, and the alert pipeline does what its
//! comment says.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{free_port, start, wait_for_port};
use sluice::config::{load_files, parse_texts};
use sluice::testing::CaptureSink;
use vrl::value::Value;

fn pipeline_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("pipelines/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_pipeline_is_valid() {
    let files = pipeline_files();
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let p = load_files(std::slice::from_ref(&file))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            p.warnings.is_empty(),
            "{}: {:?}",
            file.display(),
            p.warnings
        );
    }
}

#[test]
fn every_example_pipeline_passes_its_own_tests() {
    for file in pipeline_files() {
        let out = common::sluice()
            .args(["test", "--config"])
            .arg(&file)
            .output()
            .expect("sluice test runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}:\n{stdout}", file.display());
        assert!(
            stdout.contains(" passed, 0 failed"),
            "{} has tests: {stdout}",
            file.display()
        );
    }
}

#[test]
fn the_embedded_default_pipeline_is_valid() {
    let p = sluice::config::load_texts(
        &[(
            PathBuf::from(sluice::config::DEFAULT_PIPELINE_NAME),
            sluice::config::DEFAULT_PIPELINE.to_owned(),
        )],
        |_| None,
    )
    .expect("valid");
    assert_eq!(p.sources.len() + p.transforms.len() + p.sinks.len(), 3);
}

fn field(v: &Value, name: &str) -> String {
    match v {
        Value::Object(m) => m
            .get(name)
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn alerts_webhook_normalizes_filters_and_dead_letters() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/alerts-webhook.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut p = parse_texts(&[(path, text)], |name| {
        (name == "ALERTS_ADDRESS").then(|| address.clone())
    })
    .expect("parses");
    // Replace the two console sinks by capturing ones reading the same outputs.
    p.sinks.clear();
    let (out, rejected) = (CaptureSink::default(), CaptureSink::default());
    out.attach(&mut p, "out", &["actionable"], 100);
    rejected.attach(&mut p, "rejected", &["normalize.dropped"], 100);
    let (topo, _) = start(p).await;
    wait_for_port(port).await;

    let body = r#"[
        {"alertname": "DiskFull", "level": "CRITICAL", "host": "db1"},
        {"alertname": "Deploy", "level": "info"},
        {"alertname": "Latency", "level": "warning"},
        {"level": "error"}
    ]"#;
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/alerts"))
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);

    let got: Vec<(String, String)> = out
        .values()
        .iter()
        .map(|v| (field(v, "summary"), field(v, "severity")))
        .collect();
    assert_eq!(
        got,
        [
            ("DiskFull on db1".to_owned(), "critical".to_owned()),
            ("Latency on unknown host".to_owned(), "medium".to_owned()),
        ]
    );
    let dead = rejected.values();
    assert_eq!(dead.len(), 1, "the alert without a name failed the program");
    assert!(
        field(&dead[0], "error").contains("string"),
        "{}",
        field(&dead[0], "error")
    );

    // A real Grafana webhook: two firing alerts, decoded by the grafana decoder, both
    // printed (before, the json decoder made it one event that the program dropped).
    let grafana = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "tests/fixtures/webhooks/grafana/grafana-docs_unified_webhook_firing_2alerts_values.json",
    ))
    .expect("fixture");
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/grafana"))
        .header("content-type", "application/json")
        .body(grafana)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["accepted"], 2);
    let grafana: Vec<(String, String)> = out.values()[2..]
        .iter()
        .map(|v| (field(v, "status"), field(v, "summary")))
        .collect();
    assert_eq!(grafana.len(), 2, "{grafana:?}");
    assert!(
        grafana.iter().all(|(status, _)| status == "firing"),
        "{grafana:?}"
    );
    assert!(grafana[0].1.contains("us-1"), "{grafana:?}");
    assert!(grafana[1].1.contains("eu-1"), "{grafana:?}");
    assert_eq!(rejected.values().len(), 1, "nothing more dead-lettered");
    topo.stop(Duration::from_secs(5)).await;
}

/// Every vendor route of `webhooks-to-console.yaml` on one port, each with its own auth:
/// one payload per vendor comes out normalized, without `raw`; wrong credentials do not.
#[tokio::test]
async fn webhooks_to_console_takes_every_vendor_on_one_port() {
    use base64::Engine;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/webhooks-to-console.yaml");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks");
    let text = std::fs::read_to_string(&path).expect("read");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut p = parse_texts(&[(path, text)], |name| match name {
        "ALERTS_ADDRESS" => Some(address.clone()),
        "WEBHOOK_SECRET" => Some("s3cret".into()),
        _ => None,
    })
    .expect("parses");
    p.sinks.clear();
    let out = CaptureSink::default();
    out.attach(&mut p, "out", &["compact"], 100);
    let (topo, _) = start(p).await;
    wait_for_port(port).await;

    let client = reqwest::Client::new();
    let basic = base64::engine::general_purpose::STANDARD.encode("grafana:s3cret");
    // (route, fixture, headers, normalized source)
    type Send<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, &'a str);
    let sends: Vec<Send> = vec![
        (
            "/grafana",
            "grafana/grafana-docs_unified_webhook_firing_2alerts_values.json",
            vec![("authorization", format!("Basic {basic}"))],
            "grafana",
        ),
        (
            "/alertmanager",
            "grafana/alertmanager_oncall-example_firing_2alerts.json",
            vec![("authorization", "Bearer s3cret".into())],
            "alertmanager",
        ),
        (
            "/aws/eventbridge",
            "aws/eventbridge_cloudwatch_alarm_state_change_single_metric.json",
            vec![("x-api-key", "s3cret".into())],
            "aws",
        ),
        (
            "/gcp?token=s3cret",
            "gcp/monitoring_webhook_v1.2_closed_gcp-forwarding-test.json",
            vec![],
            "gcp",
        ),
        (
            "/azure?tokenid=s3cret",
            "azure/common_schema_metric_resolved_docs.json",
            vec![],
            "azure",
        ),
        (
            "/oci",
            "oci/alarm_OK_TO_FIRING_v1.0_oracle-functions-samples_test-alarm.json",
            vec![("x-api-key", "s3cret".into())],
            "oci",
        ),
        (
            "/cloudevents",
            "cloudevents/spec_json_data_object.json",
            vec![("authorization", "Bearer s3cret".into())],
            "cloudevents",
        ),
    ];
    let mut expected_sources = Vec::new();
    for (route, fixture, headers, source) in &sends {
        let body = std::fs::read(fixtures.join(fixture)).expect("fixture");
        let unauthenticated = client
            .post(format!(
                "http://{address}{}",
                route.split('?').next().unwrap_or(route)
            ))
            .body(body.clone())
            .send()
            .await
            .expect("POST");
        assert_eq!(
            unauthenticated.status(),
            401,
            "{route} needs its credentials"
        );
        let mut request = client.post(format!("http://{address}{route}")).body(body);
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let response = request.send().await.expect("POST");
        assert_eq!(
            response.status(),
            200,
            "{route}: {}",
            response.text().await.unwrap_or_default()
        );
        let n = if fixture.contains("2alerts") { 2 } else { 1 };
        expected_sources.extend(std::iter::repeat_n(*source, n));
    }
    let events = out.values();
    let sources: Vec<String> = events.iter().map(|e| field(e, "source")).collect();
    assert_eq!(sources, expected_sources);
    for e in &events {
        let o = e.as_object().expect("object");
        assert!(o.get("raw").is_none(), "compact drops raw");
        assert!(!field(e, "fingerprint").is_empty());
        assert!(!field(e, "request_id").is_empty());
    }
    topo.stop(Duration::from_secs(5)).await;
}

/// `status-pages-to-slack.yaml` with its five feeds served on loopback (the real
/// fixtures) and a receiver that checks Slack's incoming-webhook schema: the open
/// outages are posted at start, filtered by region and severity, and a resolution
/// asked for through `POST /status_feeds/status/check` is posted once.
#[tokio::test]
async fn status_pages_to_slack_posts_outages_and_resolutions() {
    use common::{Receiver, Reply, start_with};
    use std::sync::{Arc, Mutex};

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/statuspages");
    let read = |name: &str| std::fs::read_to_string(fixtures.join(name)).expect("fixture");
    let serve = |body: String| async move {
        let rx = Receiver::new(0).start().await;
        rx.set_fallback(Reply::status(200).with_body(&body));
        rx
    };
    free_port();
    // AWS: an ec2 incident in ap-northeast-1, outside the pipeline's `regions`.
    let aws = serve(read(
        "aws_health_dashboard_rss_ec2-ap-northeast-1_excerpt_2019.xml",
    ))
    .await;
    let gcp_incidents: Vec<serde_json::Value> = serde_json::from_str(&read(
        "gcp_status_incidents.json_checkmk-edited-sample.json",
    ))
    .expect("JSON");
    let gcp_doc = |i: usize| serde_json::to_string(&[&gcp_incidents[i]]).expect("JSON");
    let gcp = serve(gcp_doc(0)).await;
    let azure = serve(read("azure_status_feed_rss_empty_all-clear.xml")).await;
    // OCI (Statuspage's JSON API): a scheduled maintenance only, which is `info`.
    let oci = serve(
        r#"{"page": {"id": "p", "name": "OCI", "url": "https://ocistatus.oraclecloud.com"},
            "incidents": [{"id": "m1", "name": "Object Storage maintenance", "status": "scheduled",
                           "impact": "maintenance", "created_at": "2026-07-09T01:00:00Z",
                           "updated_at": "2026-07-09T01:00:00Z", "components": [], "incident_updates": []}]}"#
            .to_owned(),
    )
    .await;
    let github = serve(read(
        "statuspage_githubstatus_history.atom_excerpt_ongoing_incident.xml",
    ))
    .await;

    let messages: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let slack = {
        let messages = Arc::clone(&messages);
        let app = axum::Router::new().route(
            "/services/T000/B000/XXXX",
            axum::routing::post(move |body: bytes::Bytes| {
                let messages = Arc::clone(&messages);
                async move {
                    let Ok(msg) = serde_json::from_slice::<serde_json::Value>(&body) else {
                        return (axum::http::StatusCode::BAD_REQUEST, "invalid_payload");
                    };
                    if msg["text"].as_str().is_none_or(str::is_empty)
                        || msg.get("blocks").is_some_and(|b| !b.is_array())
                    {
                        return (axum::http::StatusCode::BAD_REQUEST, "invalid_payload");
                    }
                    messages.lock().expect("lock").push(msg);
                    (axum::http::StatusCode::OK, "ok")
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
    };

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/status-pages-to-slack.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    let url = |rx: &Receiver| format!("http://127.0.0.1:{}/feed", rx.port);
    let p = parse_texts(&[(path, text)], |name| match name {
        "AWS_STATUS_URL" => Some(url(&aws)),
        "GCP_STATUS_URL" => Some(url(&gcp)),
        "AZURE_STATUS_URL" => Some(url(&azure)),
        "OCI_STATUS_URL" => Some(url(&oci)),
        "GITHUB_STATUS_URL" => Some(url(&github)),
        "SLACK_WEBHOOK_URL" => Some(format!("http://127.0.0.1:{slack}/services/T000/B000/XXXX")),
        _ => None,
    })
    .expect("parses");
    let dir = tempfile::tempdir().expect("tempdir");
    let options = sluice::topology::TopologyOptions {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let (topo, telemetry) = start_with(p, options).await;
    let stop_api = tokio_util::sync::CancellationToken::new();
    let (api, _) = sluice::api::serve(
        "127.0.0.1:0",
        Arc::clone(&telemetry),
        None,
        None,
        stop_api.clone(),
    )
    .await
    .expect("API");
    let texts = || -> Vec<String> {
        messages
            .lock()
            .expect("lock")
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    common::eventually("the first poll's messages", || texts().len() >= 2).await;

    // GCP's incident ends.
    gcp.set_fallback(Reply::status(200).with_body(&gcp_doc(1)));
    let answer = reqwest::Client::new()
        .post(format!("http://{api}/status_feeds/status/check"))
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.status(), 200);
    let snapshot: serde_json::Value = answer.json().await.expect("JSON");
    let open: Vec<&str> = snapshot["open_incidents"]
        .as_array()
        .expect("open incidents")
        .iter()
        .filter_map(|i| i["summary"].as_str())
        .collect();
    // The source tracks the maintenance too; the pipeline's filter kept it from Slack.
    assert_eq!(
        open,
        ["Object Storage maintenance", "Delays starting Actions runs"]
    );
    assert_eq!(
        texts(),
        [
            "[MEDIUM] [gcp] Secret Manager experienced service unavailability in europe-west2",
            "[MEDIUM] [github] Delays starting Actions runs",
            "[RESOLVED] [gcp] Secret Manager experienced service unavailability in europe-west2",
        ]
    );
    let first = messages.lock().expect("lock")[0].clone();
    let fields = first["blocks"][1]["fields"].to_string();
    for want in [
        "*service*\\nSecret Manager",
        "*region*\\neurope-west2",
        "*feed*\\ngcp",
    ] {
        assert!(fields.contains(want), "{want} in {fields}");
    }
    assert_eq!(
        first["blocks"][3]["elements"][0]["url"],
        "https://status.cloud.google.com/incidents/mLBHeCxhRia17anXCSX1"
    );
    // Every feed was read, the maintenance and the filtered region included.
    for rx in [&aws, &gcp, &azure, &oci, &github] {
        assert_eq!(rx.requests().len(), 2, "port {}", rx.port);
    }
    stop_api.cancel();
    topo.stop(Duration::from_secs(5)).await;
}

/// `tail-to-http.yaml` against a real HTTP collector: JSON records from tailed files,
/// tagged, debug dropped, plain lines kept; a rotation by rename loses nothing and a
/// restart sends nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_to_http_ships_tailed_logs_across_rotation_and_restart() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    let app = logs.join("app.log");
    std::fs::write(
        &app,
        concat!(
            r#"{"level":"INFO","service":"api","msg":"started","n":1}"#,
            "\n",
            r#"{"level":"debug","service":"api","msg":"cache miss","n":2}"#,
            "\n",
            "plain text line\n",
        ),
    )
    .expect("write");
    std::fs::write(logs.join("old.log.gz"), "not a log\n").expect("write");
    let collector = common::Receiver::new(0).start().await;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/tail-to-http.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    let vars = [
        ("LOG_FILES", format!("{}/*.log*", logs.display())),
        (
            "COLLECTOR_URL",
            format!("http://127.0.0.1:{}/ingest", collector.port),
        ),
        (
            "PARKED_DIR",
            dir.path().join("parked").display().to_string(),
        ),
        ("GLOB_INTERVAL", "10ms".to_owned()),
        ("POLL_INTERVAL", "5ms".to_owned()),
    ];
    let pipeline = || {
        parse_texts(&[(path.clone(), text.clone())], |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .expect("parses")
    };
    let options = || sluice::topology::TopologyOptions {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    let lines = |rx: &common::Receiver| -> Vec<serde_json::Value> {
        rx.requests()
            .iter()
            .flat_map(|r| {
                std::str::from_utf8(&r.body)
                    .expect("utf-8")
                    .lines()
                    .map(|l| serde_json::from_str(l).expect("NDJSON"))
                    .collect::<Vec<serde_json::Value>>()
            })
            .collect()
    };
    let (topo, _) = common::start_with(pipeline(), options()).await;
    common::eventually("2 records", || lines(&collector).len() == 2).await;
    // logrotate by rename: the rotated file is still matched (`*.log*`) and followed.
    std::fs::rename(&app, logs.join("app.log.1")).expect("rotate");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("app.log.1"))
        .expect("open rotated");
    writeln!(
        f,
        r#"{{"level":"error","service":"billing","msg":"late write","n":3}}"#
    )
    .expect("write");
    std::fs::write(
        &app,
        "{\"severity\":\"WARN\",\"service\":\"api\",\"msg\":\"new file\",\"n\":4}\n",
    )
    .expect("write");
    common::eventually("4 records", || lines(&collector).len() == 4).await;
    topo.stop(Duration::from_secs(5)).await;

    // A restart sends only what is new.
    writeln!(
        f,
        r#"{{"level":"info","service":"billing","msg":"after restart","n":5}}"#
    )
    .expect("write");
    let (topo, _) = common::start_with(pipeline(), options()).await;
    common::eventually("5 records", || lines(&collector).len() == 5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    topo.stop(Duration::from_secs(5)).await;

    let got = lines(&collector);
    let mut summary: Vec<(String, String, String)> = got
        .iter()
        .map(|v| {
            (
                v["tag"].as_str().unwrap_or_default().to_owned(),
                v["level"].as_str().unwrap_or_default().to_owned(),
                v["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    summary.sort();
    let want = [
        ("app.api", "info", "started"),
        ("app.api", "warn", "new file"),
        ("app.billing", "error", "late write"),
        ("app.billing", "info", "after restart"),
        ("app.unknown", "info", "plain text line"),
    ];
    assert_eq!(
        summary,
        want.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    );
    assert!(got.iter().all(|v| {
        v["file"]
            .as_str()
            .is_some_and(|f| f.starts_with(&*logs.to_string_lossy()))
            && v["offset"].is_u64()
            && v["host"].is_string()
    }));
    assert!(collector.requests().iter().all(|r| r.path == "/ingest"));
}

/// `metrics-to-oncall.yaml` end to end: samples POSTed to the webhook become alerts
/// (after `for`), production's page PagerDuty, all reach Slack, and a recovered host
/// resolves its page with the same dedup key. Real HTTP receivers on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_to_oncall_pages_production_and_chats_everything() {
    use common::{Receiver, Reply, eventually};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/metrics-to-oncall.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    let pagerduty = Receiver::new(0).start().await;
    pagerduty.set_fallback(
        Reply::status(202).with_body(r#"{"status":"success","message":"Event processed"}"#),
    );
    let slack = Receiver::new(0).start().await;
    slack.set_fallback(Reply::status(200).with_body("ok"));
    let port = free_port();
    let vars = [
        ("METRICS_ADDRESS", format!("127.0.0.1:{port}")),
        ("METRICS_TOKEN", "s3cret".to_owned()),
        ("EVALUATION_INTERVAL", "50ms".to_owned()),
        ("HIGH_CPU_FOR", "300ms".to_owned()),
        // A resolution is notified at the alert's next group interval.
        ("GROUP_INTERVAL", "200ms".to_owned()),
        (
            "PD_URL",
            format!("http://127.0.0.1:{}/v2/enqueue", pagerduty.port),
        ),
        (
            "SLACK_WEBHOOK_URL",
            format!("http://127.0.0.1:{}/services/T0/B0/X", slack.port),
        ),
    ];
    let p = parse_texts(&[(path, text)], |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("parses");
    let data_dir = tempfile::tempdir().expect("tempdir");
    let options = sluice::topology::TopologyOptions {
        data_dir: data_dir.path().to_owned(),
        ..Default::default()
    };
    let (topo, _) = common::start_with(p, options).await;
    wait_for_port(port).await;
    let client = reqwest::Client::new();
    let post = |body: &'static str| {
        client
            .post(format!("http://127.0.0.1:{port}/metrics"))
            .bearer_auth("s3cret")
            .body(body)
            .send()
    };
    let samples = r#"[
        {"name": "cpu_usage", "value": 95, "labels": {"host": "web-1", "env": "prod"}},
        {"name": "cpu_usage", "value": 97, "labels": {"host": "web-9", "env": "staging"}},
        {"name": "cpu_usage", "value": 20, "labels": {"host": "web-2", "env": "prod"}},
        {"name": "messages_sent", "value": 100, "labels": {"service": "api", "env": "prod"}},
        {"name": "messages_failed", "value": 10, "labels": {"service": "api", "env": "prod"}}
    ]"#;
    assert_eq!(post(samples).await.expect("POST").status(), 200);
    let bodies = |r: &Receiver| -> Vec<serde_json::Value> {
        r.requests()
            .iter()
            .map(|q| serde_json::from_slice(&q.body).expect("json"))
            .collect()
    };
    eventually("two pages and three chat messages", || {
        bodies(&pagerduty).len() == 2 && bodies(&slack).len() == 3
    })
    .await;
    let pages = bodies(&pagerduty);
    let summary = |b: &serde_json::Value| {
        b["payload"]["summary"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let cpu = pages
        .iter()
        .find(|b| summary(b).contains("web-1"))
        .expect("web-1 paged");
    assert_eq!(cpu["event_action"], "trigger");
    assert_eq!(cpu["payload"]["severity"], "critical");
    assert!(summary(cpu).starts_with("CPU 95"), "{}", summary(cpu));
    let mesh = pages
        .iter()
        .find(|b| summary(b).contains("api fails"))
        .expect("the error rate paged");
    assert_eq!(mesh["event_action"], "trigger");
    assert!(summary(mesh).contains("0.1"), "{}", summary(mesh));
    assert!(
        pages
            .iter()
            .all(|b| !summary(b).contains("web-9") && !summary(b).contains("web-2")),
        "staging and healthy hosts do not page: {pages:?}"
    );
    let chat: Vec<String> = bodies(&slack)
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(chat.iter().any(|t| t.contains("web-9")), "{chat:?}");

    // web-1 recovers: its page resolves under the same dedup key.
    assert_eq!(
        post(r#"{"name": "cpu_usage", "value": 10, "labels": {"host": "web-1", "env": "prod"}}"#)
            .await
            .expect("POST")
            .status(),
        200
    );
    eventually("the resolve", || bodies(&pagerduty).len() == 3).await;
    let resolve = bodies(&pagerduty).pop().expect("third page");
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], cpu["dedup_key"]);
    eventually("the resolved chat message", || bodies(&slack).len() == 4).await;
    topo.stop(Duration::from_secs(5)).await;
}
