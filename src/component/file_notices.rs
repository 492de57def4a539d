//! Changes to the files components read, as the application's one watcher sees them.
//!
//! A component that can take a file's new content without a rebuild (a subscription
//! `file:`) registers a callback for its path; the watcher that also triggers pipeline
//! reloads calls it when that path changes, so one watcher serves both. The registry
//! keeps callbacks weakly: a component that is dropped stops being called without
//! unregistering. Without a watcher (`--no-watch`, tests) nothing calls them, and such
//! components fall back to checking the file's modification time themselves.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// What a component runs when its file changes.
pub type OnChange = Arc<dyn Fn() + Send + Sync>;

/// A registered callback: the path it listens to, and the callback held weakly.
type Listener = (PathBuf, Weak<dyn Fn() + Send + Sync>);

#[derive(Clone, Default)]
pub struct FileNotices {
    listeners: Arc<Mutex<Vec<Listener>>>,
}

impl std::fmt::Debug for FileNotices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileNotices").finish_non_exhaustive()
    }
}

impl FileNotices {
    /// Calls `on_change` whenever `path` changes, for as long as the caller keeps it.
    pub(crate) fn watch(&self, path: &Path, on_change: &OnChange) {
        let mut listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|(_, l)| l.strong_count() > 0);
        listeners.push((absolute(path), Arc::downgrade(on_change)));
    }

    /// `path` changed: runs every live callback registered for it.
    pub fn changed(&self, path: &Path) {
        let path = absolute(path);
        let due: Vec<OnChange> = {
            let mut listeners = self
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            listeners.retain(|(_, l)| l.strong_count() > 0);
            listeners
                .iter()
                .filter(|(p, _)| *p == path)
                .filter_map(|(_, l)| l.upgrade())
                .collect()
        };
        // Outside the lock: a callback may read and compile a file.
        for on_change in due {
            on_change();
        }
    }
}

pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn callbacks_run_for_their_path_until_dropped() {
        let notices = FileNotices::default();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        let on_change: OnChange = Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        notices.watch(Path::new("subs/a.yaml"), &on_change);
        notices.changed(Path::new("subs/b.yaml"));
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        notices.changed(&std::path::absolute("subs/a.yaml").expect("absolute"));
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "relative and absolute paths match"
        );
        drop(on_change);
        notices.changed(Path::new("subs/a.yaml"));
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "a dropped component is not called"
        );
    }
}
