//! The bounded channel in front of every transform and sink.
//!
//! Tokio's bounded `mpsc` counts messages, but our messages are batches of any size; the
//! bound users configure is in events. So the queue itself is unbounded and a semaphore
//! with one permit per event does the bounding: a sender waits for as many permits as its
//! batch has events (batches larger than the bound are split), and the receiver returns
//! them when it takes the batch. Waiting for permits is how backpressure travels upstream.
//!
//! Invariants: at most `capacity` events are queued at any time (a shrink takes effect as
//! queued events leave); dropping the receiver closes the semaphore so blocked senders
//! wake up and get their batch back. Only strong [`BufferSender`]s keep the buffer open:
//! the topology keeps a [`WeakBufferSender`] per component so that wiring never prevents
//! a buffer from closing when its last producer ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use crate::event::EventBatch;

struct Item {
    batch: EventBatch,
    _permits: OwnedSemaphorePermit,
}

/// Sending half; cloned once per upstream output that feeds this component.
#[derive(Clone)]
pub struct BufferSender {
    tx: mpsc::UnboundedSender<Item>,
    permits: Arc<Semaphore>,
    capacity: Arc<AtomicUsize>,
    resized: Arc<Notify>,
}

/// A sender that does not keep the buffer open.
#[derive(Clone)]
pub struct WeakBufferSender {
    tx: mpsc::WeakUnboundedSender<Item>,
    permits: Arc<Semaphore>,
    capacity: Arc<AtomicUsize>,
    resized: Arc<Notify>,
}

impl WeakBufferSender {
    /// A strong sender, unless the buffer is already closed.
    pub fn upgrade(&self) -> Option<BufferSender> {
        self.tx.upgrade().map(|tx| BufferSender {
            tx,
            permits: Arc::clone(&self.permits),
            capacity: Arc::clone(&self.capacity),
            resized: Arc::clone(&self.resized),
        })
    }
}

/// Receiving half, owned by the component's task.
pub struct BufferReceiver {
    rx: mpsc::UnboundedReceiver<Item>,
    permits: Arc<Semaphore>,
}

/// View of a buffer's fill level for telemetry, and the handle to resize it.
#[derive(Clone)]
pub struct BufferProbe {
    permits: Arc<Semaphore>,
    capacity: Arc<AtomicUsize>,
    resized: Arc<Notify>,
}

impl std::fmt::Debug for BufferProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BufferProbe({}/{})", self.len(), self.capacity())
    }
}

impl BufferProbe {
    pub fn len(&self) -> usize {
        self.capacity()
            .saturating_sub(self.permits.available_permits())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Acquire)
    }

    /// Whether the buffer refuses batches (its component ended for good).
    pub fn is_closed(&self) -> bool {
        self.permits.is_closed()
    }

    /// Changes the bound. Growing frees permits at once; shrinking retires permits as
    /// queued events leave, without dropping anything already queued.
    pub fn resize(&self, capacity: usize) {
        let capacity = clamp_capacity(capacity);
        let old = self.capacity.swap(capacity, Ordering::AcqRel);
        if capacity > old {
            self.permits.add_permits(capacity - old);
        } else if capacity < old {
            let retire = (old - capacity) as u32;
            let permits = Arc::clone(&self.permits);
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(retire).await {
                    p.forget();
                }
            });
        }
        // Senders waiting for permits counted at the old size split their batch again,
        // so none waits for more permits than will ever exist.
        self.resized.notify_waiters();
    }
}

fn clamp_capacity(capacity: usize) -> usize {
    capacity.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize))
}

/// The receiver is gone; the batch comes back so its events can be settled.
#[derive(Debug)]
pub struct Closed(pub EventBatch);

/// A buffer holding at most `capacity` events (at least 1).
pub fn buffer(capacity: usize) -> (BufferSender, BufferReceiver, BufferProbe) {
    let size = clamp_capacity(capacity);
    let (tx, rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(size));
    let capacity = Arc::new(AtomicUsize::new(size));
    let resized = Arc::new(Notify::new());
    (
        BufferSender {
            tx,
            permits: Arc::clone(&permits),
            capacity: Arc::clone(&capacity),
            resized: Arc::clone(&resized),
        },
        BufferReceiver {
            rx,
            permits: Arc::clone(&permits),
        },
        BufferProbe {
            permits,
            capacity,
            resized,
        },
    )
}

impl BufferSender {
    pub fn downgrade(&self) -> WeakBufferSender {
        WeakBufferSender {
            tx: self.tx.downgrade(),
            permits: Arc::clone(&self.permits),
            capacity: Arc::clone(&self.capacity),
            resized: Arc::clone(&self.resized),
        }
    }

    /// Queues `batch`, waiting while the buffer is full. Batches larger than the bound
    /// go in pieces; on `Err` the unsent events come back.
    pub async fn send(&self, mut batch: EventBatch) -> Result<(), Closed> {
        while !batch.is_empty() {
            let capacity = self.capacity.load(Ordering::Acquire);
            let rest = if batch.len() > capacity {
                batch.split_off(capacity)
            } else {
                Vec::new()
            };
            let resized = self.resized.notified();
            tokio::pin!(resized);
            resized.as_mut().enable();
            if self.capacity.load(Ordering::Acquire) != capacity {
                batch.extend(rest);
                continue;
            }
            // Fits in u32: capacity is clamped to u32::MAX and the batch to capacity.
            let n = batch.len() as u32;
            // A resize wins over permits granted in the same instant: the new bound
            // applies, and dropping the granted acquire returns its permits.
            tokio::select! {
                biased;
                () = &mut resized => batch.extend(rest),
                permits = Arc::clone(&self.permits).acquire_many_owned(n) => {
                    let Ok(permits) = permits else {
                        batch.extend(rest);
                        return Err(Closed(batch));
                    };
                    if let Err(mpsc::error::SendError(item)) = self.tx.send(Item { batch, _permits: permits }) {
                        let mut unsent = item.batch;
                        unsent.extend(rest);
                        return Err(Closed(unsent));
                    }
                    batch = rest;
                }
            }
        }
        Ok(())
    }
}

impl BufferReceiver {
    /// The next batch, or `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<EventBatch> {
        self.rx.recv().await.map(|item| item.batch)
    }

    /// A queued batch, without waiting.
    pub fn try_recv(&mut self) -> Option<EventBatch> {
        self.rx.try_recv().ok().map(|item| item.batch)
    }

    /// Refuses further batches; blocked senders get theirs back. Queued ones can still
    /// be taken with `try_recv`.
    pub fn close(&mut self) {
        self.permits.close();
        self.rx.close();
    }
}

impl Drop for BufferReceiver {
    fn drop(&mut self) {
        self.permits.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use chrono::Utc;
    use std::time::Duration;

    fn batch(n: usize) -> EventBatch {
        let src: Arc<str> = Arc::from("t");
        (0..n)
            .map(|i| Event::new((i as i64).into(), Arc::clone(&src), Utc::now()))
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
}
