//! A sink's buffer on disk: events survive a crash, a restart, or a sink that is down
//! for longer than memory could hold.
//!
//! Layout of `data_dir/buffers/<sink id>/`: segment files of checksummed records
//! ([`segment`]), `ledger.json` (every record id below `acked_below` was settled) and
//! `lock` (held while a process uses the buffer). Damaged segments end up in
//! `quarantine/` once their intact records are delivered.
//!
//! Writing: a sender encodes its batch, appends it to the active segment under the
//! writer lock and hands the events' acknowledgements to the flusher. The flusher
//! fsyncs (after each write burst with `sync: always`, every `sync_interval`
//! otherwise) and only then settles them as delivered, so a source learns that an event
//! is safe exactly when it is on disk.
//!
//! Reading: the receiver reads records in id order up to what the writer committed,
//! turns them back into events carrying new acknowledgements, and settles their ids in
//! an [`acks::AckTracker`] when the sink is done with them. Delivered or rejected (a
//! dead letter is the sink's decision) counts as done; errored (an event lost by
//! accident, a sink task that died) is read again. A segment is deleted once every
//! record in it is done; on start, everything not done is read again before anything
//! new. So delivery is at least once: a crash repeats at most what was in flight plus
//! what was settled since the ledger was last written.
//!
//! Damage (a flipped byte, a torn write) is skipped: the reader resynchronizes on the
//! next record whose checksum holds, counts the lost records, logs, and quarantines the
//! segment. A damaged buffer never stops sluice from starting.
//!
//! Reads and writes are plain file syscalls on the calling task (they hit the page
//! cache); the slow part, fsync, runs on the blocking pool.
//!
//! One file per job: `recovery` (what a previous run left), `writer` (appending),
//! `flusher` (fsync, then acknowledgement), `reader` (records back as events) and
//! `ledger` (what is settled, and removing what is done). This file holds the state
//! they share and the public handles.

mod acks;
pub(crate) mod codec;
mod flusher;
mod ledger;
mod reader;
mod recovery;
pub(crate) mod segment;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use self::acks::AckTracker;
use self::recovery::Recovered;
use self::segment::SegmentReader;
use self::writer::{Writer, segment_bytes};
use super::Limits;
use crate::event::EventAck;
use crate::telemetry::{ComponentMetrics, LabeledCounter};

#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("disk buffer {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "disk buffer {0} is in use by another sluice process (or another component with the same id)"
    )]
    Locked(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

use crate::state_file::lock;

#[derive(Debug, Clone, Copy)]
struct SegmentMeta {
    /// Highest record id in it; `None` while it is being written or if it holds none.
    last_id: Option<u64>,
    sealed: bool,
    damaged: bool,
}

/// Where readers may read up to: the active segment and its committed length.
#[derive(Debug, Clone, Copy)]
struct Committed {
    seq: u64,
    len: u64,
}

/// Records handed to the sink in one batch, so they can be settled and read again.
#[derive(Debug, Clone, Copy)]
struct Span {
    seq: u64,
    offset: u64,
    end: u64,
    first_id: u64,
    end_id: u64,
    events: u64,
    bytes: u64,
}

struct AckState {
    tracker: AckTracker,
    ledger_written: u64,
    redeliver: VecDeque<Span>,
}

struct Shared {
    id: String,
    dir: PathBuf,
    _lock: File,
    limits: Mutex<Limits>,
    segment_bytes: u64,
    writer: Mutex<Writer>,
    committed: Mutex<Committed>,
    segments: Mutex<BTreeMap<u64, SegmentMeta>>,
    acks: Mutex<AckState>,
    /// Acknowledgements of written events, settled once their write is durable.
    pending: Mutex<VecDeque<(u64, Vec<EventAck>)>>,
    unacked_events: AtomicU64,
    unacked_bytes: AtomicU64,
    /// Segment the reader is in; older ones are no longer read.
    reader_seq: AtomicU64,
    senders: AtomicUsize,
    closed: AtomicBool,
    /// Wakes the reader (new data, a redelivery, the last sender gone).
    data: Notify,
    /// Wakes senders waiting for room.
    space: Notify,
    /// Wakes the flusher (a write to make durable).
    flush: Arc<Notify>,
    damaged: Arc<LabeledCounter>,
    metrics: Arc<ComponentMetrics>,
}

/// Opens (or creates) the disk buffer of sink `id` under `data_dir`, replaying what a
/// previous run left, and starts its flusher.
pub(crate) fn open(
    data_dir: &Path,
    id: &str,
    limits: &Limits,
    metrics: Arc<ComponentMetrics>,
) -> Result<(Sender, Receiver, Probe), OpenError> {
    let dir = data_dir.join("buffers").join(id);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let lock_path = dir.join("lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    if lock_file.try_lock().is_err() {
        return Err(OpenError::Locked(dir));
    }

    let Recovered {
        acked_below,
        segments,
        next_id,
        first_unacked,
        events,
        bytes,
        active,
        file,
        first_seq,
    } = recovery::recover(&dir, id)?;

    let flush = Arc::new(Notify::new());
    let shared = Arc::new(Shared {
        id: id.to_owned(),
        damaged: metrics.counter("sluice_buffer_damaged_records_total", &[]),
        metrics,
        _lock: lock_file,
        limits: Mutex::new(*limits),
        segment_bytes: segment_bytes(limits),
        writer: Mutex::new(Writer::new(file, active, next_id)),
        committed: Mutex::new(Committed {
            seq: active,
            len: 0,
        }),
        segments: Mutex::new(segments),
        acks: Mutex::new(AckState {
            tracker: AckTracker::new(first_unacked.unwrap_or(next_id)),
            ledger_written: acked_below,
            redeliver: VecDeque::new(),
        }),
        pending: Mutex::new(VecDeque::new()),
        unacked_events: AtomicU64::new(events),
        unacked_bytes: AtomicU64::new(bytes),
        reader_seq: AtomicU64::new(first_seq),
        senders: AtomicUsize::new(1),
        closed: AtomicBool::new(false),
        data: Notify::new(),
        space: Notify::new(),
        flush: Arc::clone(&flush),
        dir,
    });
    tokio::spawn(flusher::flusher(Arc::downgrade(&shared), flush));
    Ok((
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver {
            shared: Arc::clone(&shared),
            seq: first_seq,
            offset: 0,
            reader: None,
            skip_below: acked_below,
            expected: None,
            damage_pending: false,
        },
        Probe { shared },
    ))
}

impl Shared {
    fn limits(&self) -> Limits {
        *lock(&self.limits)
    }
}

/// Sending half of a disk buffer.
pub(crate) struct Sender {
    shared: Arc<Shared>,
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.data.notify_one();
        }
    }
}

/// A sender that does not keep the buffer open.
#[derive(Clone)]
pub(crate) struct WeakSender {
    shared: Weak<Shared>,
}

impl WeakSender {
    pub(crate) fn upgrade(&self) -> Option<Sender> {
        let shared = self.shared.upgrade()?;
        let mut n = shared.senders.load(Ordering::Acquire);
        loop {
            if n == 0 || shared.closed.load(Ordering::Acquire) {
                return None;
            }
            match shared
                .senders
                .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Sender { shared }),
                Err(now) => n = now,
            }
        }
    }
}

impl Sender {
    pub(crate) fn downgrade(&self) -> WeakSender {
        WeakSender {
            shared: Arc::downgrade(&self.shared),
        }
    }
}

/// Receiving half: reads records back as events, in order.
pub(crate) struct Receiver {
    shared: Arc<Shared>,
    seq: u64,
    offset: u64,
    reader: Option<SegmentReader>,
    /// Ids settled before this process started (the ledger's prefix).
    skip_below: u64,
    /// The id the next record should have; a larger one means records were lost.
    expected: Option<u64>,
    /// Damage seen but not yet attributed to lost ids.
    damage_pending: bool,
}

/// Fill level and limits of a disk buffer.
#[derive(Clone)]
pub(crate) struct Probe {
    shared: Arc<Shared>,
}

impl Probe {
    pub(crate) fn len(&self) -> usize {
        self.shared.unacked_events.load(Ordering::Acquire) as usize
    }
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub(crate) fn capacity(&self) -> usize {
        self.shared.limits().max_events
    }
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
    /// A closed buffer (its sink ended for good) opened again for a new sink task. The
    /// new reader starts over from the oldest record not settled, so what the old task
    /// had in flight is read again rather than lost.
    pub(crate) fn reopen(&self) -> (Sender, Receiver) {
        let s = &self.shared;
        let skip_below = {
            let mut acks = lock(&s.acks);
            acks.redeliver.clear();
            acks.tracker.acked_below()
        };
        let first = lock(&s.segments)
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| lock(&s.committed).seq);
        s.reader_seq.store(first, Ordering::Release);
        s.senders.fetch_add(1, Ordering::AcqRel);
        s.closed.store(false, Ordering::Release);
        (
            Sender {
                shared: Arc::clone(s),
            },
            Receiver {
                shared: Arc::clone(s),
                seq: first,
                offset: 0,
                reader: None,
                skip_below,
                expected: None,
                damage_pending: false,
            },
        )
    }

    /// New bounds, `when_full` and sync policy take effect at once.
    pub(crate) fn reconfigure(&self, limits: &Limits) {
        *lock(&self.shared.limits) = *limits;
        self.shared.space.notify_waiters();
        self.shared.flush.notify_one();
    }
}
