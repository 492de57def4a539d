//! `subscription` with 10,000 subscriptions: events/s through the indexed transform,
//! next to (a) the same transform matching by a linear scan over the same subscriptions
//! and (b) a no-op transform, on the same batches of 1,000 alert-like events, in the
//! same run. Prints events/s and the ratios after the criterion groups.
//!
//! Run: `cargo bench --bench subscription`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice::component::{Transform, TransformContext, TransformOutputs};
use sluice::event::{Event, EventBatch, SourceId};
use sluice::telemetry::{ComponentKind, Telemetry};
use sluice::transforms::subscription::SubscriptionConfig;

const BATCH: usize = 1000;
const SUBSCRIPTIONS: usize = 10_000;
const SERVICES: usize = 500;
const PROJECTS: usize = 200;
const SEVERITIES: &[&str] = &["critical", "high", "medium", "low", "info"];
const REGIONS: &[&str] = &[
    "eu-west-1",
    "eu-central-1",
    "us-east-1",
    "us-west-2",
    "ap-south-1",
    "ap-northeast-1",
    "sa-east-1",
    "ca-central-1",
];
const ENVS: &[&str] = &["prod", "staging", "dev"];

fn pick<'a>(rng: &mut fastrand::Rng, from: &[&'a str]) -> &'a str {
    from[rng.usize(..from.len())]
}

/// A spread like a large organization's: nearly every subscription belongs to one of 200
/// projects and names one to three of 500 services; most take alerts only, many a
/// severity range, some a region or label filters; one in fifty leaves the service open.
/// An event then matches a few subscriptions (printed below), as in production.
fn subscriptions_yaml() -> String {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out = String::from("subscriptions:\n");
    for i in 0..SUBSCRIPTIONS {
        let mut s = format!("  - name: s{i}\n");
        if rng.u8(..20) != 0 {
            s.push_str(&format!("    project_id: proj{}\n", rng.usize(..PROJECTS)));
        }
        match rng.u8(..10) {
            0..8 => s.push_str("    event_types: [alert]\n"),
            8 => s.push_str("    event_types: [alert, metric]\n"),
            _ => {}
        }
        if rng.u8(..50) != 0 {
            let services: Vec<String> = (0..rng.usize(1..=3))
                .map(|_| format!("svc{}", rng.usize(..SERVICES)))
                .collect();
            s.push_str(&format!("    services: [{}]\n", services.join(", ")));
        }
        match rng.u8(..10) {
            0..6 => s.push_str("    severity_levels: [critical, high]\n"),
            6 | 7 => s.push_str("    severity_levels: [critical]\n"),
            _ => {}
        }
        if rng.u8(..10) < 3 {
            s.push_str(&format!("    regions: [{}]\n", pick(&mut rng, REGIONS)));
        }
        match rng.u8(..10) {
            0..5 => s.push_str("    custom_filters: { env: prod }\n"),
            5 | 6 => s.push_str(&format!(
                "    custom_filters: ['team = team{}', 'env != dev']\n",
                rng.u8(..50)
            )),
            7 => s.push_str("    custom_filters: ['host =~ \"web-.*\"']\n"),
            _ => {}
        }
        out.push_str(&s);
    }
    out
}

fn events() -> EventBatch {
    let mut rng = fastrand::Rng::with_seed(11);
    let source = SourceId::intern("bench");
    (0..BATCH)
        .map(|i| {
            let event_type = match rng.u8(..10) {
                0..7 => "alert",
                7 | 8 => "metric",
                _ => "log",
            };
            let json = format!(
                r#"{{"id":"e{i}","event_type":"{event_type}","status":"firing","fingerprint":"fp{}","service":"svc{}","severity":"{}","region":"{}","project":"proj{}","labels":{{"env":"{}","team":"team{}","host":"{}-{}"}},"summary":"disk almost full"}}"#,
                rng.u32(..5000),
                rng.usize(..SERVICES),
                pick(&mut rng, SEVERITIES),
                pick(&mut rng, REGIONS),
                rng.usize(..PROJECTS),
                pick(&mut rng, ENVS),
                rng.u8(..50),
                if rng.bool() { "web" } else { "db" },
                rng.u8(..100),
            );
            Event::new(
                serde_json::from_str(&json).expect("json"),
                source,
                chrono::Utc::now(),
            )
        })
        .collect()
}

struct Noop;

impl Transform for Noop {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        out.default.extend(batch);
    }
}

fn transforms() -> Vec<(&'static str, Box<dyn Transform>, usize)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("subscriptions.yaml");
    std::fs::write(&file, subscriptions_yaml()).expect("write");
    let text = format!(
        "sources:\n  in: {{ type: generator }}\ntransforms:\n  t: {{ type: subscription, inputs: [in], file: \"{}\" }}\n",
        file.display()
    );
    let p = sluice::config::parse_texts(&[(PathBuf::from("bench.yaml"), text)], |_| None)
        .expect("parses");
    let config = &p.transforms["t"].config;
    let named = config.outputs().len();
    let telemetry = Telemetry::new();
    let cx = TransformContext {
        file_notices: Default::default(),
        id: Arc::from("t"),
        metrics: telemetry.component("t", ComponentKind::Transform, "subscription"),
        clock: Arc::new(sluice::clock::TokioClock),
        data_dir: None,
    };
    let started = Instant::now();
    let indexed = config.build(&cx).expect("builds");
    println!(
        "built {SUBSCRIPTIONS} subscriptions in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    // The same options, matched by a scan instead of the index.
    let yaml = std::fs::read_to_string(&file).expect("read");
    let inline: SubscriptionConfig = serde_saphyr::from_str(&yaml).expect("inline config");
    let linear = inline.build_linear_scan(&cx).expect("builds");
    vec![
        ("baseline_noop", Box::new(Noop) as Box<dyn Transform>, 0),
        ("subscription_index", indexed, named),
        ("subscription_linear_scan", linear, named),
    ]
}

fn run(t: &mut dyn Transform, named: usize, batch: EventBatch) -> TransformOutputs {
    let mut out = TransformOutputs::new(named);
    t.process(batch, &mut out);
    out
}

fn bench(c: &mut Criterion) {
    let input = events();
    let mut cases = transforms();
    {
        let (_, t, named) = &mut cases[1];
        let out = run(t.as_mut(), *named, input.clone());
        let copies: usize = out.named.iter().map(Vec::len).sum();
        println!(
            "{BATCH} events -> {copies} copies ({} unmatched), {:.1} matches per event",
            out.named[*named - 1].len(),
            (copies - out.named[*named - 1].len()) as f64 / BATCH as f64
        );
    }
    let mut group = c.benchmark_group("subscription_10k");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    for (name, t, named) in &mut cases {
        group.bench_function(*name, |b| {
            b.iter_batched(
                || input.clone(),
                |batch| run(t.as_mut(), *named, batch),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();

    // Same-run figures for the ratios: best of a few timed rounds per case.
    let mut rates = Vec::new();
    for (name, t, named) in &mut cases {
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let rounds = if *name == "subscription_linear_scan" {
                3
            } else {
                50
            };
            let batches: Vec<EventBatch> = (0..rounds).map(|_| input.clone()).collect();
            let started = Instant::now();
            for batch in batches {
                std::hint::black_box(run(t.as_mut(), *named, batch));
            }
            best = best.min(started.elapsed() / rounds);
        }
        let rate = BATCH as f64 / best.as_secs_f64();
        rates.push(rate);
        println!("{name:<26} {:>12.0} events/s", rate);
    }
    println!(
        "ratios: index/noop {:.3}, index/linear_scan {:.1}x",
        rates[1] / rates[0],
        rates[1] / rates[2]
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
