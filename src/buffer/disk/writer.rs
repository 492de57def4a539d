//! The write path: a sender encodes its batch, waits for room (or drops it, with
//! `when_full: drop_newest`) and appends it to the active segment under the writer lock,
//! rolling to a new segment once the active one is full. The acknowledgements wait in
//! `pending` until the flusher has made the write durable.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use super::{Committed, SegmentMeta, Sender, Shared, codec, lock, segment};
use crate::buffer::{Closed, Limits, WhenFull};
use crate::event::{EventAck, EventBatch, EventStatus, settle_all};
use crate::telemetry::{ErrorType, Stage};

pub(super) struct Writer {
    pub(super) file: File,
    seq: u64,
    len: u64,
    next_id: u64,
    /// Bumped per write; the flusher makes writes durable up to a sequence.
    pub(super) write_seq: u64,
    /// Handles of finished segments not yet fsynced.
    pub(super) unsynced: Vec<File>,
    pub(super) active_unsynced: bool,
    pub(super) dir_unsynced: bool,
    /// Reused encoding buffer.
    scratch: Vec<u8>,
}

/// Segments are a fraction of the byte bound, so finished ones can be deleted well
/// before the bound is reached.
pub(super) fn segment_bytes(limits: &Limits) -> u64 {
    let max = limits
        .max_bytes
        .unwrap_or(crate::buffer::DEFAULT_DISK_BUFFER_BYTES);
    (max / 8).clamp(64 << 10, 16 << 20)
}

pub(super) fn create_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
}

impl Writer {
    /// The writer of a fresh active segment `seq`, whose first record gets `next_id`.
    pub(super) fn new(file: File, seq: u64, next_id: u64) -> Self {
        Self {
            file,
            seq,
            len: 0,
            next_id,
            write_seq: 0,
            unsynced: Vec::new(),
            active_unsynced: false,
            dir_unsynced: true,
            scratch: Vec::new(),
        }
    }
}

impl Shared {
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
}

impl Sender {
    /// Writes `batch`; its events are acknowledged to their sources once durable.
    pub(crate) async fn send(&self, mut batch: EventBatch) -> Result<(), Closed> {
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
            s.metrics
                .add_errors(too_big.len(), ErrorType::Writer, Stage::Receiving);
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
                s.metrics.add_discarded_unintended(payloads.len());
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
                s.metrics
                    .add_errors(events_back.len(), ErrorType::Writer, Stage::Receiving);
                settle_all(events_back, EventStatus::Errored);
                Ok(())
            }
        }
    }
}
