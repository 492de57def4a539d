//! The `sluice` binary: default pipeline, run, validate, shutdown, API.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Process, free_port, metric, sluice, wait_for_port};

/// `sluice run -c <path>` with the API off (tests that need no API run in parallel).
fn run_without_api(path: &std::path::Path) -> std::process::Command {
    let mut cmd = sluice();
    cmd.args(["run", "-c"])
        .arg(path)
        .env("SLUICE_API__ENABLED", "false");
    cmd
}

fn write_pipeline(dir: &tempfile::TempDir, name: &str, yaml: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, yaml).expect("write pipeline");
    path
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("GET completes");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// Polls /metrics until `name{component_id=component}` reaches `value`.
async fn wait_metric(api: u16, name: &str, component: &str, value: f64) {
    // Generous: a debug build on a loaded 2-core machine can be slow to get there.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{api}/metrics")).await
            && let Ok(body) = r.text().await
            && metric(&body, name, component) == Some(value)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{{{component}}} never reached {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn default_pipeline_prints_posted_events_with_received_at() {
    // `sluice` alone listens on 127.0.0.1:8080; only the API port is moved so tests can
    // run in parallel.
    let api = free_port();
    let mut cmd = sluice();
    cmd.env("SLUICE_API__ADDRESS", format!("127.0.0.1:{api}"));
    let mut p = Process::spawn(cmd);
    wait_for_port(8080).await;
    let response = reqwest::Client::new()
        .post("http://localhost:8080/events")
        .body(r#"{"msg":"hi"}"#)
        .send()
        .await
        .expect("POST completes");
    assert_eq!(response.status(), 200);

    let stdout = p.child().stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("one line");
    let event: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(event["msg"], "hi");
    let stamp = event["received_at"]
        .as_str()
        .expect("received_at is a timestamp string");
    chrono::DateTime::parse_from_rfc3339(stamp).expect("RFC 3339");

    p.signal("INT");
    let status = p.child().wait().expect("exits");
    assert_eq!(status.code(), Some(0));
    let mut logs = String::new();
    p.child()
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut logs)
        .expect("logs");
    assert!(
        !logs.contains("WARN"),
        "the first command of the README starts without warnings: {logs}"
    );
}

#[tokio::test]
async fn sigterm_drains_100k_in_flight_events_before_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (api, hook) = (free_port(), free_port());
    let path = write_pipeline(
        &dir,
        "drain.yaml",
        &format!(
            r#"
sources:
  gen: {{ type: generator, count: 100000, batch_size: 1000, format: '{{"seq": {{{{seq}}}}}}' }}
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
transforms:
  stamp: {{ type: remap, inputs: [gen, hook], source: .stamped = true }}
sinks:
  out: {{ type: console, inputs: [stamp], buffer: {{ max_events: 200000 }} }}
"#
        ),
    );
    let mut cmd = sluice();
    cmd.args(["run", "--config"])
        .arg(&path)
        .args(["--api-address", &format!("127.0.0.1:{api}")]);
    let mut p = Process::spawn(cmd);
    // Nobody reads stdout yet: the console sink blocks on the full pipe, so the events
    // pile up in its buffer.
    wait_metric(api, "sluice_component_sent_events_total", "gen", 100000.0).await;
    let body = reqwest::get(format!("http://127.0.0.1:{api}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let buffered = metric(&body, "sluice_buffer_events", "out").expect("gauge");
    assert!(
        buffered > 50_000.0,
        "most events are in flight, {buffered} buffered"
    );

    p.signal("TERM");
    let mut stdout = String::new();
    p.child()
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    let status = p.child().wait().expect("exits");
    assert_eq!(status.code(), Some(0), "clean exit after draining");

    let mut seqs: Vec<i64> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            assert_eq!(v["stamped"], true);
            v["seq"].as_i64().expect("seq")
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..100000).collect::<Vec<_>>());
}

/// SIGTERM stops sluice while its stdin is still open (red team: a worker blocked in
/// `read(0)` kept the process alive for 11 minutes).
#[test]
fn sigterm_stops_a_stdin_pipeline_whose_input_stays_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_pipeline(
        &dir,
        "stdin.yaml",
        "sources:\n  in: { type: stdin }\nsinks:\n  out: { type: console, inputs: [in] }\n",
    );
    let mut child = sluice()
        .args(["run", "--config"])
        .arg(&path)
        .env("SLUICE_API__ENABLED", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"{\"n\":1}\n").expect("written");
    stdin.flush().expect("flushed");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the line comes through");
    assert!(line.contains("\"n\":1"), "{line}");
    let status = std::process::Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    let _ = child.kill();
    let status = exited.expect("sluice exits on SIGTERM with stdin still open");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn stdin_to_console_exits_at_eof_with_every_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_pipeline(
        &dir,
        "stdin.yaml",
        r#"
sources:
  in: { type: stdin }
transforms:
  keep: { type: filter, inputs: [in], condition: 'exists(.n)' }
sinks:
  out: { type: console, inputs: [keep] }
"#,
    );
    let mut child = sluice()
        .args(["run", "--config"])
        .arg(&path)
        .env("SLUICE_API__ENABLED", "false")
        .env("SLUICE_LOG__FORMAT", "json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut input = String::new();
    for n in 0..5000 {
        input.push_str(&format!("{{\"n\":{n}}}\n"));
    }
    input.push_str("not json\n");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("exits");
    writer.join().expect("joined").expect("written");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let ns: Vec<i64> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["n"]
                .as_i64()
                .expect("n")
        })
        .collect();
    assert_eq!(ns, (0..5000).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid JSON line kept as message"),
        "{stderr}"
    );
    for line in stderr.lines() {
        let log: serde_json::Value =
            serde_json::from_str(line).expect("log.format json gives JSON lines");
        assert!(log["level"].is_string(), "{line}");
    }
}

fn run_with_stdin(args: &[&str], input: &str) -> std::process::Output {
    let mut child = sluice()
        .args(args)
        .env("SLUICE_API__ENABLED", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("written");
    child.wait_with_output().expect("exits")
}

#[test]
fn example_stdin_pipeline_prints_error_messages_as_text() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/stdin-errors.yaml");
    let out = run_with_stdin(
        &["run", "--config", path],
        "{\"level\":\"info\",\"message\":\"ok\"}\n{\"level\":\"error\",\"message\":\"boom\"}\n{\"level\":\"error\",\"code\":7}\n",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Text encoding prints `message`; an event without one is printed as JSON.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "boom\n{\"code\":7,\"level\":\"error\"}\n"
    );
}

#[test]
fn blackhole_reports_its_count_periodically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_pipeline(
        &dir,
        "p.yaml",
        "sources:\n  gen: { type: generator, rate: 2000, count: 600, batch_size: 50 }\nsinks:\n  sink: { type: blackhole, inputs: [gen], print_interval: 50ms }\n",
    );
    let out = run_without_api(&path).output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("blackhole received events component_id=sink"),
        "{stderr}"
    );
    assert!(
        stderr.contains("blackhole finished component_id=sink total=600"),
        "{stderr}"
    );
}

#[test]
fn validate_lists_every_error_with_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_pipeline(
        &dir,
        "bad.yaml",
        r#"sources:
  src: { type: generator }
transforms:
  a: { type: remap, inputs: [src, b], source: ".a = 1" }
  b: { type: remap, inputs: [a], source: ".b = 1" }
sinks:
  out: { type: console, inputs: [b, missing] }
"#,
    );
    let out = sluice()
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display();
    assert!(
        stderr.contains(&format!(
            "error: {file}:7:37: component `sinks.out`: unknown input `missing`"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "error: {file}:4:6: component `transforms.a`: cycle in the pipeline: a -> b -> a"
        )),
        "{stderr}"
    );

    let typo = write_pipeline(
        &dir,
        "typo.yaml",
        "sources:\n  src:\n    type: generator\n    rat: 5\nsinks:\n  out: { type: console, inputs: [src] }\n",
    );
    let out = sluice()
        .args(["validate", "-c"])
        .arg(&typo)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:4:5: component `sources.src`: unknown field `rat`",
            typo.display()
        )),
        "{stderr}"
    );

    let good = write_pipeline(
        &dir,
        "good.yaml",
        "sources:\n  src: { type: generator }\nsinks:\n  out: { type: blackhole, inputs: [src] }\n",
    );
    let out = sluice()
        .args(["validate", "-c"])
        .arg(&good)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "valid: 1 sources, 0 transforms, 1 sinks\n"
    );
}

/// `-q` leaves only warnings and errors, `-v` adds sluice's debug logs; an unknown
/// `SLUICE_LOG__LEVEL` is an error naming the variable, even with `-v`.
#[test]
fn verbosity_flags_set_the_log_level() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/stdin-errors.yaml");
    let input = "{\"level\":\"error\",\"message\":\"boom\"}\n";
    let logs = |flags: &[&str]| {
        let mut args = vec!["run", "-c", path];
        args.extend_from_slice(flags);
        let out = run_with_stdin(&args, input);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "boom\n");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let normal = logs(&[]);
    assert!(normal.contains("pipeline running"), "{normal}");
    assert!(!normal.contains("DEBUG"), "{normal}");
    let quiet = logs(&["-q"]);
    assert!(
        !quiet.contains("INFO") && !quiet.contains("pipeline running"),
        "{quiet}"
    );
    let verbose = logs(&["-v"]);
    assert!(verbose.contains("DEBUG"), "{verbose}");
    assert!(
        verbose
            .lines()
            .filter(|l| l.contains("DEBUG"))
            .all(|l| l.contains("sluice")),
        "-v is sluice's debug logs only: {verbose}"
    );

    let out = sluice()
        .args(["run", "-v", "-c", path])
        .env("SLUICE_LOG__LEVEL", "bogus")
        .env("SLUICE_API__ENABLED", "false")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SLUICE_LOG__LEVEL") && stderr.contains("`bogus` is not a log level"),
        "{stderr}"
    );
}

#[test]
fn validate_deny_warnings_refuses_a_pipeline_with_warnings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_pipeline(
        &dir,
        "warn.yaml",
        "sources:\n  src: { type: generator }\n  unread: { type: generator }\nsinks:\n  out: { type: blackhole, inputs: [src] }\n",
    );
    let out = sluice()
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning:"), "a warning to deny: {stderr}");
    let out = sluice()
        .args(["validate", "--deny-warnings", "-c"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--deny-warnings"));

    // Folders, patterns and SLUICE_CONFIG name files too; an empty folder is an error.
    let parts = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        parts.path().join("a.yaml"),
        "sources:\n  src: { type: generator }\n",
    )
    .expect("write");
    std::fs::write(
        parts.path().join("b.yaml"),
        "sinks:\n  out: { type: blackhole, inputs: [src] }\n",
    )
    .expect("write");
    let pattern = parts.path().join("*.yaml");
    for args in [
        vec!["-c".to_owned(), parts.path().display().to_string()],
        vec![
            "--config-dir".to_owned(),
            parts.path().display().to_string(),
        ],
        vec!["-c".to_owned(), pattern.display().to_string()],
    ] {
        let out = sluice().arg("validate").args(&args).output().expect("runs");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "valid: 1 sources, 0 transforms, 1 sinks\n"
        );
    }
    let out = sluice()
        .arg("validate")
        .env(
            "SLUICE_CONFIG",
            format!(
                "{},{}",
                parts.path().join("a.yaml").display(),
                parts.path().join("b.yaml").display()
            ),
        )
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let empty = tempfile::tempdir().expect("tempdir");
    let out = sluice()
        .args(["validate", "-c"])
        .arg(empty.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no .yaml or .yml file in this folder"));

    // `-c` before the subcommand is refused, not ignored (it used to validate the
    // default pipeline and pass); a comma in a path given with -c is part of it.
    let out = sluice()
        .args(["-c"])
        .arg(&path)
        .arg("validate")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let comma = write_pipeline(
        &dir,
        "my,pipeline.yaml",
        "sources:\n  src: { type: generator }\nsinks:\n  out: { type: blackhole, inputs: [src] }\n",
    );
    let out = sluice()
        .args(["validate", "-c"])
        .arg(&comma)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // Without --config, the embedded default pipeline is checked, with its variables.
    let out = sluice().arg("validate").output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = sluice()
        .arg("validate")
        .env("EVENTS_ADDRESS", "garbage")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`garbage` is not an address to listen on"),
        "{out:?}"
    );
}

/// `sluice config` prints the merged pipeline with variables filled in and secrets
/// redacted, and its output is a pipeline file again; `sluice graph` draws it.
#[test]
fn config_prints_the_merged_pipeline_redacted_and_graph_draws_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write_pipeline(
        &dir,
        "a.yaml",
        "sources:\n  src: { type: generator }\ntransforms:\n  r: { type: remap, inputs: [src], source: '.env = \"${STAGE}\"' }\n",
    );
    let b = write_pipeline(
        &dir,
        "b.yaml",
        "sinks:\n  pd: { type: pagerduty, inputs: [r], routing_key: \"${PD_KEY}\" }\n  db: { type: http, inputs: [r.dropped], url: \"https://app:hunter22@collector.example/in\" }\n",
    );
    let out = sluice()
        .args(["config", "-c"])
        .arg(&a)
        .arg("-c")
        .arg(&b)
        .env("STAGE", "prod")
        .env("PD_KEY", "fedcba9876543210fedcba9876543210")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !text.contains("fedcba98") && !text.contains("hunter22"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["sinks"]["pd"]["routing_key"], "[redacted]");
    assert_eq!(v["transforms"]["r"]["source"], ".env = \"prod\"");
    assert_eq!(v["sources"]["src"]["type"], "generator");
    // The output is a pipeline file again (with the secret given back).
    let again = write_pipeline(
        &dir,
        "again.yaml",
        &text.replace("[redacted]", "fedcba9876543210fedcba9876543210"),
    );
    let out = sluice()
        .args(["validate", "-c"])
        .arg(&again)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let out = sluice()
        .args(["graph", "-c"])
        .arg(&again)
        .output()
        .expect("runs");
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.contains("\"src\" -> \"r\";"), "{dot}");
    assert!(
        dot.contains("\"r\" -> \"db\" [label=\"dropped\"];"),
        "{dot}"
    );
    let out = sluice()
        .args(["graph", "--format", "mermaid", "-c"])
        .arg(&again)
        .output()
        .expect("runs");
    let mermaid = String::from_utf8_lossy(&out.stdout).into_owned();
    let id_of = |label: &str| {
        mermaid
            .lines()
            .find(|l| l.contains(label))
            .and_then(|l| l.trim().split(['[', '(']).next())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let (r, pd) = (id_of("\"r (remap)\""), id_of("\"pd (pagerduty)\""));
    assert!(
        mermaid.contains(&format!("{r} --> {pd}")),
        "r feeds pd: {mermaid}"
    );
}

/// Completion scripts and the manual page are generated from the command line itself;
/// the bash script is valid bash and every one knows the subcommands.
#[test]
fn completions_and_the_manual_page_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = sluice()
            .args(["completions", shell])
            .output()
            .expect("runs");
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        for sub in ["validate", "tap", "completions"] {
            assert!(script.contains(sub), "{shell} lacks {sub}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().expect("tempdir");
            let file = dir.path().join("sluice.bash");
            std::fs::write(&file, script.as_bytes()).expect("write");
            let check = std::process::Command::new("bash")
                .arg("-n")
                .arg(&file)
                .output()
                .expect("bash runs");
            assert!(check.status.success(), "{check:?}");
        }
    }
    let out = sluice().arg("man").output().expect("runs");
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH sluice"), "{page}");
    assert!(
        page.contains("validate") && page.contains("completions"),
        "{page}"
    );
    // --out writes the pages the main one refers to, with each subcommand's options.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sluice()
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let validate = std::fs::read_to_string(dir.path().join("sluice-validate.1")).expect("page");
    assert!(validate.contains("deny\\-warnings"), "{validate}");
    assert!(dir.path().join("sluice.1").exists() && dir.path().join("sluice-run.1").exists());
}

#[test]
fn version_is_printed() {
    let out = sluice().arg("--version").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let expected = format!(
        "sluice {} (commit {commit}, {}-{}-",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        "unknown"
    );
    assert!(text.starts_with(&expected), "{text} (expected {expected}…)");
    let date = text
        .trim()
        .rsplit("built ")
        .next()
        .and_then(|d| d.strip_suffix(')'))
        .unwrap_or_default();
    let today = chrono::Utc::now().date_naive();
    let built = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").expect("a build date");
    assert!(built <= today && (today - built).num_days() < 400, "{date}");
}

#[tokio::test]
async fn health_names_a_failed_component_and_the_webhook_answers_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (api, hook) = (free_port(), free_port());
    let path = write_pipeline(
        &dir,
        "p.yaml",
        &format!(
            "sources:\n  hook: {{ type: webhook, address: \"127.0.0.1:{hook}\" }}\nsinks:\n  out: {{ type: console, inputs: [hook] }}\n"
        ),
    );
    let mut cmd = sluice();
    cmd.args(["run", "-c"])
        .arg(&path)
        .args(["--api-address", &format!("127.0.0.1:{api}")]);
    let mut p = Process::spawn(cmd);
    wait_for_port(api).await;
    wait_for_port(hook).await;
    let (code, body) = get(&format!("http://127.0.0.1:{api}/health")).await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = get(&format!("http://127.0.0.1:{api}/health/ready")).await;
    assert_eq!(code, 200);

    // Closing stdout makes the console sink's next write fail.
    drop(p.child().stdout.take());
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook}/"))
        .body(r#"{"a":1}"#)
        .send()
        .await
        .expect("POST completes");
    assert_eq!(response.status(), 503);

    // The sink's failure reaches /health as its task ends, which may be just after the
    // webhook answered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (code, body) = loop {
        let (code, body) = get(&format!("http://127.0.0.1:{api}/health")).await;
        if code == 503 || std::time::Instant::now() > deadline {
            break (code, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(code, 503);
    let health: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(health["unhealthy"], serde_json::json!(["out"]));
    assert_eq!(health["components"]["out"]["state"], "failed");
    assert_eq!(health["components"]["hook"]["state"], "running");
    let (code, _) = get(&format!("http://127.0.0.1:{api}/health/ready")).await;
    assert_eq!(code, 503);
    let (code, _) = get(&format!("http://127.0.0.1:{api}/health/live")).await;
    assert_eq!(code, 200);

    // The failed sink's input is closed: later requests fail at once instead of
    // waiting on a buffer nobody reads.
    let started = std::time::Instant::now();
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook}/"))
        .body(r#"{"a":2}"#)
        .send()
        .await
        .expect("POST completes");
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once: {:?}",
        started.elapsed()
    );

    let (_, metrics) = get(&format!("http://127.0.0.1:{api}/metrics")).await;
    assert_eq!(
        metric(&metrics, "sluice_component_errors_total", "out"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "sluice_component_received_events_total", "hook"),
        Some(2.0)
    );
    assert!(
        metrics.contains("sluice_end_to_end_latency_seconds_count 2\n"),
        "{metrics}"
    );
}

#[test]
fn a_port_in_use_stops_the_pipeline_from_starting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_pipeline(
        &dir,
        "p.yaml",
        &format!(
            "sources:\n  hook: {{ type: webhook, address: \"127.0.0.1:{port}\" }}\nsinks:\n  out: {{ type: blackhole, inputs: [hook] }}\n"
        ),
    );
    let out = run_without_api(&path).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "component `hook`: cannot listen on 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
}

#[test]
fn enrich_reads_kubernetes_details_from_the_downward_api_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_pipeline(
        &dir,
        "k8s.yaml",
        "sources:\n  gen: { type: generator, count: 1, format: '{\"a\": 1}' }\ntransforms:\n  e: { type: enrich, inputs: [gen], kubernetes: true, host: true }\nsinks:\n  out: { type: console, inputs: [e] }\n",
    );
    let out = run_without_api(&path)
        .env("POD_NAME", "sluice-7d9f")
        .env("POD_NAMESPACE", "monitoring")
        .env("NODE_NAME", "node-3")
        .env("POD_IP", "10.1.2.3")
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(
        event["kubernetes"],
        serde_json::json!({"pod": "sluice-7d9f", "namespace": "monitoring", "node": "node-3", "pod_ip": "10.1.2.3"})
    );
    assert!(event["host"].as_str().is_some_and(|h| !h.is_empty()));
}

#[test]
fn sluice_test_reports_the_failed_condition_with_the_actual_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_pipeline(
        &dir,
        "t.yaml",
        r#"
sources:
  in: { type: stdin }
transforms:
  sev:
    type: remap
    inputs: [in]
    source: '.severity = if .level == "error" { "high" } else { "low" }'
  agg: { type: aggregate, inputs: [sev], group_by: [severity] }
sinks:
  out: { type: console, inputs: [agg] }
tests:
  - name: errors are high
    inputs:
      - insert_at: sev
        value: { level: error, msg: boom }
    outputs:
      - extract_from: sev
        conditions: ['.severity == "high"']
  - name: aggregates flush at the end
    inputs:
      - insert_at: sev
        values: [{ level: error }, { level: error }, { level: info }]
    outputs:
      - extract_from: agg
        conditions: ['.count == 2 || .count == 1']
  - name: a wrong expectation
    inputs:
      - insert_at: sev
        value: { level: info }
    outputs:
      - extract_from: sev
        conditions: ['.severity == "high"']
"#,
    );
    let out = sluice()
        .args(["test", "-c"])
        .arg(&path)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("test errors are high ... ok"), "{stdout}");
    assert!(
        stdout.contains("test aggregates flush at the end ... ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains("test a wrong expectation ... FAILED"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"condition `.severity == "high"` failed at `sev` for {"level":"info","severity":"low"}"#),
        "{stdout}"
    );
    assert!(stdout.ends_with("2 passed, 1 failed\n"), "{stdout}");
}

#[tokio::test]
async fn promtool_accepts_the_metrics_exposition() {
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
    {
        sluice::testing::skip("promtool is not installed (.ci/run installs prometheus)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (api, hook) = (free_port(), free_port());
    let path = write_pipeline(
        &dir,
        "m.yaml",
        &format!(
            "sources:\n  hook: {{ type: webhook, address: \"127.0.0.1:{hook}\" }}\ntransforms:\n  r: {{ type: remap, inputs: [hook], source: \".x = 1\" }}\nsinks:\n  out: {{ type: blackhole, inputs: [r] }}\n"
        ),
    );
    let mut cmd = sluice();
    cmd.args(["run", "-c"])
        .arg(&path)
        .args(["--api-address", &format!("127.0.0.1:{api}")])
        .env("SLUICE_MEMORY_LIMIT", "64MiB");
    let _p = Process::spawn(cmd);
    wait_for_port(hook).await;
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook}/"))
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let (_, metrics) = get(&format!("http://127.0.0.1:{api}/metrics")).await;
    // The process's own metrics and the memory budget's, beside the components'.
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        value("sluice_memory_limit_bytes"),
        Some(64.0 * 1024.0 * 1024.0)
    );
    assert!(value("sluice_memory_used_ratio").is_some_and(|r| (0.0..=1.0).contains(&r)));
    assert!(value("process_resident_memory_bytes").is_some_and(|r| r > 1e6));
    assert!(value("process_open_fds").is_some_and(|n| n > 3.0));
    assert!(metrics.contains("sluice_build_info{version="), "{metrics}");
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write");
    let out = check.wait_with_output().expect("promtool exits");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n---\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn sluice_tap_prints_live_events_of_matching_components() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port();
    let path = write_pipeline(
        &dir,
        "tap.yaml",
        "sources:\n  gen: { type: generator, rate: 200, batch_size: 2, format: '{\"seq\": {{seq}}}' }\ntransforms:\n  stamp: { type: remap, inputs: [gen], source: .stamped = true }\n  other: { type: remap, inputs: [gen], source: .other = true }\nsinks:\n  out: { type: blackhole, inputs: [stamp, other] }\n",
    );
    let mut cmd = sluice();
    cmd.args(["run", "-c"])
        .arg(&path)
        .args(["--api-address", &format!("127.0.0.1:{api}")])
        .env("SLUICE_API__AUTH_TOKEN", "t0k");
    let _p = Process::spawn(cmd);
    wait_for_port(api).await;
    let address = format!("127.0.0.1:{api}");

    let denied = sluice()
        .args(["tap", "stamp", "--limit", "1", "--api-address", &address])
        .env_remove("SLUICE_API__AUTH_TOKEN")
        .output()
        .expect("runs");
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );

    let out = tokio::task::spawn_blocking(move || {
        sluice()
            .args([
                "tap",
                "st*",
                "--limit",
                "5",
                "--api-address",
                &address,
                "--token",
                "t0k",
            ])
            .output()
            .expect("runs")
    })
    .await
    .expect("joined");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON"))
        .collect();
    assert_eq!(lines.len(), 5, "--limit 5");
    for line in &lines {
        assert_eq!(
            line["component_id"], "stamp",
            "only components matching st*"
        );
        assert_eq!(line["event"]["stamped"], true);
        assert!(line["event"]["seq"].is_i64());
    }

    // --inputs-of: what `out` receives, from both transforms; --outputs-of as the pattern.
    let tap = |args: Vec<String>| {
        let mut all = vec!["tap".to_owned()];
        all.extend(args);
        all.extend([
            "--api-address".into(),
            address_of(api),
            "--token".into(),
            "t0k".into(),
        ]);
        tokio::task::spawn_blocking(move || sluice().args(&all).output().expect("runs"))
    };
    fn address_of(api: u16) -> String {
        format!("127.0.0.1:{api}")
    }
    let out = tap(vec![
        "--inputs-of".into(),
        "out".into(),
        "--limit".into(),
        "40".into(),
    ])
    .await
    .expect("joined");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut from: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("NDJSON"))
        .map(|v| v["component_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    from.sort();
    from.dedup();
    assert_eq!(from, ["other", "stamp"], "what out reads");
    let out = tap(vec![
        "--outputs-of".into(),
        "other".into(),
        "--limit".into(),
        "3".into(),
    ])
    .await
    .expect("joined");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .all(|l| l.contains("\"component_id\":\"other\"")),
        "{out:?}"
    );

    // A pattern that matches nothing says so instead of waiting silently.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "tap",
            "nothing-like-this",
            "--api-address",
            &address_of(api),
            "--token",
            "t0k",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let read = tokio::task::spawn_blocking(move || {
        std::io::BufRead::read_line(&mut stderr, &mut line).map(|_| line)
    });
    let line = tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("a warning comes at once")
        .expect("joined")
        .expect("read");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("matches no component"), "{line}");
}
