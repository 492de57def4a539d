//! Status feeds for the tests: a feed server on loopback with the conditional GET
//! semantics of a real one, a clock whose sleeps end only when the test ticks it, and a
//! running `status_feed` pipeline with its API.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice::clock::{Clock, ManualClock};
use sluice::component::BoxFuture;
use sluice::telemetry::Telemetry;
use sluice::testing::CaptureSink;
use sluice::topology::TopologyOptions;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{free_port, parse, start_with};

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/statuspages")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

// ---------------------------------------------------------------------------------
// The feed server.

/// What one path serves.
#[derive(Clone, Default)]
pub struct Doc {
    pub body: String,
    /// Answer this instead of the body (500, 429…).
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    /// Send an ETag (a hash of the body and `salt`); without it only Last-Modified.
    pub etag: bool,
    pub salt: u64,
    pub last_modified: Option<String>,
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub status: u16,
}

/// Serves documents by path, with the conditional GET semantics of a real server:
/// `If-None-Match` matching the ETag, or `If-Modified-Since` equal to Last-Modified,
/// gets a `304`.
#[derive(Clone, Default)]
pub struct FeedServer {
    pub docs: Arc<Mutex<HashMap<String, Doc>>>,
    pub hits: Arc<Mutex<Vec<Hit>>>,
}

impl FeedServer {
    pub fn serve(&self, path: &str, body: &str) {
        let mut docs = self.docs.lock().expect("lock");
        let doc = docs.entry(path.to_owned()).or_insert_with(|| Doc {
            etag: true,
            ..Doc::default()
        });
        doc.body = body.to_owned();
        doc.status = None;
        doc.retry_after = None;
    }

    pub fn update(&self, path: &str, change: impl FnOnce(&mut Doc)) {
        change(
            self.docs
                .lock()
                .expect("lock")
                .entry(path.to_owned())
                .or_default(),
        );
    }

    pub fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .expect("lock")
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    pub async fn start(&self) -> u16 {
        let me = self.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
            let me = me.clone();
            async move {
                let path = uri.path().to_owned();
                let doc = me.docs.lock().expect("lock").get(&path).cloned();
                let header = |name: header::HeaderName| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let if_none_match = header(header::IF_NONE_MATCH);
                let if_modified_since = header(header::IF_MODIFIED_SINCE);
                let mut response = axum::response::Response::new(axum::body::Body::empty());
                let status = match doc {
                    None => 404,
                    Some(Doc {
                        status: Some(status),
                        retry_after,
                        ..
                    }) => {
                        if let Some(ra) = retry_after {
                            response
                                .headers_mut()
                                .insert(header::RETRY_AFTER, ra.parse().expect("value"));
                        }
                        *response.body_mut() = axum::body::Body::from("upstream trouble");
                        status
                    }
                    Some(doc) => {
                        use std::hash::{Hash, Hasher};
                        let mut h = std::hash::DefaultHasher::new();
                        (&doc.body, doc.salt).hash(&mut h);
                        let etag = format!("\"{:016x}\"", h.finish());
                        let fresh = (doc.etag && if_none_match.as_deref() == Some(etag.as_str()))
                            || (!doc.etag
                                && doc.last_modified.is_some()
                                && if_modified_since == doc.last_modified);
                        let headers = response.headers_mut();
                        if doc.etag {
                            headers.insert(header::ETAG, etag.parse().expect("value"));
                        }
                        if let Some(lm) = &doc.last_modified {
                            headers.insert(header::LAST_MODIFIED, lm.parse().expect("value"));
                        }
                        if fresh {
                            304
                        } else {
                            *response.body_mut() = axum::body::Body::from(doc.body);
                            200
                        }
                    }
                };
                *response.status_mut() = StatusCode::from_u16(status).expect("status");
                me.hits.lock().expect("lock").push(Hit {
                    path,
                    if_none_match,
                    if_modified_since,
                    status,
                });
                response
            }
        });
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

// ---------------------------------------------------------------------------------
// Running the source.

/// A clock whose sleeps end only when the test ticks it (one tick, one sleep): a
/// scheduled poll happens exactly when the test says. `ManualClock` ends every sleep at
/// once, which would make a polling loop spin; this one keeps its time (`now`, `wall`)
/// and moves it forward by each sleep that ended.
#[derive(Clone)]
pub struct StepClock {
    pub time: ManualClock,
    pub sleeps: Arc<Mutex<Vec<Duration>>>,
    pub ticks: Arc<Semaphore>,
}

impl std::fmt::Debug for StepClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StepClock({:?})", self.sleeps())
    }
}

impl StepClock {
    pub fn at(wall: &str) -> Self {
        Self {
            time: ManualClock::starting_at(t(wall)),
            sleeps: Arc::default(),
            ticks: Arc::new(Semaphore::new(0)),
        }
    }

    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().expect("lock").clone()
    }

    /// Ends the pending sleep (or the next one).
    pub fn tick(&self) {
        self.ticks.add_permits(1);
    }
}

impl Clock for StepClock {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.sleeps.lock().expect("lock").push(duration);
        let ticks = Arc::clone(&self.ticks);
        let time = self.time.clone();
        Box::pin(async move {
            if let Ok(permit) = ticks.acquire().await {
                permit.forget();
                time.advance(duration);
            }
        })
    }

    fn now(&self) -> Instant {
        self.time.now()
    }

    fn wall(&self) -> DateTime<Utc> {
        self.time.wall()
    }
}

/// A running pipeline: the source, a capturing sink and the API.
pub struct Running {
    pub topology: sluice::topology::Topology,
    pub telemetry: Arc<Telemetry>,
    pub sink: CaptureSink,
    pub api: String,
    pub api_stop: CancellationToken,
    pub http: reqwest::Client,
}

pub async fn run(yaml: &str, clock: &StepClock, data_dir: &Path, sink: CaptureSink) -> Running {
    let mut p = parse(yaml);
    sink.attach(&mut p, "out", &["feeds"], 100);
    run_parsed(p, clock, data_dir, sink).await
}

/// [`run`] on a pipeline whose sink is already attached.
pub async fn run_parsed(
    p: sluice::config::Pipeline,
    clock: &StepClock,
    data_dir: &Path,
    sink: CaptureSink,
) -> Running {
    free_port();
    let options = TopologyOptions {
        clock: Arc::new(clock.clone()),
        data_dir: data_dir.to_owned(),
        ..TopologyOptions::default()
    };
    let (topology, telemetry) = start_with(p, options).await;
    // What `sluice run` records once the pipeline is up (`/health` is 503 before).
    telemetry.set_pipeline_running(true);
    let api_stop = CancellationToken::new();
    let (address, _) = sluice::api::serve(
        "127.0.0.1:0",
        Arc::clone(&telemetry),
        None,
        None,
        api_stop.clone(),
    )
    .await
    .expect("API");
    Running {
        topology,
        telemetry,
        sink,
        api: format!("http://{address}"),
        api_stop,
        http: reqwest::Client::new(),
    }
}

impl Running {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .expect("GET");
        (r.status().as_u16(), r.json().await.expect("JSON"))
    }

    /// `POST /status_feeds/feeds/check`: one poll of every feed, answered when done.
    pub async fn check(&self) -> Value {
        let r = self
            .http
            .post(format!("{}/status_feeds/feeds/check", self.api))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200);
        r.json().await.expect("JSON")
    }

    /// Waits until every feed has been polled `n` times.
    pub async fn polled(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, snap) = self.get("/status_feeds/feeds").await;
            if snap["feeds"]
                .as_array()
                .is_some_and(|f| f.iter().all(|f| f["polls"].as_u64() >= Some(n)))
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not polled {n} times: {snap}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn events(&self) -> Vec<Value> {
        self.sink
            .values()
            .iter()
            .map(|v| serde_json::to_value(v).expect("JSON"))
            .collect()
    }

    /// Events from `from` on, as `summary status phase severity`.
    pub fn lines(&self, from: usize) -> Vec<String> {
        self.events()[from..]
            .iter()
            .map(|e| {
                format!(
                    "{} {} {} {}",
                    e["summary"].as_str().unwrap_or("?"),
                    e["status"].as_str().unwrap_or("?"),
                    e["labels"]["phase"].as_str().unwrap_or("?"),
                    e["severity"].as_str().unwrap_or("?"),
                )
            })
            .collect()
    }

    /// The sum of the series whose line starts with `line_prefix`, `None` when none does.
    pub fn metric(&self, line_prefix: &str) -> Option<f64> {
        self.telemetry
            .render_prometheus()
            .lines()
            .filter(|l| l.starts_with(line_prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
    }

    pub async fn stop(self) {
        self.api_stop.cancel();
        self.topology.stop(Duration::from_secs(5)).await;
    }
}
