//! Hot reload through the binary: the file watcher, SIGHUP and `POST /reload`.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Process, free_port, metric, sluice, wait_for_port};

struct Running {
    process: Process,
    lines: mpsc::Receiver<String>,
    api: u16,
    hook: u16,
}

fn pipeline(hook: u16, version: u32) -> String {
    format!(
        "sources:\n  hook: {{ type: webhook, address: \"127.0.0.1:{hook}\" }}\ntransforms:\n  stamp: {{ type: remap, inputs: [hook], source: \".version = {version}\" }}\nsinks:\n  out: {{ type: console, inputs: [stamp] }}\n"
    )
}

async fn run(path: &std::path::Path, extra: &[&str]) -> Running {
    run_with(path, &["-c"], extra).await
}

/// As [`run`], with `flag` (`-c`, `--config-dir`) naming `path`'s folder when it ends
/// with `--config-dir`.
async fn run_with(path: &std::path::Path, flag: &[&str], extra: &[&str]) -> Running {
    let (api, hook) = (free_port(), free_port());
    std::fs::write(path, pipeline(hook, 1)).expect("write");
    let named = if flag.last() == Some(&"--config-dir") {
        path.parent().expect("a folder")
    } else {
        path
    };
    let mut cmd = sluice();
    cmd.arg("run")
        .args(flag)
        .arg(named)
        .args(["--api-address", &format!("127.0.0.1:{api}")])
        .args(extra);
    let mut process = Process::spawn(cmd);
    let stdout = process.child().stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    wait_for_port(api).await;
    wait_for_port(hook).await;
    Running {
        process,
        lines,
        api,
        hook,
    }
}

impl Running {
    /// POSTs one event and returns the version the pipeline stamped on it.
    async fn version(&self) -> i64 {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/", self.hook))
            .body(r#"{"probe":true}"#)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200);
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("an event line");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        v["version"].as_i64().expect("version")
    }

    async fn get(&self, path: &str) -> String {
        reqwest::get(format!("http://127.0.0.1:{}{path}", self.api))
            .await
            .expect("GET")
            .text()
            .await
            .expect("body")
    }

    async fn wait_for_metric(&self, name: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let body = self.get("/metrics").await;
            let v = body
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok());
            if v == Some(value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never reached {value}: {v:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_broken_file_changes_nothing_and_the_fixed_file_applies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    let r = run(&path, &[]).await;
    assert_eq!(r.version().await, 1);

    // An editor saves a file with a typo in a type name.
    std::fs::write(
        &path,
        pipeline(r.hook, 2).replace("type: console", "type: consle"),
    )
    .expect("write");
    r.wait_for_metric("sluice_config_reload_failures_total", 1.0)
        .await;
    let health: serde_json::Value = serde_json::from_str(&r.get("/health").await).expect("json");
    let error = health["config"]["last_reload_error"]
        .as_str()
        .expect("error shown");
    assert!(
        error.contains(&format!("{}:6:", path.display()))
            && error.contains("unknown sink type `consle`"),
        "{error}"
    );
    assert_eq!(health["status"], "ok", "the old pipeline is healthy");
    assert_eq!(r.version().await, 1, "the old pipeline keeps serving");

    std::fs::write(&path, pipeline(r.hook, 2)).expect("write");
    r.wait_for_metric("sluice_config_reloads_total", 1.0).await;
    assert_eq!(r.version().await, 2);
    let health: serde_json::Value = serde_json::from_str(&r.get("/health").await).expect("json");
    assert!(health["config"]["last_reload_error"].is_null());
    let metrics = r.get("/metrics").await;
    assert_eq!(
        metric(&metrics, "sluice_component_received_events_total", "hook"),
        Some(3.0),
        "the webhook kept its counters"
    );
}

/// A Kubernetes ConfigMap mount: `pipeline.yaml` is a symlink through `..data`, and the
/// kubelet updates it by renaming a new `..data` symlink over the old one. No event
/// names `pipeline.yaml`; the change must still be applied.
#[tokio::test]
async fn a_configmap_update_by_symlink_swap_is_applied() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir(root.join("..v1")).expect("dir");
    symlink("..v1", root.join("..data")).expect("symlink");
    symlink("..data/pipeline.yaml", root.join("pipeline.yaml")).expect("symlink");
    let path = root.join("pipeline.yaml");
    let r = run(&path, &[]).await;
    assert_eq!(r.version().await, 1);

    std::fs::create_dir(root.join("..v2")).expect("dir");
    std::fs::write(root.join("..v2/pipeline.yaml"), pipeline(r.hook, 2)).expect("write");
    symlink("..v2", root.join("..data_tmp")).expect("symlink");
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
    std::fs::remove_dir_all(root.join("..v1")).expect("old version");
    r.wait_for_metric("sluice_config_reloads_total", 1.0).await;
    assert_eq!(r.version().await, 2);
}

/// `--config-dir`: every `*.yaml` of the folder is one pipeline, and a file added to
/// the folder later is applied by the watcher.
#[tokio::test]
async fn a_file_added_to_the_config_folder_is_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    let r = run_with(&path, &["--config-dir"], &[]).await;
    assert_eq!(r.version().await, 1);
    std::fs::write(
        dir.path().join("more.yaml"),
        "sinks:\n  added: { type: blackhole, inputs: [stamp] }\n",
    )
    .expect("write");
    r.wait_for_metric("sluice_config_reloads_total", 1.0).await;
    let metrics = r.get("/metrics").await;
    assert!(
        metrics.contains("component_id=\"added\""),
        "the new file's sink runs"
    );
    assert_eq!(r.version().await, 1);
}

#[tokio::test]
async fn sighup_and_post_reload_apply_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    let mut r = run(&path, &["--no-watch"]).await;
    let hash_before = serde_json::from_str::<serde_json::Value>(&r.get("/health").await)
        .expect("json")["config"]["hash"]
        .clone();

    std::fs::write(&path, pipeline(r.hook, 2)).expect("write");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        r.version().await,
        1,
        "--no-watch: a written file alone changes nothing"
    );
    r.process.signal("HUP");
    r.wait_for_metric("sluice_config_reloads_total", 1.0).await;
    assert_eq!(r.version().await, 2);

    std::fs::write(&path, pipeline(r.hook, 3)).expect("write");
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/reload", r.api))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["changes"]["changed"], serde_json::json!(["stamp"]));
    assert_eq!(r.version().await, 3);
    let hash_after = serde_json::from_str::<serde_json::Value>(&r.get("/health").await)
        .expect("json")["config"]["hash"]
        .clone();
    assert_ne!(hash_before, hash_after);

    std::fs::write(&path, "sources: [").expect("write");
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/reload", r.api))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("p.yaml:1:")),
        "{body}"
    );
    assert_eq!(r.version().await, 3);
}

#[tokio::test]
async fn editing_a_vrl_file_a_remap_reads_reloads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    let program = dir.path().join("stamp.vrl");
    std::fs::write(&program, ".version = 10\n").expect("write");
    let r = run(&path, &[]).await;
    // Switch the running pipeline to one whose remap reads the VRL file.
    std::fs::write(
        &path,
        pipeline(r.hook, 0).replace(
            "source: \".version = 0\"",
            &format!("file: \"{}\"", program.display()),
        ),
    )
    .expect("write");
    r.wait_for_metric("sluice_config_reloads_total", 1.0).await;
    assert_eq!(r.version().await, 10);

    std::fs::write(&program, ".version = 11\n").expect("write");
    r.wait_for_metric("sluice_config_reloads_total", 2.0).await;
    assert_eq!(r.version().await, 11);
}

#[tokio::test]
async fn reload_requires_the_api_token_when_one_is_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    let (api, hook) = (free_port(), free_port());
    std::fs::write(&path, pipeline(hook, 1)).expect("write");
    let mut cmd = sluice();
    cmd.args(["run", "--no-watch", "-c"])
        .arg(&path)
        .args(["--api-address", &format!("127.0.0.1:{api}")])
        .env("SLUICE_API__AUTH_TOKEN", "s3cret");
    let _p = Process::spawn(cmd);
    wait_for_port(api).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{api}/reload");
    assert_eq!(client.post(&url).send().await.expect("POST").status(), 401);
    assert_eq!(
        client
            .post(&url)
            .bearer_auth("wrong!")
            .send()
            .await
            .expect("POST")
            .status(),
        401
    );
    assert_eq!(
        client
            .post(&url)
            .bearer_auth("s3cret")
            .send()
            .await
            .expect("POST")
            .status(),
        200
    );
    let health = reqwest::get(format!("http://127.0.0.1:{api}/health"))
        .await
        .expect("GET");
    assert_eq!(health.status(), 200, "probes need no token");
}

/// How a running sluice is told that a subscription file changed.
#[derive(Clone, Copy)]
enum Nudge {
    /// Nothing: the watcher sees the edit.
    Watcher,
    Sighup,
    PostReload,
}

async fn nudge_reload(r: &mut Running, nudge: Nudge) {
    match nudge {
        Nudge::Watcher => {}
        Nudge::Sighup => r.process.signal("HUP"),
        Nudge::PostReload => {
            let status = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{}/reload", r.api))
                .send()
                .await
                .expect("POST /reload")
                .status();
            assert_eq!(status, 200);
        }
    }
}

/// A subscription `file:` edit that keeps the names is swapped in, whether the watcher
/// sees it or (under `--no-watch`) SIGHUP or `POST /reload` asks. With an hour between
/// the transform's own checks, nothing else explains a prompt swap.
async fn subscription_file_swap(nudge: Nudge) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    let subs = dir.path().join("subs.yaml");
    let write_subs = |a: &str, b: &str| {
        let tmp = subs.with_extension("tmp");
        std::fs::write(
            &tmp,
            format!(
                "subscriptions:\n  - {{ name: a, severity_levels: [{a}] }}\n  - {{ name: b, severity_levels: [{b}] }}\n"
            ),
        )
        .expect("write");
        std::fs::rename(&tmp, &subs).expect("rename");
    };
    write_subs("critical", "low");
    let extra: &[&str] = match nudge {
        Nudge::Watcher => &[],
        Nudge::Sighup | Nudge::PostReload => &["--no-watch"],
    };
    let mut r = run(&path, extra).await;
    std::fs::write(
        &path,
        format!(
            "sources:\n  hook: {{ type: webhook, address: \"127.0.0.1:{}\" }}\ntransforms:\n  route: {{ type: subscription, inputs: [hook], file: \"{}\", check_interval: 1h }}\nsinks:\n  out: {{ type: console, inputs: [route.a] }}\n",
            r.hook,
            subs.display()
        ),
    )
    .expect("write");
    nudge_reload(&mut r, nudge).await;
    r.wait_for_metric("sluice_config_reloads_total", 1.0).await;
    let hook = r.hook;
    let post = |severity: &'static str| async move {
        let status = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{hook}/"))
            .body(format!(r#"{{"severity":"{severity}"}}"#))
            .send()
            .await
            .expect("POST")
            .status();
        assert_eq!(status, 200);
    };
    let next_severity = |r: &Running| {
        let line = r
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("an event line");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        v["severity"].as_str().expect("severity").to_owned()
    };
    post("critical").await;
    assert_eq!(next_severity(&r), "critical", "`a` takes critical alerts");

    write_subs("low", "critical");
    nudge_reload(&mut r, nudge).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = r.get("/metrics").await;
        let swapped = metrics.lines().any(|l| {
            l.starts_with("sluice_subscription_file_reloads_total{")
                && l.contains(r#"result="swapped""#)
                && l.ends_with(" 1")
        });
        if swapped {
            break;
        }
        assert!(Instant::now() < deadline, "no swap:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    post("critical").await;
    post("low").await;
    assert_eq!(
        next_severity(&r),
        "low",
        "after the swap `a` takes low alerts, and critical ones go to `b`"
    );
}

#[tokio::test]
async fn a_subscription_file_edit_is_swapped_in_through_the_watcher() {
    subscription_file_swap(Nudge::Watcher).await;
}

#[tokio::test]
async fn under_no_watch_sighup_swaps_a_subscription_file_in() {
    subscription_file_swap(Nudge::Sighup).await;
}

#[tokio::test]
async fn under_no_watch_post_reload_swaps_a_subscription_file_in() {
    subscription_file_swap(Nudge::PostReload).await;
}
