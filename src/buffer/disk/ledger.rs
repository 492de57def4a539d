//! What is settled and what may go: records done with (delivered, rejected, lost to
//! damage) move the ack tracker, whose contiguous prefix is written to `ledger.json`
//! so a restart does not repeat them, and segments whose records are all done are
//! deleted (or quarantined, if damaged).

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::{SegmentMeta, Shared, Span, lock, segment};
use crate::event::EventStatus;

#[derive(serde::Serialize, serde::Deserialize)]
struct Ledger {
    acked_below: u64,
}

pub(super) fn read_ledger(dir: &Path) -> u64 {
    let path = dir.join("ledger.json");
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Ledger>(&bytes) {
            Ok(l) => l.acked_below,
            Err(e) => {
                // Replaying from the start repeats delivered events, which is better
                // than skipping undelivered ones.
                tracing::warn!(path = %path.display(), error = %e, "disk buffer ledger is unreadable; replaying every record on disk");
                0
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the disk buffer ledger; replaying every record on disk");
            0
        }
    }
}

/// Without fsync, unlike `state_file::write_atomically`: the ledger is rewritten on
/// every acknowledgement, and a ledger older than the records only replays some of
/// them again (at least once), it never loses any.
pub(super) fn write_ledger(dir: &Path, acked_below: u64) -> io::Result<()> {
    let tmp = dir.join("ledger.json.tmp");
    let bytes = serde_json::to_vec(&Ledger { acked_below }).map_err(io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, dir.join("ledger.json"))
}

impl Shared {
    /// Records of `span` are done (delivered or rejected) or must be read again.
    pub(super) fn settle(&self, span: Span, status: EventStatus) {
        if status == EventStatus::Errored {
            lock(&self.acks).redeliver.push_back(span);
            self.data.notify_one();
            return;
        }
        lock(&self.acks).tracker.settle(span.first_id, span.end_id);
        self.release(span.events, span.bytes);
    }

    pub(super) fn release(&self, events: u64, bytes: u64) {
        self.unacked_events.fetch_sub(events, Ordering::AcqRel);
        self.unacked_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.space.notify_waiters();
    }

    /// Ids that will never be read (lost to damage): settled so they hold nothing back.
    pub(super) fn skip_ids(&self, start: u64, end: u64) {
        lock(&self.acks).tracker.settle(start, end);
    }

    /// Writes the ledger and removes segments whose records are all done.
    pub(super) fn housekeep(&self) {
        let acked_below = {
            let mut acks = lock(&self.acks);
            let now = acks.tracker.acked_below();
            if now != acks.ledger_written {
                if let Err(e) = write_ledger(&self.dir, now) {
                    tracing::warn!(component_id = %self.id, error = %e, "disk buffer: cannot write the ledger");
                    return;
                }
                acks.ledger_written = now;
            }
            now
        };
        let reader_seq = self.reader_seq.load(Ordering::Acquire);
        let finished: Vec<(u64, SegmentMeta)> = lock(&self.segments)
            .iter()
            .filter(|(seq, meta)| {
                meta.sealed
                    && **seq < reader_seq
                    && meta.last_id.is_none_or(|last| last < acked_below)
            })
            .map(|(s, m)| (*s, *m))
            .collect();
        for (seq, meta) in finished {
            let path = segment::path(&self.dir, seq);
            let result = if meta.damaged {
                let quarantine = self.dir.join("quarantine");
                std::fs::create_dir_all(&quarantine).and_then(|()| {
                    std::fs::rename(&path, quarantine.join(format!("{seq:020}.seg")))
                })
            } else {
                std::fs::remove_file(&path)
            };
            match result {
                Ok(()) => {
                    if meta.damaged {
                        tracing::warn!(component_id = %self.id, segment = seq, "disk buffer: damaged segment moved to quarantine/ after its intact records were delivered");
                    }
                    lock(&self.segments).remove(&seq);
                }
                Err(e) => {
                    tracing::warn!(component_id = %self.id, segment = seq, error = %e, "disk buffer: cannot remove a finished segment");
                }
            }
        }
    }
}
