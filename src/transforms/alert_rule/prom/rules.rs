//! Prometheus rule files (`groups` of alerting and recording rules) and the alerting
//! state of each rule, as Prometheus keeps it: an alert per label set of the result,
//! pending until `for` has passed, firing, kept firing `keep_firing_for` after the
//! condition stops, then resolved.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;

use super::eval::{self, Labels, NAME, Store, Value};
use super::gotmpl::{Data, GoTemplate};
use super::parse::{self, Expr, Kind};

/// How long a resolved alert is kept, as Prometheus keeps it (`resolvedRetention`).
const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    groups: Vec<GroupConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupConfig {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    rules: Vec<RuleConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    record: Option<String>,
    expr: serde_json::Value,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A group: its rules run in order, every `interval`.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) interval: Option<Duration>,
    pub(crate) rules: Vec<PromRule>,
    limit: usize,
    pub(crate) last_eval: Option<i64>,
    /// Whether alerting rules write Prometheus's `ALERTS` and `ALERTS_FOR_STATE`
    /// series, set when some rule reads them.
    pub(crate) write_alerts: bool,
}

#[derive(Debug)]
pub(crate) struct PromRule {
    pub(crate) name: String,
    expr: Expr,
    kind: RuleKind,
    labels: Vec<(String, GoTemplate)>,
    annotations: Vec<(String, GoTemplate)>,
    /// The rule's labels, as written.
    literal: Vec<(String, String)>,
    /// The series a recording rule (or an alerting rule's `ALERTS`) wrote at its
    /// last evaluation.
    pub(super) recorded: HashSet<Labels>,
    /// What identifies the rule across reloads and restarts: its file, group, kind,
    /// name, labels as written and place among the rules with the same ones.
    pub(crate) key: String,
    /// Alerts by their label set (alerting rules only); shared with the instance a
    /// reload replaces when the rule is unchanged, so neither notifies twice.
    pub(crate) active: Arc<Mutex<Alerts>>,
}

#[derive(Debug, Clone, Copy)]
enum RuleKind {
    Alert { hold_ms: i64, keep_ms: i64 },
    Record,
}

/// A rule's alerts by label set.
pub(crate) type Alerts = HashMap<Labels, Active>;

/// Locks a rule's alerts; a panic elsewhere does not make them unusable.
pub(crate) fn lock(a: &Mutex<Alerts>) -> MutexGuard<'_, Alerts> {
    a.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
pub(crate) enum State {
    Pending,
    Firing,
    Inactive,
}

/// One alert of a rule.
#[derive(Debug, Clone)]
pub(crate) struct Active {
    pub(crate) state: State,
    pub(crate) active_at: i64,
    pub(crate) fired_at: Option<i64>,
    pub(crate) resolved_at: Option<i64>,
    pub(super) keep_firing_since: Option<i64>,
    pub(crate) value: f64,
    pub(crate) annotations: BTreeMap<String, String>,
    /// What notifications know of it (see `notify::Policy`).
    pub(crate) notice: Option<super::super::lifecycle::Alert>,
}

fn duration(text: &Option<String>, what: &str) -> Result<Duration, String> {
    match text {
        None => Ok(Duration::ZERO),
        Some(t) => parse::duration(t)
            .ok_or_else(|| format!("`{what}`: {t:?} is not a duration such as 5m")),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Reads and compiles a rule file; errors name the group, the rule and the construct.
pub(crate) fn load(path: &Path) -> Result<Vec<Group>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut groups = compile(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    // Groups are Prometheus's per file: the same name in two files is two groups.
    for rule in groups.iter_mut().flat_map(|g| g.rules.iter_mut()) {
        rule.key = format!("{}\u{1f}{}", path.display(), rule.key);
    }
    Ok(groups)
}

pub(crate) fn compile(text: &str) -> Result<Vec<Group>, String> {
    let file: FileConfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let mut names = HashSet::new();
    let mut groups = Vec::new();
    for g in file.groups {
        if !names.insert(g.name.clone()) {
            return Err(format!("group {:?} is defined twice", g.name));
        }
        let at = |e: String| format!("group {:?}: {e}", g.name);
        let interval = match &g.interval {
            None => None,
            Some(_) => Some(duration(&g.interval, "interval").map_err(at)?),
        };
        if interval.is_some_and(|d| d.is_zero()) {
            return Err(at("`interval` must be longer than zero".into()));
        }
        // A rule's state follows it by group, kind, name and labels (and place among
        // rules with the same ones), as Prometheus carries alerts over a reload
        // (`CopyState`): an edited rule keeps its alerts, resolving those its new form
        // no longer finds, and adding or moving a same-named rule changes nothing.
        let mut seen_names: HashMap<(bool, String), usize> = HashMap::new();
        let rules = g
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let name = r
                    .alert
                    .clone()
                    .or_else(|| r.record.clone())
                    .unwrap_or_default();
                let labels: Vec<String> = r
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k:?}={v:?}"))
                    .collect();
                let name = format!("{name}\u{1f}{}", labels.join(","));
                let nth = seen_names
                    .entry((r.alert.is_some(), name.clone()))
                    .or_default();
                let key = format!(
                    "{}\u{1f}{}\u{1f}{name}\u{1f}{nth}",
                    g.name,
                    if r.alert.is_some() { "alert" } else { "record" }
                );
                *nth += 1;
                compile_rule(r, key).map_err(|e| at(format!("rule {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        groups.push(Group {
            name: g.name,
            interval,
            rules,
            limit: g.limit.unwrap_or(0),
            last_eval: None,
            write_alerts: false,
        });
    }
    Ok(groups)
}

fn compile_rule(r: RuleConfig, key: String) -> Result<PromRule, String> {
    let (name, kind) = match (&r.alert, &r.record) {
        (Some(a), None) => {
            let hold_ms = ms(duration(&r.for_, "for")?);
            let keep_ms = ms(duration(&r.keep_firing_for, "keep_firing_for")?);
            (a.clone(), RuleKind::Alert { hold_ms, keep_ms })
        }
        (None, Some(rec)) => {
            if r.for_.is_some() || r.keep_firing_for.is_some() || !r.annotations.is_empty() {
                return Err(format!(
                    "{rec:?}: a recording rule takes no `for`, `keep_firing_for` or `annotations`"
                ));
            }
            (rec.clone(), RuleKind::Record)
        }
        _ => return Err("a rule has exactly one of `alert` and `record`".into()),
    };
    let at = |e: String| format!("{name:?}: {e}");
    let source = match &r.expr {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(at("`expr` must be a PromQL expression".into())),
    };
    let expr = parse::parse(&source).map_err(|e| at(format!("`expr` {e}")))?;
    // A scalar is one sample without labels to Prometheus, alert or record; a range
    // is nothing either can use.
    if expr.kind() == Kind::Range {
        return Err(at(
            "`expr` must give an instant vector, not a range: apply a function such as rate()"
                .into(),
        ));
    }
    // A recording rule's labels are taken as written; an alert's are templates, and
    // as written they are the base of its `ALERTS` series (as in Prometheus).
    let literal: Vec<(String, String)> = r
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let templates = |map: BTreeMap<String, String>, what: &str| {
        map.into_iter()
            .map(|(k, v)| {
                GoTemplate::parse(&v)
                    .map(|t| (k.clone(), t))
                    .map_err(|e| at(format!("`{what}.{k}`: {e}")))
            })
            .collect::<Result<Vec<_>, String>>()
    };
    Ok(PromRule {
        labels: templates(r.labels, "labels")?,
        annotations: templates(r.annotations, "annotations")?,
        name,
        expr,
        kind,
        key,
        literal,
        recorded: HashSet::new(),
        active: Arc::default(),
    })
}

impl Group {
    /// The longest time back any rule reads.
    pub(crate) fn reach(&self) -> Duration {
        self.rules
            .iter()
            .map(|r| r.expr.reach())
            .max()
            .unwrap_or_default()
    }

    /// The metric names the rules read; `None` when a selector has no name.
    pub(crate) fn metric_names(&self) -> Option<Vec<String>> {
        let mut names = Vec::new();
        for r in &self.rules {
            for s in r.expr.selectors() {
                names.push(s.name.clone()?);
            }
            if let RuleKind::Record = r.kind {
                names.push(r.name.clone());
            }
        }
        Some(names)
    }

    /// Evaluates every rule at `t`, in order (a recording rule's series are there for
    /// the rules after it). Returns errors to log, by rule.
    pub(crate) fn evaluate(
        &mut self,
        store: &mut Store,
        t: i64,
        max_series: usize,
    ) -> Vec<(String, String)> {
        self.last_eval = Some(t);
        let mut errors = Vec::new();
        for rule in &mut self.rules {
            let result = rule.evaluate(store, t, max_series, self.limit);
            if self.write_alerts {
                rule.write_alerts(store, t, max_series);
            }
            if let Err(e) = result {
                errors.push((rule.name.clone(), e));
            }
        }
        errors
    }
}

impl PromRule {
    fn evaluate(
        &mut self,
        store: &mut Store,
        t: i64,
        max_series: usize,
        limit: usize,
    ) -> Result<(), String> {
        let samples = match eval::eval(&self.expr, store, t).map_err(|e| e.to_string())? {
            Value::Vector(v) => v,
            Value::Scalar(n) => vec![eval::Sample {
                labels: Labels::new(),
                value: n,
            }],
            Value::Matrix(_) => Vec::new(),
        };
        let RuleKind::Alert { hold_ms, keep_ms } = self.kind else {
            return self.record(samples, store, t, max_series, limit);
        };
        let mut active = lock(&self.active);
        let mut seen: HashMap<Labels, (f64, BTreeMap<String, String>)> = HashMap::new();
        for s in samples {
            let mut labels = s.labels.clone();
            labels.remove(NAME);
            for (k, tmpl) in &self.labels {
                labels.insert(k.clone(), render(tmpl, &s.labels, s.value));
            }
            labels.retain(|_, v| !v.is_empty());
            labels.insert("alertname".into(), self.name.clone());
            let annotations = self
                .annotations
                .iter()
                .map(|(k, tmpl)| (k.clone(), render(tmpl, &s.labels, s.value)))
                .collect();
            if seen.insert(labels, (s.value, annotations)).is_some() {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
        }
        if limit > 0 && seen.len() > limit {
            // As Prometheus: a rule over its limit has no alerts.
            active.clear();
            return Err(format!(
                "{} alerts exceed the group's limit {limit}",
                seen.len()
            ));
        }
        for (labels, (value, annotations)) in &seen {
            match active.get_mut(labels) {
                Some(a) if a.state != State::Inactive => {
                    a.value = *value;
                    a.annotations.clone_from(annotations);
                    a.keep_firing_since = None;
                }
                _ => {
                    active.insert(
                        labels.clone(),
                        Active {
                            state: State::Pending,
                            active_at: t,
                            fired_at: None,
                            resolved_at: None,
                            keep_firing_since: None,
                            value: *value,
                            annotations: annotations.clone(),
                            notice: None,
                        },
                    );
                }
            }
        }
        active.retain(|labels, a| {
            if seen.contains_key(labels) {
                return true;
            }
            if a.state == State::Pending
                || a.resolved_at
                    .is_some_and(|r| t.saturating_sub(r) > RESOLVED_RETENTION_MS)
            {
                return false;
            }
            if a.state == State::Firing && keep_ms > 0 {
                let since = *a.keep_firing_since.get_or_insert(t);
                if t.saturating_sub(since) < keep_ms {
                    return true;
                }
            }
            if a.state != State::Inactive {
                a.state = State::Inactive;
                a.resolved_at = Some(t);
            }
            true
        });
        for a in active.values_mut() {
            // Saturating: times come back from a snapshot file too.
            if a.state == State::Pending && t.saturating_sub(a.active_at) >= hold_ms {
                a.state = State::Firing;
                a.fired_at = Some(t);
            }
        }
        Ok(())
    }
}

impl PromRule {
    /// Prometheus's series for an alerting rule's pending and firing alerts:
    /// `ALERTS{alertstate=…}` at 1 and `ALERTS_FOR_STATE` at the time (s) the alert
    /// became active, with staleness markers for those written last time and not now,
    /// so that rules after this one (and in later groups) can read them.
    fn write_alerts(&mut self, store: &mut Store, t: i64, max_series: usize) {
        if !matches!(self.kind, RuleKind::Alert { .. }) {
            return;
        }
        let mut now = HashSet::new();
        for (labels, a) in lock(&self.active).iter() {
            let state = match a.state {
                State::Pending => "pending",
                State::Firing => "firing",
                State::Inactive => continue,
            };
            // Prometheus starts from the rule's labels as written, then sets the
            // alert's: a label whose template rendered empty keeps its raw text.
            let mut base: Labels = self.literal.iter().cloned().collect();
            base.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            let mut alerts = base.clone();
            alerts.insert(NAME.into(), "ALERTS".into());
            alerts.insert("alertstate".into(), state.into());
            let mut for_state = base;
            for_state.insert(NAME.into(), "ALERTS_FOR_STATE".into());
            #[allow(clippy::cast_precision_loss)]
            let since = (a.active_at / 1000) as f64;
            for (series, value) in [(alerts, 1.0), (for_state, since)] {
                store.push(series.clone(), t, value, max_series);
                now.insert(series);
            }
        }
        for gone in self.recorded.difference(&now) {
            store.push(gone.clone(), t, eval::STALE, max_series);
        }
        self.recorded = now;
    }

    /// A recording rule's output: its series at `t`, with the rule's labels set as
    /// written (an empty one removes the label), and a staleness marker for each
    /// series it recorded last time and not now, so that readers see it gone at once.
    fn record(
        &mut self,
        samples: Vec<eval::Sample>,
        store: &mut Store,
        t: i64,
        max_series: usize,
        limit: usize,
    ) -> Result<(), String> {
        let over = limit > 0 && samples.len() > limit;
        let mut now = HashSet::new();
        if !over {
            for s in samples {
                let mut labels = s.labels;
                for (k, v) in &self.literal {
                    if v.is_empty() {
                        labels.remove(k);
                    } else {
                        labels.insert(k.clone(), v.clone());
                    }
                }
                labels.insert(NAME.into(), self.name.clone());
                if !now.insert(labels.clone()) {
                    return Err(
                        "vector contains metrics with the same labelset after applying rule labels"
                            .into(),
                    );
                }
                store.push(labels, t, s.value, max_series);
            }
        }
        for gone in self.recorded.difference(&now) {
            store.push(gone.clone(), t, eval::STALE, max_series);
        }
        self.recorded = now;
        if over {
            return Err(format!(
                "the rule's series exceed the group's limit {limit}"
            ));
        }
        Ok(())
    }
}

fn render(t: &GoTemplate, labels: &Labels, value: f64) -> String {
    t.render(&Data { labels, value })
        .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
groups:
  - name: node
    rules:
      - record: job:temp:max
        expr: max by (job) (temp)
      - alert: Hot
        expr: job:temp:max > 60
        for: 2m
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.job }} is at {{ $value }}"
"#;

    #[test]
    fn alerts_go_pending_firing_and_resolved_as_in_prometheus() {
        let mut groups = compile(FILE).expect("compile");
        let mut store = Store::default();
        let push = |store: &mut Store, t: i64, v: f64| {
            let labels: Labels = [(NAME, "temp"), ("job", "api"), ("instance", "a")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            store.push(labels, t, v, 100);
        };
        let mut states = Vec::new();
        for (minute, v) in [(0, 50.0), (1, 70.0), (2, 70.0), (3, 70.0), (4, 50.0)] {
            let t = minute * 60_000;
            push(&mut store, t, v);
            let errors = groups[0].evaluate(&mut store, t, 100);
            assert!(errors.is_empty(), "{errors:?}");
            let rule = &groups[0].rules[1];
            states.push(lock(&rule.active).values().next().map(|a| a.state));
        }
        assert_eq!(
            states,
            vec![
                None,
                Some(State::Pending),
                Some(State::Pending),
                Some(State::Firing),
                Some(State::Inactive)
            ]
        );
        let alerts = lock(&groups[0].rules[1].active);
        let (labels, alert) = alerts.iter().next().expect("alert");
        assert_eq!(labels.get("severity").map(String::as_str), Some("critical"));
        assert_eq!(labels.get("alertname").map(String::as_str), Some("Hot"));
        assert_eq!(alert.annotations["summary"], "api is at 70");
        assert_eq!(
            (alert.fired_at, alert.resolved_at),
            (Some(180_000), Some(240_000))
        );
    }

    #[test]
    fn what_sluice_cannot_evaluate_fails_naming_the_rule_and_construct() {
        let bad = "groups:\n  - name: g\n    rules:\n      - alert: Q\n        expr: histogram_quantile(0.9, rate(x[5m]))\n";
        let e = compile(bad).expect_err("unsupported");
        assert!(
            e.contains("group \"g\"") && e.contains("\"Q\"") && e.contains("histogram_quantile"),
            "{e}"
        );
        let template = "groups:\n  - name: g\n    rules:\n      - alert: T\n        expr: up == 0\n        annotations:\n          d: '{{ range $labels }}{{ end }}'\n";
        let e = compile(template).expect_err("range");
        assert!(e.contains("annotations.d") && e.contains("range"), "{e}");
        // Prometheus takes a scalar (one sample without labels), so sluice does too.
        let scalar = "groups:\n  - name: g\n    rules:\n      - alert: S\n        expr: '1'\n";
        assert!(compile(scalar).is_ok());
    }
}
