//! End-to-end latency: from the moment a source received a batch to the moment its last
//! copy was settled by the sinks.

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
        Self {
            histogram: Mutex::new(new_histogram()),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

/// A point-in-time summary of the histogram.
#[derive(Debug, Clone, Copy, Default)]
pub struct LatencySnapshot {
    pub count: u64,
    pub sum_seconds: f64,
    /// (quantile, seconds)
    pub quantiles: [(f64, f64); 5],
}

pub const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

impl LatencyRecorder {
    /// Records `events` events that all took `elapsed`.
    pub fn record(&self, elapsed: Duration, events: u64) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Ok(mut h) = self.histogram.lock() {
            h.saturating_record_n(micros, events.max(1));
        }
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        let Ok(h) = self.histogram.lock() else {
            return LatencySnapshot::default();
        };
        let mut snap = LatencySnapshot {
            count: h.len(),
            sum_seconds: h.mean() * h.len() as f64 / 1e6,
            quantiles: [(0.0, 0.0); 5],
        };
        for (slot, q) in snap.quantiles.iter_mut().zip(QUANTILES) {
            *slot = (q, h.value_at_quantile(q) as f64 / 1e6);
        }
        snap
    }
}
