//! One polled feed as the loop keeps it (its spec, committed state, schedule and last
//! outcome, its metrics), and the snapshot of all of them the API serves.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use super::FeedSpec;
use super::poll::Schedule;
use super::state::FeedState;
use crate::alert::Status;
use crate::telemetry::{ComponentMetrics, LabeledCounter, LabeledGauge};

pub(super) struct FeedMetrics {
    pub(super) polls_updated: Arc<LabeledCounter>,
    pub(super) polls_not_modified: Arc<LabeledCounter>,
    pub(super) polls_failed: Arc<LabeledCounter>,
    pub(super) last_success: Arc<LabeledGauge>,
    pub(super) consecutive_errors: Arc<LabeledGauge>,
    pub(super) items: Arc<LabeledGauge>,
    pub(super) open: Arc<LabeledGauge>,
}

impl FeedMetrics {
    pub(super) fn new(m: &ComponentMetrics, feed: &str) -> Self {
        let polls = |result| {
            m.counter(
                "sluice_status_feed_polls_total",
                &[("feed", feed), ("result", result)],
            )
        };
        Self {
            polls_updated: polls("updated"),
            polls_not_modified: polls("not_modified"),
            polls_failed: polls("error"),
            last_success: m.gauge(
                "sluice_status_feed_last_success_timestamp_seconds",
                &[("feed", feed)],
            ),
            consecutive_errors: m.gauge("sluice_status_feed_consecutive_errors", &[("feed", feed)]),
            items: m.gauge("sluice_status_feed_items", &[("feed", feed)]),
            open: m.gauge("sluice_status_feed_open_incidents", &[("feed", feed)]),
        }
    }
}

pub(super) struct Feed {
    pub(super) spec: FeedSpec,
    /// What was committed: delivered events and silent changes.
    pub(super) state: FeedState,
    pub(super) schedule: Schedule,
    pub(super) next_due: Instant,
    pub(super) polls: u64,
    pub(super) consecutive_errors: u32,
    pub(super) last_poll: Option<DateTime<Utc>>,
    pub(super) last_success: Option<DateTime<Utc>>,
    pub(super) last_result: Option<&'static str>,
    pub(super) last_error: Option<String>,
    pub(super) items: usize,
    pub(super) metrics: FeedMetrics,
    /// Polling stopped through the API (`POST /outages/stop`).
    pub(super) paused: bool,
    /// Among the providers polled (`PUT /outages/config`); the pipeline file's feeds
    /// are until a list leaves their provider out.
    pub(super) enabled: bool,
    /// Made from a provider's public feed by `PUT /outages/config`, not the file.
    pub(super) added: bool,
}

impl Feed {
    /// A feed first polled at `start`, remembering `state`.
    pub(super) fn new(
        spec: FeedSpec,
        mut state: FeedState,
        schedule: Schedule,
        metrics: &ComponentMetrics,
        start: Instant,
    ) -> Self {
        if state.url != spec.url {
            // Validators belong to a URL; the incidents stay (same feed, new address).
            state.url = spec.url.clone();
            state.etag = None;
            state.last_modified = None;
        }
        let feed = Self {
            metrics: FeedMetrics::new(metrics, &spec.name),
            schedule,
            spec,
            state,
            next_due: start,
            polls: 0,
            consecutive_errors: 0,
            last_poll: None,
            last_success: None,
            last_result: None,
            last_error: None,
            items: 0,
            paused: false,
            enabled: true,
            added: false,
        };
        feed.metrics.open.set(feed.open_incidents() as f64);
        feed
    }

    /// Whether its schedule polls it.
    pub(super) fn active(&self) -> bool {
        self.enabled && !self.paused
    }

    pub(super) fn open_incidents(&self) -> usize {
        self.state
            .incidents
            .values()
            .filter(|s| s.status == Status::Firing)
            .count()
    }

    pub(super) fn snapshot(&self, now: Instant) -> Json {
        let state = match (self.polls, self.consecutive_errors) {
            _ if !self.enabled => "disabled",
            _ if self.paused => "paused",
            (0, _) => "pending",
            (_, 0) => "ok",
            _ => "error",
        };
        json!({
            "name": self.spec.name,
            "provider": self.spec.provider.as_str(),
            "url": self.spec.url,
            "format": self.spec.format.as_str(),
            "state": state,
            "polls": self.polls,
            "last_poll": self.last_poll.map(|t| t.to_rfc3339()),
            "last_success": self.last_success.map(|t| t.to_rfc3339()),
            "last_result": self.last_result,
            "last_error": self.last_error,
            "consecutive_errors": self.consecutive_errors,
            "items_seen": self.items,
            "open_incidents": self.open_incidents(),
            "interval_seconds": self.schedule.interval().as_secs(),
            "paused": self.paused,
            "enabled": self.enabled,
            "added_by_api": self.added,
            "next_poll_in_seconds": self.active().then(|| self.next_due.saturating_duration_since(now).as_secs_f64()),
        })
    }
}

/// Publishes the snapshot the API serves, and returns it.
pub(super) fn publish(slot: &Mutex<Json>, id: &str, feeds: &[Feed], now: Instant) -> Json {
    let mut open = Vec::new();
    for f in feeds {
        let mut incidents: Vec<_> = f
            .state
            .incidents
            .values()
            .filter(|s| s.status == Status::Firing)
            .collect();
        incidents.sort_by(|a, b| {
            a.starts_at
                .cmp(&b.starts_at)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        for s in incidents {
            open.push(json!({
                "feed": f.spec.name,
                "fingerprint": s.fingerprint,
                "summary": s.summary,
                "severity": s.severity,
                "phase": s.phase,
                "service": s.service,
                "region": s.region,
                "url": s.url,
                "starts_at": s.starts_at.map(|t| t.to_rfc3339()),
                "updated": s.updated.map(|t| t.to_rfc3339()),
            }));
        }
    }
    let snap = json!({
        "source": id,
        "feeds": feeds.iter().map(|f| f.snapshot(now)).collect::<Vec<_>>(),
        "open_incidents": open,
    });
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = snap.clone();
    snap
}

/// Publishes the past incidents `/outages/history` serves: every feed's, oldest first.
pub(super) fn publish_history(slot: &Mutex<Json>, feeds: &[Feed]) {
    let mut all: Vec<Json> = Vec::new();
    for f in feeds {
        for p in &f.state.history {
            let updates: Vec<Json> = p
                .updates
                .iter()
                .map(|u| {
                    json!({
                        "at": u.at.to_rfc3339(),
                        "status": u.status.as_str(),
                        "phase": u.phase,
                        "severity": u.severity,
                        "summary": u.summary,
                    })
                })
                .collect();
            all.push(json!({
                "feed": f.spec.name,
                "provider": f.spec.provider.as_str(),
                "fingerprint": p.fingerprint,
                "summary": p.summary,
                "severity": p.severity,
                "service": p.service,
                "region": p.region,
                "url": p.url,
                "started_at": p.started_at.map(|t| t.to_rfc3339()),
                "ended_at": p.ended_at.map(|t| t.to_rfc3339()),
                "updates": updates,
            }));
        }
    }
    all.sort_by(|a, b| a["started_at"].as_str().cmp(&b["started_at"].as_str()));
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Json::Array(all);
}
