//! What a `status_feed` source remembers: per feed, the validators for conditional GETs
//! and the last state it announced of every incident, in `data_dir/status_feed-<id>.json`.
//!
//! [`plan`] compares a freshly parsed feed with that memory and says which events to
//! emit. The invariant it keeps: an incident's (status, phase, severity) is announced at
//! most once — an event goes out when an incident appears, when its stage or severity
//! changes while it fires, and when it resolves. Once resolved, later edits (a
//! postmortem, a changed `updated`) say nothing new.
//!
//! The caller commits an emitted incident's record only after its event was delivered,
//! so a failed delivery is planned again on the next poll rather than lost, and a
//! restart does not repeat what was delivered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vrl::value::{KeyString, ObjectMap, Value};

use super::providers::{Incident, Provider};
use crate::alert::Severity;
use crate::alert::Status;

/// `initial:` what the first poll of a feed (with no memory of it) emits.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Initial {
    /// Nothing: the feed's current incidents become the baseline.
    SkipExisting,
    /// The incidents that are open now.
    #[default]
    EmitOpen,
    /// Every incident in the feed, open or resolved.
    EmitAll,
}

/// The state file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SourceState {
    pub(crate) feeds: BTreeMap<String, FeedState>,
    /// What was changed through the API (`/outages`), kept across restarts.
    #[serde(default)]
    pub(crate) control: Overrides,
}

/// Monitoring changed through the API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Overrides {
    /// Feeds whose polling was stopped.
    #[serde(default)]
    pub(crate) paused: BTreeSet<String>,
    /// Every feed's interval, in seconds (`None`: each its own).
    #[serde(default)]
    pub(crate) interval_seconds: Option<u64>,
    /// The providers polled (`None`: the pipeline file's feeds).
    #[serde(default)]
    pub(crate) providers: Option<Vec<String>>,
}

/// Past incidents kept per feed; the oldest go first.
pub(crate) const MAX_HISTORY: usize = 500;
/// Updates kept per past incident; the earliest after the first go first.
pub(crate) const MAX_UPDATES: usize = 50;

/// An incident as it was announced over time, for `/outages/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Past {
    pub(crate) fingerprint: String,
    pub(crate) summary: String,
    pub(crate) severity: String,
    pub(crate) service: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) ended_at: Option<DateTime<Utc>>,
    pub(crate) updates: Vec<Update>,
}

/// One announced change of a past incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Update {
    pub(crate) at: DateTime<Utc>,
    pub(crate) status: Status,
    pub(crate) phase: String,
    pub(crate) severity: String,
    pub(crate) summary: String,
}

/// What is remembered of one feed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct FeedState {
    /// The URL the validators belong to.
    pub(crate) url: String,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    /// When the feed was first read: an incident first seen already resolved is news
    /// only if it ended after this (history feeds list years of old incidents).
    pub(crate) baseline: Option<DateTime<Utc>>,
    pub(crate) incidents: BTreeMap<String, Seen>,
    /// What was announced, incident by incident (delivered events only).
    #[serde(default)]
    pub(crate) history: Vec<Past>,
}

impl FeedState {
    /// Adds a delivered announcement to the history, and forgets incidents that ended
    /// more than `retention` before `now`.
    pub(crate) fn record(&mut self, seen: &Seen, now: DateTime<Utc>, retention: chrono::Duration) {
        let at = seen.updated.unwrap_or(now);
        let update = Update {
            at,
            status: seen.status,
            phase: seen.phase.clone(),
            severity: seen.severity.clone(),
            summary: seen.summary.clone(),
        };
        // The open entry of this incident, or a new one (a reopened incident starts a
        // new entry: it is a new outage).
        let open = self
            .history
            .iter()
            .rposition(|p| p.fingerprint == seen.fingerprint && p.ended_at.is_none());
        let past = match open {
            Some(i) => &mut self.history[i],
            None => {
                self.history.push(Past {
                    fingerprint: seen.fingerprint.clone(),
                    summary: seen.summary.clone(),
                    severity: seen.severity.clone(),
                    service: seen.service.clone(),
                    region: seen.region.clone(),
                    url: seen.url.clone(),
                    started_at: seen.starts_at.or(Some(at)),
                    ended_at: None,
                    updates: Vec::new(),
                });
                let last = self.history.len() - 1;
                &mut self.history[last]
            }
        };
        past.summary.clone_from(&seen.summary);
        past.severity.clone_from(&seen.severity);
        if seen.status == Status::Resolved {
            past.ended_at = Some(at);
        }
        if past.updates.len() >= MAX_UPDATES {
            past.updates.remove(1);
        }
        past.updates.push(update);
        let cutoff = now.checked_sub_signed(retention);
        self.history
            .retain(|p| p.ended_at.zip(cutoff).is_none_or(|(end, cut)| end >= cut));
        if self.history.len() > MAX_HISTORY {
            let excess = self.history.len() - MAX_HISTORY;
            self.history.drain(..excess);
        }
    }
}

/// The last announced (or, for the baseline, recorded) state of one incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Seen {
    pub(crate) fingerprint: String,
    pub(crate) status: Status,
    pub(crate) phase: String,
    pub(crate) severity: String,
    pub(crate) summary: String,
    pub(crate) service: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) starts_at: Option<DateTime<Utc>>,
    pub(crate) updated: Option<DateTime<Utc>>,
    /// The last poll that listed it; entries gone from the feed for longer than the
    /// retention are forgotten.
    pub(crate) last_seen: DateTime<Utc>,
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is corrupt ({source}); move it away to start from a fresh baseline")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

pub(crate) fn load(path: &Path) -> Result<SourceState, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
            path: path.display().to_string(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SourceState::default()),
        Err(source) => Err(StateError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Temp file, fsync, rename: a crash leaves the old or the new state, never half.
pub(crate) fn save(path: &Path, state: &SourceState) -> Result<(), StateError> {
    let write = || -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        crate::state_file::write_atomically(path, &bytes)
    };
    write().map_err(|source| StateError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// The fingerprint of an incident: the same for each of its events, whatever the feed
/// (two feeds of one provider agree on it), 32 hex digits like the webhook decoders'.
pub(crate) fn fingerprint(provider: Provider, key: &str) -> String {
    crate::hashing::fingerprint_hex(&format!("status_feed:{}:{key}", provider.as_str()))
}

/// What a feed is, for the planner and the events.
#[derive(Debug, Clone)]
pub(crate) struct PlanContext {
    pub(crate) feed: String,
    pub(crate) provider: Provider,
    pub(crate) default_severity: Severity,
    pub(crate) initial: Initial,
    /// Whether an incident missing from the feed has ended (Azure).
    pub(crate) resolve_missing: bool,
    /// How long an incident missing from the feed is remembered.
    pub(crate) retention: chrono::Duration,
    pub(crate) now: DateTime<Utc>,
}

/// One event to emit, and the record to commit once it is delivered.
#[derive(Debug, Clone)]
pub(crate) struct Emit {
    pub(crate) key: String,
    pub(crate) seen: Seen,
    pub(crate) incident: Incident,
}

/// The outcome of comparing a feed with its memory.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The memory with every silent change applied (baseline, refreshed and forgotten
    /// records), but without the records of `emits`.
    pub(crate) state: FeedState,
    /// In the order of their event times.
    pub(crate) emits: Vec<Emit>,
}

/// Compares `incidents` (all listed by the feed now, one per key) with `prev`.
pub(crate) fn plan(prev: &FeedState, incidents: Vec<Incident>, cx: &PlanContext) -> Plan {
    let first = prev.baseline.is_none();
    let mut state = prev.clone();
    let baseline = *state.baseline.get_or_insert(cx.now);
    let mut listed = BTreeSet::new();
    let mut emits = Vec::new();
    for mut incident in incidents {
        listed.insert(incident.key.clone());
        let old = prev.incidents.get(&incident.key);
        let severity = incident
            .severity
            .map(|s| s.as_str().to_owned())
            .or_else(|| old.map(|o| o.severity.clone()))
            .unwrap_or_else(|| cx.default_severity.as_str().to_owned());
        if incident.starts_at.is_none() {
            // RSS and Atom without a creation time: the first poll that saw it.
            incident.starts_at = Some(old.and_then(|o| o.starts_at).unwrap_or(cx.now));
        }
        let seen = Seen {
            fingerprint: fingerprint(cx.provider, &incident.key),
            status: incident.status,
            phase: incident.phase.clone(),
            severity: severity.clone(),
            summary: incident.summary.clone(),
            service: incident.service.clone(),
            region: incident.region.clone(),
            url: incident.url.clone(),
            starts_at: incident.starts_at,
            updated: incident.updated,
            last_seen: cx.now,
        };
        let announce = match old {
            None if first => match cx.initial {
                Initial::SkipExisting => false,
                Initial::EmitOpen => incident.status == Status::Firing,
                Initial::EmitAll => true,
            },
            // A new incident that is already over is news only if it ended after the
            // feed was first read; older ones are history the feed still lists.
            None => {
                incident.status == Status::Firing
                    || incident
                        .ends_at
                        .or(incident.updated)
                        .is_none_or(|t| t >= baseline)
            }
            Some(o) => match (o.status, incident.status) {
                (Status::Resolved, Status::Resolved) => false,
                (Status::Firing, Status::Firing) => o.phase != seen.phase || o.severity != severity,
                _ => true,
            },
        };
        if announce {
            emits.push(Emit {
                key: incident.key.clone(),
                seen,
                incident,
            });
        } else {
            state.incidents.insert(incident.key.clone(), seen);
        }
    }
    for (key, old) in &prev.incidents {
        if listed.contains(key) {
            continue;
        }
        if cx.resolve_missing && old.status == Status::Firing {
            let mut seen = old.clone();
            seen.status = Status::Resolved;
            seen.phase = "resolved".into();
            seen.updated = Some(cx.now);
            emits.push(Emit {
                key: key.clone(),
                incident: Incident {
                    key: key.clone(),
                    status: Status::Resolved,
                    phase: "resolved".into(),
                    severity: None,
                    summary: old.summary.clone(),
                    description: Some("No longer listed on the status feed.".into()),
                    service: old.service.clone(),
                    region: old.region.clone(),
                    url: old.url.clone(),
                    starts_at: old.starts_at,
                    updated: Some(cx.now),
                    ends_at: Some(cx.now),
                    labels: BTreeMap::new(),
                    raw: serde_json::Value::Null,
                },
                seen,
            });
        } else if cx.now - old.last_seen > cx.retention {
            state.incidents.remove(key);
        }
    }
    emits.sort_by(|a, b| {
        event_time(&a.incident, cx.now)
            .cmp(&event_time(&b.incident, cx.now))
            .then_with(|| a.key.cmp(&b.key))
    });
    Plan { state, emits }
}

/// An event's `time`: when the provider posted the change it reports.
fn event_time(i: &Incident, now: DateTime<Utc>) -> DateTime<Utc> {
    match i.status {
        Status::Resolved => i.ends_at.or(i.updated),
        Status::Firing => i.updated.or(i.starts_at),
    }
    .unwrap_or(now)
}

fn opt(v: Option<&str>) -> Value {
    v.map_or(Value::Null, Value::from)
}

fn time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, Value::Timestamp)
}

impl Emit {
    /// The event, in the normalized alert schema.
    pub(crate) fn event(&self, cx: &PlanContext, keep_raw: bool) -> Value {
        let i = &self.incident;
        let s = &self.seen;
        let at = event_time(i, cx.now);
        // The same change of the same incident always gets the same id, so a redelivery
        // after a failed acknowledgement is recognizable downstream.
        let id = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!(
                "status_feed:{}:{}:{}:{}:{}",
                s.fingerprint,
                s.status.as_str(),
                s.phase,
                s.severity,
                i.updated.map(|t| t.timestamp_millis()).unwrap_or_default()
            )
            .as_bytes(),
        );
        let mut labels = ObjectMap::new();
        for (k, v) in &i.labels {
            labels.insert(KeyString::from(k.as_str()), Value::from(v.as_str()));
        }
        labels.insert("feed".into(), Value::from(cx.feed.as_str()));
        labels.insert("phase".into(), Value::from(s.phase.as_str()));
        let mut m = ObjectMap::new();
        m.insert("id".into(), Value::from(id.to_string()));
        m.insert("time".into(), Value::Timestamp(at));
        m.insert("event_type".into(), Value::from("alert"));
        m.insert("source".into(), Value::from(cx.provider.as_str()));
        m.insert("kind".into(), Value::from("outage"));
        m.insert("status".into(), Value::from(s.status.as_str()));
        m.insert("severity".into(), Value::from(s.severity.as_str()));
        m.insert("service".into(), opt(i.service.as_deref()));
        m.insert("region".into(), opt(i.region.as_deref()));
        m.insert("project".into(), Value::Null);
        m.insert("summary".into(), Value::from(i.summary.as_str()));
        m.insert("description".into(), opt(i.description.as_deref()));
        m.insert("labels".into(), Value::Object(labels));
        m.insert("fingerprint".into(), Value::from(s.fingerprint.as_str()));
        m.insert("starts_at".into(), time(i.starts_at));
        m.insert(
            "ends_at".into(),
            time(if i.status == Status::Resolved {
                i.ends_at.or(Some(at))
            } else {
                None
            }),
        );
        m.insert("url".into(), opt(i.url.as_deref()));
        if keep_raw && !i.raw.is_null() {
            m.insert("raw".into(), Value::from(i.raw.clone()));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests;
