//! Hot reload in process: exactly-once delivery across many reloads, untouched
//! components, listener hand-over, rollback, file-triggered rebuilds.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{free_port, int, parse, start, wait_for_port};
use sluice::config::Pipeline;
use sluice::testing::CaptureSink;
use sluice::topology::Drained;

fn validated(mut p: Pipeline) -> Pipeline {
    p.validate().unwrap_or_else(|e| panic!("valid: {e}"));
    p
}

fn generator_pipeline(version: u32, rec: &CaptureSink, extra: Option<&CaptureSink>) -> Pipeline {
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, rate: 20000, batch_size: 100, format: '{{"seq": {{{{seq}}}}}}' }}
transforms:
  stamp: {{ type: remap, inputs: [gen], source: ".version = {version}" }}
"#
    ));
    rec.attach(&mut p, "rec", &["stamp"], 2000);
    if let Some(extra) = extra {
        extra.attach(&mut p, "extra", &["stamp"], 2000);
    }
    validated(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_deliver_every_event_exactly_once_in_version_order() {
    let rec = CaptureSink::default();
    let extra = CaptureSink::default();
    let mut version = 1;
    let (mut topo, telemetry) = start(generator_pipeline(version, &rec, None)).await;
    let mut with_extra = false;
    for i in 0..50 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let changes = match i % 4 {
            0 => {
                version += 1;
                topo.apply(generator_pipeline(
                    version,
                    &rec,
                    with_extra.then_some(&extra),
                ))
                .await
            }
            1 => {
                with_extra = true;
                topo.apply(generator_pipeline(version, &rec, Some(&extra)))
                    .await
            }
            2 => {
                with_extra = false;
                topo.apply(generator_pipeline(version, &rec, None)).await
            }
            _ => {
                topo.apply(generator_pipeline(
                    version,
                    &rec,
                    with_extra.then_some(&extra),
                ))
                .await
            }
        }
        .unwrap_or_else(|e| panic!("reload {i} applies: {e}"));
        match i % 4 {
            0 => assert_eq!(changes.changed, vec!["stamp".to_string()]),
            1 => assert_eq!(changes.added, vec!["extra".to_string()]),
            2 => assert_eq!(changes.removed, vec!["extra".to_string()]),
            _ => assert!(changes.is_empty(), "{changes:?}"),
        }
        assert!(changes.aborted.is_empty(), "{changes:?}");
    }
    assert_eq!(topo.stop(Duration::from_secs(10)).await, Drained::Complete);

    let emitted = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "gen")
        .expect("gen")
        .sent
        .load(Ordering::Relaxed) as i64;
    assert!(
        emitted > 10_000,
        "the generator ran through the reloads: {emitted}"
    );
    let values = rec.values();
    let mut seqs: Vec<i64> = values.iter().map(|v| int(v, "seq")).collect();
    let versions: Vec<i64> = values.iter().map(|v| int(v, "version")).collect();
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]),
        "versions went back"
    );
    assert_eq!(versions.first(), Some(&1));
    assert_eq!(versions.last(), Some(&(version as i64)));
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..emitted).collect::<Vec<_>>(),
        "every sequence number exactly once"
    );
    assert!(
        !extra.values().is_empty(),
        "the added sink received events while it existed"
    );
}

struct Load {
    ok: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn post_load(port: u16, clients: usize) -> Load {
    let (ok, failures, stop) = (
        Arc::default(),
        Arc::default(),
        Arc::new(AtomicBool::new(false)),
    );
    let tasks = (0..clients)
        .map(|client| {
            let (ok, failures, stop): (Arc<AtomicU64>, Arc<AtomicU64>, Arc<AtomicBool>) =
                (Arc::clone(&ok), Arc::clone(&failures), Arc::clone(&stop));
            tokio::spawn(async move {
                // A new connection per request, so a refused connect would show.
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()
                    .expect("client");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!("{{\"client\":{client},\"n\":{n}}}");
                    match http
                        .post(format!("http://127.0.0.1:{port}/"))
                        .body(body)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(r) => {
                            eprintln!("status {}", r.status());
                            failures.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            eprintln!("error {e}");
                            failures.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    n += 1;
                }
            })
        })
        .collect();
    Load {
        ok,
        failures,
        stop,
        tasks,
    }
}

fn webhook_pipeline(port: u16, timeout_s: u32, version: u32, rec: &CaptureSink) -> Pipeline {
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{port}", request_timeout: {timeout_s}s }}
transforms:
  stamp: {{ type: remap, inputs: [hook], source: ".version = {version}" }}
"#
    ));
    rec.attach(&mut p, "rec", &["stamp"], 1000);
    validated(p)
}

async fn reload_under_load(change_webhook: bool) {
    let port = free_port();
    let rec = CaptureSink::default();
    let (mut topo, _) = start(webhook_pipeline(port, 30, 1, &rec)).await;
    wait_for_port(port).await;
    let load = post_load(port, 4);
    for i in 0..20u32 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let timeout = if change_webhook { 30 + i + 1 } else { 30 };
        let changes = topo
            .apply(webhook_pipeline(port, timeout, i + 2, &rec))
            .await
            .unwrap_or_else(|e| panic!("reload {i}: {e}"));
        let mut want = vec!["stamp".to_string()];
        if change_webhook {
            want.insert(0, "hook".to_string());
        }
        let mut got = changes.changed.clone();
        got.sort();
        assert_eq!(got, want);
    }
    load.stop.store(true, Ordering::Relaxed);
    for t in load.tasks {
        t.await.expect("client");
    }
    let ok = load.ok.load(Ordering::Relaxed);
    assert_eq!(
        load.failures.load(Ordering::Relaxed),
        0,
        "{ok} requests answered 200"
    );
    assert!(ok > 100, "load ran: {ok} requests");
    assert_eq!(topo.stop(Duration::from_secs(10)).await, Drained::Complete);
    assert_eq!(
        rec.values().len() as u64,
        ok,
        "every accepted event was delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_under_load_sees_no_error_while_other_components_reload() {
    reload_under_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_webhook_hands_its_socket_over_without_refusing_connections() {
    reload_under_load(true).await;
}

#[tokio::test]
async fn a_reload_that_fails_to_build_changes_nothing() {
    let port = free_port();
    let rec = CaptureSink::default();
    let (mut topo, telemetry) = start(webhook_pipeline(port, 30, 1, &rec)).await;
    wait_for_port(port).await;

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr").port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{port}" }}
  second: {{ type: webhook, address: "127.0.0.1:{busy}" }}
transforms:
  stamp: {{ type: remap, inputs: [hook, second], source: ".version = 2" }}
"#
    ));
    rec.attach(&mut p, "rec", &["stamp"], 1000);
    let e = topo.apply(validated(p)).await.expect_err("port in use");
    assert!(
        e.to_string().contains(&format!(
            "component `second`: cannot listen on 127.0.0.1:{busy}"
        )),
        "{e}"
    );
    assert!(
        telemetry.components().iter().all(|c| c.id != "second"),
        "no trace of the failed component"
    );

    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/"))
        .body(r#"{"a":1}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200, "the old pipeline still serves");
    assert_eq!(rec.ints("version"), vec![1], "with the old remap");
    topo.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn editing_a_vrl_file_rebuilds_only_its_remap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = dir.path().join("p.vrl");
    std::fs::write(&program, ".version = 1\n").expect("write");
    let text = format!(
        r#"
sources:
  gen: {{ type: generator, rate: 1000, batch_size: 10, format: '{{"seq": {{{{seq}}}}}}' }}
transforms:
  stamp: {{ type: remap, inputs: [gen], file: "{}" }}
  other: {{ type: remap, inputs: [stamp], source: ".other = true" }}
"#,
        program.display()
    );
    let rec = CaptureSink::default();
    let pipeline = |text: &str| {
        let mut p = parse(text);
        rec.attach(&mut p, "rec", &["other"], 1000);
        validated(p)
    };
    let (mut topo, _) = start(pipeline(&text)).await;
    common::eventually("version 1 delivered", || !rec.values().is_empty()).await;
    let changes = topo.apply(pipeline(&text)).await.expect("same");
    assert!(changes.is_empty(), "{changes:?}");
    std::fs::write(&program, ".version = 2\n").expect("write");
    let changes = topo.apply(pipeline(&text)).await.expect("edited");
    assert_eq!(changes.changed, vec!["stamp".to_string()]);
    assert!(topo.pipeline().watched_files().contains(&program));
    tokio::time::sleep(Duration::from_millis(50)).await;
    topo.stop(Duration::from_secs(5)).await;
    let versions = rec.ints("version");
    assert_eq!(versions.first(), Some(&1));
    assert_eq!(versions.last(), Some(&2));
}

#[tokio::test]
async fn rewiring_and_buffer_size_apply_without_rebuilding() {
    let text = |inputs: &str, max: usize| {
        format!(
            r#"
sources:
  a: {{ type: generator, rate: 1000, batch_size: 10, format: '{{"from": "a"}}' }}
  b: {{ type: generator, rate: 1000, batch_size: 10, format: '{{"from": "b"}}' }}
sinks:
  out: {{ type: blackhole, inputs: [{inputs}], buffer: {{ max_events: {max} }} }}
"#
        )
    };
    let (mut topo, telemetry) = start(validated(parse(&text("a", 100)))).await;
    let changes = topo
        .apply(validated(parse(&text("a, b", 300))))
        .await
        .expect("rewired");
    assert!(
        changes.is_empty(),
        "inputs and buffer size are not a rebuild: {changes:?}"
    );
    let out = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "out")
        .expect("out");
    assert_eq!(out.buffered_events().map(|(_, cap)| cap), Some(300));
    common::eventually("both sources feed the sink", || {
        out.received.load(Ordering::Relaxed) > 50
    })
    .await;
    topo.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_replaced_sink_stuck_on_delivery_hands_its_events_to_its_replacement() {
    use tokio::sync::Semaphore;
    let yaml = "sources:\n  gen: { type: generator, count: 10, format: '{\"seq\": {{seq}}}' }\n";
    let stuck = CaptureSink {
        gate: Some(Arc::new(Semaphore::new(0))),
        ..CaptureSink::default()
    };
    let mut p = parse(yaml);
    stuck.attach(&mut p, "out", &["gen"], 100);
    let options = sluice::topology::TopologyOptions {
        drain_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let telemetry = sluice::telemetry::Telemetry::new();
    let mut topo = sluice::topology::start(validated(p), Arc::clone(&telemetry), &options)
        .await
        .expect("starts");
    let out = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "out")
        .expect("out");
    common::eventually("the stuck sink holds the batch", || {
        out.received.load(Ordering::Relaxed) == 10
    })
    .await;
    assert!(stuck.values().is_empty(), "nothing delivered while stuck");

    let fresh = CaptureSink::default();
    let mut p = parse(yaml);
    fresh.attach(&mut p, "out", &["gen"], 100);
    p.sinks["out"].fingerprint = 1;
    let started = std::time::Instant::now();
    let changes = topo.apply(validated(p)).await.expect("applies");
    assert_eq!(changes.changed, vec!["out".to_string()]);
    assert!(
        changes.aborted.is_empty(),
        "the stuck sink handed over instead of being aborted"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no wait for the drain deadline"
    );
    common::eventually("the replacement delivers the handed-back events", || {
        fresh.values().len() == 10
    })
    .await;
    let mut seqs = fresh.ints("seq");
    seqs.sort_unstable();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    assert!(stuck.values().is_empty());
}

/// A reload that puts a new transform between a source and a sink moves the sink's only
/// producer. The sink's buffer must stay open across the rewiring whatever order the
/// outputs are rewired in (a map's order, so the test repeats with fresh topologies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_transform_in_front_of_a_sink_keeps_the_sink_wired() {
    let before = r#"
sources:
  gen: { type: generator, rate: 2000, batch_size: 10, format: '{"n": 1}' }
sinks:
  out: { type: blackhole, inputs: [gen] }
"#;
    let after = r#"
sources:
  gen: { type: generator, rate: 2000, batch_size: 10, format: '{"n": 1}' }
transforms:
  t: { type: remap, inputs: [gen], source: ".n = 2" }
sinks:
  out: { type: blackhole, inputs: [t] }
"#;
    for round in 0..12 {
        let (mut topo, telemetry) = start(validated(parse(before))).await;
        let component = |id: &str| {
            telemetry
                .components()
                .into_iter()
                .find(|c| c.id == id)
                .expect("component")
        };
        let out = component("out");
        common::eventually("events reach the sink", || {
            out.received.load(Ordering::Relaxed) > 20
        })
        .await;
        let changes = topo.apply(validated(parse(after))).await.expect("applies");
        assert_eq!(changes.added, ["t"], "round {round}");
        let at_reload = out.received.load(Ordering::Relaxed);
        common::eventually("events reach the sink through the new transform", || {
            out.received.load(Ordering::Relaxed) > at_reload + 50
        })
        .await;
        assert_eq!(
            component("t").errors.load(Ordering::Relaxed),
            0,
            "round {round}: the transform always found the sink"
        );
        topo.stop(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn editing_a_prometheus_rule_file_rebuilds_its_alert_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yml");
    let write = |expr: &str| {
        std::fs::write(
            &rules,
            format!("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: {expr}\n"),
        )
        .expect("write")
    };
    write("up == 0");
    let text = format!(
        r#"
sources:
  gen: {{ type: generator, rate: 10, batch_size: 1 }}
transforms:
  rules: {{ type: alert_rule, inputs: [gen], rule_files: ["{}"] }}
"#,
        rules.display()
    );
    let rec = CaptureSink::default();
    let pipeline = |text: &str| {
        let mut p = parse(text);
        rec.attach(&mut p, "rec", &["rules"], 1000);
        validated(p)
    };
    let (mut topo, _) = start(pipeline(&text)).await;
    assert!(topo.pipeline().watched_files().contains(&rules));
    let changes = topo.apply(pipeline(&text)).await.expect("same");
    assert!(changes.is_empty(), "{changes:?}");
    write("up == 1");
    let changes = topo.apply(pipeline(&text)).await.expect("edited");
    assert_eq!(changes.changed, vec!["rules".to_string()]);
    topo.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_a_source_again_and_again_keeps_its_sink_wired() {
    // A removed source closes its outputs when it ends. If it ended before its renamed
    // successor was wired, those outputs held the last senders into the sink's buffer,
    // which then closed for good: every later event was refused (a red team saw it on
    // 15–45% of renames of a webhook source).
    let rec = CaptureSink::default();
    let pipeline = |id: &str| {
        let mut p = parse(&format!(
            r#"
sources:
  {id}: {{ type: generator, rate: 500, batch_size: 5, format: '{{"from": "{id}"}}' }}
"#
        ));
        rec.attach(&mut p, "rec", &[id], 100);
        validated(p)
    };
    let arrived_from = |id: &str| {
        rec.values().iter().any(|v| match v {
            vrl::value::Value::Object(m) => {
                m.get("from").is_some_and(|f| f.to_string_lossy() == id)
            }
            _ => false,
        })
    };
    let (mut topo, _telemetry) = start(pipeline("gen_0")).await;
    common::eventually("the first generator's events arrive", || {
        arrived_from("gen_0")
    })
    .await;
    for round in 1..=20 {
        let id = format!("gen_{round}");
        let changes = topo.apply(pipeline(&id)).await.expect("applies");
        assert_eq!(changes.added, std::slice::from_ref(&id), "round {round}");
        common::eventually(&format!("round {round}: events of {id} arrive"), || {
            arrived_from(&id)
        })
        .await;
    }
    topo.stop(Duration::from_secs(5)).await;
}
