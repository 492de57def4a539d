//! Reading one large file: the `file` source into a `blackhole` sink (framing, UTF-8
//! checks, one event per line with `file`/`host`/`offset`, acknowledgements and
//! checkpoints), next to `cat file > /dev/null` over the same file in the same run.
//!
//! `cargo bench --bench file_source` writes and reads a 1 GiB file of ~100-byte lines
//! (in `$CARGO_TARGET_TMPDIR`, deleted afterwards); under `cargo test` (no `--bench` in
//! argv) it uses 8 MiB so CI stays fast. Each figure is the best of a few runs, the file
//! being in the page cache for both.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sluice::config::load_texts;
use sluice::telemetry::Telemetry;
use sluice::topology::{self, TopologyOptions};

/// Writes `bytes` of numbered lines of about 100 bytes; returns the line count.
fn write_file(path: &Path, bytes: u64) -> u64 {
    let mut f =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let (mut written, mut lines) = (0u64, 0u64);
    while written < bytes {
        let line = format!(
            "2026-11-21T22:00:00.000Z INFO request served path=/api/v1/items/{lines:010} status=200 ms=12\n"
        );
        f.write_all(line.as_bytes()).expect("write");
        written += line.len() as u64;
        lines += 1;
    }
    f.flush().expect("flush");
    lines
}

/// MiB/s of `cat file > /dev/null`.
fn cat(path: &Path, bytes: u64) -> f64 {
    let started = Instant::now();
    let status = std::process::Command::new("cat")
        .arg(path)
        .stdout(std::fs::File::create("/dev/null").expect("/dev/null"))
        .status()
        .expect("cat runs");
    assert!(status.success());
    mib(bytes) / started.elapsed().as_secs_f64()
}

/// MiB/s of file → blackhole, until every line arrived.
async fn sluice_read(path: &Path, data_dir: &Path, bytes: u64, lines: u64) -> f64 {
    // A fresh data_dir each run: no checkpoint, so the file is read from the start.
    let _ = std::fs::remove_dir_all(data_dir);
    let yaml = format!(
        "sources:\n  logs: {{ type: file, include: [\"{}\"], glob_interval: 10ms, poll_interval: 10ms }}\nsinks:\n  out: {{ type: blackhole, inputs: [logs] }}\n",
        path.display()
    );
    let p = load_texts(&[(PathBuf::from("bench.yaml"), yaml)], |_| None).expect("valid");
    let telemetry = Telemetry::new();
    let options = TopologyOptions {
        data_dir: data_dir.to_owned(),
        ..TopologyOptions::default()
    };
    let started = Instant::now();
    let running = topology::start(p, telemetry.clone(), &options)
        .await
        .expect("starts");
    let out = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "out")
        .expect("the blackhole's metrics");
    while out.received.load(Ordering::Relaxed) < lines {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = mib(bytes) / started.elapsed().as_secs_f64();
    running.stop(Duration::from_secs(30)).await;
    rate
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let size: u64 = if measuring { 1 << 30 } else { 8 << 20 };
    let rounds = if measuring { 3 } else { 1 };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let path = dir.path().join("big.log");
    let lines = write_file(&path, size);
    let bytes = std::fs::metadata(&path).expect("stat").len();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut best_cat: f64 = 0.0;
    let mut best_sluice: f64 = 0.0;
    for _ in 0..rounds {
        best_cat = best_cat.max(cat(&path, bytes));
        best_sluice = best_sluice.max(rt.block_on(sluice_read(
            &path,
            &dir.path().join("data"),
            bytes,
            lines,
        )));
    }
    println!(
        "file_source: {:.0} MiB ({lines} lines): file -> blackhole {best_sluice:.1} MiB/s ({:.2} M lines/s); cat > /dev/null {best_cat:.1} MiB/s; ratio {:.3}",
        mib(bytes),
        best_sluice * lines as f64 / mib(bytes) / 1e6,
        best_sluice / best_cat
    );
}
