//! Progress of a source's backfill (rows done out of rows to read), published as two
//! gauges of the component so `/metrics`, `/components`, `sluice top` and the progress
//! bars of `sluice run` all read the same numbers.
//!
//! Only the source doing the backfill writes them. `done` may pass `total` while it
//! runs (rows inserted after the count); the source sets `total` to `done` when it has
//! caught up, so a finished backfill always reads `done == total`.

use std::sync::Arc;

use super::{ComponentMetrics, LabeledGauge};

pub(crate) const TOTAL: &str = "sluice_backfill_rows_expected";
pub(crate) const DONE: &str = "sluice_backfill_rows_done";

/// The writer side, held by the source.
#[derive(Debug, Clone)]
pub(crate) struct BackfillProgress {
    total: Arc<LabeledGauge>,
    done: Arc<LabeledGauge>,
}

impl BackfillProgress {
    pub(crate) fn attach(metrics: &ComponentMetrics) -> Self {
        Self {
            total: metrics.gauge(TOTAL, &[]),
            done: metrics.gauge(DONE, &[]),
        }
    }

    pub(crate) fn set_total(&self, rows: u64) {
        self.total.set(rows as f64);
    }

    pub(crate) fn set_done(&self, rows: u64) {
        self.done.set(rows as f64);
    }

    /// The backfill has caught up: whatever the count said, it is complete.
    pub(crate) fn finish(&self, rows: u64) {
        self.set_done(rows);
        self.set_total(rows);
    }
}

/// `(done, total)` of `metrics`' backfill, if it has one.
pub(crate) fn read(metrics: &ComponentMetrics) -> Option<(u64, u64)> {
    let gauges = metrics.labeled_gauges();
    let value = |name: &str| {
        gauges
            .iter()
            .find(|g| g.name == name && g.labels.is_empty())
            .map(|g| g.get() as u64)
    };
    Some((value(DONE)?, value(TOTAL)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{ComponentKind, Telemetry};

    #[test]
    fn reads_back_what_the_source_published() {
        let t = Telemetry::new();
        let c = t.component("history", ComponentKind::Source, "postgres");
        assert_eq!(read(&c), None);
        let p = BackfillProgress::attach(&c);
        p.set_total(10);
        p.set_done(4);
        assert_eq!(read(&c), Some((4, 10)));
        p.finish(9);
        assert_eq!(read(&c), Some((9, 9)));
        let text = t.render_prometheus();
        assert!(
            text.contains("# TYPE sluice_backfill_rows_done gauge"),
            "{text}"
        );
        assert!(text.contains("sluice_backfill_rows_expected{component_id=\"history\",component_kind=\"source\",component_type=\"postgres\"} 9\n"), "{text}");
    }
}
