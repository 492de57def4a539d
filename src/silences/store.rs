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
