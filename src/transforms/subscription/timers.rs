//! Auto-resolve timers: which firing alerts each subscription is waiting to see resolved.
//!
//! A timer is keyed by (subscription name, fingerprint) and remembers when the alert
//! was first seen firing and the firing event itself (the synthetic resolve is a copy
//! of it). The due time is computed at check time from the subscription's current
//! `resolve_after_hours`, so editing that value applies to pending timers too.
//!
//! The map is shared by every instance built for one snapshot path (a reload that
//! rebuilds the transform builds the replacement while the old one still runs), through
//! a process-wide registry of weak references: both see the same map, so nothing
//! created in the hand-over window is lost. When the last instance goes, the registry
//! entry dies and the next build reads the snapshot file instead (a restart).
//! Snapshots are written whole to a temporary file and renamed over the old one, so a
//! crash leaves either the previous snapshot or the new one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use vrl::value::Value;

use super::set::{Compiled, SubscriptionSet, text};
use crate::alert::{self, Status};
use crate::event::{Event, SourceId};

/// One pending auto-resolve.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// When the alert was first seen firing on this subscription.
    pub(crate) since: DateTime<Utc>,
    pub(crate) event: Value,
    /// The output the firing left on, where the resolve goes.
    pub(crate) output: Option<Arc<str>>,
}

/// The timers of one transform (all its instances).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// Oldest first: a repeated firing does not move an entry.
    pub(crate) pending: IndexMap<(Arc<str>, String), Pending>,
    /// Changed since the last snapshot.
    pub(crate) dirty: bool,
    /// The generation of the newest instance: only it fires timers (an instance being
    /// replaced must not emit on outputs its replacement may have dropped).
    pub(crate) newest: u64,
}

pub(crate) type SharedTimers = Arc<Mutex<Timers>>;

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A fresh instance generation.
pub(crate) fn next_generation() -> u64 {
    GENERATION.fetch_add(1, Ordering::Relaxed)
}

pub(crate) use crate::state_file::lock;

/// The timers for `snapshot`: those of a live instance, else the snapshot's contents
/// (empty when there is none; a snapshot that cannot be read is reported and set aside
/// so it is not overwritten blindly).
pub(crate) fn shared(snapshot: &Path) -> SharedTimers {
    crate::state_file::take_over(snapshot, |path| match read(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot read the auto-resolve snapshot; starting without its timers");
            let aside = path.with_extension("json.unreadable");
            let _ = std::fs::rename(path, aside);
            Timers::default()
        }
    })
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    pending: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    subscription: String,
    fingerprint: String,
    since: DateTime<Utc>,
    event: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<String>,
}

fn read(path: &Path) -> Result<Timers, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Timers::default()),
        Err(e) => return Err(e.to_string()),
    };
    let snapshot: Snapshot = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if snapshot.version != 1 {
        return Err(format!("unknown snapshot version {}", snapshot.version));
    }
    let mut timers = Timers::default();
    for e in snapshot.pending {
        timers.pending.insert(
            (Arc::from(e.subscription.as_str()), e.fingerprint),
            Pending {
                since: e.since,
                event: e.event,
                output: e.output.map(Arc::from),
            },
        );
    }
    Ok(timers)
}

/// Writes the timers to `path` (temporary file, then rename) and clears `dirty`.
pub(crate) fn persist(timers: &mut Timers, path: &Path) -> std::io::Result<()> {
    let snapshot = Snapshot {
        version: 1,
        pending: timers
            .pending
            .iter()
            .map(|((name, fp), p)| Entry {
                subscription: name.to_string(),
                fingerprint: fp.clone(),
                since: p.since,
                event: p.event.clone(),
                output: p.output.as_deref().map(str::to_owned),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&snapshot).map_err(std::io::Error::other)?;
    crate::state_file::write_atomically(path, &bytes)?;
    timers.dirty = false;
    Ok(())
}

/// Starts or cancels, for `event`, the timers of the auto-resolving subscriptions among
/// `subs` (those it matched).
pub(crate) fn track<'a>(
    t: &mut Timers,
    subs: impl Iterator<Item = &'a Compiled>,
    event: &Event,
    now: DateTime<Utc>,
) {
    let field = |k: &str| event.get(k).and_then(text);
    let (Some(status), Some(fp)) = (
        field(alert::field::STATUS),
        field(alert::field::FINGERPRINT),
    ) else {
        return;
    };
    for sub in subs {
        if !sub.auto_resolve {
            continue;
        }
        let key = (Arc::clone(&sub.key), fp.to_string());
        match status.as_ref() {
            // A repeat keeps the first firing's time: the alert is open since then.
            "firing" if !t.pending.contains_key(&key) => {
                t.pending.insert(
                    key,
                    Pending {
                        since: now,
                        event: event.value().clone(),
                        output: Some(Arc::clone(&sub.output)),
                    },
                );
                t.dirty = true;
            }
            "resolved" => t.dirty |= t.pending.shift_remove(&key).is_some(),
            _ => {}
        }
    }
}

/// Takes the timers that are due (subscription index in `set`, the firing event, the
/// output it left on), and drops those of subscriptions that are gone, disabled or no
/// longer auto-resolve. Timers are keyed by [`Compiled::key`].
pub(crate) fn take_due(
    t: &mut Timers,
    set: &SubscriptionSet,
    by_key: &HashMap<Arc<str>, usize>,
    now: DateTime<Utc>,
) -> Vec<(usize, Value, Option<Arc<str>>)> {
    let mut due = Vec::new();
    let before = t.pending.len();
    t.pending.retain(|(name, _), p| {
        let Some(&i) = by_key.get(name) else {
            return false;
        };
        let sub = &set.subs[i];
        if !sub.enabled || !sub.auto_resolve {
            return false;
        }
        let after = TimeDelta::from_std(sub.resolve_after).unwrap_or(TimeDelta::MAX);
        if p.since
            .checked_add_signed(after)
            .is_some_and(|at| at <= now)
        {
            due.push((
                i,
                std::mem::replace(&mut p.event, Value::Null),
                p.output.take(),
            ));
            return false;
        }
        true
    });
    if t.pending.len() != before {
        t.dirty = true;
    }
    due
}

/// The resolved event for a firing one that timed out: a new event (fresh `id`,
/// `auto_resolved: true`) that no source waits for.
pub(crate) fn resolved(mut value: Value, component: SourceId, now: DateTime<Utc>) -> Event {
    let at = Value::from(now.to_rfc3339_opts(SecondsFormat::Millis, true));
    if let Value::Object(map) = &mut value {
        map.insert(
            alert::field::STATUS.into(),
            Value::from(Status::Resolved.as_str()),
        );
        map.insert(alert::field::ENDS_AT.into(), at.clone());
        map.insert("time".into(), at);
        map.insert("id".into(), Value::from(uuid::Uuid::new_v4().to_string()));
        map.insert("auto_resolved".into(), Value::Boolean(true));
    }
    Event::new(value, component, now)
}

/// `<data_dir>/subscription/<id>.json`, the id reduced to characters safe in a file name.
pub(crate) fn snapshot_path(data_dir: &Path, id: &str) -> PathBuf {
    crate::state_file::path_for(data_dir, "subscription", id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_in_order_and_a_corrupt_one_is_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = snapshot_path(dir.path(), "route-x");
        assert!(path.ends_with("subscription/route-x.json"));
        let mut t = Timers::default();
        for (name, fp) in [("b", "f2"), ("a", "f1")] {
            t.pending.insert(
                (Arc::from(name), fp.to_owned()),
                Pending {
                    since: DateTime::from_timestamp(1_700_000_000, 0).expect("ts"),
                    event: Value::from(fp),
                    output: Some(Arc::from("out")),
                },
            );
        }
        t.dirty = true;
        persist(&mut t, &path).expect("persist");
        assert!(!t.dirty);
        let back = read(&path).expect("read");
        let keys: Vec<_> = back
            .pending
            .keys()
            .map(|(n, f)| (n.to_string(), f.clone()))
            .collect();
        assert_eq!(
            keys,
            vec![("b".into(), "f2".into()), ("a".into(), "f1".into())]
        );
        assert_eq!(back.pending[0].event, Value::from("f2"));

        std::fs::write(&path, "{ not json").expect("write");
        let s = shared(&path);
        assert!(lock(&s).pending.is_empty());
        assert!(path.with_extension("json.unreadable").exists());
    }
}
