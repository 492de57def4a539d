//! Which offsets of which partitions may be committed.
//!
//! Invariants:
//! - A partition's commit point only moves forward, and only over ranges whose every
//!   event was settled delivered (or rejected: a sink refused them for good, so reading
//!   them again cannot help). An unsettled range holds back every later one.
//! - A range settled errored rewinds its partition: the ranges after it are forgotten
//!   (their late settlements are ignored, by epoch) and the consumer seeks back to it.
//! - A partition that is revoked is forgotten; settlements of its abandoned ranges then
//!   change nothing, so nothing is committed past its first unsettled offset.
//!
//! The tracker is plain data behind the source's mutex; it does no I/O. Offsets here are
//! Kafka's "next offset to read" convention when committed: a range `first..=last`
//! settled moves the commit point to `last + 1`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::event::EventStatus;

/// A partition of a topic.
pub(crate) type PartitionKey = (Arc<str>, i32);

/// Proof that a range was registered under a given partition epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) key: PartitionKey,
    pub(crate) epoch: u64,
    pub(crate) first: i64,
}

#[derive(Debug)]
struct Range {
    last: i64,
    epoch: u64,
    settled: bool,
}

#[derive(Debug)]
struct Partition {
    epoch: u64,
    /// Everything below has been settled (the next offset to commit). `None` until the
    /// first range is registered.
    commit_point: Option<i64>,
    in_flight: BTreeMap<i64, Range>,
    /// Seek back here once the instant has passed (an errored range).
    rewind: Option<(i64, Instant)>,
}

/// What changed when a range settled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The commit point advanced to this offset.
    Advanced(i64),
    /// Nothing to commit yet (an earlier range is still in flight).
    Held,
    /// The partition must be read again from this offset.
    Rewind(i64),
    /// The range no longer counts (revoked partition, or after a rewind).
    Stale,
}

#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    partitions: HashMap<PartitionKey, Partition>,
    next_epoch: u64,
}

impl OffsetTracker {
    /// The partition is now ours; anything known about an earlier assignment is dropped.
    pub(crate) fn assign(&mut self, key: PartitionKey) {
        self.next_epoch += 1;
        self.partitions.insert(
            key,
            Partition {
                epoch: self.next_epoch,
                commit_point: None,
                in_flight: BTreeMap::new(),
                rewind: None,
            },
        );
    }

    /// The partition is no longer ours.
    pub(crate) fn revoke(&mut self, key: &PartitionKey) {
        self.partitions.remove(key);
    }

    /// The epoch under which a message just read from `key` may be sent on, or `None`
    /// when it must be dropped (the partition is not ours, or it waits for a rewind).
    pub(crate) fn accepts(&self, key: &PartitionKey) -> Option<u64> {
        let p = self.partitions.get(key)?;
        p.rewind.is_none().then_some(p.epoch)
    }

    /// Records `first..=last` as sent downstream. `None` when `epoch` is outdated.
    pub(crate) fn register(
        &mut self,
        key: PartitionKey,
        epoch: u64,
        first: i64,
        last: i64,
    ) -> Option<Ticket> {
        let p = self.partitions.get_mut(&key)?;
        if p.epoch != epoch || p.rewind.is_some() {
            return None;
        }
        if p.commit_point.is_none() {
            p.commit_point = Some(first);
        }
        p.in_flight.insert(
            first,
            Range {
                last,
                epoch,
                settled: false,
            },
        );
        Some(Ticket { key, epoch, first })
    }

    /// Applies the outcome of a registered range. `retry_at` is when an errored range
    /// may be read again.
    pub(crate) fn settle(
        &mut self,
        ticket: &Ticket,
        status: EventStatus,
        retry_at: Instant,
    ) -> Settled {
        let Some(p) = self.partitions.get_mut(&ticket.key) else {
            return Settled::Stale;
        };
        match p.in_flight.get_mut(&ticket.first) {
            Some(r) if r.epoch == ticket.epoch => {
                if status == EventStatus::Errored {
                    p.in_flight.split_off(&ticket.first);
                    self.next_epoch += 1;
                    p.epoch = self.next_epoch;
                    p.rewind = Some((ticket.first, retry_at));
                    return Settled::Rewind(ticket.first);
                }
                r.settled = true;
            }
            _ => return Settled::Stale,
        }
        let before = p.commit_point;
        while let Some(entry) = p.in_flight.first_entry() {
            if !entry.get().settled {
                break;
            }
            let range = entry.remove();
            p.commit_point = Some(range.last + 1);
        }
        match p.commit_point {
            Some(point) if p.commit_point != before => Settled::Advanced(point),
            _ => Settled::Held,
        }
    }

    /// Rewinds that are due: the consumer seeks each partition to its offset, then
    /// [`OffsetTracker::rewound`] re-opens it.
    pub(crate) fn due_rewinds(&self, now: Instant) -> Vec<(PartitionKey, i64)> {
        self.partitions
            .iter()
            .filter_map(|(k, p)| match p.rewind {
                Some((offset, at)) if at <= now => Some((k.clone(), offset)),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn rewound(&mut self, key: &PartitionKey) {
        if let Some(p) = self.partitions.get_mut(key) {
            p.rewind = None;
            // The commit point stays where it was: the ranges before the errored one may
            // still be in flight and will advance it when they settle.
        }
    }

    /// Ranges sent and not yet settled on `key` (0 for a partition that is not ours).
    pub(crate) fn in_flight(&self, key: &PartitionKey) -> usize {
        self.partitions
            .get(key)
            .map_or(0, |p| p.in_flight.values().filter(|r| !r.settled).count())
    }

    pub(crate) fn total_in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|p| p.in_flight.values().filter(|r| !r.settled).count())
            .sum()
    }

    /// The commit point of `key`, if anything was settled or registered there.
    #[cfg(test)]
    pub(crate) fn commit_point(&self, key: &PartitionKey) -> Option<i64> {
        self.partitions.get(key).and_then(|p| p.commit_point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> PartitionKey {
        (Arc::from("t"), 0)
    }

    fn tracker() -> (OffsetTracker, u64) {
        let mut t = OffsetTracker::default();
        t.assign(key());
        let epoch = t.accepts(&key()).expect("assigned");
        (t, epoch)
    }

    #[test]
    fn an_unsettled_range_holds_back_later_ones() {
        let (mut t, e) = tracker();
        let now = Instant::now();
        let a = t.register(key(), e, 10, 19).expect("registers");
        let b = t.register(key(), e, 20, 29).expect("registers");
        assert_eq!(t.settle(&b, EventStatus::Delivered, now), Settled::Held);
        assert_eq!(t.commit_point(&key()), Some(10));
        assert_eq!(
            t.settle(&a, EventStatus::Delivered, now),
            Settled::Advanced(30)
        );
        assert_eq!(t.total_in_flight(), 0);
    }

    #[test]
    fn rejected_ranges_are_committed() {
        let (mut t, e) = tracker();
        let a = t.register(key(), e, 0, 4).expect("registers");
        assert_eq!(
            t.settle(&a, EventStatus::Rejected, Instant::now()),
            Settled::Advanced(5)
        );
    }

    #[test]
    fn an_errored_range_rewinds_and_later_settlements_are_stale() {
        let (mut t, e) = tracker();
        let now = Instant::now();
        let a = t.register(key(), e, 0, 9).expect("registers");
        let b = t.register(key(), e, 10, 19).expect("registers");
        let c = t.register(key(), e, 20, 29).expect("registers");
        assert_eq!(t.settle(&b, EventStatus::Errored, now), Settled::Rewind(10));
        assert_eq!(
            t.accepts(&key()),
            None,
            "no message is taken before the seek"
        );
        assert_eq!(t.settle(&c, EventStatus::Delivered, now), Settled::Stale);
        assert_eq!(t.due_rewinds(now), vec![(key(), 10)]);
        t.rewound(&key());
        let e2 = t.accepts(&key()).expect("open again");
        assert_ne!(e, e2);
        // The re-read range has the same first offset as the forgotten one.
        let b2 = t.register(key(), e2, 10, 19).expect("registers");
        assert_eq!(t.settle(&c, EventStatus::Delivered, now), Settled::Stale);
        assert_eq!(t.settle(&b2, EventStatus::Delivered, now), Settled::Held);
        assert_eq!(
            t.settle(&a, EventStatus::Delivered, now),
            Settled::Advanced(20)
        );
    }

    #[test]
    fn a_revoked_partition_commits_nothing_more() {
        let (mut t, e) = tracker();
        let a = t.register(key(), e, 0, 9).expect("registers");
        t.revoke(&key());
        assert_eq!(
            t.settle(&a, EventStatus::Delivered, Instant::now()),
            Settled::Stale
        );
        t.assign(key());
        assert_eq!(t.commit_point(&key()), None);
        assert!(t.register(key(), e, 10, 19).is_none(), "old epoch refused");
    }

    proptest! {
        /// Whatever order ranges settle in, the commit point never passes an unsettled
        /// offset and ends at the end once all are delivered.
        #[test]
        fn commit_point_never_passes_an_unsettled_offset(order in Just((0..20usize).collect::<Vec<_>>()).prop_shuffle()) {
            let (mut t, e) = tracker();
            let now = Instant::now();
            let tickets: Vec<Ticket> = (0..20)
                .map(|i| t.register(key(), e, i * 10, i * 10 + 9).expect("registers"))
                .collect();
            let mut settled = [false; 20];
            for i in order {
                t.settle(&tickets[i], EventStatus::Delivered, now);
                settled[i] = true;
                let first_unsettled = settled.iter().position(|s| !s).map_or(200, |j| j as i64 * 10);
                prop_assert_eq!(t.commit_point(&key()), Some(first_unsettled));
            }
        }
    }
}
