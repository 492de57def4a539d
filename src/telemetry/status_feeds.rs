//! Running `status_feed` sources, by component id, so the API can reach them:
//! `POST /status_feeds/{id}/check`, `GET /status_feeds/{id}`, `/outages/*` and the
//! per-feed states in `/health`.
//!
//! A source registers when its task starts and is removed when the returned guard drops.
//! A reload may start the replacement before the old task has ended, so each
//! registration carries a generation and a guard only removes its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::lock;

/// Where the source sends its answer: its snapshot once done, or why it refused.
pub(crate) type Reply = oneshot::Sender<Result<serde_json::Value, String>>;

/// Which feeds a request means: those of `provider`, the one named `feed`, or (both
/// `None`) all of them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selector {
    pub(crate) provider: Option<String>,
    pub(crate) feed: Option<String>,
}

impl Selector {
    pub(crate) fn matches(&self, feed: &str, provider: &str) -> bool {
        self.feed.as_deref().is_none_or(|f| f == feed)
            && self.provider.as_deref().is_none_or(|p| p == provider)
    }
}

/// What the API asks of a running source.
#[derive(Debug)]
pub(crate) enum Control {
    /// Poll the selected feeds now, whatever their schedule, backoff or pause.
    Check { select: Selector, reply: Reply },
    /// Stop (`paused: true`) or resume polling the selected feeds; kept across restarts.
    Pause {
        select: Selector,
        paused: bool,
        reply: Reply,
    },
    /// Poll every feed every `interval` (`Some(None)`: each its own again) and only the
    /// `providers` listed (`Some(None)`: the pipeline file's feeds); kept across restarts.
    Configure {
        interval: Option<Option<std::time::Duration>>,
        providers: Option<Option<Vec<String>>>,
        /// Only check that it would be taken (the API checks every source first, so a
        /// configuration is taken by all or by none).
        dry_run: bool,
        reply: Reply,
    },
    /// Send a sample outage (firing, then resolved) through the outputs.
    Test { reply: Reply },
}

/// What the API holds of one running source.
#[derive(Clone, Debug)]
pub(crate) struct StatusFeedHandle {
    /// Requests to the source's loop.
    pub(crate) control: mpsc::Sender<Control>,
    /// The latest snapshot: `{"feeds": [...], "open_incidents": [...]}`, replaced after
    /// every poll and change.
    pub(crate) snapshot: Arc<Mutex<serde_json::Value>>,
    /// Past incidents of every feed, with their updates: `[{feed, provider, ...}]`.
    pub(crate) history: Arc<Mutex<serde_json::Value>>,
}

impl StatusFeedHandle {
    pub(crate) fn snapshot(&self) -> serde_json::Value {
        lock(&self.snapshot).clone()
    }

    pub(crate) fn history(&self) -> serde_json::Value {
        lock(&self.history).clone()
    }
}

/// Every registered source of the process.
#[derive(Debug, Default)]
pub(crate) struct StatusFeedRegistry {
    sources: Mutex<HashMap<String, (u64, StatusFeedHandle)>>,
    next: AtomicU64,
}

/// Removes its registration when dropped (the source task ended).
pub(crate) struct StatusFeedGuard {
    registry: Arc<StatusFeedRegistry>,
    id: String,
    generation: u64,
}

impl Drop for StatusFeedGuard {
    fn drop(&mut self) {
        let mut sources = lock(&self.registry.sources);
        if sources
            .get(&self.id)
            .is_some_and(|(generation, _)| *generation == self.generation)
        {
            sources.remove(&self.id);
        }
    }
}

impl StatusFeedRegistry {
    /// Registers the source `id`, replacing an earlier registration of the same id.
    pub(crate) fn register(
        self: &Arc<Self>,
        id: &str,
        handle: StatusFeedHandle,
    ) -> StatusFeedGuard {
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.sources).insert(id.to_owned(), (generation, handle));
        StatusFeedGuard {
            registry: Arc::clone(self),
            id: id.to_owned(),
            generation,
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<StatusFeedHandle> {
        lock(&self.sources).get(id).map(|(_, h)| h.clone())
    }

    /// Every running source, by id.
    pub(crate) fn all(&self) -> Vec<(String, StatusFeedHandle)> {
        let mut all: Vec<_> = lock(&self.sources)
            .iter()
            .map(|(id, (_, h))| (id.clone(), h.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> StatusFeedHandle {
        let (control, _) = mpsc::channel(1);
        StatusFeedHandle {
            control,
            snapshot: Arc::default(),
            history: Arc::default(),
        }
    }

    #[test]
    fn a_stale_guard_does_not_remove_its_replacement() {
        let registry = Arc::new(StatusFeedRegistry::default());
        let old = registry.register("feeds", handle());
        let new = registry.register("feeds", handle());
        drop(old);
        assert!(registry.get("feeds").is_some());
        drop(new);
        assert!(registry.get("feeds").is_none());
    }
}
