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
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
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
            PathBuf::from(sluice::DEFAULT_PIPELINE_NAME),
            sluice::DEFAULT_PIPELINE.to_owned(),
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
