//! `alert_rule`: Prometheus-style alert rules over the events that flow through.
//!
//! Input events are consumed (settled as delivered: what the rules needed is now in
//! their state); alerts are new events on the default output, in the normalized alert
//! schema (see [`notify::alert_event`]).
//!
//! - Samples come from metric events (`event_type: metric`, `name`, numeric `value`,
//!   `labels`); `count(field op literal)[w]` counts events of any kind. A sample's time
//!   is its arrival time by the component's clock, not a time field of the event, so
//!   late or replayed events count as now.
//! - A rule splits into one series per value set of its `group_by` labels, read from
//!   the event's `labels` object, else from a top-level field of that name; an event
//!   lacking one goes to the series where that label is empty. At most `max_series`
//!   series per rule: samples of new ones beyond it are dropped (a warning, and the
//!   `sluice_alert_rule_series_dropped_total` counter).
//! - Rules are evaluated in `flush`, every `evaluation_interval` (the topology's timer),
//!   and once more before the component stops or is replaced. Evaluation moves each
//!   series through inactive → pending → firing → resolved ([`lifecycle`]), then the
//!   notification policy decides what to send ([`notify`]), after silences
//!   ([`silences`]) and inhibition ([`inhibit`]).
//! - State survives restarts and hot reloads per rule definition ([`snapshot`]).
//!
//! Prometheus rule files (`rule_files`) are evaluated by [`prom`].
//!
//! Files: `config.rs` options, `expr.rs` the expression parser, `window.rs` windows
//! and aggregations, `lifecycle.rs` phases, `notify.rs` policy and alert events,
//! `silences.rs`, `inhibit.rs`, `snapshot.rs`.

pub(crate) mod config;
pub(crate) mod expr;
pub(crate) mod lifecycle;
mod metrics;
pub(crate) mod notify;
pub(crate) mod prom;
pub(crate) mod snapshot;
pub(crate) mod window;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use vrl::value::{ObjectMap, Value};

use crate::alert::Status;
use crate::silences::inhibit::{self, InhibitRule};
use crate::silences::{self, Silence, SilenceStore};
pub(crate) use config::AlertRuleConfig;
use config::Rule;
use lifecycle::{Group, Phase, Transition};
use metrics::RuleMetrics;
use notify::{Decision, Policy};
use snapshot::{RuleState, SharedRule, lock};

use crate::clock::Clock;
use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::{EventBatch, EventStatus, SourceId};
use crate::telemetry::LabeledCounter;

use crate::units::millis as ms;

impl TransformConfig for AlertRuleConfig {
    fn type_name(&self) -> &'static str {
        "alert_rule"
    }

    /// The rule files: an edit reloads the component, as the pipeline file's does.
    fn files(&self) -> Vec<PathBuf> {
        self.rule_files.clone()
    }

    fn build(&self, cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        config::check_policy(self)?;
        let rules = self
            .rules
            .iter()
            .map(Rule::compile)
            .collect::<Result<Vec<_>, _>>()?;
        let inhibit = inhibit::rules(&self.inhibit_rules).map_err(BuildError)?;
        let prom = if self.rule_files.is_empty() {
            None
        } else {
            Some(
                prom::Prom::load(
                    &cx.id,
                    &self.rule_files,
                    cx.data_dir.as_deref(),
                    self.max_series,
                )
                .map_err(|e| BuildError(format!("`rule_files`: {e}")))?,
            )
        };
        let own_silences = self
            .silences
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                // Deterministic: a reload of the same config yields the same ids.
                let seed = format!("{}/{i}/{}", cx.id, spec.matchers.join(","));
                let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes());
                Silence::new(spec.clone(), id.to_string(), &cx.id)
                    .map_err(|e| BuildError(format!("`silences[{i}]`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keys: Vec<String> = rules.iter().map(|r| r.key.clone()).collect();
        let (silences, persist, states) = match &cx.data_dir {
            Some(dir) => {
                silences::attach_dir(dir).map_err(|e| BuildError(format!("silences: {e}")))?;
                let store = silences::global();
                store.replace_origin(&cx.id, own_silences);
                let path = snapshot::path_for(dir, &cx.id);
                let (component, states) = snapshot::take_over(&path, &keys);
                (store, Some((path, component)), states)
            }
            None => {
                let store = SilenceStore::memory();
                store.replace_origin(&cx.id, own_silences);
                let states = keys.iter().map(|_| SharedRule::default()).collect();
                (Arc::new(store), None, states)
            }
        };
        let now = cx.clock.wall().timestamp_millis();
        for (rule, state) in rules.iter().zip(&states) {
            let mut s = lock(state);
            for g in s.groups.values_mut() {
                g.fit(rule);
            }
            if rule.is_absent() && rule.group_by.is_empty() && s.groups.is_empty() {
                s.groups
                    .insert(String::new(), Group::new(Vec::new(), rule, now));
            }
        }
        let mut by_metric: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (r, rule) in rules.iter().enumerate() {
            for (slot, m) in rule.metrics.iter().enumerate() {
                by_metric.entry(m.clone()).or_default().push((r, slot));
            }
        }
        let counters = rules
            .iter()
            .map(|r| RuleMetrics::new(&cx.metrics, &r.name))
            .collect();
        Ok(Box::new(AlertRule {
            id: SourceId::intern(&cx.id),
            with_filters: (0..rules.len())
                .filter(|r| !rules[*r].filters.is_empty())
                .collect(),
            warned: vec![false; rules.len()],
            lock_order: {
                let mut order: Vec<usize> = (0..rules.len()).collect();
                order.sort_by(|a, b| rules[*a].key.cmp(&rules[*b].key));
                order
            },
            rules,
            states,
            by_metric,
            prom,
            prom_dropped: RuleMetrics::new(&cx.metrics, "rule_files").dropped,
            prom_warned: false,
            prom_sent: {
                let m = RuleMetrics::new(&cx.metrics, "rule_files");
                (m.firing, m.resolved)
            },
            policy: Policy {
                group_wait: ms(self.group_wait),
                group_interval: ms(self.group_interval),
                repeat_interval: ms(self.repeat_interval),
                send_resolved: self.send_resolved,
            },
            inhibit,
            silences,
            clock: Arc::clone(&cx.clock),
            counters,
            interval: self.evaluation_interval,
            stale_ms: ms(self.resolve_timeout),
            max_series: self.max_series,
            persist,
            snapshot_every: ms(self.snapshot_interval),
            last_write: now,
            samples_dirty: false,
            state_dirty: false,
            running: false,
        }))
    }
}

struct AlertRule {
    id: SourceId,
    rules: Vec<Rule>,
    /// Parallel to `rules`.
    states: Vec<SharedRule>,
    /// Metric name → (rule index, metric slot).
    by_metric: HashMap<String, Vec<(usize, usize)>>,
    /// Rules from Prometheus rule files (`rule_files`).
    prom: Option<prom::Prom>,
    /// Their series dropped for `max_series`, and notifications sent (firing, resolved).
    prom_dropped: Arc<LabeledCounter>,
    prom_warned: bool,
    prom_sent: (Arc<LabeledCounter>, Arc<LabeledCounter>),
    /// Rules with `count(field op literal)` filters.
    with_filters: Vec<usize>,
    /// Rule indices sorted by rule key: the order [`lock_all`] locks them in.
    lock_order: Vec<usize>,
    /// Whether the max_series warning was logged, per rule.
    warned: Vec<bool>,
    policy: Policy,
    inhibit: Vec<InhibitRule>,
    silences: Arc<SilenceStore>,
    clock: Arc<dyn Clock>,
    counters: Vec<RuleMetrics>,
    interval: Duration,
    stale_ms: i64,
    max_series: usize,
    persist: Option<(PathBuf, snapshot::Component)>,
    snapshot_every: i64,
    last_write: i64,
    /// Samples arrived since the last write.
    samples_dirty: bool,
    /// A phase or notification changed since the last write.
    state_dirty: bool,
    /// Whether `process` or `flush` ran (see [`AlertRule::started`]).
    running: bool,
}

/// Locks every rule state, in the order of their keys: an old and a new instance
/// share states during a reload and may list the rules in another order, so a common
/// order is what keeps them from deadlocking. The guards come back in rule order.
fn lock_all<'a>(states: &'a [SharedRule], order: &[usize]) -> Vec<MutexGuard<'a, RuleState>> {
    let mut slots: Vec<Option<MutexGuard<'a, RuleState>>> = states.iter().map(|_| None).collect();
    for &i in order {
        slots[i] = Some(lock(&states[i]));
    }
    slots.into_iter().flatten().collect()
}

fn text(v: Option<&Value>) -> Option<std::borrow::Cow<'_, str>> {
    v?.to_str_lossy()
}

use crate::event::as_f64 as number;

/// The series of `rule` an event belongs to, created if there is room.
#[allow(clippy::too_many_arguments)]
fn series<'a>(
    rule: &Rule,
    state: &'a mut RuleState,
    event: &ObjectMap,
    key: &mut String,
    now: i64,
    max_series: usize,
    counters: &RuleMetrics,
    warned: &mut bool,
) -> Option<&'a mut Group> {
    key.clear();
    let labels = match event.get("labels") {
        Some(Value::Object(l)) => Some(l),
        _ => None,
    };
    let value_of = |name: &str| -> Option<std::borrow::Cow<'_, str>> {
        labels
            .and_then(|l| l.get(name))
            .or_else(|| event.get(name))
            .filter(|v| !matches!(v, Value::Null))
            .map(Value::to_string_lossy)
    };
    for (i, name) in rule.group_by.iter().enumerate() {
        if i > 0 {
            key.push('\u{1f}');
        }
        if let Some(v) = value_of(name) {
            key.push_str(&v);
        }
    }
    if let Some(i) = state.groups.get_index_of(key.as_str()) {
        return state.groups.get_index_mut(i).map(|(_, g)| g);
    }
    if state.groups.len() >= max_series {
        counters.dropped.add(1);
        if !*warned {
            *warned = true;
            tracing::warn!(rule = %rule.name, max_series, "rule holds max_series label sets; samples of new ones are dropped");
        }
        return None;
    }
    let parts = rule
        .group_by
        .iter()
        .map(|n| value_of(n).map(|v| v.into_owned()).unwrap_or_default())
        .collect();
    Some(
        state
            .groups
            .entry(key.clone())
            .or_insert_with(|| Group::new(parts, rule, now)),
    )
}

/// Keeps the latest input event's values of the labels `rule`'s templates read (from
/// its `labels` object, else a top-level field of that name).
fn note_inputs(rule: &Rule, g: &mut Group, event: &ObjectMap) {
    if rule.input_labels.is_empty() {
        return;
    }
    let labels = match event.get("labels") {
        Some(Value::Object(l)) => Some(l),
        _ => None,
    };
    for name in &rule.input_labels {
        let value = labels
            .and_then(|l| l.get(name.as_str()))
            .or_else(|| event.get(name.as_str()))
            .filter(|v| !matches!(v, Value::Null));
        match value {
            Some(v) => {
                let text = v.to_string_lossy();
                if g.inputs.get(name).map(String::as_str) != Some(text.as_ref()) {
                    g.inputs.insert(name.clone(), text.into_owned());
                }
            }
            None => {
                g.inputs.remove(name);
            }
        }
    }
}

impl Transform for AlertRule {
    fn process(&mut self, batch: EventBatch, _out: &mut TransformOutputs) {
        self.started();
        let now = self.clock.wall().timestamp_millis();
        let mut guards = lock_all(&self.states, &self.lock_order);
        let mut key = String::new();
        for event in batch {
            if let Value::Object(obj) = event.value() {
                let is_metric = text(obj.get("event_type")).as_deref() == Some("metric");
                let sample = is_metric
                    .then(|| Some((text(obj.get("name"))?, number(obj.get("value"))?)))
                    .flatten()
                    .filter(|(_, v)| v.is_finite());
                if let (Some(p), Some((name, value))) = (&mut self.prom, &sample)
                    && !p.ingest(name, obj, *value, now, self.max_series)
                {
                    self.prom_dropped.add(1);
                    if !self.prom_warned {
                        self.prom_warned = true;
                        tracing::warn!(component_id = %self.id, max_series = self.max_series, "the rule files' series reached max_series; samples of new ones are dropped");
                    }
                }
                if let Some((name, value)) = sample
                    && let Some(targets) = self.by_metric.get(name.as_ref())
                {
                    for &(r, slot) in targets {
                        let rule = &self.rules[r];
                        if let Some(g) = series(
                            rule,
                            &mut guards[r],
                            obj,
                            &mut key,
                            now,
                            self.max_series,
                            &self.counters[r],
                            &mut self.warned[r],
                        ) {
                            g.record(rule, slot, now, value);
                            note_inputs(rule, g, obj);
                            self.samples_dirty = true;
                        }
                    }
                }
                for &r in &self.with_filters {
                    let rule = &self.rules[r];
                    let hits: Vec<usize> = rule
                        .filters
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| f.matches(event.value()))
                        .map(|(i, _)| i)
                        .collect();
                    if hits.is_empty() {
                        continue;
                    }
                    if let Some(g) = series(
                        rule,
                        &mut guards[r],
                        obj,
                        &mut key,
                        now,
                        self.max_series,
                        &self.counters[r],
                        &mut self.warned[r],
                    ) {
                        for i in hits {
                            if let Some(h) = g.hits.get_mut(i) {
                                h.push(now);
                            }
                        }
                        note_inputs(rule, g, obj);
                        self.samples_dirty = true;
                    }
                }
            }
            event.settle(EventStatus::Delivered);
        }
    }

    fn flush_interval(&self) -> Option<Duration> {
        Some(self.interval)
    }

    fn flush(&mut self, out: &mut TransformOutputs) {
        self.started();
        self.evaluate(out);
        self.save(false);
    }
}

impl AlertRule {
    /// On first use: this instance is the component now, so states of rules it does not
    /// have can go.
    fn started(&mut self) {
        if self.running {
            return;
        }
        self.running = true;
        if let Some((_, component)) = &self.persist {
            let keys: Vec<String> = self.rules.iter().map(|r| r.key.clone()).collect();
            snapshot::prune(component, &keys);
        }
    }

    fn evaluate(&mut self, out: &mut TransformOutputs) {
        let wall = self.clock.wall();
        let now = wall.timestamp_millis();
        let mut guards = lock_all(&self.states, &self.lock_order);
        // Phases first: inhibition needs every firing alert of this evaluation.
        for (rule, state) in self.rules.iter().zip(guards.iter_mut()) {
            let stale_ms = self.stale_ms;
            let mut changed = false;
            state.groups.retain(|_, g| {
                g.prune(rule, now);
                let (holds, value) = g.test(rule, now, stale_ms);
                if g.step(holds, value, now, rule.for_ms) != Transition::None {
                    changed = true;
                }
                rule.is_absent() || !g.is_idle(stale_ms, now)
            });
            self.state_dirty |= changed;
        }
        if let Some(p) = &mut self.prom {
            p.evaluate(&self.id, now, self.interval, self.max_series);
        }
        let mut sources: Vec<(String, BTreeMap<String, String>, usize)> = Vec::new();
        if let (Some(p), false) = (&self.prom, self.inhibit.is_empty()) {
            p.sources(&self.inhibit, &mut sources);
        }
        if !self.inhibit.is_empty() {
            for (rule, state) in self.rules.iter().zip(guards.iter()) {
                for g in state.groups.values() {
                    if !matches!(g.phase, Phase::Firing { .. }) {
                        continue;
                    }
                    let labels = notify::labels(rule, &g.key);
                    let value = g.alert.as_ref().and_then(|a| a.value);
                    let severity = notify::severity(self.id, rule, &labels, &g.inputs, value);
                    let ml = notify::match_labels(&labels, &severity);
                    for (i, ir) in self.inhibit.iter().enumerate() {
                        if ir.is_source(&ml) {
                            sources.push((notify::fingerprint(&rule.name, &labels), ml.clone(), i));
                        }
                    }
                }
            }
        }
        for ((rule, state), counters) in
            self.rules.iter().zip(guards.iter_mut()).zip(&self.counters)
        {
            let mut firing = 0usize;
            for g in state.groups.values_mut() {
                if matches!(g.phase, Phase::Firing { .. }) {
                    firing += 1;
                }
                let Some(alert) = &mut g.alert else {
                    continue;
                };
                let labels = notify::labels(rule, &g.key);
                let severity = notify::severity(self.id, rule, &labels, &g.inputs, alert.value);
                let ml = notify::match_labels(&labels, &severity);
                let muted = self.silences.mutes(&ml, wall)
                    || (!sources.is_empty()
                        && inhibit::inhibited(
                            &self.inhibit,
                            &sources,
                            &notify::fingerprint(&rule.name, &labels),
                            &ml,
                        ));
                match self.policy.decide(alert, now, muted) {
                    Decision::Wait => {}
                    Decision::Send => {
                        out.default.push(notify::alert_event(
                            self.id,
                            rule,
                            (&labels, &g.inputs),
                            &severity,
                            alert,
                            wall,
                        ));
                        match alert.status {
                            Status::Firing => {
                                counters.firing.add(1);
                                alert.last_sent = Some((Status::Firing, now));
                            }
                            Status::Resolved => {
                                counters.resolved.add(1);
                                g.alert = None;
                            }
                        }
                        self.state_dirty = true;
                    }
                    Decision::Forget => {
                        g.alert = None;
                        self.state_dirty = true;
                    }
                }
            }
            counters.active.set(firing as f64);
        }
        if let Some(p) = &mut self.prom {
            let (firing, resolved) = p.notify(
                &prom::Notifying {
                    id: self.id,
                    policy: &self.policy,
                    silences: &self.silences,
                    inhibit: &self.inhibit,
                    sources: &sources,
                    wall,
                },
                &mut out.default,
            );
            self.prom_sent.0.add(firing as u64);
            self.prom_sent.1.add(resolved as u64);
            // What was notified is written at once; the samples and `for` timers
            // every `snapshot_interval`.
            self.state_dirty |= firing + resolved > 0;
            self.samples_dirty = true;
        }
    }

    /// Writes the snapshot when state changed, or samples did and `snapshot_interval`
    /// passed (or `force`).
    fn save(&mut self, force: bool) {
        let Some((path, component)) = &self.persist else {
            return;
        };
        let now = self.clock.wall().timestamp_millis();
        let due = self.state_dirty
            || (self.samples_dirty && (force || now - self.last_write >= self.snapshot_every));
        if !due {
            return;
        }
        let written = snapshot::write(path, component).and_then(|()| match &self.prom {
            Some(p) => p.save(),
            None => Ok(()),
        });
        match written {
            Ok(()) => {
                self.state_dirty = false;
                self.samples_dirty = false;
                self.last_write = now;
            }
            Err(e) => {
                tracing::warn!(component_id = %self.id, error = %e, "cannot write the alert_rule snapshot")
            }
        }
    }
}

impl Drop for AlertRule {
    fn drop(&mut self) {
        self.save(true);
        if let Some((path, component)) = &self.persist {
            snapshot::release(path, component);
        }
    }
}
