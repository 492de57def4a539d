//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod datadog;
pub mod elasticsearch;
pub mod feeds;
pub mod opsgenie;
pub mod pagerduty;
pub mod postgres;
pub mod teams;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sluice::config::{Pipeline, parse_texts};
use sluice::telemetry::Telemetry;
use sluice::topology::{Topology, TopologyOptions};

/// Topology options on a manual clock (retry pauses return at once and are recorded),
/// and the clock.
pub fn manual() -> (sluice::clock::ManualClock, TopologyOptions) {
    let clock = sluice::clock::ManualClock::default();
    (
        clock.clone(),
        TopologyOptions {
            clock: Arc::new(clock),
            ..TopologyOptions::default()
        },
    )
}

/// Parses a pipeline from YAML text without validating it (so tests can attach sinks).
pub fn parse(yaml: &str) -> Pipeline {
    parse_texts(&[(PathBuf::from("test.yaml"), yaml.to_owned())], |_| None)
        .unwrap_or_else(|e| panic!("pipeline parses: {e}"))
}

/// Validates and starts a pipeline.
pub async fn start(mut pipeline: Pipeline) -> (Topology, Arc<Telemetry>) {
    pipeline
        .validate()
        .unwrap_or_else(|e| panic!("pipeline is valid: {e}"));
    let telemetry = Telemetry::new();
    let options = TopologyOptions::default();
    let running = sluice::topology::start(pipeline, Arc::clone(&telemetry), &options)
        .await
        .unwrap_or_else(|e| panic!("pipeline starts: {e}"));
    (running, telemetry)
}

/// A port nobody listens on right now, distinct from every other port this process
/// handed out. Ports come from a per-process block below Linux's ephemeral range
/// (32768+), so neither parallel tests nor outgoing connections collide with them.
/// (Also installs the TLS crypto provider that reqwest clients in tests need: every
/// test that talks HTTP picks a port first.)
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    sluice::net::install_crypto_provider();
    let base = 20000 + (std::process::id() % 120) as u16 * 100;
    for _ in 0..100 {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 100;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

/// Waits up to 10 s for `cond`.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until a TCP port accepts connections.
pub async fn wait_for_port(port: u16) {
    sluice::net::install_crypto_provider();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "port {port} never opened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The built `sluice` binary, or `$TEST_SLUICE_BIN` (to test another build of it).
pub fn sluice() -> Command {
    Command::new(
        std::env::var_os("TEST_SLUICE_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_sluice").into()),
    )
}

/// `sluice run --no-watch -c pipeline --data-dir data_dir`, with the API at `api`
/// (`None`: the API off) and no inherited API token.
pub fn run_pipeline(pipeline: &Path, data_dir: &Path, api: Option<&str>) -> Command {
    let mut cmd = sluice();
    cmd.args(["run", "--no-watch", "-c"])
        .arg(pipeline)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("SLUICE_API__AUTH_TOKEN");
    match api {
        Some(address) => cmd.args(["--api-address", address]),
        None => cmd.env("SLUICE_API__ENABLED", "false"),
    };
    cmd
}

/// A sluice process that is killed if the test ends early.
pub struct Process(pub Option<Child>);

impl Process {
    pub fn spawn(mut cmd: Command) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sluice starts");
        Self(Some(child))
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }

    pub fn signal(&mut self, name: &str) {
        let pid = self.child().id().to_string();
        let status = Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -s {name} {pid}");
    }
}

impl Process {
    /// Waits up to 10 s for this process to listen on `port`; when it does not (or
    /// exits first), fails with its exit status and the end of its stderr, which is
    /// otherwise lost with the pipe.
    pub async fn wait_for_port(&mut self, port: u16) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            let exited = self.child().try_wait().ok().flatten();
            if exited.is_some() || tokio::time::Instant::now() >= deadline {
                panic!("port {port} never opened ({})", self.report());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Process {
    /// Stops the process and says how it ended: its exit status (it may have exited on
    /// its own) and the end of its stderr, which is otherwise lost with the pipe.
    pub fn report(&mut self) -> String {
        let exited = self.child().try_wait().ok().flatten();
        let _ = self.child().kill();
        let status = self.child().wait().ok();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child().stderr.take() {
            use std::io::Read;
            let _ = pipe.read_to_string(&mut stderr);
        }
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "process {}: {status:?}; its stderr ends:\n{}",
            if exited.is_some() {
                "had exited"
            } else {
                "was running"
            },
            tail.join("\n")
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A top-level field of an event payload (`null` when absent).
pub fn field(v: &vrl::value::Value, name: &str) -> vrl::value::Value {
    v.as_object()
        .and_then(|m| m.get(name))
        .cloned()
        .unwrap_or(vrl::value::Value::Null)
}

/// A top-level integer field; panics (the test fails) when it is not one.
pub fn int(v: &vrl::value::Value, name: &str) -> i64 {
    match field(v, name) {
        vrl::value::Value::Integer(i) => i,
        other => panic!("{name} is not an integer: {other:?}"),
    }
}

/// A top-level field as text, if present.
pub fn string(v: &vrl::value::Value, name: &str) -> Option<String> {
    v.as_object()
        .and_then(|m| m.get(name))
        .map(|f| f.to_string_lossy().into_owned())
}

/// Reads one component's metric from a /metrics body: the sum of its series (outputs,
/// error types, intentional or not), `None` when it has none.
pub fn metric(body: &str, name: &str, component: &str) -> Option<f64> {
    let prefix = format!("{name}{{component_id=\"{component}\",");
    body.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
}

/// A request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: bytes::Bytes,
    /// The status the receiver answered.
    pub status: u16,
}

impl Recorded {
    pub fn status_ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// An integer field (or a JSON pointer, `/payload/n`) of every NDJSON line in
/// `requests`' bodies, sorted.
pub fn ndjson_ints<'a>(requests: impl IntoIterator<Item = &'a Recorded>, field: &str) -> Vec<i64> {
    let mut values: Vec<i64> = requests
        .into_iter()
        .flat_map(|r| {
            std::str::from_utf8(&r.body)
                .expect("utf-8")
                .lines()
                .map(|l| {
                    let line = serde_json::from_str::<serde_json::Value>(l).expect("json");
                    let value = if field.starts_with('/') {
                        line.pointer(field)
                    } else {
                        line.get(field)
                    };
                    value
                        .and_then(serde_json::Value::as_i64)
                        .expect("an integer field")
                })
                .collect::<Vec<_>>()
        })
        .collect();
    values.sort_unstable();
    values
}

/// An answer a [`Receiver`] gives.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn with_body(mut self, body: &str) -> Self {
        self.body = body.into();
        self
    }
}

/// A real HTTP server on loopback that records requests and answers from a script
/// (then with `fallback`, 200 unless changed).
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    pub requests: Arc<std::sync::Mutex<Vec<Recorded>>>,
    pub script: Arc<std::sync::Mutex<std::collections::VecDeque<Reply>>>,
    pub fallback: Arc<std::sync::Mutex<Reply>>,
    /// How long each request waits before it is answered (a slow receiver).
    pub delay: Arc<std::sync::Mutex<Duration>>,
}

impl Receiver {
    pub fn new(port: u16) -> Self {
        Self {
            port,
            requests: Arc::default(),
            script: Arc::default(),
            fallback: Arc::new(std::sync::Mutex::new(Reply::status(200))),
            delay: Arc::default(),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().expect("lock").extend(replies);
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().expect("lock") = delay;
    }

    pub fn set_fallback(&self, reply: Reply) {
        *self.fallback.lock().expect("lock") = reply;
    }

    pub fn router(&self) -> axum::Router {
        let me = self.clone();
        axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: axum::http::HeaderMap,
                  body: bytes::Bytes| {
                let me = me.clone();
                async move {
                    let delay = *me.delay.lock().expect("lock");
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let reply = me
                        .script
                        .lock()
                        .expect("lock")
                        .pop_front()
                        .unwrap_or_else(|| me.fallback.lock().expect("lock").clone());
                    me.requests.lock().expect("lock").push(Recorded {
                        method: method.to_string(),
                        path: uri.to_string(),
                        headers,
                        body,
                        status: reply.status,
                    });
                    let mut response =
                        axum::response::Response::new(axum::body::Body::from(reply.body));
                    *response.status_mut() =
                        axum::http::StatusCode::from_u16(reply.status).expect("status");
                    for (k, v) in reply.headers {
                        response.headers_mut().insert(
                            axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                            axum::http::HeaderValue::from_str(&v).expect("value"),
                        );
                    }
                    response
                }
            },
        )
    }

    /// Serves plain HTTP on `self.port` (0 picks one) and returns the receiver with its
    /// port.
    pub async fn start(mut self) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind receiver");
        self.port = listener.local_addr().expect("addr").port();
        let app = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        self
    }
}

/// Validates and starts a pipeline with explicit options (a manual clock, say).
pub async fn start_with(
    mut pipeline: Pipeline,
    options: TopologyOptions,
) -> (Topology, Arc<Telemetry>) {
    pipeline
        .validate()
        .unwrap_or_else(|e| panic!("pipeline is valid: {e}"));
    let telemetry = Telemetry::new();
    let running = sluice::topology::start(pipeline, Arc::clone(&telemetry), &options)
        .await
        .unwrap_or_else(|e| panic!("pipeline starts: {e}"));
    (running, telemetry)
}

/// Signs `key\nvalue\n` pairs as SNS does (SignatureVersion 2, SHA256withRSA) with the
/// test key in `tests/fixtures/sns/` (its certificate is `test-signing-cert.pem`).
pub fn sign_sns(fields: &[(&str, &str)], key_pem: &str) -> String {
    use base64::Engine;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let key = PrivateKeyDer::from_pem_file(key_pem).expect("test key");
    let pair = ring::signature::RsaKeyPair::from_pkcs8(key.secret_der()).expect("RSA key");
    let mut text = String::new();
    for (k, v) in fields {
        text.push_str(k);
        text.push('\n');
        text.push_str(v);
        text.push('\n');
    }
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        text.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    base64::engine::general_purpose::STANDARD.encode(sig)
}

/// Re-signs an SNS envelope with the test key: SignatureVersion 2 and `cert_url` as its
/// signing certificate (pin that URL to `test-signing-cert.pem` in the source).
pub fn resign_sns(envelope: &mut serde_json::Value, cert_url: &str, key_pem: &str) {
    let kind = envelope["Type"]
        .as_str()
        .unwrap_or("Notification")
        .to_owned();
    let keys: &[&str] = if kind == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut fields = Vec::new();
    for k in keys {
        let v = envelope.get(*k).or_else(|| match *k {
            "SubscribeURL" => envelope.get("SubscribeUrl"),
            _ => None,
        });
        if let Some(serde_json::Value::String(s)) = v {
            fields.push((*k, s.clone()));
        }
    }
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let signature = sign_sns(&pairs, key_pem);
    let obj = envelope
        .as_object_mut()
        .expect("an SNS envelope is an object");
    obj.insert("SignatureVersion".into(), "2".into());
    obj.insert("Signature".into(), signature.into());
    let cert_key = if obj.contains_key("SigningCertUrl") {
        "SigningCertUrl"
    } else {
        "SigningCertURL"
    };
    obj.insert(cert_key.into(), cert_url.into());
}

/// The API on a free loopback port with a token per role (`tok-viewer`,
/// `tok-operator`, `tok-admin`) and a reload that always succeeds; its address.
pub async fn api_with_roles(stop: &tokio_util::sync::CancellationToken) -> std::net::SocketAddr {
    use sluice::api::{Access, ReloadRequest, Role};
    sluice::net::install_crypto_provider();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ReloadRequest>(4);
    tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let _ = reply.send(Ok(serde_json::json!({})));
        }
    });
    let access = Access::open()
        .with_token("dashboards", "tok-viewer", Role::Viewer)
        .with_token("oncall", "tok-operator", Role::Operator)
        .with_token("deployer", "tok-admin", Role::Admin);
    let (address, _) = sluice::api::serve(
        "127.0.0.1:0",
        Telemetry::new(),
        Some(tx),
        access,
        stop.clone(),
    )
    .await
    .expect("API");
    address
}

/// A child process killed and reaped when dropped. Give it `Stdio::null()` outputs: a
/// chatty run cannot then fill a pipe and stall.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the tool `binary` (from the Debian package `package`) runs. Under CI a
/// missing tool fails the test (`.ci/run` installs it); elsewhere the test prints why
/// it skips, and the caller returns.
pub fn tool_or_skip(binary: &str, package: &str) -> bool {
    let runs = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        sluice::testing::skip(&format!(
            "{binary} is not installed (.ci/run installs the Debian package {package})"
        ));
    }
    runs
}

/// Builds transform `id` of the pipeline `text` on `clock`, as the topology would
/// (without a data dir); with its number of named outputs.
pub fn build_transform(
    text: &str,
    id: &str,
    clock: &sluice::clock::ManualClock,
) -> (Box<dyn sluice::component::Transform>, usize) {
    let p = parse(text);
    let def = &p.transforms[id];
    let telemetry = Telemetry::new();
    let cx = sluice::component::TransformContext {
        file_notices: Default::default(),
        id: Arc::from(id),
        metrics: telemetry.component(
            id,
            sluice::telemetry::ComponentKind::Transform,
            def.config.type_name(),
        ),
        clock: Arc::new(clock.clone()),
        data_dir: None,
    };
    let t = def
        .config
        .build(&cx)
        .unwrap_or_else(|e| panic!("{id} builds: {e}"));
    (t, def.config.outputs().len())
}
