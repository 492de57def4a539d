//! The webhook port under a flood, as issue 21 states the goal: 100 senders each posting
//! 10 MiB bodies of `1\n` lines and 4 posting 2,000-alert Alertmanager bodies, against a
//! sluice with `memory_limit: 256MiB`. Meanwhile, every 50 ms, `/health/live` is asked
//! and the process's resident memory read, and every 500 ms a small alert is sent and
//! timed until it is in the sink's file.
//!
//! Goals: peak RSS under 512 MiB, every `/health/live` answered within 100 ms, every
//! small alert delivered within 1 s. The bench prints the figures and exits 1 when a goal
//! is missed.
//!
//! Run: `cargo bench --bench hostile_load` (optionally `-- SECONDS`, default 20), on an
//! otherwise idle machine: the senders share its cores with sluice.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

const BIG_SENDERS: usize = 100;
const ALERT_SENDERS: usize = 4;
const RSS_GOAL_MIB: u64 = 512;
const HEALTH_GOAL: Duration = Duration::from_millis(100);
const DELIVERY_GOAL: Duration = Duration::from_secs(1);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Sluice(Child);

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn alertmanager_body(n: usize, prefix: &str) -> Vec<u8> {
    let alerts: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": { "alertname": format!("{prefix}{i}"), "severity": "critical", "instance": "db1:9100" },
                "annotations": { "summary": "disk full", "description": "the disk is full".repeat(8) },
                "startsAt": "2026-11-21T12:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": format!("{i:016x}")
            })
        })
        .collect();
    serde_json::to_vec(
        &json!({ "version": "4", "status": "firing", "receiver": "sluice", "alerts": alerts }),
    )
    .expect("JSON")
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: the flood is a
    // measurement for an optimized build, not a test.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "hostile_load: a load measurement; run it with `cargo bench --bench hostile_load`"
        );
        return;
    }
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, api) = (free_port(), free_port());
    let out = dir.path().join("out.ndjson");
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
sources:
  hooks:
    type: webhook
    address: "127.0.0.1:{port}"
    routes:
      - {{ path: /events }}
      - {{ path: /am, decoder: alertmanager }}
sinks:
  out: {{ type: file, inputs: [hooks], path: "{}" }}
"#,
            out.display()
        ),
    )
    .expect("pipeline");
    let settings = dir.path().join("settings.yaml");
    std::fs::write(
        &settings,
        format!(
            "data_dir: {}\nmemory_limit: 256MiB\nlog: {{ level: warn }}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("settings");
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg("--config")
        .arg(&pipeline)
        .arg("--settings")
        .arg(&settings)
        .arg("--api-address")
        .arg(format!("127.0.0.1:{api}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sluice starts");
    let pid = child.id();
    let sluice = Sluice(child);
    sluice::net::install_crypto_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let health = format!("http://127.0.0.1:{api}/health/live");
    let started = Instant::now();
    while client.get(&health).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sluice never came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let idle_rss = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(std::sync::Mutex::new(
        std::collections::BTreeMap::<u16, u64>::new(),
    ));
    let big = bytes::Bytes::from("1\n".repeat(5 * 1024 * 1024));
    let alerts = bytes::Bytes::from(alertmanager_body(2000, "Flood"));
    let mut senders = Vec::new();
    for i in 0..BIG_SENDERS + ALERT_SENDERS {
        let (client, stop, answers) = (client.clone(), Arc::clone(&stop), Arc::clone(&answers));
        let (url, body) = if i < BIG_SENDERS {
            (format!("http://127.0.0.1:{port}/events"), big.clone())
        } else {
            (format!("http://127.0.0.1:{port}/am"), alerts.clone())
        };
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let status = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                *answers.lock().expect("lock").entry(status).or_default() += 1;
            }
        }));
    }

    let peak_rss = Arc::new(AtomicU64::new(idle_rss));
    // Probed from a thread of its own with a blocking socket, so the senders' tasks on
    // this runtime cannot delay the probe and be counted as sluice's latency.
    let prober = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut worst, mut probes, mut failures) = (Duration::ZERO, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                let answered = std::net::TcpStream::connect(("127.0.0.1", api)).and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    s.write_all(
                        b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                    )?;
                    let mut answer = Vec::new();
                    s.read_to_end(&mut answer)?;
                    Ok(answer.starts_with(b"HTTP/1.1 200"))
                });
                if !matches!(answered, Ok(true)) {
                    failures += 1;
                }
                worst = worst.max(asked.elapsed());
                probes += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (worst, probes, failures)
        })
    };
    let mut deliveries: Vec<Duration> = Vec::new();
    let mut undelivered = 0u64;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut next_alert = Instant::now();
    let mut marker = 0u64;
    let mut pending: Option<(String, Instant)> = None;
    while Instant::now() < deadline {
        peak_rss.fetch_max(rss_kib(pid), Ordering::Relaxed);

        if let Some((name, sent)) = &pending {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if text.contains(name.as_str()) {
                deliveries.push(sent.elapsed());
                pending = None;
            } else if sent.elapsed() > Duration::from_secs(10) {
                undelivered += 1;
                pending = None;
            }
        }
        if pending.is_none() && Instant::now() >= next_alert {
            marker += 1;
            let name = format!("SmallAlert{marker}x");
            let body = alertmanager_body(1, &name);
            let sent = Instant::now();
            let client = client.clone();
            let url = format!("http://127.0.0.1:{port}/am");
            // Sent in the background: its answer waits for delivery.
            tokio::spawn(async move {
                let _ = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
            });
            pending = Some((format!("{name}0"), sent));
            next_alert = sent + Duration::from_millis(500);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.abort();
    }
    let (health_worst, health_probes, health_failures) = prober.join().expect("prober");

    let peak_mib = peak_rss.load(Ordering::Relaxed) / 1024;
    let delivery_worst = deliveries.iter().max().copied().unwrap_or(Duration::MAX);
    println!(
        "hostile_load: {seconds} s, {BIG_SENDERS} senders of 10 MiB `1\\n` bodies and {ALERT_SENDERS} of 2,000-alert bodies, memory_limit 256MiB"
    );
    println!("  answers by status: {:?}", answers.lock().expect("lock"));
    println!(
        "  RSS: idle {} MiB, peak {peak_mib} MiB (goal < {RSS_GOAL_MIB})",
        idle_rss / 1024
    );
    println!(
        "  /health/live: {health_probes} probes, worst {health_worst:?}, {health_failures} failed (goal < {HEALTH_GOAL:?})"
    );
    println!(
        "  small alerts: {} delivered, worst {delivery_worst:?}, {undelivered} not within 10 s (goal < {DELIVERY_GOAL:?})",
        deliveries.len()
    );
    let met = peak_mib < RSS_GOAL_MIB
        && health_worst < HEALTH_GOAL
        && health_failures == 0
        && undelivered == 0
        && !deliveries.is_empty()
        && delivery_worst < DELIVERY_GOAL;
    println!("  goals {}", if met { "met" } else { "MISSED" });
    // `exit` skips destructors: stop sluice first.
    drop(sluice);
    if !met {
        std::process::exit(1);
    }
}
