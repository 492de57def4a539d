//! Throughput of the engine: generator → remap → blackhole, in events per second.
//!
//! `baseline_channel` does the same per-event work outside the engine (format and parse
//! the same JSON into a VRL value, move it in batches of the same size over a tokio
//! channel to another task), so `generator_remap_blackhole / baseline_channel` is the cost
//! of the engine itself, measured on the same machine in the same run.
//!
//! Run: `cargo bench --bench topology`

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::config::load_texts;
use sluice::telemetry::Telemetry;
use sluice::topology::{self, TopologyOptions};
use vrl::value::Value;

const EVENTS: u64 = 200_000;
const BATCH: usize = 1000;

fn pipeline(with_remap: bool) -> String {
    let (inputs, transforms) = if with_remap {
        (
            "stamp",
            "transforms:\n  stamp:\n    type: remap\n    inputs: [gen]\n    source: |\n      .severity = if .level == \"error\" { \"high\" } else { \"low\" }\n      .host = \"bench\"\n",
        )
    } else {
        ("gen", "")
    };
    format!(
        "sources:\n  gen: {{ type: generator, count: {EVENTS}, batch_size: {BATCH}, format: '{{\"seq\": {{{{seq}}}}, \"level\": \"error\", \"message\": \"disk almost full\"}}' }}\n{transforms}sinks:\n  out: {{ type: blackhole, inputs: [{inputs}], buffer: {{ max_events: 10000 }} }}\n"
    )
}

async fn run_pipeline(yaml: &str) {
    let p = load_texts(&[(PathBuf::from("bench.yaml"), yaml.to_owned())], |_| None)
        .expect("bench pipeline is valid");
    let options = TopologyOptions::default();
    let mut running = topology::start(p, Telemetry::new(), &options)
        .await
        .expect("bench pipeline starts");
    running.finished().await;
}

async fn run_baseline() {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Value>>(10);
    let consumer = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(batch) = rx.recv().await {
            n += batch.len() as u64;
        }
        n
    });
    let mut seq = 0u64;
    while seq < EVENTS {
        let mut batch = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            let text = format!(
                "{{\"seq\": {seq}, \"level\": \"error\", \"message\": \"disk almost full\"}}"
            );
            batch.push(serde_json::from_str::<Value>(&text).expect("valid JSON"));
            seq += 1;
        }
        if tx.send(batch).await.is_err() {
            break;
        }
    }
    drop(tx);
    assert_eq!(consumer.await.expect("joined"), EVENTS);
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let with_remap = pipeline(true);
    let without = pipeline(false);
    let mut group = c.benchmark_group("topology");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.bench_function("baseline_channel", |b| {
        b.iter(|| rt.block_on(run_baseline()))
    });
    group.bench_function("generator_blackhole", |b| {
        b.iter(|| rt.block_on(run_pipeline(&without)))
    });
    group.bench_function("generator_remap_blackhole", |b| {
        b.iter(|| rt.block_on(run_pipeline(&with_remap)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
