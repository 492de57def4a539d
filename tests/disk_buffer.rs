//! Disk buffers and the memory budget, through the real binary: SIGKILLs under load,
//! damaged segments, and the process's resident memory under a stalled sink.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Process, Receiver, free_port, metric, sluice, wait_for_port};

fn spawn(pipeline: &Path, data: &Path, api: Option<u16>, env: &[(&str, &str)]) -> Process {
    let mut cmd = sluice();
    cmd.args(["run", "--no-watch", "-c"])
        .arg(pipeline)
        .arg("--data-dir")
        .arg(data);
    match api {
        Some(port) => {
            cmd.args(["--api-address", &format!("127.0.0.1:{port}")]);
        }
        None => {
            cmd.env("SLUICE_API__ENABLED", "false");
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    Process::spawn(cmd)
}

/// The `n` of every event the receiver accepted.
fn received(rx: &Receiver) -> Vec<i64> {
    let ok: Vec<_> = rx
        .requests()
        .into_iter()
        .filter(|r| r.status_ok())
        .collect();
    common::ndjson_ints(&ok, "n")
}

async fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn scrape(api: u16) -> String {
    match reqwest::get(format!("http://127.0.0.1:{api}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Posts `events` (one `{"n": …}` per line) to a webhook; whether it answered 200.
async fn post(client: &reqwest::Client, port: u16, events: &[i64]) -> bool {
    let body: String = events.iter().map(|n| format!("{{\"n\":{n}}}\n")).collect();
    matches!(
        client
            .post(format!("http://127.0.0.1:{port}/"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await,
        Ok(r) if r.status() == 200
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_under_load_lose_no_acknowledged_event() {
    const KILLS: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(0).start().await;
    // A slow receiver keeps a backlog in the buffer when the kills land.
    rx.set_delay(Duration::from_millis(3));
    let hook = free_port();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out:
    type: http
    inputs: [hook]
    url: "http://127.0.0.1:{}/"
    encoding: ndjson
    batch: {{ max_events: 100, timeout: 5ms }}
    buffer: {{ type: disk, max_bytes: 64MiB }}
"#,
            rx.port
        ),
    )
    .expect("pipeline");
    let data = dir.path().join("data");

    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let next = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (acked, next, stop) = (Arc::clone(&acked), Arc::clone(&next), Arc::clone(&stop));
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("client");
                while !stop.load(Ordering::Relaxed) {
                    let first = next.fetch_add(10, Ordering::Relaxed);
                    let events: Vec<i64> = (first..first + 10).collect();
                    if post(&client, hook, &events).await {
                        acked.lock().expect("lock").extend(events);
                    } else {
                        // Down between a kill and the restart.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect();

    let mut process = spawn(&pipeline, &data, None, &[]);
    for _ in 0..KILLS {
        wait_for_port(hook).await;
        let acked_before = acked.lock().expect("lock").len();
        tokio::time::sleep(Duration::from_millis(fastrand::u64(80..300))).await;
        // Only kill once this run has taken some load.
        wait_until("events acknowledged in this run", 30, || {
            acked.lock().expect("lock").len() > acked_before
        })
        .await;
        process.signal("KILL");
        let _ = process.child().wait();
        process = spawn(&pipeline, &data, None, &[]);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let acked: Vec<i64> = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 200 * KILLS / 10,
        "load was real: {} acknowledged",
        acked.len()
    );

    let wanted: HashSet<i64> = acked.iter().copied().collect();
    wait_until(
        "every acknowledged event delivered after the last restart",
        60,
        || {
            let got: HashSet<i64> = received(&rx).into_iter().collect();
            wanted.is_subset(&got)
        },
    )
    .await;
    let all = received(&rx);
    let unique: HashSet<i64> = all.iter().copied().collect();
    eprintln!(
        "{KILLS} SIGKILLs: {} events acknowledged, {} delivered ({} twice or more)",
        acked.len(),
        unique.len(),
        all.len() - unique.len()
    );
    process.signal("TERM");
    let _ = process.child().wait();
}

/// Offsets of every record in the buffer's segments, in order.
fn records(buffer_dir: &Path) -> Vec<(PathBuf, usize)> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(buffer_dir)
        .expect("buffer dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    segments
        .into_iter()
        .flat_map(|p| {
            let bytes = std::fs::read(&p).expect("segment");
            memchr::memmem::find_iter(&bytes, b"SLR1")
                .map(|at| (p.clone(), at))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_segment_is_reported_and_every_intact_record_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink_port = free_port();
    let (hook, api) = (free_port(), free_port());
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out:
    type: http
    inputs: [hook]
    url: "http://127.0.0.1:{sink_port}/"
    encoding: ndjson
    batch: {{ max_events: 10, timeout: 5ms }}
    buffer: {{ type: disk }}
"#
        ),
    )
    .expect("pipeline");
    let data = dir.path().join("data");

    // The sink's receiver is down: each alert is acknowledged once it is on disk.
    let mut first = spawn(&pipeline, &data, Some(api), &[]);
    wait_for_port(hook).await;
    let client = reqwest::Client::new();
    for n in 0..50 {
        assert!(post(&client, hook, &[n]).await, "alert {n} acknowledged");
    }
    first.signal("KILL");
    let _ = first.child().wait();

    let buffer_dir = data.join("buffers/out");
    let recs = records(&buffer_dir);
    assert_eq!(recs.len(), 50, "one record per alert");
    // Flip bytes inside the payload of record 25 (alert 24).
    let (seg, at) = &recs[24];
    let mut bytes = std::fs::read(seg).expect("segment");
    for b in &mut bytes[at + 24..at + 28] {
        *b ^= 0x5a;
    }
    std::fs::write(seg, &bytes).expect("damage");

    let rx = Receiver::new(sink_port).start().await;
    let mut second = spawn(&pipeline, &data, Some(api), &[]);
    let expected: Vec<i64> = (0..50).filter(|n| *n != 24).collect();
    wait_until("every intact record delivered", 30, || {
        let mut got = received(&rx);
        got.dedup();
        got == expected
    })
    .await;
    let mut damaged = None;
    wait_until("the damage is reported", 10, || {
        let body = futures_executor_block(scrape(api));
        damaged = metric(&body, "sluice_buffer_damaged_records_total", "out");
        damaged == Some(1.0)
    })
    .await;
    wait_until("the damaged segment is quarantined", 10, || {
        std::fs::read_dir(buffer_dir.join("quarantine")).is_ok_and(|d| d.count() == 1)
    })
    .await;
    assert!(
        second.child().try_wait().expect("status").is_none(),
        "still running"
    );
    second.signal("TERM");
    let _ = second.child().wait();
}

/// Runs a future to completion from a synchronous closure inside the test runtime.
fn futures_executor_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_stalled_sink_memory_stays_within_the_budget() {
    const BUDGET: u64 = 64 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(0).start().await;
    // The sink's requests hang: nothing leaves the buffer.
    rx.set_delay(Duration::from_secs(3600));
    let pad = "x".repeat(1000);
    let run = |count: u64| {
        let api = free_port();
        let pipeline = dir.path().join(format!("p{count}.yaml"));
        std::fs::write(
            &pipeline,
            format!(
                r#"
sources:
  gen: {{ type: generator, count: {count}, batch_size: 500, format: '{{"seq": {{{{seq}}}}, "pad": "{pad}"}}' }}
sinks:
  out:
    type: http
    inputs: [gen]
    url: "http://127.0.0.1:{}/"
    batch: {{ max_events: 100 }}
    request: {{ concurrency: 1, timeout: 1h }}
    buffer: {{ max_events: 10000000 }}
"#,
                rx.port
            ),
        )
        .expect("pipeline");
        let p = spawn(
            &pipeline,
            &dir.path().join(format!("data{count}")),
            Some(api),
            &[("SLUICE_MEMORY_LIMIT", "64MiB")],
        );
        (p, api)
    };
    // Settled: the buffer stopped growing for half a second.
    async fn settled(api: u16) -> f64 {
        let (mut last, mut same) = (-1.0, 0);
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = metric(&scrape(api).await, "sluice_buffer_events", "out").unwrap_or(-1.0);
            if now > 0.0 && now == last {
                same += 1;
                if same >= 5 {
                    return now;
                }
            } else {
                same = 0;
            }
            last = now;
        }
        panic!("the buffer never settled");
    }

    // The fixed overhead: the same pipeline with one event.
    let (mut idle, api) = run(1);
    wait_until("the one event is emitted", 30, || {
        let body = futures_executor_block(scrape(api));
        metric(&body, "sluice_component_sent_events_total", "gen") == Some(1.0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let overhead = peak_rss(idle.child().id());
    idle.signal("KILL");

    // Two million events of ~1 KiB would be about 2 GiB without the budget.
    let (mut loaded, api) = run(2_000_000);
    let buffered = settled(api).await;
    let peak = peak_rss(loaded.child().id());
    let sent = metric(
        &scrape(api).await,
        "sluice_component_sent_events_total",
        "gen",
    )
    .unwrap_or(0.0);
    loaded.signal("KILL");
    eprintln!(
        "budget 64 MiB: {buffered} events buffered ({sent} emitted), peak RSS {} MiB, idle {} MiB",
        peak >> 20,
        overhead >> 20
    );
    assert!(
        sent < 200_000.0,
        "the source was held back ({sent} emitted)"
    );
    assert!(
        buffered * 1500.0 > (BUDGET / 2) as f64,
        "the budget was used: {buffered} events buffered"
    );
    // Budget, the fixed overhead, and the allocator's slack.
    assert!(
        peak <= overhead + BUDGET + (24 << 20),
        "peak RSS {} MiB over {} MiB budget + {} MiB overhead",
        peak >> 20,
        BUDGET >> 20,
        overhead >> 20
    );
}

fn valid(yaml: &str) -> sluice::config::Pipeline {
    let mut p = common::parse(yaml);
    p.validate().unwrap_or_else(|e| panic!("valid: {e}"));
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_switch_a_sink_between_memory_and_disk_without_losing_events() {
    const N: usize = 3000;
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(0).start().await;
    let yaml = |buffer: &str| {
        format!(
            r#"
sources:
  gen: {{ type: generator, count: {N}, rate: 10000, batch_size: 50, format: '{{"n": {{{{seq}}}}}}' }}
sinks:
  out: {{ type: http, inputs: [gen], url: "http://127.0.0.1:{}/", encoding: ndjson, batch: {{ max_events: 50, timeout: 5ms }}, buffer: {buffer} }}
"#,
            rx.port
        )
    };
    let options = sluice::topology::TopologyOptions {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let telemetry = sluice::telemetry::Telemetry::new();
    let mut topo =
        sluice::topology::start(valid(&yaml("{ max_events: 100 }")), telemetry, &options)
            .await
            .expect("starts");
    wait_until("some events in memory mode", 10, || {
        received(&rx).len() > 200
    })
    .await;
    let changes = topo
        .apply(valid(&yaml("{ type: disk, max_bytes: 1MiB }")))
        .await
        .expect("switched to disk");
    assert!(changes.added.contains(&"out".to_owned()), "{changes:?}");
    wait_until("events through the disk buffer", 10, || {
        dir.path().join("buffers/out/ledger.json").exists()
    })
    .await;
    // Bounds and sync policy change in place: the sink is not rebuilt.
    let changes = topo
        .apply(valid(&yaml(
            "{ type: disk, max_bytes: 2MiB, sync: interval, sync_interval: 20ms }",
        )))
        .await
        .expect("reconfigured");
    assert!(changes.is_empty(), "{changes:?}");
    wait_until("every event", 30, || {
        let mut got = received(&rx);
        got.dedup();
        got.len() == N
    })
    .await;
    let got = received(&rx);
    assert_eq!(got.len(), N, "none lost, none twice across the switches");
    topo.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_checkpoints_advance_once_lines_are_on_disk_even_with_the_sink_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let lines: String = (0..500).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    std::fs::write(&log, &lines).expect("log");
    let sink_port = free_port();
    let yaml = format!(
        r#"
sources:
  logs: {{ type: file, include: ["{}"], json: true, glob_interval: 20ms, poll_interval: 10ms, checkpoint_interval: 20ms }}
sinks:
  out: {{ type: http, inputs: [logs], url: "http://127.0.0.1:{sink_port}/", encoding: ndjson, batch: {{ max_events: 100, timeout: 5ms }}, buffer: {{ type: disk }} }}
"#,
        log.display()
    );
    let options = sluice::topology::TopologyOptions {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    let topo = sluice::topology::start(valid(&yaml), sluice::telemetry::Telemetry::new(), &options)
        .await
        .expect("starts");
    let checkpoints = dir.path().join("data/logs/checkpoints.json");
    // Nothing listens on the sink's port, yet the source moves on: the lines are safe.
    wait_until("the checkpoint reaches the end of the file", 10, || {
        std::fs::read(&checkpoints)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["files"][0]["offset"].as_u64())
            == Some(lines.len() as u64)
    })
    .await;
    // The receiver comes up: everything buffered is delivered.
    let rx = Receiver::new(sink_port).start().await;
    wait_until("every line delivered", 30, || {
        let mut got = received(&rx);
        got.dedup();
        got.len() == 500
    })
    .await;
    topo.stop(Duration::from_secs(5)).await;
}
