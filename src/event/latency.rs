//! Latency histograms: end to end (from the moment a source received a batch to the
//! moment its last copy was settled by the sinks), and per component (how old events are
//! when they leave it).

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Microsecond histogram from 1 µs to 1 h with three significant digits.
#[derive(Debug)]
pub struct LatencyRecorder {
    histogram: Mutex<Histogram<u64>>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::with_significant_digits(3)
    }
}

impl LatencyRecorder {
    /// `digits` (1 to 5) trades precision for memory: one component's histogram at two
    /// digits is ~25 KiB, at three ~180 KiB, and p50/p99 of a component need no more
    /// than 1 % precision.
    pub(crate) fn with_significant_digits(digits: u8) -> Self {
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, digits.clamp(1, 5))
            .expect("constant histogram bounds are valid");
        Self {
            histogram: Mutex::new(histogram),
        }
    }
}

/// A point-in-time summary of the histogram.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LatencySnapshot {
    pub(crate) count: u64,
    /// (quantile, seconds)
    pub(crate) quantiles: [(f64, f64); 5],
}

pub(crate) const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

/// A histogram's cumulative bucket counts, total count and sum.
#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    pub(crate) cumulative: Vec<u64>,
    pub(crate) count: u64,
    pub(crate) sum_seconds: f64,
}

impl LatencySnapshot {
    /// The value at `q` (one of [`QUANTILES`]), in seconds.
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        self.quantiles
            .iter()
            .find(|(at, _)| *at == q)
            .map_or(0.0, |(_, v)| *v)
    }
}

impl LatencyRecorder {
    /// Records `events` events that all took `elapsed`.
    pub(crate) fn record(&self, elapsed: Duration, events: u64) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Ok(mut h) = self.histogram.lock() {
            h.saturating_record_n(micros, events.max(1));
        }
    }

    /// Records `events` events whose age is now − `received_at` (clamped to 1 µs when a
    /// clock went backwards). One clock read, one lock, one histogram update, whatever
    /// `events` is.
    pub(crate) fn record_age(&self, received_at: chrono::DateTime<chrono::Utc>, events: u64) {
        let age = (chrono::Utc::now() - received_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        self.record(age, events);
    }

    /// Cumulative counts at each upper bound (seconds, ascending), for a Prometheus
    /// histogram. One pass over the recorded values.
    pub(crate) fn buckets(&self, bounds: &[f64]) -> Buckets {
        let Ok(h) = self.histogram.lock() else {
            return Buckets {
                cumulative: vec![0; bounds.len()],
                count: 0,
                sum_seconds: 0.0,
            };
        };
        let mut counts = vec![0u64; bounds.len()];
        for v in h.iter_recorded() {
            // The highest value equivalent to the slot: never reports an event faster
            // than it was.
            let seconds = h.highest_equivalent(v.value_iterated_to()) as f64 / 1e6;
            if let Some(i) = bounds.iter().position(|b| seconds <= *b) {
                counts[i] += v.count_at_value();
            }
        }
        let mut running = 0;
        for c in &mut counts {
            running += *c;
            *c = running;
        }
        Buckets {
            cumulative: counts,
            count: h.len(),
            sum_seconds: h.mean() * h.len() as f64 / 1e6,
        }
    }

    pub(crate) fn snapshot(&self) -> LatencySnapshot {
        let Ok(h) = self.histogram.lock() else {
            return LatencySnapshot::default();
        };
        let mut snap = LatencySnapshot {
            count: h.len(),
            quantiles: [(0.0, 0.0); 5],
        };
        for (slot, q) in snap.quantiles.iter_mut().zip(QUANTILES) {
            *slot = (q, h.value_at_quantile(q) as f64 / 1e6);
        }
        snap
    }
}
