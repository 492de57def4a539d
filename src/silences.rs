//! Silences.
//!
//! A silence mutes every alert whose labels (with `alertname` and `severity`) match all
//! its matchers ([`crate::matchers`]) while `starts_at <= now < ends_at`.
//!
//! Silences are process-wide, as in Alertmanager: one [`SilenceStore`] ([`global`])
//! shared by every `alert_rule` component and the API (`/silences`). It is persisted to
//! `<data_dir>/silences.json` (tmp + rename) after every change, `data_dir` being the
//! first one attached ([`attach_dir`]: at start-up, or by the first `alert_rule` built
//! with a `data_dir`). Silences written in a component's config carry that component
//! as their origin and a deterministic id, and are replaced as a whole when it is
//! rebuilt; silences from the API have origin `api`. Readers take a lock-free snapshot
//! (`ArcSwap`), so evaluation never waits on the API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::matchers::{self, Matcher};

/// A silence as written in config and in the API's JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SilenceSpec {
    /// Given by the store when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    /// Label matchers (`name=value`, `!=`, `=~`, `!~`); an alert matching all of them
    /// is silenced.
    pub(crate) matchers: Vec<String>,
    /// RFC 3339; absent: already started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) starts_at: Option<String>,
    /// RFC 3339; absent: never ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ends_at: Option<String>,
    /// Why the silence is there.
    #[serde(default)]
    pub(crate) comment: String,
    /// Who made it.
    #[serde(default)]
    pub(crate) created_by: String,
}

/// A checked silence.
#[derive(Debug, Clone)]
pub struct Silence {
    pub(crate) id: String,
    pub(crate) origin: String,
    pub(crate) matchers: Vec<Matcher>,
    pub(crate) starts_at: Option<DateTime<Utc>>,
    pub(crate) ends_at: Option<DateTime<Utc>>,
    pub(crate) spec: SilenceSpec,
}

fn time(text: &Option<String>, option: &str) -> Result<Option<DateTime<Utc>>, String> {
    text.as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| format!("`{option}`: `{t}` is not an RFC 3339 time: {e}"))
        })
        .transpose()
}

impl Silence {
    /// Checks `spec`; `id` is used when the spec has none.
    pub(crate) fn new(spec: SilenceSpec, id: String, origin: &str) -> Result<Self, String> {
        if spec.matchers.is_empty() {
            return Err("`matchers`: a silence needs at least one matcher".into());
        }
        let matchers = matchers::parse_all_lenient(&spec.matchers, "matchers")?;
        let starts_at = time(&spec.starts_at, "starts_at")?;
        let ends_at = time(&spec.ends_at, "ends_at")?;
        if let (Some(s), Some(e)) = (starts_at, ends_at)
            && e <= s
        {
            return Err("`ends_at` must be after `starts_at`".into());
        }
        let id = spec.id.clone().unwrap_or(id);
        Ok(Self {
            spec: SilenceSpec {
                id: Some(id.clone()),
                ..spec
            },
            id,
            origin: origin.to_owned(),
            matchers,
            starts_at,
            ends_at,
        })
    }

    pub(crate) fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at.is_none_or(|s| s <= now) && self.ends_at.is_none_or(|e| now < e)
    }

    pub(crate) fn mutes(&self, labels: &BTreeMap<String, String>, now: DateTime<Utc>) -> bool {
        self.is_active(now) && self.matchers.iter().all(|m| m.matches_labels(labels))
    }

    /// The API's view: the spec plus origin and state.
    pub fn describe(&self, now: DateTime<Utc>) -> serde_json::Value {
        let state = if self.ends_at.is_some_and(|e| e <= now) {
            "expired"
        } else if self.starts_at.is_some_and(|s| now < s) {
            "pending"
        } else {
            "active"
        };
        let mut v = serde_json::to_value(&self.spec).unwrap_or_default();
        v["origin"] = self.origin.clone().into();
        v["status"] = state.into();
        v
    }
}

#[derive(Serialize, Deserialize)]
struct Persisted {
    origin: String,
    #[serde(flatten)]
    spec: SilenceSpec,
}

/// A list of silences, optionally persisted to a file.
#[derive(Default)]
pub struct SilenceStore {
    current: ArcSwap<Vec<Arc<Silence>>>,
    /// Serializes writers and holds where they persist.
    file: Mutex<Option<PathBuf>>,
}

impl std::fmt::Debug for SilenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SilenceStore({} silences)", self.current.load().len())
    }
}

impl SilenceStore {
    /// A store that lives in memory only.
    pub(crate) fn memory() -> Self {
        Self::default()
    }

    /// Every silence, in insertion order.
    pub fn all(&self) -> Arc<Vec<Arc<Silence>>> {
        self.current.load_full()
    }

    /// Persists to `dir/silences.json` from now on, after merging what it holds. Does
    /// nothing when a file is already attached.
    pub(crate) fn attach_dir(&self, dir: &Path) -> Result<(), String> {
        let Ok(mut file) = self.file.lock() else {
            return Err("silence store is poisoned".into());
        };
        if file.is_some() {
            return Ok(());
        }
        let path = dir.join("silences.json");
        let mut list: Vec<Arc<Silence>> = self.current.load().iter().cloned().collect();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let saved: Vec<Persisted> = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                for p in saved {
                    let id = p.spec.id.clone().unwrap_or_default();
                    if list.iter().any(|s| s.id == id) {
                        continue;
                    }
                    match Silence::new(p.spec, id, &p.origin) {
                        Ok(s) => list.push(Arc::new(s)),
                        Err(e) => {
                            tracing::warn!(file = %path.display(), error = %e, "skipping a saved silence")
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        *file = Some(path);
        self.publish(list, file.as_deref());
        Ok(())
    }

    fn publish(&self, list: Vec<Arc<Silence>>, file: Option<&Path>) {
        if let Some(path) = file {
            let saved: Vec<Persisted> = list
                .iter()
                .map(|s| Persisted {
                    origin: s.origin.clone(),
                    spec: s.spec.clone(),
                })
                .collect();
            if let Err(e) = crate::state_file::write_json(path, &saved) {
                tracing::warn!(file = %path.display(), error = %e, "cannot persist silences");
            }
        }
        self.current.store(Arc::new(list));
    }

    fn update(&self, f: impl FnOnce(&mut Vec<Arc<Silence>>)) {
        let Ok(file) = self.file.lock() else {
            return;
        };
        let mut list: Vec<Arc<Silence>> = self.current.load().iter().cloned().collect();
        f(&mut list);
        self.publish(list, file.as_deref());
    }

    /// Adds (or replaces, by id) a silence; returns its id.
    pub(crate) fn add(&self, silence: Silence) -> String {
        let id = silence.id.clone();
        self.update(|list| {
            list.retain(|s| s.id != silence.id);
            list.push(Arc::new(silence));
        });
        id
    }

    /// Removes a silence; whether it existed.
    pub(crate) fn remove(&self, id: &str) -> bool {
        let mut found = false;
        self.update(|list| {
            let before = list.len();
            list.retain(|s| s.id != id);
            found = list.len() != before;
        });
        found
    }

    /// Replaces every silence of `origin` with `silences`.
    pub(crate) fn replace_origin(&self, origin: &str, silences: Vec<Silence>) {
        self.update(|list| {
            list.retain(|s| s.origin != origin);
            list.extend(silences.into_iter().map(Arc::new));
        });
    }

    /// Whether an active silence mutes these labels.
    pub(crate) fn mutes(&self, labels: &BTreeMap<String, String>, now: DateTime<Utc>) -> bool {
        self.current.load().iter().any(|s| s.mutes(labels, now))
    }
}

static GLOBAL: LazyLock<Arc<SilenceStore>> = LazyLock::new(Default::default);

/// The process-wide silences.
pub fn global() -> Arc<SilenceStore> {
    Arc::clone(&GLOBAL)
}

/// Persists the process-wide silences under `data_dir` (first caller wins).
pub(crate) fn attach_dir(data_dir: &Path) -> Result<(), String> {
    GLOBAL.attach_dir(data_dir)
}

/// Checks a spec from the API and adds it to the global store with a fresh id.
pub(crate) fn add_from_api(spec: SilenceSpec) -> Result<String, String> {
    let silence = Silence::new(spec, uuid::Uuid::new_v4().to_string(), "api")?;
    Ok(GLOBAL.add(silence))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn silences_are_active_between_their_times_and_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SilenceStore::memory();
        store.attach_dir(dir.path()).expect("attach");
        let spec = SilenceSpec {
            id: None,
            matchers: vec!["alertname=HighCPU".into()],
            starts_at: Some("2026-01-01T00:00:00Z".into()),
            ends_at: Some("2026-01-01T01:00:00Z".into()),
            comment: "maintenance".into(),
            created_by: "ops".into(),
        };
        let id = store.add(Silence::new(spec, "s1".into(), "api").expect("valid"));
        assert_eq!(id, "s1");
        let l = labels(&[("alertname", "HighCPU")]);
        let at = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .expect("time")
                .with_timezone(&Utc)
        };
        assert!(!store.mutes(&l, at("2025-12-31T23:59:59Z")));
        assert!(store.mutes(&l, at("2026-01-01T00:30:00Z")));
        assert!(
            !store.mutes(&l, at("2026-01-01T01:00:00Z")),
            "ends_at is exclusive"
        );
        // Another store reading the same directory sees it.
        let again = SilenceStore::memory();
        again.attach_dir(dir.path()).expect("attach");
        assert_eq!(again.all().len(), 1);
        assert_eq!(again.all()[0].spec.comment, "maintenance");
        assert!(again.remove("s1"));
        assert!(!again.remove("s1"));
        let third = SilenceStore::memory();
        third.attach_dir(dir.path()).expect("attach");
        assert!(third.all().is_empty());
        let bad = SilenceSpec {
            ends_at: Some("yesterday".into()),
            ..SilenceSpec {
                id: None,
                matchers: vec!["a=b".into()],
                starts_at: None,
                ends_at: None,
                comment: String::new(),
                created_by: String::new(),
            }
        };
        let e = Silence::new(bad, "x".into(), "api").expect_err("bad time");
        assert!(e.contains("`ends_at`"), "{e}");
    }
}
