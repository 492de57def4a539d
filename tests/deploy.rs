//! The deployment kit in deploy/: Kubernetes manifests probe the API where it listens
//! and embed pipelines that validate; the probes and the Grafana dashboard's metrics
//! exist on a real running sluice; the systemd unit passes `systemd-analyze verify`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Process, free_port, sluice};
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every document of every manifest in deploy/kubernetes, with its file name.
fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("deploy/kubernetes"))
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for doc in text.split("\n---\n") {
            let v: Value =
                serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{name}: invalid YAML: {e}"));
            assert!(v["kind"].is_string(), "{name}: a document without kind");
            docs.push((name.clone(), v));
        }
    }
    docs
}

/// The port of the API's default address (config/default.yaml).
fn default_api_port() -> u64 {
    let line = sluice::settings::DEFAULT_SETTINGS
        .lines()
        .find(|l| l.trim_start().starts_with("address:"))
        .expect("api.address in the defaults");
    line.rsplit(':')
        .next()
        .expect("port")
        .trim()
        .parse()
        .expect("a port")
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

#[test]
fn kubernetes_manifests_probe_the_api_and_embed_valid_pipelines() {
    let docs = manifests();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pipelines = 0;
    let mut workloads = Vec::new();
    for (file, doc) in &docs {
        match doc["kind"].as_str() {
            Some("ConfigMap") => {
                let text = doc["data"]["pipeline.yaml"]
                    .as_str()
                    .expect("pipeline.yaml");
                let path = dir.path().join(format!("{file}.pipeline.yaml"));
                std::fs::write(&path, text).expect("write");
                let out = sluice()
                    .args(["validate", "--config"])
                    .arg(&path)
                    .output()
                    .expect("runs");
                assert!(
                    out.status.success(),
                    "{file}: the embedded pipeline is invalid:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                pipelines += 1;
            }
            Some(kind @ ("Deployment" | "DaemonSet")) => {
                workloads.push(kind.to_owned());
                let spec = &doc["spec"]["template"]["spec"];
                let c = spec["containers"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["name"] == "sluice"))
                    .unwrap_or_else(|| panic!("{file}: no sluice container"));
                let address = env_value(c, "SLUICE_API__ADDRESS").expect("API address");
                let port: u64 = address
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("port");
                assert_eq!(port, default_api_port(), "{file}: the API's default port");
                assert!(
                    address.starts_with("0.0.0.0:"),
                    "{file}: probes come from the kubelet, not loopback"
                );
                assert_token_required(file, c);
                for (probe, path) in [
                    ("livenessProbe", "/health/live"),
                    ("readinessProbe", "/health/ready"),
                ] {
                    assert_eq!(c[probe]["httpGet"]["path"], path, "{file}: {probe}");
                    assert_eq!(
                        c[probe]["httpGet"]["port"].as_u64(),
                        Some(port),
                        "{file}: {probe}"
                    );
                }
                assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(port));
                assert!(
                    c["resources"]["limits"]["memory"].is_string(),
                    "{file}: resources"
                );
                let args: Vec<&str> = c["args"]
                    .as_array()
                    .expect("args")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                assert_eq!(args, ["run", "--config", "/etc/sluice/pipeline.yaml"]);
                let mounts = c["volumeMounts"].as_array().expect("mounts");
                let mount_of = |path: &str| {
                    mounts
                        .iter()
                        .find(|m| m["mountPath"] == path)
                        .and_then(|m| m["name"].as_str())
                        .unwrap_or_else(|| panic!("{file}: nothing mounted at {path}"))
                };
                let volume = |name: &str| {
                    spec["volumes"]
                        .as_array()
                        .and_then(|vs| vs.iter().find(|v| v["name"] == name))
                        .cloned()
                        .unwrap_or_else(|| panic!("{file}: no volume {name}"))
                };
                assert!(volume(mount_of("/etc/sluice"))["configMap"]["name"].is_string());
                let data_dir = env_value(c, "SLUICE_DATA_DIR").expect("data dir");
                let data = volume(mount_of(data_dir));
                if kind == "DaemonSet" {
                    assert_eq!(
                        data["hostPath"]["path"], "/var/lib/sluice",
                        "checkpoints survive the pod"
                    );
                    assert_eq!(volume(mount_of("/var/log"))["hostPath"]["path"], "/var/log");
                }
            }
            _ => {}
        }
    }
    assert_eq!(pipelines, 2);
    workloads.sort();
    assert_eq!(workloads, ["DaemonSet", "Deployment"]);
}

/// A container whose API listens beyond loopback takes its token from a Secret that must
/// exist: no literal token in the manifest, no `optional: true`, and no opting out.
fn assert_token_required(file: &str, container: &Value) {
    let env = container["env"].as_array().expect("env");
    let token = env
        .iter()
        .find(|e| e["name"] == "SLUICE_API__AUTH_TOKEN")
        .unwrap_or_else(|| panic!("{file}: the API listens on the pod network without a token"));
    let secret = &token["valueFrom"]["secretKeyRef"];
    assert!(
        secret["name"].is_string() && secret["key"].is_string(),
        "{file}: the token comes from a Secret: {token}"
    );
    assert!(token["value"].is_null(), "{file}: a literal token");
    assert_ne!(
        secret["optional"],
        Value::Bool(true),
        "{file}: an optional token Secret starts the API without a token"
    );
    assert!(
        env.iter()
            .all(|e| e["name"] != "SLUICE_API__ALLOW_UNAUTHENTICATED"),
        "{file}: allow_unauthenticated"
    );
}

/// `ENV` settings of the Dockerfile's runtime stage.
fn dockerfile_env(text: &str) -> Vec<(String, String)> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The image as shipped must not publish an API without a token: run sluice with the
/// image's environment and check that the API it starts is loopback only.
#[tokio::test]
async fn the_image_defaults_keep_the_api_on_loopback() {
    let text = std::fs::read_to_string(repo("deploy/Dockerfile")).expect("read");
    let env = dockerfile_env(&text);
    assert!(
        env.iter().any(|(k, _)| k == "SLUICE_DATA_DIR"),
        "ENV lines parsed: {env:?}"
    );
    let address = env
        .iter()
        .find(|(k, _)| k == "SLUICE_API__ADDRESS")
        .map(|(_, v)| v.clone());
    let has_token = env.iter().any(|(k, _)| k == "SLUICE_API__AUTH_TOKEN");
    assert!(
        address
            .as_deref()
            .is_none_or(sluice::settings::is_loopback_address)
            || has_token,
        "the image publishes the API without a token: {address:?}"
    );
    assert!(
        env.iter()
            .all(|(k, _)| k != "SLUICE_API__ALLOW_UNAUTHENTICATED"),
        "the image opts out of the token"
    );
    // And sluice itself refuses the unsafe combination the image used to ship.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sluice()
        .args(["run", "--data-dir"])
        .arg(dir.path())
        .env("SLUICE_API__ADDRESS", "0.0.0.0:0")
        .env_remove("SLUICE_API__AUTH_TOKEN")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("api.auth_token"), "{stderr}");
}

/// `docker run -p 8080:8080 sluice` reaches the default pipeline: with the image's
/// environment its webhook listens on every interface (here on a free port, the same
/// variable), and the event comes out on standard output.
#[tokio::test]
async fn the_image_publishes_the_default_webhook() {
    let text = std::fs::read_to_string(repo("deploy/Dockerfile")).expect("read");
    let env = dockerfile_env(&text);
    let address = env
        .iter()
        .find(|(k, _)| k == "EVENTS_ADDRESS")
        .map(|(_, v)| v.clone());
    assert_eq!(address.as_deref(), Some("0.0.0.0:8080"), "{env:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, api) = (free_port(), free_port());
    let mut cmd = sluice();
    cmd.args(["run", "--config"])
        .arg(repo("config/default-pipeline.yaml"))
        .args(["--data-dir"])
        .arg(dir.path())
        .args(["--api-address", &format!("127.0.0.1:{api}")])
        .env("EVENTS_ADDRESS", format!("0.0.0.0:{port}"));
    let mut process = Process::spawn(cmd);
    common::wait_for_port(port).await;
    let local = local_non_loopback_ip();
    let target = local.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/events",
            std::net::SocketAddr::new(target, port)
        ))
        .json(&serde_json::json!({"msg": "from outside"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let mut line = String::new();
    let stdout = process.child().stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("line");
    assert!(line.contains("from outside"), "{line}");
}

/// An address of this machine other than loopback, if it has one.
fn local_non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Sample names in a Prometheus exposition.
/// The names of every sample, and of every family declared by a `# TYPE` line (a family
/// whose series appear at their first count, like errors, has no sample before).
fn exported_names(metrics: &str) -> Vec<String> {
    let samples = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next());
    let families = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next());
    samples.chain(families).map(str::to_owned).collect()
}

#[tokio::test]
async fn probes_and_dashboard_metrics_exist_on_a_running_agent() {
    let docs = manifests();
    let (_, agent) = docs
        .iter()
        .find(|(f, d)| f == "daemonset.yaml" && d["kind"] == "ConfigMap")
        .expect("the agent's ConfigMap");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.yaml");
    std::fs::write(
        &path,
        agent["data"]["pipeline.yaml"].as_str().expect("pipeline"),
    )
    .expect("write");
    let api = free_port();
    let mut cmd = sluice();
    cmd.args(["run", "--no-watch", "-c"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--api-address", &format!("127.0.0.1:{api}")]);
    let mut process = Process::spawn(cmd);
    process.wait_for_port(api).await;

    let get = |p: &str| {
        let url = format!("http://127.0.0.1:{api}{p}");
        async move {
            let r = reqwest::get(url).await?;
            let status = r.status().as_u16();
            Ok::<_, reqwest::Error>((status, r.text().await?))
        }
    };
    // This test has failed with the API answering its port once and then refusing
    // it: the process's own account is what tells why.
    let live = match get("/health/live").await {
        Ok(answer) => answer,
        Err(e) => panic!("GET /health/live: {e}; {}", process.report()),
    };
    assert_eq!(live.0, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get("/health/ready").await.expect("GET /health/ready");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (_, metrics) = get("/metrics").await.expect("GET /metrics");
    let exported = exported_names(&metrics);
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("deploy/grafana/sluice-dashboard.json")).expect("read"),
    )
    .expect("the dashboard is JSON");
    let name = regex::Regex::new(r"\bsluice_[a-z0-9_]+").expect("regex");
    let mut used = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            used.extend(name.find_iter(expr).map(|m| m.as_str().to_owned()));
        }
    }
    used.sort();
    used.dedup();
    assert!(used.len() >= 8, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|n| !exported.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics sluice does not export: {missing:?}"
    );
    if common::tool_or_skip("promtool", "prometheus") {
        promtool_accepts(&metrics, &dashboard);
    }
}

/// Prometheus's own linter accepts the exposition (one group per family, histogram
/// buckets, counter names), and its rule checker parses every dashboard query.
fn promtool_accepts(metrics: &str, dashboard: &Value) {
    use std::io::Write;
    let (ok, said) = run_with_stdin(
        std::process::Command::new("promtool").args(["check", "metrics"]),
        metrics.as_bytes(),
    );
    assert!(ok, "promtool check metrics refused /metrics:\n{said}");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("dashboard.yml");
    let mut file = std::fs::File::create(&rules).expect("create");
    writeln!(file, "groups:\n- name: dashboard\n  rules:").expect("write");
    let mut n = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"]
                .as_str()
                .expect("expr")
                .replace("$__rate_interval", "5m")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            n += 1;
            writeln!(
                file,
                "  - record: dashboard_query_{n}\n    expr: {}",
                serde_json::to_string(&expr).expect("quoted")
            )
            .expect("write");
        }
    }
    drop(file);
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool cannot parse a dashboard query:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` with `input` on stdin: (success, stdout and stderr).
fn run_with_stdin(cmd: &mut std::process::Command, input: &[u8]) -> (bool, String) {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn systemd_unit_verifies() {
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        sluice::testing::skip_optional(
            "systemd-analyze is not installed (not a service, so not required under CI)",
        );
        return;
    }
    let unit = std::fs::read_to_string(repo("deploy/sluice.service")).expect("read");
    for needed in [
        "DynamicUser=yes",
        "StateDirectory=sluice",
        "ProtectSystem=strict",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "--data-dir ${STATE_DIRECTORY}",
    ] {
        assert!(unit.contains(needed), "sluice.service lacks {needed}");
    }
    // Verify against the binary built here (the unit names its installed path).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sluice.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/sluice", env!("CARGO_BIN_EXE_sluice")),
    )
    .expect("write");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("sluice.service"),
        "systemd-analyze warns about the unit:\n{stderr}"
    );
}

#[test]
fn dockerfile_builds_in_stages_and_runs_unprivileged() {
    let text = std::fs::read_to_string(repo("deploy/Dockerfile")).expect("read");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "builder and runtime stages: {froms:?}");
    assert!(froms[0].starts_with("FROM rust:1.95"), "{}", froms[0]);
    assert!(froms[1].contains("slim"), "{}", froms[1]);
    assert!(text.contains("--mount=type=cache,target=/usr/local/cargo/registry"));
    assert!(text.contains("USER 10001"));
    let exposed: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().filter_map(|p| p.parse().ok()))
        .collect();
    assert!(exposed.contains(&default_api_port()), "{exposed:?}");
    assert!(exposed.contains(&8080), "the default webhook: {exposed:?}");
    let ignore =
        std::fs::read_to_string(repo("deploy/Dockerfile.dockerignore")).expect("dockerignore");
    for kept_out in ["target", ".git"] {
        assert!(
            ignore.lines().any(|l| l == kept_out),
            "{kept_out} in the context"
        );
    }
    // Every file copied from the build context exists in the repository.
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let src = line.split_whitespace().nth(1).expect("source");
        assert!(
            src == "." || repo(src).exists(),
            "{line}: {src} does not exist"
        );
    }
}
