//! The `kafka` source and sink: fast cases against librdkafka's in-process mock cluster,
//! end-to-end cases (crash, consumer groups, round trip, an independent client) against
//! a real Kafka-protocol broker process on loopback.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use sluice::buffer::BufferConfig;
use sluice::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SinkConfig, SinkContext,
};
use sluice::config::{ComponentDef, InputRef, Position};
use sluice::event::{EventStatus, settle_all};
use sluice::testing::CaptureSink;
use sluice::topology::Drained;
use vrl::value::Value;

use common::{Process, Receiver, eventually, field, ndjson_ints, parse, sluice, start, string};
use sluice::testing::kafka::{Tansu, committed, end_offsets, produce_numbers};

/// Group joins take a few seconds against the mock cluster.
async fn eventually_long(what: &str, cond: impl FnMut() -> bool) {
    eventually_or_dump(what, None, cond).await;
}

/// Like [`eventually_long`]; on a timeout, prints the sluice logs found in `logs`.
async fn eventually_or_dump(
    what: &str,
    logs: Option<&std::path::Path>,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            if let Some(dir) = logs {
                dump_logs(dir);
            }
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prints every `sluice-*.log` under `dir` (one level of subdirectories included).
fn dump_logs(dir: &std::path::Path) {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            paths.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else {
            paths.push(path);
        }
    }
    for path in paths {
        if path.extension().is_some_and(|e| e == "log") {
            eprintln!(
                "--- {}\n{}",
                path.display(),
                std::fs::read_to_string(&path).unwrap_or_default()
            );
        }
    }
}

fn source_yaml(bootstrap: &str, topic: &str, group: &str, extra: &str) -> String {
    format!(
        "sources:\n  k: {{ type: kafka, bootstrap_servers: \"{bootstrap}\", topics: [\"{topic}\"], group_id: {group}, auto_offset_reset: earliest, commit_interval: 100ms{extra} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_decodes_json_and_exposes_kafka_metadata_then_commits() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("alerts", 2, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    produce_numbers(&bootstrap, "alerts", 2, 0..20).await;

    let mut p = parse(&format!(
        "{}transforms:\n  meta: {{ type: remap, inputs: [k], source: '.kafka = %kafka' }}\n",
        source_yaml(&bootstrap, "alerts", "g-meta", "")
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["meta"], 1000);
    let (topo, _telemetry) = start(p).await;
    eventually_long("20 events", || sink.values().len() >= 20).await;

    let mut numbers = sink.ints("n");
    numbers.sort_unstable();
    assert_eq!(numbers, (0..20).collect::<Vec<_>>());
    let mut offsets: HashMap<i64, Vec<i64>> = HashMap::new();
    for v in sink.values() {
        let n = common::int(&v, "n");
        let kafka = field(&v, "kafka");
        assert_eq!(string(&kafka, "topic").as_deref(), Some("alerts"));
        assert_eq!(common::int(&kafka, "partition"), n % 2);
        assert_eq!(string(&kafka, "key"), Some(n.to_string()));
        assert_eq!(
            string(&field(&kafka, "headers"), "origin").as_deref(),
            Some("test")
        );
        assert!(matches!(field(&kafka, "timestamp"), Value::Timestamp(_)));
        offsets
            .entry(n % 2)
            .or_default()
            .push(common::int(&kafka, "offset"));
    }
    for (_, mut o) in offsets {
        o.sort_unstable();
        assert_eq!(
            o,
            (0..10).collect::<Vec<_>>(),
            "offsets 0..10 per partition"
        );
    }
    assert_eq!(topo.stop(Duration::from_secs(20)).await, Drained::Complete);
    assert_eq!(
        committed(&bootstrap, "g-meta", "alerts", 2),
        vec![10, 10],
        "a clean stop commits everything delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_and_text_decoding() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("lines", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let producer = sluice::testing::kafka::producer(&bootstrap);
    for payload in ["{\"a\":1}\n{\"a\":2}\n", "not json", "{\"a\":3}"] {
        producer
            .send(
                rdkafka::producer::FutureRecord::<(), _>::to("lines").payload(payload),
                Duration::from_secs(5),
            )
            .await
            .expect("produced");
    }
    let mut p = parse(&format!(
        "{}  t: {{ type: kafka, bootstrap_servers: \"{bootstrap}\", topics: [\"^li.*\"], group_id: g-text, auto_offset_reset: earliest, decoding: text }}\n",
        source_yaml(&bootstrap, "lines", "g-ndjson", ", decoding: ndjson")
    ));
    let ndjson = CaptureSink::default();
    let text = CaptureSink::default();
    ndjson.attach(&mut p, "n", &["k"], 100);
    text.attach(&mut p, "x", &["t"], 100);
    let (topo, telemetry) = start(p).await;
    eventually_long("both sources", || {
        ndjson.values().len() >= 4 && text.values().len() >= 3
    })
    .await;
    // NDJSON: three objects, and the invalid line kept as `message` and counted.
    assert_eq!(ndjson.ints("a"), vec![1, 2, 3]);
    let kept: Vec<_> = ndjson
        .values()
        .iter()
        .filter_map(|v| string(v, "message"))
        .collect();
    assert_eq!(kept, vec!["not json".to_string()]);
    let errors = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "k")
        .map(|c| c.errors.load(std::sync::atomic::Ordering::Relaxed))
        .expect("k metrics");
    assert_eq!(errors, 1);
    // Text: one event per message, the payload as `message` (the topic came by regex).
    let messages: Vec<_> = text
        .values()
        .iter()
        .filter_map(|v| string(v, "message"))
        .collect();
    assert_eq!(
        messages,
        vec!["{\"a\":1}\n{\"a\":2}\n", "not json", "{\"a\":3}"]
    );
    assert_eq!(topo.stop(Duration::from_secs(20)).await, Drained::Complete);
}

/// A sink that settles its first `errored` batches as errored, then delivers.
#[derive(Debug, Clone, Default)]
struct FlakySink {
    errored: Arc<Mutex<usize>>,
    delivered: Arc<Mutex<Vec<i64>>>,
}

impl SinkConfig for FlakySink {
    fn type_name(&self) -> &'static str {
        "flaky"
    }

    fn build(&self, mut cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        let me = self.clone();
        Box::pin(async move {
            Ok(Box::pin(async move {
                while let Some(batch) = cx.input.recv().await {
                    let fail = {
                        let mut left = me.errored.lock().expect("lock");
                        let fail = *left > 0;
                        *left = left.saturating_sub(1);
                        fail
                    };
                    if fail {
                        settle_all(batch, EventStatus::Errored);
                        continue;
                    }
                    me.delivered
                        .lock()
                        .expect("lock")
                        .extend(batch.iter().map(|e| common::int(e.value(), "n")));
                    settle_all(batch, EventStatus::Delivered);
                }
                Ok::<(), ComponentError>(())
            }) as ComponentTask)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errored_events_are_read_again_and_offsets_wait_for_them() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("retry", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    produce_numbers(&bootstrap, "retry", 1, 0..50).await;
    let mut p = parse(&source_yaml(
        &bootstrap,
        "retry",
        "g-retry",
        ", retry_backoff: 10ms, batch_size: 10",
    ));
    let sink = FlakySink {
        errored: Arc::new(Mutex::new(2)),
        ..FlakySink::default()
    };
    p.sinks.insert(
        "flaky".into(),
        ComponentDef {
            config: Box::new(sink.clone()),
            inputs: vec![InputRef {
                pattern: "k".into(),
                position: Position::default(),
            }],
            buffer: BufferConfig::default(),
            position: Position::default(),
            fingerprint: 0,
        },
    );
    let (topo, telemetry) = start(p).await;
    let distinct = || {
        let mut d = sink.delivered.lock().expect("lock").clone();
        d.sort_unstable();
        d.dedup();
        d
    };
    eventually_long("all 50 after two errored batches", || {
        distinct().len() == 50
    })
    .await;
    assert_eq!(distinct(), (0..50).collect::<Vec<_>>());
    assert_eq!(topo.stop(Duration::from_secs(20)).await, Drained::Complete);
    assert_eq!(committed(&bootstrap, "g-retry", "retry", 1), vec![50]);
    let rewinds = common::metric(
        &telemetry.render_prometheus(),
        "sluice_kafka_rewinds_total",
        "k",
    );
    assert!(
        rewinds.is_some_and(|r| r >= 1.0),
        "rewinds counted: {rewinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_committed_past_an_unsettled_event() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("held", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    produce_numbers(&bootstrap, "held", 1, 0..30).await;
    let mut p = parse(&source_yaml(
        &bootstrap,
        "held",
        "g-held",
        ", batch_size: 10",
    ));
    let gate = Arc::new(tokio::sync::Semaphore::new(1));
    let sink = CaptureSink {
        gate: Some(Arc::clone(&gate)),
        ..CaptureSink::default()
    };
    sink.attach(&mut p, "out", &["k"], 10);
    let (topo, _telemetry) = start(p).await;
    eventually_long("the first batch", || !sink.values().is_empty()).await;
    // The next batch waits at the gate: its offsets and everything after stay
    // uncommitted however many commit intervals pass.
    let first = sink.values().len() as i64;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let c = committed(&bootstrap, "g-held", "held", 1)[0];
        assert!(
            c <= first,
            "committed {c} while offset {first} is unsettled"
        );
    }
    gate.add_permits(100);
    eventually("all 30", || sink.values().len() == 30).await;
    assert_eq!(topo.stop(Duration::from_secs(20)).await, Drained::Complete);
    assert_eq!(committed(&bootstrap, "g-held", "held", 1), vec![30]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_writes_key_headers_payload_and_survives_a_broker_outage() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("out-a", 1, 1).expect("topic");
    cluster.create_topic("out-b", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 200, format: '{{"n": {{{{seq}}}}, "team": "t{{{{seq}}}}", "service": "svc", "labels": {{"tenant": "acme"}}}}' }}
transforms:
  split: {{ type: remap, inputs: [gen], source: 'if mod(int!(.n), 2) == 0 {{ .dest = "a" }} else {{ .dest = "b" }}' }}
sinks:
  kafka:
    type: kafka
    inputs: [split]
    bootstrap_servers: "{bootstrap}"
    topic: "out-{{{{ dest }}}}"
    key_field: team
    headers: {{ tenant: "{{{{ labels.tenant }}}}", missing: "{{{{ nope }}}}" }}
    compression: zstd
"#
    ));
    p.validate().expect("valid");
    // The broker drops the connection on the first produce requests (an outage as the
    // producer sees it): librdkafka reconnects and retries inside its message timeout,
    // and the idempotent producer writes each message once. (`broker_down`/`broker_up`
    // would say the same, but librdkafka re-binds the listener's port on the way down
    // and aborts the process when a parallel test's socket took it meanwhile.)
    {
        use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT; 4],
        );
    }
    let parked = CaptureSink::default();
    parked.attach(&mut p, "parked", &["kafka.dead_letter"], 300);
    let (mut topo, _telemetry) = start(p).await;
    // Every generated event is delivered before the pipeline ends on its own.
    tokio::time::timeout(Duration::from_secs(60), topo.finished())
        .await
        .expect("the pipeline drains");
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    assert_eq!(parked.values(), Vec::new(), "nothing dead-lettered");

    // Read the partitions' logs by assignment, not as a group member: a rebalance could
    // hand a member records it had read already, which says nothing of the writes.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut partitions = rdkafka::TopicPartitionList::new();
    for topic in ["out-a", "out-b"] {
        partitions
            .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&partitions).expect("assign");
    // Each event's topic and offset: the same record read twice is one write.
    let mut seen: BTreeMap<i64, (String, i64, String, Option<String>)> = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 200 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let body: serde_json::Value =
                serde_json::from_slice(m.payload().expect("payload")).expect("json");
            let n = body["n"].as_i64().expect("n");
            let key = String::from_utf8(m.key().expect("key").to_vec()).expect("utf-8");
            let headers = m.headers().expect("headers");
            let tenant = headers
                .iter()
                .find(|h| h.key == "tenant")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned());
            assert!(
                headers.iter().all(|h| h.key != "missing"),
                "a header with a missing field is left out"
            );
            let at = (m.topic().to_owned(), m.offset());
            if let Some(before) = seen.insert(n, (at.0.clone(), at.1, key, tenant))
                && (before.0.as_str(), before.1) != (at.0.as_str(), at.1)
            {
                panic!(
                    "message {n} written twice: at {}:{} and {}:{}",
                    before.0, before.1, at.0, at.1
                );
            }
        }
    }
    assert_eq!(seen.len(), 200, "every event written once");
    for (n, (topic, _, key, tenant)) in seen {
        let want = if n % 2 == 0 { "out-a" } else { "out-b" };
        assert_eq!(topic, want);
        assert_eq!(key, format!("t{n}"));
        assert_eq!(tenant.as_deref(), Some("acme"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_dead_letters_what_the_broker_never_takes() {
    // A "broker" that takes connections and never answers: the kernel completes the
    // handshake from the listen backlog, and nothing ever replies.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let bootstrap = silent.local_addr().expect("addr").to_string();
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 5, format: '{{"n": {{{{seq}}}}}}' }}
sinks:
  kafka: {{ type: kafka, inputs: [gen], bootstrap_servers: "{bootstrap}", topic: gone, message_timeout: 300ms }}
"#
    ));
    let parked = CaptureSink::default();
    parked.attach(&mut p, "parked", &["kafka.dead_letter"], 100);
    let (topo, _telemetry) = start(p).await;
    eventually("five dead letters", || parked.values().len() == 5).await;
    for v in parked.values() {
        let dl = field(&v, "dead_letter");
        assert_eq!(string(&dl, "sink").as_deref(), Some("kafka"));
        let error = string(&dl, "error").expect("error text");
        assert!(error.contains("timed out"), "{error}");
    }
    let mut n = parked.ints("n");
    n.sort_unstable();
    assert_eq!(n, vec![0, 1, 2, 3, 4]);
    assert_eq!(topo.stop(Duration::from_secs(10)).await, Drained::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_are_retried_by_source_and_sink_without_loss_or_duplicates() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("flaky-in", 1, 1).expect("topic");
    cluster.create_topic("flaky-out", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    produce_numbers(&bootstrap, "flaky-in", 1, 0..100).await;
    // The broker answers some fetches and produce requests with retriable errors.
    let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 3];
    cluster.request_errors(RDKafkaApiKey::Fetch, &errors);
    cluster.request_errors(RDKafkaApiKey::Produce, &errors);
    let p = parse(&format!(
        "{}sinks:\n  out: {{ type: kafka, inputs: [k], bootstrap_servers: \"{bootstrap}\", topic: flaky-out, key_field: n }}\n",
        source_yaml(&bootstrap, "flaky-in", "g-flaky", "")
    ));
    let (topo, _telemetry) = start(p).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while committed(&bootstrap, "g-flaky", "flaky-in", 1) != vec![100] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "source never committed 100"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(topo.stop(Duration::from_secs(20)).await, Drained::Complete);
    let written = sluice::testing::kafka::read_placement(&bootstrap, "flaky-out", 1, 100);
    let mut numbers: Vec<i64> = written.values().copied().collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..100).collect::<Vec<_>>(),
        "each number written once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_on_the_mock_cluster_takes_partitions_and_nothing_is_lost() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("split", 4, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    produce_numbers(&bootstrap, "split", 4, 0..400).await;
    let member = |sink: &CaptureSink| {
        let mut p = parse(&source_yaml(&bootstrap, "split", "g-split", ""));
        sink.attach(&mut p, "out", &["k"], 1000);
        p
    };
    let (a, b) = (CaptureSink::default(), CaptureSink::default());
    let (first, _t1) = start(member(&a)).await;
    eventually_long("the first member reading", || !a.values().is_empty()).await;
    let (second, _t2) = start(member(&b)).await;
    // Messages written after the second member joined: the rebalance gives it some.
    let mut next = 400;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while b.values().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second member got nothing"
        );
        produce_numbers(&bootstrap, "split", 4, next..next + 40).await;
        next += 40;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let distinct = || {
        let mut all = a.ints("n");
        all.extend(b.ints("n"));
        all.sort_unstable();
        all.dedup();
        all.len() as i64
    };
    eventually_long("every message", || distinct() == next).await;
    assert_eq!(first.stop(Duration::from_secs(20)).await, Drained::Complete);
    assert_eq!(
        second.stop(Duration::from_secs(20)).await,
        Drained::Complete
    );
    assert_eq!(
        committed(&bootstrap, "g-split", "split", 4),
        vec![next / 4; 4],
        "committed to the end"
    );
}

#[test]
fn bad_options_are_reported_at_validation() {
    let cases = [
        (
            "sources:\n  k: { type: kafka, bootstrap_servers: x, topics: ['^(['], group_id: g }\nsinks:\n  c: { type: console, inputs: [k] }\n",
            "topic pattern `^([` is not a regular expression",
        ),
        (
            "sources:\n  k: { type: kafka, bootstrap_servers: x, topics: [a], group_id: g, librdkafka_options: { no.such.option: 1 } }\nsinks:\n  c: { type: console, inputs: [k] }\n",
            "librdkafka rejects the client settings",
        ),
        (
            "sources:\n  g: { type: generator }\nsinks:\n  k: { type: kafka, inputs: [g], bootstrap_servers: x, topic: t, acks: 1 }\n",
            "the idempotent producer needs `acks: all`",
        ),
        (
            "sources:\n  g: { type: generator }\nsinks:\n  k: { type: kafka, inputs: [g], bootstrap_servers: x, topic: 'a-{{ ' }\n",
            "unclosed",
        ),
    ];
    for (yaml, want) in cases {
        let err = parse(yaml).validate().expect_err(want).to_string();
        assert!(err.contains(want), "expected `{want}` in:\n{err}");
    }
}

// ---------------------------------------------------------------------------------
// Against a real broker process.

fn pipeline_file(dir: &std::path::Path, name: &str, yaml: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write pipeline");
    path
}

fn run_sluice(config: &std::path::Path, data_dir: &std::path::Path, api_port: u16) -> Process {
    let mut cmd = sluice();
    cmd.args(["run", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("SLUICE_API__ADDRESS", format!("127.0.0.1:{api_port}"))
        .env("RUST_LOG", "info");
    let mut process = Process::spawn(cmd);
    // Its logs go to a file (a pipe nobody reads would fill up and stall it).
    let log = data_dir.join(format!("sluice-{api_port}.log"));
    let mut stderr = process.child().stderr.take().expect("stderr");
    std::thread::spawn(move || {
        if let Ok(mut file) = std::fs::File::create(log) {
            let _ = std::io::copy(&mut stderr, &mut file);
        }
    });
    let mut stdout = process.child().stdout.take().expect("stdout");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    process
}

/// Numbers the receiver got (with repeats), across all requests.
fn received(receiver: &Receiver) -> Vec<i64> {
    ndjson_ints(&receiver.requests(), "n")
}

fn distinct(numbers: &[i64]) -> usize {
    let mut d = numbers.to_vec();
    d.dedup();
    d.len()
}

/// `instance`: a static group membership (`group.instance.id`), so a restarted process
/// takes its predecessor's place at once instead of waiting for its session to expire
/// (tansu 0.6 does not expire a killed member's session).
fn crash_pipeline(bootstrap: &str, group: &str, receiver_port: u16, instance: &str) -> String {
    format!(
        r#"
sources:
  k:
    type: kafka
    bootstrap_servers: "{bootstrap}"
    topics: [numbers]
    group_id: {group}
    auto_offset_reset: earliest
    commit_interval: 200ms
    batch_size: 250
    librdkafka_options: {{ group.instance.id: "{instance}" }}
sinks:
  out:
    type: http
    inputs: [k]
    url: http://127.0.0.1:{receiver_port}/in
    encoding: ndjson
    batch: {{ max_events: 250, timeout: 50ms }}
    buffer: {{ max_events: 1000 }}
"#
    )
}

/// What a crash may deliver twice: everything delivered and not yet committed. The
/// source holds at most three batches (two sent, one pending), the sink's buffer 1,000
/// events and one request in flight; and offsets stored during the last commit interval
/// (200 ms) plus the commit's own round trip, which on a loaded 2-core machine we allow
/// up to 800 ms, are not committed yet.
fn in_flight_window(rate_per_s: f64) -> usize {
    3 * 250 + 1000 + 250 + (rate_per_s * 1.0) as usize
}

async fn at_least_once_across_a_stop(signal: &str) -> Option<(usize, usize)> {
    let broker = Tansu::start()?;
    broker.create_topic("numbers", 4);
    const N: i64 = 100_000;
    let placement = produce_numbers(&broker.bootstrap, "numbers", 4, 0..N).await;

    let receiver = Receiver::new(0).start().await;
    receiver.set_delay(Duration::from_millis(5));
    let dir = tempfile::tempdir().expect("tempdir");
    let group = format!("crash-{}", signal.to_lowercase());
    let config = pipeline_file(
        dir.path(),
        "p.yaml",
        &crash_pipeline(&broker.bootstrap, &group, receiver.port, "node-1"),
    );
    let mut first = run_sluice(&config, dir.path(), common::free_port());
    let started = std::time::Instant::now();
    eventually_or_dump("half of the numbers", Some(dir.path()), || {
        received(&receiver).len() >= 50_000
    })
    .await;
    let rate = received(&receiver).len() as f64 / started.elapsed().as_secs_f64();
    // What was committed just before the signal (commits may still land after it).
    let committed_before: i64 = committed(&broker.bootstrap, &group, "numbers", 4)
        .iter()
        .map(|c| (*c).max(0))
        .sum();
    first.signal(signal);
    let status = first.child().wait().expect("exit status");
    if signal == "TERM" {
        assert!(status.success(), "SIGTERM exits cleanly: {status}");
    }
    let before_restart = received(&receiver).len();
    // Delivered but not (known to be) committed when the process died: the most a
    // restart may deliver again.
    let uncommitted = before_restart.saturating_sub(committed_before as usize);

    let mut second = run_sluice(&config, dir.path(), common::free_port());
    eventually_or_dump("every number", Some(dir.path()), || {
        distinct(&received(&receiver)) == N as usize
    })
    .await;
    // Let the consumer settle on the end of the topic: nothing more may come.
    tokio::time::sleep(Duration::from_millis(300)).await;
    second.signal("TERM");
    second.child().wait().expect("exit");
    let all = received(&receiver);
    assert_eq!(distinct(&all), N as usize, "every number arrives");
    let duplicates = all.len() - N as usize;
    let window = in_flight_window(rate);
    eprintln!(
        "{signal}: {before_restart} received before the restart, {uncommitted} of them uncommitted, {duplicates} duplicates; in-flight window {window} (rate {rate:.0}/s)"
    );
    assert!(
        duplicates <= uncommitted,
        "{duplicates} duplicates, but only {uncommitted} delivered events were uncommitted: the restart went back past a commit"
    );
    assert_eq!(
        committed(&broker.bootstrap, &group, "numbers", 4),
        end_offsets(&placement, 4),
        "everything committed at the end"
    );
    Some((duplicates, window))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_halfway_loses_nothing_and_repeats_at_most_the_in_flight_window() {
    let Some((duplicates, window)) = at_least_once_across_a_stop("KILL").await else {
        return;
    };
    assert!(
        duplicates <= window,
        "{duplicates} duplicates exceed the in-flight window of {window}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_halfway_repeats_nothing() {
    let Some((duplicates, _)) = at_least_once_across_a_stop("TERM").await else {
        return;
    };
    assert_eq!(
        duplicates, 0,
        "a clean stop commits exactly what was delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_group_and_never_commit_past_what_was_delivered() {
    let Some(broker) = Tansu::start() else { return };
    broker.create_topic("numbers", 4);
    const N: i64 = 20_000;
    let placement = produce_numbers(&broker.bootstrap, "numbers", 4, 0..N).await;
    let receiver = Receiver::new(0).start().await;
    // About 2,500 events/s: long enough for the second instance to join mid-stream.
    receiver.set_delay(Duration::from_millis(100));
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = |path: &str| {
        crash_pipeline(&broker.bootstrap, "shared", receiver.port, path).replace("/in", path)
    };
    let config_a = pipeline_file(dir.path(), "a.yaml", &pipeline("/a"));
    let config_b = pipeline_file(dir.path(), "b.yaml", &pipeline("/b"));
    let data_a = dir.path().join("a");
    let data_b = dir.path().join("b");
    std::fs::create_dir_all(&data_a).expect("dir");
    std::fs::create_dir_all(&data_b).expect("dir");

    // The invariant, checked all along: every offset below a committed one was
    // received. Committed offsets are read before the received set, and the receiver
    // records a request before answering it.
    let check = |final_check: bool| {
        let committed = committed(&broker.bootstrap, "shared", "numbers", 4);
        let got: std::collections::HashSet<i64> = received(&receiver).into_iter().collect();
        for ((p, o), n) in &placement {
            let c = committed[*p as usize];
            if *o < c && !got.contains(n) {
                dump_logs(dir.path());
                panic!(
                    "partition {p} committed {c} but number {n} (offset {o}) was never received"
                );
            }
        }
        if final_check {
            assert_eq!(
                committed,
                end_offsets(&placement, 4),
                "committed to the end"
            );
        }
        committed
    };

    let mut a = run_sluice(&config_a, &data_a, common::free_port());
    eventually_or_dump("instance a under way", Some(dir.path()), || {
        received(&receiver).len() >= 2_000
    })
    .await;
    check(false);
    let mut b = run_sluice(&config_b, &data_b, common::free_port());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut checks = 0;
    while distinct(&received(&receiver)) < N as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every number arrived"
        );
        check(false);
        checks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.signal("TERM");
    b.signal("TERM");
    assert!(a.child().wait().expect("exit").success());
    assert!(b.child().wait().expect("exit").success());
    check(true);
    let requests = receiver.requests();
    let by = |path: &str| requests.iter().filter(|r| r.path == path).count();
    assert!(
        by("/a") > 0 && by("/b") > 0,
        "both instances delivered (a: {} requests, b: {})",
        by("/a"),
        by("/b")
    );
    eprintln!(
        "group of two: {checks} invariant checks, {} duplicates across the rebalance",
        received(&receiver).len() - N as usize
    );
}

/// Where `.ci/run` installs the `confluent-kafka` Python package.
fn python_path() -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from(std::env::var_os("HOME")?).join(".cache/sluice-tools/python");
    p.exists().then_some(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_key_headers_and_payload_and_an_independent_client_agrees() {
    // librdkafka's mock cluster listens on real loopback sockets, so the independent
    // Python client below talks to it like to any broker.
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("roundtrip", 3, 1).expect("topic");
    let bootstrap = &cluster.bootstrap_servers();
    let mut writer = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 300, format: '{{"n": {{{{seq}}}}, "fingerprint": "fp{{{{seq}}}}", "service": "api", "text": "héllo"}}' }}
sinks:
  kafka:
    type: kafka
    inputs: [gen]
    bootstrap_servers: "{bootstrap}"
    topic: roundtrip
    key_field: fingerprint
    headers: {{ service: "{{{{ service }}}}" }}
"#
    ));
    writer.validate().expect("valid");
    let (writing, written) = start(writer).await;
    // Stopping cancels the generator, so wait until the sink has all 300 first.
    let sink_sent = || {
        written
            .components()
            .into_iter()
            .find(|c| c.id == "kafka")
            .map_or(0, |c| c.sent.load(std::sync::atomic::Ordering::Relaxed))
    };
    eventually("the sink's 300 delivery reports", || sink_sent() == 300).await;
    assert_eq!(
        writing.stop(Duration::from_secs(30)).await,
        Drained::Complete
    );
    let mut reader = parse(&format!(
        "{}transforms:\n  meta: {{ type: remap, inputs: [k], source: '.kafka = %kafka' }}\n",
        source_yaml(bootstrap, "roundtrip", "g-rt", "")
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut reader, "out", &["meta"], 1000);
    let (topo, _t) = start(reader).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sink.values().len() < 300 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out with {} of 300 events back",
            sink.values().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(topo.stop(Duration::from_secs(20)).await, Drained::Complete);
    let mut seen = std::collections::BTreeSet::new();
    for v in sink.values() {
        let n = common::int(&v, "n");
        assert_eq!(string(&v, "text").as_deref(), Some("héllo"));
        let kafka = field(&v, "kafka");
        assert_eq!(string(&kafka, "key"), Some(format!("fp{n}")));
        assert_eq!(
            string(&field(&kafka, "headers"), "service").as_deref(),
            Some("api")
        );
        seen.insert(n);
    }
    assert_eq!(seen.len(), 300);

    // confluent-kafka (librdkafka 2.x from PyPI) reads what the sink wrote.
    let Some(pythonpath) = python_path() else {
        let why = "the confluent-kafka Python package is not installed (see .ci/run)";
        sluice::testing::skip(&format!("the independent client: {why}"));
        return;
    };
    let script = r#"
import json, sys
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "python-reader", "auto.offset.reset": "earliest"})
c.subscribe(["roundtrip"])
out, idle = [], 0
while len(out) < 300 and idle < 200:
    m = c.poll(0.1)
    if m is None:
        idle += 1
        continue
    if m.error():
        raise SystemExit(str(m.error()))
    out.append({"key": m.key().decode(), "headers": {k: v.decode() for k, v in (m.headers() or [])}, "value": json.loads(m.value())})
c.close()
print(json.dumps(out))
"#;
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(bootstrap)
        .env("PYTHONPATH", pythonpath)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "python reader: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("python output is JSON");
    assert_eq!(records.len(), 300);
    for r in &records {
        let n = r["value"]["n"].as_i64().expect("n");
        assert_eq!(r["key"], format!("fp{n}"));
        assert_eq!(r["headers"]["service"], "api");
        assert_eq!(r["value"]["text"], "héllo");
        assert_eq!(r["value"]["fingerprint"], format!("fp{n}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_aggregator_pipelines_carry_an_alert_end_to_end() {
    let Some(broker) = Tansu::start() else { return };
    broker.create_topic("sluice-e2e", 2);
    let oncall = Receiver::new(0).start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("dir");
    std::fs::write(
        logs.join("api.log"),
        "{\"message\":\"started\",\"level\":\"info\"}\n",
    )
    .expect("log");
    let alerts_port = common::free_port();
    let env = |cmd: &mut std::process::Command| {
        cmd.env("KAFKA_BROKERS", &broker.bootstrap)
            .env("KAFKA_TOPIC_SUFFIX", "e2e")
            .env("WEBHOOK_SECRET", "s3cret")
            .env("ALERTS_ADDRESS", format!("127.0.0.1:{alerts_port}"))
            .env("LOG_FILES", logs.join("*.log"))
            .env("PARKED_DIR", dir.path().join("parked"))
            .env(
                "ONCALL_URL",
                format!("http://127.0.0.1:{}/alerts", oncall.port),
            )
            .env("ARCHIVE_DIR", dir.path().join("archive"))
            .env("COMMIT_INTERVAL", "200ms");
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut agent_cmd = sluice();
    agent_cmd
        .args(["run", "--config"])
        .arg(root.join("pipelines/agent-to-kafka.yaml"))
        .arg("--data-dir")
        .arg(dir.path().join("agent"))
        .env(
            "SLUICE_API__ADDRESS",
            format!("127.0.0.1:{}", common::free_port()),
        );
    env(&mut agent_cmd);
    let mut aggregator_cmd = sluice();
    aggregator_cmd
        .args(["run", "--config"])
        .arg(root.join("pipelines/kafka-aggregator.yaml"))
        .arg("--data-dir")
        .arg(dir.path().join("aggregator"))
        .env(
            "SLUICE_API__ADDRESS",
            format!("127.0.0.1:{}", common::free_port()),
        );
    env(&mut aggregator_cmd);
    let mut agent = Process::spawn(agent_cmd);
    let mut aggregator = Process::spawn(aggregator_cmd);
    agent.wait_for_port(alerts_port).await;

    let payload =
        std::fs::read_to_string(root.join(
            "tests/fixtures/webhooks/grafana/alertmanager_oncall-example_firing_2alerts.json",
        ))
        .expect("fixture");
    let client = reqwest::Client::new();
    for _ in 0..2 {
        // Sent twice (a retrying Alertmanager): paged once.
        let r = client
            .post(format!("http://127.0.0.1:{alerts_port}/alertmanager"))
            .bearer_auth("s3cret")
            .header("content-type", "application/json")
            .body(payload.clone())
            .send()
            .await
            .expect("post");
        assert_eq!(
            r.status(),
            200,
            "the agent answers once Kafka has the alert"
        );
    }
    eventually_long("the alert paged", || !oncall.requests().is_empty()).await;
    eventually_long("the log line archived", || {
        std::fs::read_dir(dir.path().join("archive")).is_ok_and(|d| d.count() > 0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pages = oncall.requests();
    let alerts: Vec<serde_json::Value> = pages
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect();
    let firing = alerts.iter().filter(|a| a["status"] == "firing").count();
    let distinct_fingerprints: std::collections::HashSet<_> = alerts
        .iter()
        .map(|a| a["fingerprint"].to_string())
        .collect();
    assert_eq!(
        firing,
        distinct_fingerprints.len(),
        "each alert paged once: {alerts:?}"
    );
    for a in &alerts {
        assert_eq!(a["event_type"], "alert");
        assert!(a["agent"].is_string(), "stamped by the agent: {a}");
        assert_eq!(a["source"], "alertmanager");
    }
    agent.signal("TERM");
    aggregator.signal("TERM");
    assert!(agent.child().wait().expect("exit").success());
    assert!(aggregator.child().wait().expect("exit").success());
}
