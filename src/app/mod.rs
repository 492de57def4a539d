//! The running sluice: starts the pipeline and the API, owns every reload trigger and
//! shuts down.
//!
//! Reloads come from three places: SIGHUP, `POST /reload` and one directory watcher
//! over the pipeline files and the files components read ([`watcher`]). They all end
//! in [`crate::reload::reload`], run by this loop, which owns the topology, so two
//! reloads never overlap. File changes are debounced ([`debounce`]); a component that
//! takes a file's new content by itself (a subscription `file:`) hears of the change
//! at once through [`FileNotices`]. SIGTERM or SIGINT drains in-flight events within
//! `shutdown_timeout`. Signals reach the controller as [`Control`] messages, so its
//! tests drive it without signals, on tokio's paused clock.

mod debounce;
#[cfg(test)]
mod tests;
mod watcher;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::ReloadRequest;
use crate::buffer::MemoryBudget;
use crate::component::FileNotices;
use crate::config::Pipeline;
use crate::settings::Settings;
use crate::telemetry::{ComponentState, Telemetry};
use crate::topology::{self, Drained, Topology, TopologyOptions};

pub(crate) use debounce::Debounce;
pub(crate) use watcher::FileWatcher;

/// Quiet time after a file change before the pipeline reloads.
pub(crate) const FILE_DEBOUNCE: Duration = Duration::from_millis(200);

/// What `sluice run` was asked to run.
pub(crate) struct Run {
    pub(crate) pipeline: Pipeline,
    /// The pipeline files (empty: the embedded default pipeline).
    pub(crate) files: Vec<PathBuf>,
    pub(crate) settings: Settings,
    /// Reload when a watched file changes.
    pub(crate) watch: bool,
    pub(crate) telemetry: Arc<Telemetry>,
}

/// Runs until a signal or until every source has finished; the process exit code.
pub(crate) async fn serve(run: Run) -> anyhow::Result<u8> {
    let Run {
        pipeline,
        files,
        settings,
        watch,
        telemetry,
    } = run;
    // Silences added through the API persist even before any alert_rule runs.
    if let Err(e) = crate::silences::attach_dir(&settings.data_dir) {
        tracing::warn!(error = %e, "cannot load the saved silences");
    }
    let control_rx = signals()?;
    let api_shutdown = CancellationToken::new();
    let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let api = if settings.api.enabled {
        let (address, handle) = crate::api::serve(
            &settings.api.address,
            telemetry.clone(),
            Some(reload_tx),
            crate::api::Access::from_settings(&settings.api).map_err(anyhow::Error::msg)?,
            api_shutdown.clone(),
        )
        .await
        .with_context(|| format!("cannot start the API on {}", settings.api.address))?;
        tracing::info!(%address, "API listening");
        Some(handle)
    } else {
        drop(reload_tx);
        None
    };

    let notices = FileNotices::default();
    let options = TopologyOptions {
        data_dir: settings.data_dir.clone(),
        drain_timeout: settings.reload_drain_timeout,
        memory_budget: settings
            .memory_limit
            .filter(|l| l.0 > 0)
            .map(|l| MemoryBudget::new(usize::try_from(l.0).unwrap_or(usize::MAX))),
        file_notices: notices.clone(),
        ..TopologyOptions::default()
    };
    if let Some(budget) = &options.memory_budget {
        let budget = Arc::clone(budget);
        telemetry.set_memory_probe(crate::telemetry::MemoryProbe(Box::new(move || {
            (budget.used(), budget.limit())
        })));
    }
    // Watch before starting: an edit made while the pipeline starts must not be missed
    // (its notification waits in the channel and triggers a reload once running).
    let (changed_tx, changed_rx) = mpsc::unbounded_channel();
    let watcher = if watch {
        let mut w = FileWatcher::new(changed_tx, watcher::SWEEP)
            .context("cannot start the file watcher")?;
        w.set_files(&watched(&pipeline, &files));
        Some(w)
    } else {
        None
    };
    let components = pipeline.sources.len() + pipeline.transforms.len() + pipeline.sinks.len();
    let hash = pipeline.hash;
    let wiring = pipeline.wiring();
    let running = topology::start(pipeline, telemetry.clone(), &options)
        .await
        .context("the pipeline could not start")?;
    telemetry.config_applied(hash, None);
    telemetry.set_inputs(wiring);
    telemetry.set_pipeline_running(true);
    tracing::info!(components, "pipeline running");

    let controller = Controller {
        topology: running,
        telemetry: Arc::clone(&telemetry),
        files,
        watcher,
        notices,
        debounce: Debounce::new(FILE_DEBOUNCE),
    };
    let inputs = Inputs {
        control: control_rx,
        api: reload_rx,
        changed: changed_rx,
    };
    let code = controller.run(inputs, settings.shutdown_timeout).await;
    let failed: Vec<String> = telemetry
        .components()
        .iter()
        .filter(|c| matches!(c.state(), ComponentState::Failed(_)))
        .map(|c| c.id.clone())
        .collect();
    let code = if failed.is_empty() {
        code
    } else {
        tracing::error!(components = ?failed, "exiting with failed components");
        code.max(1)
    };
    api_shutdown.cancel();
    if let Some(handle) = api {
        let _ = handle.await;
    }
    Ok(code)
}

/// What the process's signals ask of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// SIGTERM or SIGINT: drain and exit.
    Stop(&'static str),
    /// SIGHUP: reload.
    Reload,
}

/// Forwards SIGTERM, SIGINT and SIGHUP as [`Control`] messages (listening starts now,
/// so a signal sent while the pipeline starts is not lost).
fn signals() -> anyhow::Result<mpsc::Receiver<Control>> {
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let control = tokio::select! {
                _ = term.recv() => Control::Stop("SIGTERM"),
                _ = int.recv() => Control::Stop("SIGINT"),
                _ = hup.recv() => Control::Reload,
            };
            if tx.send(control).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Everything that can make the controller act.
pub(crate) struct Inputs {
    pub(crate) control: mpsc::Receiver<Control>,
    /// `POST /reload`, each with its reply.
    pub(crate) api: mpsc::Receiver<ReloadRequest>,
    /// A watched file changed.
    pub(crate) changed: mpsc::UnboundedReceiver<PathBuf>,
}

/// Why the pipeline reloads.
enum Trigger {
    Signal,
    Api(ReloadRequest),
    Files,
}

impl Trigger {
    fn name(&self) -> &'static str {
        match self {
            Self::Signal => "SIGHUP",
            Self::Api(_) => "POST /reload",
            Self::Files => "file change",
        }
    }
}

pub(crate) struct Controller {
    pub(crate) topology: Topology,
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) watcher: Option<FileWatcher>,
    pub(crate) notices: FileNotices,
    pub(crate) debounce: Debounce,
}

impl Controller {
    /// Runs until a stop or until every source finished; the process exit code.
    pub(crate) async fn run(mut self, mut inputs: Inputs, shutdown_timeout: Duration) -> u8 {
        let stop = loop {
            let due = self.debounce.due();
            let trigger = tokio::select! {
                // In this order when several are ready: a stop wins, and file changes
                // queued together are all seen before their quiet time is checked.
                biased;
                Some(control) = inputs.control.recv() => match control {
                    Control::Stop(name) => break Some(name),
                    Control::Reload => Trigger::Signal,
                },
                () = self.topology.finished() => break None,
                Some(reply) = inputs.api.recv() => Trigger::Api(reply),
                Some(path) = inputs.changed.recv() => {
                    self.notices.changed(&path);
                    self.debounce.changed(tokio::time::Instant::now());
                    continue;
                }
                () = sleep_until_some(due) => {
                    if !self.debounce.take_due(tokio::time::Instant::now()) {
                        continue;
                    }
                    Trigger::Files
                }
            };
            self.reload(trigger).await;
        };
        self.shut_down(stop, shutdown_timeout).await
    }

    async fn reload(&mut self, trigger: Trigger) {
        self.debounce.reloaded();
        let outcome = crate::reload::reload(
            &mut self.topology,
            &self.telemetry,
            &self.files,
            trigger.name(),
        )
        .await;
        let files = watched(self.topology.pipeline(), &self.files);
        if outcome.is_ok()
            && let Some(w) = self.watcher.as_mut()
        {
            w.set_files(&files);
        }
        // Components that take a file's new content by themselves (a subscription
        // `file:` whose names did not change) are not rebuilt by a reload: tell them to
        // look, as SIGHUP and `POST /reload` promise even under `--no-watch`. Unchanged
        // files are no-ops.
        for file in &files {
            self.notices.changed(file);
        }
        if let Trigger::Api(reply) = trigger {
            let _ = reply.send(outcome.map(|c| {
                serde_json::json!({
                    "added": c.added, "changed": c.changed, "removed": c.removed, "aborted": c.aborted,
                })
            }));
        }
    }

    /// `signal`: the signal that asked for it; `None` when every source finished.
    async fn shut_down(self, signal: Option<&'static str>, timeout: Duration) -> u8 {
        let Some(name) = signal else {
            self.telemetry.set_pipeline_running(false);
            tracing::info!("every source finished and everything drained; bye");
            return 0;
        };
        tracing::info!(signal = name, timeout = ?timeout, "shutting down: draining in-flight events");
        self.telemetry.set_pipeline_running(false);
        match self.topology.stop(timeout).await {
            Drained::Complete => {
                tracing::info!("all events drained; bye");
                0
            }
            Drained::TimedOut(left) => {
                tracing::error!(components = ?left, "shutdown timeout reached; events still in flight were not delivered");
                1
            }
        }
    }
}

/// What to watch: the pipeline's files, those its components read, and the folders
/// given as `--config` (a file added to one is a change). The embedded default
/// pipeline is no file on disk.
fn watched(pipeline: &Pipeline, specs: &[PathBuf]) -> Vec<PathBuf> {
    let embedded = std::path::Path::new(crate::config::DEFAULT_PIPELINE_NAME);
    let mut files = pipeline.watched_files();
    files.retain(|f| f != embedded);
    files.extend(crate::config::paths::folders(specs));
    files
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
