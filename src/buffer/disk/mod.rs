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

mod acks;
pub mod codec;
pub mod segment;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use self::acks::AckTracker;
use self::segment::{SegmentReader, Step};
use super::{Closed, Limits};
use crate::buffer::WhenFull;
use crate::event::{BatchAck, EventAck, EventBatch, EventStatus, settle_all};
use crate::telemetry::{ComponentMetrics, LabeledCounter};

/// Records read per batch handed to the sink. A batch is settled as a whole, so this
/// also bounds how many delivered records a crash can repeat per batch in flight.
const READ_BATCH: usize = 250;
const READ_BATCH_BYTES: usize = 4 << 20;
/// How often the ledger is written and finished segments are removed.
const HOUSEKEEPING: Duration = Duration::from_millis(25);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone, Copy)]
struct SegmentMeta {
    /// Highest record id in it; `None` while it is being written or if it holds none.
    last_id: Option<u64>,
    sealed: bool,
    damaged: bool,
}

struct Writer {
    file: File,
    seq: u64,
    len: u64,
    next_id: u64,
    /// Bumped per write; the flusher makes writes durable up to a sequence.
    write_seq: u64,
    /// Handles of finished segments not yet fsynced.
    unsynced: Vec<File>,
    active_unsynced: bool,
    dir_unsynced: bool,
    /// Reused encoding buffer.
    scratch: Vec<u8>,
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
pub fn open(
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

    let acked_below = read_ledger(&dir);
    let seqs = segment::list(&dir).map_err(io_err(&dir))?;
    let mut segments = BTreeMap::new();
    let (mut max_id, mut first_unacked) = (None::<u64>, None::<u64>);
    let (mut events, mut bytes) = (0u64, 0u64);
    for &seq in &seqs {
        let path = segment::path(&dir, seq);
        let mut reader = SegmentReader::open(&path).map_err(io_err(&path))?;
        let mut meta = SegmentMeta {
            last_id: None,
            sealed: true,
            damaged: false,
        };
        let mut at = 0;
        loop {
            match reader.step(at, u64::MAX).map_err(io_err(&path))? {
                Step::Record { id, payload, end } => {
                    at = end;
                    meta.last_id = Some(meta.last_id.map_or(id, |l| l.max(id)));
                    max_id = Some(max_id.map_or(id, |m| m.max(id)));
                    if id >= acked_below {
                        first_unacked = Some(first_unacked.map_or(id, |f| f.min(id)));
                        events += 1;
                        bytes += payload.len() as u64;
                    }
                }
                Step::Damaged { resume } => {
                    meta.damaged = true;
                    match resume {
                        Some(next) => at = next,
                        None => break,
                    }
                }
                Step::End => break,
            }
        }
        segments.insert(seq, meta);
    }
    let next_id = max_id.map_or(acked_below, |m| (m + 1).max(acked_below));
    let active = seqs.last().map_or(1, |s| s + 1);
    let active_path = segment::path(&dir, active);
    let file = create_segment(&active_path).map_err(io_err(&active_path))?;
    segments.insert(
        active,
        SegmentMeta {
            last_id: None,
            sealed: false,
            damaged: false,
        },
    );
    let first_seq = seqs.first().copied().unwrap_or(active);
    if events > 0 {
        tracing::info!(component_id = %id, events, bytes, segments = seqs.len(), "disk buffer: replaying undelivered events");
    }

    let flush = Arc::new(Notify::new());
    let shared = Arc::new(Shared {
        id: id.to_owned(),
        damaged: metrics.counter(
            "sluice_buffer_damaged_records_total",
            "Records of a disk buffer lost to damage (bad checksum, torn write) and skipped.",
            &[],
        ),
        metrics,
        _lock: lock_file,
        limits: Mutex::new(*limits),
        segment_bytes: segment_bytes(limits),
        writer: Mutex::new(Writer {
            file,
            seq: active,
            len: 0,
            next_id,
            write_seq: 0,
            unsynced: Vec::new(),
            active_unsynced: false,
            dir_unsynced: true,
            scratch: Vec::new(),
        }),
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
    tokio::spawn(flusher(Arc::downgrade(&shared), flush));
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

/// Segments are a fraction of the byte bound, so finished ones can be deleted well
/// before the bound is reached.
fn segment_bytes(limits: &Limits) -> u64 {
    let max = limits
        .max_bytes
        .unwrap_or(crate::buffer::DEFAULT_DISK_BUFFER_BYTES);
    (max / 8).clamp(64 << 10, 16 << 20)
}

fn create_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Ledger {
    acked_below: u64,
}

fn read_ledger(dir: &Path) -> u64 {
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

fn write_ledger(dir: &Path, acked_below: u64) -> io::Result<()> {
    let tmp = dir.join("ledger.json.tmp");
    let bytes = serde_json::to_vec(&Ledger { acked_below }).map_err(io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, dir.join("ledger.json"))
}

impl Shared {
    fn limits(&self) -> Limits {
        *lock(&self.limits)
    }

    fn has_room(&self, events: u64, bytes: u64) -> bool {
        let limits = self.limits();
        let held_events = self.unacked_events.load(Ordering::Acquire);
        if held_events == 0 {
            // An empty buffer takes any batch, however large, so nothing waits forever.
            return true;
        }
        let max_events = limits.max_events as u64;
        let max_bytes = limits
            .max_bytes
            .unwrap_or(crate::buffer::DEFAULT_DISK_BUFFER_BYTES);
        held_events + events <= max_events
            && self.unacked_bytes.load(Ordering::Acquire) + bytes <= max_bytes
    }

    /// Appends the encoded records; returns the write's sequence number.
    fn append(&self, payloads: &[Vec<u8>]) -> io::Result<u64> {
        let mut w = lock(&self.writer);
        if w.len >= self.segment_bytes {
            self.roll(&mut w)?;
        }
        let mut buf = std::mem::take(&mut w.scratch);
        buf.clear();
        let first = w.next_id;
        for (i, p) in payloads.iter().enumerate() {
            segment::frame(first + i as u64, p, &mut buf);
        }
        let result = w.file.write_all(&buf);
        let written = buf.len() as u64;
        w.scratch = buf;
        if let Err(e) = result {
            // Part of the batch may be in the file: start a new segment so the torn
            // tail stays at the end of a finished one, where readers skip it.
            let _ = self.roll(&mut w);
            return Err(e);
        }
        w.len += written;
        w.next_id += payloads.len() as u64;
        w.write_seq += 1;
        w.active_unsynced = true;
        *lock(&self.committed) = Committed {
            seq: w.seq,
            len: w.len,
        };
        Ok(w.write_seq)
    }

    fn roll(&self, w: &mut Writer) -> io::Result<()> {
        let seq = w.seq + 1;
        let path = segment::path(&self.dir, seq);
        let file = create_segment(&path)?;
        let old = std::mem::replace(&mut w.file, file);
        if w.active_unsynced {
            w.unsynced.push(old);
        }
        let last_id = w.next_id.checked_sub(1);
        {
            let mut segments = lock(&self.segments);
            if let Some(meta) = segments.get_mut(&w.seq) {
                meta.sealed = true;
                meta.last_id = last_id.filter(|_| w.len > 0);
            }
            segments.insert(
                seq,
                SegmentMeta {
                    last_id: None,
                    sealed: false,
                    damaged: false,
                },
            );
        }
        w.seq = seq;
        w.len = 0;
        w.active_unsynced = false;
        w.dir_unsynced = true;
        *lock(&self.committed) = Committed { seq, len: 0 };
        Ok(())
    }

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

    /// Records of `span` are done (delivered or rejected) or must be read again.
    fn settle(&self, span: Span, status: EventStatus) {
        if status == EventStatus::Errored {
            lock(&self.acks).redeliver.push_back(span);
            self.data.notify_one();
            return;
        }
        lock(&self.acks).tracker.settle(span.first_id, span.end_id);
        self.release(span.events, span.bytes);
    }

    fn release(&self, events: u64, bytes: u64) {
        self.unacked_events.fetch_sub(events, Ordering::AcqRel);
        self.unacked_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.space.notify_waiters();
    }

    /// Ids that will never be read (lost to damage): settled so they hold nothing back.
    fn skip_ids(&self, start: u64, end: u64) {
        lock(&self.acks).tracker.settle(start, end);
    }

    /// Writes the ledger and removes segments whose records are all done.
    fn housekeep(&self) {
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
async fn flusher(shared: Weak<Shared>, wake: Arc<Notify>) {
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

/// Sending half of a disk buffer.
pub struct Sender {
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
pub struct WeakSender {
    shared: Weak<Shared>,
}

impl WeakSender {
    pub fn upgrade(&self) -> Option<Sender> {
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
    pub fn downgrade(&self) -> WeakSender {
        WeakSender {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Writes `batch`; its events are acknowledged to their sources once durable.
    pub async fn send(&self, mut batch: EventBatch) -> Result<(), Closed> {
        let s = &*self.shared;
        let mut payloads = Vec::with_capacity(batch.len());
        let mut too_big = Vec::new();
        for event in batch.drain(..) {
            let mut bytes = Vec::new();
            codec::encode(&event, &mut bytes);
            if bytes.len() > segment::MAX_PAYLOAD {
                too_big.push(event);
            } else {
                payloads.push((bytes, event));
            }
        }
        if !too_big.is_empty() {
            tracing::error!(component_id = %s.id, events = too_big.len(), limit = segment::MAX_PAYLOAD, "events too large for the disk buffer; rejected");
            s.metrics.add_errors(too_big.len());
            settle_all(too_big, EventStatus::Rejected);
        }
        if payloads.is_empty() {
            return Ok(());
        }
        let events = payloads.len() as u64;
        let bytes: u64 = payloads.iter().map(|(p, _)| p.len() as u64).sum();
        loop {
            let space = s.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            if s.closed.load(Ordering::Acquire) {
                return Err(Closed(payloads.into_iter().map(|(_, e)| e).collect()));
            }
            if s.has_room(events, bytes) {
                break;
            }
            if s.limits().when_full == WhenFull::DropNewest {
                s.metrics.add_discarded(payloads.len());
                settle_all(
                    payloads.into_iter().map(|(_, e)| e).collect(),
                    EventStatus::Delivered,
                );
                return Ok(());
            }
            space.await;
        }
        let (encoded, mut events_back): (Vec<Vec<u8>>, Vec<_>) = payloads.into_iter().unzip();
        // Counted before the write so a fast reader never settles more than is held.
        s.unacked_events.fetch_add(events, Ordering::AcqRel);
        s.unacked_bytes.fetch_add(bytes, Ordering::AcqRel);
        match s.append(&encoded) {
            Ok(write_seq) => {
                let acks: Vec<EventAck> =
                    events_back.iter_mut().map(|e| e.meta.ack.take()).collect();
                drop(events_back);
                lock(&s.pending).push_back((write_seq, acks));
                s.data.notify_one();
                s.flush.notify_one();
                Ok(())
            }
            Err(e) => {
                s.release(events, bytes);
                tracing::error!(component_id = %s.id, error = %e, events, "disk buffer: write failed; events reported as failed");
                s.metrics.add_errors(events_back.len());
                settle_all(events_back, EventStatus::Errored);
                Ok(())
            }
        }
    }
}

/// Receiving half: reads records back as events, in order.
pub struct Receiver {
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

impl Receiver {
    /// The next batch; `None` once every sender is gone and everything written was read.
    pub async fn recv(&mut self) -> Option<EventBatch> {
        let shared = Arc::clone(&self.shared);
        loop {
            let data = shared.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            if let Some(batch) = self.try_recv() {
                return Some(batch);
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 && self.caught_up() {
                return None;
            }
            data.await;
        }
    }

    fn caught_up(&self) -> bool {
        let c = *lock(&self.shared.committed);
        self.seq == c.seq && self.offset >= c.len
    }

    /// Refuses further writes. What is on disk stays there for the next reader.
    pub fn close(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.space.notify_waiters();
    }

    /// A batch that can be read now, without waiting.
    pub fn try_recv(&mut self) -> Option<EventBatch> {
        loop {
            let span = lock(&self.shared.acks).redeliver.pop_front();
            let result = match span {
                Some(span) => self.read_span(span),
                None => self.read_next(),
            };
            match result {
                Ok(Some(batch)) => return Some(batch),
                // A redelivery with nothing left to read; look again.
                Ok(None) if span.is_some() => continue,
                Ok(None) => return None,
                Err(e) => {
                    // An unreadable segment (permissions, an I/O error): skip it rather
                    // than stop the sink; its records stay on disk.
                    tracing::error!(component_id = %self.shared.id, segment = self.seq, error = %e, "disk buffer: cannot read a segment; skipping it");
                    if span.is_none() {
                        if self.seq == lock(&self.shared.committed).seq {
                            return None;
                        }
                        self.next_segment();
                    }
                }
            }
        }
    }

    fn next_segment(&mut self) {
        let committed = lock(&self.shared.committed).seq;
        self.seq = lock(&self.shared.segments)
            .range(self.seq + 1..)
            .next()
            .map_or(committed, |(s, _)| *s);
        self.offset = 0;
        self.reader = None;
        self.shared.reader_seq.store(self.seq, Ordering::Release);
    }

    fn note_damage(&mut self) {
        self.damage_pending = true;
        if let Some(meta) = lock(&self.shared.segments).get_mut(&self.seq) {
            meta.damaged = true;
        }
    }

    fn read_next(&mut self) -> io::Result<Option<EventBatch>> {
        let mut events = Vec::new();
        let mut span: Option<Span> = None;
        let mut bytes_read = 0usize;
        loop {
            let committed = *lock(&self.shared.committed);
            let limit = if self.seq == committed.seq {
                committed.len
            } else {
                u64::MAX
            };
            if self.reader.is_none() {
                match SegmentReader::open(&segment::path(&self.shared.dir, self.seq)) {
                    Ok(r) => self.reader = Some(r),
                    Err(e) if e.kind() == io::ErrorKind::NotFound && self.seq < committed.seq => {
                        self.next_segment();
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            let step = reader.step(self.offset, limit)?;
            match step {
                Step::Record { id, payload, end } => {
                    let start = self.offset;
                    self.offset = end;
                    if id < self.skip_below {
                        continue;
                    }
                    if let Some(expected) = self.expected {
                        if id < expected {
                            continue;
                        }
                        if id > expected {
                            let lost = id - expected;
                            self.shared.skip_ids(expected, id);
                            self.report_lost(lost);
                        }
                    }
                    if self.damage_pending {
                        // Damage that lost no id (garbage between records) still counts.
                        self.report_lost(1);
                    }
                    self.expected = Some(id + 1);
                    let len = payload.len() as u64;
                    match codec::decode(&payload) {
                        Ok(event) => {
                            let sp = span.get_or_insert(Span {
                                seq: self.seq,
                                offset: start,
                                end,
                                first_id: id,
                                end_id: id + 1,
                                events: 0,
                                bytes: 0,
                            });
                            sp.end = end;
                            sp.end_id = id + 1;
                            sp.events += 1;
                            sp.bytes += len;
                            bytes_read += payload.len();
                            events.push(event);
                        }
                        Err(e) => {
                            tracing::warn!(component_id = %self.shared.id, segment = self.seq, offset = start, record = id, error = %e, "disk buffer: undecodable record skipped");
                            self.note_damage();
                            self.damage_pending = false;
                            self.shared.damaged.add(1);
                            if span.is_some() {
                                // Keep spans contiguous in ids: deliver what we have.
                                self.shared.skip_ids(id, id + 1);
                                self.shared.release(1, len);
                                break;
                            }
                            self.shared.skip_ids(id, id + 1);
                            self.shared.release(1, len);
                        }
                    }
                    if events.len() >= READ_BATCH || bytes_read >= READ_BATCH_BYTES {
                        break;
                    }
                }
                Step::Damaged { resume } => {
                    tracing::warn!(component_id = %self.shared.id, segment = self.seq, offset = self.offset, "disk buffer: damaged bytes skipped; the segment will be quarantined");
                    self.note_damage();
                    self.offset = resume.unwrap_or(limit);
                    if span.is_some() {
                        // A span covers contiguous bytes, so it can be read again.
                        break;
                    }
                }
                Step::End => {
                    if self.seq < committed.seq {
                        if span.is_some() {
                            break;
                        }
                        self.next_segment();
                        continue;
                    }
                    if self.damage_pending {
                        // Damage with no record after it to show what it cost.
                        self.report_lost(1);
                    }
                    break;
                }
            }
        }
        Ok(span.map(|span| self.hand_out(events, span)))
    }

    fn report_lost(&mut self, n: u64) {
        self.damage_pending = false;
        self.shared.damaged.add(n);
        tracing::warn!(component_id = %self.shared.id, records = n, "disk buffer: records lost to damage");
    }

    /// Reads a span again (its events were lost downstream by accident).
    fn read_span(&mut self, span: Span) -> io::Result<Option<EventBatch>> {
        let mut reader = SegmentReader::open(&segment::path(&self.shared.dir, span.seq))?;
        let mut events = Vec::new();
        let mut at = span.offset;
        while at < span.end {
            match reader.step(at, span.end)? {
                Step::Record { id, payload, end } => {
                    at = end;
                    if (span.first_id..span.end_id).contains(&id)
                        && let Ok(event) = codec::decode(&payload)
                    {
                        events.push(event);
                    }
                }
                Step::Damaged { resume: Some(next) } => at = next,
                Step::Damaged { resume: None } | Step::End => break,
            }
        }
        if events.is_empty() {
            self.shared.settle(span, EventStatus::Delivered);
            return Ok(None);
        }
        Ok(Some(self.hand_out(events, span)))
    }

    /// Gives the events acknowledgements that settle `span` when the sink is done.
    fn hand_out(&self, mut events: EventBatch, span: Span) -> EventBatch {
        let (ack, done) = BatchAck::with_receiver(events.len(), None);
        for event in &mut events {
            event.meta.ack = ack.event_ack();
        }
        drop(ack);
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let status = done.wait().await;
            shared.settle(span, status);
        });
        events
    }
}

/// Fill level and limits of a disk buffer.
#[derive(Clone)]
pub struct Probe {
    shared: Arc<Shared>,
}

impl Probe {
    pub fn len(&self) -> usize {
        self.shared.unacked_events.load(Ordering::Acquire) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn capacity(&self) -> usize {
        self.shared.limits().max_events
    }
    pub fn bytes(&self) -> u64 {
        self.shared.unacked_bytes.load(Ordering::Acquire)
    }
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
    /// A closed buffer (its sink ended for good) opened again for a new sink task. The
    /// new reader starts over from the oldest record not settled, so what the old task
    /// had in flight is read again rather than lost.
    pub fn reopen(&self) -> (Sender, Receiver) {
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
    pub fn reconfigure(&self, limits: &Limits) {
        *lock(&self.shared.limits) = *limits;
        self.shared.space.notify_waiters();
        self.shared.flush.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::telemetry::{ComponentKind, Telemetry};
    use chrono::Utc;
    use vrl::value::Value;

    fn metrics() -> Arc<ComponentMetrics> {
        Telemetry::new().component("out", ComponentKind::Sink, "http")
    }

    fn limits() -> Limits {
        Limits {
            max_events: usize::MAX,
            max_bytes: Some(1 << 20),
            when_full: WhenFull::Block,
            sync_every: None,
        }
    }

    /// `n` events numbered from `from`, and the receiver of their acknowledgement.
    fn numbered(from: i64, n: i64) -> (EventBatch, crate::event::BatchReceiver) {
        let (ack, done) = BatchAck::with_receiver(n as usize, None);
        let src: Arc<str> = Arc::from("hook");
        let batch = (from..from + n)
            .map(|i| {
                let mut e = Event::new(
                    Value::Object(Default::default()),
                    Arc::clone(&src),
                    Utc::now(),
                );
                e.insert("n", i);
                e.insert("pad", "x".repeat(200));
                e.with_ack(ack.event_ack())
            })
            .collect();
        (batch, done)
    }

    fn numbers(batch: &EventBatch) -> Vec<i64> {
        batch
            .iter()
            .map(|e| match e.get("n") {
                Some(Value::Integer(i)) => *i,
                other => panic!("no number: {other:?}"),
            })
            .collect()
    }

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..2000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn acknowledges_once_durable_and_replays_only_what_was_not_settled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, mut rx, probe) = open(dir.path(), "out", &limits(), metrics()).expect("open");
        let (a, a_done) = numbered(0, 10);
        tx.send(a).await.expect("written");
        assert_eq!(
            a_done.wait().await,
            EventStatus::Delivered,
            "acknowledged once on disk"
        );
        let got = rx.recv().await.expect("batch");
        assert_eq!(numbers(&got), (0..10).collect::<Vec<_>>());
        settle_all(got, EventStatus::Delivered);
        until("the first batch is settled", || probe.is_empty()).await;

        let (b, b_done) = numbered(10, 10);
        tx.send(b).await.expect("written");
        assert_eq!(b_done.wait().await, EventStatus::Delivered);
        let in_flight = rx.recv().await.expect("batch");
        assert_eq!(in_flight.len(), 10);
        // The sink stops with the second batch in flight: it is not settled as done.
        drop(in_flight);
        drop((tx, rx, probe));
        until("the buffer is closed", || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("buffers/out/lock"))
                .is_ok_and(|f| f.try_lock().is_ok())
        })
        .await;

        let (_tx, mut rx, probe) = open(dir.path(), "out", &limits(), metrics()).expect("reopen");
        assert_eq!(probe.len(), 10, "only the unsettled batch is left");
        let replayed = rx.recv().await.expect("replayed");
        assert_eq!(numbers(&replayed), (10..20).collect::<Vec<_>>());
        assert_eq!(&*replayed[0].meta.source_id, "hook");
    }

    #[tokio::test]
    async fn events_lost_downstream_by_accident_are_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, mut rx, _probe) = open(dir.path(), "out", &limits(), metrics()).expect("open");
        let (a, _) = numbered(0, 5);
        tx.send(a).await.expect("written");
        let got = rx.recv().await.expect("batch");
        settle_all(got, EventStatus::Errored);
        let again = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("read again")
            .expect("batch");
        assert_eq!(numbers(&again), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn finished_segments_are_deleted_once_every_record_is_settled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = Limits {
            max_bytes: Some(512 << 10),
            ..limits()
        };
        let (tx, mut rx, probe) = open(dir.path(), "out", &small, metrics()).expect("open");
        let buffer_dir = dir.path().join("buffers/out");
        for i in 0..100 {
            let (b, _) = numbered(i * 10, 10);
            tx.send(b).await.expect("written");
        }
        assert!(
            segment::list(&buffer_dir).expect("list").len() > 3,
            "several 64 KiB segments"
        );
        let mut seen = Vec::new();
        while seen.len() < 1000 {
            let b = rx.recv().await.expect("batch");
            seen.extend(numbers(&b));
            settle_all(b, EventStatus::Delivered);
        }
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert!(rx.try_recv().is_none(), "all read");
        until("finished segments are removed", || {
            probe.is_empty() && segment::list(&buffer_dir).map(|l| l.len()).unwrap_or(0) == 1
        })
        .await;
        let ledger: serde_json::Value =
            serde_json::from_slice(&std::fs::read(buffer_dir.join("ledger.json")).expect("ledger"))
                .expect("json");
        assert_eq!(ledger["acked_below"], 1000);
    }

    #[tokio::test]
    async fn a_full_buffer_holds_senders_until_records_are_settled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let few = Limits {
            max_events: 10,
            ..limits()
        };
        let (tx, mut rx, _probe) = open(dir.path(), "out", &few, metrics()).expect("open");
        let (a, _) = numbered(0, 10);
        tx.send(a).await.expect("written");
        let blocked = tokio::spawn({
            let tx = tx.clone();
            async move {
                let (b, _) = numbered(10, 1);
                tx.send(b).await.is_ok()
            }
        });
        let got = rx.recv().await.expect("batch");
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!blocked.is_finished(), "read but not settled: still held");
        settle_all(got, EventStatus::Delivered);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), blocked)
                .await
                .expect("room")
                .expect("joined")
        );
    }

    #[tokio::test]
    async fn a_damaged_record_is_skipped_counted_and_its_segment_quarantined() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = metrics();
        {
            let (tx, _rx, _p) = open(dir.path(), "out", &limits(), Arc::clone(&m)).expect("open");
            for i in 0..3 {
                let (b, _) = numbered(i, 1);
                tx.send(b).await.expect("written");
            }
        }
        let buffer_dir = dir.path().join("buffers/out");
        let seg = segment::path(&buffer_dir, 1);
        let mut bytes = std::fs::read(&seg).expect("segment");
        let second = memchr::memmem::find_iter(&bytes, &segment::MAGIC)
            .nth(1)
            .expect("a second record");
        bytes[second + segment::HEADER + 30] ^= 0xff;
        std::fs::write(&seg, &bytes).expect("damage it");

        let (_tx, mut rx, probe) =
            open(dir.path(), "out", &limits(), Arc::clone(&m)).expect("starts");
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let b = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("intact records")
                .expect("batch");
            seen.extend(numbers(&b));
            settle_all(b, EventStatus::Delivered);
        }
        assert_eq!(seen, vec![0, 2]);
        assert!(rx.try_recv().is_none(), "nothing else is intact");
        let damaged = m
            .labeled_counters()
            .into_iter()
            .find(|c| c.name == "sluice_buffer_damaged_records_total")
            .map(|c| c.get());
        assert_eq!(damaged, Some(1));
        until("the damaged segment is quarantined", || {
            probe.is_empty()
                && buffer_dir
                    .join("quarantine")
                    .join(format!("{:020}.seg", 1))
                    .exists()
        })
        .await;
    }
}
