//! Metric events per second through `alert_rule` with 10,000 label sets (three rules:
//! an instant threshold, a windowed average and an error-rate ratio), against a no-op
//! transform in the same run; plus one evaluation of all 30,000 series.
//!
//! Run: `cargo bench --bench alert_rule`; it prints the ratio to the baseline at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice::component::{Transform, TransformContext, TransformOutputs};
use sluice::config::parse_texts;
use sluice::event::{Event, EventBatch};
use sluice::telemetry::{ComponentKind, Telemetry};

const BATCH: usize = 1000;
const HOSTS: usize = 10_000;

const RULES: &str = r#"
    type: alert_rule
    inputs: [in]
    rules:
      - name: HighCPU
        expr: cpu_usage > 80
        for: 5m
        group_by: [host]
        annotations: { summary: "CPU {{ value }}% on {{ labels.host }}" }
      - name: SustainedCPU
        expr: avg(cpu_usage[10s]) > 90
        group_by: [host]
      - name: ErrorRate
        expr: sum(messages_failed[10s]) / sum(messages_sent[10s]) > 0.05
        group_by: [host]
"#;

/// `batches` batches covering every host, cycling through three metric names.
fn batches() -> Vec<EventBatch> {
    let source: Arc<str> = Arc::from("bench");
    let names = ["cpu_usage", "messages_sent", "messages_failed"];
    (0..HOSTS * 3 / BATCH)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    let n = b * BATCH + i;
                    let json = format!(
                        r#"{{"event_type":"metric","name":"{}","value":{},"labels":{{"host":"h{}","env":"prod"}}}}"#,
                        names[n % 3],
                        n % 97,
                        n % HOSTS
                    );
                    Event::new(
                        serde_json::from_str(&json).expect("json"),
                        Arc::clone(&source),
                        chrono::Utc::now(),
                    )
                })
                .collect()
        })
        .collect()
}

fn build() -> Box<dyn Transform> {
    let text = format!("sources:\n  in: {{ type: generator }}\ntransforms:\n  t:{RULES}");
    let p = parse_texts(&[(PathBuf::from("bench.yaml"), text)], |_| None).expect("parses");
    let def = &p.transforms["t"];
    let telemetry = Telemetry::new();
    let cx = TransformContext {
        file_notices: Default::default(),
        id: Arc::from("t"),
        metrics: telemetry.component("t", ComponentKind::Transform, "alert_rule"),
        clock: Arc::new(sluice::clock::TokioClock),
        data_dir: None,
    };
    def.config.build(&cx).expect("builds")
}

struct Noop;

impl Transform for Noop {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        out.default.extend(batch);
    }
}

/// Average ns per event of `process` over every batch, `rounds` times.
fn ns_per_event(t: &mut dyn Transform, input: &[EventBatch], rounds: usize) -> f64 {
    let mut spent = std::time::Duration::ZERO;
    for _ in 0..rounds {
        for b in input {
            let b = b.clone();
            let mut out = TransformOutputs::new(0);
            let start = Instant::now();
            t.process(b, &mut out);
            spent += start.elapsed();
            drop(out);
        }
    }
    spent.as_nanos() as f64 / (rounds * input.len() * BATCH) as f64
}

fn bench(c: &mut Criterion) {
    let input = batches();
    let mut rules = build();
    // Steady state: every label set exists before measuring.
    for b in &input {
        rules.process(b.clone(), &mut TransformOutputs::new(0));
    }
    let mut noop = Noop;
    let mut group = c.benchmark_group("alert_rule");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut i = 0;
    group.bench_function("baseline_noop", |b| {
        b.iter_batched(
            || {
                i += 1;
                input[i % input.len()].clone()
            },
            |batch| {
                let mut out = TransformOutputs::new(0);
                noop.process(batch, &mut out);
                out
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("process_10k_label_sets", |b| {
        b.iter_batched(
            || {
                i += 1;
                input[i % input.len()].clone()
            },
            |batch| {
                let mut out = TransformOutputs::new(0);
                rules.process(batch, &mut out);
                out
            },
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements((HOSTS * 3) as u64));
    group.bench_function("evaluate_30k_series", |b| {
        b.iter(|| {
            let mut out = TransformOutputs::new(0);
            rules.flush(&mut out);
            out
        })
    });
    group.finish();

    let base = ns_per_event(&mut noop, &input, 3);
    let alert = ns_per_event(rules.as_mut(), &input, 3);
    println!(
        "alert_rule: {alert:.0} ns/event ({:.0} events/s) vs no-op {base:.0} ns/event: ratio {:.1}x",
        1e9 / alert,
        alert / base
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
