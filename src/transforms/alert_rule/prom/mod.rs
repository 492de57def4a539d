//! Prometheus rule files in `alert_rule` (`rule_files:`): the PromQL subset sluice
//! evaluates ([`parse`], [`eval`]), Go-template annotations ([`gotmpl`], [`gofmt`]),
//! and rule groups with Prometheus's alert states ([`rules`]). Samples are metric
//! events (`name`, `value`, `labels`) at their arrival time by the component's clock;
//! firing and resolved alerts become the same normalized alert events as the
//! transform's own rules, under the same notification policy, silences and inhibition.

mod ast;
pub(crate) mod eval;
mod gocase;
pub(crate) mod gofmt;
mod gofuncs;
pub(crate) mod gotmpl;
mod lex;
pub(crate) mod parse;
mod persist;
pub(crate) mod rules;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use vrl::value::{ObjectMap, Value};

use super::lifecycle::Alert;
use crate::alert::Status;
use crate::event::{Event, SourceId};
use eval::{Labels, NAME, Store};
use rules::{Active, Group, State};

/// The rule files' groups and the samples they read.
pub(crate) struct Prom {
    pub(crate) groups: Vec<Group>,
    /// Shared with the instance a reload replaces (samples do not depend on rules).
    store: Arc<Mutex<Store>>,
    /// The metric names kept; `None` keeps every metric (a selector without a name).
    names: Option<HashSet<String>>,
    reach_ms: i64,
    /// Where the state is written for a restart (with a `data_dir`).
    snapshot: Option<PathBuf>,
    /// Notified alerts of rules that are gone (deleted or renamed in the file): each is
    /// resolved once, so no page stays open for a rule that no longer exists.
    orphans: Vec<(Labels, Active)>,
}

impl Prom {
    /// Loads every file; errors name the file, group, rule and construct. The
    /// samples, and the alerts of every rule still there (by group and name), are taken over from the
    /// instance of component `id` this one replaces, or else read from what the last
    /// run wrote under `data_dir`.
    pub(crate) fn load(
        id: &str,
        files: &[PathBuf],
        data_dir: Option<&std::path::Path>,
        max_series: usize,
    ) -> Result<Self, String> {
        let mut groups = Vec::new();
        for f in files {
            groups.extend(rules::load(f)?);
        }
        let (store, live, mut orphans) = take_over(id, &mut groups);
        let snapshot = data_dir.map(|d| persist::path_for(d, id));
        if let (Some(path), false) = (&snapshot, live) {
            orphans = persist::read(path, &mut lock(&store), &mut groups, max_series);
        }
        let mut names = Some(HashSet::new());
        for g in &groups {
            match (g.metric_names(), &mut names) {
                (Some(list), Some(set)) => set.extend(list),
                _ => names = None,
            }
        }
        let reads_alerts = names
            .as_ref()
            .is_none_or(|n| n.contains("ALERTS") || n.contains("ALERTS_FOR_STATE"));
        for g in &mut groups {
            g.write_alerts = reads_alerts;
        }
        let reach = groups.iter().map(Group::reach).max().unwrap_or_default();
        Ok(Self {
            groups,
            store,
            names,
            reach_ms: i64::try_from(reach.as_millis()).unwrap_or(i64::MAX),
            snapshot,
            orphans,
        })
    }

    /// Writes the samples and the alerts for the next run (with a `data_dir`).
    pub(crate) fn save(&self) -> Result<(), String> {
        match &self.snapshot {
            Some(path) => persist::write(path, &lock(&self.store), &self.groups),
            None => Ok(()),
        }
    }

    /// Takes a metric event's sample when a rule reads its metric; `false` when it
    /// was a new series beyond `max_series`.
    pub(crate) fn ingest(
        &mut self,
        name: &str,
        event: &ObjectMap,
        value: f64,
        now: i64,
        max_series: usize,
    ) -> bool {
        if self.names.as_ref().is_some_and(|n| !n.contains(name)) {
            return true;
        }
        let mut labels = Labels::new();
        if let Some(Value::Object(l)) = event.get("labels") {
            for (k, v) in l {
                if !matches!(v, Value::Null) {
                    labels.insert(k.to_string(), v.to_string_lossy().into_owned());
                }
            }
        }
        labels.insert(NAME.into(), name.to_owned());
        lock(&self.store).push(labels, now, value, max_series)
    }

    /// Evaluates the groups that are due (each every `interval`, or `default` when it
    /// sets none), then forgets samples no rule reads any more.
    pub(crate) fn evaluate(&mut self, id: &str, now: i64, default: Duration, max_series: usize) {
        let mut longest = default;
        let mut store = lock(&self.store);
        for g in &mut self.groups {
            let every = g.interval.unwrap_or(default);
            longest = longest.max(every);
            let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
            if g.last_eval
                .is_some_and(|last| now.saturating_sub(last) < every_ms)
            {
                continue;
            }
            for (rule, error) in g.evaluate(&mut store, now, max_series) {
                tracing::warn!(component_id = %id, group = %g.name, rule = %rule, %error, "rule evaluation failed");
            }
        }
        let keep = self
            .reach_ms
            .saturating_add(i64::try_from(longest.as_millis()).unwrap_or(0));
        store.prune(now.saturating_sub(keep));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What each `alert_rule` instance with rule files shares with its replacement: the
/// samples, and the alerts of each rule by its key.
#[derive(Default)]
struct Shared {
    store: Weak<Mutex<Store>>,
    rules: HashMap<String, Weak<Mutex<rules::Alerts>>>,
}

/// Several per id: `validate` builds instances that are dropped at once, and they must
/// not hide the one running.
static SHARED: LazyLock<Mutex<HashMap<String, Vec<Shared>>>> = LazyLock::new(Default::default);

/// Takes over the samples and the rules' alerts (by group and name) of the instance of `id`
/// still alive (and says whether there was one), and registers this one's for its
/// replacement.
fn take_over(id: &str, groups: &mut [Group]) -> (Arc<Mutex<Store>>, bool, Vec<(Labels, Active)>) {
    let mut shared = lock(&SHARED);
    // Entries of instances that are gone go with them.
    shared.retain(|_, all| {
        all.retain(|s| s.store.strong_count() > 0);
        !all.is_empty()
    });
    let instances = shared.entry(id.to_owned()).or_default();
    let (old, store) = instances
        .iter()
        .rev()
        .find_map(|s| Some((s, s.store.upgrade()?)))
        .map_or((None, None), |(s, store)| (Some(s), Some(store)));
    let live = store.is_some();
    let store = store.unwrap_or_default();
    let mut mine = Shared {
        store: Arc::downgrade(&store),
        rules: HashMap::new(),
    };
    for rule in groups.iter_mut().flat_map(|g| g.rules.iter_mut()) {
        if let Some(alerts) = old
            .and_then(|o| o.rules.get(&rule.key))
            .and_then(Weak::upgrade)
        {
            rule.active = alerts;
        }
        mine.rules
            .insert(rule.key.clone(), Arc::downgrade(&rule.active));
    }
    // The notified alerts of the rules this instance no longer has.
    let mut orphans = Vec::new();
    for (key, alerts) in old.map(|o| &o.rules).into_iter().flatten() {
        if mine.rules.contains_key(key) {
            continue;
        }
        if let Some(alerts) = alerts.upgrade() {
            orphans.extend(notified(&rules::lock(&alerts)));
        }
    }
    instances.push(mine);
    (store, live, orphans)
}

/// The alerts of `alerts` a notification went out for.
pub(crate) fn notified(alerts: &rules::Alerts) -> Vec<(Labels, Active)> {
    alerts
        .iter()
        .filter(|(_, a)| a.notice.as_ref().is_some_and(|n| n.last_sent.is_some()))
        .map(|(l, a)| (l.clone(), a.clone()))
        .collect()
}

/// Brings an alert's notice up to date with its state: a firing alert is noticed from
/// when it fired; a resolved one that was noticed firing becomes resolved.
pub(crate) fn update_notice(a: &mut Active) {
    match (a.state, &mut a.notice) {
        (State::Firing, Some(n)) if n.status == Status::Firing => n.value = Some(a.value),
        (State::Firing, notice) => {
            let last_sent = notice.as_ref().and_then(|n| n.last_sent);
            *notice = Some(Alert {
                status: Status::Firing,
                starts_at: a.fired_at.unwrap_or(a.active_at),
                ends_at: None,
                value: Some(a.value),
                last_sent,
            });
        }
        (State::Inactive, Some(n)) if n.status == Status::Firing => {
            n.status = Status::Resolved;
            n.ends_at = a.resolved_at;
        }
        _ => {}
    }
}

/// The normalized severity of a Prometheus alert, from its `severity` label
/// (`warning` is medium, `page` critical; anything else unknown is medium).
pub(crate) fn severity(labels: &Labels) -> &'static str {
    match labels
        .get("severity")
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("critical" | "page" | "fatal" | "emergency") => "critical",
        Some("high" | "error" | "major") => "high",
        Some("low" | "minor") => "low",
        Some("info" | "informational" | "none") => "info",
        _ => "medium",
    }
}

/// The normalized alert event of one notification.
pub(crate) fn alert_event(
    component: SourceId,
    labels: &Labels,
    a: &Active,
    notice: &Alert,
    now: DateTime<Utc>,
) -> Event {
    let head = super::notify::Head {
        component,
        name: labels.get("alertname").map_or("", String::as_str),
        labels,
        severity: severity(labels),
    };
    let annotations = a.annotations.iter().map(|(k, v)| (k.as_str(), v.clone()));
    super::notify::notification(&head, notice, annotations, now)
}

/// What silences and inhibition match a Prometheus alert on: its labels, with the
/// normalized severity when it has no `severity` label.
pub(crate) fn match_labels(labels: &Labels) -> BTreeMap<String, String> {
    super::notify::match_labels(labels, severity(labels))
}

/// What notifying needs of the transform.
pub(crate) struct Notifying<'a> {
    pub(crate) id: SourceId,
    pub(crate) policy: &'a super::notify::Policy,
    pub(crate) silences: &'a crate::silences::SilenceStore,
    pub(crate) inhibit: &'a [crate::silences::inhibit::InhibitRule],
    /// Firing alerts that are inhibition sources: fingerprint, labels, rule index.
    pub(crate) sources: &'a [(String, BTreeMap<String, String>, usize)],
    pub(crate) wall: DateTime<Utc>,
}

impl Prom {
    /// The firing alerts that are sources of `inhibit` rules.
    pub(crate) fn sources(
        &self,
        inhibit: &[crate::silences::inhibit::InhibitRule],
        into: &mut Vec<(String, BTreeMap<String, String>, usize)>,
    ) {
        for r in self.groups.iter().flat_map(|g| g.rules.iter()) {
            for (labels, a) in rules::lock(&r.active).iter() {
                if a.state != State::Firing {
                    continue;
                }
                let ml = match_labels(labels);
                for (i, ir) in inhibit.iter().enumerate() {
                    if ir.is_source(&ml) {
                        let name = labels.get("alertname").map_or("", String::as_str);
                        into.push((super::notify::fingerprint(name, labels), ml.clone(), i));
                    }
                }
            }
        }
    }

    /// Sends what the policy says is due, after silences and inhibition; returns the
    /// number of firing and resolved notifications.
    pub(crate) fn notify(&mut self, n: &Notifying<'_>, out: &mut Vec<Event>) -> (usize, usize) {
        use super::notify::Decision;
        let now = n.wall.timestamp_millis();
        let mut sent = (0, 0);
        self.orphans.retain_mut(|(labels, a)| {
            if a.state != State::Inactive {
                a.state = State::Inactive;
                a.resolved_at = Some(now);
            }
            update_notice(a);
            let Some(notice) = &a.notice else {
                return false;
            };
            let muted = n.silences.mutes(&match_labels(labels), n.wall);
            match n.policy.decide(notice, now, muted) {
                Decision::Wait => true,
                Decision::Send => {
                    out.push(alert_event(n.id, labels, a, notice, n.wall));
                    sent.1 += usize::from(notice.status == Status::Resolved);
                    false
                }
                Decision::Forget => false,
            }
        });
        for rule in self.groups.iter().flat_map(|g| g.rules.iter()) {
            let mut alerts = rules::lock(&rule.active);
            for (labels, a) in alerts.iter_mut() {
                update_notice(a);
                let Some(notice) = &a.notice else {
                    continue;
                };
                let ml = match_labels(labels);
                let name = labels.get("alertname").map_or("", String::as_str);
                let muted = n.silences.mutes(&ml, n.wall)
                    || (!n.sources.is_empty()
                        && crate::silences::inhibit::inhibited(
                            n.inhibit,
                            n.sources,
                            &super::notify::fingerprint(name, labels),
                            &ml,
                        ));
                match n.policy.decide(notice, now, muted) {
                    Decision::Wait => {}
                    Decision::Send => {
                        out.push(alert_event(n.id, labels, a, notice, n.wall));
                        let status = notice.status;
                        match status {
                            Status::Firing => {
                                sent.0 += 1;
                                if let Some(notice) = &mut a.notice {
                                    notice.last_sent = Some((Status::Firing, now));
                                }
                            }
                            Status::Resolved => {
                                sent.1 += 1;
                                a.notice = None;
                            }
                        }
                    }
                    Decision::Forget => a.notice = None,
                }
            }
        }
        sent
    }
}
