//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sluice::config::{Pipeline, parse_texts};
use sluice::telemetry::Telemetry;
use sluice::topology::{Topology, TopologyOptions};

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

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
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

/// The built `sluice` binary.
pub fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
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

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads one metric sample (exact label set match) from a /metrics body.
pub fn metric(body: &str, name: &str, component: &str) -> Option<f64> {
    let prefix = format!("{name}{{component_id=\"{component}\",");
    body.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
