//! The incident transform's counters and gauge.

use std::collections::HashMap;
use std::sync::Arc;

use crate::telemetry::{ComponentMetrics, LabeledCounter, LabeledGauge};

pub(super) struct Counters {
    pub(super) alerts: HashMap<&'static str, Arc<LabeledCounter>>,
    pub(super) notifications: HashMap<&'static str, Arc<LabeledCounter>>,
    pub(super) open: Arc<LabeledGauge>,
}

impl Counters {
    pub(super) fn new(m: &ComponentMetrics) -> Self {
        let alerts = [
            "opened",
            "reopened",
            "repeat",
            "resolved",
            "held",
            "duplicate_resolve",
            "partial_resolve",
            "stray_resolve",
            "unmatched",
            "over_limit",
            "redelivery",
            "store_unavailable",
        ]
        .into_iter()
        .map(|o| {
            (
                o,
                m.counter("sluice_incident_alerts_total", &[("outcome", o)]),
            )
        })
        .collect();
        let notifications = ["opened", "updated", "acknowledged", "resolved", "reopened"]
            .into_iter()
            .map(|a| {
                (
                    a,
                    m.counter("sluice_incident_notifications_total", &[("action", a)]),
                )
            })
            .collect();
        Self {
            alerts,
            notifications,
            open: m.gauge("sluice_incident_open", &[]),
        }
    }

    pub(super) fn alert(&self, outcome: &str) {
        if let Some(c) = self.alerts.get(outcome) {
            c.add(1);
        }
    }
}
