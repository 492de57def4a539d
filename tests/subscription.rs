//! The `subscription` transform: fan-out through a running pipeline, hot swap of a
//! `file:` (and a bad file), and auto-resolve timers across restarts and rebuilds.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{eventually, field, int, parse, start_with};
use sluice::clock::ManualClock;
use sluice::component::{FileNotices, Transform, TransformContext, TransformOutputs};
use sluice::config::{Pipeline, parse_texts};
use sluice::event::{Event, SourceId};
use sluice::telemetry::{ComponentKind, ComponentMetrics, Telemetry};
use sluice::testing::CaptureSink;
use sluice::topology::{Drained, TopologyOptions};
use vrl::value::Value;

fn counter(metrics: &ComponentMetrics, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
    metrics.counter(name, labels).get()
}

fn component(telemetry: &Telemetry, id: &str) -> Arc<ComponentMetrics> {
    telemetry
        .components()
        .into_iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no component {id}"))
}

fn options() -> TopologyOptions {
    TopologyOptions {
        data_dir: tempfile::tempdir().expect("tempdir").keep(),
        ..TopologyOptions::default()
    }
}

/// What the remap below makes of sequence number `n`.
fn shape(n: i64) -> (&'static str, &'static str, &'static str, &'static str) {
    let severity = ["critical", "high", "low"][(n % 3) as usize];
    let service = if n % 2 == 0 { "api" } else { "db" };
    let env = if n % 5 == 0 { "dev" } else { "prod" };
    let event_type = if n % 7 == 0 { "metric" } else { "alert" };
    (severity, service, env, event_type)
}

const SHAPE: &str = r#"
      n = to_int!(.n)
      .severity = if mod(n, 3) == 0 { "critical" } else if mod(n, 3) == 1 { "high" } else { "low" }
      .service = if mod(n, 2) == 0 { "api" } else { "db" }
      .event_type = if mod(n, 7) == 0 { "metric" } else { "alert" }
      env = if mod(n, 5) == 0 { "dev" } else { "prod" }
      .labels = { "env": env, "host": "web-" + to_string(n) }
"#;

#[tokio::test]
async fn events_fan_out_to_every_matching_subscription_and_the_rest_to_unmatched() {
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 300, batch_size: 50, format: '{{"n": {{{{seq}}}}}}' }}
transforms:
  shape:
    type: remap
    inputs: [gen]
    source: |{SHAPE}
  route:
    type: subscription
    inputs: [shape]
    subscriptions:
      - name: prod_critical
        event_types: [alert]
        severity_levels: [critical, high]
        custom_filters: {{ env: prod }}
      - name: api
        services: [api]
      - name: web_single_digit
        custom_filters: ['host =~ "web-[0-9]"', 'env != dev']
      - name: off
        enabled: false
      - name: late
        condition: 'to_int!(.n) >= 290'
"#
    ));
    let names = [
        "prod_critical",
        "api",
        "web_single_digit",
        "off",
        "late",
        "_unmatched",
    ];
    let sinks: Vec<CaptureSink> = names.iter().map(|_| CaptureSink::default()).collect();
    for (name, sink) in names.iter().zip(&sinks) {
        sink.attach(
            &mut p,
            &format!("to_{name}"),
            &[&format!("route.{name}")],
            1000,
        );
    }
    let (mut topo, telemetry) = start_with(p, options()).await;
    topo.finished().await;

    let mut expected: HashMap<&str, Vec<i64>> = names.iter().map(|n| (*n, Vec::new())).collect();
    for n in 0..300 {
        let (severity, service, env, event_type) = shape(n);
        let mut hit = false;
        let mut to = |name| {
            expected.get_mut(name).expect("name").push(n);
            hit = true;
        };
        if event_type == "alert" && (severity == "critical" || severity == "high") && env == "prod"
        {
            to("prod_critical");
        }
        if service == "api" {
            to("api");
        }
        if n < 10 && env != "dev" {
            to("web_single_digit");
        }
        if n >= 290 {
            to("late");
        }
        if !hit {
            expected.get_mut("_unmatched").expect("unmatched").push(n);
        }
    }
    let route = component(&telemetry, "route");
    for (name, sink) in names.iter().zip(&sinks) {
        let mut got = sink.ints("n");
        got.sort_unstable();
        assert_eq!(got, expected[name], "output {name}");
        if *name != "_unmatched" {
            assert_eq!(
                counter(
                    &route,
                    "sluice_subscription_matched_events_total",
                    &[("subscription", name)]
                ),
                expected[name].len() as u64,
                "matched counter of {name}"
            );
        }
    }
    assert!(expected["prod_critical"].len() > 50 && !expected["_unmatched"].is_empty());
    assert!(
        sinks[3].values().is_empty(),
        "a disabled subscription matches nothing"
    );
    let delivered: usize = sinks.iter().map(|s| s.values().len()).sum();
    assert_eq!(
        route.sent.load(Ordering::Relaxed) as usize,
        delivered,
        "every copy left the transform"
    );
}

fn write(path: &Path, text: &str) {
    // Write then rename, as editors and config management do.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn two_subscriptions(a: &str, b: &str) -> String {
    format!(
        "subscriptions:\n  - {{ name: a, severity_levels: [{a}] }}\n  - {{ name: b, severity_levels: [{b}] }}\n"
    )
}

fn file_pipeline(file: &Path, sinks: &[(&str, &CaptureSink)]) -> Result<Pipeline, String> {
    file_pipeline_checking(file, sinks, "100ms")
}

fn file_pipeline_checking(
    file: &Path,
    sinks: &[(&str, &CaptureSink)],
    check_interval: &str,
) -> Result<Pipeline, String> {
    let text = format!(
        r#"
sources:
  gen: {{ type: generator, rate: 5000, batch_size: 20, format: '{{"n": {{{{seq}}}}}}' }}
transforms:
  shape:
    type: remap
    inputs: [gen]
    source: |{SHAPE}
  route: {{ type: subscription, inputs: [shape], file: "{}", check_interval: {check_interval} }}
"#,
        file.display()
    );
    let mut p =
        parse_texts(&[(PathBuf::from("test.yaml"), text)], |_| None).map_err(|e| e.to_string())?;
    for (output, sink) in sinks {
        sink.attach(
            &mut p,
            &format!("to_{output}"),
            &[&format!("route.{output}")],
            100_000,
        );
    }
    p.validate().map_err(|e| e.to_string())?;
    Ok(p)
}

/// The application's one watcher tells the transform through `FileNotices`; with an
/// hour between its own checks, only the notice can explain the swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_notice_swaps_the_new_set_in_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("subs.yaml");
    write(&file, &two_subscriptions("critical", "low"));
    let (a, b) = (CaptureSink::default(), CaptureSink::default());
    let sinks = [("a", &a), ("b", &b)];
    let notices = FileNotices::default();
    let options = TopologyOptions {
        file_notices: notices.clone(),
        ..options()
    };
    let pipeline = file_pipeline_checking(&file, &sinks, "1h").expect("valid");
    let (topo, telemetry) = start_with(pipeline, options).await;
    let route = component(&telemetry, "route");
    let swapped = || {
        counter(
            &route,
            "sluice_subscription_file_reloads_total",
            &[("result", "swapped")],
        )
    };
    let severity = |v: &Value| shape(int(v, "n")).0;
    eventually("events before the swap", || a.values().len() > 20).await;
    write(&file, &two_subscriptions("low", "critical"));
    notices.changed(Path::new("elsewhere.yaml"));
    assert_eq!(swapped(), 0, "a notice for another file changes nothing");
    notices.changed(&file);
    assert_eq!(
        swapped(),
        1,
        "the notice swapped the set in before returning"
    );
    eventually("low alerts reach a", || {
        a.values().iter().any(|v| severity(v) == "low")
    })
    .await;
    assert_eq!(topo.stop(Duration::from_secs(10)).await, Drained::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_swapped_in_without_a_rebuild_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("subs.yaml");
    write(&file, &two_subscriptions("critical", "low"));
    let (a, b, rest) = (
        CaptureSink::default(),
        CaptureSink::default(),
        CaptureSink::default(),
    );
    let sinks = [("a", &a), ("b", &b), ("_unmatched", &rest)];
    let (mut topo, telemetry) =
        start_with(file_pipeline(&file, &sinks).expect("valid"), options()).await;
    let route = component(&telemetry, "route");
    let reloads = |result| {
        counter(
            &route,
            "sluice_subscription_file_reloads_total",
            &[("result", result)],
        )
    };
    let severity = |v: &Value| shape(int(v, "n")).0;
    eventually("events before the swap", || a.values().len() > 20).await;

    write(&file, &two_subscriptions("low", "critical"));
    let changes = topo
        .apply(file_pipeline(&file, &sinks).expect("still valid"))
        .await
        .expect("reload applies");
    assert!(changes.is_empty(), "same names: no rebuild ({changes:?})");
    eventually("the swap", || reloads("swapped") == 1).await;
    eventually("events after the swap", || {
        a.values().iter().filter(|v| severity(v) == "low").count() > 20
    })
    .await;

    write(
        &file,
        "subscriptions:\n  - { name: a, severity_levels: [low] }\n  - { name: b, bogus: 1 }\n",
    );
    let refused = file_pipeline(&file, &sinks).expect_err("a bad file fails the reload");
    assert!(
        refused.contains("subs.yaml") && refused.contains("bogus"),
        "{refused}"
    );
    eventually("the bad file is reported", || reloads("failed") == 1).await;
    assert!(route.errors.load(Ordering::Relaxed) >= 1);
    let seen = a.values().len();
    eventually("events after the bad file", || a.values().len() > seen + 20).await;

    assert_eq!(topo.stop(Duration::from_secs(10)).await, Drained::Complete);
    assert_eq!(reloads("swapped"), 1, "the bad file was not swapped in");
    // Before the swap `a` took critical alerts, after it low ones, never mixed again.
    let got: Vec<&str> = a.values().iter().map(severity).collect::<Vec<_>>();
    let switch = got
        .iter()
        .position(|s| *s == "low")
        .expect("low alerts reached a");
    assert!(got[..switch].iter().all(|s| *s == "critical"), "{got:?}");
    assert!(got[switch..].iter().all(|s| *s == "low"), "{got:?}");
    let got_b: Vec<&str> = b.values().iter().map(severity).collect();
    let switch_b = got_b
        .iter()
        .position(|s| *s == "critical")
        .expect("critical reached b");
    assert!(
        got_b[..switch_b].iter().all(|s| *s == "low")
            && got_b[switch_b..].iter().all(|s| *s == "critical")
    );
    assert!(rest.values().iter().all(|v| severity(v) == "high"));
    // Nothing lost or doubled: each event left on exactly one output.
    let emitted = component(&telemetry, "gen").sent.load(Ordering::Relaxed) as i64;
    let mut all: Vec<i64> = [&a, &b, &rest].iter().flat_map(|s| s.ints("n")).collect();
    all.sort_unstable();
    assert_eq!(all, (0..emitted).collect::<Vec<_>>());
}

fn build(
    yaml: &str,
    clock: &ManualClock,
    data_dir: Option<&Path>,
) -> (Box<dyn Transform>, Vec<String>) {
    let text = format!("sources:\n  in: {{ type: generator }}\ntransforms:\n  route: {yaml}\n");
    let p = parse_texts(&[(PathBuf::from("t.yaml"), text)], |_| None).expect("parses");
    let def = &p.transforms["route"];
    let telemetry = Telemetry::new();
    let cx = TransformContext {
        file_notices: Default::default(),
        id: Arc::from("route"),
        metrics: telemetry.component("route", ComponentKind::Transform, "subscription"),
        clock: Arc::new(clock.clone()),
        data_dir: data_dir.map(Path::to_path_buf),
    };
    (def.config.build(&cx).expect("builds"), def.config.outputs())
}

fn alert(status: &str, fingerprint: &str, id: &str) -> Event {
    let json = format!(
        r#"{{"id":"{id}","event_type":"alert","status":"{status}","fingerprint":"{fingerprint}","severity":"critical","labels":{{"env":"prod"}},"summary":"disk full"}}"#
    );
    Event::new(
        serde_json::from_str(&json).expect("json"),
        SourceId::intern("test"),
        chrono::Utc::now(),
    )
}

const AUTO: &str = r#"{ type: subscription, subscriptions: [ { name: pager, severity_levels: [critical], auto_resolve: true, resolve_after_hours: 2 }, { name: audit } ] }"#;

fn run(t: &mut Box<dyn Transform>, outputs: usize, batch: Vec<Event>) -> TransformOutputs {
    let mut out = TransformOutputs::new(outputs);
    t.process(batch, &mut out);
    out
}

fn flush(t: &mut Box<dyn Transform>, outputs: usize) -> TransformOutputs {
    let mut out = TransformOutputs::new(outputs);
    t.flush(&mut out);
    out
}

fn text(v: &Value, name: &str) -> String {
    field(v, name).to_string_lossy().into_owned()
}

#[test]
fn auto_resolve_fires_once_after_the_delay_is_cancelled_by_a_resolve_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("ts")
        .to_utc();
    let clock = ManualClock::starting_at(start);
    let (mut t, names) = build(AUTO, &clock, Some(dir.path()));
    assert_eq!(names, vec!["pager", "audit", "_unmatched"]);
    let n = names.len();

    let out = run(
        &mut t,
        n,
        vec![alert("firing", "fp1", "e1"), alert("firing", "fp2", "e2")],
    );
    assert_eq!((out.named[0].len(), out.named[1].len()), (2, 2));
    clock.advance(Duration::from_secs(3600));
    // A repeat does not restart fp1's timer; a real resolve cancels fp2's.
    let out = run(
        &mut t,
        n,
        vec![alert("firing", "fp1", "e3"), alert("resolved", "fp2", "e4")],
    );
    assert_eq!(out.named[0].len(), 2);
    clock.advance(Duration::from_secs(3540));
    assert!(
        flush(&mut t, n).named.iter().all(Vec::is_empty),
        "not due yet at 1h59m"
    );
    drop(t);
    assert!(
        dir.path().join("subscription/route.json").exists(),
        "snapshot written"
    );

    // A restart: the timers come back from the snapshot.
    let (mut t, _) = build(AUTO, &clock, Some(dir.path()));
    clock.advance(Duration::from_secs(120));
    let out = flush(&mut t, n);
    assert!(out.named[1].is_empty() && out.named[2].is_empty());
    let [resolved] = out.named[0].as_slice() else {
        panic!("one auto-resolve on `pager`: {:?}", out.named[0]);
    };
    let v = resolved.value();
    assert_eq!(text(v, "fingerprint"), "fp1");
    assert_eq!(text(v, "status"), "resolved");
    assert_eq!(field(v, "auto_resolved"), Value::Boolean(true));
    assert_eq!(
        text(v, "summary"),
        "disk full",
        "a copy of the firing event"
    );
    assert_eq!(text(v, "ends_at"), "2026-01-01T02:01:00.000Z");
    let id = text(v, "id");
    assert!(
        id != "e1" && id != "e3" && uuid::Uuid::parse_str(&id).is_ok(),
        "fresh id {id}"
    );
    assert!(
        flush(&mut t, n).named.iter().all(Vec::is_empty),
        "fires once"
    );
    drop(t);

    // Fired timers are gone from the snapshot too.
    let (mut t, _) = build(AUTO, &clock, Some(dir.path()));
    clock.advance(Duration::from_secs(10 * 3600));
    assert!(flush(&mut t, n).named.iter().all(Vec::is_empty));
}

#[test]
fn without_a_data_dir_timers_live_in_memory_and_max_pending_drops_the_oldest() {
    let clock = ManualClock::default();
    let yaml = r#"{ type: subscription, max_pending: 2, subscriptions: [ { name: pager, auto_resolve: true, resolve_after_hours: 1 } ] }"#;
    let (mut t, names) = build(yaml, &clock, None);
    let n = names.len();
    run(
        &mut t,
        n,
        (1..=3)
            .map(|i| alert("firing", &format!("fp{i}"), "x"))
            .collect(),
    );
    clock.advance(Duration::from_secs(3600));
    let out = flush(&mut t, n);
    let mut fps: Vec<String> = out.named[0]
        .iter()
        .map(|e| text(e.value(), "fingerprint"))
        .collect();
    fps.sort();
    assert_eq!(fps, vec!["fp2", "fp3"], "fp1, the oldest, was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_names_rebuild_the_transform_and_its_pending_timers_carry_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("subs.yaml");
    let one = "subscriptions:\n  - { name: pager, auto_resolve: true, resolve_after_hours: 1 }\n";
    write(&file, one);
    let clock = ManualClock::default();
    let options = TopologyOptions {
        clock: Arc::new(clock.clone()),
        ..options()
    };
    let (pager, audit) = (CaptureSink::default(), CaptureSink::default());
    let pipeline = |with_audit: bool| {
        let text = format!(
            r#"
sources:
  gen: {{ type: generator, rate: 4, batch_size: 1, format: '{{"status": "firing", "fingerprint": "fp1", "n": 1}}' }}
transforms:
  route: {{ type: subscription, inputs: [gen], file: "{}", check_interval: 50ms }}
"#,
            file.display()
        );
        let mut p = parse(&text);
        pager.attach(&mut p, "to_pager", &["route.pager"], 100);
        if with_audit {
            audit.attach(&mut p, "to_audit", &["route.audit"], 100);
        }
        p.validate().expect("valid");
        p
    };
    let (mut topo, _) = start_with(pipeline(false), options).await;
    eventually("the firing alert", || !pager.values().is_empty()).await;

    write(
        &file,
        &format!("{one}  - {{ name: audit, services: [none] }}\n"),
    );
    let changes = topo.apply(pipeline(true)).await.expect("reload");
    assert_eq!(
        changes.changed,
        vec!["route".to_string()],
        "new names rebuild it"
    );
    clock.advance(Duration::from_secs(3601));
    let resolved = || -> Vec<Value> {
        pager
            .values()
            .into_iter()
            .filter(|v| text(v, "status") == "resolved")
            .collect()
    };
    eventually("the auto-resolve from the rebuilt transform", || {
        !resolved().is_empty()
    })
    .await;
    topo.stop(Duration::from_secs(5)).await;
    let resolved = resolved();
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    let v = &resolved[0];
    assert_eq!(
        (text(v, "status").as_str(), text(v, "fingerprint").as_str()),
        ("resolved", "fp1")
    );
    assert_eq!(field(v, "auto_resolved"), Value::Boolean(true));
    assert!(audit.values().is_empty());
}

#[test]
fn bad_options_are_pipeline_errors_naming_the_option() {
    for (yaml, want) in [
        (
            "{ type: subscription }",
            "one of `subscriptions`, `file` or `api_outputs` is required",
        ),
        (
            "{ type: subscription, subscriptions: [ { name: a } ], api_outputs: [a] }",
            "`api_outputs`: subscription name `a` is used twice",
        ),
        (
            "{ type: subscription, api_outputs: [_unmatched] }",
            "`api_outputs`: subscription name `_unmatched`",
        ),
        (
            "{ type: subscription, file: /nonexistent/subs.yaml }",
            "`file`: cannot read /nonexistent/subs.yaml",
        ),
        (
            "{ type: subscription, subscriptions: [ { name: a }, { name: a } ] }",
            "`a` is used twice",
        ),
        (
            "{ type: subscription, subscriptions: [ { name: a, custom_filters: ['env ~ x'] } ] }",
            "matcher \"env ~ x\"",
        ),
        (
            "{ type: subscription, subscriptions: [ { name: a, severity: [high] } ] }",
            "unknown field `severity`",
        ),
        (
            "{ type: subscription, subscriptions: [ { name: a, condition: '.x +' } ] }",
            "subscription `a`: `condition`",
        ),
        (
            "{ type: subscription, subscriptions: [ { name: a, auto_resolve: true, resolve_after_hours: -1 } ] }",
            "`resolve_after_hours` must be a positive number",
        ),
    ] {
        let component = yaml.replacen(
            "{ type: subscription",
            "{ type: subscription, inputs: [in]",
            1,
        );
        let text = format!(
            "sources:\n  in: {{ type: generator }}\ntransforms:\n  route: {component}\nsinks:\n  out: {{ type: blackhole, inputs: [route._unmatched] }}\n"
        );
        let e = sluice::config::load_texts(&[(PathBuf::from("t.yaml"), text)], |_| None)
            .expect_err(yaml)
            .to_string();
        assert!(e.contains(want) && e.contains("route"), "{yaml}: {e}");
    }
}
