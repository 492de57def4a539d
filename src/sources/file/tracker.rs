//! Acknowledgements and checkpoints of the `file` source.
//!
//! Per file, a [`Tracker`] keeps the batches sent and not yet settled, in order; the
//! acknowledged offset advances over the contiguous prefix settled `Delivered` or
//! `Rejected`. An `Errored` batch rewinds the file to the acknowledged offset (after a
//! pause), so its lines are read and sent again: at least once, never skipped. Only
//! acknowledged offsets are written as checkpoints, so a restart reads nothing twice
//! that was delivered and skips nothing that was not.

use std::collections::VecDeque;

use crate::event::EventStatus;

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
    pub(super) errored: bool,
    /// `(offset, checksum of the bytes before it)`, cached for checkpoints.
    pub(super) tail_cache: Option<(u64, Option<u64>)>,
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
    pub(super) fn settle(&mut self, seq: u64, status: EventStatus) -> bool {
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
