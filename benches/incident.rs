//! Alerts per second through `incident` holding 100,000 open incidents, against the
//! idiom it replaces in the same run (`dedupe` on fingerprint and status over the same
//! 100,000 alerts), and the memory one open incident costs.
//!
//! The steady state is the common case: vendors re-sending alerts of incidents already
//! open (repeats update `count` and `last_seen`; nothing leaves). A second figure is
//! the cost of a timer pass (`flush`) over all of them.
//!
//! Run: `cargo bench --bench incident`; it prints the ratio and the growth of resident
//! memory per open incident (allocator overhead included).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice::component::{Transform, TransformContext, TransformOutputs};
use sluice::config::parse_texts;
use sluice::event::{Event, EventBatch, SourceId};
use sluice::telemetry::{ComponentKind, Telemetry};

/// Resident memory of this process, in bytes (Linux).
fn rss() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| pages * 4096.0)
}

const BATCH: usize = 1000;
const INCIDENTS: usize = 100_000;

/// A normalized alert as the Alertmanager decoder makes it.
fn alert(n: usize) -> Event {
    let json = format!(
        r#"{{"event_type":"alert","source":"alertmanager","kind":"prometheus_alert","status":"firing","severity":"high","fingerprint":"{n:032x}","service":"svc{}","summary":"HighLatency on host h{n}","description":"p99 above 2s for 5m","labels":{{"alertname":"HighLatency","instance":"h{n}:9100","job":"node","severity":"high"}},"url":"http://prometheus:9090/graph","starts_at":"2026-03-01T12:00:00Z"}}"#,
        n % 50
    );
    Event::new(
        serde_json::from_str(&json).expect("json"),
        SourceId::intern("bench"),
        chrono::Utc::now(),
    )
}

fn batches() -> Vec<EventBatch> {
    (0..INCIDENTS / BATCH)
        .map(|b| (0..BATCH).map(|i| alert(b * BATCH + i)).collect())
        .collect()
}

fn build(component: &str) -> Box<dyn Transform> {
    let text = format!("sources:\n  in: {{ type: generator }}\ntransforms:\n  t: {component}\n");
    let p =
        parse_texts(&[(PathBuf::from("bench.yaml"), text.to_owned())], |_| None).expect("parses");
    let cx = TransformContext {
        file_notices: Default::default(),
        id: Arc::from("t"),
        metrics: Telemetry::new().component("t", ComponentKind::Transform, "bench"),
        clock: Arc::new(sluice::clock::TokioClock),
        data_dir: None,
    };
    p.transforms["t"].config.build(&cx).expect("builds")
}

fn ns_per_event(t: &mut dyn Transform, input: &[EventBatch], rounds: usize) -> f64 {
    let mut spent = std::time::Duration::ZERO;
    for _ in 0..rounds {
        for b in input {
            let b = b.clone();
            let mut out = TransformOutputs::new(1);
            let start = Instant::now();
            t.process(b, &mut out);
            spent += start.elapsed();
        }
    }
    spent.as_nanos() as f64 / (rounds * input.len() * BATCH) as f64
}

fn bench(c: &mut Criterion) {
    let input = batches();
    let before = rss();
    let mut incidents = build("{ type: incident, inputs: [in], max_incidents: 200000 }");
    // Every incident opens before measuring; its page is delivered, as a sink would.
    for b in &input {
        let mut out = TransformOutputs::new(1);
        incidents.process(b.clone(), &mut out);
        for e in out.default {
            e.settle(sluice::event::EventStatus::Delivered);
        }
    }
    let per_incident = (rss() - before) / INCIDENTS as f64;
    let mut dedupe =
        build("{ type: dedupe, inputs: [in], fields: [fingerprint, status], cache_size: 200000 }");
    for b in &input {
        dedupe.process(b.clone(), &mut TransformOutputs::new(1));
    }
    let mut group = c.benchmark_group("incident");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, t) in [
        ("baseline_dedupe_100k", &mut dedupe),
        ("repeats_100k_open", &mut incidents),
    ] {
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    i += 1;
                    input[i % input.len()].clone()
                },
                |batch| {
                    let mut out = TransformOutputs::new(1);
                    t.process(batch, &mut out);
                    out
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.throughput(Throughput::Elements(INCIDENTS as u64));
    group.bench_function("timers_100k_open", |b| {
        b.iter(|| {
            let mut out = TransformOutputs::new(1);
            incidents.flush(&mut out);
            out
        })
    });
    group.finish();

    let base = ns_per_event(dedupe.as_mut(), &input, 3);
    let cost = ns_per_event(incidents.as_mut(), &input, 3);
    println!(
        "incident: {cost:.0} ns/alert ({:.0} alerts/s) with {INCIDENTS} open vs dedupe {base:.0} ns/alert: ratio {:.1}x; {per_incident:.0} bytes of RSS per open incident",
        1e9 / cost,
        cost / base
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
