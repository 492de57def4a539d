//! sluice under test, as a child process: the same binary as `sluice bench` (or
//! `$BENCH_SLUICE_BIN`), run on the scenario's pipeline with the bench's addresses in
//! its environment, so it is measured exactly as it is deployed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::load::LoadError;
use crate::telemetry::snapshot::{LatencySummary, Snapshot};

/// A running sluice; killed when dropped if not stopped.
pub(crate) struct Sluice {
    child: Option<Child>,
    log: PathBuf,
    listen: String,
    /// Its API's address (`GET /components`).
    api: String,
}

/// How many times a start is tried when an address it was given is taken meanwhile.
const START_ATTEMPTS: u32 = 5;

impl Sluice {
    /// Starts sluice on `pipeline` and waits until its API reports healthy. `listen`, when
    /// given, names the variable of the environment that holds a free loopback address
    /// for the pipeline's source ([`Sluice::listen_address`]).
    ///
    /// A port found free can be taken before the child binds it (by any connection's
    /// ephemeral port while other runs go on, as under parallel tests), so a start that
    /// fails on an address in use is tried again on other ports.
    pub(crate) async fn start(
        pipeline: &Path,
        data_dir: &Path,
        env: &[(String, String)],
        listen: Option<&str>,
    ) -> Result<Self, LoadError> {
        let mut attempt = 1;
        loop {
            let mut env = env.to_vec();
            let mut address = String::new();
            if let Some(name) = listen {
                address = free_address()?;
                env.push((name.to_owned(), address.clone()));
            }
            match Self::start_once(pipeline, data_dir, &env).await {
                Err(LoadError::Sluice(message))
                    if attempt < START_ATTEMPTS && is_address_in_use(&message) =>
                {
                    attempt += 1;
                }
                Ok(mut sluice) => {
                    sluice.listen = address;
                    return Ok(sluice);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The address given to the source (empty when `start` was given none).
    pub(crate) fn listen_address(&self) -> &str {
        &self.listen
    }

    async fn start_once(
        pipeline: &Path,
        data_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Self, LoadError> {
        let binary = match std::env::var_os("BENCH_SLUICE_BIN") {
            Some(b) => PathBuf::from(b),
            None => std::env::current_exe().map_err(|e| LoadError::Io {
                what: "the sluice binary".into(),
                source: e,
            })?,
        };
        let api = free_address()?;
        let log = data_dir.join("sluice.log");
        let stderr = std::fs::File::create(&log).map_err(|e| LoadError::Io {
            what: log.display().to_string(),
            source: e,
        })?;
        let child = Command::new(&binary)
            .arg("run")
            .arg("--config")
            .arg(pipeline)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--api-address")
            .arg(&api)
            .arg("--no-watch")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("SLUICE_LOG__LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| LoadError::Io {
                what: format!("starting {}", binary.display()),
                source: e,
            })?;
        let mut sluice = Self {
            child: Some(child),
            log,
            listen: String::new(),
            api,
        };
        sluice.wait_healthy().await?;
        Ok(sluice)
    }

    async fn wait_healthy(&mut self) -> Result<(), LoadError> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(LoadError::Sluice(format!(
                    "sluice exited ({status}) before it was ready: {}",
                    self.log_tail()
                )));
            }
            if let Ok(r) = client
                .get(format!("http://{}/health", self.api))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LoadError::Sluice(format!(
                    "sluice was not healthy within 60 s: {}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The end of sluice's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// How old events were as they left each component, and end to end, over the
    /// child's life (its `GET /components`): where a latency outlier was spent inside
    /// sluice. Empty when the API does not answer.
    pub(crate) async fn stages(&self) -> Vec<Stage> {
        let url = format!("http://{}/components", self.api);
        let answer = async {
            reqwest::Client::new()
                .get(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await?
                .json::<Snapshot>()
                .await
        };
        let Ok(snapshot) = answer.await else {
            return Vec::new();
        };
        let mut stages: Vec<Stage> = snapshot
            .components
            .iter()
            .map(|c| Stage::of(format!("{} ({})", c.id, c.kind), &c.latency))
            .collect();
        stages.push(Stage::of("end to end".into(), &snapshot.latency));
        stages
    }

    /// The child's peak resident memory so far (`VmHWM` in `/proc/<pid>/status`), in
    /// MiB.
    pub(crate) fn peak_rss_mib(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    /// SIGTERM, then waits for a clean exit (SIGKILL after 20 s).
    pub(crate) fn stop(mut self) -> Result<(), LoadError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(LoadError::Sluice(format!(
                        "sluice exited with {status}: {}",
                        self.log_tail()
                    )));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(LoadError::Sluice(
                        "sluice did not stop within 20 s of SIGTERM".into(),
                    ));
                }
            }
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One stage's latency inside sluice, in ms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Stage {
    /// A component (`id (kind)`: how old events were as it passed them on or delivered
    /// them) or `end to end` (a source's batch, from when it was made to when every
    /// sink settled it).
    pub(crate) stage: String,
    pub(crate) events: u64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    /// Absent when the child is a sluice from before these were reported.
    pub(crate) p99_9: Option<f64>,
    pub(crate) max: Option<f64>,
}

impl Stage {
    fn of(stage: String, l: &LatencySummary) -> Self {
        Self {
            stage,
            events: l.count,
            p50: l.p50_seconds * 1e3,
            p99: l.p99_seconds * 1e3,
            p99_9: l.p99_9_seconds.map(|v| v * 1e3),
            max: l.max_seconds.map(|v| v * 1e3),
        }
    }
}

/// Whether sluice failed to start because an address was taken (Linux's words for
/// `EADDRINUSE`, in the error sluice logs).
fn is_address_in_use(message: &str) -> bool {
    message.contains("Address already in use")
}

/// A loopback address nobody listens on right now.
pub(crate) fn free_address() -> Result<String, LoadError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .map_err(|e| LoadError::Io {
            what: "finding a free port".into(),
            source: e,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_on_a_taken_address_is_recognized() {
        // What `sluice run` logs when a source cannot bind (seen in CI).
        let log = "ERROR sluice::cli::run: the pipeline could not start: component `events`: \
                   cannot listen on 127.0.0.1:46515: Address already in use (os error 98)";
        assert!(is_address_in_use(log));
        assert!(!is_address_in_use(
            "ERROR sluice::cli::run: the pipeline could not start: component `events`: \
             permission denied"
        ));
    }
}
