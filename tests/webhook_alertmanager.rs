//! A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`, started here on
//! loopback) notifies sluice's webhook; alerts posted to its API come out normalized,
//! firing then resolved with one fingerprint.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{KillOnDrop, eventually, free_port, parse, start, string, wait_for_port};
use sluice::testing::CaptureSink;

const BINARY: &str = "prometheus-alertmanager";

#[tokio::test]
async fn alertmanager_delivers_firing_then_resolved() {
    if !common::tool_or_skip(BINARY, "prometheus-alertmanager") {
        return;
    }
    let (hook, am) = (free_port(), free_port());
    let mut p = parse(&format!(
        r#"
sources:
  alerts:
    type: webhook
    address: "127.0.0.1:{hook}"
    routes:
      - {{ path: /alertmanager, decoder: alertmanager }}
"#
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["alerts"], 100);
    let (_topo, _) = start(p).await;
    wait_for_port(hook).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            r#"
route:
  receiver: sluice
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: sluice
    webhook_configs:
      - url: http://127.0.0.1:{hook}/alertmanager
        send_resolved: true
"#
        ),
    )
    .expect("config");
    let mut cmd = Command::new(BINARY);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{am}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _alertmanager = KillOnDrop(cmd.spawn().expect("alertmanager starts"));
    wait_for_port(am).await;

    let client = reqwest::Client::new();
    let starts_at = "2026-11-21T10:00:00Z";
    let alert = |ends_at: Option<String>| {
        let mut a = serde_json::json!({
            "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db1", "region": "eu-west-1"},
            "annotations": {"summary": "Disk full on db1", "description": "/var is at 99%"},
            "startsAt": starts_at,
            "generatorURL": "http://prometheus.example/graph?g0.expr=disk",
        });
        if let Some(e) = ends_at {
            a["endsAt"] = e.into();
        }
        serde_json::json!([a])
    };
    let post = |body: serde_json::Value| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("http://127.0.0.1:{am}/api/v2/alerts"))
                .json(&body)
                .send()
                .await
                .expect("POST to Alertmanager");
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        }
    };
    post(alert(None)).await;
    eventually("the firing notification", || !sink.values().is_empty()).await;
    let ended = (chrono::Utc::now() - chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    post(alert(Some(ended.clone()))).await;
    eventually("the resolved notification", || {
        sink.values()
            .iter()
            .any(|e| string(e, "status").as_deref() == Some("resolved"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let events = sink.values();
    let firing = &events[0];
    let resolved = events
        .iter()
        .find(|e| string(e, "status").as_deref() == Some("resolved"))
        .expect("resolved");
    assert_eq!(string(firing, "status").as_deref(), Some("firing"));
    for e in [firing, resolved] {
        assert_eq!(string(e, "source").as_deref(), Some("alertmanager"));
        assert_eq!(string(e, "event_type").as_deref(), Some("alert"));
        assert_eq!(string(e, "severity").as_deref(), Some("critical"));
        assert_eq!(string(e, "region").as_deref(), Some("eu-west-1"));
        assert_eq!(string(e, "summary").as_deref(), Some("Disk full on db1"));
        assert_eq!(string(e, "description").as_deref(), Some("/var is at 99%"));
        assert_eq!(
            string(e, "url").as_deref(),
            Some("http://prometheus.example/graph?g0.expr=disk")
        );
        let labels = common::field(e, "labels");
        assert_eq!(string(&labels, "instance").as_deref(), Some("db1"));
        assert_eq!(
            common::field(e, "starts_at").to_string_lossy(),
            "2026-11-21T10:00:00Z"
        );
    }
    assert_eq!(
        string(firing, "fingerprint"),
        string(resolved, "fingerprint"),
        "one alert, one fingerprint"
    );
    assert!(string(firing, "fingerprint").is_some_and(|f| f.len() == 32));
    assert_eq!(common::field(firing, "ends_at"), vrl::value::Value::Null);
    assert_eq!(
        common::field(resolved, "ends_at").to_string_lossy(),
        ended.as_str()
    );
}
