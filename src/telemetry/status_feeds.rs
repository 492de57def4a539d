//! Running `status_feed` sources, by component id, so the API can reach them:
//! `POST /status_feeds/{id}/check`, `GET /status_feeds/{id}` and the per-feed states in
//! `/health`.
//!
//! A source registers when its task starts and is removed when the returned guard drops.
//! A reload may start the replacement before the old task has ended, so each
//! registration carries a generation and a guard only removes its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::lock;

/// Where the source sends its answer to a check: its snapshot once the poll is done.
pub(crate) type CheckReply = oneshot::Sender<serde_json::Value>;

/// What the API holds of one running source.
#[derive(Clone, Debug)]
pub(crate) struct StatusFeedHandle {
    /// Asks the source to poll every feed now, whatever their schedule or backoff.
    pub(crate) check: mpsc::Sender<CheckReply>,
    /// The latest snapshot: `{"feeds": [...], "open_incidents": [...]}`, replaced after
    /// every poll.
    pub(crate) snapshot: Arc<Mutex<serde_json::Value>>,
}

impl StatusFeedHandle {
    pub(crate) fn snapshot(&self) -> serde_json::Value {
        lock(&self.snapshot).clone()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> StatusFeedHandle {
        let (check, _) = mpsc::channel(1);
        StatusFeedHandle {
            check,
            snapshot: Arc::default(),
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
