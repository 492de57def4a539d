//! Reloading the pipeline: what triggers it and what one reload does.
//!
//! Triggers (SIGHUP, `POST /reload`, a change to a watched file) all end in
//! [`reload`], run by the loop that owns the topology, so two reloads never overlap.
//! A reload loads and validates the files completely before the topology is touched;
//! a bad file or a component that fails to build leaves the running pipeline as it was.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::{ConfigErrors, Pipeline};
use crate::telemetry::Telemetry;
use crate::topology::{Changes, Topology};

/// Loads the pipeline files (or the embedded default pipeline when there are none).
pub fn load_pipeline(files: &[PathBuf]) -> Result<Pipeline, ConfigErrors> {
    if files.is_empty() {
        crate::config::load_texts(
            &[(
                PathBuf::from(crate::config::DEFAULT_PIPELINE_NAME),
                crate::config::DEFAULT_PIPELINE.to_owned(),
            )],
            |name| std::env::var(name).ok(),
        )
    } else {
        crate::config::load_files(files)
    }
}

/// Reloads `files` into `topology`; on failure the running pipeline is unchanged and
/// the error is logged, counted and kept for `/health`.
pub async fn reload(
    topology: &mut Topology,
    telemetry: &Telemetry,
    files: &[PathBuf],
    trigger: &str,
) -> Result<Changes, String> {
    let started = Instant::now();
    let pipeline = match load_pipeline(files) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(trigger, "reload refused: {e}");
            }
            telemetry.reload_failed(errors.to_string());
            return Err(errors.to_string());
        }
    };
    for w in &pipeline.warnings {
        tracing::warn!("{w}");
    }
    let hash = pipeline.hash;
    match topology.apply(pipeline).await {
        Ok(changes) => {
            let took = started.elapsed();
            telemetry.config_applied(hash, Some(took));
            tracing::info!(
                trigger,
                added = ?changes.added,
                changed = ?changes.changed,
                removed = ?changes.removed,
                aborted = ?changes.aborted,
                took = ?took,
                "pipeline reloaded"
            );
            Ok(changes)
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(trigger, "reload rolled back: {e}");
            }
            telemetry.reload_failed(errors.to_string());
            Err(errors.to_string())
        }
    }
}

/// Watches files for changes. Directories are watched rather than files, because
/// editors and `kubectl` replace files by renaming new ones over them.
pub struct FileWatcher {
    watcher: RecommendedWatcher,
    dirs: HashSet<PathBuf>,
    files: std::sync::Arc<std::sync::Mutex<HashSet<PathBuf>>>,
}

impl FileWatcher {
    /// Each relevant change sends `()` on `notify` (debouncing is the receiver's job).
    pub fn new(notify: mpsc::UnboundedSender<()>) -> notify::Result<Self> {
        let files: std::sync::Arc<std::sync::Mutex<HashSet<PathBuf>>> = Default::default();
        let watched = std::sync::Arc::clone(&files);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            let hit = watched
                .lock()
                .map(|files| event.paths.iter().any(|p| files.contains(&absolute(p))))
                .unwrap_or(false);
            if hit {
                let _ = notify.send(());
            }
        })?;
        Ok(Self {
            watcher,
            dirs: HashSet::new(),
            files,
        })
    }

    /// Watches exactly `files` from now on.
    pub fn set_files(&mut self, files: &[PathBuf]) {
        let files: HashSet<PathBuf> = files.iter().map(|f| absolute(f)).collect();
        let dirs: HashSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for gone in self.dirs.difference(&dirs) {
            let _ = self.watcher.unwatch(gone);
        }
        for dir in dirs.difference(&self.dirs) {
            if let Err(e) = self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for changes");
            }
        }
        self.dirs = dirs;
        if let Ok(mut watched) = self.files.lock() {
            *watched = files;
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
