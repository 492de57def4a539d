//! Acknowledgements and checkpoints of the `file` source.
//!
//! Per file, a [`Tracker`] keeps the batches sent and not yet settled, in order; the
//! acknowledged offset advances over the contiguous prefix settled `Delivered` or
//! `Rejected`. An `Errored` batch rewinds the file to the acknowledged offset (after a
//! pause), so its lines are read and sent again: at least once, never skipped. Only
//! acknowledged offsets are written as checkpoints, so a restart reads nothing twice
//! that was delivered and skips nothing that was not.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::checkpoint::{self, Record};
use super::rotation::tail_at;
use super::tailer::Tailer;
use crate::event::EventStatus;

/// How long reading a file pauses after one of its batches errored.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

pub(super) struct Pending {
    seq: u64,
    end: u64,
    status: Option<EventStatus>,
}

/// The acknowledgement state of one file's content.
pub(super) struct Tracker {
    pub(super) id: u64,
    /// Every line before this offset is settled.
    pub(super) acked: u64,
    pub(super) pending: VecDeque<Pending>,
    next_seq: u64,
    errored: bool,
    /// `(offset, checksum of the bytes before it)`, cached for checkpoints.
    tail_cache: Option<(u64, Option<u64>)>,
}

impl Tracker {
    pub(super) fn new(id: u64, acked: u64) -> Self {
        Self {
            id,
            acked,
            pending: VecDeque::new(),
            next_seq: 0,
            errored: false,
            tail_cache: None,
        }
    }

    pub(super) fn push(&mut self, end: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back(Pending {
            seq,
            end,
            status: None,
        });
        seq
    }

    /// Records an outcome; true when the acknowledged offset moved.
    fn settle(&mut self, seq: u64, status: EventStatus) -> bool {
        // Outcomes of batches dropped by a rewind find nothing: they are read again.
        if let Some(p) = self.pending.iter_mut().find(|p| p.seq == seq) {
            p.status = Some(status);
        }
        let mut moved = false;
        while let Some(front) = self.pending.front() {
            match front.status {
                Some(EventStatus::Delivered | EventStatus::Rejected) => {
                    self.acked = front.end;
                    self.pending.pop_front();
                    moved = true;
                }
                Some(EventStatus::Errored) => {
                    self.errored = true;
                    break;
                }
                None => break,
            }
        }
        moved
    }
}

/// A batch's outcome, sent back by the task that waits for it.
pub(super) struct Ack {
    pub(super) tracker: u64,
    pub(super) seq: u64,
    pub(super) status: EventStatus,
}

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
        self.emitter.metrics.add_errors(1);
        self.dirty = true;
    }
}
