//! Roles of the management API (issue 24): every route, called by every role and by no
//! token, answers 401, 403 naming the role it needs, or is let through; and the binary
//! reads `api.tokens` from its settings (a `${VAR}` token and a SHA-256 one) and writes
//! an audit line per change naming the token, never its value.

mod common;

use common::{Process, free_port, sluice, wait_for_port};
use serde_json::{Value, json};
use sluice::api::Role;
use tokio_util::sync::CancellationToken;

/// Every route, with a body where it takes one, and the least role it needs (`None`:
/// open to anyone).
fn routes() -> Vec<(&'static str, &'static str, Option<Value>, Option<Role>)> {
    vec![
        ("GET", "/health", None, None),
        ("GET", "/health/live", None, None),
        ("GET", "/health/ready", None, None),
        ("GET", "/metrics", None, None),
        ("GET", "/components", None, None),
        ("GET", "/stats", None, Some(Role::Viewer)),
        ("GET", "/silences", None, Some(Role::Viewer)),
        ("GET", "/incidents", None, Some(Role::Viewer)),
        ("GET", "/incidents/nope", None, Some(Role::Viewer)),
        ("GET", "/incidents/nope/timeline", None, Some(Role::Viewer)),
        ("GET", "/status_feeds/nope", None, Some(Role::Viewer)),
        ("GET", "/events?sink=nope", None, Some(Role::Viewer)),
        (
            "GET",
            "/metrics/query?name=x&sink=nope",
            None,
            Some(Role::Viewer),
        ),
        (
            "POST",
            "/silences",
            Some(
                json!({"matchers": ["alertname=x"], "ends_at": "2099-01-01T00:00:00Z", "created_by": "t", "comment": "c"}),
            ),
            Some(Role::Operator),
        ),
        ("DELETE", "/silences/nope", None, Some(Role::Operator)),
        ("GET", "/api/v2/status", None, Some(Role::Viewer)),
        ("GET", "/api/v2/alerts", None, Some(Role::Viewer)),
        (
            "POST",
            "/api/v2/alerts",
            Some(json!([{"labels": {"alertname": "x"}}])),
            Some(Role::Operator),
        ),
        ("GET", "/api/v2/silences", None, Some(Role::Viewer)),
        ("GET", "/api/v2/silence/nope", None, Some(Role::Viewer)),
        (
            "POST",
            "/api/v2/silences",
            Some(
                json!({"matchers": [{"name": "alertname", "value": "x", "isRegex": false}], "startsAt": "2099-01-01T00:00:00Z", "endsAt": "2099-01-02T00:00:00Z", "createdBy": "t", "comment": "c"}),
            ),
            Some(Role::Operator),
        ),
        ("DELETE", "/api/v2/silence/nope", None, Some(Role::Operator)),
        (
            "POST",
            "/incidents",
            Some(json!({"title": "t"})),
            Some(Role::Operator),
        ),
        (
            "PUT",
            "/incidents/nope",
            Some(json!({"note": "n"})),
            Some(Role::Operator),
        ),
        (
            "POST",
            "/status_feeds/nope/check",
            None,
            Some(Role::Operator),
        ),
        (
            "POST",
            "/events?source=nope",
            Some(json!({"event_type": "log", "source": "t"})),
            Some(Role::Operator),
        ),
        (
            "POST",
            "/metrics?source=nope",
            Some(json!({"name": "m", "metric_type": "gauge", "value": 1})),
            Some(Role::Operator),
        ),
        ("POST", "/reload", None, Some(Role::Admin)),
        ("GET", "/tap?limit=0", None, Some(Role::Admin)),
        ("GET", "/subscriptions", None, Some(Role::Viewer)),
        ("GET", "/subscriptions/nope", None, Some(Role::Viewer)),
        ("GET", "/subscriptions/nope/test", None, Some(Role::Viewer)),
        (
            "GET",
            "/subscriptions/nope/events",
            None,
            Some(Role::Viewer),
        ),
        (
            "POST",
            "/subscriptions",
            Some(json!({"name": "n", "component": "nope"})),
            Some(Role::Admin),
        ),
        (
            "PUT",
            "/subscriptions/nope",
            Some(json!({"name": "n"})),
            Some(Role::Admin),
        ),
        ("DELETE", "/subscriptions/nope", None, Some(Role::Admin)),
        ("GET", "/outages/status", None, Some(Role::Viewer)),
        ("GET", "/outages/history", None, Some(Role::Viewer)),
        ("POST", "/outages/check/all", None, Some(Role::Operator)),
        ("POST", "/outages/webhook/test", None, Some(Role::Operator)),
        ("POST", "/outages/stop", None, Some(Role::Admin)),
        ("POST", "/outages/start", None, Some(Role::Admin)),
        (
            "PUT",
            "/outages/config",
            Some(json!({"interval": "5m"})),
            Some(Role::Admin),
        ),
    ]
}

#[tokio::test]
async fn every_route_refuses_lower_roles_and_lets_its_own_through() {
    let stop = CancellationToken::new();
    let address = common::api_with_roles(&stop).await;
    let client = reqwest::Client::new();
    let callers = [
        (None, None),
        (Some("tok-wrong"), None),
        (Some("tok-viewer"), Some(Role::Viewer)),
        (Some("tok-operator"), Some(Role::Operator)),
        (Some("tok-admin"), Some(Role::Admin)),
    ];
    let mut checked = 0;
    for (method, path, body, needed) in routes() {
        for (token, role) in callers {
            let mut req = client.request(
                method.parse().expect("method"),
                format!("http://{address}{path}"),
            );
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let what = format!("{method} {path} as {token:?}: {status} {text}");
            match (needed, role) {
                (None, _) => assert!(status != 401 && status != 403, "open: {what}"),
                (Some(_), None) => assert_eq!(status, 401, "{what}"),
                (Some(n), Some(r)) if r < n => {
                    assert_eq!(status, 403, "{what}");
                    assert!(
                        text.contains(&format!("needs the {} role", n.as_str())),
                        "the refusal names the role: {what}"
                    );
                }
                (Some(_), Some(_)) => {
                    assert!(status != 401 && status != 403, "allowed: {what}")
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes().len() * callers.len());
    stop.cancel();
}

/// The binary with `api.tokens` in a settings file: the viewer reads, is refused a
/// change; the operator's change is audited under its name; no token value is logged.
#[tokio::test]
async fn tokens_from_settings_and_the_audit_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api_port = free_port();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!("sources:\n  w: {{ type: webhook, address: \"127.0.0.1:{}\" }}\nsinks:\n  out: {{ type: blackhole, inputs: [w] }}\n", free_port()),
    )
    .expect("write");
    // sha256("tok-viewer-0123456789")
    let digest = {
        use std::fmt::Write;
        let d = ring::digest::digest(&ring::digest::SHA256, b"tok-viewer-0123456789");
        d.as_ref().iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    let settings = dir.path().join("settings.yaml");
    std::fs::write(
        &settings,
        format!(
            "api:\n  tokens:\n    - {{ name: dashboards, role: viewer, sha256: \"{digest}\" }}\n    - {{ name: oncall, role: operator, token: \"${{ONCALL_TOKEN}}\" }}\n"
        ),
    )
    .expect("write");
    let mut cmd = sluice();
    cmd.args(["run", "--no-watch", "-c"])
        .arg(&pipeline)
        .arg("--settings")
        .arg(&settings)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--api-address", &format!("127.0.0.1:{api_port}")])
        .env_remove("SLUICE_API__AUTH_TOKEN")
        .env("ONCALL_TOKEN", "tok-oncall-9876543210");
    let mut process = Process::spawn(cmd);
    wait_for_port(api_port).await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{api_port}{p}");
    let r = client
        .get(url("/silences"))
        .bearer_auth("tok-viewer-0123456789")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let r = client
        .post(url("/incidents"))
        .bearer_auth("tok-viewer-0123456789")
        .json(&json!({"title": "x"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403);
    let r = client
        .post(url("/silences"))
        .bearer_auth("tok-oncall-9876543210")
        .json(&json!({"matchers": ["alertname=Disk"], "ends_at": "2099-01-01T00:00:00Z", "created_by": "alice", "comment": "maintenance"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // A web page's request, refused before any token is read, is audited too.
    let r = client
        .post(url("/reload"))
        .header("Origin", "http://evil.example")
        .bearer_auth("tok-oncall-9876543210")
        .json(&json!({}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403);
    process.signal("TERM");
    let out = process
        .0
        .take()
        .expect("child")
        .wait_with_output()
        .expect("exit");
    let log = String::from_utf8_lossy(&out.stderr);
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("sluice::audit"))
        .collect();
    assert!(
        audit
            .iter()
            .any(|l| l.contains("who=\"oncall\"") || l.contains("who=oncall")),
        "the change is audited under the token's name: {audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("status=403") && l.contains("dashboards")),
        "the refusal too: {audit:?}"
    );
    assert!(
        audit.iter().any(|l| l.contains("status=403")
            && l.contains("foreign_origin")
            && l.contains("/reload")),
        "and the browser guard's: {audit:?}"
    );
    assert!(!log.contains("tok-oncall-9876543210") && !log.contains("tok-viewer-0123456789"));
}

/// Bad `api.tokens` stop sluice at start with the reason.
#[test]
fn bad_tokens_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        "sources:\n  g: { type: generator, count: 1 }\nsinks:\n  out: { type: blackhole, inputs: [g] }\n",
    )
    .expect("write");
    for (tokens, reason) in [
        (
            "[{ name: a, role: viewer, token: \"${SLUICE_TEST_UNSET_VAR}\" }]",
            "SLUICE_TEST_UNSET_VAR is not set",
        ),
        (
            "[{ name: a, role: viewer, sha256: \"abc\" }]",
            "64 hexadecimal digits",
        ),
        ("[{ name: a, role: viewer }]", "give `token` or `sha256`"),
        (
            "[{ name: a, role: viewer, token: x1 }, { name: a, role: admin, token: x2 }]",
            "given twice",
        ),
        ("[{ name: a, role: root, token: x1 }]", "root"),
    ] {
        let settings = dir.path().join("settings.yaml");
        std::fs::write(&settings, format!("api:\n  tokens: {tokens}\n")).expect("write");
        let out = sluice()
            .args(["run", "--no-watch", "-c"])
            .arg(&pipeline)
            .arg("--settings")
            .arg(&settings)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("SLUICE_TEST_UNSET_VAR")
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{tokens}");
        assert!(err.contains(reason), "{tokens}: {err}");
    }
}
