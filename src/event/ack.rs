//! End-to-end acknowledgements.
//!
//! A source that needs to know the fate of what it emitted (to answer an HTTP request, to
//! commit a Kafka offset, to advance a file checkpoint) creates one [`BatchAck`] per unit of
//! work and gives every event an [`EventAck`] cloned from it. Every copy of every event must
//! be settled exactly once; when the last copy is settled the source receives the *worst*
//! status among them (`Errored` beats `Rejected` beats `Delivered`).
//!
//! Invariants:
//! - Fanout clones an [`EventAck`] together with its event: each copy is one more obligation.
//! - Dropping an [`EventAck`] without settling it counts as `Errored`. Losing an event by
//!   accident (a task that died, a channel that closed) therefore surfaces as a failure
//!   at the source instead of a silent success. Components that drop events on purpose
//!   (a filter) settle them as `Delivered` first.
//! - Settling is lock-free (one atomic `fetch_max`); the notification happens once, when the
//!   last reference goes away.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use tokio::sync::oneshot;

use super::latency::LatencyRecorder;

/// The outcome of delivering an event, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum EventStatus {
    /// A sink delivered it, or a transform dropped it on purpose.
    Delivered = 0,
    /// A sink refused it permanently; retrying will not help.
    Rejected = 1,
    /// Delivery failed and may succeed if retried (or the event was lost by accident).
    Errored = 2,
}

impl EventStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Delivered,
            1 => Self::Rejected,
            _ => Self::Errored,
        }
    }
}

struct Shared {
    worst: AtomicU8,
    started: Instant,
    events: u64,
    notify: Option<oneshot::Sender<EventStatus>>,
    latency: Option<Arc<LatencyRecorder>>,
    /// Obligations of the events this batch was made from (an aggregate): settled with
    /// this batch's outcome.
    forward: Vec<EventAck>,
    /// Told the outcome, after `forward` (a transform that must know whether what it
    /// emitted was delivered).
    then: Option<Box<dyn FnOnce(EventStatus) + Send + Sync>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let status = EventStatus::from_u8(self.worst.load(Ordering::Acquire));
        if let Some(latency) = &self.latency {
            latency.record(self.started.elapsed(), self.events);
        }
        if let Some(tx) = self.notify.take() {
            // The source may have stopped waiting (client hung up); that is not an error.
            let _ = tx.send(status);
        }
        for ack in self.forward.drain(..) {
            ack.settle(status);
        }
        if let Some(then) = self.then.take() {
            then(status);
        }
    }
}

/// Created by a source for one unit of work; hands out [`EventAck`]s.
pub struct BatchAck {
    shared: Arc<Shared>,
}

/// Awaited by the source: resolves when every copy of every event of the batch is settled.
pub struct BatchReceiver {
    rx: oneshot::Receiver<EventStatus>,
}

impl BatchReceiver {
    /// The worst status of the batch. A batch whose acknowledgement machinery vanished
    /// (which cannot happen while the [`Shared`] drop runs) reports `Errored`.
    pub async fn wait(self) -> EventStatus {
        self.rx.await.unwrap_or(EventStatus::Errored)
    }
}

impl BatchAck {
    /// A batch of `events` events whose outcome the source wants to await.
    pub fn with_receiver(
        events: usize,
        latency: Option<Arc<LatencyRecorder>>,
    ) -> (Self, BatchReceiver) {
        let (tx, rx) = oneshot::channel();
        (Self::build(events, latency, Some(tx)), BatchReceiver { rx })
    }

    /// A batch whose outcome nobody awaits; it still feeds the end-to-end latency histogram.
    pub(crate) fn fire_and_forget(events: usize, latency: Option<Arc<LatencyRecorder>>) -> Self {
        Self::build(events, latency, None)
    }

    /// A batch made from other events (an aggregate of them): when its copies are
    /// settled, every event in `inputs` is settled with the same outcome.
    pub(crate) fn forwarding(inputs: Vec<EventAck>) -> Self {
        let mut ack = Self::build(0, None, None);
        if let Some(shared) = Arc::get_mut(&mut ack.shared) {
            shared.forward = inputs;
        }
        ack
    }

    /// Like [`BatchAck::forwarding`], and `then` is told the outcome.
    pub(crate) fn forwarding_then(
        inputs: Vec<EventAck>,
        then: impl FnOnce(EventStatus) + Send + Sync + 'static,
    ) -> Self {
        let mut ack = Self::forwarding(inputs);
        if let Some(shared) = Arc::get_mut(&mut ack.shared) {
            shared.then = Some(Box::new(then));
        }
        ack
    }

    fn build(
        events: usize,
        latency: Option<Arc<LatencyRecorder>>,
        notify: Option<oneshot::Sender<EventStatus>>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                worst: AtomicU8::new(EventStatus::Delivered as u8),
                started: Instant::now(),
                events: events as u64,
                notify,
                latency,
                forward: Vec::new(),
                then: None,
            }),
        }
    }

    /// One obligation for one event.
    pub fn event_ack(&self) -> EventAck {
        EventAck {
            shared: Some(Arc::clone(&self.shared)),
        }
    }
}

/// One event copy's obligation to report its outcome. See the module docs.
#[derive(Default)]
pub struct EventAck {
    shared: Option<Arc<Shared>>,
}

impl EventAck {
    /// An event that nobody awaits (tests, synthetic events built inside transforms).
    pub(crate) fn none() -> Self {
        Self { shared: None }
    }

    /// Records the outcome of this copy and releases it.
    pub(crate) fn settle(mut self, status: EventStatus) {
        self.release(status);
    }

    /// Moves the obligation out, leaving an empty handle behind (used when a transform
    /// replaces an event by another that carries on its obligation).
    pub(crate) fn take(&mut self) -> EventAck {
        EventAck {
            shared: self.shared.take(),
        }
    }

    /// Whether a source is tracking this event.
    pub(crate) fn is_tracked(&self) -> bool {
        self.shared.is_some()
    }

    fn release(&mut self, status: EventStatus) {
        if let Some(shared) = self.shared.take() {
            shared.worst.fetch_max(status as u8, Ordering::AcqRel);
        }
    }
}

impl Clone for EventAck {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for EventAck {
    fn drop(&mut self) {
        self.release(EventStatus::Errored);
    }
}

impl std::fmt::Debug for EventAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_tracked() {
            "EventAck(tracked)"
        } else {
            "EventAck(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn worst_status_wins_after_last_copy() {
        let (batch, rx) = BatchAck::with_receiver(3, None);
        let a = batch.event_ack();
        let b = batch.event_ack();
        let c = b.clone();
        drop(batch);
        a.settle(EventStatus::Delivered);
        b.settle(EventStatus::Rejected);
        c.settle(EventStatus::Delivered);
        assert_eq!(rx.wait().await, EventStatus::Rejected);
    }

    #[tokio::test]
    async fn dropping_an_unsettled_copy_is_an_error() {
        let (batch, rx) = BatchAck::with_receiver(2, None);
        let a = batch.event_ack();
        let b = batch.event_ack();
        drop(batch);
        a.settle(EventStatus::Delivered);
        drop(b);
        assert_eq!(rx.wait().await, EventStatus::Errored);
    }

    #[tokio::test]
    async fn a_forwarding_batch_settles_its_inputs_with_its_own_outcome() {
        let (inputs, rx) = BatchAck::with_receiver(2, None);
        let forwarded = vec![inputs.event_ack(), inputs.event_ack()];
        drop(inputs);
        let aggregate = BatchAck::forwarding(forwarded);
        let copy = aggregate.event_ack();
        drop(aggregate);
        copy.settle(EventStatus::Rejected);
        assert_eq!(rx.wait().await, EventStatus::Rejected);
    }

    #[tokio::test]
    async fn all_delivered_is_delivered() {
        let (batch, rx) = BatchAck::with_receiver(100, None);
        let acks: Vec<_> = (0..100).map(|_| batch.event_ack()).collect();
        drop(batch);
        for a in acks {
            a.settle(EventStatus::Delivered);
        }
        assert_eq!(rx.wait().await, EventStatus::Delivered);
    }
}
