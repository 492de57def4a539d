//! `incident` scenarios on a manual clock: the transform is built from pipeline YAML and
//! driven directly (`process`, then `flush` as the topology's timer does), so every
//! assertion is about exact notifications at exact times. The scenarios are the ones an
//! on-call engineer meets: flapping, stray resolves, one outage from two vendors,
//! vendor retries, restarts, silence.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice::clock::ManualClock;
use sluice::component::{Transform, TransformContext, TransformOutputs};
use sluice::config::parse_texts;
use sluice::event::{BatchAck, Event, EventStatus, SourceId};
use sluice::telemetry::{ComponentKind, Telemetry};
use vrl::value::Value;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

struct Rig {
    clock: ManualClock,
    transform: Option<Box<dyn Transform>>,
    telemetry: Arc<Telemetry>,
    elapsed: i64,
    yaml: String,
    data_dir: Option<PathBuf>,
    /// With the shared store: its schema (dropped with the rig) and data dir.
    stored: Option<(String, tempfile::TempDir)>,
}

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Whether the machine's PostgreSQL is reachable; under CI=true it must be.
fn postgres_up() -> bool {
    match std::net::TcpStream::connect("127.0.0.1:5432") {
        Ok(_) => true,
        Err(e) => {
            sluice::testing::skip(&format!("PostgreSQL unreachable at 127.0.0.1:5432: {e}"));
            false
        }
    }
}

fn on_postgres<T>(f: impl AsyncFnOnce(&tokio_postgres::Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(PG, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        f(&client).await
    })
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.transform = None;
        if let Some((schema, _)) = &self.stored {
            on_postgres(async |c| {
                let _ = c
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await;
            });
        }
    }
}

fn build(
    yaml: &str,
    clock: &ManualClock,
    data_dir: Option<&Path>,
) -> Result<(Box<dyn Transform>, Arc<Telemetry>), String> {
    let yaml = if yaml == "{}" { "" } else { yaml };
    let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!(
        "sources:\n  in: {{ type: generator }}\ntransforms:\n  inc:\n    type: incident\n    inputs: [in]\n{indented}"
    );
    let p = parse_texts(&[(PathBuf::from("incidents.yaml"), text)], |_| None)
        .map_err(|e| e.to_string())?;
    let telemetry = Telemetry::new();
    let cx = TransformContext {
        file_notices: Default::default(),
        id: Arc::from("inc"),
        metrics: telemetry.component("inc", ComponentKind::Transform, "incident"),
        clock: Arc::new(clock.clone()),
        data_dir: data_dir.map(Path::to_path_buf),
    };
    let t = p.transforms["inc"]
        .config
        .build(&cx)
        .map_err(|e| e.to_string())?;
    Ok((t, telemetry))
}

impl Rig {
    fn new(yaml: &str) -> Self {
        Self::with_dir(yaml, None)
    }

    fn with_dir(yaml: &str, data_dir: Option<&Path>) -> Self {
        let clock = ManualClock::starting_at(t0());
        let (transform, telemetry) = build(yaml, &clock, data_dir).expect("builds");
        Self {
            clock,
            transform: Some(transform),
            telemetry,
            elapsed: 0,
            yaml: yaml.to_owned(),
            data_dir: data_dir.map(Path::to_path_buf),
            stored: None,
        }
    }

    /// The same options, with incidents in a fresh schema of the shared store.
    fn stored(yaml: &str) -> Self {
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        Self::sharing(yaml, &schema)
    }

    /// Another aggregator on the store schema `schema`.
    fn sharing(yaml: &str, schema: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "{}\nstore: {{ postgres: {{ url: \"{PG}\", schema: {schema} }} }}",
            if yaml == "{}" { "" } else { yaml }
        );
        let mut rig = Self::with_dir(&yaml, Some(dir.path()));
        rig.stored = Some((schema.to_owned(), dir));
        rig
    }

    /// Drops the instance (as a stop does) and builds a new one on the same data dir.
    fn restart(&mut self) {
        self.transform = None;
        let (t, telemetry) =
            build(&self.yaml, &self.clock, self.data_dir.as_deref()).expect("builds");
        self.transform = Some(t);
        self.telemetry = telemetry;
    }

    fn to(&mut self, secs: i64) -> &mut Self {
        assert!(secs >= self.elapsed, "time goes forward");
        self.clock
            .advance(Duration::from_secs((secs - self.elapsed) as u64));
        self.elapsed = secs;
        self
    }

    /// Sends events; returns (notifications, unmatched).
    fn send_all(&mut self, events: Vec<Event>) -> (Vec<Event>, Vec<Event>) {
        let mut out = TransformOutputs::new(1);
        self.transform
            .as_mut()
            .expect("built")
            .process(events, &mut out);
        let unmatched = out.named.pop().expect("unmatched output");
        (out.default, unmatched)
    }

    fn send(&mut self, events: Vec<Event>) -> Vec<Value> {
        let (out, unmatched) = self.send_all(events);
        assert!(unmatched.is_empty(), "{unmatched:?}");
        delivered(out)
    }

    fn tick(&mut self) -> Vec<Value> {
        let mut out = TransformOutputs::new(1);
        self.transform.as_mut().expect("built").flush(&mut out);
        delivered(out.default)
    }

    /// A timer pass whose notifications the sinks lose (dropped, never settled).
    fn tick_lost(&mut self) -> usize {
        let mut out = TransformOutputs::new(1);
        self.transform.as_mut().expect("built").flush(&mut out);
        out.default.len()
    }

    fn metrics(&self) -> String {
        self.telemetry.render_prometheus()
    }
}

/// The notifications' values, settled as a sink that delivered them would.
fn delivered(events: Vec<Event>) -> Vec<Value> {
    events
        .into_iter()
        .map(|e| {
            let v = e.value().clone();
            e.settle(EventStatus::Delivered);
            v
        })
        .collect()
}

fn alert(vendor: &str, fingerprint: &str, status: &str, severity: &str) -> Event {
    Event::new(
        serde_json::from_value(serde_json::json!({
            "event_type": "alert", "source": vendor, "status": status, "severity": severity,
            "fingerprint": fingerprint, "service": "checkout", "summary": format!("{vendor}: checkout is down"),
            "labels": { "alertname": "CheckoutDown", "env": "prod" },
            "url": "https://grafana.example/d/1", "raw": { "big": "payload" },
        }))
        .expect("value"),
        SourceId::intern("in"),
        Utc::now(),
    )
}

fn firing(fp: &str) -> Event {
    alert("grafana", fp, "firing", "high")
}

fn resolved(fp: &str) -> Event {
    alert("grafana", fp, "resolved", "high")
}

fn s(v: &Value, path: &str) -> String {
    let p = vrl::path::parse_value_path(path).expect("path");
    v.get(&p)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn i(v: &Value, path: &str) -> i64 {
    let p = vrl::path::parse_value_path(path).expect("path");
    match v.get(&p) {
        Some(Value::Integer(n)) => *n,
        other => panic!("{path} is not an integer: {other:?}"),
    }
}

fn actions(vs: &[Value]) -> Vec<String> {
    vs.iter().map(|v| s(v, "action")).collect()
}

fn metric(text: &str, outcome: &str) -> f64 {
    let line = format!(
        "sluice_incident_alerts_total{{component_id=\"inc\",component_kind=\"transform\",component_type=\"incident\",outcome=\"{outcome}\"}}"
    );
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&line)
                .map(|v| v.trim().parse::<f64>().expect("number"))
        })
        .unwrap_or_else(|| panic!("no {line} in\n{text}"))
}

#[test]
fn a_repeated_firing_is_one_page_and_the_resolve_closes_it() {
    repeated_firing(Rig::new);
}

#[test]
fn a_repeated_firing_is_one_page_and_the_resolve_closes_it_with_the_store() {
    if postgres_up() {
        repeated_firing(Rig::stored);
    }
}

fn repeated_firing(new: fn(&str) -> Rig) {
    let mut rig = new("{}");
    let opened = rig.send(vec![firing("fp1")]);
    assert_eq!(actions(&opened), ["opened"]);
    let page = &opened[0];
    let id = s(page, "incident_id");
    assert_eq!(id.len(), 36, "a uuid: {id}");
    assert_eq!(s(page, "status"), "firing");
    assert_eq!(s(page, "incident_key"), "fp1");
    assert_eq!(s(page, "summary"), "grafana: checkout is down");
    assert_eq!(s(page, "labels.alertname"), "CheckoutDown");
    assert_eq!(
        s(page, "raw"),
        "",
        "the vendor's raw payload is not carried"
    );
    assert_eq!(i(page, "count"), 1);
    for t in 1..=5 {
        assert!(
            rig.to(t * 10).send(vec![firing("fp1")]).is_empty(),
            "repeat {t}"
        );
    }
    let closed = rig.to(100).send(vec![resolved("fp1")]);
    assert_eq!(actions(&closed), ["resolved"]);
    assert_eq!(s(&closed[0], "incident_id"), id);
    assert_eq!(s(&closed[0], "status"), "resolved");
    assert_eq!(i(&closed[0], "count"), 6);
    assert_eq!(s(&closed[0], "first_seen"), "2026-03-01T12:00:00Z");
    assert_eq!(s(&closed[0], "last_seen"), "2026-03-01T12:01:40Z");
    let m = rig.metrics();
    assert_eq!(metric(&m, "opened"), 1.0);
    assert_eq!(metric(&m, "repeat"), 5.0);
    assert_eq!(metric(&m, "resolved"), 1.0);
}

#[test]
fn flapping_five_times_is_one_incident_and_a_real_refire_after_the_quiet_is_a_new_page() {
    flapping(Rig::new);
}

#[test]
fn flapping_five_times_is_one_incident_and_a_real_refire_after_the_quiet_is_a_new_page_with_the_store()
 {
    if postgres_up() {
        flapping(Rig::stored);
    }
}

fn flapping(new: fn(&str) -> Rig) {
    let mut rig = new("resolve_hold: 60s\nflap_window: 0s");
    let first = rig.send(vec![firing("fp")]);
    assert_eq!(actions(&first), ["opened"]);
    let id = s(&first[0], "incident_id");
    let mut t = 0;
    for _ in 0..5 {
        t += 5;
        assert!(
            rig.to(t).send(vec![resolved("fp")]).is_empty(),
            "held at {t}"
        );
        assert!(rig.tick().is_empty());
        t += 5;
        assert!(rig.to(t).send(vec![firing("fp")]).is_empty(), "flap at {t}");
    }
    t += 5;
    assert!(rig.to(t).send(vec![resolved("fp")]).is_empty());
    assert!(
        rig.to(t + 59).tick().is_empty(),
        "not quiet for resolve_hold yet"
    );
    let closed = rig.to(t + 60).tick();
    assert_eq!(actions(&closed), ["resolved"]);
    assert_eq!(s(&closed[0], "incident_id"), id);
    assert_eq!(i(&closed[0], "flaps"), 5);
    // 65 s after the flapping ended, it fires for real: a new page (the dedupe idiom
    // swallowed this one).
    let again = rig.to(t + 65).send(vec![firing("fp")]);
    assert_eq!(actions(&again), ["opened"]);
    assert_ne!(s(&again[0], "incident_id"), id, "a new incident");
}

#[test]
fn within_the_flap_window_a_refire_reopens_the_same_incident() {
    flap_window(Rig::new);
}

#[test]
fn within_the_flap_window_a_refire_reopens_the_same_incident_with_the_store() {
    if postgres_up() {
        flap_window(Rig::stored);
    }
}

fn flap_window(new: fn(&str) -> Rig) {
    let mut rig = new("flap_window: 2m");
    let id = s(&rig.send(vec![firing("fp")])[0], "incident_id");
    assert_eq!(
        actions(&rig.to(10).send(vec![resolved("fp")])),
        ["resolved"]
    );
    let reopened = rig.to(70).send(vec![firing("fp")]);
    assert_eq!(actions(&reopened), ["reopened"]);
    assert_eq!(s(&reopened[0], "incident_id"), id);
    assert_eq!(
        actions(&rig.to(80).send(vec![resolved("fp")])),
        ["resolved"]
    );
    rig.to(200).tick();
    let fresh = rig.to(201).send(vec![firing("fp")]);
    assert_eq!(actions(&fresh), ["opened"]);
    assert_ne!(s(&fresh[0], "incident_id"), id);
}

#[test]
fn a_stray_resolve_is_dropped_and_the_real_fire_and_resolve_both_go_out() {
    stray_resolve(Rig::new);
}

#[test]
fn a_stray_resolve_is_dropped_and_the_real_fire_and_resolve_both_go_out_with_the_store() {
    if postgres_up() {
        stray_resolve(Rig::stored);
    }
}

fn stray_resolve(new: fn(&str) -> Rig) {
    let mut rig = new("{}");
    assert!(rig.send(vec![resolved("fp")]).is_empty());
    assert_eq!(actions(&rig.to(5).send(vec![firing("fp")])), ["opened"]);
    assert_eq!(actions(&rig.to(9).send(vec![resolved("fp")])), ["resolved"]);
    assert!(
        rig.to(10).send(vec![resolved("fp")]).is_empty(),
        "a duplicate resolve"
    );
    let m = rig.metrics();
    assert_eq!(metric(&m, "stray_resolve"), 1.0);
    assert_eq!(metric(&m, "duplicate_resolve"), 1.0);
}

#[test]
fn one_outage_from_two_vendors_is_one_incident_keyed_by_alertname_and_service() {
    let mut rig = Rig::new("key: \"{{ labels.alertname }}/{{ service }}\"");
    let first = rig.send(vec![alert("grafana", "g-123", "firing", "high")]);
    assert_eq!(actions(&first), ["opened"]);
    // 1.5 s later Alertmanager reports it with its own fingerprint and a higher severity.
    rig.clock.advance(Duration::from_millis(1500));
    let second = rig.send(vec![alert("alertmanager", "am-9", "firing", "critical")]);
    assert_eq!(
        actions(&second),
        ["updated"],
        "an escalation, not a second page"
    );
    assert_eq!(s(&second[0], "incident_id"), s(&first[0], "incident_id"));
    assert_eq!(s(&second[0], "severity"), "critical");
    assert_eq!(s(&second[0], "reason"), "severity");
    assert_eq!(s(&second[0], "vendors"), r#"["alertmanager","grafana"]"#);
    assert_eq!(s(&second[0], "incident_key"), "CheckoutDown/checkout");
    // A lower severity later does not lower the incident's.
    assert!(
        rig.send(vec![alert("grafana", "g-123", "firing", "low")])
            .is_empty()
    );
    // Grafana's alert resolves, Alertmanager's still fires: the incident stays open.
    assert!(
        rig.to(60)
            .send(vec![alert("grafana", "g-123", "resolved", "low")])
            .is_empty()
    );
    assert_eq!(metric(&rig.metrics(), "partial_resolve"), 1.0);
    let closed = rig
        .to(90)
        .send(vec![alert("alertmanager", "am-9", "resolved", "critical")]);
    assert_eq!(actions(&closed), ["resolved"], "the last alert resolved");
    assert_eq!(s(&closed[0], "severity"), "critical");
}

#[test]
fn alerts_without_a_status_or_a_key_field_go_to_unmatched() {
    let mut rig = Rig::new("key: \"{{ labels.team }}\"");
    let mut log = firing("fp");
    if let Value::Object(o) = log.value_mut() {
        o.remove("status");
    }
    let (out, unmatched) = rig.send_all(vec![log, firing("fp")]);
    assert!(out.is_empty());
    assert_eq!(unmatched.len(), 2);
    assert_eq!(metric(&rig.metrics(), "unmatched"), 2.0);
}

#[test]
fn the_page_carries_the_senders_acknowledgement_and_repeats_settle_delivered() {
    let mut rig = Rig::new("{}");
    let (ack, rx) = BatchAck::with_receiver(1, None);
    let (out, _) = rig.send_all(vec![firing("fp").with_ack(ack.event_ack())]);
    drop(ack);
    assert_eq!(out.len(), 1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut rx = Box::pin(rx.wait());
    // Not settled until the page is: the sender's 200 waits for PagerDuty.
    assert!(runtime.block_on(async {
        tokio::time::timeout(Duration::from_millis(20), &mut rx)
            .await
            .is_err()
    }));
    for e in out {
        e.settle(EventStatus::Errored);
    }
    assert_eq!(runtime.block_on(rx), EventStatus::Errored);

    let (ack, rx) = BatchAck::with_receiver(1, None);
    let (out, _) = rig.send_all(vec![firing("fp").with_ack(ack.event_ack())]);
    drop(ack);
    assert!(out.is_empty());
    assert_eq!(
        runtime.block_on(rx.wait()),
        EventStatus::Delivered,
        "a repeat is taken in"
    );
}

#[test]
fn group_wait_gathers_a_groups_changes_and_group_interval_spaces_them() {
    group_wait(Rig::new);
}

#[test]
fn group_wait_gathers_a_groups_changes_and_group_interval_spaces_them_with_the_store() {
    if postgres_up() {
        group_wait(Rig::stored);
    }
}

fn group_wait(new: fn(&str) -> Rig) {
    let mut rig = new("group_by: [service]\ngroup_wait: 30s\ngroup_interval: 5m");
    assert!(
        rig.send(vec![firing("a")]).is_empty(),
        "waits for the group"
    );
    assert!(rig.to(10).send(vec![firing("b")]).is_empty());
    assert!(rig.to(29).tick().is_empty());
    let first = rig.to(30).tick();
    assert_eq!(actions(&first), ["opened", "opened"]);
    assert_eq!(
        first
            .iter()
            .map(|v| s(v, "incident_key"))
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(
        rig.to(40).send(vec![resolved("a")]).is_empty(),
        "within group_interval"
    );
    assert!(rig.to(329).tick().is_empty());
    let second = rig.to(330).tick();
    assert_eq!(actions(&second), ["resolved"]);
    assert_eq!(s(&second[0], "incident_key"), "a");
}

#[test]
fn an_incident_that_opens_and_resolves_inside_group_wait_sends_nothing() {
    inside_group_wait(Rig::new);
}

#[test]
fn an_incident_that_opens_and_resolves_inside_group_wait_sends_nothing_with_the_store() {
    if postgres_up() {
        inside_group_wait(Rig::stored);
    }
}

fn inside_group_wait(new: fn(&str) -> Rig) {
    let mut rig = new("group_wait: 30s");
    assert!(rig.send(vec![firing("blip")]).is_empty());
    assert!(rig.to(5).send(vec![resolved("blip")]).is_empty());
    assert!(rig.to(30).tick().is_empty());
}

#[test]
fn resolve_after_closes_a_silent_incident_and_repeat_interval_reannounces_an_open_one() {
    resolve_after(Rig::new);
}

#[test]
fn resolve_after_closes_a_silent_incident_and_repeat_interval_reannounces_an_open_one_with_the_store()
 {
    if postgres_up() {
        resolve_after(Rig::stored);
    }
}

fn resolve_after(new: fn(&str) -> Rig) {
    let mut rig = new("resolve_after: 10m\nrepeat_interval: 4m");
    assert_eq!(actions(&rig.send(vec![firing("fp")])), ["opened"]);
    let again = rig.to(240).tick();
    assert_eq!(actions(&again), ["updated"]);
    assert_eq!(s(&again[0], "reason"), "repeat_interval");
    assert_eq!(actions(&rig.to(480).tick()), ["updated"]);
    let closed = rig.to(600).tick();
    assert_eq!(actions(&closed), ["resolved"]);
    assert_eq!(s(&closed[0], "reason"), "resolve_after");
    assert_eq!(s(&closed[0], "ends_at"), "2026-03-01T12:10:00Z");
}

#[test]
fn a_restart_mid_incident_keeps_its_id_so_the_resolve_closes_the_same_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rig = Rig::with_dir("{}", Some(dir.path()));
    let id = s(&rig.send(vec![firing("fp")])[0], "incident_id");
    rig.to(30).restart();
    assert!(
        rig.send(vec![firing("fp")]).is_empty(),
        "still open after the restart"
    );
    let closed = rig.to(60).send(vec![resolved("fp")]);
    assert_eq!(actions(&closed), ["resolved"]);
    assert_eq!(s(&closed[0], "incident_id"), id);
    assert_eq!(i(&closed[0], "count"), 2);
}

#[test]
fn a_change_waiting_for_its_group_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rig = Rig::with_dir("group_wait: 30s", Some(dir.path()));
    assert!(rig.send(vec![firing("fp")]).is_empty());
    rig.to(10).restart();
    assert_eq!(actions(&rig.to(30).tick()), ["opened"]);
}

#[test]
fn max_incidents_bounds_new_keys_and_open_ones_still_resolve() {
    max_incidents(Rig::new);
}

#[test]
fn max_incidents_bounds_new_keys_and_open_ones_still_resolve_with_the_store() {
    if postgres_up() {
        max_incidents(Rig::stored);
    }
}

fn max_incidents(new: fn(&str) -> Rig) {
    let mut rig = new("max_incidents: 2");
    assert_eq!(
        rig.send(vec![firing("a"), firing("b"), firing("c")]).len(),
        2
    );
    assert_eq!(metric(&rig.metrics(), "over_limit"), 1.0);
    assert_eq!(actions(&rig.send(vec![resolved("a")])), ["resolved"]);
    // Its delivery is confirmed at the next timer pass.
    rig.to(1).tick();
    assert_eq!(
        actions(&rig.to(1).send(vec![firing("c")])),
        ["opened"],
        "a resolved incident makes room"
    );
    assert_eq!(
        rig.to(2).send(vec![firing("d")]).len(),
        0,
        "full of open incidents again"
    );
    assert_eq!(metric(&rig.metrics(), "over_limit"), 2.0);
}

#[test]
fn key_source_computes_the_key_with_vrl_and_bad_options_are_refused() {
    let mut rig = Rig::new("key_source: 'downcase(string!(.labels.alertname))'");
    assert_eq!(
        s(&rig.send(vec![firing("x")])[0], "incident_key"),
        "checkoutdown"
    );
    let clock = ManualClock::starting_at(t0());
    for (yaml, want) in [
        ("key: a\nkey_source: .b", "either `key` or `key_source`"),
        ("key_source: '.x = 1'", "key_source"),
        ("resolve_after: 0s", "resolve_after"),
        ("max_incidents: 0", "max_incidents"),
        ("key: '{{ unclosed'", "unclosed"),
    ] {
        let err = build(yaml, &clock, None)
            .err()
            .unwrap_or_else(|| panic!("{yaml} builds"));
        assert!(err.contains(want), "{yaml}: {err}");
    }
}

#[test]
fn a_change_is_on_disk_before_its_notification_leaves_and_repeats_wait_for_the_snapshot() {
    use sluice::transforms::incident::IncidentState;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("incident").join("inc.json");
    // What a process killed right now would find on disk.
    let on_disk = || IncidentState::load(&file);
    let mut rig = Rig::with_dir("snapshot_interval: 1m", Some(dir.path()));
    let page = rig.send(vec![firing("fp")]);
    let after_kill = on_disk();
    let saved = &after_kill.incidents["fp"];
    assert_eq!(
        saved.id,
        s(&page[0], "incident_id"),
        "journaled before it left"
    );
    assert!(
        saved.pending.is_none() && saved.announced.is_some(),
        "and known as announced"
    );
    assert!(saved.unconfirmed.is_some(), "not confirmed yet");
    // The sink's confirmation is written at the next pass.
    rig.to(5).tick();
    assert!(on_disk().incidents["fp"].unconfirmed.is_none());
    rig.to(10).send(vec![firing("fp")]);
    rig.tick();
    assert_eq!(
        on_disk().incidents["fp"].count,
        1,
        "a repeat waits for snapshot_interval"
    );
    rig.to(61).tick();
    assert_eq!(on_disk().incidents["fp"].count, 2);
    assert_eq!(
        std::fs::metadata(file.with_extension("journal"))
            .map(|m| m.len())
            .unwrap_or(0),
        0,
        "the snapshot took the journal over"
    );
    rig.to(62).send(vec![firing("fp")]);
    rig.restart();
    assert_eq!(
        on_disk().incidents["fp"].count,
        3,
        "everything is written when the component stops"
    );
    let closed = rig.to(70).send(vec![resolved("fp")]);
    assert_eq!(s(&closed[0], "incident_id"), s(&page[0], "incident_id"));
}

#[test]
fn hostile_alerts_are_bounded_keys_severities_and_size() {
    let mut rig = Rig::new("key_source: 'string!(.k)'");
    let mut long_key = firing("fp");
    long_key.insert("k", "k".repeat(1025));
    let (out, unmatched) = rig.send_all(vec![long_key]);
    assert!(out.is_empty());
    assert_eq!(unmatched.len(), 1, "a key over 1 KiB is refused");

    let mut huge = alert("grafana", "fp", "firing", "HIGH");
    huge.insert("k", "big");
    huge.insert("description", "d".repeat(100_000));
    let page = rig.send(vec![huge]);
    assert_eq!(
        s(&page[0], "severity"),
        "high",
        "severities are lower-cased"
    );
    assert_eq!(s(&page[0], "truncated"), "true");
    assert_eq!(s(&page[0], "summary"), "grafana: checkout is down");
    assert_eq!(s(&page[0], "description").len(), 1024, "cut, not dropped");
    assert_eq!(s(&page[0], "labels"), "", "labels do not survive the cut");
}

#[test]
fn alert_times_keep_their_type_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rig = Rig::with_dir("resolve_after: 1m", Some(dir.path()));
    let mut first = firing("fp");
    first.insert("starts_at", Value::Timestamp(t0()));
    let page = rig.send(vec![first]);
    assert!(matches!(f(&page[0], "starts_at"), Value::Timestamp(_)));
    // The restart reads the alert back from disk, where it was JSON text.
    rig.to(30).restart();
    let closed = rig.to(60).tick();
    assert_eq!(actions(&closed), ["resolved"]);
    assert_eq!(
        f(&closed[0], "starts_at"),
        Value::Timestamp(t0()),
        "a timestamp, as before the restart"
    );
}

fn f(v: &Value, path: &str) -> Value {
    let p = vrl::path::parse_value_path(path).expect("path");
    v.get(&p).cloned().unwrap_or(Value::Null)
}

/// Two aggregators on one store, each with its own timer pass: an incident one of
/// them opened is resolved by `resolve_after` exactly once, by whichever claims it.
#[test]
fn two_aggregators_fire_a_shared_incidents_timer_once() {
    if !postgres_up() {
        return;
    }
    let mut a = Rig::stored("resolve_after: 10m");
    let schema = a.stored.as_ref().expect("stored").0.clone();
    let mut b = Rig::sharing("resolve_after: 10m", &schema);
    let opened = a.send(vec![firing("fp")]);
    assert_eq!(actions(&opened), ["opened"]);
    assert!(
        b.to(60).send(vec![firing("fp")]).is_empty(),
        "a repeat in the other"
    );
    a.to(659);
    assert!(a.tick().is_empty() && b.to(659).tick().is_empty());
    a.to(660);
    b.to(660);
    let (from_b, from_a) = (b.tick(), a.tick());
    assert_eq!(actions(&from_b), ["resolved"], "the first pass claims it");
    assert!(from_a.is_empty(), "and no one else");
    assert_eq!(s(&from_b[0], "incident_id"), s(&opened[0], "incident_id"));
    assert_eq!(i(&from_b[0], "count"), 2);
}

/// Firing, resolved and firing again in one batch (as held alerts retried together
/// arrive): the resolve has not even left when the firing comes, so the incident
/// reopens (same id); the next resolve closes it.
#[test]
fn a_fire_resolve_fire_batch_reopens_one_incident() {
    fire_resolve_fire(Rig::new);
}

#[test]
fn a_fire_resolve_fire_batch_reopens_one_incident_with_the_store() {
    if postgres_up() {
        fire_resolve_fire(Rig::stored);
    }
}

fn fire_resolve_fire(new: fn(&str) -> Rig) {
    let mut rig = new("{}");
    let out = rig.send(vec![firing("fp"), resolved("fp"), firing("fp")]);
    assert_eq!(actions(&out), ["opened", "resolved", "reopened"]);
    assert_eq!(s(&out[0], "incident_id"), s(&out[1], "incident_id"));
    assert_eq!(s(&out[1], "incident_id"), s(&out[2], "incident_id"));
    let closed = rig.to(1).send(vec![resolved("fp")]);
    assert_eq!(actions(&closed), ["resolved"]);
    assert_eq!(s(&closed[0], "incident_id"), s(&out[2], "incident_id"));
}

/// A notification the sinks did not deliver is announced again, 1, 2, 4, 8 and 16 s
/// after each failure is seen, and then no more (a sink failing for good must not page the
/// healthy ones forever); a delivered one is not repeated.
#[test]
fn an_undelivered_notice_is_announced_again_five_times_at_most() {
    let mut rig = Rig::new("{}");
    let (lost, _) = rig.send_all(vec![firing("fp")]);
    assert_eq!(lost.len(), 1);
    drop(lost);
    let mut again = Vec::new();
    for t in 1..=60 {
        rig.to(t);
        if rig.tick_lost() > 0 {
            again.push(t);
        }
    }
    // Each failure is seen at the next pass, which schedules the next try 1, 2, 4, 8
    // and 16 s later.
    assert_eq!(again, [2, 5, 10, 19, 36], "backing off, then giving up");
    assert_eq!(metric(&rig.metrics(), "redelivery"), 5.0);

    let mut rig = Rig::new("{}");
    assert_eq!(rig.send(vec![firing("fp")]).len(), 1);
    assert!(rig.to(5).tick().is_empty(), "delivered: not repeated");
}

/// The process died after a page left and before the sinks said anything of it: the
/// next process sends it again at once, with the same incident id; one the sinks
/// confirmed before the stop is not sent again.
#[test]
fn a_notification_unconfirmed_when_the_process_died_goes_out_again_after_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rig = Rig::with_dir("{}", Some(dir.path()));
    let (in_flight, _) = rig.send_all(vec![firing("lost")]);
    let confirmed = rig.send(vec![firing("heard")]);
    assert_eq!(actions(&confirmed), ["opened"]);
    rig.to(1).restart();
    let again = rig.to(2).tick();
    assert_eq!(actions(&again), ["opened"], "only the unconfirmed page");
    assert_eq!(s(&again[0], "fingerprint"), "lost");
    assert_eq!(
        s(&again[0], "incident_id"),
        s(in_flight[0].value(), "incident_id")
    );
    assert_eq!(metric(&rig.metrics(), "redelivery"), 1.0);
    // The old process's event settles late (it no longer matters) and the new one's
    // delivery is confirmed: nothing more, across another restart too.
    drop(in_flight);
    assert!(rig.to(3).tick().is_empty());
    rig.to(4).restart();
    assert!(rig.to(5).tick().is_empty(), "confirmed before the stop");
}

/// With the shared store, an aggregator that sent a page and died before the sinks
/// answered leaves it unconfirmed: another aggregator sends it again after
/// `confirm_timeout`, once; a confirmed page is never sent again.
#[test]
fn a_notification_its_aggregator_never_confirmed_is_sent_by_another_after_confirm_timeout() {
    if !postgres_up() {
        return;
    }
    let options = "confirm_timeout: 60s";
    let mut dead = Rig::stored(options);
    let schema = dead.stored.as_ref().expect("stored").0.clone();
    let mut live = Rig::sharing(options, &schema);
    let (in_flight, _) = dead.send_all(vec![firing("lost")]);
    assert_eq!(in_flight.len(), 1);
    assert_eq!(actions(&live.send(vec![firing("heard")])), ["opened"]);
    // The live one's confirmation reaches the store at its next pass.
    assert!(live.to(1).tick().is_empty());
    assert!(live.to(59).tick().is_empty(), "not before confirm_timeout");
    dead.to(60);
    let again = live.to(60).tick();
    assert_eq!(actions(&again), ["opened"], "only the unconfirmed page");
    assert_eq!(s(&again[0], "fingerprint"), "lost");
    assert_eq!(
        s(&again[0], "incident_id"),
        s(in_flight[0].value(), "incident_id")
    );
    assert!(live.to(61).tick().is_empty());
    assert!(live.to(200).tick().is_empty(), "confirmed now");
}

/// A resolve still in flight keeps its incident: `max_incidents` does not make room by
/// forgetting it, and when the sink fails it, it goes out again.
#[test]
fn a_resolve_in_flight_is_not_forgotten_to_make_room() {
    let mut rig = Rig::new("max_incidents: 2\nkeep_resolved: 0s");
    assert_eq!(actions(&rig.send(vec![firing("a")])), ["opened"]);
    let (in_flight, _) = rig.to(1).send_all(vec![resolved("a")]);
    assert_eq!(actions(&delivered_values(&in_flight)), ["resolved"]);
    assert_eq!(actions(&rig.send(vec![firing("b")])), ["opened"]);
    assert!(
        rig.send(vec![firing("c")]).is_empty(),
        "no room: a is in flight"
    );
    assert_eq!(metric(&rig.metrics(), "over_limit"), 1.0);
    drop(in_flight);
    rig.to(2).tick();
    let again = rig.to(3).tick();
    assert_eq!(
        actions(&again),
        ["resolved"],
        "the failed resolve goes out again"
    );
    assert_eq!(s(&again[0], "fingerprint"), "a");
    rig.to(4).tick();
    assert_eq!(
        actions(&rig.send(vec![firing("c")])),
        ["opened"],
        "confirmed: now it makes room"
    );
}

/// The outcome of an earlier copy of a notification (answered late, after the change
/// was sent again and confirmed) does not send it a third time.
#[test]
fn a_late_failure_of_an_earlier_copy_does_not_resend_a_confirmed_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rig = Rig::with_dir("confirm_timeout: 20s", Some(dir.path()));
    let (first, _) = rig.send_all(vec![firing("fp")]);
    assert_eq!(first.len(), 1);
    // The process that sent it is gone; the new one sends it again.
    rig.to(1).restart();
    assert_eq!(actions(&rig.to(2).tick()), ["opened"], "not confirmed");
    assert!(rig.to(3).tick().is_empty(), "the second copy is confirmed");
    drop(first);
    for t in 4..60 {
        assert!(rig.to(t).tick().is_empty(), "at {t}s");
    }
}

/// What one incident keeps of its alerts' short fields is bounded: vendors listed,
/// a severity's length.
#[test]
fn vendors_and_severities_are_bounded() {
    let mut rig = Rig::new("{}");
    let mut alerts: Vec<Event> = (0..100)
        .map(|n| alert(&format!("{n}-{}", "v".repeat(8000)), "fp", "firing", "high"))
        .collect();
    alerts.push(alert("grafana", "fp", "firing", &"x".repeat(100_000)));
    let page = rig.send(alerts);
    let vendors = match f(&page[0], "vendors") {
        Value::Array(v) => v,
        other => panic!("vendors: {other:?}"),
    };
    assert_eq!(vendors.len(), 1, "the opening lists its first vendor");
    rig.to(10).send(vec![firing("fp")]);
    let sighting = rig.to(11).send(vec![resolved("fp")]);
    let vendors = match f(&sighting[0], "vendors") {
        Value::Array(v) => v,
        other => panic!("vendors: {other:?}"),
    };
    assert_eq!(vendors.len(), 32, "at most 32");
    assert!(
        vendors
            .iter()
            .all(|v| v.to_string_lossy().chars().count() <= 128)
    );
    assert!(s(&sighting[0], "severity").chars().count() <= 128);
}

fn delivered_values(events: &[Event]) -> Vec<Value> {
    events.iter().map(|e| e.value().clone()).collect()
}

/// Keys that differ only in a NUL and a U+FFFD stay two incidents (PostgreSQL text
/// cannot hold NUL, so the store escapes rather than replaces it).
#[test]
fn keys_with_nul_and_replacement_characters_stay_apart() {
    nul_keys(Rig::new);
}

#[test]
fn keys_with_nul_and_replacement_characters_stay_apart_with_the_store() {
    if postgres_up() {
        nul_keys(Rig::stored);
    }
}

fn nul_keys(new: fn(&str) -> Rig) {
    let mut rig = new("{}");
    let opened = rig.send(vec![firing("nul\0key"), firing("nul\u{fffd}key")]);
    assert_eq!(actions(&opened), ["opened", "opened"]);
    assert_ne!(s(&opened[0], "incident_id"), s(&opened[1], "incident_id"));
    let closed = rig.to(1).send(vec![resolved("nul\0key")]);
    assert_eq!(actions(&closed), ["resolved"]);
    assert_eq!(s(&closed[0], "incident_id"), s(&opened[0], "incident_id"));
    assert!(
        rig.to(2).send(vec![firing("nul\u{fffd}key")]).is_empty(),
        "the other is still open"
    );
}

/// One incident joining many alerts with huge fingerprints keeps a digest of each, not
/// the fingerprint: its state stays small.
#[test]
fn huge_fingerprints_joining_one_incident_are_kept_as_digests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rig = Rig::with_dir("key: \"{{ service }}\"", Some(dir.path()));
    let alerts: Vec<Event> = (0..200)
        .map(|n| firing(&format!("{n}-{}", "f".repeat(10_000))))
        .collect();
    assert_eq!(actions(&rig.send(alerts)), ["opened"]);
    rig.to(1).restart();
    let file = dir.path().join("incident").join("inc.json");
    let size = std::fs::metadata(&file).expect("state file").len();
    assert!(size < 100_000, "{size} bytes for 2 MB of fingerprints");
    // Each is still told apart: resolving all but one keeps the incident open.
    let resolves: Vec<Event> = (0..199)
        .map(|n| resolved(&format!("{n}-{}", "f".repeat(10_000))))
        .collect();
    assert!(rig.to(2).send(resolves).is_empty());
    let last = rig
        .to(3)
        .send(vec![resolved(&format!("199-{}", "f".repeat(10_000)))]);
    assert_eq!(actions(&last), ["resolved"]);
}

/// A firing while the resolve is still going out reopens the same incident (it does not
/// replace it, which would leave that resolve unsent for good).
#[test]
fn a_firing_while_the_resolve_is_in_flight_reopens_the_same_incident() {
    let mut rig = Rig::new("{}");
    let opened = rig.send(vec![firing("fp")]);
    let (in_flight, _) = rig.to(1).send_all(vec![resolved("fp")]);
    assert_eq!(actions(&delivered_values(&in_flight)), ["resolved"]);
    let again = rig.to(2).send(vec![firing("fp")]);
    assert_eq!(actions(&again), ["reopened"]);
    assert_eq!(s(&again[0], "incident_id"), s(&opened[0], "incident_id"));
    drop(in_flight);
}

/// A resolve confirmed late makes room for new keys again, although a search for room
/// found none while it was in flight.
#[test]
fn a_resolve_confirmed_late_makes_room() {
    let mut rig = Rig::new("max_incidents: 2\nkeep_resolved: 0s");
    rig.send(vec![firing("a"), firing("b")]);
    let (in_flight, _) = rig.to(1).send_all(vec![resolved("a")]);
    assert!(rig.send(vec![firing("c")]).is_empty(), "no room yet");
    delivered(in_flight);
    assert!(rig.to(2).tick().is_empty());
    assert_eq!(actions(&rig.send(vec![firing("d")])), ["opened"]);
}

/// Without `group_by` each incident is its own group: one incident waiting for its
/// `group_interval` does not hold back another's first page.
#[test]
fn without_group_by_each_incident_is_its_own_group() {
    let mut rig = Rig::new("group_interval: 30s");
    assert_eq!(actions(&rig.send(vec![firing("a")])), ["opened"]);
    assert!(
        rig.to(1)
            .send(vec![alert("grafana", "a", "firing", "critical")])
            .is_empty(),
        "a's escalation waits for its group_interval"
    );
    assert_eq!(
        actions(&rig.to(2).send(vec![firing("b")])),
        ["opened"],
        "b pages at once"
    );
    assert_eq!(actions(&rig.to(30).tick()), ["updated"]);
}

/// A notification still with this process's sinks (a backlog longer than
/// `confirm_timeout`) is not sent again: its outcome will come.
#[test]
fn a_notification_still_in_flight_is_not_resent_at_confirm_timeout() {
    let mut rig = Rig::new("confirm_timeout: 10s");
    let (in_flight, _) = rig.send_all(vec![firing("fp")]);
    for t in [10, 11, 30, 100] {
        assert!(rig.to(t).tick().is_empty(), "at {t}s");
    }
    drop(in_flight);
    rig.to(101).tick();
    assert_eq!(
        actions(&rig.to(102).tick()),
        ["opened"],
        "failed: sent again"
    );
}

/// An unreadable state file is kept aside, not overwritten by the next write.
#[test]
fn an_unreadable_state_file_is_kept_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("incident");
    std::fs::create_dir_all(&state).expect("dir");
    std::fs::write(state.join("inc.json"), b"{ not json").expect("write");
    let mut rig = Rig::with_dir("{}", Some(dir.path()));
    rig.send(vec![firing("fp")]);
    rig.to(1).restart();
    let aside: Vec<String> = std::fs::read_dir(&state)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("inc.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(state.join(&aside[0])).expect("read"),
        b"{ not json"
    );
}

/// A firing while a failed resolve waits to be sent again reopens the same incident:
/// the old page is not left open in PagerDuty under an id sluice forgot.
#[test]
fn a_firing_while_a_failed_resolve_waits_to_go_out_again_reopens_the_same_incident() {
    let mut rig = Rig::new("{}");
    let opened = rig.send(vec![firing("fp")]);
    let (failed, _) = rig.to(1).send_all(vec![resolved("fp")]);
    drop(failed);
    assert!(
        rig.to(2).tick().is_empty(),
        "the resolve waits 1 s to go out again"
    );
    let again = rig.send(vec![firing("fp")]);
    let later = rig.to(3).tick();
    let all: Vec<Value> = again.into_iter().chain(later).collect();
    assert_eq!(actions(&all), ["reopened"]);
    assert_eq!(s(&all[0], "incident_id"), s(&opened[0], "incident_id"));
}

/// An upstream `alertmanager_route` times each route's notifications as Alertmanager
/// does: its `group_wait`, `group_interval` and `repeat_interval` over the incident's.
#[test]
fn the_route_of_an_alertmanager_route_times_its_alerts() {
    let clock = ManualClock::starting_at(t0());
    let text = r#"
sources:
  in: { type: generator }
transforms:
  router:
    type: alertmanager_route
    inputs: [in]
    route:
      receiver: default
      group_by: [alertname]
      group_wait: 30s
      group_interval: 5m
      routes:
        - matchers: ['severity="critical"']
          receiver: pager
          group_wait: 0s
          group_interval: 1m
          repeat_interval: 10m
"#;
    let (mut router, named) = common::build_transform(text, "router", &clock);
    // The incident's own timing is slow: the routes' must win.
    let (mut inc, _) = build("group_wait: 5m\ngroup_interval: 5m", &clock, None).expect("builds");
    let alert = |fp: &str, severity: &str| {
        Event::new(
            serde_json::from_value(serde_json::json!({
                "event_type": "alert", "source": "prometheus", "status": "firing",
                "severity": severity, "fingerprint": fp,
                "labels": { "alertname": fp, "severity": severity },
            }))
            .expect("value"),
            SourceId::intern("in"),
            Utc::now(),
        )
    };
    let mut pass = |events: Vec<Event>| -> Vec<Value> {
        let mut routed = TransformOutputs::new(named);
        router.process(events, &mut routed);
        let events: Vec<Event> = routed.named.into_iter().flatten().collect();
        let mut out = TransformOutputs::new(1);
        inc.process(events, &mut out);
        delivered(out.default)
    };
    let paged = pass(vec![alert("c1", "critical"), alert("w1", "warning")]);
    assert_eq!(
        paged
            .iter()
            .map(|v| s(v, "incident_key"))
            .collect::<Vec<_>>(),
        ["c1"],
        "the critical route waits 0s; the default route 30s"
    );
    let tick = |inc: &mut Box<dyn Transform>, secs: u64| -> Vec<Value> {
        clock.advance(Duration::from_secs(secs));
        let mut out = TransformOutputs::new(1);
        inc.flush(&mut out);
        delivered(out.default)
    };
    assert!(tick(&mut inc, 29).is_empty());
    let waited = tick(&mut inc, 1);
    assert_eq!(
        (actions(&waited), s(&waited[0], "incident_key")),
        (vec!["opened".to_owned()], "w1".to_owned())
    );
    // At 10 minutes the critical route repeats; the default route's 4h has not come.
    assert!(tick(&mut inc, 569).is_empty());
    let repeated = tick(&mut inc, 1);
    assert_eq!(
        (actions(&repeated), s(&repeated[0], "incident_key")),
        (vec!["updated".to_owned()], "c1".to_owned())
    );
}
