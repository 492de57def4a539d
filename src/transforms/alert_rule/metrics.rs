//! The metrics of each `alert_rule` rule: notifications sent, series dropped for
//! `max_series`, and alerts firing now.

use std::sync::Arc;

use crate::telemetry::{ComponentMetrics, LabeledCounter, LabeledGauge};

pub(super) struct RuleMetrics {
    pub(super) firing: Arc<LabeledCounter>,
    pub(super) resolved: Arc<LabeledCounter>,
    pub(super) dropped: Arc<LabeledCounter>,
    pub(super) active: Arc<LabeledGauge>,
}

impl RuleMetrics {
    pub(super) fn new(m: &ComponentMetrics, rule: &str) -> Self {
        let sent = |status| {
            m.counter(
                "sluice_alert_rule_notifications_total",
                &[("rule", rule), ("status", status)],
            )
        };
        Self {
            firing: sent("firing"),
            resolved: sent("resolved"),
            dropped: m.counter("sluice_alert_rule_series_dropped_total", &[("rule", rule)]),
            active: m.gauge("sluice_alert_rule_firing", &[("rule", rule)]),
        }
    }
}
