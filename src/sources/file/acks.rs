//! How the `file` source's loop applies acknowledgements, rewinds errored files and
//! writes checkpoints, over the per-file [`Tracker`]s (`tracker.rs`).

use std::time::{Duration, Instant};

use super::checkpoint::{self, Record};
use super::fingerprint::tail_at;
use super::tailer::Tailer;
use super::tracker::{Ack, Tracker};

use crate::telemetry::{ErrorType, Stage};

/// How long reading a file pauses after one of its batches errored.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

impl Tailer {
    pub(super) fn tracker(&mut self, acked: u64) -> Tracker {
        self.next_tracker += 1;
        Tracker::new(self.next_tracker, acked)
    }

    pub(super) fn pending(&self) -> usize {
        self.files
            .iter()
            .map(|f| f.tracker.pending.len())
            .sum::<usize>()
            + self
                .orphans
                .iter()
                .map(|o| o.tracker.pending.len())
                .sum::<usize>()
    }
    pub(super) fn apply(&mut self, ack: Ack) {
        let tracker = self
            .files
            .iter_mut()
            .map(|f| &mut f.tracker)
            .chain(self.orphans.iter_mut().map(|o| &mut o.tracker))
            .find(|t| t.id == ack.tracker);
        if let Some(t) = tracker
            && t.settle(ack.seq, ack.status)
        {
            self.dirty = true;
        }
    }

    /// A file whose oldest unsettled batch errored is read again from its acknowledged
    /// offset (after a pause, so a failing sink is not hammered).
    pub(super) fn rewind_errored(&mut self, now: Instant) {
        for w in &mut self.files {
            if !w.tracker.errored {
                continue;
            }
            let at = w.tracker.acked;
            tracing::warn!(file = %w.path.display(), offset = at, "delivery failed; reading the file again from the last delivered line");
            w.tracker.errored = false;
            w.tracker.pending.clear();
            w.restart_at(at);
            w.paused_until = Some(now + ERROR_PAUSE);
        }
        for o in &mut self.orphans {
            // Nothing to read it from: the checkpoint stays where it is.
            if o.tracker.errored {
                o.tracker.errored = false;
                o.tracker.pending.clear();
                o.resume = o.tracker.acked;
                o.tail = None;
            }
        }
    }
    /// Starts writing the acknowledged offsets (atomically, on a blocking thread: an
    /// fsync can take long on a busy disk, and reading goes on meanwhile). One write at a
    /// time; returns it.
    pub(super) fn save(
        &mut self,
    ) -> tokio::task::JoinHandle<Result<(), checkpoint::CheckpointError>> {
        self.dirty = false;
        let mut records = Vec::with_capacity(self.files.len() + self.orphans.len());
        for w in &mut self.files {
            if w.twin_of.is_some() {
                continue;
            }
            let acked = w.tracker.acked;
            let tail = match w.tracker.tail_cache {
                Some((at, tail)) if at == acked => tail,
                _ => {
                    let tail = tail_at(&w.file, acked);
                    w.tracker.tail_cache = Some((acked, tail));
                    tail
                }
            };
            records.push(Record {
                id: w.id,
                checksum: w.checksum,
                path: w.path.clone(),
                offset: acked,
                tail,
            });
        }
        for o in &self.orphans {
            if let Some(id) = o.id {
                records.push(Record {
                    id,
                    checksum: o.checksum,
                    path: o.path.clone(),
                    offset: o.tracker.acked,
                    tail: if o.tracker.acked == o.resume {
                        o.tail
                    } else {
                        None
                    },
                });
            }
        }
        let path = self.checkpoint_path.clone();
        tokio::task::spawn_blocking(move || checkpoint::save(&path, records))
    }

    /// Whether the last write failed (then the offsets are written again next time).
    pub(super) fn saved(
        &mut self,
        result: Result<Result<(), checkpoint::CheckpointError>, tokio::task::JoinError>,
    ) {
        let error = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(error = %error, "cannot write checkpoints");
        self.emitter
            .metrics
            .add_errors(1, ErrorType::Acknowledgment, Stage::Receiving);
        self.dirty = true;
    }
}
