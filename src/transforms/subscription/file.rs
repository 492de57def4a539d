//! A subscription `file:`: reading it, and swapping a changed set in while the transform
//! runs (see the module docs of [`super`] for when a change rebuilds instead).

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::catalog::Catalog;
use super::set::{self, SubscriptionSet, SubscriptionSpec};
use crate::component::BuildError;
use crate::telemetry::ComponentMetrics;
use crate::telemetry::{ErrorType, Stage};

pub(super) fn parse_file(text: &str) -> Result<Vec<SubscriptionSpec>, String> {
    serde_saphyr::from_str::<set::SubscriptionFile>(text)
        .map(|f| f.subscriptions)
        .map_err(|e| e.to_string())
}

pub(super) fn text_hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// What a [`FileSwap`] last looked at.
pub(super) struct Seen {
    pub(crate) stamp: Option<(SystemTime, u64)>,
    pub(crate) hash: u64,
}

/// Re-reads a `file:` and swaps its set in when the names are unchanged.
pub(super) struct FileSwap {
    pub(crate) id: Arc<str>,
    pub(crate) path: PathBuf,
    pub(crate) names: HashSet<String>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) seen: Mutex<Seen>,
    pub(crate) metrics: Arc<ComponentMetrics>,
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl FileSwap {
    fn outcome(&self, result: &'static str) {
        self.metrics
            .counter(
                "sluice_subscription_file_reloads_total",
                &[("result", result)],
            )
            .add(1);
    }

    /// `force`: read even if size and modification time look unchanged (the watcher saw
    /// a change). Runs on the application's controller or in `flush`; serialized by
    /// `seen`.
    pub(super) fn refresh(&self, force: bool) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stamp = file_stamp(&self.path);
        if !force && stamp == seen.stamp {
            return;
        }
        seen.stamp = stamp;
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            // Replaced by a rename, or being rewritten: the next change or check sees it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::error!(component_id = %self.id, file = %self.path.display(), error = %e, "cannot read the subscription file; keeping the current subscriptions");
                self.metrics
                    .add_errors(1, ErrorType::Reader, Stage::Processing);
                self.outcome("failed");
                return;
            }
        };
        let hash = text_hash(&text);
        if hash == seen.hash {
            return;
        }
        seen.hash = hash;
        let compiled = parse_file(&text)
            .map_err(BuildError)
            .and_then(|specs| SubscriptionSet::compile(&specs).map(|_| specs));
        match compiled {
            Err(e) => {
                tracing::error!(component_id = %self.id, file = %self.path.display(), error = %e, "subscription file refused; keeping the current subscriptions");
                self.metrics
                    .add_errors(1, ErrorType::Reader, Stage::Processing);
                self.outcome("failed");
            }
            Ok(specs) => {
                let names: HashSet<String> = specs.iter().map(|s| s.name.clone()).collect();
                if names != self.names {
                    tracing::info!(component_id = %self.id, file = %self.path.display(), "subscription names changed; the pipeline reload rebuilds the transform");
                    self.outcome("names_changed");
                    return;
                }
                if let Err(e) = self.catalog.set_file(specs) {
                    tracing::error!(component_id = %self.id, file = %self.path.display(), error = %e, "subscription file refused; keeping the current subscriptions");
                    self.metrics
                        .add_errors(1, ErrorType::Reader, Stage::Processing);
                    self.outcome("failed");
                    return;
                }
                tracing::info!(component_id = %self.id, file = %self.path.display(), "subscriptions swapped in");
                self.outcome("swapped");
            }
        }
    }
}
