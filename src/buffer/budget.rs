//! The global memory budget (`memory_limit`) shared by every in-memory buffer.
//!
//! Every batch queued in a memory buffer is charged its estimated size until a consumer
//! takes it. Only sources wait for the budget: a transform forwarding events that are
//! already in the pipeline never does, because if it waited for room that only its own
//! consumers can free, a full budget could leave every component waiting on another.
//! Stopping intake is enough: what is inside drains, and the queued bytes are bounded by
//! the budget plus what one round of forwarding adds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use vrl::value::Value;

use crate::event::Event;

#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    freed: Notify,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            used: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged right now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Charges `bytes` until the returned [`Charge`] is dropped. Never waits.
    pub(crate) fn charge(self: &Arc<Self>, bytes: usize) -> Charge {
        self.used.fetch_add(bytes, Ordering::AcqRel);
        Charge {
            budget: Arc::clone(self),
            bytes,
        }
    }

    /// Charges `bytes` once they fit under `ceiling` (at most the limit) with what is
    /// charged already, so work that is about to allocate (a request being read and
    /// decoded) cannot push the process past the budget. More than the ceiling is charged
    /// as the ceiling. A ceiling below the limit keeps the rest for smaller work. Waits
    /// while it does not fit; cancel to give up.
    pub(crate) async fn reserve(self: &Arc<Self>, bytes: usize, ceiling: usize) -> Charge {
        let bytes = bytes.min(ceiling.min(self.limit));
        self.reserve_between(bytes, bytes, ceiling).await
    }

    /// Charges at least `min` and at most `max` bytes: waits until `min` fits under
    /// `ceiling` (at most the limit) with what is charged already, then takes as much
    /// of `max` as fits. For work that can use more memory than it strictly needs (a
    /// decoding allowance). A `min` over the ceiling never fits; callers check first.
    pub(crate) async fn reserve_between(
        self: &Arc<Self>,
        min: usize,
        max: usize,
        ceiling: usize,
    ) -> Charge {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(charge) = self.try_reserve_between(min, max, ceiling) {
                return charge;
            }
            freed.await;
        }
    }

    /// [`reserve_between`](Self::reserve_between) without waiting: `None` when `min`
    /// does not fit now.
    pub(crate) fn try_reserve_between(
        self: &Arc<Self>,
        min: usize,
        max: usize,
        ceiling: usize,
    ) -> Option<Charge> {
        let ceiling = ceiling.min(self.limit);
        let max = max.max(min);
        let mut taken = 0;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let free = ceiling.checked_sub(used)?;
                taken = max.min(free);
                (taken >= min).then_some(used + taken)
            })
            .ok()?;
        Some(Charge {
            budget: Arc::clone(self),
            bytes: taken,
        })
    }

    /// Waits until the charged bytes are below the limit (sources call this before
    /// emitting).
    pub(crate) async fn room(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.used() < self.limit {
                return;
            }
            freed.await;
        }
    }
}

/// Bytes held against the budget; released on drop.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Charge {
    /// What this charge holds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        // Every release may let a pending `reserve` fit, not only the one that crosses
        // back under the limit.
        if self.bytes > 0 {
            self.budget.freed.notify_waiters();
        }
    }
}

/// A conservative estimate of the memory an event occupies: its own struct plus the
/// heap of its values. VRL objects are B-trees whose nodes hold 11 entries of key and
/// value (about 720 bytes each, allocated whole), which dominates small events.
/// Overestimating keeps the process under the budget; it only makes the budget fill a
/// little early. `%` metadata shared by the events of one request is charged to each of
/// them, for the same reason.
pub(crate) fn event_size(event: &Event) -> usize {
    const EVENT: usize = 200;
    let payload = match event.raw_json_size() {
        // Its text, and what parsing it takes, charged before any component parses it.
        Some(text) => text,
        None => heap_size(event.value()),
    };
    EVENT + payload + heap_size(event.meta.vrl.get())
}

use crate::event::json_size::{MAP_NODE, MAP_NODE_ENTRIES, VALUE};

fn heap_size(value: &Value) -> usize {
    match value {
        Value::Bytes(b) => 16 + b.len(),
        Value::String(s) => 16 + s.len(),
        Value::Regex(r) => 512 + r.as_str().len(),
        Value::Object(map) if map.is_empty() => 0,
        Value::Object(map) => {
            64 + MAP_NODE * map.len().div_ceil(MAP_NODE_ENTRIES)
                + map
                    .iter()
                    .map(|(k, v)| k.len() + heap_size(v))
                    .sum::<usize>()
        }
        Value::Array(items) => VALUE * items.len() + items.iter().map(heap_size).sum::<usize>(),
        _ => 0,
    }
}

pub(crate) fn batch_size(batch: &[Event]) -> usize {
    batch.iter().map(event_size).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reserve_waits_until_the_whole_charge_fits() {
        let budget = MemoryBudget::new(100);
        let a = budget.reserve(70, 100).await;
        let waiter = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.reserve(40, 100).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "70 + 40 is over 100");
        assert_eq!(budget.used(), 70);
        drop(a);
        let b = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("reserved once a was released")
            .expect("task");
        assert_eq!(budget.used(), 40);
        // More than the limit is charged as the limit, once the budget is empty.
        let whole = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.reserve(1_000, usize::MAX).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!whole.is_finished());
        drop(b);
        let whole = tokio::time::timeout(Duration::from_secs(5), whole)
            .await
            .expect("reserved")
            .expect("task");
        assert_eq!(budget.used(), 100);
        drop(whole);
        assert_eq!(budget.used(), 0);
        // Under a ceiling, the rest of the budget stays for others.
        let big = budget.reserve(1_000, 75).await;
        assert_eq!((big.bytes(), budget.used()), (75, 75));
        let small = tokio::time::timeout(Duration::from_secs(5), budget.reserve(25, 100))
            .await
            .expect("the quarter above the ceiling is free for small work");
        assert_eq!(budget.used(), 100);
        drop((big, small));
    }

    #[tokio::test]
    async fn reserve_between_takes_what_fits_once_the_least_does() {
        let budget = MemoryBudget::new(100);
        let a = budget.charge(50);
        // 20 fits under 75 now; of the 60 wanted, 25 are free.
        let some = budget.reserve_between(20, 60, 75).await;
        assert_eq!((some.bytes(), budget.used()), (25, 75));
        assert!(
            budget.try_reserve_between(1, 10, 75).is_none(),
            "nothing left under 75"
        );
        let waiter = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.reserve_between(40, 1_000, 75).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "40 does not fit until a is released");
        drop(a);
        let more = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("reserved once a was released")
            .expect("task");
        assert_eq!((more.bytes(), budget.used()), (50, 75));
        drop((some, more));
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn room_waits_until_charges_drop_below_the_limit() {
        let budget = MemoryBudget::new(100);
        let a = budget.charge(60);
        let b = budget.charge(60);
        assert_eq!(budget.used(), 120);
        let waiter = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "over the limit: sources wait");
        drop(a);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken when a charge is released")
            .expect("joined");
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn estimates_grow_with_the_payload() {
        let small = Event::new(
            Value::from("x"),
            crate::event::SourceId::intern("s"),
            chrono::Utc::now(),
        );
        let big = Event::new(
            Value::from("x".repeat(10_000)),
            crate::event::SourceId::intern("s"),
            chrono::Utc::now(),
        );
        assert!(event_size(&big) >= event_size(&small) + 9_999);
    }
}
