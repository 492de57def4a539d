//! The `file` sink: templated paths, daily and size rotation, retention — time moves on
//! a manual clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use common::{free_port, parse, start_with, wait_for_port};
use sluice::clock::ManualClock;
use sluice::topology::{Drained, TopologyOptions};

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[tokio::test]
async fn daily_files_by_date_and_field_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("data_dir");
    let sink = |hook: u16| {
        parse(&format!(
            r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out: {{ type: file, inputs: [hook], path: "{}/%Y-%m-%d-{{{{ service }}}}.ndjson", rotation: daily, retention_days: 90, sync: always }}
"#,
            dir.path().display()
        ))
    };
    let post = |hook: u16, body: serde_json::Value| async move {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{hook}/"))
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200, "answered once written and synced");
    };
    let start_at = |clock: &ManualClock| TopologyOptions {
        clock: Arc::new(clock.clone()),
        data_dir: data.path().to_path_buf(),
        ..TopologyOptions::default()
    };

    // In August the sink writes a file that will have expired by November.
    let august = ManualClock::starting_at(
        chrono::Utc
            .with_ymd_and_hms(2026, 8, 1, 12, 0, 0)
            .single()
            .expect("date"),
    );
    let hook = free_port();
    let (topo, _) = start_with(sink(hook), start_at(&august)).await;
    wait_for_port(hook).await;
    post(hook, serde_json::json!({"service": "db", "n": 0})).await;
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    let expired = dir.path().join("2026-08-01-db.ndjson");
    assert_eq!(lines(&expired)[0]["n"], 0);

    let clock = ManualClock::starting_at(
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 23, 59, 0)
            .single()
            .expect("date"),
    );
    let hundred_days_ago = clock_wall(&clock) - chrono::Duration::days(100);
    let set_old = |path: &std::path::Path| {
        std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_modified(std::time::SystemTime::from(hundred_days_ago))
            .expect("mtime");
    };
    set_old(&expired);
    // An expired file the path could have produced but this sink did not write, and an
    // unrelated one: neither is the sink's to delete.
    let foreign = dir.path().join("2026-01-01-db.ndjson");
    std::fs::write(&foreign, "{}\n").expect("write");
    set_old(&foreign);
    let unrelated = dir.path().join("notes.txt");
    std::fs::write(&unrelated, "keep").expect("write");

    let hook = free_port();
    let (topo, _) = start_with(sink(hook), start_at(&clock)).await;
    wait_for_port(hook).await;
    post(
        hook,
        serde_json::json!([{"service": "db", "n": 1}, {"service": "web", "n": 2}]),
    )
    .await;
    clock.advance(Duration::from_secs(120));
    post(hook, serde_json::json!({"service": "db", "n": 3})).await;
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);

    assert_eq!(lines(&dir.path().join("2026-11-21-db.ndjson")).len(), 1);
    assert_eq!(lines(&dir.path().join("2026-11-21-web.ndjson"))[0]["n"], 2);
    assert_eq!(
        lines(&dir.path().join("2026-11-22-db.ndjson"))[0]["n"],
        3,
        "a new file after midnight"
    );
    assert!(
        !expired.exists(),
        "a 100-day-old file the sink wrote is deleted with retention_days: 90"
    );
    assert!(
        foreign.exists(),
        "a file the sink did not create is left alone"
    );
    assert!(unrelated.exists(), "unrelated files are left alone");
}

fn clock_wall(clock: &ManualClock) -> chrono::DateTime<chrono::Utc> {
    use sluice::clock::Clock;
    clock.wall()
}

#[tokio::test]
async fn size_rotation_keeps_every_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.log");
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 100, batch_size: 10, format: '{{"n": {{{{seq}}}}, "pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}' }}
sinks:
  out: {{ type: file, inputs: [gen], path: "{}", rotation: size, max_bytes: 1000 }}
"#,
        path.display()
    ));
    let (mut topo, _) = start_with(p, TopologyOptions::default()).await;
    topo.finished().await;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "rotated: {files:?}");
    let mut ns: Vec<i64> = Vec::new();
    for f in &files {
        assert!(
            std::fs::metadata(f).expect("meta").len() <= 1000,
            "{} over max_bytes",
            f.display()
        );
        ns.extend(lines(f).iter().map(|v| v["n"].as_i64().expect("n")));
    }
    ns.sort_unstable();
    assert_eq!(ns, (0..100).collect::<Vec<_>>());
}

#[test]
fn invalid_strftime_codes_are_config_errors() {
    let yaml = "sources:\n  g: { type: generator }\nsinks:\n  f: { type: file, inputs: [g], path: \"/tmp/%Q.log\" }\n";
    let e = sluice::config::load_texts(&[("p.yaml".into(), yaml.into())], |_| None)
        .expect_err("invalid");
    assert!(e.to_string().contains("invalid strftime code"), "{e}");
}

#[tokio::test]
async fn hourly_rotation_suffixes_a_plain_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::starting_at(
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 9, 59, 30)
            .single()
            .expect("date"),
    );
    let hook = free_port();
    let p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out: {{ type: file, inputs: [hook], path: "{}/alerts.ndjson", rotation: hourly }}
"#,
        dir.path().display()
    ));
    let options = TopologyOptions {
        clock: Arc::new(clock.clone()),
        ..TopologyOptions::default()
    };
    let (topo, _) = start_with(p, options).await;
    wait_for_port(hook).await;
    let client = reqwest::Client::new();
    for n in 0..2 {
        let r = client
            .post(format!("http://127.0.0.1:{hook}/"))
            .json(&serde_json::json!({"n": n}))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200);
        clock.advance(Duration::from_secs(60));
    }
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    assert_eq!(
        lines(&dir.path().join("alerts.ndjson.2026-11-21T09"))[0]["n"],
        0
    );
    assert_eq!(
        lines(&dir.path().join("alerts.ndjson.2026-11-21T10"))[0]["n"],
        1
    );
}

#[tokio::test]
async fn size_rotation_holds_for_files_closed_to_make_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = free_port();
    let p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out: {{ type: file, inputs: [hook], path: "{}/{{{{ service }}}}.log", rotation: size, max_bytes: 100, max_open_files: 1 }}
"#,
        dir.path().display()
    ));
    let (topo, _) = start_with(p, TopologyOptions::default()).await;
    wait_for_port(hook).await;
    let client = reqwest::Client::new();
    // a and b take turns, so each write reopens a file the other closed.
    for n in 0..8 {
        let service = if n % 2 == 0 { "a" } else { "b" };
        let r = client
            .post(format!("http://127.0.0.1:{hook}/"))
            .json(&serde_json::json!({"service": service, "n": n, "pad": "x".repeat(40)}))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200);
    }
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    let mut ns = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let path = entry.expect("entry").path();
        assert!(
            std::fs::metadata(&path).expect("meta").len() <= 100,
            "{} grew past max_bytes after being reopened",
            path.display()
        );
        ns.extend(lines(&path).iter().map(|v| v["n"].as_i64().expect("n")));
    }
    ns.sort_unstable();
    assert_eq!(ns, (0..8).collect::<Vec<_>>());
}
