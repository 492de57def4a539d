//! Operator tooling: `sluice top` against a real running sluice, `sluice schema` and
//! `sluice list`, and progress bars staying out of captured output.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Process, free_port, sluice, wait_for_port};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use sluice::cli::top::{Rates, fetch, render};

/// Polls `/components` until `id` has sent at least one event.
async fn wait_flowing(client: &reqwest::Client, address: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = fetch(client, address, None).await
            && s.components.iter().any(|c| c.id == id && c.sent > 0)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never sent an event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn top_renders_live_rates_of_a_running_sluice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port();
    let path = dir.path().join("top.yaml");
    std::fs::write(
        &path,
        "sources:\n  gen: { type: generator, rate: 400, batch_size: 4 }\ntransforms:\n  stamp: { type: remap, inputs: [gen], source: .stamped = true }\nsinks:\n  out: { type: blackhole, inputs: [stamp] }\n",
    )
    .expect("write");
    let address = format!("127.0.0.1:{api}");
    let mut cmd = sluice();
    cmd.args(["run", "-c"])
        .arg(&path)
        .args(["--api-address", &address]);
    let _p = Process::spawn(cmd);
    wait_for_port(api).await;
    let client = reqwest::Client::new();
    wait_flowing(&client, &address, "out").await;

    let first = fetch(&client, &address, None).await.expect("first poll");
    let at = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = fetch(&client, &address, None).await.expect("second poll");
    let rates = Rates::between(&first, &second, at.elapsed());

    let ids: Vec<&str> = second.components.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["gen", "stamp", "out"]);
    let out = second
        .components
        .iter()
        .find(|c| c.id == "out")
        .expect("out");
    let fill = out.buffer.expect("a sink has an input buffer");
    assert_eq!(fill.capacity, 1000);
    assert!(second.latency.count > 0, "settled events are timed");
    for c in &second.components {
        assert!(c.latency.count > 0, "{} times what leaves it", c.id);
        assert!(
            c.latency.p50_seconds > 0.0 && c.latency.p50_seconds <= c.latency.p99_seconds,
            "{}: {:?}",
            c.id,
            c.latency
        );
    }
    for id in ["stamp", "out"] {
        assert!(rates.by_id[id].received > 0.0, "{id}: {rates:?}");
    }

    let width = 120;
    let mut terminal = Terminal::new(TestBackend::new(width, 12)).expect("terminal");
    terminal
        .draw(|f| render(f, &address, &second, &rates))
        .expect("draw");
    let cells: Vec<String> = terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol().to_owned())
        .collect();
    let lines: Vec<String> = cells
        .chunks(width as usize)
        .map(|l| l.concat().replace('│', " "))
        .collect();
    let screen = lines.join("\n");
    assert!(screen.contains(&address), "{screen}");
    assert!(screen.contains("end-to-end latency p50"), "{screen}");
    for id in ["gen", "stamp", "out"] {
        let row = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{screen}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        // id kind type state in/s out/s disc/s err/s errors bytes/s age-p50 age-p99
        // buffer…
        assert_eq!(cols[3], "running", "{row}");
        for age in &cols[10..12] {
            assert!(
                age.ends_with('s') && age.trim_end_matches(['µ', 'm', 's']).parse::<f64>().is_ok(),
                "{id} shows its latency: {row}"
            );
        }
        let out_rate: f64 = cols[5].trim_end_matches('k').parse().expect("out/s");
        assert!(out_rate > 0.0, "{id} sends: {row}");
        if id != "gen" {
            let in_rate: f64 = cols[4].trim_end_matches('k').parse().expect("in/s");
            assert!(in_rate > 0.0, "{id} receives: {row}");
            assert!(cols[12].ends_with("/1000"), "buffer fill shown: {row}");
        }
    }
}

#[test]
fn top_reports_an_unreachable_api_without_touching_the_terminal() {
    let port = free_port();
    let out = sluice()
        .args(["top", "--api-address", &format!("127.0.0.1:{port}")])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot reach sluice's API at 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no terminal set-up was written");
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn schema_validator() -> jsonschema::Validator {
    let out = sluice().arg("schema").output().expect("runs");
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

/// The file as sluice reads it: variables replaced by their defaults.
fn as_json(text: &str) -> serde_json::Value {
    let (text, _) = sluice::config::interpolate(text, |_| None).expect("variables have defaults");
    serde_saphyr::from_str(&text).expect("YAML")
}

fn errors(v: &jsonschema::Validator, instance: &serde_json::Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn schema_accepts_every_shipped_pipeline() {
    let v = schema_validator();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("pipelines"))
        .expect("pipelines/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    files.push(repo("config/default-pipeline.yaml"));
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let e = errors(&v, &as_json(&text));
        assert!(e.is_empty(), "{}: {e:#?}", file.display());
    }
}

#[test]
fn schema_rejects_unknown_options_types_and_bad_values() {
    let v = schema_validator();
    let good = "sources:\n  in: { type: generator, count: 3 }\nsinks:\n  out: { type: console, inputs: [in], encoding: json }\n";
    assert!(errors(&v, &as_json(good)).is_empty());
    for (bad, why) in [
        (
            good.replace("count: 3", "count: 3, cuont: 4"),
            "unknown option",
        ),
        (
            good.replace("type: generator", "type: genrator"),
            "unknown type",
        ),
        (good.replace("count: 3", "count: many"), "wrong value type"),
        (good.replace("inputs: [in], ", ""), "sink without inputs"),
        (
            good.replace(
                "encoding: json",
                "encoding: json, buffer: { max_events: 5, size: 1 }",
            ),
            "unknown buffer option",
        ),
        (format!("{good}extra: 1\n"), "unknown top-level key"),
        (
            good.replace(
                "type: generator, count: 3",
                "type: file, include: [a], glob_interval: soon",
            ),
            "not a duration",
        ),
    ] {
        assert!(
            !errors(&v, &as_json(&bad)).is_empty(),
            "{why} must be rejected:\n{bad}"
        );
    }
}

#[test]
fn list_prints_types_by_kind_with_options() {
    let out = sluice().arg("list").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let sources = text.find("sources:\n").expect("sources heading");
    let transforms = text.find("transforms:\n").expect("transforms heading");
    let sinks = text.find("sinks:\n").expect("sinks heading");
    assert!(sources < transforms && transforms < sinks);
    for t in sluice::sources::TYPES {
        let at = text.find(&format!("\n  {t}\n")).expect(t);
        assert!(at > sources && at < transforms, "{t}");
    }
    for t in sluice::sinks::TYPES {
        assert!(text[sinks..].contains(&format!("\n  {t}\n")), "{t}");
    }
    assert!(
        text.contains("    cache_size (integer) default 5000"),
        "dedupe's option with its default:\n{text}"
    );
    assert!(text.contains("    ttl (duration)"), "{text}");
    assert!(
        text.contains("    include (list of string) required: Glob patterns"),
        "file source's required option with its doc:\n{text}"
    );
}

#[test]
fn sluice_test_draws_no_progress_bar_into_captured_output() {
    let out = sluice()
        .args(["test", "--config"])
        .arg(repo("pipelines/tail-to-http.yaml"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !out.stderr.contains(&0x1b) && !out.stdout.contains(&0x1b),
        "no escape sequences when not a terminal"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.ends_with("3 passed, 0 failed\n"), "{stdout}");
}
