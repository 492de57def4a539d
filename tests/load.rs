//! `sluice bench --quick` on every scenario in `benches/scenarios/`, as CI runs it: the
//! real binary drives a real child sluice, and the JSON report must show every event
//! delivered exactly once with sane figures on both sides.

mod common;

use std::path::Path;

use common::sluice;
use serde_json::Value;

fn scenarios_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/scenarios"))
}

/// Runs one scenario in quick mode and returns its report (`None` when skipped here).
fn quick(name: &str) -> Option<Value> {
    let out = sluice()
        .args(["bench", "--quick", "--json", "--dir"])
        .arg(scenarios_dir())
        .arg(name)
        .output()
        .expect("sluice bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sluice bench {name} failed:\n{stderr}"
    );
    let reports: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON report: {e}\n{}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = reports.into_iter().next().expect("one report");
    if let Some(why) = report["skipped"].as_str() {
        sluice::testing::skip(&format!("{name}: {why}"));
        return None;
    }
    // The table is on standard error when --json is given.
    assert!(stderr.contains(name), "{stderr}");
    Some(report)
}

fn f(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} in {v:#}"))
}

/// Every event arrived once; throughput, latency and ratio are positive and ordered.
fn assert_sane(r: &Value, count: u64, sluice_latency: bool, baseline_latency: bool) {
    assert_eq!(r["sent"].as_u64(), Some(count), "{r:#}");
    assert_eq!(r["delivered"].as_u64(), Some(count), "{r:#}");
    assert_eq!(r["duplicates"].as_u64(), Some(0), "{r:#}");
    assert_eq!(r["failed"].as_u64(), Some(0), "{r:#}");
    assert_eq!(r["quick"].as_bool(), Some(true));
    for side in ["/sluice", "/baseline"] {
        assert!(f(r, &format!("{side}/events_per_sec")) > 0.0, "{r:#}");
        assert!(f(r, &format!("{side}/mib_per_sec")) > 0.0, "{r:#}");
    }
    assert!(f(r, "/driver_events_per_sec") > 0.0, "{r:#}");
    let mut sides = Vec::new();
    if sluice_latency {
        sides.push("/sluice");
    }
    if baseline_latency {
        sides.push("/baseline");
    }
    for side in sides {
        let l = |q: &str| f(r, &format!("{side}/latency_ms/{q}"));
        assert!(l("p50") > 0.0, "{r:#}");
        assert!(l("p50") <= l("p90") && l("p90") <= l("p99"), "{r:#}");
        assert!(l("p99") <= l("p99_9") && l("p99_9") <= l("max"), "{r:#}");
        // Quick runs are small and local: a minute would mean something is stuck.
        assert!(l("max") < 60_000.0, "{r:#}");
    }
    assert!(f(r, "/ratio") > 0.0, "{r:#}");
    assert!(r["machine"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(r["command"].as_str().is_some_and(|c| c.contains("--quick")));
}

#[test]
fn webhook_alert_to_pagerduty() {
    if let Some(r) = quick("webhook-alert-to-pagerduty") {
        assert_sane(&r, 100, true, true);
        assert_eq!(r["measure"], "latency");
        // Where the latency went inside sluice: each component and end to end, over
        // every alert.
        let stages: Vec<&str> = r["sluice_stages"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["stage"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            stages,
            ["alerts (source)", "oncall (sink)", "end to end"],
            "{r:#}"
        );
        for (i, _) in stages.iter().enumerate() {
            let st = |q: &str| f(&r, &format!("/sluice_stages/{i}/{q}"));
            assert_eq!(st("events"), 100.0, "{r:#}");
            assert!(st("p50") > 0.0 && st("p50") <= st("p99_9"), "{r:#}");
            assert!(st("p99_9") <= st("max"), "{r:#}");
        }
        // An event only gets older on its way: the sink sees it later than the source.
        assert!(
            f(&r, "/sluice_stages/1/p50") >= f(&r, "/sluice_stages/0/p50"),
            "{r:#}"
        );
        // What the machine did meanwhile, and the slowest alerts, for both runs.
        for side in ["sluice", "baseline"] {
            let noise = &r[side]["noise"];
            assert!(noise["longest_stall_ms"].as_f64().is_some(), "{r:#}");
            assert!(noise["stalls_over_10ms"].as_u64().is_some(), "{r:#}");
            assert!(noise["stolen_ms"].as_f64().is_some(), "{r:#}");
            let slowest: Vec<f64> = r[side]["slowest"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s["latency_ms"].as_f64()).collect())
                .unwrap_or_default();
            assert_eq!(slowest.len(), 5, "{r:#}");
            assert!(slowest.windows(2).all(|w| w[0] >= w[1]), "{r:#}");
            // The slowest is the histogram's max (kept to 3 significant digits).
            let max = f(&r, &format!("/{side}/latency_ms/max"));
            assert!((slowest[0] - max).abs() <= max / 500.0, "{r:#}");
        }
    }
}

#[test]
fn ndjson_to_http() {
    if let Some(r) = quick("ndjson-to-http") {
        assert_sane(&r, 2000, true, true);
        assert_eq!(r["measure"], "throughput");
        // No timer thread takes CPU from a throughput run.
        assert!(
            r["sluice"]["noise"].get("longest_stall_ms").is_none(),
            "{r:#}"
        );
        assert!(
            r["sluice"]["noise"]["stolen_ms"].as_f64().is_some(),
            "{r:#}"
        );
    }
}

/// Each stage's name and how many events it saw, from a report's `sluice_stages`.
fn stage_events(r: &Value) -> Vec<(&str, u64)> {
    r["sluice_stages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s["stage"].as_str()?, s["events"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ndjson_filter_to_http() {
    if let Some(r) = quick("ndjson-filter-to-http") {
        assert_sane(&r, 2000, true, true);
        assert_eq!(r["measure"], "throughput");
        // The filter passed every event on (the driver sends only `high` ones).
        let stages = stage_events(&r);
        assert!(stages.contains(&("serious (transform)", 2000)), "{r:#}");
    }
}

#[test]
fn ndjson_remap_to_http() {
    if let Some(r) = quick("ndjson-remap-to-http") {
        assert_sane(&r, 2000, true, true);
        assert_eq!(r["measure"], "throughput");
        let stages = stage_events(&r);
        assert!(stages.contains(&("stamp (transform)", 2000)), "{r:#}");
    }
}

#[test]
fn ndjson_fields_to_http() {
    if let Some(r) = quick("ndjson-fields-to-http") {
        assert_sane(&r, 2000, true, true);
        assert_eq!(r["measure"], "throughput");
        // The dedupe passed every event on (each has its own `n`).
        let stages = stage_events(&r);
        assert!(stages.contains(&("once (transform)", 2000)), "{r:#}");
    }
}

#[test]
fn forward_to_http() {
    if let Some(r) = quick("forward-to-http") {
        assert_sane(&r, 2000, true, true);
        assert_eq!(r["measure"], "throughput");
        let what = r["baseline"]["what"].as_str().unwrap_or_default();
        assert!(what.contains("NDJSON over HTTP"), "{what}");
    }
}

#[test]
fn file_to_http() {
    if let Some(r) = quick("file-to-http") {
        assert_sane(&r, 2000, true, false);
        assert!(
            r["baseline"]["what"]
                .as_str()
                .is_some_and(|w| w.contains("cat"))
        );
    }
}

#[test]
fn kafka_to_postgres() {
    if let Some(r) = quick("kafka-to-postgres") {
        assert_sane(&r, 500, false, false);
        let parts = r["baseline"]["parts"].as_array().expect("two baselines");
        assert_eq!(parts.len(), 2, "{r:#}");
    }
}

#[test]
fn scenarios_are_built_in_outside_the_checkout() {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = sluice()
        .current_dir(elsewhere.path())
        .args(["bench", "--list"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().count(), 8, "{text}");
    assert!(
        text.lines().all(|l| !l.contains(".yaml:")),
        "every built-in scenario loads: {text}"
    );
    assert!(text.contains("webhook-alert-to-pagerduty"), "{text}");
}

#[test]
fn every_scenario_file_is_listed_and_loads() {
    let out = sluice()
        .args(["bench", "--list", "--dir"])
        .arg(scenarios_dir())
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "webhook-alert-to-pagerduty",
        "forward-to-http",
        "ndjson-to-http",
        "ndjson-filter-to-http",
        "ndjson-fields-to-http",
        "ndjson-remap-to-http",
        "file-to-http",
        "kafka-to-postgres",
    ] {
        assert!(text.contains(name), "{text}");
    }
    assert!(
        !text.contains(".pipeline"),
        "pipeline files are not scenarios: {text}"
    );
    // And every scenario's pipeline is a valid pipeline file.
    for entry in std::fs::read_dir(scenarios_dir()).expect("dir") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().ends_with(".pipeline.yaml") {
            let out = sluice()
                .args(["validate", "--config"])
                .arg(&path)
                .env("BENCH_SOURCE_ADDRESS", "127.0.0.1:1")
                .env("BENCH_RECEIVER", "http://127.0.0.1:2")
                .env("BENCH_FILE", "/tmp/bench.log")
                .env("BENCH_KAFKA", "127.0.0.1:3")
                .env("BENCH_TOPIC", "bench")
                .env("BENCH_GROUP", "bench")
                .env("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
                .env("BENCH_PG_SCHEMA", "bench")
                .output()
                .expect("runs");
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn an_unknown_scenario_is_an_error() {
    let out = sluice()
        .args(["bench", "--quick", "--dir"])
        .arg(scenarios_dir())
        .arg("no-such-scenario")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-scenario"));
}
