//! Sample windows and the aggregations over them.
//!
//! A [`Window`] is a ring buffer (`VecDeque`) of `(time in ms, value)` in arrival order,
//! pruned to the largest window its rule needs, so memory per series is bounded by the
//! sample rate times that window. Times are the clock's wall time at arrival, so they
//! never go backwards within a process; a restored window may hold samples older than
//! the current prune horizon, which the next prune drops.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::expr::AggFn;

/// Samples of one metric for one label set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Window {
    samples: VecDeque<(i64, f64)>,
}

impl Window {
    pub(crate) fn push(&mut self, at: i64, value: f64) {
        self.samples.push_back((at, value));
    }

    /// Drops samples at or before `horizon` (ms).
    pub(crate) fn prune(&mut self, horizon: i64) {
        while self.samples.front().is_some_and(|(t, _)| *t <= horizon) {
            self.samples.pop_front();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    /// The most recent sample.
    #[cfg(test)]
    pub(crate) fn last(&self) -> Option<(i64, f64)> {
        self.samples.back().copied()
    }

    /// `func` over the samples newer than `now - window_ms`; `None` when it has no value
    /// (no samples; `rate` needs two).
    pub(crate) fn aggregate(&self, func: AggFn, now: i64, window_ms: i64) -> Option<f64> {
        let from = now - window_ms;
        let mut it = self
            .samples
            .iter()
            .filter(|(t, _)| *t > from)
            .map(|(_, v)| *v);
        match func {
            AggFn::Count => Some(it.count() as f64),
            AggFn::Sum => {
                let mut any = false;
                let s = it.inspect(|_| any = true).sum();
                any.then_some(s)
            }
            AggFn::Avg => {
                let (n, s) = it.fold((0u64, 0.0), |(n, s), v| (n + 1, s + v));
                (n > 0).then(|| s / n as f64)
            }
            AggFn::Min => it.reduce(f64::min),
            AggFn::Max => it.reduce(f64::max),
            AggFn::Rate => {
                // Per-second increase of a counter over the window: a drop between two
                // samples is a reset, after which the counter counted up from zero.
                let mut prev = it.next()?;
                let mut increase = 0.0;
                let mut pairs = 0;
                for v in it {
                    increase += if v >= prev { v - prev } else { v };
                    prev = v;
                    pairs += 1;
                }
                (pairs > 0).then(|| increase / (window_ms as f64 / 1000.0))
            }
        }
    }
}

/// Arrival times of events that matched a `count(field op literal)` filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Hits {
    times: VecDeque<i64>,
}

impl Hits {
    pub(crate) fn push(&mut self, at: i64) {
        self.times.push_back(at);
    }

    pub(crate) fn prune(&mut self, horizon: i64) {
        while self.times.front().is_some_and(|t| *t <= horizon) {
            self.times.pop_front();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    pub(crate) fn count(&self, now: i64, window_ms: i64) -> f64 {
        let from = now - window_ms;
        self.times.iter().filter(|t| **t > from).count() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(samples: &[(i64, f64)]) -> Window {
        let mut w = Window::default();
        for (t, v) in samples {
            w.push(*t, *v);
        }
        w
    }

    #[test]
    fn aggregations_see_only_the_window() {
        // One sample per second from t=1s to t=10s, values 1..=10.
        let w = window(&(1..=10).map(|i| (i * 1000, i as f64)).collect::<Vec<_>>());
        let now = 10_000;
        // The last 5 s: samples at 6..=10 s.
        assert_eq!(w.aggregate(AggFn::Count, now, 5000), Some(5.0));
        assert_eq!(w.aggregate(AggFn::Sum, now, 5000), Some(40.0));
        assert_eq!(w.aggregate(AggFn::Avg, now, 5000), Some(8.0));
        assert_eq!(w.aggregate(AggFn::Min, now, 5000), Some(6.0));
        assert_eq!(w.aggregate(AggFn::Max, now, 5000), Some(10.0));
        // Increase 6 → 10 over a 5 s window.
        assert_eq!(w.aggregate(AggFn::Rate, now, 5000), Some(0.8));
        // Nothing newer than 20 s - 5 s.
        assert_eq!(w.aggregate(AggFn::Avg, 20_000, 5000), None);
        assert_eq!(w.aggregate(AggFn::Sum, 20_000, 5000), None);
        assert_eq!(w.aggregate(AggFn::Count, 20_000, 5000), Some(0.0));
        assert_eq!(
            w.aggregate(AggFn::Rate, now, 1000),
            None,
            "rate needs two samples"
        );
    }

    #[test]
    fn rate_counts_through_a_counter_reset() {
        // 100 → 130 (+30), reset to 5 (+5 from zero), → 25 (+20): 55 over 60 s.
        let w = window(&[(0, 100.0), (20_000, 130.0), (40_000, 5.0), (60_000, 25.0)]);
        let r = w.aggregate(AggFn::Rate, 60_000, 61_000).expect("a rate");
        assert!((r - 55.0 / 61.0).abs() < 1e-12, "{r}");
    }

    #[test]
    fn prune_drops_old_samples_and_hits() {
        let mut w = window(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        w.prune(2);
        assert_eq!(w.len(), 1);
        assert_eq!(w.last(), Some((3, 3.0)));
        let mut h = Hits::default();
        for t in [1, 5, 9] {
            h.push(t);
        }
        assert_eq!(h.count(9, 5), 2.0);
        assert_eq!(h.count(9, 10), 3.0);
        h.prune(5);
        assert_eq!(h.count(100, 1000), 1.0);
        h.prune(9);
        assert!(h.is_empty());
    }
}
