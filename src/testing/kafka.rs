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
pub(crate) fn tansu_path() -> Option<PathBuf> {
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
        Self::start_advertising("")
    }

    /// Like [`Tansu::start`], advertising `advertised` (`tcp://host:port`) to clients
    /// instead of its own listener when it is not empty (a TLS proxy in front).
    pub fn start_advertising(advertised: &str) -> Option<Self> {
        let Some(binary) = tansu_path() else {
            let why =
                "tansu is not installed (cargo install tansu --features dynostore; see .ci/run)";
            super::skip(why);
            return None;
        };
        // Another process may take the port between our probe and tansu's bind; then
        // tansu exits and we try another port rather than talk to someone else's broker.
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let url = format!("tcp://127.0.0.1:{port}");
            let advertised = if advertised.is_empty() {
                url.as_str()
            } else {
                advertised
            };
            let child = Command::new(&binary)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    advertised,
                    "--storage-engine",
                    "memory://tansu/",
                ])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
            let mut broker = Self {
                child,
                bootstrap: format!("127.0.0.1:{port}"),
                binary: binary.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if broker.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // Ours, not a process that grabbed the port: tansu is still running.
                    std::thread::sleep(Duration::from_millis(50));
                    if broker.child.try_wait().ok().flatten().is_none() {
                        return Some(broker);
                    }
                    break;
                }
                assert!(Instant::now() < deadline, "tansu did not listen on {port}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("tansu could not start on a free port");
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

/// A tansu broker reached over TLS: `stunnel` terminates TLS on `bootstrap` and forwards
/// to tansu's plaintext port, which tansu advertises as the TLS one, so clients stay on
/// TLS after the metadata exchange (tansu 0.6's own TLS listener is not wired up).
pub struct TlsTansu {
    /// The plaintext broker, for `create_topic` (tansu's CLI speaks no TLS).
    pub plain: Tansu,
    /// `127.0.0.1:PORT` of the TLS listener.
    pub bootstrap: String,
    stunnel: Child,
    _dir: tempfile::TempDir,
}

impl TlsTansu {
    /// Starts tansu behind stunnel, serving `cert_pem` (for 127.0.0.1) with `key_pem`;
    /// `None` (after printing why) when tansu or stunnel is missing outside CI.
    pub fn start(cert_pem: &str, key_pem: &str) -> Option<Self> {
        let stunnel = ["stunnel4", "stunnel"]
            .into_iter()
            .find(|b| Command::new(b).arg("-version").output().is_ok());
        let Some(stunnel) = stunnel else {
            super::skip("stunnel is not installed (.ci/run installs the Debian package stunnel4)");
            return None;
        };
        let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let plain = Tansu::start_advertising(&format!("tcp://127.0.0.1:{tls_port}"))?;
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key, conf) = (
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
            dir.path().join("stunnel.conf"),
        );
        std::fs::write(&cert, cert_pem).expect("write cert");
        std::fs::write(&key, key_pem).expect("write key");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls_port}\nconnect = {}\ncert = {}\nkey = {}\n",
                plain.bootstrap,
                cert.display(),
                key.display()
            ),
        )
        .expect("write stunnel.conf");
        let child = Command::new(stunnel)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {stunnel}: {e}"));
        let broker = Self {
            plain,
            bootstrap: format!("127.0.0.1:{tls_port}"),
            stunnel: child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "stunnel did not listen on {tls_port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(broker)
    }
}

impl Drop for TlsTansu {
    fn drop(&mut self) {
        let _ = self.stunnel.kill();
        let _ = self.stunnel.wait();
    }
}

/// A producer that writes one record per batch. tansu 0.6 answers a fetch that starts
/// inside a record batch with the batches after it, skipping the rest of that batch;
/// with one record per batch every offset a consumer resumes from (a committed offset,
/// or where it paused) is a batch boundary, so the tests see Kafka's semantics.
pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .set("acks", "all")
        .create()
        .expect("test producer")
}

/// Where each produced number is: `(partition, offset) → n`, as a consumer reads it back
/// (offsets need not be dense, and tansu's delivery reports do not always match the
/// offsets it serves, so tests map through what a reader sees).
pub(crate) type Placement = std::collections::HashMap<(i32, i64), i64>;

/// Produces `{"n": i}` for every i in `range`, keyed by `i`, round-robin over
/// `partitions` partitions, waits for every delivery report, then reads the topic back
/// and returns where each number is.
pub async fn produce_numbers(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    range: std::ops::Range<i64>,
) -> Placement {
    let producer = producer(bootstrap);
    let mut placement = Placement::new();
    let mut pending = Vec::new();
    for i in range {
        let payload = format!("{{\"n\":{i}}}");
        let key = i.to_string();
        let record = FutureRecord::to(topic)
            .payload(&payload)
            .key(&key)
            .partition((i % i64::from(partitions)) as i32)
            .headers(OwnedHeaders::new().insert(Header {
                key: "origin",
                value: Some("test"),
            }));
        let delivery = producer
            .send_result(record)
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        pending.push((i, delivery));
        if pending.len() >= 5_000 {
            settle_deliveries(&mut pending, &mut placement).await;
        }
    }
    settle_deliveries(&mut pending, &mut placement).await;
    let expected = placement.len();
    read_placement(bootstrap, topic, partitions, expected)
}

/// Reads every partition of `topic` from the start until `expected` messages of the
/// form `{"n": i}` were seen.
pub fn read_placement(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Placement {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "placement-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("placement reader");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut placement = Placement::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while placement.len() < expected {
        assert!(
            Instant::now() < deadline,
            "read back {} of {expected}",
            placement.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("message");
            let body: serde_json::Value =
                serde_json::from_slice(rdkafka::Message::payload(&m).unwrap_or_default())
                    .expect("json");
            let n = body["n"].as_i64().expect("n");
            placement.insert(
                (
                    rdkafka::Message::partition(&m),
                    rdkafka::Message::offset(&m),
                ),
                n,
            );
        }
    }
    placement
}

/// The offset after the last message of each partition: what a group that consumed
/// everything has committed.
pub fn end_offsets(placement: &Placement, partitions: i32) -> Vec<i64> {
    (0..partitions)
        .map(|p| {
            placement
                .keys()
                .filter(|(q, _)| *q == p)
                .map(|(_, o)| o + 1)
                .max()
                .unwrap_or(-1)
        })
        .collect()
}

async fn settle_deliveries(
    pending: &mut Vec<(i64, rdkafka::producer::DeliveryFuture)>,
    placement: &mut Placement,
) {
    for (n, f) in pending.drain(..) {
        let delivery = f.await.expect("reported").expect("delivered");
        placement.insert((delivery.partition, delivery.offset), n);
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
