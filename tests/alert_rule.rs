//! `alert_rule` scenarios on a manual clock: the transform is built from pipeline YAML
//! and driven directly (`process` then `flush`, as the topology's evaluation timer
//! does), so every assertion is about exact emitted alerts at exact times.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice::clock::ManualClock;
use sluice::component::{Transform, TransformContext, TransformOutputs};
use sluice::config::parse_texts;
use sluice::event::{Event, SourceId};
use sluice::telemetry::{ComponentKind, Telemetry};
use vrl::value::Value;

const T0: &str = "2026-03-01T12:00:00Z";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(T0)
        .expect("time")
        .with_timezone(&Utc)
}

fn at(secs: i64) -> Value {
    Value::Timestamp(t0() + chrono::Duration::seconds(secs))
}

/// A transform under test with its clock.
struct Rig {
    clock: ManualClock,
    transform: Box<dyn Transform>,
    telemetry: Arc<Telemetry>,
    elapsed: i64,
}

fn build_with(
    id: &str,
    yaml: &str,
    clock: &ManualClock,
    data_dir: Option<&Path>,
) -> Result<(Box<dyn Transform>, Arc<Telemetry>), String> {
    let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!(
        "sources:\n  in: {{ type: generator }}\ntransforms:\n  {id}:\n    type: alert_rule\n    inputs: [in]\n{indented}"
    );
    let p =
        parse_texts(&[(PathBuf::from("rules.yaml"), text)], |_| None).map_err(|e| e.to_string())?;
    let def = &p.transforms[id];
    let telemetry = Telemetry::new();
    let cx = TransformContext {
        file_notices: Default::default(),
        id: Arc::from(id),
        metrics: telemetry.component(id, ComponentKind::Transform, "alert_rule"),
        clock: Arc::new(clock.clone()),
        data_dir: data_dir.map(Path::to_path_buf),
    };
    let t = def.config.build(&cx).map_err(|e| e.to_string())?;
    Ok((t, telemetry))
}

impl Rig {
    fn new(yaml: &str) -> Self {
        Self::at_dir("rules", yaml, None)
    }

    fn at_dir(id: &str, yaml: &str, data_dir: Option<&Path>) -> Self {
        Self::since(t0(), id, yaml, data_dir)
    }

    /// A rig whose clock starts at `start` (the API's silences run on the wall clock).
    fn since(start: DateTime<Utc>, id: &str, yaml: &str, data_dir: Option<&Path>) -> Self {
        let clock = ManualClock::starting_at(start);
        let (transform, telemetry) = build_with(id, yaml, &clock, data_dir).expect("builds");
        Self {
            clock,
            transform,
            telemetry,
            elapsed: 0,
        }
    }

    /// Moves the clock to `secs` after T0.
    fn to(&mut self, secs: i64) -> &mut Self {
        assert!(secs >= self.elapsed, "time goes forward");
        self.clock
            .advance(Duration::from_secs((secs - self.elapsed) as u64));
        self.elapsed = secs;
        self
    }

    fn send(&mut self, events: Vec<Event>) -> &mut Self {
        let mut out = TransformOutputs::new(0);
        self.transform.process(events, &mut out);
        assert!(out.default.is_empty(), "alerts leave only on evaluation");
        self
    }

    /// One evaluation: the alerts it emits.
    fn eval(&mut self) -> Vec<Value> {
        let mut out = TransformOutputs::new(0);
        self.transform.flush(&mut out);
        out.default.into_iter().map(|e| e.into_value()).collect()
    }

    fn metric_text(&self) -> String {
        self.telemetry.render_prometheus()
    }
}

fn metric(name: &str, value: f64, labels: &[(&str, &str)]) -> Event {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let json = serde_json::json!({
        "event_type": "metric", "name": name, "value": value, "labels": labels,
    });
    Event::new(
        serde_json::from_value(json).expect("value"),
        SourceId::intern("in"),
        Utc::now(),
    )
}

fn event(json: serde_json::Value) -> Event {
    Event::new(
        serde_json::from_value(json).expect("value"),
        SourceId::intern("in"),
        Utc::now(),
    )
}

fn f(v: &Value, path: &str) -> Value {
    let p = vrl::path::parse_value_path(path).expect("path");
    v.get(&p).cloned().unwrap_or(Value::Null)
}

fn s(v: &Value, path: &str) -> String {
    f(v, path).to_string_lossy().into_owned()
}

fn labels(v: &Value) -> Vec<(String, String)> {
    match f(v, "labels") {
        Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string_lossy().into_owned()))
            .collect(),
        other => panic!("labels is not an object: {other:?}"),
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const HIGH_CPU: &str = r#"
rules:
  - name: HighCPU
    expr: cpu_usage > 80
    for: 5m
    group_by: [host, env]
    severity: critical
    labels: { team: infra }
    annotations:
      summary: "CPU {{ value }}% on {{ labels.host }}"
      description: "{{ alertname }} is {{ severity }}"
      runbook: "https://runbooks/cpu"
"#;

#[test]
fn threshold_with_for_fires_once_then_resolves_with_the_same_fingerprint() {
    let mut rig = Rig::new(HIGH_CPU);
    let a = [("host", "db1"), ("env", "prod")];
    let b = [("host", "db2"), ("env", "prod")];
    for minute in 0..5 {
        rig.to(minute * 60).send(vec![
            metric("cpu_usage", 91.0, &a),
            metric("cpu_usage", 40.0, &b),
        ]);
        assert!(rig.eval().is_empty(), "pending at minute {minute}");
    }
    rig.to(300).send(vec![metric("cpu_usage", 93.5, &a)]);
    let fired = rig.eval();
    assert_eq!(fired.len(), 1, "{fired:?}");
    let alert = &fired[0];
    assert_eq!(s(alert, "status"), "firing");
    assert_eq!(s(alert, "event_type"), "alert");
    assert_eq!(s(alert, "kind"), "alert_rule");
    assert_eq!(s(alert, "source"), "rules");
    assert_eq!(s(alert, "severity"), "critical");
    assert_eq!(f(alert, "starts_at"), at(300));
    assert_eq!(f(alert, "time"), at(300));
    assert_eq!(f(alert, "ends_at"), Value::Null);
    assert_eq!(f(alert, "value"), Value::from_f64_or_zero(93.5));
    assert_eq!(s(alert, "summary"), "CPU 93.5% on db1");
    assert_eq!(s(alert, "description"), "HighCPU is critical");
    assert_eq!(s(alert, "annotations.runbook"), "https://runbooks/cpu");
    assert_eq!(
        labels(alert),
        pairs(&[
            ("alertname", "HighCPU"),
            ("env", "prod"),
            ("host", "db1"),
            ("team", "infra")
        ])
    );
    assert_eq!(s(alert, "fingerprint").len(), 32);
    assert!(uuid::Uuid::parse_str(&s(alert, "id")).is_ok());

    // Still firing: nothing new until repeat_interval.
    rig.to(330).send(vec![metric("cpu_usage", 95.0, &a)]);
    assert!(rig.eval().is_empty());
    // Below the threshold: resolved, once group_interval (1m) after the firing.
    rig.to(340).send(vec![metric("cpu_usage", 20.0, &a)]);
    assert!(rig.eval().is_empty(), "held back by group_interval");
    rig.to(360);
    let resolved = rig.eval();
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    let r = &resolved[0];
    assert_eq!(s(r, "status"), "resolved");
    assert_eq!(s(r, "fingerprint"), s(alert, "fingerprint"));
    assert_ne!(s(r, "id"), s(alert, "id"));
    assert_eq!(f(r, "starts_at"), at(300));
    assert_eq!(f(r, "ends_at"), at(340));
    assert_eq!(f(r, "value"), Value::from_f64_or_zero(20.0));
    assert_eq!(labels(r), labels(alert));
    rig.to(3600);
    assert!(rig.eval().is_empty(), "a resolution is sent once");
    let text = rig.metric_text();
    assert!(
        text.contains(r#"sluice_alert_rule_notifications_total{component_id="rules",component_kind="transform",component_type="alert_rule",rule="HighCPU",status="firing"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"rule="HighCPU",status="resolved"} 1"#),
        "{text}"
    );
}

#[test]
fn flapping_input_gives_one_firing_and_one_resolved() {
    let mut rig = Rig::new(
        r#"
group_interval: 5m
rules:
  - name: Flappy
    expr: avg(latency[30s]) >= 100
    group_by: [service]
"#,
    );
    let svc = [("service", "api")];
    let mut all = Vec::new();
    // Above and below every 30 s for 4 minutes, then quiet below.
    for step in 0..=8 {
        let v = if step % 2 == 0 { 150.0 } else { 50.0 };
        rig.to(step * 30).send(vec![metric("latency", v, &svc)]);
        all.extend(rig.eval());
    }
    for t in [270, 300, 330, 600] {
        rig.to(t).send(vec![metric("latency", 10.0, &svc)]);
        all.extend(rig.eval());
    }
    let statuses: Vec<String> = all.iter().map(|a| s(a, "status")).collect();
    assert_eq!(statuses, ["firing", "resolved"], "{all:?}");
    assert_eq!(s(&all[0], "fingerprint"), s(&all[1], "fingerprint"));
    assert_eq!(f(&all[0], "starts_at"), at(0));
    assert_eq!(f(&all[1], "starts_at"), at(0));
    // The last flap ended at 270 s; the resolution waited for group_interval (5m).
    assert_eq!(f(&all[1], "ends_at"), at(270));
    assert_eq!(f(&all[1], "time"), at(300));
}

#[test]
fn repeat_interval_sends_a_still_firing_alert_again() {
    let mut rig = Rig::new(
        r#"
repeat_interval: 1h
group_wait: 30s
rules:
  - name: DiskFull
    expr: max(disk_used_percent[10m]) > 90
    group_by: [host]
"#,
    );
    let mut sent = Vec::new();
    for t in (0..=7500).step_by(60) {
        rig.to(t)
            .send(vec![metric("disk_used_percent", 95.0, &[("host", "db1")])]);
        sent.extend(rig.eval().into_iter().map(|a| (t, a)));
    }
    let times: Vec<i64> = sent.iter().map(|(t, _)| *t).collect();
    // group_wait 30 s: first at the evaluation after 30 s; then every hour.
    assert_eq!(times, [60, 3660, 7260]);
    let fps: Vec<String> = sent.iter().map(|(_, a)| s(a, "fingerprint")).collect();
    assert!(fps.iter().all(|fp| *fp == fps[0]));
    assert!(sent.iter().all(|(_, a)| f(a, "starts_at") == at(0)));
    assert!(sent.iter().all(|(_, a)| s(a, "status") == "firing"));
    assert_eq!(s(&sent[0].1, "severity"), "medium", "the default severity");
}

#[test]
fn a_silence_suppresses_and_its_expiry_releases_the_alert() {
    let mut rig = Rig::new(&format!(
        r#"
rules:
  - name: QueueBacklog
    expr: queue_depth > 1000
    group_by: [queue]
    severity: high
silences:
  - matchers: ['alertname="QueueBacklog"', 'queue=~"orders|billing"', 'severity=high']
    ends_at: "{}"
    comment: migration
    created_by: ops
"#,
        (t0() + chrono::Duration::minutes(10)).to_rfc3339()
    ));
    let mut sent = Vec::new();
    for t in (0..=900).step_by(60) {
        rig.to(t).send(vec![
            metric("queue_depth", 5000.0, &[("queue", "orders")]),
            metric("queue_depth", 5000.0, &[("queue", "emails")]),
        ]);
        sent.extend(
            rig.eval()
                .into_iter()
                .map(|a| (t, s(&a, "labels.queue"), a)),
        );
    }
    let seen: Vec<(i64, &str)> = sent.iter().map(|(t, q, _)| (*t, q.as_str())).collect();
    assert_eq!(
        seen,
        [(0, "emails"), (600, "orders")],
        "orders is silenced until 10m"
    );
    assert_eq!(
        f(&sent[1].2, "starts_at"),
        at(0),
        "it fired under the silence"
    );
    assert_eq!(s(&sent[1].2, "status"), "firing");
}

#[test]
fn inhibition_suppresses_targets_with_equal_labels() {
    let mut rig = Rig::new(
        r#"
rules:
  - name: HostDown
    expr: up == 0
    group_by: [host]
    severity: critical
  - name: HighLatency
    expr: latency_ms > 500
    group_by: [host]
    severity: medium
inhibit_rules:
  - source_matchers: [alertname=HostDown]
    target_matchers: [severity=medium]
    equal: [host]
"#,
    );
    rig.to(0).send(vec![
        metric("up", 0.0, &[("host", "a")]),
        metric("up", 1.0, &[("host", "b")]),
        metric("latency_ms", 900.0, &[("host", "a")]),
        metric("latency_ms", 900.0, &[("host", "b")]),
    ]);
    let sent = rig.eval();
    let names: Vec<(String, String)> = sent
        .iter()
        .map(|a| (s(a, "labels.alertname"), s(a, "labels.host")))
        .collect();
    assert_eq!(
        names,
        [
            ("HostDown".to_string(), "a".to_string()),
            ("HighLatency".to_string(), "b".to_string())
        ]
    );
    // Host a comes back: its latency alert is no longer inhibited.
    rig.to(60).send(vec![
        metric("up", 1.0, &[("host", "a")]),
        metric("latency_ms", 900.0, &[("host", "a")]),
        metric("latency_ms", 900.0, &[("host", "b")]),
    ]);
    let sent = rig.eval();
    let names: Vec<(String, String, String)> = sent
        .iter()
        .map(|a| {
            (
                s(a, "labels.alertname"),
                s(a, "labels.host"),
                s(a, "status"),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("HostDown".into(), "a".into(), "resolved".into()),
            ("HighLatency".into(), "a".into(), "firing".into())
        ]
    );
}

/// Alertmanager's rule: alerts that match both the source and the target side do not
/// inhibit each other (red team: both were muted, so neither page went out).
#[test]
fn alerts_on_both_sides_of_an_inhibit_rule_both_notify() {
    let mut rig = Rig::new(
        r#"
rules:
  - name: DiskFull
    expr: disk > 90
    group_by: [host, cluster]
    severity: medium
inhibit_rules:
  - source_matchers: ['severity=~"critical|medium"']
    target_matchers: ['severity=~"medium|low"']
    equal: [cluster]
"#,
    );
    rig.to(0).send(vec![
        metric("disk", 95.0, &[("host", "a"), ("cluster", "c1")]),
        metric("disk", 96.0, &[("host", "b"), ("cluster", "c1")]),
    ]);
    let mut hosts: Vec<String> = rig.eval().iter().map(|a| s(a, "labels.host")).collect();
    hosts.sort();
    assert_eq!(hosts, ["a", "b"]);
}

#[test]
fn the_error_rate_ratio_rule_fires_on_failed_over_sent() {
    let mut rig = Rig::new(
        r#"
rules:
  - name: MeshErrorRate
    expr: sum(messages_failed[1m]) / sum(messages_sent[1m]) > 0.05
    group_by: [service]
    severity: high
    annotations: { summary: "{{ labels.service }} fails {{ value }} of its messages" }
"#,
    );
    let svc = |name: &'static str| [("service", name)];
    // Every 10 s: checkout fails 3/100 then 12/100; payments never sends.
    for t in (0..60).step_by(10) {
        rig.to(t).send(vec![
            metric("messages_sent", 100.0, &svc("checkout")),
            metric("messages_failed", 3.0, &svc("checkout")),
            metric("messages_failed", 1.0, &svc("payments")),
        ]);
        assert!(rig.eval().is_empty(), "3% at {t} s; no division by zero");
    }
    for t in (60..120).step_by(10) {
        rig.to(t).send(vec![
            metric("messages_sent", 100.0, &svc("checkout")),
            metric("messages_failed", 12.0, &svc("checkout")),
        ]);
        let sent = rig.eval();
        // The window holds 6 samples: at 60 s, 1 of them at 12 → 27/600 = 4.5%; at
        // 70 s two → 36/600 = 6%.
        if t < 70 {
            assert!(sent.is_empty(), "{t}: {sent:?}");
        } else if t == 70 {
            assert_eq!(sent.len(), 1);
            assert_eq!(s(&sent[0], "labels.service"), "checkout");
            assert_eq!(f(&sent[0], "value"), Value::from_f64_or_zero(0.06));
            assert_eq!(
                s(&sent[0], "summary"),
                "checkout fails 0.06 of its messages"
            );
        } else {
            assert!(sent.is_empty(), "already notified");
        }
    }
}

#[test]
fn counts_of_matching_events_and_absence() {
    let mut rig = Rig::new(
        r#"
rules:
  - name: CriticalStorm
    expr: count(severity == "critical")[10m] >= 3
    group_by: [service]
  - name: HeartbeatMissing
    expr: absent(heartbeat[2m])
"#,
    );
    let alert = |service: &str, severity: &str| {
        event(serde_json::json!({"event_type": "alert", "service": service, "severity": severity}))
    };
    rig.to(0).send(vec![
        alert("db", "critical"),
        alert("db", "low"),
        alert("web", "critical"),
        metric("heartbeat", 1.0, &[]),
    ]);
    assert!(rig.eval().is_empty());
    rig.to(60)
        .send(vec![alert("db", "critical"), alert("db", "critical")]);
    let sent = rig.eval();
    assert_eq!(sent.len(), 1);
    assert_eq!(s(&sent[0], "labels.alertname"), "CriticalStorm");
    assert_eq!(s(&sent[0], "labels.service"), "db");
    assert_eq!(f(&sent[0], "value"), Value::from_f64_or_zero(3.0));
    // No heartbeat since 0 s: absent at 120 s.
    rig.to(119);
    assert!(rig.eval().is_empty());
    rig.to(120);
    let sent = rig.eval();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(s(&sent[0], "labels.alertname"), "HeartbeatMissing");
    assert_eq!(
        labels(&sent[0]),
        pairs(&[("alertname", "HeartbeatMissing")])
    );
    // The critical events leave the 10-minute window at 600 s (the first one).
    rig.to(600).send(vec![metric("heartbeat", 1.0, &[])]);
    let statuses: Vec<(String, String)> = rig
        .eval()
        .iter()
        .map(|a| (s(a, "labels.alertname"), s(a, "status")))
        .collect();
    assert_eq!(
        statuses,
        [
            ("CriticalStorm".into(), "resolved".into()),
            ("HeartbeatMissing".into(), "resolved".into())
        ]
    );
}

#[test]
fn a_restart_restores_pending_and_firing_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = r#"
rules:
  - name: HighCPU
    expr: cpu_usage > 80
    for: 5m
    group_by: [host]
"#;
    let a = [("host", "a")];
    let b = [("host", "b")];
    let mut rig = Rig::at_dir("restart", yaml, Some(dir.path()));
    let mut fired = Vec::new();
    for t in (0..=360).step_by(60) {
        let mut events = vec![metric("cpu_usage", 90.0, &a)];
        if t >= 180 {
            events.push(metric("cpu_usage", 90.0, &b));
        }
        rig.to(t).send(events);
        fired.extend(rig.eval());
    }
    assert_eq!(fired.len(), 1);
    assert_eq!(s(&fired[0], "labels.host"), "a");
    let fingerprint = s(&fired[0], "fingerprint");
    let clock = rig.clock.clone();
    drop(rig);
    assert!(dir.path().join("alert_rule/restart.json").exists());

    // The process comes back 1 minute later.
    clock.advance(Duration::from_secs(60));
    let (transform, telemetry) =
        build_with("restart", yaml, &clock, Some(dir.path())).expect("builds");
    let mut rig = Rig {
        clock,
        transform,
        telemetry,
        elapsed: 420,
    };
    rig.to(420).send(vec![
        metric("cpu_usage", 90.0, &a),
        metric("cpu_usage", 90.0, &b),
    ]);
    assert!(
        rig.eval().is_empty(),
        "a was notified already; b pending since 180 s"
    );
    rig.to(480).send(vec![
        metric("cpu_usage", 90.0, &a),
        metric("cpu_usage", 90.0, &b),
    ]);
    let sent = rig.eval();
    assert_eq!(
        sent.len(),
        1,
        "b fires 5m after 180 s, not 5m after the restart"
    );
    assert_eq!(s(&sent[0], "labels.host"), "b");
    assert_eq!(f(&sent[0], "starts_at"), at(480));
    rig.to(540).send(vec![
        metric("cpu_usage", 10.0, &a),
        metric("cpu_usage", 90.0, &b),
    ]);
    let sent = rig.eval();
    assert_eq!(sent.len(), 1);
    assert_eq!(s(&sent[0], "status"), "resolved");
    assert_eq!(s(&sent[0], "fingerprint"), fingerprint);
    assert_eq!(
        f(&sent[0], "starts_at"),
        at(300),
        "starts_at survived the restart"
    );
}

/// Prometheus keeps its samples and `for` state across a restart (in its TSDB); so
/// does `alert_rule` with rule files and a `data_dir`: a `for` goes on from where it
/// was, a range reaches back before the restart, and an alert whose condition ended
/// while sluice was down is resolved, once.
#[test]
fn a_restart_keeps_rule_files_samples_alerts_and_what_was_notified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n        for: 3m\n      - alert: Hot\n        expr: max_over_time(temp[10m]) > 50\n",
    )
    .expect("write");
    let yaml = format!(
        "rule_files: [{:?}]\nevaluation_interval: 1m\ngroup_wait: 0s\ngroup_interval: 1m\nrepeat_interval: 1h\nrules: []",
        rules.display().to_string()
    );
    let summary = |sent: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = sent
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    s(e, "labels.alertname"),
                    s(e, "labels.instance"),
                    s(e, "status")
                )
            })
            .collect();
        v.sort();
        v
    };
    let mut rig = Rig::at_dir("promrestart", &yaml, Some(dir.path()));
    let mut before = Vec::new();
    for minute in 0..=3 {
        let mut events = vec![
            metric("up", 0.0, &[("instance", "a")]),
            metric("temp", if minute == 0 { 60.0 } else { 10.0 }, &[]),
        ];
        if minute >= 2 {
            events.push(metric("up", 0.0, &[("instance", "b")]));
        }
        rig.to(minute * 60).send(events);
        before.extend(rig.eval());
    }
    assert_eq!(summary(&before), ["Down a firing", "Hot <null> firing"]);
    let clock = rig.clock.clone();
    drop(rig);
    assert!(
        dir.path()
            .join("alert_rule/promrestart.rules.json")
            .exists()
    );

    // Back a minute later: `a` recovered meanwhile, `b` is still down.
    clock.advance(Duration::from_secs(60));
    let (transform, telemetry) =
        build_with("promrestart", &yaml, &clock, Some(dir.path())).expect("builds");
    let mut rig = Rig {
        clock,
        transform,
        telemetry,
        elapsed: 240,
    };
    let now = |b: f64| {
        vec![
            metric("up", 1.0, &[("instance", "a")]),
            metric("up", b, &[("instance", "b")]),
            metric("temp", 10.0, &[]),
        ]
    };
    rig.to(240).send(now(0.0));
    assert_eq!(
        summary(&rig.eval()),
        ["Down a resolved"],
        "Hot still fires on the sample from before the restart, and was notified already"
    );
    rig.to(300).send(now(0.0));
    assert_eq!(
        summary(&rig.eval()),
        ["Down b firing"],
        "b fires 3m after it went down at 2m, not 3m after the restart"
    );
}

#[test]
fn a_hot_reload_keeps_unchanged_rules_and_resets_changed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = r#"
rules:
  - name: Kept
    expr: cpu_usage > 80
    for: 5m
  - name: Changed
    expr: cpu_usage > 80
    for: 5m
"#;
    let after = r#"
group_interval: 2m
rules:
  - name: Kept
    expr: cpu_usage > 80
    for: 5m
  - name: Changed
    expr: cpu_usage > 70
    for: 5m
"#;
    let mut old = Rig::at_dir("reload", before, Some(dir.path()));
    for t in [0, 120] {
        old.to(t).send(vec![metric("cpu_usage", 90.0, &[])]);
        assert!(old.eval().is_empty());
    }
    // The topology builds the replacement while the old instance still runs.
    let (transform, telemetry) =
        build_with("reload", after, &old.clock, Some(dir.path())).expect("builds");
    let mut new = Rig {
        clock: old.clock.clone(),
        transform,
        telemetry,
        elapsed: 120,
    };
    assert!(old.eval().is_empty(), "the old instance's final flush");
    drop(old);
    let mut sent = Vec::new();
    for t in (180..=600).step_by(60) {
        new.to(t).send(vec![metric("cpu_usage", 90.0, &[])]);
        sent.extend(
            new.eval()
                .into_iter()
                .map(|a| (t, s(&a, "labels.alertname"))),
        );
    }
    assert_eq!(
        sent,
        [(300, "Kept".to_string()), (480, "Changed".to_string())],
        "Kept stayed pending since 0 s; Changed started again at 180 s"
    );
}

#[test]
fn series_per_rule_are_bounded_by_max_series() {
    let mut rig = Rig::new(
        r#"
max_series: 2
rules:
  - name: Hot
    expr: temp > 50
    group_by: [room]
"#,
    );
    rig.to(0).send(
        ["a", "b", "c", "d"]
            .iter()
            .map(|r| metric("temp", 60.0, &[("room", r)]))
            .collect(),
    );
    let rooms: Vec<String> = rig.eval().iter().map(|a| s(a, "labels.room")).collect();
    assert_eq!(rooms, ["a", "b"]);
    let text = rig.metric_text();
    assert!(
        text.contains(r#"sluice_alert_rule_series_dropped_total{component_id="rules",component_kind="transform",component_type="alert_rule",rule="Hot"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"sluice_alert_rule_firing{component_id="rules",component_kind="transform",component_type="alert_rule",rule="Hot"} 2"#), "{text}");
}

#[test]
fn a_bad_expression_is_reported_with_the_component_rule_and_column() {
    let text = r#"
sources:
  in: { type: generator }
transforms:
  rules:
    type: alert_rule
    inputs: [in]
    rules:
      - name: Broken
        expr: avg(cpu_usage[5m) > 80
sinks:
  out: { type: console, inputs: [rules] }
"#;
    let mut p =
        parse_texts(&[(PathBuf::from("rules.yaml"), text.into())], |_| None).expect("parses");
    let e = p.validate().expect_err("invalid").to_string();
    assert!(e.contains("transforms.rules"), "{e}");
    assert!(e.contains("rule `Broken`"), "{e}");
    assert!(e.contains("column 17: expected `]`, found `)`"), "{e}");
    assert!(e.contains("rules.yaml"), "{e}");
    let unknown = build_with(
        "x",
        "rules: [{ name: A, expr: 'a > 1', fro: 5m }]",
        &ManualClock::default(),
        None,
    )
    .err()
    .expect("unknown field");
    assert!(unknown.contains("fro"), "{unknown}");
}

/// Silences through the API: POST, GET, DELETE, with the bearer token.
#[tokio::test]
async fn the_silences_api_adds_lists_and_deletes_silences_that_mute_alerts() {
    common::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = tokio_util::sync::CancellationToken::new();
    let (api, _) = sluice::api::serve(
        "127.0.0.1:0",
        Telemetry::new(),
        None,
        Some("sekret".into()),
        stop.clone(),
    )
    .await
    .expect("API");
    let client = reqwest::Client::new();
    let url = format!("http://{api}/silences");
    let denied = client.get(&url).send().await.expect("GET");
    assert_eq!(denied.status(), 401);
    let body = serde_json::json!({
        "matchers": ["alertname=ApiSilenced", "host=~db.*"],
        "ends_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        "comment": "upgrade",
        "created_by": "alice",
    });
    let bad = client
        .post(&url)
        .bearer_auth("sekret")
        .json(&serde_json::json!({"matchers": ["host"]}))
        .send()
        .await
        .expect("POST");
    assert_eq!(bad.status(), 400);
    let bad_text = bad.text().await.expect("body");
    assert!(bad_text.contains("no operator"), "{bad_text}");
    let created = client
        .post(&url)
        .bearer_auth("sekret")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status(), 200);
    let id = created.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let list: serde_json::Value = client
        .get(&url)
        .bearer_auth("sekret")
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let mine: Vec<&serde_json::Value> = list["silences"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|s| s["id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{list}");
    assert_eq!(mine[0]["comment"], "upgrade");
    assert_eq!(mine[0]["created_by"], "alice");
    assert_eq!(mine[0]["origin"], "api");

    // A component with a data_dir uses the process-wide silences.
    let mut rig = Rig::since(
        chrono::Utc::now(),
        "api_silenced",
        "rules: [{ name: ApiSilenced, expr: 'x > 1', group_by: [host] }]",
        Some(dir.path()),
    );
    rig.to(0).send(vec![
        metric("x", 5.0, &[("host", "db1")]),
        metric("x", 5.0, &[("host", "web1")]),
    ]);
    let hosts: Vec<String> = rig.eval().iter().map(|a| s(a, "labels.host")).collect();
    assert_eq!(hosts, ["web1"]);

    let deleted = client
        .delete(format!("{url}/{id}"))
        .bearer_auth("sekret")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status(), 200);
    let again = client
        .delete(format!("{url}/{id}"))
        .bearer_auth("sekret")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(again.status(), 200, "expiring twice is no error");
    let listed: serde_json::Value = client
        .get(url.as_str())
        .bearer_auth("sekret")
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let expired = listed["silences"]
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("still listed");
    assert_eq!(expired["status"], "expired");
    let missing = client
        .delete(format!("{url}/no-such-silence"))
        .bearer_auth("sekret")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(missing.status(), 404);
    // Later than the expiry on the wall clock.
    rig.to(600).send(vec![metric("x", 5.0, &[("host", "db1")])]);
    let hosts: Vec<String> = rig.eval().iter().map(|a| s(a, "labels.host")).collect();
    assert!(
        hosts.contains(&"db1".to_owned()),
        "released by expiring it: {hosts:?}"
    );
    stop.cancel();
}

/// In a running topology: the generator's metric events are consumed (acknowledged),
/// and the alerts reach a sink, from the evaluation timer or the final flush.
#[tokio::test]
async fn alerts_flow_to_a_sink_in_a_running_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = common::parse(
        r#"
sources:
  gen:
    type: generator
    count: 6
    format: '{"event_type": "metric", "name": "cpu_usage", "value": {{seq}}, "labels": {"host": "h{{seq}}"}}'
transforms:
  rules:
    type: alert_rule
    inputs: [gen]
    evaluation_interval: 10ms
    rules:
      - name: PipelineCPU
        expr: cpu_usage >= 3
        group_by: [host]
        annotations: { summary: "{{ labels.host }} at {{ value }}" }
"#,
    );
    let out = sluice::testing::CaptureSink::default();
    out.attach(&mut p, "out", &["rules"], 100);
    let options = sluice::topology::TopologyOptions {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let (mut topo, telemetry) = common::start_with(p, options).await;
    topo.finished().await;
    let mut summaries: Vec<String> = out.values().iter().map(|a| s(a, "summary")).collect();
    summaries.sort();
    assert_eq!(summaries, ["h3 at 3", "h4 at 4", "h5 at 5"]);
    assert!(out.values().iter().all(|a| s(a, "status") == "firing"));
    let rules = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "rules")
        .expect("rules");
    assert_eq!(rules.received.load(std::sync::atomic::Ordering::Relaxed), 6);
    assert!(dir.path().join("alert_rule/rules.json").exists());
}

/// A replacement that is built but never runs (its reload failed elsewhere) must not
/// take the state of the rules it lacks from the instance that keeps running.
#[test]
fn a_failed_reload_leaves_the_running_instance_its_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let both = "rules: [{ name: A, expr: 'x > 1', for: 5m }, { name: B, expr: 'x > 1', for: 5m }]";
    let only_a = "rules: [{ name: A, expr: 'x > 1', for: 5m }]";
    let mut old = Rig::at_dir("failed_reload", both, Some(dir.path()));
    old.to(0).send(vec![metric("x", 5.0, &[])]);
    assert!(old.eval().is_empty());
    let (unused, _) =
        build_with("failed_reload", only_a, &old.clock, Some(dir.path())).expect("builds");
    drop(unused);
    old.to(60).send(vec![metric("x", 5.0, &[])]);
    assert!(old.eval().is_empty());
    let clock = old.clock.clone();
    drop(old);
    clock.advance(Duration::from_secs(240));
    let (transform, telemetry) =
        build_with("failed_reload", both, &clock, Some(dir.path())).expect("builds");
    let mut rig = Rig {
        clock,
        transform,
        telemetry,
        elapsed: 300,
    };
    rig.send(vec![metric("x", 5.0, &[])]);
    let fired: Vec<String> = rig
        .eval()
        .iter()
        .map(|a| s(a, "labels.alertname"))
        .collect();
    assert_eq!(
        fired,
        ["A", "B"],
        "both pending since 0 s, across the restart"
    );
}

#[test]
fn severity_can_be_a_template_and_annotations_see_the_input_labels() {
    let mut rig = Rig::new(
        r#"
rules:
  - name: HighCPU
    expr: cpu_usage > 80
    group_by: [host]
    severity: "{{ labels.tier }}"
    annotations:
      summary: "CPU {{ value }}% on {{ labels.host }} in {{ labels.region }}"
"#,
    );
    rig.send(vec![
        metric(
            "cpu_usage",
            95.0,
            &[
                ("host", "db1"),
                ("region", "eu-west-1"),
                ("tier", "critical"),
            ],
        ),
        metric(
            "cpu_usage",
            91.0,
            &[("host", "web1"), ("region", "us-east-1"), ("tier", "gold")],
        ),
    ]);
    let mut fired = rig.eval();
    fired.sort_by_key(|a| s(a, "labels.host"));
    assert_eq!(fired.len(), 2);
    assert_eq!(s(&fired[0], "severity"), "critical");
    assert_eq!(s(&fired[0], "summary"), "CPU 95% on db1 in eu-west-1");
    assert_eq!(
        labels(&fired[0]),
        pairs(&[("alertname", "HighCPU"), ("host", "db1")]),
        "input labels are for templates; the alert's identity stays its group"
    );
    assert_eq!(
        s(&fired[1], "severity"),
        "medium",
        "`gold` is no severity: the default"
    );
    assert_eq!(s(&fired[1], "summary"), "CPU 91% on web1 in us-east-1");
}

/// A series of the agreement test: its name, labels and one value per minute (`None`:
/// no sample).
type Series = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<Option<f64>>,
);

fn agreement_series() -> Vec<Series> {
    let minutes = 0..16;
    let all = |f: &dyn Fn(i64) -> Option<f64>| minutes.clone().map(f).collect::<Vec<_>>();
    vec![
        (
            "http_requests_total",
            vec![("job", "api"), ("code", "200")],
            all(&|m| Some(100.0 * m as f64)),
        ),
        (
            "http_requests_total",
            vec![("job", "api"), ("code", "500")],
            all(&|m| Some(if m < 4 { 0.0 } else { 10.0 * (m - 3) as f64 })),
        ),
        (
            "up",
            vec![("job", "node"), ("instance", "a")],
            all(&|m| Some(if (3..7).contains(&m) { 0.0 } else { 1.0 })),
        ),
        (
            "up",
            vec![("job", "node"), ("instance", "b")],
            all(&|_| Some(1.0)),
        ),
        (
            "temp",
            vec![("room", "x")],
            all(&|m| Some(60.0 + 5.0 * (5 - (m - 5).abs()) as f64)),
        ),
        (
            "errors_total",
            vec![("svc", "pay")],
            all(&|m| {
                Some(if m < 4 {
                    2.0 * m as f64
                } else {
                    (3 * (m - 4) + 1) as f64
                })
            }),
        ),
        (
            "mem_bytes",
            vec![("job", "db"), ("instance", "p")],
            all(&|m| Some(1.5e9 + 1e8 * m as f64)),
        ),
        (
            "mem_bytes",
            vec![("job", "db"), ("instance", "q")],
            all(&|_| Some(1e9)),
        ),
        (
            "heartbeat",
            vec![("job", "cron")],
            all(&|m| (m <= 5).then_some(1.0)),
        ),
    ]
}

const AGREEMENT_RULES: &str = r#"groups:
  - name: agreement
    rules:
      - alert: HighErrorRate
        expr: sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (job) (rate(http_requests_total[5m])) > 0.05
        for: 2m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.job }} fails {{ $value | humanizePercentage }} of requests"
      - alert: InstanceDown
        expr: up == 0
        for: 1m
        annotations:
          summary: "{{ $labels.instance }} of {{ $labels.job }} is down"
      - alert: HighTemp
        expr: avg_over_time(temp[3m]) > 72
        labels:
          severity: warning
        annotations:
          summary: '{{ $labels.room }} averages {{ printf "%.1f" $value }}'
      - alert: ErrorBurst
        expr: increase(errors_total[5m]) > 6
        annotations:
          description: "{{ $value | humanize }} errors in 5m"
      - alert: MemoryHigh
        expr: max by (job) (mem_bytes) > 2e9
        annotations:
          description: "{{ humanize1024 $value }}B on {{ .Labels.job }}"
      - alert: CronSilent
        expr: absent(heartbeat{job="cron"})
        for: 2m
      - record: instance:up_ok
        expr: up == 1
        labels:
          job: ""
      - alert: RecordedUp
        expr: instance:up_ok > 0
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: JobDegraded
        expr: job:up:sum < 2
        keep_firing_for: 2m
        annotations:
          summary: "{{ $labels.job }} has {{ $value }} of 2 up"
      - alert: CronSilentDuplicated
        expr: absent(heartbeat{job="cron",job="cron",env="prod",zone!="a"})
      - alert: InstanceDownFiring
        expr: ALERTS{alertname="InstanceDown",alertstate="firing"}
        annotations:
          summary: '{{ printf "%d %s %d" 3 $labels.instance $value }} {{ 123456789 }} {{ 1e3 }}'
          description: '{{ toUpper "straße" }} {{ title "o''neil ǆ" }} {{ if gt $value 0.0 }}x{{ end }}'
      - alert: SomethingPending
        expr: count(ALERTS{alertstate="pending"}) > 0
      - alert: JobDegradedSince
        expr: ALERTS_FOR_STATE{alertname="JobDegraded"} > 0
"#;

/// sluice evaluates a Prometheus rule file on the same series as `promtool test rules`;
/// the alerts sluice has firing at every minute become the test's expectations, and
/// promtool must agree with every one of them.
#[test]
fn prometheus_rule_files_agree_with_promtool_test_rules() {
    use std::collections::BTreeMap;
    if !common::tool_or_skip("promtool", "prometheus") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, AGREEMENT_RULES).expect("write");
    let check = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let mut rig = Rig::new(&format!(
        "rule_files: [{:?}]\nevaluation_interval: 1m\ngroup_wait: 0s\ngroup_interval: 1m\nrepeat_interval: 1m\nrules: []",
        rules.display().to_string()
    ));
    let series = agreement_series();
    // Firing alerts by fingerprint: alertname, labels, annotations.
    type Firing = BTreeMap<String, (String, BTreeMap<String, String>, BTreeMap<String, String>)>;
    let mut firing: Firing = BTreeMap::new();
    let mut per_minute: Vec<Firing> = Vec::new();
    for minute in 0..16usize {
        rig.to(minute as i64 * 60);
        let events: Vec<Event> = series
            .iter()
            .filter_map(|(name, labels, values)| Some(metric(name, values[minute]?, labels)))
            .collect();
        rig.send(events);
        for alert in rig.eval() {
            let fp = s(&alert, "fingerprint");
            if s(&alert, "status") == "resolved" {
                firing.remove(&fp);
                continue;
            }
            let mut labels: BTreeMap<String, String> = labels(&alert).into_iter().collect();
            let name = labels.remove("alertname").expect("alertname");
            let mut annotations = BTreeMap::new();
            for key in ["summary", "description"] {
                if f(&alert, key) != Value::Null {
                    annotations.insert(key.to_owned(), s(&alert, key));
                }
            }
            firing.insert(fp, (name, labels, annotations));
        }
        per_minute.push(firing.clone());
    }
    let names = [
        "HighErrorRate",
        "InstanceDown",
        "HighTemp",
        "ErrorBurst",
        "MemoryHigh",
        "CronSilent",
        "JobDegraded",
        "RecordedUp",
        "CronSilentDuplicated",
        "InstanceDownFiring",
        "SomethingPending",
        "JobDegradedSince",
    ];
    for name in names {
        assert!(
            per_minute
                .iter()
                .any(|m| m.values().any(|(n, _, _)| n == name)),
            "{name} never fired in sluice: {per_minute:#?}"
        );
    }
    // The promtool test: the same series, and sluice's firing alerts as expectations.
    let yaml = |v: &str| serde_json::to_string(v).expect("json");
    let mut t = String::from(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
    );
    for (name, labels, values) in &series {
        let sel: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let vals: Vec<String> = values
            .iter()
            .map(|v| v.map_or("_".into(), |v| format!("{v}")))
            .collect();
        t.push_str(&format!(
            "      - series: {}\n        values: {}\n",
            yaml(&format!("{name}{{{}}}", sel.join(","))),
            yaml(&vals.join(" "))
        ));
    }
    t.push_str("    alert_rule_test:\n");
    for (minute, state) in per_minute.iter().enumerate() {
        for name in names {
            t.push_str(&format!(
                "      - eval_time: {minute}m\n        alertname: {name}\n        exp_alerts:"
            ));
            let alerts: Vec<_> = state.values().filter(|(n, _, _)| n == name).collect();
            if alerts.is_empty() {
                t.push_str(" []\n");
                continue;
            }
            t.push('\n');
            for (_, labels, annotations) in alerts {
                let map = |m: &BTreeMap<String, String>| -> String {
                    let pairs: Vec<String> =
                        m.iter().map(|(k, v)| format!("{k}: {}", yaml(v))).collect();
                    format!("{{{}}}", pairs.join(", "))
                };
                t.push_str(&format!(
                    "          - exp_labels: {}\n            exp_annotations: {}\n",
                    map(labels),
                    map(annotations)
                ));
            }
        }
    }
    let test_file = dir.path().join("rules_test.yml");
    std::fs::write(&test_file, &t).expect("write");
    let run = std::process::Command::new("promtool")
        .args(["test", "rules"])
        .arg(&test_file)
        .current_dir(dir.path())
        .output()
        .expect("promtool");
    assert!(
        run.status.success(),
        "promtool disagrees with sluice:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Rules are matched across a reload by name and labels (Prometheus's `CopyState`):
/// adding a same-named rule above one changes nothing for it; a rule that is gone
/// resolves what it had notified, so no page stays open for it (red team: the first
/// re-fired, the second never resolved).
#[test]
fn a_reload_moves_alerts_by_name_and_labels_and_resolves_those_of_removed_rules() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("rules.yml");
    let rule = |severity: &str| {
        format!(
            "      - alert: HighCPU\n        expr: cpu > 80\n        labels: {{ severity: {severity} }}\n"
        )
    };
    let write = |rules: &[String]| {
        std::fs::write(
            &file,
            format!("groups:\n  - name: g\n    rules:\n{}", rules.concat()),
        )
        .expect("write");
    };
    write(&[rule("warning")]);
    let yaml = format!(
        "rule_files: [{:?}]\nevaluation_interval: 1m\nrepeat_interval: 1h",
        file.display().to_string()
    );
    let statuses = |sent: Vec<Value>| -> Vec<String> {
        let mut v: Vec<String> = sent
            .iter()
            .map(|a| format!("{} {}", s(a, "labels.severity"), s(a, "status")))
            .collect();
        v.sort();
        v
    };
    let mut old = Rig::at_dir("moved", &yaml, None);
    old.send(vec![metric("cpu", 90.0, &[])]);
    assert_eq!(statuses(old.eval()), ["warning firing"]);

    write(&[rule("critical"), rule("warning")]);
    let mut new = Rig::since(t0() + chrono::Duration::seconds(60), "moved", &yaml, None);
    drop(old);
    new.send(vec![metric("cpu", 90.0, &[])]);
    assert_eq!(
        statuses(new.eval()),
        ["critical firing"],
        "the warning alert kept its state; only the new rule notifies"
    );

    write(&[rule("critical")]);
    let mut last = Rig::since(t0() + chrono::Duration::seconds(120), "moved", &yaml, None);
    drop(new);
    last.send(vec![metric("cpu", 90.0, &[])]);
    assert_eq!(statuses(last.eval()), ["warning resolved"]);
    last.to(60).send(vec![metric("cpu", 90.0, &[])]);
    assert!(last.eval().is_empty(), "resolved once");
}

/// A reload (a new instance built while the old one runs) keeps what Prometheus rules
/// know: samples, and each rule's alerts by group and name, so nothing is notified
/// twice and a resolution still comes, also for a rule that was edited.
#[test]
fn a_reload_keeps_the_alerts_of_prometheus_rules_by_name() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("rules.yml");
    let write = |down: &str| {
        let text = format!(
            "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: {down}\n      - alert: Flat\n        expr: min_over_time(up[10m]) == 0\n"
        );
        std::fs::write(&file, text).expect("write");
    };
    write("up == 0");
    let yaml = format!(
        "rule_files: [{:?}]\nevaluation_interval: 1m\nrepeat_interval: 1h",
        file.display().to_string()
    );
    let mut old = Rig::at_dir("reloaded", &yaml, None);
    old.send(vec![metric("up", 0.0, &[("instance", "a")])]);
    let fired = old.eval();
    let names: Vec<String> = fired.iter().map(|a| s(a, "labels.alertname")).collect();
    assert_eq!(names.len(), 2, "{fired:?}");
    assert!(names.contains(&"Down".to_owned()) && names.contains(&"Flat".to_owned()));
    let down = fired
        .iter()
        .find(|a| s(a, "labels.alertname") == "Down")
        .map(|a| s(a, "fingerprint"))
        .expect("Down fired");

    // `validate` builds an instance of the new pipeline and drops it at once.
    drop(build_with("reloaded", &yaml, &ManualClock::default(), None).expect("validates"));
    let mut new = Rig::since(
        t0() + chrono::Duration::seconds(60),
        "reloaded",
        &yaml,
        None,
    );
    drop(old);
    assert!(
        new.eval().is_empty(),
        "both alerts were notified before the reload"
    );
    new.to(60)
        .send(vec![metric("up", 1.0, &[("instance", "a")])]);
    let after = new.eval();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(
        (s(&after[0], "status"), s(&after[0], "fingerprint")),
        ("resolved".to_owned(), down),
        "the old instance's alert resolves in the new one"
    );
    // `Flat` (the least of 10 minutes is 0) still reads the sample from before the
    // reload, so it stays firing: samples were kept.

    new.to(120)
        .send(vec![metric("up", 0.0, &[("instance", "a")])]);
    let again: Vec<String> = new.eval().iter().map(|a| s(a, "status")).collect();
    assert_eq!(again, ["firing"], "Down fires again");

    // An edited rule keeps its alerts, as Prometheus's reload does (`CopyState`): no
    // second notification while it still fires, and a resolve once it no longer does.
    let reload = |to: i64, old: Rig| {
        let new = Rig::since(
            t0() + chrono::Duration::seconds(to),
            "reloaded",
            &yaml,
            None,
        );
        drop(old);
        new
    };
    write("up < 1");
    let mut changed = reload(180, new);
    changed.send(vec![metric("up", 0.0, &[("instance", "a")])]);
    assert!(changed.eval().is_empty(), "still firing, notified already");
    write("up > 5");
    let mut changed = reload(240, changed);
    changed.send(vec![metric("up", 0.0, &[("instance", "a")])]);
    let after: Vec<(String, String)> = changed
        .eval()
        .iter()
        .map(|a| (s(a, "labels.alertname"), s(a, "status")))
        .collect();
    assert_eq!(after, [("Down".to_owned(), "resolved".to_owned())]);
}
