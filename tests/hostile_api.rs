//! Issue 21, "Secrets and the admin API": the management API against browsers (CSRF, DNS
//! rebinding), its token, its exposure beyond loopback, and secrets on every path they
//! used to surface (logs, dead letters, `/health`, the reload answer). Each test sends
//! what an attacker would to the real HTTP server on loopback or runs the real binary,
//! and asserts what actually happened.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Process, Receiver, free_port, run_pipeline, sluice, wait_for_port};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use sluice::api::ReloadRequest;
use sluice::telemetry::Telemetry;

/// An API served in-process on loopback, with a reload handler that counts.
struct Api {
    port: u16,
    reloads: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn api(token: Option<&str>) -> Api {
    sluice::net::install_crypto_provider();
    let (tx, mut rx) = mpsc::channel::<ReloadRequest>(4);
    let reloads = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&reloads);
    tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = reply.send(Ok(json!({})));
        }
    });
    let stop = CancellationToken::new();
    let (address, _) = sluice::api::serve(
        "127.0.0.1:0",
        Telemetry::new(),
        Some(tx),
        token.map(str::to_owned),
        stop.clone(),
    )
    .await
    .expect("API");
    Api {
        port: address.port(),
        reloads,
        stop,
    }
}

/// Sends exactly these bytes (no client library deciding headers for us) and returns
/// the status and the body as JSON (`null` when it is not JSON).
async fn raw(port: u16, request: String) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answers in time")
        .expect("reads");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// An HTTP/1.1 request with `headers` (which name the Host, or not) and `body`.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        r.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("Connection: close\r\n\r\n");
    r.push_str(body);
    r
}

fn silence_body(comment: &str) -> String {
    json!({
        "matchers": ["alertname=Csrf"],
        "ends_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        "comment": comment,
        "created_by": "mallory",
    })
    .to_string()
}

fn silences_with_comment(comment: &str) -> usize {
    sluice::silences::global()
        .all()
        .iter()
        .filter(|s| s.describe(chrono::Utc::now())["comment"] == comment)
        .count()
}

/// The page a user opens posts `text/plain` (no preflight) with its own Origin: refused,
/// and nothing was reloaded or silenced.
#[tokio::test]
async fn cross_site_text_plain_posts_change_nothing() {
    let api = api(None).await;
    let host = format!("127.0.0.1:{}", api.port);
    let evil = [
        ("Host", host.as_str()),
        ("Origin", "http://evil.example"),
        ("Content-Type", "text/plain"),
    ];
    let (status, body) = raw(api.port, request("POST", "/reload", &evil, "x")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "foreign_origin");

    let comment = "csrf-text-plain";
    let (status, body) = raw(
        api.port,
        request("POST", "/silences", &evil, &silence_body(comment)),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = raw(
        api.port,
        request("POST", "/status_feeds/feeds/check", &evil, ""),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = raw(api.port, request("DELETE", "/silences/anything", &evil, "")).await;
    assert_eq!(status, 403);

    // Without an Origin (a form without one, an old browser), a non-JSON body is still
    // refused: 415.
    let plain = [("Host", host.as_str()), ("Content-Type", "text/plain")];
    let (status, body) = raw(
        api.port,
        request("POST", "/silences", &plain, &silence_body(comment)),
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["reason"], "unsupported_media_type");
    let form = [
        ("Host", host.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let (status, _) = raw(api.port, request("POST", "/reload", &form, "a=b")).await;
    assert_eq!(status, 415);

    assert_eq!(api.reloads.load(Ordering::SeqCst), 0, "a reload happened");
    assert_eq!(silences_with_comment(comment), 0, "a silence was added");
}

/// DNS rebinding: the page's name now resolves to 127.0.0.1, so the request is
/// same-origin for the browser, but its Host is the attacker's name.
#[tokio::test]
async fn a_foreign_host_on_a_loopback_bind_is_refused_even_for_reads() {
    let api = api(None).await;
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{}", api.port),
        format!("127.0.0.1.evil.example:{}", api.port),
        format!("localhost.evil.example:{}", api.port),
        "127.0.0.1:80@evil.example".to_owned(),
        String::new(),
    ] {
        let origin = format!("http://{host}");
        let headers = [("Host", host.as_str()), ("Origin", origin.as_str())];
        let (status, body) = raw(api.port, request("POST", "/reload", &headers, "")).await;
        assert_eq!(status, 403, "Host {host:?}: {body}");
        assert_eq!(body["reason"], "host_not_allowed", "Host {host:?}");
        // The tap streams every event: a rebinding page must not read it either.
        let (status, _) = raw(
            api.port,
            request("GET", "/tap?limit=1", &[("Host", host.as_str())], ""),
        )
        .await;
        assert_eq!(status, 403, "GET /tap with Host {host:?}");
        let (status, _) = raw(
            api.port,
            request("GET", "/silences", &[("Host", host.as_str())], ""),
        )
        .await;
        assert_eq!(status, 403, "GET /silences with Host {host:?}");
    }
    // Two Host headers: which one would a proxy believe?
    let host = format!("127.0.0.1:{}", api.port);
    let (status, _) = raw(
        api.port,
        request(
            "POST",
            "/reload",
            &[("Host", host.as_str()), ("Host", "evil.example")],
            "",
        ),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(api.reloads.load(Ordering::SeqCst), 0, "a reload happened");
}

/// What an attacker tries next: `Origin: null` (sandboxed iframes, `data:` pages), an
/// Origin on another port or scheme, and browsers' Sec-Fetch-Site.
#[tokio::test]
async fn opaque_and_near_miss_origins_are_refused() {
    let api = api(None).await;
    let host = format!("127.0.0.1:{}", api.port);
    let other_port = format!("http://127.0.0.1:{}", api.port.wrapping_add(1));
    let https = format!("https://{host}");
    for origin in [
        "null",
        other_port.as_str(),
        https.as_str(),
        "http://localhost",
    ] {
        let headers = [("Host", host.as_str()), ("Origin", origin)];
        let (status, body) = raw(api.port, request("POST", "/reload", &headers, "")).await;
        assert_eq!(status, 403, "Origin {origin}: {body}");
        assert_eq!(body["reason"], "foreign_origin");
    }
    let headers = [("Host", host.as_str()), ("Sec-Fetch-Site", "cross-site")];
    let (status, body) = raw(api.port, request("POST", "/reload", &headers, "")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "cross_site_request");
    assert_eq!(api.reloads.load(Ordering::SeqCst), 0, "a reload happened");
}

/// Tools keep working: curl, `sluice tap`, probes on any loopback name, a same-origin
/// request, JSON bodies, and an empty body where the endpoint takes none.
#[tokio::test]
async fn loopback_clients_and_json_bodies_are_served() {
    let api = api(None).await;
    let port = api.port;
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.1".to_owned(),
    ] {
        let (status, body) = raw(
            port,
            request("POST", "/reload", &[("Host", host.as_str())], ""),
        )
        .await;
        assert_eq!(status, 200, "Host {host}: {body}");
    }
    // No Host at all (HTTP/1.0 tools): nothing a browser sends.
    let (status, _) = raw(
        port,
        "POST /reload HTTP/1.0\r\nContent-Length: 0\r\n\r\n".to_owned(),
    )
    .await;
    assert_eq!(status, 200);
    let host = format!("127.0.0.1:{port}");
    let origin = format!("http://{host}");
    let same = [("Host", host.as_str()), ("Origin", origin.as_str())];
    let (status, _) = raw(port, request("POST", "/reload", &same, "")).await;
    assert_eq!(status, 200);
    assert_eq!(api.reloads.load(Ordering::SeqCst), 7);

    let comment = "json-from-curl";
    let json_headers = [
        ("Host", host.as_str()),
        ("Content-Type", "application/json; charset=utf-8"),
    ];
    let (status, body) = raw(
        port,
        request("POST", "/silences", &json_headers, &silence_body(comment)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(silences_with_comment(comment), 1);
    let (status, _) = raw(
        port,
        request("GET", "/tap?limit=0", &[("Host", host.as_str())], ""),
    )
    .await;
    assert_eq!(status, 200);
}

/// RFC 7235: the scheme is case-insensitive. The token itself is not.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_the_token_is_exact() {
    let api = api(Some("s3cret-t0ken")).await;
    let host = format!("127.0.0.1:{}", api.port);
    for (authorization, expected) in [
        ("Bearer s3cret-t0ken", 200),
        ("bearer s3cret-t0ken", 200),
        ("BEARER s3cret-t0ken", 200),
        ("bEaReR   s3cret-t0ken", 200),
        ("Bearer S3CRET-T0KEN", 401),
        ("Bearer s3cret-t0ke", 401),
        ("Bearer s3cret-t0ken-and-more", 401),
        ("Bearer ", 401),
        ("Basic czNjcmV0LXQwa2Vu", 401),
        ("s3cret-t0ken", 401),
    ] {
        let headers = [("Host", host.as_str()), ("Authorization", authorization)];
        let (status, _) = raw(api.port, request("GET", "/silences", &headers, "")).await;
        assert_eq!(status, expected, "Authorization: {authorization}");
    }
    let (status, _) = raw(
        api.port,
        request("POST", "/reload", &[("Host", host.as_str())], ""),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(api.reloads.load(Ordering::SeqCst), 0);
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// Runs until stopped.
const QUIET_PIPELINE: &str = "sources:\n  src: { type: generator, rate: 1 }\nsinks:\n  out: { type: blackhole, inputs: [src] }\n";

/// The API on every interface with no token: sluice does not start, and says how to fix it.
#[test]
fn a_non_loopback_api_without_a_token_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write(&dir, "p.yaml", QUIET_PIPELINE);
    let port = free_port();
    let out = sluice()
        .args(["run", "-c"])
        .arg(&pipeline)
        .args(["--data-dir"])
        .arg(dir.path())
        .args(["--api-address", &format!("0.0.0.0:{port}")])
        .env_remove("SLUICE_API__AUTH_TOKEN")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("api.auth_token"), "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
        "the port was never taken"
    );

    // An empty token is not "no token": refused as well.
    let out = sluice()
        .args(["run", "-c"])
        .arg(&pipeline)
        .args(["--data-dir"])
        .arg(dir.path())
        .args(["--api-address", &format!("127.0.0.1:{port}")])
        .env("SLUICE_API__AUTH_TOKEN", "")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("api.auth_token is empty"), "{stderr}");
}

/// `api.allow_unauthenticated: true` starts it anyway, with a warning in the log.
#[tokio::test]
async fn allow_unauthenticated_starts_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write(&dir, "p.yaml", QUIET_PIPELINE);
    let port = free_port();
    let mut cmd = sluice();
    cmd.args(["run", "-c"])
        .arg(&pipeline)
        .args(["--data-dir"])
        .arg(dir.path())
        .args(["--api-address", &format!("0.0.0.0:{port}")])
        .env_remove("SLUICE_API__AUTH_TOKEN")
        .env("SLUICE_API__ALLOW_UNAUTHENTICATED", "true");
    let mut p = Process::spawn(cmd);
    wait_for_port(port).await;
    p.signal("TERM");
    let out =
        p.0.take()
            .expect("running")
            .wait_with_output()
            .expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARN") && stderr.contains("without a token"),
        "{stderr}"
    );
}

/// A Slack webhook whose server is down: the retries' WARN lines and the dead-lettered
/// event's `error` used to carry the webhook URL (reqwest prints it).
#[tokio::test]
async fn a_slack_webhook_url_stays_out_of_logs_and_dead_letters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = free_port();
    let secret = "XoXbSeCrEtT0kEn42";
    let receiver_port = free_port();
    let receiver = Receiver::new(receiver_port);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", receiver_port))
        .await
        .expect("bind");
    let router = receiver.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let pipeline = write(
        &dir,
        "p.yaml",
        &format!(
            "sources:\n  src: {{ type: generator, count: 1, format: '{{\"summary\": \"disk full\"}}' }}\n\
             sinks:\n  slack:\n    type: slack\n    inputs: [src]\n    webhook_url: \"${{SLACK_URL}}\"\n    \
             failure_handling: {{ max_retries: 2, initial_backoff: 10ms, max_backoff: 20ms }}\n  \
             dead:\n    type: http\n    inputs: [slack.dead_letter]\n    url: http://127.0.0.1:{receiver_port}/dead\n    \
             batch: {{ max_events: 1, timeout: 10ms }}\n"
        ),
    );
    let mut cmd = run_pipeline(&pipeline, dir.path(), None);
    cmd.env(
        "SLACK_URL",
        format!("http://127.0.0.1:{closed}/services/T0001/B0001/{secret}"),
    );
    let p = Process::spawn(cmd);
    common::eventually("the dead letter", || !receiver.requests().is_empty()).await;
    let dead = receiver.requests();
    let body = String::from_utf8_lossy(&dead[0].body).into_owned();
    let first: Value = serde_json::from_str(body.lines().next().unwrap_or("")).expect("JSON");
    let event = if first.is_array() {
        first[0].clone()
    } else {
        first
    };
    let error = event["dead_letter"]["error"].as_str().expect("an error");
    assert!(error.contains("gave up after"), "{error}");
    assert!(
        !body.contains(secret),
        "the dead letter carries the secret: {body}"
    );
    let mut p = p;
    p.signal("TERM");
    let out =
        p.0.take()
            .expect("running")
            .wait_with_output()
            .expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("delivery failed; retrying"), "{stderr}");
    assert!(
        !stderr.contains(secret),
        "the log carries the secret: {stderr}"
    );
}

/// A secret inside an invalid URL, loaded by a reload: not in the reload log, not in
/// `POST /reload`'s answer, not in `/health`'s `last_reload_error` (open to anyone).
#[tokio::test]
async fn a_refused_reload_does_not_echo_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write(&dir, "p.yaml", QUIET_PIPELINE);
    let api = free_port();
    let mut cmd = run_pipeline(&pipeline, dir.path(), Some(&format!("127.0.0.1:{api}")));
    cmd.env("HOOK_PASSWORD", "pa55w0rd-hunter2");
    let mut p = Process::spawn(cmd);
    wait_for_port(api).await;
    std::fs::write(
        &pipeline,
        "sources:\n  src: { type: generator, count: 1 }\nsinks:\n  out:\n    type: http\n    inputs: [src]\n    \
         url: \"https://alice:${HOOK_PASSWORD}@bad host.example/hook?token=QueryT0ken99\"\n  \
         slack:\n    type: http\n    inputs: [src]\n    url: \"https://hooks.slack.com:99999/services/T1/B1/SlackS3cret\"\n",
    )
    .expect("rewrite");
    let client = reqwest::Client::new();
    let reload = client
        .post(format!("http://127.0.0.1:{api}/reload"))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(reload.status(), 422);
    let answer = reload.text().await.expect("body");
    let health = client
        .get(format!("http://127.0.0.1:{api}/health"))
        .send()
        .await
        .expect("GET /health")
        .text()
        .await
        .expect("body");
    let health_json: Value = serde_json::from_str(&health).expect("JSON");
    let last = health_json["config"]["last_reload_error"]
        .as_str()
        .expect("the refused reload is shown");
    assert!(
        last.contains("sinks.out") && last.contains("sinks.slack"),
        "{last}"
    );
    p.signal("TERM");
    let out =
        p.0.take()
            .expect("running")
            .wait_with_output()
            .expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reload refused"), "{stderr}");
    for secret in ["pa55w0rd-hunter2", "QueryT0ken99", "SlackS3cret"] {
        assert!(!answer.contains(secret), "POST /reload: {answer}");
        assert!(!health.contains(secret), "/health: {health}");
        assert!(!stderr.contains(secret), "log: {stderr}");
    }
}
