//! Reload latency, p50 and p99, two ways:
//! - in process: `Topology::apply` of a pipeline whose remap changed (load, validate,
//!   diff, build, commit, hand-over), against an apply that changes nothing (load,
//!   validate, diff) measured in the same run;
//! - end to end: a running `sluice` with the file watcher; from the pipeline file being
//!   written to `/health` reporting the new config hash (includes the 200 ms debounce).
//!
//! `cargo bench --bench reload` measures; under `cargo test` it runs a few rounds only.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sluice::config::{Pipeline, load_texts};
use sluice::telemetry::Telemetry;
use sluice::topology::{self, TopologyOptions};

fn pipeline_text(version: u32) -> String {
    format!(
        "sources:\n  gen: {{ type: generator, rate: 20000, batch_size: 100 }}\ntransforms:\n  stamp: {{ type: remap, inputs: [gen], source: \".version = {version}\" }}\nsinks:\n  out: {{ type: blackhole, inputs: [stamp] }}\n"
    )
}

fn load(text: &str) -> Pipeline {
    load_texts(&[(PathBuf::from("bench.yaml"), text.to_owned())], |_| None).expect("valid")
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn in_process(rounds: u32) -> (Histogram<u64>, Histogram<u64>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut topo = topology::start(
            load(&pipeline_text(0)),
            Telemetry::new(),
            &TopologyOptions::default(),
        )
        .await
        .expect("starts");
        let (mut changed, mut unchanged) = (histogram(), histogram());
        for v in 1..=rounds {
            let text = pipeline_text(v);
            let t = Instant::now();
            let c = topo.apply(load(&text)).await.expect("applies");
            changed.saturating_record(t.elapsed().as_micros() as u64);
            assert_eq!(c.changed, vec!["stamp".to_string()]);
            let t = Instant::now();
            let c = topo.apply(load(&text)).await.expect("applies");
            unchanged.saturating_record(t.elapsed().as_micros() as u64);
            assert!(c.is_empty());
        }
        topo.stop(Duration::from_secs(10)).await;
        (changed, unchanged)
    })
}

fn end_to_end(rounds: u32) -> Histogram<u64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, pipeline_text(0)).expect("write");
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "-c"])
        .arg(&path)
        .args(["--api-address", &format!("127.0.0.1:{api}")])
        .env("SLUICE_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sluice starts");
    let hash = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", api)).ok()?;
        use std::io::{Read, Write};
        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        let start = body.find("\"hash\":\"")? + 8;
        Some(body[start..start + 16].to_owned())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut current = loop {
        if let Some(h) = hash() {
            break h;
        }
        assert!(Instant::now() < deadline, "sluice did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut h = histogram();
    for v in 1..=rounds {
        let t = Instant::now();
        std::fs::write(&path, pipeline_text(v)).expect("write");
        loop {
            match hash() {
                Some(new) if new != current => {
                    current = new;
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "reload {v} never became active"
            );
        }
        h.saturating_record(t.elapsed().as_micros() as u64);
        // Let the watcher settle so writes are not coalesced by the debounce.
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    h
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (rounds, e2e_rounds) = if measuring { (200, 40) } else { (3, 2) };
    let (changed, unchanged) = in_process(rounds);
    let e2e = end_to_end(e2e_rounds);
    println!("reload latency ({rounds} in-process rounds, {e2e_rounds} end-to-end rounds)");
    println!("{:<52} {:>10} {:>10}", "scenario", "p50 ms", "p99 ms");
    for (name, h) in [
        ("apply, remap changed (build + hand-over)", &changed),
        (
            "apply, nothing changed (baseline: load+validate+diff)",
            &unchanged,
        ),
        ("file written -> active (watcher, 200 ms debounce)", &e2e),
    ] {
        println!("{name:<52} {:>10.2} {:>10.2}", ms(h, 0.5), ms(h, 0.99));
    }
    println!(
        "ratio changed/unchanged at p50: {:.2}",
        ms(&changed, 0.5) / ms(&unchanged, 0.5).max(0.001)
    );
    println!(
        "{}",
        serde_json::json!({
            "apply_changed_ms": { "p50": ms(&changed, 0.5), "p99": ms(&changed, 0.99) },
            "apply_unchanged_ms": { "p50": ms(&unchanged, 0.5), "p99": ms(&unchanged, 0.99) },
            "file_to_active_ms": { "p50": ms(&e2e, 0.5), "p99": ms(&e2e, 0.99) },
        })
    );
}
