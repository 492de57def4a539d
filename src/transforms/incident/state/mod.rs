//! One incident per correlation key, and the state machine that moves it:
//! open → (acknowledged) → resolved, reopened when it fires again within
//! `flap_window` of its resolve.
//!
//! Only state *changes* become notifications ([`Incident::pending`]); a repeated firing
//! is an update of `count` and `last_seen`. Times are wall-clock milliseconds, so a
//! snapshot read after a restart means the same instants.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use vrl::value::Value;

pub(crate) use super::phase::{Action, Phase};
use crate::alert::SEVERITIES;

/// The timing options the state machine needs, in ms (0: off).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Timing {
    pub(crate) resolve_hold: i64,
    pub(crate) flap_window: i64,
    pub(crate) resolve_after: i64,
    pub(crate) repeat_interval: i64,
    /// How long a resolved incident stays listed (the API), at least `flap_window`.
    pub(crate) keep_resolved: i64,
    /// How long the sinks may take to confirm a notification before it is announced
    /// again.
    pub(crate) confirm_timeout: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    /// The `group_by` values joined: the notification group.
    pub(crate) group: String,
    pub(crate) phase: Phase,
    /// Firing sightings since it opened.
    pub count: u64,
    /// Resolves cancelled by a new firing (within `resolve_hold` or `flap_window`).
    pub(crate) flaps: u64,
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    /// A resolve arrived and is held for `resolve_hold`.
    pub(crate) resolving_since: Option<i64>,
    pub(crate) resolved_at: Option<i64>,
    /// The highest severity seen while open.
    pub(crate) severity: String,
    /// The `source` of every alert that joined it.
    pub(crate) vendors: BTreeSet<String>,
    /// The latest alert's payload (without `raw`).
    pub(crate) latest: Value,
    /// A change not announced yet, and why (`resolve_after`, `repeat_interval`, …).
    pub pending: Option<Action>,
    pub(crate) reason: Option<String>,
    /// A change to announce right after `pending` (an acknowledgement of an opening
    /// nobody heard yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) queued: Option<Action>,
    /// The last change announced, and when.
    pub announced: Option<(Action, i64)>,
    /// Its alerts' route's `repeat_interval` (an upstream `alertmanager_route`), in ms,
    /// over the incident's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) repeat_interval: Option<i64>,
    /// Set by hand (the API).
    #[serde(default)]
    pub(crate) assigned_to: Option<String>,
    #[serde(default)]
    pub(crate) root_cause: Option<String>,
    /// Its changes and notes, oldest first; at most [`MAX_TIMELINE`] (the first entry,
    /// the opening, always stays).
    #[serde(default)]
    pub(crate) timeline: Vec<Entry>,
    /// The alerts (by fingerprint) firing in it now: it resolves when the last of them
    /// does (at most [`MAX_ALERTS`] are told apart).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(crate) firing: BTreeSet<String>,
    /// Timeline entries ever recorded (the shared store writes the new ones).
    #[serde(default)]
    pub(crate) recorded: u64,
    /// With the shared store: when its pending change is due to go out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) notify_at: Option<i64>,
    /// How often its last change was announced again after the sinks did not deliver
    /// it (reset by the next change).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) redeliveries: u32,
    /// Its last announcement is not confirmed delivered yet: it is announced again at
    /// this time (whoever sent it may have died with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed: Option<i64>,
}

/// What became of an announcement whose delivery was not confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Again {
    /// Announced again (pending).
    Yes,
    /// Tried [`MAX_REDELIVERIES`] times already: given up.
    GaveUp,
}

/// Announcements of one change again after its delivery failed or was not confirmed.
pub(crate) const MAX_REDELIVERIES: u32 = 5;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Vendors (`source` values) an incident lists at most.
pub(crate) const MAX_VENDORS: usize = 32;

/// Alerts an incident tells apart.
pub(crate) const MAX_ALERTS: usize = 1000;

/// Entries a timeline keeps.
pub(crate) const MAX_TIMELINE: usize = 50;

/// One line of an incident's timeline: a change (`opened`, `resolved`, ...) or a `note`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) at: i64,
    pub(crate) what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<String>,
}

/// What one sighting did, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sighting {
    Opened,
    Reopened,
    /// A firing of an open incident (or a held resolve cancelled by it).
    Repeat,
    Resolved,
    /// A resolve held for `resolve_hold`.
    Held,
    /// A resolve of an incident already resolved.
    DuplicateResolve,
    /// A resolve of one alert while others of the incident still fire.
    PartialResolve,
}

/// Rank of a severity: 0 is the most severe; values outside the schema rank last.
pub(crate) fn severity_rank(severity: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|s| s.eq_ignore_ascii_case(severity))
        .unwrap_or(SEVERITIES.len())
}

impl Incident {
    pub(crate) fn open(
        id: String,
        group: String,
        now: i64,
        severity: String,
        vendor: Option<String>,
        latest: Value,
    ) -> Self {
        Self {
            id,
            group,
            phase: Phase::Open,
            count: 1,
            flaps: 0,
            first_seen: now,
            last_seen: now,
            resolving_since: None,
            resolved_at: None,
            severity,
            vendors: vendor.into_iter().collect(),
            latest,
            pending: Some(Action::Opened),
            reason: None,
            queued: None,
            announced: None,
            repeat_interval: None,
            assigned_to: None,
            root_cause: None,
            timeline: vec![Entry {
                at: now,
                what: Action::Opened.as_str().into(),
                text: None,
            }],
            firing: BTreeSet::new(),
            recorded: 1,
            notify_at: None,
            redeliveries: 0,
            unconfirmed: None,
        }
    }

    /// Alert `alert` fires in this incident.
    pub(crate) fn alert_fired(&mut self, alert: &str) {
        if self.firing.len() < MAX_ALERTS && !self.firing.contains(alert) {
            self.firing.insert(alert.to_owned());
        }
    }

    /// Alert `alert` resolved: whether others of the incident still fire.
    pub(crate) fn others_fire(&mut self, alert: &str) -> bool {
        self.firing.remove(alert);
        !self.firing.is_empty()
    }

    /// Adds a line to the timeline, dropping the oldest but the first when full.
    pub(crate) fn record(&mut self, at: i64, what: &str, text: Option<String>) {
        if self.timeline.len() >= MAX_TIMELINE {
            self.timeline.remove(1.min(self.timeline.len() - 1));
        }
        self.recorded += 1;
        self.timeline.push(Entry {
            at,
            what: what.into(),
            text,
        });
    }

    pub(crate) fn is_open(&self) -> bool {
        self.phase != Phase::Resolved
    }

    /// Whether anyone heard it was open: its last announcement was not a resolve.
    fn announced_open(&self) -> bool {
        matches!(self.announced, Some((a, _)) if a != Action::Resolved)
    }

    /// Marks a change to announce. A later change replaces an unannounced earlier one,
    /// except that an `opened` or `reopened` nobody heard yet stays what it is.
    fn change(&mut self, at: i64, action: Action, reason: Option<&str>) {
        self.redeliveries = 0;
        self.record(at, action.as_str(), reason.map(str::to_owned));
        match (self.pending, action) {
            // The opening still carries the latest severity.
            (Some(Action::Opened | Action::Reopened), Action::Updated) => return,
            // Acknowledged before anyone heard it open: both go out, in order.
            (Some(Action::Opened | Action::Reopened), Action::Acknowledged) => {
                self.queued = Some(Action::Acknowledged);
                return;
            }
            // Nor does an acknowledgement nobody heard yet: the update follows it.
            (Some(Action::Acknowledged), Action::Updated) => {
                self.queued = Some(Action::Updated);
                return;
            }
            // An update nobody heard yet follows the acknowledgement.
            (Some(Action::Updated), Action::Acknowledged) => {
                self.pending = Some(Action::Acknowledged);
                self.queued = Some(Action::Updated);
                self.reason = None;
                return;
            }
            _ => {}
        }
        self.pending = Some(action);
        self.queued = None;
        self.reason = reason.map(str::to_owned);
    }

    /// Whether a firing now would start a new incident rather than continue this one:
    /// it is resolved, its resolve went out, and its flap window has passed.
    pub(crate) fn is_over(&self, now: i64, t: &Timing) -> bool {
        // A resolve not confirmed delivered, or waiting to go out again, may still
        // have to reach someone: until it did, a firing reopens this incident rather
        // than replacing it.
        if self.phase != Phase::Resolved || self.pending.is_some() || self.unconfirmed.is_some() {
            return false;
        }
        let resolved_at = self.resolved_at.unwrap_or(self.last_seen);
        t.flap_window == 0 || now >= resolved_at.saturating_add(t.flap_window)
    }

    /// A resolve is waiting to go out to someone who heard it open.
    fn unheard_resolve(&self) -> bool {
        self.pending == Some(Action::Resolved) && self.announced_open()
    }

    /// A firing alert for this incident's key (see [`Incident::is_over`] first).
    pub(crate) fn fire(
        &mut self,
        now: i64,
        severity: &str,
        vendor: Option<&str>,
        latest: Value,
    ) -> Sighting {
        let sighting = match self.phase {
            Phase::Open | Phase::Acknowledged => {
                if self.resolving_since.take().is_some() {
                    self.flaps += 1;
                }
                self.count += 1;
                if severity_rank(severity) < severity_rank(&self.severity) {
                    self.severity = severity.to_owned();
                    self.change(now, Action::Updated, Some("severity"));
                }
                Sighting::Repeat
            }
            Phase::Resolved => {
                let unheard = self.unheard_resolve();
                self.phase = Phase::Open;
                self.resolved_at = None;
                self.flaps += 1;
                self.count += 1;
                self.severity = severity.to_owned();
                if unheard {
                    // The resolve never went out: for whoever listens it never closed.
                    self.pending = None;
                    self.reason = None;
                } else {
                    self.change(now, Action::Reopened, None);
                }
                Sighting::Reopened
            }
        };
        self.last_seen = now;
        self.latest = latest;
        if let Some(v) = vendor
            && self.vendors.len() < MAX_VENDORS
            && !self.vendors.contains(v)
        {
            self.vendors.insert(v.to_owned());
        }
        sighting
    }

    /// A resolved alert for this incident's key.
    pub(crate) fn resolve_seen(&mut self, now: i64, latest: Value, t: &Timing) -> Sighting {
        if !self.is_open() {
            return Sighting::DuplicateResolve;
        }
        self.last_seen = now;
        self.latest = latest;
        if t.resolve_hold > 0 {
            self.resolving_since.get_or_insert(now);
            return Sighting::Held;
        }
        self.close(now, None);
        Sighting::Resolved
    }

    /// An acknowledgement (by hand). `false` when there is nothing to acknowledge.
    pub(crate) fn acknowledge(&mut self, now: i64) -> bool {
        if self.phase != Phase::Open {
            return false;
        }
        self.phase = Phase::Acknowledged;
        self.change(now, Action::Acknowledged, None);
        true
    }

    /// A severity set by hand: announced as an update when it differs.
    pub(crate) fn set_severity(&mut self, now: i64, severity: &str) -> bool {
        if self.severity == severity {
            return false;
        }
        self.severity = severity.to_owned();
        if self.is_open() {
            self.change(now, Action::Updated, Some("manual"));
        }
        true
    }

    /// Resolves it now. A firing nobody was told about needs no resolve.
    pub(crate) fn close(&mut self, now: i64, reason: Option<&str>) {
        self.firing.clear();
        self.phase = Phase::Resolved;
        self.resolved_at = Some(now);
        self.resolving_since = None;
        if self.announced_open() {
            self.change(now, Action::Resolved, reason);
        } else {
            self.pending = None;
            self.queued = None;
            self.reason = None;
        }
    }

    /// Timers: held resolves, `resolve_after`, `repeat_interval`. Returns whether the
    /// incident changed.
    pub(crate) fn tick(&mut self, now: i64, t: &Timing) -> bool {
        if !self.is_open() {
            return false;
        }
        if let Some(since) = self.resolving_since
            && now >= since + t.resolve_hold
        {
            self.close(now, None);
            return true;
        }
        if t.resolve_after > 0 && now >= self.last_seen + t.resolve_after {
            self.close(now, Some("resolve_after"));
            return true;
        }
        let repeat = self.repeat_interval.unwrap_or(t.repeat_interval);
        if repeat > 0
            && self.pending.is_none()
            && self.resolving_since.is_none()
            && let Some((_, at)) = self.announced
            && now >= at + repeat
        {
            self.change(now, Action::Updated, Some("repeat_interval"));
            return true;
        }
        false
    }

    /// Whether it can be forgotten: resolved, announced, and past its flap window.
    pub(crate) fn is_done(&self, now: i64, t: &Timing) -> bool {
        self.phase == Phase::Resolved
            && self.pending.is_none()
            && self.unconfirmed.is_none()
            && self
                .resolved_at
                .is_none_or(|at| now >= at.saturating_add(t.flap_window.max(t.keep_resolved)))
    }

    /// When a timer of it is next due (its pending change, a held resolve,
    /// `resolve_after`, `repeat_interval`, or being forgotten); `None`: never.
    pub(crate) fn next_due(&self, t: &Timing) -> Option<i64> {
        let mut due: Option<i64> = None;
        let mut at = |ms: i64| due = Some(due.map_or(ms, |d| d.min(ms)));
        if self.pending.is_some() {
            at(self.notify_at.unwrap_or(self.last_seen));
        } else if let Some(a) = self.unconfirmed {
            at(a);
        }
        if self.is_open() {
            if let Some(since) = self.resolving_since {
                at(since.saturating_add(t.resolve_hold));
            }
            if t.resolve_after > 0 {
                at(self.last_seen.saturating_add(t.resolve_after));
            }
            let repeat = self.repeat_interval.unwrap_or(t.repeat_interval);
            if repeat > 0
                && self.pending.is_none()
                && self.resolving_since.is_none()
                && let Some((_, a)) = self.announced
            {
                at(a.saturating_add(repeat));
            }
        } else if self.pending.is_none() {
            let resolved_at = self.resolved_at.unwrap_or(self.last_seen);
            at(resolved_at.saturating_add(t.flap_window.max(t.keep_resolved)));
        }
        due
    }

    /// Whether `action`, announced earlier, still describes the incident (so a failed
    /// delivery of it must be made good even after later announcements).
    pub(crate) fn still_holds(&self, action: Action) -> bool {
        match action {
            Action::Opened | Action::Reopened => self.is_open(),
            Action::Acknowledged => self.phase == Phase::Acknowledged,
            Action::Resolved => self.phase == Phase::Resolved,
            Action::Updated => false,
        }
    }

    /// Its last announcement is to go out again (the sinks failed it, or never said):
    /// at most [`MAX_REDELIVERIES`] times per change.
    pub(crate) fn announce_again(&mut self) -> Again {
        self.unconfirmed = None;
        match self.announced {
            Some((action, _)) if self.redeliveries < MAX_REDELIVERIES => {
                self.redeliveries += 1;
                self.pending = Some(action);
                Again::Yes
            }
            _ => Again::GaveUp,
        }
    }

    /// Records that its pending change went out; returns that change.
    /// Call until `None`: an opening acknowledged before it went out is two changes.
    pub(crate) fn announce(&mut self, now: i64) -> Option<(Action, Option<String>)> {
        let action = self.pending.take()?;
        self.notify_at = None;
        self.announced = Some((action, now));
        let reason = self.reason.take();
        self.pending = self.queued.take();
        Some((action, reason))
    }
}

#[cfg(test)]
mod tests;
