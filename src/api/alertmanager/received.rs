//! The alerts posted to `/api/v2/alerts`, kept for `GET /api/v2/alerts` (as amtool's
//! `alert query` reads them) until they end. Not persisted: Alertmanager does not keep
//! alerts across restarts either, and Prometheus sends firing ones again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// At most this many distinct alerts are kept; more are refused (503) until some end.
pub(super) const MAX_ALERTS: usize = 50_000;

/// One alert as it was last posted.
#[derive(Debug, Clone)]
pub(super) struct Alert {
    pub(super) labels: BTreeMap<String, String>,
    pub(super) annotations: BTreeMap<String, String>,
    pub(super) starts_at: DateTime<Utc>,
    pub(super) ends_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) generator_url: String,
    pub(super) fingerprint: String,
    /// The `api` source it went to.
    pub(super) receiver: String,
}

#[derive(Default)]
pub(in crate::api) struct Received {
    alerts: Mutex<HashMap<String, Alert>>,
}

impl Received {
    /// Whether `n` new alerts would fit.
    pub(super) fn has_room(&self, n: usize, now: DateTime<Utc>) -> bool {
        let mut alerts = self.lock();
        alerts.retain(|_, a| a.ends_at > now);
        alerts.len().saturating_add(n) <= MAX_ALERTS
    }

    /// Keeps `alert`, merged with what was kept under its fingerprint as Alertmanager
    /// merges: the earliest start of overlapping activity, the newer labels, annotations
    /// and end.
    pub(super) fn keep(&self, mut alert: Alert) {
        let mut alerts = self.lock();
        if let Some(old) = alerts.get(&alert.fingerprint)
            && old.ends_at >= alert.starts_at
            && old.starts_at < alert.starts_at
        {
            alert.starts_at = old.starts_at;
        }
        alerts.insert(alert.fingerprint.clone(), alert);
    }

    /// The alerts that have not ended, by fingerprint.
    pub(super) fn current(&self, now: DateTime<Utc>) -> Vec<Alert> {
        let mut alerts = self.lock();
        alerts.retain(|_, a| a.ends_at > now);
        let mut list: Vec<Alert> = alerts.values().cloned().collect();
        list.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        list
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Alert>> {
        self.alerts.lock().unwrap_or_else(|p| p.into_inner())
    }
}
