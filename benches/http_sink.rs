//! The `http` sink into a local receiver, with batching on (NDJSON, 500 events per
//! request) and off (one JSON object per request). The baselines post the same bodies
//! with a bare reqwest client in the same run, so the ratio is the cost of the sink
//! (encoding, batching, acknowledgements, retries bookkeeping), not of HTTP itself.
//!
//! Run: `cargo bench --bench http_sink`

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::config::load_texts;
use sluice::telemetry::Telemetry;
use sluice::topology::{self, TopologyOptions};

const BATCHED: u64 = 20_000;
const UNBATCHED: u64 = 1_000;
const LINE: &str = r#"{"level":"error","message":"disk almost full","seq":1}"#;

async fn receiver() -> u16 {
    let app = axum::Router::new().fallback(|_body: bytes::Bytes| async { "ok" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

fn pipeline(port: u16, count: u64, batched: bool) -> String {
    let encoding = if batched {
        "encoding: ndjson, batch: { max_events: 500, timeout: 50ms }"
    } else {
        "encoding: json"
    };
    format!(
        "sources:\n  gen: {{ type: generator, count: {count}, batch_size: 500, format: '{{\"level\": \"error\", \"message\": \"disk almost full\", \"seq\": {{{{seq}}}}}}' }}\nsinks:\n  out: {{ type: http, inputs: [gen], url: \"http://127.0.0.1:{port}/\", {encoding} }}\n"
    )
}

async fn run_pipeline(yaml: &str) {
    let p = load_texts(&[(PathBuf::from("bench.yaml"), yaml.to_owned())], |_| None).expect("valid");
    let mut running = topology::start(p, Telemetry::new(), &TopologyOptions::default())
        .await
        .expect("starts");
    running.finished().await;
}

async fn run_baseline(client: &reqwest::Client, port: u16, count: u64, per_request: u64) {
    let line = format!("{LINE}\n");
    let body = bytes::Bytes::from(line.repeat(per_request as usize));
    for _ in 0..count / per_request {
        let r = client
            .post(format!("http://127.0.0.1:{port}/"))
            .body(body.clone())
            .send()
            .await
            .expect("POST");
        assert!(r.status().is_success());
    }
}

fn bench(c: &mut Criterion) {
    sluice::net::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let port = rt.block_on(receiver());
    let client = Arc::new(reqwest::Client::new());

    let mut group = c.benchmark_group("http_sink_batched");
    group.throughput(Throughput::Elements(BATCHED));
    group.sample_size(10);
    group.bench_function("baseline_reqwest", |b| {
        b.iter(|| rt.block_on(run_baseline(&client, port, BATCHED, 500)))
    });
    let yaml = pipeline(port, BATCHED, true);
    group.bench_function("sluice", |b| b.iter(|| rt.block_on(run_pipeline(&yaml))));
    group.finish();

    let mut group = c.benchmark_group("http_sink_unbatched");
    group.throughput(Throughput::Elements(UNBATCHED));
    group.sample_size(10);
    group.bench_function("baseline_reqwest", |b| {
        b.iter(|| rt.block_on(run_baseline(&client, port, UNBATCHED, 1)))
    });
    let yaml = pipeline(port, UNBATCHED, false);
    group.bench_function("sluice", |b| b.iter(|| rt.block_on(run_pipeline(&yaml))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
