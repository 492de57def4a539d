//! What one `subscription` transform matches against: the subscriptions of the pipeline
//! file (inline or its `file:`) and those made through the API, compiled into one set.
//!
//! Invariants:
//! - The file's subscriptions are read-only here; they change only by a file swap
//!   ([`Catalog::set_file`]) or a reload.
//! - API subscriptions ([`super::api_list`]) are shared by every instance of the
//!   component (a reload's old and new one) and persisted before they take effect. Each
//!   change bumps the list's version; an instance recompiles when, at the start of a
//!   batch, the version it compiled from is behind, so a change routes the next batch.
//! - An API subscription whose name a file subscription now takes, or whose output is no
//!   longer among `api_outputs`, stays listed with its problem and matches nothing.
//!   Reloads and file edits never fail because of API subscriptions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::api_list::{ApiSubscription, SharedApiList};
use super::recent::Recent;
use super::set::{Route, SubscriptionSet, SubscriptionSpec};
use crate::component::{BuildError, Live};
use crate::state_file::lock;

/// The running subscription transforms, for the API.
pub(crate) static CATALOGS: Live<Catalog> = Live::new();

/// One transform's subscriptions, compiled, and what it recently saw.
pub(crate) struct Catalog {
    pub(crate) id: Arc<str>,
    /// Outputs an API subscription may deliver to (`api_outputs`).
    pub(crate) api_outputs: Vec<String>,
    file: Mutex<Arc<Vec<SubscriptionSpec>>>,
    /// `None` for an instance built only to be checked (no `data_dir`).
    pub(crate) api: Option<SharedApiList>,
    compiled: Mutex<Compiled>,
    current: ArcSwap<SubscriptionSet>,
    /// Recent events and matches, for `/subscriptions/{id}/test` and `/events`.
    pub(crate) recent: Recent,
}

/// What `current` was compiled from.
#[derive(Default)]
struct Compiled {
    api_version: u64,
    /// Why an API subscription (by id) matches nothing.
    problems: HashMap<String, String>,
}

impl Catalog {
    pub(crate) fn new(
        id: Arc<str>,
        file: Arc<Vec<SubscriptionSpec>>,
        api_outputs: Vec<String>,
        api: Option<SharedApiList>,
    ) -> Result<Self, BuildError> {
        let me = Self {
            id,
            api_outputs,
            file: Mutex::new(file),
            api,
            compiled: Mutex::new(Compiled::default()),
            current: ArcSwap::from_pointee(SubscriptionSet::compile(&[])?),
            recent: Recent::default(),
        };
        me.recompile()?;
        Ok(me)
    }

    /// The set to match with: recompiled first when the API list changed since.
    pub(crate) fn current(&self) -> Arc<SubscriptionSet> {
        if let Some(api) = &self.api {
            let version = lock(api).version;
            if version != lock(&self.compiled).api_version
                && let Err(e) = self.recompile()
            {
                // Only the file's subscriptions could fail here, and they compiled
                // before: keep matching with what runs.
                tracing::error!(component_id = %self.id, error = %e, "cannot recompile the subscriptions");
            }
        }
        self.current.load_full()
    }

    /// A changed `file:` was read and compiles: it replaces the file's subscriptions.
    pub(crate) fn set_file(&self, specs: Vec<SubscriptionSpec>) -> Result<(), BuildError> {
        let old = std::mem::replace(&mut *lock(&self.file), Arc::new(specs));
        self.recompile().inspect_err(|_| *lock(&self.file) = old)
    }

    /// The file's subscriptions.
    pub(crate) fn file_specs(&self) -> Arc<Vec<SubscriptionSpec>> {
        Arc::clone(&lock(&self.file))
    }

    /// Why the API subscription `id` matches nothing, if it does.
    pub(crate) fn problem(&self, id: &str) -> Option<String> {
        lock(&self.compiled).problems.get(id).cloned()
    }

    /// Whether `name` belongs to a file subscription.
    pub(crate) fn file_has(&self, name: &str) -> bool {
        lock(&self.file).iter().any(|s| s.name == name)
    }

    /// Compiles the file's subscriptions with every API subscription that fits.
    pub(crate) fn recompile(&self) -> Result<(), BuildError> {
        // Lock order: compiled, then file, then the API list.
        let mut compiled = lock(&self.compiled);
        let file = Arc::clone(&lock(&self.file));
        let (api, version): (Vec<ApiSubscription>, u64) = match &self.api {
            Some(list) => {
                let list = lock(list);
                (list.subs.clone(), list.version)
            }
            None => (Vec::new(), 0),
        };
        let taken: HashSet<&str> = file.iter().map(|s| s.name.as_str()).collect();
        let mut problems = HashMap::new();
        let mut routed: Vec<(&SubscriptionSpec, Option<Route<'_>>)> =
            file.iter().map(|s| (s, None)).collect();
        for sub in &api {
            let problem = if taken.contains(sub.spec.name.as_str()) {
                Some(format!(
                    "the pipeline file now declares a subscription named `{}`",
                    sub.spec.name
                ))
            } else if !self.api_outputs.contains(&sub.output) {
                Some(format!(
                    "`{}` is no longer one of the transform's `api_outputs`",
                    sub.output
                ))
            } else {
                None
            };
            match problem {
                Some(p) => {
                    tracing::warn!(component_id = %self.id, subscription = %sub.id, problem = %p, "an API subscription matches nothing");
                    problems.insert(sub.id.clone(), p);
                }
                None => routed.push((
                    &sub.spec,
                    Some(Route {
                        output: &sub.output,
                        id: &sub.id,
                    }),
                )),
            }
        }
        let set = match SubscriptionSet::compile_routed(&routed) {
            Ok(set) => set,
            Err(e) => {
                // Each API subscription compiled when it was made; leave them all out
                // rather than the file's.
                tracing::error!(component_id = %self.id, error = %e, "the API subscriptions do not compile together; matching with the file's only");
                for sub in &api {
                    problems
                        .entry(sub.id.clone())
                        .or_insert_with(|| format!("does not compile: {e}"));
                }
                SubscriptionSet::compile(&file)?
            }
        };
        self.current.store(Arc::new(set));
        *compiled = Compiled {
            api_version: version,
            problems,
        };
        Ok(())
    }
}
