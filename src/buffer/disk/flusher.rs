//! Durability off the hot path: the flusher task fsyncs what was written (after each
//! write burst with `sync: always`, every `sync_interval` otherwise) on the blocking
//! pool and only then settles the events' acknowledgements, so a source learns an
//! event is safe exactly when it is on disk. It also keeps house (ledger, finished
//! segments) while the buffer exists, and the buffer's drop is its last chance.

use std::fs::File;
use std::io;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::ledger::write_ledger;
use super::{Shared, lock};
use crate::event::{EventAck, EventStatus};

/// How often the ledger is written and finished segments are removed.
const HOUSEKEEPING: Duration = Duration::from_millis(25);

impl Shared {
    /// Makes every write so far durable, then settles their events' acknowledgements.
    async fn sync(self: &Arc<Self>) {
        let (target, files, dir) = {
            let mut w = lock(&self.writer);
            let pending_any = lock(&self.pending).front().is_some();
            if !pending_any && !w.active_unsynced && w.unsynced.is_empty() {
                return;
            }
            let mut files = std::mem::take(&mut w.unsynced);
            if w.active_unsynced {
                match w.file.try_clone() {
                    Ok(f) => files.push(f),
                    Err(e) => {
                        tracing::error!(component_id = %self.id, error = %e, "disk buffer: cannot sync the active segment")
                    }
                }
                w.active_unsynced = false;
            }
            let dir = std::mem::take(&mut w.dir_unsynced).then(|| self.dir.clone());
            (w.write_seq, files, dir)
        };
        let result = tokio::task::spawn_blocking(move || -> io::Result<()> {
            for f in &files {
                f.sync_data()?;
            }
            if let Some(dir) = dir {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
        let status = match result {
            Ok(()) => EventStatus::Delivered,
            Err(e) => {
                // The events may or may not be on disk: the sources send them again.
                tracing::error!(component_id = %self.id, error = %e, "disk buffer: fsync failed; events reported as failed");
                EventStatus::Errored
            }
        };
        let done: Vec<EventAck> = {
            let mut pending = lock(&self.pending);
            let mut done = Vec::new();
            while pending.front().is_some_and(|(seq, _)| *seq <= target) {
                if let Some((_, acks)) = pending.pop_front() {
                    done.extend(acks);
                }
            }
            done
        };
        for ack in done {
            ack.settle(status);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Last chance for what the flusher did not get to: the process is stopping.
        let w = lock(&self.writer);
        let _ = w.file.sync_data();
        for f in &w.unsynced {
            let _ = f.sync_data();
        }
        drop(w);
        for (_, acks) in lock(&self.pending).drain(..) {
            for ack in acks {
                ack.settle(EventStatus::Delivered);
            }
        }
        let acks = lock(&self.acks);
        let now = acks.tracker.acked_below();
        if now != acks.ledger_written {
            let _ = write_ledger(&self.dir, now);
        }
    }
}

/// Syncs and keeps house while the buffer exists.
pub(super) async fn flusher(shared: Weak<Shared>, wake: Arc<Notify>) {
    let mut last_housekeeping = Instant::now();
    let mut last_sync = Instant::now();
    loop {
        let Some(s) = shared.upgrade() else { return };
        let every = s.limits().sync_every;
        let wait = every
            .map_or(HOUSEKEEPING, |e| e.saturating_sub(last_sync.elapsed()))
            .min(HOUSEKEEPING.saturating_sub(last_housekeeping.elapsed()));
        drop(s);
        let _ = tokio::time::timeout(wait, wake.notified()).await;
        let Some(s) = shared.upgrade() else { return };
        let due = match s.limits().sync_every {
            None => true,
            Some(e) => last_sync.elapsed() >= e,
        };
        if due {
            s.sync().await;
            last_sync = Instant::now();
        }
        if last_housekeeping.elapsed() >= HOUSEKEEPING {
            s.housekeep();
            last_housekeeping = Instant::now();
        }
    }
}
