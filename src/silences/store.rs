//! The store of silences: a lock-free snapshot for readers, one writer at a time, and
//! the file it persists to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Silence, SilenceSpec};

#[derive(Serialize, Deserialize)]
struct Persisted {
    origin: String,
    /// Absent in files written before silences were changed in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_at: Option<DateTime<Utc>>,
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
                        Ok(mut s) => {
                            s.updated_at = p.updated_at.unwrap_or(s.updated_at);
                            list.push(Arc::new(s));
                        }
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
        super::change::forget_ended(&mut list, Utc::now());
        self.publish(list, file.as_deref());
        Ok(())
    }

    fn publish(&self, list: Vec<Arc<Silence>>, file: Option<&Path>) {
        if let Some(path) = file {
            let saved: Vec<Persisted> = list
                .iter()
                .map(|s| Persisted {
                    origin: s.origin.clone(),
                    updated_at: Some(s.updated_at),
                    spec: s.spec.clone(),
                })
                .collect();
            if let Err(e) = crate::state_file::write_json(path, &saved) {
                tracing::warn!(file = %path.display(), error = %e, "cannot persist silences");
            }
        }
        self.current.store(Arc::new(list));
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut Vec<Arc<Silence>>)) {
        let Ok(file) = self.file.lock() else {
            return;
        };
        let mut list: Vec<Arc<Silence>> = self.current.load().iter().cloned().collect();
        f(&mut list);
        self.publish(list, file.as_deref());
    }

    /// Changes the list through `f`, publishing only what `f` accepts, and forgets
    /// silences long ended.
    pub(super) fn try_update<T, E>(
        &self,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut Vec<Arc<Silence>>) -> Result<T, E>,
    ) -> Result<T, E> {
        // The lock guards only where to persist: a writer that panicked left it whole.
        let file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut list: Vec<Arc<Silence>> = self.current.load().iter().cloned().collect();
        let answer = f(&mut list)?;
        super::change::forget_ended(&mut list, now);
        self.publish(list, file.as_deref());
        Ok(answer)
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
