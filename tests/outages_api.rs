//! Outage monitoring through `/outages` (issue 24), against feed servers on loopback:
//! status, stop and start (a stopped feed is not polled, a check still polls it),
//! interval and providers, checks by provider, a sample outage through the outputs,
//! and the history of past incidents; what was changed and what happened survive a
//! restart.

mod common;

use std::time::Duration;

use common::feeds::{FeedServer, Running, StepClock, fixture, run};
use serde_json::{Value, json};
use sluice::testing::CaptureSink;

fn pipeline(port: u16) -> String {
    format!(
        r#"
sources:
  feeds:
    type: status_feed
    timeout: 2s
    feeds:
      - {{ name: azure, provider: azure, url: "http://127.0.0.1:{port}/azure.rss" }}
      - {{ name: github, provider: statuspage, url: "http://127.0.0.1:{port}/github.atom" }}
"#
    )
}

async fn send(r: &Running, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", r.api);
    let req = match method {
        "POST" => r.http.post(url),
        "PUT" => r.http.put(url),
        _ => r.http.get(url),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let resp = req.send().await.expect("API call");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sends `body` and expects a 400 whose `error` contains `says`.
async fn refused(r: &Running, method: &str, path: &str, body: Value, says: &str) {
    let (status, e) = send(r, method, path, Some(body.clone())).await;
    assert_eq!(status, 400, "{body}: {e}");
    assert!(
        e["error"].as_str().unwrap_or_default().contains(says),
        "{body}: {e}"
    );
}

fn feed<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["sources"][0]["feeds"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("feed {name} in {status}"))
}

/// A feed server with Azure's open incidents at `/azure.rss` and GitHub's ongoing one
/// at `/github.atom`.
async fn azure_and_github() -> (FeedServer, u16) {
    let server = FeedServer::default();
    let port = server.start().await;
    server.serve(
        "/azure.rss",
        &fixture("azure_status_feed_rss_reconstructed_2018.xml"),
    );
    server.serve(
        "/github.atom",
        &fixture("statuspage_githubstatus_history.atom_excerpt_ongoing_incident.xml"),
    );
    (server, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_are_stopped_started_configured_checked_tested_and_remembered() {
    let (server, port) = azure_and_github().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = StepClock::at("2026-07-09T07:00:00Z");
    let r = run(&pipeline(port), &clock, dir.path(), CaptureSink::default()).await;
    r.polled(1).await;

    let (status, s) = send(&r, "GET", "/outages/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(s["monitoring"], "running", "{s}");
    assert_eq!(feed(&s, "azure")["state"], "ok");
    let open_azure = s["open_incidents"]
        .as_array()
        .expect("open")
        .iter()
        .filter(|i| i["feed"] == "azure")
        .count();
    assert!(open_azure > 0, "{s}");

    // Azure lists open incidents only: all clear resolves them. A check by provider
    // polls that provider's feeds only.
    server.serve(
        "/azure.rss",
        &fixture("azure_status_feed_rss_empty_all-clear.xml"),
    );
    let github_hits = server.hits("/github.atom").len();
    let (status, checked) = send(&r, "POST", "/outages/check/azure", None).await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(server.hits("/github.atom").len(), github_hits);
    let (status, _) = send(&r, "POST", "/outages/check/oci", None).await;
    assert_eq!(status, 404, "no feed reads oci");

    let (_, h) = send(&r, "GET", "/outages/history?provider=azure", None).await;
    assert_eq!(h["count"], open_azure, "{h}");
    let past = &h["incidents"][0];
    assert!(past["ended_at"].is_string(), "{past}");
    let updates: Vec<&str> = past["updates"]
        .as_array()
        .expect("updates")
        .iter()
        .map(|u| u["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(updates, ["firing", "resolved"]);
    // Since after it ended: only what is still open (GitHub's ongoing incident).
    let (_, h) = send(
        &r,
        "GET",
        "/outages/history?since=2030-01-01T00:00:00Z",
        None,
    )
    .await;
    assert_eq!(h["count"], 1, "{h}");
    assert_eq!(h["incidents"][0]["provider"], "statuspage");
    assert!(h["incidents"][0]["ended_at"].is_null());
    let (status, _) = send(&r, "GET", "/outages/history?since=yesterday", None).await;
    assert_eq!(status, 400);

    // Stopped: the schedule leaves it alone; the others go on.
    let (status, s) = send(&r, "POST", "/outages/stop", Some(json!({"feed": "github"}))).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(feed(&s, "github")["state"], "paused");
    let (_, s) = send(&r, "GET", "/outages/status", None).await;
    assert_eq!(s["monitoring"], "partial");
    let (github, azure) = (
        server.hits("/github.atom").len(),
        server.hits("/azure.rss").len(),
    );
    clock.tick();
    common::eventually("azure polled on schedule", || {
        server.hits("/azure.rss").len() > azure
    })
    .await;
    assert_eq!(
        server.hits("/github.atom").len(),
        github,
        "a stopped feed is not polled"
    );
    let (status, _) = send(&r, "POST", "/outages/stop", Some(json!({"feed": "nope"}))).await;
    assert_eq!(status, 404);
    let (status, _) = send(&r, "POST", "/outages/stop", Some(json!({"colour": "red"}))).await;
    assert_eq!(status, 400);

    // Interval and providers: refused whole when wrong.
    for (bad, says) in [
        (json!({"interval": "5s"}), "at least 10s"),
        (json!({"interval": "soon"}), "`interval`"),
        (json!({"providers": ["nope"]}), "unknown provider `nope`"),
        (
            json!({"providers": ["statuspage", "oci"], "interval": -1}),
            "whole number",
        ),
    ] {
        refused(&r, "PUT", "/outages/config", bad, says).await;
    }
    let (status, s) = send(
        &r,
        "PUT",
        "/outages/config",
        Some(json!({"interval": "5m", "providers": ["statuspage"]})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(feed(&s, "azure")["state"], "disabled");
    assert_eq!(feed(&s, "azure")["interval_seconds"], 300);
    assert_eq!(feed(&s, "github")["interval_seconds"], 300);

    // A sample outage through the outputs: firing, then resolved.
    let before = r.events().len();
    let (status, t) = send(&r, "POST", "/outages/webhook/test", None).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["delivered"], 2);
    let sent: Vec<Value> = r.events()[before..].to_vec();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["status"], "firing");
    assert_eq!(sent[1]["status"], "resolved");
    assert_eq!(sent[0]["fingerprint"], t["fingerprint"]);
    assert_eq!(sent[0]["kind"], "outage");

    // A restart keeps the changes and the history.
    r.stop().await;
    let r = run(&pipeline(port), &clock, dir.path(), CaptureSink::default()).await;
    let (_, s) = send(&r, "GET", "/outages/status", None).await;
    assert_eq!(feed(&s, "github")["state"], "paused", "{s}");
    assert_eq!(feed(&s, "azure")["state"], "disabled");
    assert_eq!(feed(&s, "github")["interval_seconds"], 300);
    let (_, h) = send(&r, "GET", "/outages/history?provider=azure", None).await;
    assert_eq!(h["count"], open_azure);

    // Back to the file's feeds and their own schedule.
    let (status, s) = send(
        &r,
        "PUT",
        "/outages/config",
        Some(json!({"interval": null, "providers": null})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    let (status, s) = send(&r, "POST", "/outages/start", None).await;
    assert_eq!(status, 200, "{s}");
    let s = json!({"sources": s["sources"]});
    assert_eq!(feed(&s, "github")["paused"], false);
    assert_eq!(feed(&s, "azure")["enabled"], true);
    assert_eq!(feed(&s, "azure")["interval_seconds"], 120);
    tokio::time::timeout(Duration::from_secs(10), r.stop())
        .await
        .expect("stops");
}

/// A server that accepts connections and never answers.
async fn black_hole() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

/// What the red team found: a feed that never answers held up the others and the API;
/// a configuration one source refused was taken by the others; an array body meant
/// "everything"; feeds the API added outlived the list that added them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_feed_delays_only_itself_and_configurations_are_taken_whole() {
    let (server, port) = azure_and_github().await;
    let hang = black_hole().await;
    let yaml = format!(
        r#"
sources:
  feeds:
    type: status_feed
    timeout: 60s
    feeds:
      - {{ name: github, provider: statuspage, url: "http://127.0.0.1:{port}/github.atom" }}
      - {{ name: stuck, provider: statuspage, url: "http://127.0.0.1:{hang}/never" }}
  more:
    type: status_feed
    feeds:
      - {{ name: azure, provider: azure, url: "http://127.0.0.1:{port}/azure.rss" }}
"#
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = StepClock::at("2026-07-09T07:00:00Z");
    let mut p = common::parse(&yaml);
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["feeds", "more"], 100);
    let r = common::feeds::run_parsed(p, &clock, dir.path(), sink).await;

    // `stuck` is still fetching (for a minute): the other feeds were polled, and a
    // check and a stop are answered.
    common::eventually("github and azure polled", || {
        server.hits("/github.atom").len() == 1 && server.hits("/azure.rss").len() == 1
    })
    .await;
    let (status, s) = send(&r, "POST", "/outages/check/azure", None).await;
    assert_eq!(status, 200, "{s}");
    let (status, s) = send(&r, "POST", "/outages/stop", Some(json!({"feed": "github"}))).await;
    assert_eq!(status, 200, "{s}");
    let (_, s) = send(&r, "GET", "/outages/status", None).await;
    let feeds: Vec<&Value> = s["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .flat_map(|src| src["feeds"].as_array().expect("feeds"))
        .collect();
    let stuck = feeds.iter().find(|f| f["name"] == "stuck").expect("stuck");
    assert_eq!(stuck["polls"], 0, "still fetching: {stuck}");

    // `more` cannot poll statuspage (no feed, no public one): nobody takes it.
    let (status, e) = send(
        &r,
        "PUT",
        "/outages/config",
        Some(json!({"providers": ["statuspage"]})),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("more: "),
        "{e}"
    );
    let (_, s) = send(&r, "GET", "/outages/status", None).await;
    assert_eq!(s["feeds_stopped"], 1, "only github, stopped above: {s}");
    for (bad, says) in [
        (json!({"interval": "1000years"}), "at most 7 days"),
        (json!([]), "JSON object"),
    ] {
        let path = if bad.is_array() {
            "/outages/stop"
        } else {
            "/outages/config"
        };
        let method = if bad.is_array() { "POST" } else { "PUT" };
        refused(&r, method, path, bad, says).await;
    }

    // A provider the API added goes when the list is reset.
    let (status, s) = send(
        &r,
        "PUT",
        "/outages/config",
        Some(json!({"source": "more", "providers": ["azure", "gcp"]})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        s["sources"][0]["feeds"].as_array().map(Vec::len),
        Some(2),
        "{s}"
    );
    let (status, s) = send(
        &r,
        "PUT",
        "/outages/config",
        Some(json!({"source": "more", "providers": null})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    let names: Vec<&str> = s["sources"][0]["feeds"]
        .as_array()
        .expect("feeds")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["azure"]);
    tokio::time::timeout(Duration::from_secs(10), r.stop())
        .await
        .expect("stops with a fetch in flight");
}
