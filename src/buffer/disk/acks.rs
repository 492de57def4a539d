//! Which record ids are settled: everything below `acked_below`, plus ranges above it
//! that were settled out of order. Only the contiguous prefix counts for deleting
//! segments and for the ledger, so a record still in flight holds back every later one.

use std::collections::BTreeMap;

#[derive(Debug)]
pub(crate) struct AckTracker {
    acked_below: u64,
    /// start → end (exclusive) of settled ranges above `acked_below`, not touching it.
    ahead: BTreeMap<u64, u64>,
}

impl AckTracker {
    pub(crate) fn new(acked_below: u64) -> Self {
        Self {
            acked_below,
            ahead: BTreeMap::new(),
        }
    }

    pub(crate) fn acked_below(&self) -> u64 {
        self.acked_below
    }

    /// Marks `[start, end)` settled; returns whether `acked_below` moved.
    pub(crate) fn settle(&mut self, start: u64, end: u64) -> bool {
        if end <= self.acked_below || start >= end {
            return false;
        }
        let start = start.max(self.acked_below);
        let (mut s, mut e) = (start, end);
        // Merge with an overlapping or adjacent range before and those after.
        if let Some((&ps, &pe)) = self.ahead.range(..=s).next_back()
            && pe >= s
        {
            s = ps;
            e = e.max(pe);
            self.ahead.remove(&ps);
        }
        while let Some((&ns, &ne)) = self.ahead.range(s..).next() {
            if ns > e {
                break;
            }
            e = e.max(ne);
            self.ahead.remove(&ns);
        }
        if s <= self.acked_below {
            self.acked_below = e;
            true
        } else {
            self.ahead.insert(s, e);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn out_of_order_ranges_join_the_prefix_once_the_gap_closes() {
        let mut t = AckTracker::new(10);
        assert!(!t.settle(15, 20));
        assert!(!t.settle(12, 15));
        assert_eq!(t.acked_below(), 10);
        assert!(t.settle(10, 12));
        assert_eq!(t.acked_below(), 20);
        assert!(!t.settle(5, 9), "below the prefix: nothing to do");
    }

    proptest! {
        /// Settling every id once, in any order and any grouping, moves the prefix to
        /// exactly the first id never settled.
        #[test]
        fn prefix_is_the_first_unsettled_id(order in Just((0u64..60).collect::<Vec<_>>()).prop_shuffle(), skip in 0u64..61) {
            let mut t = AckTracker::new(0);
            for id in order {
                if id != skip {
                    t.settle(id, id + 1);
                }
            }
            prop_assert_eq!(t.acked_below(), skip.min(60));
            if skip == 60 { prop_assert!(t.ahead.is_empty()); }
        }
    }
}
