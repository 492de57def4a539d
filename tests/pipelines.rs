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
