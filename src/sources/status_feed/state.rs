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

use super::providers::{Incident, Provider, Status};
use crate::alert::Severity;

/// `initial:` what the first poll of a feed (with no memory of it) emits.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Initial {
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
pub struct SourceState {
    pub feeds: BTreeMap<String, FeedState>,
}

/// What is remembered of one feed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedState {
    /// The URL the validators belong to.
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// When the feed was first read: an incident first seen already resolved is news
    /// only if it ended after this (history feeds list years of old incidents).
    pub baseline: Option<DateTime<Utc>>,
    pub incidents: BTreeMap<String, Seen>,
}

/// The last announced (or, for the baseline, recorded) state of one incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub fingerprint: String,
    pub status: Status,
    pub phase: String,
    pub severity: String,
    pub summary: String,
    pub service: Option<String>,
    pub region: Option<String>,
    pub url: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub updated: Option<DateTime<Utc>>,
    /// The last poll that listed it; entries gone from the feed for longer than the
    /// retention are forgotten.
    pub last_seen: DateTime<Utc>,
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
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

pub fn load(path: &Path) -> Result<SourceState, StateError> {
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
pub fn save(path: &Path, state: &SourceState) -> Result<(), StateError> {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Unique: a task being replaced by a reload and its replacement may both write.
        let tmp = path.with_extension(format!("json.{}.tmp", uuid::Uuid::new_v4().simple()));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| StateError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// The fingerprint of an incident: the same for each of its events, whatever the feed
/// (two feeds of one provider agree on it), 32 hex digits like the webhook decoders'.
pub fn fingerprint(provider: Provider, key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("status_feed:{}:{key}", provider.as_str()).as_bytes(),
    );
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a feed is, for the planner and the events.
#[derive(Debug, Clone)]
pub struct PlanContext {
    pub feed: String,
    pub provider: Provider,
    pub default_severity: Severity,
    pub initial: Initial,
    /// Whether an incident missing from the feed has ended (Azure).
    pub resolve_missing: bool,
    /// How long an incident missing from the feed is remembered.
    pub retention: chrono::Duration,
    pub now: DateTime<Utc>,
}

/// One event to emit, and the record to commit once it is delivered.
#[derive(Debug, Clone)]
pub struct Emit {
    pub key: String,
    pub seen: Seen,
    pub incident: Incident,
}

/// The outcome of comparing a feed with its memory.
#[derive(Debug)]
pub struct Plan {
    /// The memory with every silent change applied (baseline, refreshed and forgotten
    /// records), but without the records of `emits`.
    pub state: FeedState,
    /// In the order of their event times.
    pub emits: Vec<Emit>,
}

/// Compares `incidents` (all listed by the feed now, one per key) with `prev`.
pub fn plan(prev: &FeedState, incidents: Vec<Incident>, cx: &PlanContext) -> Plan {
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
    pub fn event(&self, cx: &PlanContext, keep_raw: bool) -> Value {
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
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn cx(initial: Initial, now: &str) -> PlanContext {
        PlanContext {
            feed: "f".into(),
            provider: Provider::Statuspage,
            default_severity: Severity::Medium,
            initial,
            resolve_missing: false,
            retention: chrono::Duration::days(30),
            now: t(now),
        }
    }

    fn incident(key: &str, status: Status, phase: &str, updated: &str) -> Incident {
        Incident {
            key: key.into(),
            status,
            phase: phase.into(),
            severity: None,
            summary: format!("incident {key}"),
            description: None,
            service: None,
            region: None,
            url: None,
            starts_at: None,
            updated: Some(t(updated)),
            ends_at: (status == Status::Resolved).then(|| t(updated)),
            labels: BTreeMap::new(),
            raw: serde_json::Value::Null,
        }
    }

    /// Plans, then commits every emitted record (as if all were delivered).
    fn step(state: &mut FeedState, list: Vec<Incident>, cx: &PlanContext) -> Vec<String> {
        let plan = plan(state, list, cx);
        *state = plan.state;
        plan.emits
            .into_iter()
            .map(|e| {
                let label = format!("{} {} {}", e.key, e.seen.status.as_str(), e.seen.phase);
                state.incidents.insert(e.key, e.seen);
                label
            })
            .collect()
    }

    #[test]
    fn initial_modes() {
        let list = || {
            vec![
                incident("a", Status::Firing, "investigating", "2026-07-09T06:00:00Z"),
                incident("b", Status::Resolved, "resolved", "2026-07-07T16:17:00Z"),
            ]
        };
        let now = "2026-07-09T07:00:00Z";
        for (initial, want) in [
            (Initial::SkipExisting, vec![]),
            (Initial::EmitOpen, vec!["a firing investigating"]),
            (
                Initial::EmitAll,
                vec!["b resolved resolved", "a firing investigating"],
            ),
        ] {
            let mut state = FeedState::default();
            assert_eq!(
                step(&mut state, list(), &cx(initial, now)),
                want,
                "{initial:?}"
            );
            assert_eq!(state.incidents.len(), 2, "everything is remembered");
            assert!(
                step(&mut state, list(), &cx(initial, now)).is_empty(),
                "{initial:?}: never twice"
            );
        }
    }

    #[test]
    fn stages_severities_resolution_and_reopening() {
        let cx = cx(Initial::EmitOpen, "2026-07-09T07:00:00Z");
        let mut state = FeedState::default();
        let a = |status, phase: &str, updated: &str| incident("a", status, phase, updated);
        assert_eq!(
            step(
                &mut state,
                vec![a(Status::Firing, "investigating", "2026-07-09T06:00:00Z")],
                &cx
            ),
            ["a firing investigating"]
        );
        // An `updated` that moved without a new stage is not news.
        assert!(
            step(
                &mut state,
                vec![a(Status::Firing, "investigating", "2026-07-09T06:30:00Z")],
                &cx
            )
            .is_empty()
        );
        assert_eq!(
            step(
                &mut state,
                vec![a(Status::Firing, "identified", "2026-07-09T06:40:00Z")],
                &cx
            ),
            ["a firing identified"]
        );
        let mut worse = a(Status::Firing, "identified", "2026-07-09T06:50:00Z");
        worse.severity = Some(Severity::Critical);
        assert_eq!(step(&mut state, vec![worse], &cx), ["a firing identified"]);
        assert_eq!(state.incidents["a"].severity, "critical");
        assert_eq!(
            step(
                &mut state,
                vec![a(Status::Resolved, "resolved", "2026-07-09T07:00:00Z")],
                &cx
            ),
            ["a resolved resolved"]
        );
        assert_eq!(
            state.incidents["a"].severity, "critical",
            "a resolution keeps the severity it had"
        );
        assert!(
            step(
                &mut state,
                vec![a(Status::Resolved, "postmortem", "2026-07-10T07:00:00Z")],
                &cx
            )
            .is_empty()
        );
        assert_eq!(
            step(
                &mut state,
                vec![a(Status::Firing, "investigating", "2026-07-11T07:00:00Z")],
                &cx
            ),
            ["a firing investigating"],
            "reopened"
        );
    }

    #[test]
    fn new_incidents_after_the_baseline() {
        let mut state = FeedState::default();
        let cx0 = cx(Initial::EmitOpen, "2026-07-09T07:00:00Z");
        assert!(step(&mut state, vec![], &cx0).is_empty());
        let later = cx(Initial::EmitOpen, "2026-07-10T07:00:00Z");
        let got = step(
            &mut state,
            vec![
                // Over before we started watching: history, not news.
                incident("old", Status::Resolved, "resolved", "2026-07-01T00:00:00Z"),
                // Began and ended between two polls.
                incident(
                    "short",
                    Status::Resolved,
                    "resolved",
                    "2026-07-09T08:00:00Z",
                ),
                incident(
                    "new",
                    Status::Firing,
                    "investigating",
                    "2026-07-10T06:00:00Z",
                ),
            ],
            &later,
        );
        assert_eq!(got, ["short resolved resolved", "new firing investigating"]);
        assert!(state.incidents.contains_key("old"));
    }

    #[test]
    fn missing_incidents_resolve_only_where_the_feed_lists_open_ones() {
        let mut cx = cx(Initial::EmitOpen, "2026-07-09T07:00:00Z");
        let mut state = FeedState::default();
        let a = incident("a", Status::Firing, "active", "2026-07-09T06:00:00Z");
        assert_eq!(step(&mut state, vec![a.clone()], &cx), ["a firing active"]);
        assert!(
            step(&mut state, vec![], &cx).is_empty(),
            "a history feed dropped it"
        );
        cx.resolve_missing = true;
        assert_eq!(step(&mut state, vec![], &cx), ["a resolved resolved"]);
        assert!(step(&mut state, vec![], &cx).is_empty());
        cx.now += chrono::Duration::days(31);
        assert!(step(&mut state, vec![], &cx).is_empty());
        assert!(state.incidents.is_empty(), "forgotten after the retention");
    }

    #[test]
    fn events_follow_the_schema() {
        let cx = cx(Initial::EmitOpen, "2026-07-09T07:00:00Z");
        let mut i = incident(
            "tag:x,2005:Incident/1",
            Status::Resolved,
            "resolved",
            "2026-07-09T06:00:00Z",
        );
        i.service = Some("Actions".into());
        i.labels.insert("impact".into(), "major".into());
        let plan = plan(
            &FeedState {
                baseline: Some(t("2026-07-01T00:00:00Z")),
                ..FeedState::default()
            },
            vec![i],
            &cx,
        );
        let event = serde_json::to_value(plan.emits[0].event(&cx, true)).expect("json");
        assert_eq!(event["kind"], "outage");
        assert_eq!(event["event_type"], "alert");
        assert_eq!(event["source"], "statuspage");
        assert_eq!(event["status"], "resolved");
        assert_eq!(event["severity"], "medium");
        assert_eq!(event["service"], "Actions");
        assert_eq!(event["region"], serde_json::Value::Null);
        assert_eq!(event["labels"]["feed"], "f");
        assert_eq!(event["labels"]["phase"], "resolved");
        assert_eq!(event["labels"]["impact"], "major");
        assert_eq!(event["time"], "2026-07-09T06:00:00Z");
        assert_eq!(event["ends_at"], "2026-07-09T06:00:00Z");
        assert_eq!(
            event["fingerprint"],
            fingerprint(Provider::Statuspage, "tag:x,2005:Incident/1")
        );
        assert_eq!(event["fingerprint"].as_str().map(str::len), Some(32));
        let again = serde_json::to_value(plan.emits[0].event(&cx, false)).expect("json");
        assert_eq!(again["id"], event["id"], "the same change has the same id");
        assert!(again.get("raw").is_none());
    }

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("status_feed-x.json");
        assert_eq!(
            load(&path).expect("missing is empty"),
            SourceState::default()
        );
        let mut s = SourceState::default();
        let mut feed = FeedState {
            etag: Some("\"v1\"".into()),
            ..FeedState::default()
        };
        step(
            &mut feed,
            vec![incident(
                "a",
                Status::Firing,
                "investigating",
                "2026-07-09T06:00:00Z",
            )],
            &cx(Initial::EmitOpen, "2026-07-09T07:00:00Z"),
        );
        s.feeds.insert("github".into(), feed);
        save(&path, &s).expect("save");
        assert_eq!(load(&path).expect("load"), s);
        std::fs::write(&path, b"{").expect("write");
        assert!(matches!(load(&path), Err(StateError::Corrupt { .. })));
    }
}
