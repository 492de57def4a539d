//! The `cloudevents` sink: the three HTTP-binding modes checked against the spec's
//! required attributes, and OAuth 2.0 client credentials against a local token endpoint.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use common::{Receiver, free_port, parse, start_with, wait_for_port};
use serde_json::{Value, json};
use sluice::clock::ManualClock;
use sluice::topology::{Drained, TopologyOptions};

fn manual() -> (ManualClock, TopologyOptions) {
    let clock = ManualClock::default();
    (
        clock.clone(),
        TopologyOptions {
            clock: Arc::new(clock),
            ..TopologyOptions::default()
        },
    )
}

fn pipeline(port: u16, mode: &str, extra: &str) -> sluice::config::Pipeline {
    parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 3, batch_size: 3, format: '{{"seq": {{{{seq}}}}, "node": "gpu node {{{{seq}}}}", "time": "2026-11-21T10:00:0{{{{seq}}}}Z"}}' }}
sinks:
  ce:
    type: cloudevents
    inputs: [gen]
    mode: {mode}
    sink: {{ endpoint: "http://127.0.0.1:{port}/events" }}
    event_type: com.nvidia.health.{{{{ seq }}}}
    subject: "{{{{ node }}}}"
    metadata: {{ cluster: prod-1, region: eu }}
{extra}
"#
    ))
}

/// The spec's required attributes and our time format.
fn assert_required(ce: &Value) {
    assert_eq!(ce["specversion"], "1.0");
    assert!(ce["id"].as_str().is_some_and(|s| !s.is_empty()), "{ce}");
    assert_eq!(ce["source"], "/sluice/prod-1");
    assert!(
        ce["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("com.nvidia.health.")),
        "{ce}"
    );
    chrono::DateTime::parse_from_rfc3339(ce["time"].as_str().expect("time")).expect("RFC 3339");
}

#[tokio::test]
async fn structured_mode() {
    let rx = Receiver::new(0).start().await;
    let (_, options) = manual();
    let (mut topo, _) = start_with(pipeline(rx.port, "structured", ""), options).await;
    topo.finished().await;
    let got = rx.requests();
    assert_eq!(got.len(), 3, "one event per request");
    let mut ids = HashSet::new();
    for r in &got {
        assert_eq!(r.headers["content-type"], "application/cloudevents+json");
        let ce: Value = serde_json::from_slice(&r.body).expect("json");
        assert_required(&ce);
        assert_eq!(ce["datacontenttype"], "application/json");
        assert_eq!(
            ce["data"]["metadata"],
            json!({"cluster": "prod-1", "region": "eu"})
        );
        let seq = ce["data"]["seq"].as_i64().expect("seq");
        assert_eq!(ce["time"], format!("2026-11-21T10:00:0{seq}Z"));
        assert_eq!(ce["subject"], format!("gpu node {seq}"));
        ids.insert(ce["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(ids.len(), 3, "unique ids");
}

#[tokio::test]
async fn binary_mode() {
    let rx = Receiver::new(0).start().await;
    let (_, options) = manual();
    let (mut topo, _) = start_with(pipeline(rx.port, "binary", ""), options).await;
    topo.finished().await;
    let got = rx.requests();
    assert_eq!(got.len(), 3);
    for r in &got {
        let h = &r.headers;
        assert_eq!(h["ce-specversion"], "1.0");
        assert_eq!(h["ce-source"], "/sluice/prod-1");
        assert_eq!(h["content-type"], "application/json");
        assert!(h.contains_key("ce-id") && h.contains_key("ce-time") && h.contains_key("ce-type"));
        assert!(!h.contains_key("ce-data") && !h.contains_key("ce-datacontenttype"));
        let data: Value = serde_json::from_slice(&r.body).expect("the body is the data");
        let seq = data["seq"].as_i64().expect("seq");
        assert_eq!(
            h["ce-subject"],
            format!("gpu%20node%20{seq}").as_str(),
            "spaces are percent-encoded"
        );
        assert_eq!(data["metadata"]["cluster"], "prod-1");
    }
}

#[tokio::test]
async fn batch_mode() {
    let rx = Receiver::new(0).start().await;
    let (_, options) = manual();
    let (mut topo, _) = start_with(
        pipeline(
            rx.port,
            "batch",
            "    batch: { max_events: 10, timeout: 50ms }",
        ),
        options,
    )
    .await;
    topo.finished().await;
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].headers["content-type"],
        "application/cloudevents-batch+json"
    );
    let batch: Vec<Value> = serde_json::from_slice(&got[0].body).expect("a JSON array");
    assert_eq!(batch.len(), 3);
    batch.iter().for_each(assert_required);
}

#[test]
fn metadata_cluster_is_required() {
    let yaml = "sources:\n  g: { type: generator }\nsinks:\n  ce: { type: cloudevents, inputs: [g], sink: { endpoint: \"http://x/\" }, metadata: { region: eu } }\n";
    let e = sluice::config::load_texts(&[("p.yaml".into(), yaml.into())], |_| None)
        .expect_err("invalid");
    assert!(
        e.to_string().contains("`metadata.cluster` is required"),
        "{e}"
    );
}

#[derive(Clone, Default)]
struct Auth {
    token_requests: Arc<Mutex<Vec<String>>>,
    revoked: Arc<Mutex<HashSet<String>>>,
    seen: Arc<Mutex<Vec<(String, u16)>>>,
}

impl Auth {
    async fn start(&self) -> u16 {
        let tokens = self.clone();
        let events = self.clone();
        let app = axum::Router::new()
            .route(
                "/token",
                axum::routing::post(move |body: String| {
                    let me = tokens.clone();
                    async move {
                        let form: Vec<(String, String)> = body
                            .split('&')
                            .filter_map(|kv| kv.split_once('='))
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect();
                        let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
                        if get("grant_type") != Some("client_credentials")
                            || get("client_id") != Some("exporter")
                            || get("client_secret") != Some("s3cret")
                            || get("scope") != Some("events")
                        {
                            return (StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}).to_string());
                        }
                        let mut issued = me.token_requests.lock().expect("lock");
                        let token = format!("t{}", issued.len() + 1);
                        issued.push(token.clone());
                        (StatusCode::OK, json!({"access_token": token, "token_type": "Bearer", "expires_in": 60}).to_string())
                    }
                }),
            )
            .route(
                "/events",
                axum::routing::post(move |headers: axum::http::HeaderMap| {
                    let me = events.clone();
                    async move {
                        let token = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("Bearer "))
                            .unwrap_or("")
                            .to_owned();
                        let ok = token.starts_with('t') && !me.revoked.lock().expect("lock").contains(&token);
                        let status = if ok { 202 } else { 401 };
                        me.seen.lock().expect("lock").push((token, status));
                        StatusCode::from_u16(status).expect("status")
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        port
    }
}

#[tokio::test]
async fn oauth2_one_token_for_many_posts_refresh_after_expiry_and_retry_once_on_401() {
    let auth = Auth::default();
    let port = auth.start().await;
    let hook = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").expect("write");
    let p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  ce:
    type: cloudevents
    inputs: [hook]
    sink: {{ endpoint: "http://127.0.0.1:{port}/events" }}
    metadata: {{ cluster: prod-1 }}
    oidc: {{ token_url: "http://127.0.0.1:{port}/token", client_id: exporter, client_secret_file: "{}", scope: events }}
"#,
        secret.display()
    ));
    let (clock, options) = manual();
    let (topo, _) = start_with(p, options).await;
    wait_for_port(hook).await;
    let client = reqwest::Client::new();
    let post = |n: i64| {
        let client = client.clone();
        async move {
            client
                .post(format!("http://127.0.0.1:{hook}/"))
                .json(&json!({"n": n}))
                .send()
                .await
                .expect("POST")
                .status()
        }
    };
    for n in 0..5 {
        assert_eq!(post(n).await, 200);
    }
    assert_eq!(
        auth.token_requests.lock().expect("lock").len(),
        1,
        "one token for five posts"
    );

    clock.advance(Duration::from_secs(61));
    assert_eq!(post(5).await, 200);
    assert_eq!(
        *auth.token_requests.lock().expect("lock"),
        vec!["t1", "t2"],
        "refreshed after expires_in"
    );

    auth.revoked.lock().expect("lock").insert("t2".into());
    assert_eq!(
        post(6).await,
        200,
        "a 401 refreshes the token and retries once"
    );
    assert_eq!(
        *auth.token_requests.lock().expect("lock"),
        vec!["t1", "t2", "t3"]
    );
    let seen = auth.seen.lock().expect("lock").clone();
    assert_eq!(
        &seen[seen.len() - 2..],
        &[("t2".to_string(), 401), ("t3".to_string(), 202)]
    );
    assert!(
        clock.sleeps().is_empty(),
        "no backoff for the token refresh"
    );
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
}
