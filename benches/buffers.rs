//! Throughput through a sink's buffer: memory against disk, in the same run.
//!
//! generator → blackhole with the sink's buffer in memory (the baseline), on disk with
//! `sync: interval`, and on disk with `sync: always`. The disk rows pay for encoding,
//! writing, reading back, decoding and (with `always`) one fsync per write burst; the
//! generator does not wait for acknowledgements, so `always` shows the fsync rate the
//! writer sustains with group commit. Each iteration uses a fresh data directory.
//!
//! Run: `cargo bench --bench buffers`

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::config::load_texts;
use sluice::telemetry::Telemetry;
use sluice::topology::{self, TopologyOptions};

const EVENTS: u64 = 100_000;

fn pipeline(buffer: &str) -> String {
    format!(
        "sources:\n  gen: {{ type: generator, count: {EVENTS}, batch_size: 500, format: '{{\"seq\": {{{{seq}}}}, \"level\": \"error\", \"host\": \"db-1\", \"message\": \"disk almost full on /var/lib/postgresql\"}}' }}\nsinks:\n  out: {{ type: blackhole, inputs: [gen], buffer: {buffer} }}\n"
    )
}

async fn run(yaml: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = load_texts(&[(PathBuf::from("bench.yaml"), yaml.to_owned())], |_| None)
        .expect("bench pipeline is valid");
    let options = TopologyOptions {
        data_dir: dir.path().to_owned(),
        ..TopologyOptions::default()
    };
    let telemetry = Telemetry::new();
    let mut running = topology::start(p, telemetry.clone(), &options)
        .await
        .expect("bench pipeline starts");
    running.finished().await;
    let received = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "out")
        .map(|c| c.received.load(std::sync::atomic::Ordering::Relaxed))
        .unwrap_or(0);
    assert_eq!(received, EVENTS, "every event reached the sink");
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let memory = pipeline("{ max_events: 10000 }");
    let disk_interval = pipeline("{ type: disk, sync: interval, sync_interval: 100ms }");
    let disk_always = pipeline("{ type: disk }");
    let mut group = c.benchmark_group("buffers");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.bench_function("memory", |b| b.iter(|| rt.block_on(run(&memory))));
    group.bench_function("disk_sync_interval", |b| {
        b.iter(|| rt.block_on(run(&disk_interval)))
    });
    group.bench_function("disk_sync_always", |b| {
        b.iter(|| rt.block_on(run(&disk_always)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
