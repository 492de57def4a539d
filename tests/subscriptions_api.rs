//! Subscriptions made at runtime through `/subscriptions` (issue 24), on the binary,
//! under a stream of webhooks: one made by API routes within a second, keeps routing
//! across a reload that rebuilds its transform and across a restart, and once deleted
//! routes nothing; no acknowledged event is lost or doubled on the way.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::{Process, Receiver, free_port, ndjson_ints, run_pipeline};
use serde_json::{Value, json};

fn pipeline(hook: u16, receiver: u16, check_interval: &str) -> String {
    format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
transforms:
  route:
    type: subscription
    inputs: [hook]
    check_interval: {check_interval}
    subscriptions: [ {{ name: prod, custom_filters: {{ env: prod }} }} ]
    api_outputs: [ hooks ]
sinks:
  matched:
    type: http
    inputs: [route.hooks]
    url: "http://127.0.0.1:{receiver}/hooks"
    encoding: ndjson
    batch: {{ max_events: 100, timeout: 5ms }}
  rest:
    type: http
    inputs: [route.prod, route._unmatched]
    url: "http://127.0.0.1:{receiver}/rest"
    encoding: ndjson
    batch: {{ max_events: 100, timeout: 5ms }}
"#
    )
}

fn on(rx: &Receiver, path: &str) -> Vec<i64> {
    let requests: Vec<_> = rx
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect();
    ndjson_ints(&requests, "n")
}

async fn call(api: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{api}{path}");
    let req = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        "PUT" => client.put(url),
        _ => client.delete(url),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().await.expect("API call");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Posts events `{n, service}` one after another until stopped; `checkout` every other
/// one. Returns the numbers answered 200 (delivered) with their service.
fn stream(
    hook: u16,
    stop: Arc<AtomicBool>,
    next: Arc<AtomicI64>,
) -> tokio::task::JoinHandle<Vec<(i64, bool)>> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut acked = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let checkout = n % 2 == 0;
            let service = if checkout { "checkout" } else { "search" };
            let sent = client
                .post(format!("http://127.0.0.1:{hook}/"))
                .json(&json!({"n": n, "service": service, "labels": {"env": "dev"}}))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 200 => acked.push((n, checkout)),
                // Down for the restart: wait for it.
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        acked
    })
}

/// The first event number handed out at or after now.
fn mark(next: &AtomicI64) -> i64 {
    next.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_made_by_api_routes_at_once_survives_reload_and_restart_and_is_deleted_cleanly()
 {
    let rx = Receiver::new(0).start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook, api) = (free_port(), free_port());
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, pipeline(hook, rx.port, "10s")).expect("write");
    let data = dir.path().join("data");
    let api_address = format!("127.0.0.1:{api}");
    let mut process = Process::spawn(run_pipeline(&path, &data, Some(&api_address)));
    process.wait_for_port(hook).await;
    process.wait_for_port(api).await;

    let (stop, next) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicI64::new(0)),
    );
    let streaming = stream(hook, Arc::clone(&stop), Arc::clone(&next));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (status, listed) = call(api, "GET", "/subscriptions", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["subscriptions"][0]["managed_by"], "file");
    let (status, _) = call(api, "GET", "/subscriptions?component=nope", None).await;
    assert_eq!(
        status, 404,
        "an unknown component is named, not an empty list"
    );
    let (status, refused) = call(api, "DELETE", "/subscriptions/route.prod", None).await;
    assert_eq!(status, 409, "the file's are read-only: {refused}");

    let (status, made) = call(
        api,
        "POST",
        "/subscriptions",
        Some(json!({"name": "checkout", "services": ["checkout"], "severity_levels": [], "output": "hooks"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let created_at = Instant::now();
    let routed_from = mark(&next);
    let id = made["id"].as_str().expect("id").to_owned();
    // Routes within a second.
    let routed_in = loop {
        if on(&rx, "/hooks").iter().any(|&n| n >= routed_from) {
            break created_at.elapsed();
        }
        assert!(
            created_at.elapsed() < Duration::from_secs(5),
            "never routed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        routed_in < Duration::from_secs(1),
        "routed after {routed_in:?}"
    );

    // A reload that rebuilds the transform keeps it.
    std::fs::write(&path, pipeline(hook, rx.port, "11s")).expect("rewrite");
    let (status, reloaded) = call(api, "POST", "/reload", None).await;
    assert_eq!(status, 200, "{reloaded}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_reload = mark(&next);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // So does a restart.
    process.signal("TERM");
    let _ = process.child().wait();
    let mut process = Process::spawn(run_pipeline(&path, &data, Some(&api_address)));
    process.wait_for_port(hook).await;
    process.wait_for_port(api).await;
    let (status, shown) = call(api, "GET", &format!("/subscriptions/{id}"), None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["services"], json!(["checkout"]));
    assert_eq!(shown["active"], true);
    let after_restart = mark(&next);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (status, recent) = call(
        api,
        "GET",
        &format!("/subscriptions/{id}/events?limit=5"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(recent["count"].as_u64().is_some_and(|c| c > 0), "{recent}");
    assert_eq!(recent["events"][0]["event"]["service"], "checkout");
    let (status, tested) = call(api, "GET", &format!("/subscriptions/{id}/test"), None).await;
    assert_eq!(status, 200);
    assert!(
        tested["recent"]["matched"].as_u64().is_some_and(|m| m > 0),
        "{tested}"
    );
    assert_eq!(tested["sample"]["matched"], true);

    // The stream sends one event at a time: all but the one in flight now were
    // answered before the delete.
    let deleting_from = mark(&next).saturating_sub(1);
    let (status, _) = call(api, "DELETE", &format!("/subscriptions/{id}"), None).await;
    assert_eq!(status, 200);
    let deleted_from = mark(&next);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = streaming.await.expect("stream");
    let (status, _) = call(api, "GET", &format!("/subscriptions/{id}"), None).await;
    assert_eq!(status, 404);

    let (hooks, rest) = (on(&rx, "/hooks"), on(&rx, "/rest"));
    let mut all: Vec<i64> = hooks.iter().chain(&rest).copied().collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "an event was delivered twice");
    for &(n, checkout) in &acked {
        assert!(
            all.binary_search(&n).is_ok(),
            "acknowledged event {n} was lost"
        );
        let on_hooks = hooks.binary_search(&n).is_ok();
        if n >= routed_from && n < deleting_from && checkout {
            assert!(on_hooks, "checkout event {n} missed the subscription");
        }
        if !checkout || n >= deleted_from {
            assert!(!on_hooks, "event {n} went to the subscription's output");
        }
    }
    for window in [after_reload, after_restart] {
        assert!(
            acked
                .iter()
                .any(|&(n, c)| c && n >= window && n < deleted_from),
            "no checkout event acknowledged after {window}"
        );
    }
    drop(process);
}
