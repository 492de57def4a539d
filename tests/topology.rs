//! The engine end to end, in process: DAG shapes, named outputs, wildcards,
//! backpressure and acknowledgements.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{eventually, free_port, int, parse, start, string, wait_for_port};
use sluice::event::EventStatus;
use sluice::testing::CaptureSink;
use tokio::sync::Semaphore;

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}

#[tokio::test]
async fn fan_out_delivers_every_event_to_each_sink() {
    let mut p = parse(
        r#"
sources:
  gen: { type: generator, count: 1000, batch_size: 64, format: '{"seq": {{seq}}}' }
"#,
    );
    let (a, b) = (CaptureSink::default(), CaptureSink::default());
    a.attach(&mut p, "a", &["gen"], 100);
    b.attach(&mut p, "b", &["gen"], 100);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    let want: Vec<i64> = (0..1000).collect();
    assert_eq!(sorted(a.ints("seq")), want);
    assert_eq!(sorted(b.ints("seq")), want);
}

#[tokio::test]
async fn fan_in_merges_sources() {
    let mut p = parse(
        r#"
sources:
  one: { type: generator, count: 300, format: '{"seq": {{seq}}, "from": 1}' }
  two: { type: generator, count: 200, format: '{"seq": {{seq}}, "from": 2}' }
"#,
    );
    let sink = CaptureSink::default();
    sink.attach(&mut p, "all", &["one", "two"], 1000);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    let mut pairs: Vec<(i64, i64)> = sink
        .values()
        .iter()
        .map(|v| (int(v, "from"), int(v, "seq")))
        .collect();
    pairs.sort_unstable();
    let want: Vec<(i64, i64)> = (0..300)
        .map(|s| (1, s))
        .chain((0..200).map(|s| (2, s)))
        .collect();
    assert_eq!(pairs, want);
}

#[tokio::test]
async fn chained_transforms_apply_in_order() {
    let mut p = parse(
        r#"
sources:
  gen: { type: generator, count: 100, format: '{"seq": {{seq}}}' }
transforms:
  double:
    type: remap
    inputs: [gen]
    source: .double = to_int!(.seq) * 2
  evens:
    type: filter
    inputs: [double]
    condition: mod(to_int(.seq) ?? 1, 2) == 0
  tag:
    type: remap
    inputs: [evens]
    source: .tag = "even-" + to_string!(.double)
"#,
    );
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["tag"], 1000);
    let (mut topo, telemetry) = start(p).await;
    topo.finished().await;
    let values = sink.values();
    assert_eq!(values.len(), 50);
    for v in &values {
        let seq = int(v, "seq");
        assert_eq!(seq % 2, 0);
        assert_eq!(int(v, "double"), seq * 2);
        assert_eq!(string(v, "tag"), Some(format!("even-{}", seq * 2)));
    }
    let evens = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "evens")
        .expect("filter registered");
    assert_eq!(evens.discarded.load(Ordering::Relaxed), 50);
    assert_eq!(evens.sent.load(Ordering::Relaxed), 50);
}

#[tokio::test]
async fn failed_events_go_to_the_dropped_output() {
    let mut p = parse(
        r#"
sources:
  gen: { type: generator, count: 20, format: '{"seq": {{seq}}}' }
transforms:
  parse:
    type: remap
    inputs: [gen]
    drop_on_error: true
    source: |
      if mod(to_int!(.seq), 2) == 1 { .bad = parse_json!("{") }
      .ok = true
"#,
    );
    let (good, bad) = (CaptureSink::default(), CaptureSink::default());
    good.attach(&mut p, "good", &["parse"], 100);
    bad.attach(&mut p, "bad", &["parse.dropped"], 100);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    assert_eq!(
        sorted(good.ints("seq")),
        (0..20).step_by(2).collect::<Vec<_>>()
    );
    assert_eq!(
        sorted(bad.ints("seq")),
        (1..20).step_by(2).collect::<Vec<_>>()
    );
    for v in bad.values() {
        // The unchanged original plus the error: neither `.bad` nor `.ok` leaked in.
        assert_eq!(string(&v, "ok"), None);
        assert_eq!(string(&v, "bad"), None);
        let error = string(&v, "error").expect("error recorded");
        assert!(error.contains("parse_json"), "{error}");
    }
}

#[tokio::test]
async fn remap_errors_without_drop_on_error_pass_the_original_on() {
    let mut p = parse(
        r#"
sources:
  gen: { type: generator, count: 4, format: '{"seq": {{seq}}}' }
transforms:
  r:
    type: remap
    inputs: [gen]
    source: |
      .touched = true
      if to_int!(.seq) >= 2 { .bad = parse_json!("{") }
"#,
    );
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["r"], 100);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    let mut values = sink.values();
    values.sort_by_key(|v| int(v, "seq"));
    let touched: Vec<Option<String>> = values.iter().map(|v| string(v, "touched")).collect();
    assert_eq!(
        touched,
        vec![Some("true".into()), Some("true".into()), None, None]
    );
}

#[tokio::test]
async fn wildcards_match_ids_and_named_outputs() {
    let mut p = parse(
        r#"
sources:
  hooks_a: { type: generator, count: 3, format: '{"from": "a", "seq": {{seq}}}' }
  hooks_b: { type: generator, count: 4, format: '{"from": "b", "seq": {{seq}}}' }
  other:   { type: generator, count: 5, format: '{"from": "o", "seq": {{seq}}}' }
transforms:
  fail_all:
    type: remap
    inputs: [other]
    drop_on_error: true
    source: .x = parse_json!("{")
"#,
    );
    let (hooks, b_only, dropped) = (
        CaptureSink::default(),
        CaptureSink::default(),
        CaptureSink::default(),
    );
    hooks.attach(&mut p, "hooks", &["hooks_*"], 100);
    b_only.attach(&mut p, "b_only", &["*_b"], 100);
    dropped.attach(&mut p, "dropped", &["fail_*.dropped"], 100);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    let mut from: Vec<String> = hooks
        .values()
        .iter()
        .filter_map(|v| string(v, "from"))
        .collect();
    from.sort();
    assert_eq!(from, ["a", "a", "a", "b", "b", "b", "b"]);
    assert_eq!(sorted(b_only.ints("seq")), vec![0, 1, 2, 3]);
    assert_eq!(sorted(dropped.ints("seq")), vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn remap_can_split_one_event_into_many() {
    let mut p = parse(
        r#"
sources:
  gen: { type: generator, count: 3, format: '{"seq": {{seq}}}' }
transforms:
  split:
    type: remap
    inputs: [gen]
    source: '. = [{"seq": .seq, "part": 1}, {"seq": .seq, "part": 2}]'
"#,
    );
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["split"], 100);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    let mut pairs: Vec<(i64, i64)> = sink
        .values()
        .iter()
        .map(|v| (int(v, "seq"), int(v, "part")))
        .collect();
    pairs.sort_unstable();
    assert_eq!(pairs, vec![(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]);
}

#[tokio::test]
async fn backpressure_slows_the_generator_and_bounds_the_buffer() {
    const COUNT: i64 = 5000;
    const BOUND: usize = 500;
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, rate: 50000, count: {COUNT}, batch_size: 100, format: '{{"seq": {{{{seq}}}}}}' }}
"#
    ));
    let sink = CaptureSink {
        delay: Some(Duration::from_millis(10)),
        ..CaptureSink::default()
    };
    sink.attach(&mut p, "slow", &["gen"], BOUND);
    let started = std::time::Instant::now();
    let (mut topo, telemetry) = start(p).await;
    let components = telemetry.components();
    let generator = components
        .iter()
        .find(|c| c.id == "gen")
        .expect("gen")
        .clone();
    let slow = components
        .iter()
        .find(|c| c.id == "slow")
        .expect("slow")
        .clone();

    let mut max_buffered = 0;
    let mut generator_done_at = None;
    loop {
        let (len, cap) = slow.buffered_events().expect("sink has a buffer");
        assert_eq!(cap, BOUND);
        max_buffered = max_buffered.max(len);
        if generator_done_at.is_none() && generator.sent.load(Ordering::Relaxed) == COUNT as u64 {
            generator_done_at = Some(started.elapsed());
        }
        if slow.sent.load(Ordering::Relaxed) == COUNT as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    topo.finished().await;

    assert!(
        max_buffered <= BOUND,
        "buffer held {max_buffered} > {BOUND}"
    );
    assert!(max_buffered > 0, "the buffer was used");
    // Unhindered, 5000 events at 50k/s take 100 ms. The sink takes 10 ms per batch of
    // at most 100 events, so the generator can only have finished once the sink drained
    // all but BOUND events: at least 45 batches, 450 ms.
    let done = generator_done_at.expect("generator finished");
    assert!(
        done >= Duration::from_millis(450),
        "generator was not slowed: done after {done:?}"
    );
    assert_eq!(
        sink.ints("seq"),
        (0..COUNT).collect::<Vec<_>>(),
        "every sequence number once, in order"
    );
}

async fn post(port: u16, body: &'static str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/hook"))
        .body(body)
        .send()
        .await
        .expect("request completes")
}

fn webhook_pipeline(port: u16, transforms: &str) -> sluice::config::Pipeline {
    parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{port}", path: /hook }}
{transforms}
"#
    ))
}

#[tokio::test]
async fn webhook_answers_only_after_the_sink_settled() {
    let port = free_port();
    let mut p = webhook_pipeline(port, "");
    let gate = Arc::new(Semaphore::new(0));
    let sink = CaptureSink {
        gate: Some(Arc::clone(&gate)),
        ..CaptureSink::default()
    };
    sink.attach(&mut p, "out", &["hook"], 100);
    let (topo, telemetry) = start(p).await;
    wait_for_port(port).await;

    let request = tokio::spawn(post(port, r#"[{"id": 1}, {"id": 2}]"#));
    let out = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "out")
        .expect("sink");
    eventually("the sink holds the batch", || {
        out.received.load(Ordering::Relaxed) == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!request.is_finished(), "answered before the sink settled");
    assert!(sink.values().is_empty());

    gate.add_permits(1);
    let response = request.await.expect("joined");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), r#"{"accepted":2}"#);
    assert_eq!(sink.ints("id"), vec![1, 2]);
    assert_eq!(
        topo.stop(Duration::from_secs(5)).await,
        sluice::topology::Drained::Complete
    );
}

#[tokio::test]
async fn webhook_answers_5xx_when_the_sink_fails() {
    for (status, code) in [(EventStatus::Errored, 503), (EventStatus::Rejected, 500)] {
        let port = free_port();
        let mut p = webhook_pipeline(port, "");
        let sink = CaptureSink {
            status,
            ..CaptureSink::default()
        };
        sink.attach(&mut p, "out", &["hook"], 100);
        let (topo, _) = start(p).await;
        wait_for_port(port).await;
        let response = post(port, r#"{"id": 7}"#).await;
        assert_eq!(response.status(), code, "sink settles {status:?}");
        assert_eq!(sink.ints("id"), vec![7], "the sink did get the event");
        topo.stop(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn one_failing_copy_fails_the_request_even_if_another_sink_delivered() {
    let port = free_port();
    let mut p = webhook_pipeline(port, "");
    let ok = CaptureSink::default();
    let failing = CaptureSink {
        status: EventStatus::Errored,
        ..CaptureSink::default()
    };
    ok.attach(&mut p, "ok", &["hook"], 100);
    failing.attach(&mut p, "failing", &["hook"], 100);
    let (topo, _) = start(p).await;
    wait_for_port(port).await;
    let response = post(port, r#"{"id": 1}"#).await;
    assert_eq!(response.status(), 503);
    assert_eq!(ok.ints("id"), vec![1]);
    assert_eq!(failing.ints("id"), vec![1]);
    topo.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn filtered_events_count_as_delivered() {
    let port = free_port();
    let mut p = webhook_pipeline(
        port,
        r#"
transforms:
  only_errors: { type: filter, inputs: [hook], condition: '.level == "error"' }
"#,
    );
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["only_errors"], 100);
    let (topo, _) = start(p).await;
    wait_for_port(port).await;
    let response = post(
        port,
        "{\"level\":\"info\",\"id\":1}\n{\"level\":\"error\",\"id\":2}\n",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), r#"{"accepted":2}"#);
    assert_eq!(sink.ints("id"), vec![2]);
    topo.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn malformed_bodies_get_400_with_the_reason_and_reach_nothing() {
    let port = free_port();
    let mut p = webhook_pipeline(port, "");
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["hook"], 100);
    let (topo, _) = start(p).await;
    wait_for_port(port).await;
    let response = post(port, "{\"id\": 1}\n{\"id\": ").await;
    assert_eq!(response.status(), 400);
    let body = response.text().await.expect("body");
    assert!(
        body.contains("invalid JSON: ") && body.contains("at line 2 column"),
        "{body}"
    );
    assert!(body.contains(r#""decoder":"json""#), "{body}");
    let response = post(port, "").await;
    assert_eq!(response.status(), 400);
    assert!(sink.values().is_empty());
    topo.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn stop_drains_everything_in_flight() {
    let mut p = parse(
        r#"
sources:
  gen: { type: generator, count: 20000, batch_size: 500, format: '{"seq": {{seq}}}' }
transforms:
  r: { type: remap, inputs: [gen], source: .seen = true }
"#,
    );
    let gate = Arc::new(Semaphore::new(0));
    let sink = CaptureSink {
        gate: Some(Arc::clone(&gate)),
        ..CaptureSink::default()
    };
    sink.attach(&mut p, "out", &["r"], 100_000);
    let (topo, telemetry) = start(p).await;
    let generator = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "gen")
        .expect("gen");
    eventually("generator emitted everything", || {
        generator.sent.load(Ordering::Relaxed) == 20000
    })
    .await;
    let stopping = tokio::spawn(topo.stop(Duration::from_secs(30)));
    gate.add_permits(1_000_000);
    assert_eq!(
        stopping.await.expect("joined"),
        sluice::topology::Drained::Complete
    );
    assert_eq!(sorted(sink.ints("seq")), (0..20000).collect::<Vec<_>>());
}

#[tokio::test]
async fn remap_reads_its_program_from_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = dir.path().join("stamp.vrl");
    std::fs::write(&program, ".from_file = true\n.seq2 = to_int!(.seq) + 100\n").expect("write");
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 3, format: '{{"seq": {{{{seq}}}}}}' }}
transforms:
  r: {{ type: remap, inputs: [gen], file: "{}" }}
"#,
        program.display()
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["r"], 100);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    assert_eq!(sorted(sink.ints("seq2")), vec![100, 101, 102]);
    assert!(
        sink.values()
            .iter()
            .all(|v| string(v, "from_file").as_deref() == Some("true"))
    );

    let mut p = parse(
        "sources:\n  gen: { type: generator }\ntransforms:\n  r: { type: remap, inputs: [gen], file: /nonexistent/x.vrl }\n",
    );
    CaptureSink::default().attach(&mut p, "out", &["r"], 100);
    let e = p.validate().expect_err("missing file").to_string();
    assert!(e.contains("cannot read VRL file /nonexistent/x.vrl"), "{e}");
}

#[tokio::test]
async fn stop_gives_up_at_the_deadline_and_names_what_was_stuck() {
    let mut p =
        parse("sources:\n  gen: { type: generator, count: 10, format: '{\"seq\": {{seq}}}' }\n");
    let sink = CaptureSink {
        gate: Some(Arc::new(Semaphore::new(0))),
        ..CaptureSink::default()
    };
    sink.attach(&mut p, "stuck", &["gen"], 100);
    let (topo, telemetry) = start(p).await;
    let stuck = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "stuck")
        .expect("sink");
    eventually("the sink holds the batch", || {
        stuck.received.load(Ordering::Relaxed) == 10
    })
    .await;
    let drained = topo.stop(Duration::from_millis(100)).await;
    assert_eq!(
        drained,
        sluice::topology::Drained::TimedOut(vec!["stuck".into()])
    );
    assert_eq!(
        stuck.state(),
        sluice::telemetry::ComponentState::Failed("aborted at the drain deadline".into())
    );
}
