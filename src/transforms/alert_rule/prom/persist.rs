//! Rule-file state across restarts: the samples the rules read and each rule's
//! alerts (with what was notified), in `<data_dir>/alert_rule/<id>.rules.json`,
//! written with the component's own snapshot. Prometheus keeps the same across a
//! restart in its TSDB: without it, a restarted sluice would start every `for` over,
//! notify firing alerts a second time, and never resolve an alert whose condition
//! ended while it was down.
//!
//! Values are written as their bits: NaN (and the staleness marker, a NaN) has no
//! JSON number.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::eval::{Labels, Store};
use super::rules::{Active, Group, State, lock};
use crate::transforms::alert_rule::lifecycle::Alert;

pub(crate) fn path_for(data_dir: &Path, id: &str) -> PathBuf {
    crate::state_file::path_for(data_dir, "alert_rule", id).with_extension("rules.json")
}

#[derive(Serialize, Deserialize, Default)]
struct Snapshot {
    series: Vec<SeriesState>,
    /// By rule key (a rule changed while sluice was down starts over).
    rules: BTreeMap<String, RuleState>,
}

#[derive(Serialize, Deserialize)]
struct SeriesState {
    labels: Labels,
    /// Time (ms) and the value's bits.
    samples: Vec<(i64, u64)>,
}

#[derive(Serialize, Deserialize, Default)]
struct RuleState {
    alerts: Vec<AlertState>,
    recorded: Vec<Labels>,
}

#[derive(Serialize, Deserialize)]
struct AlertState {
    labels: Labels,
    state: State,
    active_at: i64,
    fired_at: Option<i64>,
    resolved_at: Option<i64>,
    keep_firing_since: Option<i64>,
    value: u64,
    annotations: BTreeMap<String, String>,
    notice: Option<Alert>,
}

/// Writes the samples and every rule's state.
pub(crate) fn write(path: &Path, store: &Store, groups: &[Group]) -> Result<(), String> {
    let mut snapshot = Snapshot {
        series: store
            .each()
            .map(|(labels, samples)| SeriesState {
                labels: labels.clone(),
                samples: samples.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
            })
            .collect(),
        rules: BTreeMap::new(),
    };
    for rule in groups.iter().flat_map(|g| g.rules.iter()) {
        let alerts = lock(&rule.active)
            .iter()
            .map(|(labels, a)| AlertState {
                labels: labels.clone(),
                state: a.state,
                active_at: a.active_at,
                fired_at: a.fired_at,
                resolved_at: a.resolved_at,
                keep_firing_since: a.keep_firing_since,
                value: a.value.to_bits(),
                annotations: a.annotations.clone(),
                notice: a.notice.clone(),
            })
            .collect();
        let recorded = rule.recorded.iter().cloned().collect();
        snapshot
            .rules
            .insert(rule.key.clone(), RuleState { alerts, recorded });
    }
    crate::state_file::write_json(path, &snapshot)
}

/// Reads what a previous run wrote into `store` and the rules with the same key; a
/// missing file is a first start, an unreadable one is logged and skipped. Returns the
/// notified alerts of rules that are gone, to be resolved.
pub(crate) fn read(
    path: &Path,
    store: &mut Store,
    groups: &mut [Group],
    max_series: usize,
) -> Vec<(Labels, Active)> {
    let Some(mut snapshot) =
        crate::state_file::read_json::<Snapshot>(path, "the rule files' snapshot")
    else {
        return Vec::new();
    };
    for s in snapshot.series {
        for (t, bits) in s.samples {
            if !store.push(s.labels.clone(), t, f64::from_bits(bits), max_series) {
                break;
            }
        }
    }
    for rule in groups.iter_mut().flat_map(|g| g.rules.iter_mut()) {
        let Some(state) = snapshot.rules.remove(&rule.key) else {
            continue;
        };
        rule.recorded = state.recorded.into_iter().collect::<HashSet<_>>();
        lock(&rule.active).extend(state.alerts.into_iter().map(restore));
    }
    let mut gone = super::rules::Alerts::new();
    gone.extend(
        snapshot
            .rules
            .into_values()
            .flat_map(|r| r.alerts)
            .map(restore),
    );
    super::notified(&gone)
}

fn restore(a: AlertState) -> (Labels, Active) {
    (
        a.labels,
        Active {
            state: a.state,
            active_at: a.active_at,
            fired_at: a.fired_at,
            resolved_at: a.resolved_at,
            keep_firing_since: a.keep_firing_since,
            value: f64::from_bits(a.value),
            annotations: a.annotations,
            notice: a.notice,
        },
    )
}
