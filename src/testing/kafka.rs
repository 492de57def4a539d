//! Kafka brokers for tests and benches: librdkafka's in-process mock cluster for the fast cases, and
//! a real Kafka-protocol broker process (`tansu`, memory storage) on loopback for the
//! end-to-end ones. `.ci/run` installs tansu into `~/.cache/sluice-tools`; under CI=true
//! a missing or broken broker fails the test, elsewhere it is skipped with the reason.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Whether this run is CI (a missing service is then a failure, not a skip).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The tansu binary: `$SLUICE_TANSU`, or where `.ci/run` installs it.
pub fn tansu_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SLUICE_TANSU") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".cache/sluice-tools/bin/tansu");
    p.exists().then_some(p)
}

/// A tansu broker process, killed on drop.
pub struct Tansu {
    child: Child,
    pub bootstrap: String,
    binary: PathBuf,
}

impl Tansu {
    /// Starts a broker on a free port; `None` (after printing why) when tansu is not
    /// installed outside CI.
    pub fn start() -> Option<Self> {
        let Some(binary) = tansu_path() else {
            let why =
                "tansu is not installed (cargo install tansu --features dynostore; see .ci/run)";
            assert!(!in_ci(), "{why}");
            eprintln!("skipping: {why}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let broker = Self {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            binary,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(broker)
    }

    /// Creates a topic (tansu does not create topics on first use).
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new(&self.binary)
                .args([
                    "topic",
                    "create",
                    name,
                    "--partitions",
                    &partitions.to_string(),
                    "--broker",
                    &format!("tcp://{}", self.bootstrap),
                ])
                .output()
                .expect("tansu topic create runs");
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tansu topic create {name}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain producer (acks all, 5 ms linger).
pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("acks", "all")
        .create()
        .expect("test producer")
}

/// Produces `{"n": i}` for every i in `range`, keyed by `i`, round-robin over
/// `partitions` partitions, and waits for every delivery report.
pub async fn produce_numbers(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    range: std::ops::Range<i64>,
) {
    let producer = producer(bootstrap);
    let mut pending = Vec::new();
    for i in range {
        let payload = format!("{{\"n\":{i}}}");
        let key = i.to_string();
        loop {
            let record = FutureRecord::to(topic)
                .payload(&payload)
                .key(&key)
                .partition((i % i64::from(partitions)) as i32)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "origin",
                    value: Some("test"),
                }));
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((e, _)) => {
                    // A full local queue: let deliveries complete first.
                    match pending.pop() {
                        Some(f) => f.await.expect("delivered").expect("delivered"),
                        None => panic!("produce: {e}"),
                    };
                }
            }
        }
        if pending.len() >= 10_000 {
            for f in pending.drain(..) {
                f.await.expect("delivered").expect("delivered");
            }
        }
    }
    for f in pending {
        f.await.expect("delivered").expect("delivered");
    }
}

/// The offsets `group` has committed on `topic`'s partitions (-1: none).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offset reader");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}
