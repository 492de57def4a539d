//! The one watcher over the pipeline files and the files components read.
//!
//! Directories are watched rather than files, because editors and `kubectl` replace
//! files by renaming new ones over them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches a set of files for changes.
pub(crate) struct FileWatcher {
    watcher: RecommendedWatcher,
    dirs: HashSet<PathBuf>,
    files: std::sync::Arc<std::sync::Mutex<HashSet<PathBuf>>>,
}

impl FileWatcher {
    /// Each change to a watched file sends its absolute path on `notify` (debouncing is
    /// the receiver's job).
    pub(crate) fn new(notify: mpsc::UnboundedSender<PathBuf>) -> notify::Result<Self> {
        let files: std::sync::Arc<std::sync::Mutex<HashSet<PathBuf>>> = Default::default();
        let watched = std::sync::Arc::clone(&files);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            let Ok(files) = watched.lock() else { return };
            for path in event.paths.iter().map(|p| absolute(p)) {
                if files.contains(&path) {
                    let _ = notify.send(path);
                }
            }
        })?;
        Ok(Self {
            watcher,
            dirs: HashSet::new(),
            files,
        })
    }

    /// Watches exactly `files` from now on.
    pub(crate) fn set_files(&mut self, files: &[PathBuf]) {
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

use crate::component::absolute;
