//! Consuming one topic: the `kafka` source into a `blackhole` sink (JSON decoding, one
//! event per message with `%kafka` metadata, acknowledgements, offsets stored per
//! settled range and committed), next to a bare rdkafka consumer that only reads the
//! same messages, in the same run, against the same local broker (tansu, memory storage).
//!
//! `cargo bench --bench kafka` uses 500k messages of ~200 bytes over 4 partitions;
//! under `cargo test` (no `--bench` in argv) 20k, so CI stays fast. Each figure is the
//! best of three runs, each run with a fresh consumer group reading from the start.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use sluice::config::load_texts;
use sluice::telemetry::Telemetry;
use sluice::testing::kafka::{Tansu, in_ci, producer};
use sluice::topology::{self, TopologyOptions};

const PARTITIONS: i32 = 4;

async fn fill(bootstrap: &str, topic: &str, messages: u64) {
    let producer = producer(bootstrap);
    let mut pending = Vec::with_capacity(10_000);
    for i in 0..messages {
        let payload = format!(
            "{{\"n\":{i},\"event_type\":\"alert\",\"status\":\"firing\",\"severity\":\"high\",\"service\":\"checkout\",\"region\":\"eu-west-1\",\"fingerprint\":\"{i:032x}\",\"summary\":\"latency above 500ms\"}}"
        );
        let record = FutureRecord::<(), _>::to(topic)
            .payload(&payload)
            .partition((i % PARTITIONS as u64) as i32);
        match producer.send_result(record) {
            Ok(f) => pending.push(f),
            Err((e, _)) => panic!("produce: {e}"),
        }
        if pending.len() == 10_000 {
            for f in pending.drain(..) {
                f.await.expect("delivered").expect("delivered");
            }
        }
    }
    for f in pending {
        f.await.expect("delivered").expect("delivered");
    }
}

/// Messages/s of a bare consumer that only reads (no decoding).
fn bare(bootstrap: &str, topic: &str, group: &str, messages: u64) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut read = 0u64;
    let mut bytes = 0usize;
    let mut started = None;
    while read < messages {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            // The clock starts at the first message, as for sluice below: the group
            // join is not what is measured.
            started.get_or_insert_with(Instant::now);
            bytes += rdkafka::Message::payload(&m).map_or(0, <[u8]>::len);
            read += 1;
        }
    }
    assert!(bytes > 0);
    messages as f64 / started.expect("read something").elapsed().as_secs_f64()
}

/// Events/s of kafka → blackhole, from the first event to the last.
async fn sluice_read(bootstrap: &str, topic: &str, group: &str, messages: u64) -> f64 {
    let yaml = format!(
        "sources:\n  k: {{ type: kafka, bootstrap_servers: \"{bootstrap}\", topics: [{topic}], group_id: {group}, auto_offset_reset: earliest }}\nsinks:\n  out: {{ type: blackhole, inputs: [k] }}\n"
    );
    let p = load_texts(&[(PathBuf::from("bench.yaml"), yaml)], |_| None).expect("valid");
    let telemetry = Telemetry::new();
    let running = topology::start(p, telemetry.clone(), &TopologyOptions::default())
        .await
        .expect("starts");
    let out = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "out")
        .expect("the blackhole's metrics");
    while out.received.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    let first = out.received.load(Ordering::Relaxed);
    while out.received.load(Ordering::Relaxed) < messages {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = (messages - first) as f64 / started.elapsed().as_secs_f64();
    running.stop(Duration::from_secs(30)).await;
    rate
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let messages: u64 = if full { 500_000 } else { 20_000 };
    let Some(broker) = Tansu::start() else {
        assert!(!in_ci(), "the kafka bench needs tansu under CI");
        return;
    };
    broker.create_topic("bench", PARTITIONS as u32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    sluice::net::install_crypto_provider();
    runtime.block_on(fill(&broker.bootstrap, "bench", messages));
    let runs = if full { 3 } else { 1 };
    let (mut best_bare, mut best_sluice) = (0f64, 0f64);
    for run in 0..runs {
        best_bare = best_bare.max(bare(
            &broker.bootstrap,
            "bench",
            &format!("bare-{run}"),
            messages,
        ));
        best_sluice = best_sluice.max(runtime.block_on(sluice_read(
            &broker.bootstrap,
            "bench",
            &format!("sluice-{run}"),
            messages,
        )));
    }
    println!(
        "kafka ({messages} messages, {PARTITIONS} partitions): sluice kafka → blackhole {:.0} events/s, bare rdkafka consumer {:.0} messages/s, ratio {:.2}",
        best_sluice,
        best_bare,
        best_sluice / best_bare
    );
}
