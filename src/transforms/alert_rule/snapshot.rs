//! Rule state across reloads and restarts.
//!
//! State is kept per rule *key* (name + hash of the rule's definition), so an unchanged
//! rule finds its state again and a changed one starts fresh.
//!
//! - Restarts: the state of every rule is written to
//!   `<data_dir>/alert_rule/<component id>.json` (tmp + rename) and read when the
//!   component is built.
//! - Hot reloads: the topology builds the replacement *before* the old instance stops
//!   and takes its final flush, so a file written then would come too late. Live state
//!   therefore sits in a process-wide registry keyed by that snapshot path: each rule's
//!   state is an `Arc<Mutex<…>>` which the old and the new instance share while both
//!   exist, so nothing evaluated or notified in between is lost or sent twice. The
//!   registry entry goes when its last instance is dropped (the process stops or the
//!   component is removed), after a final write.
//!
//! Without a `data_dir` (`validate`, `sluice test`) nothing is read, shared or written.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::lifecycle::Group;

/// The state of one rule: its label sets by joined key.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct RuleState {
    pub(crate) groups: IndexMap<String, Group>,
}

pub(crate) type SharedRule = Arc<Mutex<RuleState>>;

/// Every rule state of one component, by rule key.
pub(crate) type Component = Arc<Mutex<HashMap<String, SharedRule>>>;

pub(crate) use crate::state_file::lock;

pub(crate) fn path_for(data_dir: &Path, id: &str) -> PathBuf {
    crate::state_file::path_for(data_dir, "alert_rule", id)
}

/// The states for `keys`: shared with a live instance of the same component, else read
/// from `path`, else empty. States of other rules stay until [`prune`]: the build may
/// be part of a reload that fails, and then the running instance still needs them.
pub(crate) fn take_over(path: &Path, keys: &[String]) -> (Component, Vec<SharedRule>) {
    let component: Component = crate::state_file::take_over(path, read);
    let mut rules = lock(&component);
    let states: Vec<SharedRule> = keys
        .iter()
        .map(|k| Arc::clone(rules.entry(k.clone()).or_default()))
        .collect();
    drop(rules);
    (component, states)
}

/// Forgets the states of rules other than `keys` (called once the instance runs, so
/// the reload that built it was committed).
pub(crate) fn prune(component: &Component, keys: &[String]) {
    lock(component).retain(|k, _| keys.contains(k));
}

fn read(path: &Path) -> HashMap<String, SharedRule> {
    crate::state_file::read_json::<HashMap<String, RuleState>>(path, "the alert_rule snapshot")
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, Arc::new(Mutex::new(v))))
        .collect()
}

/// Writes every rule state of `component` to `path`.
pub(crate) fn write(path: &Path, component: &Component) -> Result<(), String> {
    // In key order, like every other locker (see `lock_all` in mod.rs).
    let rules: BTreeMap<String, SharedRule> = lock(component)
        .iter()
        .map(|(k, v)| (k.clone(), Arc::clone(v)))
        .collect();
    let guards: Vec<(String, MutexGuard<'_, RuleState>)> =
        rules.iter().map(|(k, v)| (k.clone(), lock(v))).collect();
    let view: BTreeMap<&str, &RuleState> = guards.iter().map(|(k, g)| (k.as_str(), &**g)).collect();
    crate::state_file::write_json(path, &view)
}

/// Called when an instance goes away: the registry forgets `component` if no other
/// instance holds it.
pub(crate) fn release(path: &Path, component: &Component) {
    crate::state_file::release(path, component);
}
