//! A point-in-time view of every component's counters, served as JSON on
//! `GET /components` and read back by `sluice top`. Totals only: rates are the
//! reader's business (two snapshots and the time between them), so the server keeps no
//! per-client state.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::{ComponentState, Telemetry};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Whether a pipeline is running (false while starting and draining).
    pub(crate) running: bool,
    pub components: Vec<ComponentSnapshot>,
    /// End-to-end latency over the process' life (the histogram is pipeline-wide).
    pub latency: LatencySummary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentSnapshot {
    pub id: String,
    pub(crate) kind: String,
    #[serde(rename = "type")]
    pub(crate) type_name: String,
    /// `starting`, `running`, `stopped` or `failed`.
    pub(crate) state: String,
    pub(crate) error: Option<String>,
    pub(crate) received: u64,
    pub sent: u64,
    pub(crate) errors: u64,
    pub(crate) discarded: u64,
    /// Bytes read from the outside (sources).
    #[serde(default)]
    pub(crate) received_bytes: u64,
    /// Bytes delivered to the outside (sinks).
    #[serde(default)]
    pub(crate) sent_bytes: u64,
    /// Events waiting in the input buffer and its capacity (components with one).
    pub buffer: Option<BufferFill>,
    /// Age of events when they leave this component (passed on, or delivered by a sink).
    #[serde(default)]
    pub latency: LatencySummary,
    /// Rows read out of rows to read, for a source that backfills.
    #[serde(default)]
    pub backfill: Option<BackfillFill>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BackfillFill {
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BufferFill {
    pub(crate) events: u64,
    pub capacity: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_seconds: f64,
    pub p99_seconds: f64,
    /// The tail, for tracing a load test's outlier; absent from older sluice versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_9_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<f64>,
}

pub fn snapshot(t: &Telemetry) -> Snapshot {
    let components = t
        .components()
        .iter()
        .map(|c| {
            let (state, error) = match c.state() {
                ComponentState::Starting => ("starting", None),
                ComponentState::Running => ("running", None),
                ComponentState::Stopped => ("stopped", None),
                ComponentState::Failed(e) => ("failed", Some(e)),
                ComponentState::Degraded(e) => ("degraded", Some(e)),
            };
            ComponentSnapshot {
                id: c.id.clone(),
                kind: c.kind.as_str().to_owned(),
                type_name: c.type_name.to_owned(),
                state: state.to_owned(),
                error,
                received: c.received.load(Ordering::Relaxed),
                sent: c.sent.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                discarded: c.discarded.load(Ordering::Relaxed),
                received_bytes: c.received_bytes.load(Ordering::Relaxed),
                sent_bytes: c.sent_bytes.load(Ordering::Relaxed),
                buffer: c.buffered_events().map(|(len, cap)| BufferFill {
                    events: len as u64,
                    capacity: cap as u64,
                }),
                latency: summary(&c.latency().snapshot()),
                backfill: super::backfill::read(c)
                    .map(|(done, total)| BackfillFill { done, total }),
            }
        })
        .collect();
    Snapshot {
        running: t.pipeline_running(),
        components,
        latency: summary(&t.latency().snapshot()),
    }
}

fn summary(s: &crate::event::latency::LatencySnapshot) -> LatencySummary {
    LatencySummary {
        count: s.count,
        p50_seconds: s.quantile(0.5),
        p99_seconds: s.quantile(0.99),
        p99_9_seconds: Some(s.quantile(0.999)),
        max_seconds: Some(s.quantile(1.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::ComponentKind;

    #[test]
    fn carries_counters_states_and_latency() {
        let t = Telemetry::new();
        let c = t.component("in", ComponentKind::Source, "generator");
        c.add_sent(7);
        c.add_errors(
            2,
            crate::telemetry::ErrorType::Reader,
            crate::telemetry::Stage::Receiving,
        );
        c.add_received_bytes(90);
        c.set_state(ComponentState::Failed("boom".into()));
        t.latency().record(std::time::Duration::from_millis(4), 10);
        t.latency().record(std::time::Duration::from_millis(100), 1);
        c.latency().record(std::time::Duration::from_millis(20), 3);
        crate::telemetry::backfill::BackfillProgress::attach(&c).set_total(8);
        let s = snapshot(&t);
        assert_eq!(s.components.len(), 1);
        let c = &s.components[0];
        assert_eq!(
            (c.id.as_str(), c.kind.as_str(), c.type_name.as_str()),
            ("in", "source", "generator")
        );
        assert_eq!((c.sent, c.errors, c.received), (7, 2, 0));
        assert_eq!((c.received_bytes, c.sent_bytes), (90, 0));
        assert_eq!(
            (c.state.as_str(), c.error.as_deref()),
            ("failed", Some("boom"))
        );
        assert_eq!(c.buffer, None);
        assert_eq!(c.latency.count, 3);
        assert!(
            (c.latency.p99_seconds - 0.02).abs() < 0.0002,
            "{:?}",
            c.latency
        );
        assert_eq!(c.backfill, Some(BackfillFill { done: 0, total: 8 }));
        assert_eq!(s.latency.count, 11);
        let near = |a: f64, b: f64| (a - b).abs() < b / 100.0;
        assert!(near(s.latency.p50_seconds, 0.004), "{:?}", s.latency);
        // The tail is there for tracing a load test's outlier.
        assert!(
            near(s.latency.p99_9_seconds.unwrap_or_default(), 0.1),
            "{:?}",
            s.latency
        );
        assert!(
            near(s.latency.max_seconds.unwrap_or_default(), 0.1),
            "{:?}",
            s.latency
        );
        assert!(
            near(c.latency.max_seconds.unwrap_or_default(), 0.02),
            "{:?}",
            c.latency
        );
        let back: Snapshot = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    /// What a sluice from before the tail fields answers still reads, as "not given".
    #[test]
    fn an_older_latency_summary_reads_without_its_tail() {
        let old: LatencySummary = serde_json::from_value(serde_json::json!({
            "count": 3, "p50_seconds": 0.001, "p99_seconds": 0.002
        }))
        .expect("an older summary parses");
        assert_eq!(
            (old.count, old.p99_9_seconds, old.max_seconds),
            (3, None, None)
        );
    }
}
