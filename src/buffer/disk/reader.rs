//! The read path: records come back in id order up to what the writer committed,
//! as events carrying new acknowledgements that settle their span when the sink is
//! done. Spans a sink lost by accident are read again first; damaged bytes and
//! undecodable records are skipped, counted and their segment marked for quarantine.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::segment::{self, SegmentReader, Step};
use super::{Receiver, Span, codec, lock};
use crate::event::{BatchAck, EventBatch, EventStatus};

/// Records read per batch handed to the sink. A batch is settled as a whole, so this
/// also bounds how many delivered records a crash can repeat per batch in flight.
const READ_BATCH: usize = 250;
const READ_BATCH_BYTES: usize = 4 << 20;

impl Receiver {
    /// The next batch; `None` once every sender is gone and everything written was read.
    pub(crate) async fn recv(&mut self) -> Option<EventBatch> {
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
    pub(crate) fn close(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.space.notify_waiters();
    }

    /// A batch that can be read now, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<EventBatch> {
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
