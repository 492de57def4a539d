//! Metric events per second through `alert_rule` with 10,000 label sets (three rules:
//! an instant threshold, a windowed average and an error-rate ratio), against a no-op
//! transform in the same run; plus one evaluation of all 30,000 series.
//!
//! Run: `cargo bench --bench alert_rule`; it prints the ratio to the baseline at the end.
//!
//! `alert_rule/prometheus_rules_100k_series_50_rules`: one evaluation of a Prometheus
//! rule file (50 alerting rules: thresholds, `avg_over_time`, `rate`, `max by`, and a
//! per-job ratio) over 100,000 series with six samples each. Its baseline is a real
//! Prometheus evaluating the same file over the same series:
//! `benches/scenarios/prometheus-rules.sh` (it runs this bench with
//! `SLUICE_PROM_BENCH_DIR` set, which writes the rule file and the series there).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice::component::{Transform, TransformContext, TransformOutputs};
use sluice::config::parse_texts;
use sluice::event::{Event, EventBatch, SourceId};
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
    let source = SourceId::intern("bench");
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
                        source,
                        chrono::Utc::now(),
                    )
                })
                .collect()
        })
        .collect()
}

fn build() -> Box<dyn Transform> {
    build_from(RULES)
}

fn build_from(rules: &str) -> Box<dyn Transform> {
    let text = format!("sources:\n  in: {{ type: generator }}\ntransforms:\n  t:{rules}");
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

/// Metrics, instances per metric and jobs of the Prometheus comparison.
const PROM_METRICS: usize = 10;
const PROM_INSTANCES: usize = 10_000;
const PROM_JOBS: usize = 100;

/// Five rules per metric, 50 in all.
fn prom_rules() -> String {
    let mut out = String::from("groups:\n  - name: bench\n    interval: 1ms\n    rules:\n");
    for k in 0..PROM_METRICS {
        for (alert, expr) in [
            ("High", format!("m{k} > 95")),
            ("Sustained", format!("avg_over_time(m{k}[5m]) > 90")),
            ("Rising", format!("rate(m{k}[5m]) > 50")),
            ("JobMax", format!("max by (job) (m{k}) > 98")),
            (
                "JobRatio",
                format!("sum by (job) (m{k}) / count by (job) (m{k}) > 90"),
            ),
        ] {
            out.push_str(&format!(
                "      - alert: M{k}{alert}\n        expr: {expr}\n        annotations:\n          summary: \"{{{{ $labels.instance }}}} at {{{{ $value | humanize }}}}\"\n"
            ));
        }
    }
    out
}

/// The value of series `n` of metric `k` in round `r`: a few percent above 95.
fn prom_value(k: usize, n: usize, r: usize) -> f64 {
    ((n * 7 + k * 13 + r) % 100) as f64
}

fn prom_bench(c: &mut Criterion) {
    let dir = std::env::var_os("SLUICE_PROM_BENCH_DIR").map(PathBuf::from);
    let tmp = tempfile::tempdir().expect("dir");
    let at = dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&at).expect("dir");
    let rules_file = at.join("rules.yml");
    std::fs::write(&rules_file, prom_rules()).expect("write");
    if dir.is_some() {
        // Prometheus scrapes this; the rounds move as it scrapes, like the feed below.
        let mut text = String::new();
        for k in 0..PROM_METRICS {
            text.push_str(&format!("# TYPE m{k} gauge\n"));
            for n in 0..PROM_INSTANCES {
                text.push_str(&format!(
                    "m{k}{{instance=\"i{n}\",job=\"j{}\"}} {}\n",
                    n % PROM_JOBS,
                    prom_value(k, n, 0)
                ));
            }
        }
        std::fs::write(at.join("metrics"), text).expect("write");
    }
    let mut t = build_from(&format!(
        "\n    type: alert_rule\n    inputs: [in]\n    rule_files: [{:?}]\n    max_series: 200000\n",
        rules_file.display().to_string()
    ));
    let source = SourceId::intern("bench");
    for r in 0..6 {
        for k in 0..PROM_METRICS {
            let batch: EventBatch = (0..PROM_INSTANCES)
                .map(|n| {
                    let json = format!(
                        r#"{{"event_type":"metric","name":"m{k}","value":{},"labels":{{"instance":"i{n}","job":"j{}"}}}}"#,
                        prom_value(k, n, r),
                        n % PROM_JOBS
                    );
                    Event::new(
                        serde_json::from_str(&json).expect("json"),
                        source,
                        chrono::Utc::now(),
                    )
                })
                .collect();
            t.process(batch, &mut TransformOutputs::new(0));
        }
    }
    let mut group = c.benchmark_group("alert_rule");
    group.sample_size(10);
    group.throughput(Throughput::Elements((PROM_METRICS * PROM_INSTANCES) as u64));
    group.bench_function("prometheus_rules_100k_series_50_rules", |b| {
        b.iter(|| {
            let mut out = TransformOutputs::new(0);
            t.flush(&mut out);
            out
        })
    });
    group.finish();
}

criterion_group!(benches, bench, prom_bench);
criterion_main!(benches);
