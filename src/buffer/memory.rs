//! The in-memory buffer in front of every transform and sink (unless a sink has a disk
//! buffer).
//!
//! Tokio's bounded `mpsc` counts messages, but our messages are batches of any size; the
//! bound users configure is in events. So the queue itself is unbounded and a semaphore
//! with one permit per event does the bounding: a sender waits for as many permits as its
//! batch has events (batches larger than the bound are split), and the receiver returns
//! them when it takes the batch. Waiting for permits is how backpressure travels upstream.
//! An optional second semaphore bounds the estimated bytes the same way (`max_bytes`),
//! and every queued batch is charged to the global [`MemoryBudget`] when there is one.
//!
//! Invariants: at most `capacity` events are queued at any time (a shrink takes effect as
//! queued events leave); dropping the receiver closes the semaphore so blocked senders
//! wake up and get their batch back. Only strong [`BufferSender`]s keep the buffer open:
//! the topology keeps a [`WeakBufferSender`] per component so that wiring never prevents
//! a buffer from closing when its last producer ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};

use super::WhenFull;
use super::budget::{Charge, MemoryBudget, batch_size};
use super::{Closed, Limits};
use crate::event::{EventBatch, EventStatus, settle_all};
use crate::telemetry::ComponentMetrics;

struct Item {
    batch: EventBatch,
    _permits: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
    _charge: Option<Charge>,
}

/// What every handle of one buffer shares besides the queue.
struct Bounds {
    permits: Arc<Semaphore>,
    capacity: AtomicUsize,
    resized: Notify,
    /// `max_bytes`, as permits of one byte each (fixed for the buffer's life).
    bytes: Option<(Arc<Semaphore>, usize)>,
    budget: Option<Arc<MemoryBudget>>,
    when_full: WhenFull,
    /// The consumer's counters, for events dropped by `drop_newest`.
    metrics: Option<Arc<ComponentMetrics>>,
}

/// Sending half; cloned once per upstream output that feeds this component.
#[derive(Clone)]
pub(crate) struct Sender {
    tx: mpsc::UnboundedSender<Item>,
    bounds: Arc<Bounds>,
}

/// A sender that does not keep the buffer open.
#[derive(Clone)]
pub(crate) struct WeakSender {
    tx: mpsc::WeakUnboundedSender<Item>,
    bounds: Arc<Bounds>,
}

impl WeakSender {
    /// A strong sender, unless the buffer is already closed.
    pub(crate) fn upgrade(&self) -> Option<Sender> {
        self.tx.upgrade().map(|tx| Sender {
            tx,
            bounds: Arc::clone(&self.bounds),
        })
    }
}

/// Receiving half, owned by the component's task.
pub(crate) struct Receiver {
    rx: mpsc::UnboundedReceiver<Item>,
    bounds: Arc<Bounds>,
}

/// View of a buffer's fill level for telemetry, and the handle to resize it.
#[derive(Clone)]
pub(crate) struct Probe {
    bounds: Arc<Bounds>,
}

impl Probe {
    pub(crate) fn len(&self) -> usize {
        self.capacity()
            .saturating_sub(self.bounds.permits.available_permits())
    }
    pub(crate) fn capacity(&self) -> usize {
        self.bounds.capacity.load(Ordering::Acquire)
    }

    /// Whether the buffer refuses batches (its component ended for good).
    pub(crate) fn is_closed(&self) -> bool {
        self.bounds.permits.is_closed()
    }

    /// Changes the bound. Growing frees permits at once; shrinking retires permits as
    /// queued events leave, without dropping anything already queued.
    pub(crate) fn resize(&self, capacity: usize) {
        let capacity = clamp_capacity(capacity);
        let old = self.bounds.capacity.swap(capacity, Ordering::AcqRel);
        if capacity > old {
            self.bounds.permits.add_permits(capacity - old);
        } else if capacity < old {
            let retire = (old - capacity) as u32;
            let permits = Arc::clone(&self.bounds.permits);
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(retire).await {
                    p.forget();
                }
            });
        }
        // Senders waiting for permits counted at the old size split their batch again,
        // so none waits for more permits than will ever exist.
        self.bounds.resized.notify_waiters();
    }
}

fn clamp_capacity(capacity: usize) -> usize {
    capacity.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize))
}

/// A buffer bounded by `limits` (at least 1 event), charging `budget` if given.
pub(crate) fn channel(
    limits: &Limits,
    budget: Option<Arc<MemoryBudget>>,
    metrics: Option<Arc<ComponentMetrics>>,
) -> (Sender, Receiver, Probe) {
    let size = clamp_capacity(limits.max_events);
    let (tx, rx) = mpsc::unbounded_channel();
    let bounds = Arc::new(Bounds {
        permits: Arc::new(Semaphore::new(size)),
        capacity: AtomicUsize::new(size),
        resized: Notify::new(),
        bytes: limits.max_bytes.map(|b| {
            let b = clamp_capacity(usize::try_from(b).unwrap_or(usize::MAX));
            (Arc::new(Semaphore::new(b)), b)
        }),
        budget,
        when_full: limits.when_full,
        metrics,
    });
    (
        Sender {
            tx,
            bounds: Arc::clone(&bounds),
        },
        Receiver {
            rx,
            bounds: Arc::clone(&bounds),
        },
        Probe { bounds },
    )
}

impl Sender {
    pub(crate) fn downgrade(&self) -> WeakSender {
        WeakSender {
            tx: self.tx.downgrade(),
            bounds: Arc::clone(&self.bounds),
        }
    }

    /// Queues `batch`, waiting while the buffer is full (or dropping what does not fit,
    /// with `when_full: drop_newest`). Batches larger than the bound go in pieces; on
    /// `Err` the unsent events come back.
    pub(crate) async fn send(&self, mut batch: EventBatch) -> Result<(), Closed> {
        let b = &*self.bounds;
        while !batch.is_empty() {
            let capacity = b.capacity.load(Ordering::Acquire);
            let rest = if batch.len() > capacity {
                batch.split_off(capacity)
            } else {
                Vec::new()
            };
            let size = (b.bytes.is_some() || b.budget.is_some()).then(|| batch_size(&batch));
            let resized = b.resized.notified();
            tokio::pin!(resized);
            resized.as_mut().enable();
            if b.capacity.load(Ordering::Acquire) != capacity {
                batch.extend(rest);
                continue;
            }
            // Fits in u32: capacity is clamped to u32::MAX and the batch to capacity.
            let n = batch.len() as u32;
            let acquired = if b.when_full == WhenFull::DropNewest {
                match self.try_acquire(n, size) {
                    Ok(p) => Ok(p),
                    Err(TryAcquireError::Closed) => Err(()),
                    Err(TryAcquireError::NoPermits) => {
                        if let Some(m) = &b.metrics {
                            m.add_discarded_unintended(batch.len());
                        }
                        // Dropped on purpose, like a filter would: the source is not asked
                        // to send them again.
                        settle_all(batch, EventStatus::Delivered);
                        batch = rest;
                        continue;
                    }
                }
            } else {
                // A resize wins over permits granted in the same instant: the new bound
                // applies, and dropping the granted acquire returns its permits.
                tokio::select! {
                    biased;
                    () = &mut resized => {
                        batch.extend(rest);
                        continue;
                    }
                    p = self.acquire(n, size) => p,
                }
            };
            let Ok((permits, bytes)) = acquired else {
                batch.extend(rest);
                return Err(Closed(batch));
            };
            let charge = b
                .budget
                .as_ref()
                .zip(size)
                .map(|(budget, size)| budget.charge(size));
            let item = Item {
                batch,
                _permits: permits,
                _bytes: bytes,
                _charge: charge,
            };
            if let Err(mpsc::error::SendError(item)) = self.tx.send(item) {
                let mut unsent = item.batch;
                unsent.extend(rest);
                return Err(Closed(unsent));
            }
            batch = rest;
        }
        Ok(())
    }

    /// Bytes permits for a batch of `size`: never more than the bound, so one large
    /// batch still fits an empty buffer.
    fn byte_permits(&self, size: Option<usize>) -> Option<(Arc<Semaphore>, u32)> {
        let (sem, max) = self.bounds.bytes.as_ref()?;
        let want = size.unwrap_or(0).min(*max).min(u32::MAX as usize) as u32;
        Some((Arc::clone(sem), want))
    }

    async fn acquire(
        &self,
        n: u32,
        size: Option<usize>,
    ) -> Result<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>), ()> {
        let permits = Arc::clone(&self.bounds.permits)
            .acquire_many_owned(n)
            .await
            .map_err(|_| ())?;
        let bytes = match self.byte_permits(size) {
            Some((sem, want)) => Some(sem.acquire_many_owned(want).await.map_err(|_| ())?),
            None => None,
        };
        Ok((permits, bytes))
    }

    fn try_acquire(
        &self,
        n: u32,
        size: Option<usize>,
    ) -> Result<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>), TryAcquireError> {
        let permits = Arc::clone(&self.bounds.permits).try_acquire_many_owned(n)?;
        let bytes = match self.byte_permits(size) {
            Some((sem, want)) => Some(sem.try_acquire_many_owned(want)?),
            None => None,
        };
        Ok((permits, bytes))
    }
}

impl Receiver {
    /// The next batch, or `None` once every sender is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<EventBatch> {
        self.rx.recv().await.map(|item| item.batch)
    }

    /// A queued batch, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<EventBatch> {
        self.rx.try_recv().ok().map(|item| item.batch)
    }

    /// Refuses further batches; blocked senders get theirs back. Queued ones can still
    /// be taken with `try_recv`.
    pub(crate) fn close(&mut self) {
        self.bounds.permits.close();
        if let Some((sem, _)) = &self.bounds.bytes {
            sem.close();
        }
        self.rx.close();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.bounds.permits.close();
        if let Some((sem, _)) = &self.bounds.bytes {
            sem.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use chrono::Utc;
    use std::time::Duration;

    fn buffer(n: usize) -> (Sender, Receiver, Probe) {
        channel(&Limits::events(n), None, None)
    }

    fn batch(n: usize) -> EventBatch {
        let src = crate::event::SourceId::intern("t");
        (0..n)
            .map(|i| Event::new((i as i64).into(), src, Utc::now()))
            .collect()
    }

    #[tokio::test]
    async fn blocks_when_full_and_splits_large_batches() {
        let (tx, mut rx, probe) = buffer(10);
        // 25 events > capacity: they go in chunks of at most 10 as the receiver drains.
        let sender = tokio::spawn(async move {
            tx.send(batch(25)).await.is_ok() && tx.send(batch(5)).await.is_ok()
        });
        let mut got = 0;
        while got < 30 {
            let b = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("batch arrives")
                .expect("open");
            assert!(b.len() <= 10);
            assert!(probe.len() <= 10);
            got += b.len();
        }
        assert_eq!(got, 30);
        assert!(sender.await.expect("joined"));
    }

    #[tokio::test]
    async fn a_sender_waiting_through_a_shrink_splits_its_batch_again() {
        let (tx, mut rx, probe) = buffer(10);
        tx.send(batch(10)).await.ok();
        let sender = tokio::spawn(async move { tx.send(batch(10)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        probe.resize(5);
        let first = rx.recv().await.expect("first batch");
        assert_eq!(first.len(), 10);
        let mut after = Vec::new();
        while after.iter().sum::<usize>() < 10 {
            let b = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("no sender is left waiting for permits that no longer exist")
                .expect("open");
            after.push(b.len());
        }
        assert!(
            after.iter().all(|n| *n <= 5),
            "pieces after the shrink: {after:?}"
        );
        assert!(sender.await.expect("joined"));
        assert_eq!(probe.capacity(), 5);
    }

    #[tokio::test]
    async fn dropped_receiver_returns_the_batch() {
        let (tx, rx, _) = buffer(2);
        tx.send(batch(2)).await.ok();
        let blocked = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(batch(1)).await }
        });
        tokio::task::yield_now().await;
        drop(rx);
        match blocked.await.expect("joined") {
            Err(Closed(b)) => assert_eq!(b.len(), 1),
            Ok(()) => panic!("send must fail after the receiver is dropped"),
        }
    }

    #[tokio::test]
    async fn max_bytes_bounds_the_queue_by_estimated_size() {
        let one = super::super::budget::event_size(&batch(1)[0]);
        let limits = Limits {
            max_bytes: Some(3 * one as u64),
            ..Limits::events(1000)
        };
        let (tx, mut rx, _) = channel(&limits, None, None);
        tx.send(batch(3)).await.ok();
        let blocked = tokio::spawn(async move { tx.send(batch(1)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !blocked.is_finished(),
            "three events' worth of bytes are queued"
        );
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(3));
        assert!(blocked.await.expect("joined"));
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(1));
    }

    #[tokio::test]
    async fn drop_newest_discards_and_settles_what_does_not_fit() {
        let limits = Limits {
            when_full: WhenFull::DropNewest,
            ..Limits::events(2)
        };
        let metrics = crate::telemetry::Telemetry::new().component(
            "s",
            crate::telemetry::ComponentKind::Sink,
            "t",
        );
        let (tx, mut rx, _) = channel(&limits, None, Some(Arc::clone(&metrics)));
        let (ack, done) = crate::event::BatchAck::with_receiver(3, None);
        let events: EventBatch = batch(3)
            .into_iter()
            .map(|e| e.with_ack(ack.event_ack()))
            .collect();
        drop(ack);
        tx.send(events).await.ok();
        // Two fit; the third is dropped at once instead of waiting.
        let queued = rx.recv().await.expect("queued");
        assert_eq!(queued.len(), 2);
        assert_eq!(
            metrics.discarded.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        settle_all(queued, EventStatus::Delivered);
        assert_eq!(done.wait().await, EventStatus::Delivered);
    }

    #[tokio::test]
    async fn queued_batches_are_charged_to_the_budget_until_taken() {
        let budget = MemoryBudget::new(1 << 30);
        let (tx, mut rx, _) = channel(&Limits::events(100), Some(Arc::clone(&budget)), None);
        tx.send(batch(10)).await.ok();
        let charged = budget.used();
        assert!(charged >= 10 * 200, "charged {charged}");
        let taken = rx.recv().await.expect("batch");
        assert_eq!(budget.used(), 0, "taking the batch releases its charge");
        drop(taken);
    }
}
