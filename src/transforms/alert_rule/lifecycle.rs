//! One label set of one rule: its samples, its phase and its alert.
//!
//! Phases: inactive → pending (the condition holds, `for` not yet elapsed) → firing →
//! (the condition stops holding) resolved, then inactive again. A condition with no
//! value (no samples, a division by zero) does not hold. The [`Alert`] record outlives
//! the firing phase until its resolution was notified (or dropped by the policy); if
//! the rule fires again before that, the same alert re-opens with its `starts_at`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::Rule;
use super::expr::{ArithOp, Condition, Expr};
use super::window::{Hits, Window};
use crate::alert::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) enum Phase {
    #[default]
    Inactive,
    Pending {
        since: i64,
    },
    Firing {
        since: i64,
    },
}

/// What notifications know about one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Alert {
    #[serde(with = "snapshot_status")]
    pub(crate) status: Status,
    pub(crate) starts_at: i64,
    pub(crate) ends_at: Option<i64>,
    /// The value when it fired (or at the last evaluation while firing).
    pub(crate) value: Option<f64>,
    /// The last notification sent: its status and when.
    #[serde(with = "snapshot_status::sent")]
    pub(crate) last_sent: Option<(Status, i64)>,
}

/// Snapshots keep writing `Firing`/`Resolved`, as before [`Status`] moved to
/// [`crate::alert`] (which writes lower case): an older sluice rolled back to can still
/// read them. Either case is read.
mod snapshot_status {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::alert::Status;

    fn name(status: Status) -> &'static str {
        match status {
            Status::Firing => "Firing",
            Status::Resolved => "Resolved",
        }
    }

    pub(crate) fn serialize<S: Serializer>(status: &Status, s: S) -> Result<S::Ok, S::Error> {
        name(*status).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Status, D::Error> {
        Status::deserialize(d)
    }

    pub(crate) mod sent {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            sent: &Option<(Status, i64)>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            sent.map(|(status, at)| (name(status), at)).serialize(s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<(Status, i64)>, D::Error> {
            Option::<(Status, i64)>::deserialize(d)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::Alert;
        use super::*;

        #[test]
        fn snapshots_write_the_old_names_and_read_either() {
            let alert = Alert {
                status: Status::Firing,
                starts_at: 1,
                ends_at: None,
                value: Some(2.0),
                last_sent: Some((Status::Resolved, 3)),
            };
            let json = serde_json::to_string(&alert).expect("json");
            assert!(
                json.contains(r#""status":"Firing""#) && json.contains(r#"["Resolved",3]"#),
                "{json}"
            );
            let lower = json
                .replace("Firing", "firing")
                .replace("Resolved", "resolved");
            for text in [json, lower] {
                assert_eq!(serde_json::from_str::<Alert>(&text).expect("reads"), alert);
            }
        }
    }
}

/// A label set's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Group {
    /// Values of the rule's `group_by` labels, in order (empty when absent).
    pub(crate) key: Vec<String>,
    /// When this label set was first seen (absence is judged only after a full window).
    pub(crate) created: i64,
    /// Per metric slot of the rule.
    pub(crate) windows: Vec<Window>,
    pub(crate) latest: Vec<Option<(i64, f64)>>,
    /// Per `count(…)` filter of the rule.
    pub(crate) hits: Vec<Hits>,
    pub(crate) phase: Phase,
    pub(crate) alert: Option<Alert>,
    /// The latest input event's values of the labels the rule's templates read beyond
    /// its own (`Rule::input_labels`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) inputs: BTreeMap<String, String>,
}

/// What an evaluation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    /// Became pending, or fell back to inactive before `for` elapsed.
    Phase,
    Fired,
    Resolved,
}

impl Group {
    pub(crate) fn new(key: Vec<String>, rule: &Rule, now: i64) -> Self {
        Self {
            key,
            created: now,
            windows: vec![Window::default(); rule.metrics.len()],
            latest: vec![None; rule.metrics.len()],
            hits: vec![Hits::default(); rule.filters.len()],
            phase: Phase::Inactive,
            alert: None,
            inputs: BTreeMap::new(),
        }
    }

    /// Makes a restored group fit its rule (the shapes match unless the file was edited).
    pub(crate) fn fit(&mut self, rule: &Rule) {
        self.windows.resize(rule.metrics.len(), Window::default());
        self.latest.resize(rule.metrics.len(), None);
        self.hits.resize(rule.filters.len(), Hits::default());
    }

    pub(crate) fn record(&mut self, rule: &Rule, slot: usize, at: i64, value: f64) {
        if let Some(l) = self.latest.get_mut(slot) {
            *l = Some((at, value));
        }
        let window = rule.windows.get(slot).copied().unwrap_or(0);
        if window > 0
            && let Some(w) = self.windows.get_mut(slot)
        {
            // Pruning on push bounds memory between evaluations too.
            w.prune(at - window);
            w.push(at, value);
        }
    }

    pub(crate) fn prune(&mut self, rule: &Rule, now: i64) {
        for (slot, w) in self.windows.iter_mut().enumerate() {
            w.prune(now - rule.windows.get(slot).copied().unwrap_or(0));
        }
        for (f, h) in rule.filters.iter().zip(self.hits.iter_mut()) {
            h.prune(now - f.window_ms);
        }
    }

    /// Holds nothing worth keeping (no samples in any window, no alert, inactive).
    pub(crate) fn is_idle(&self, stale_ms: i64, now: i64) -> bool {
        self.phase == Phase::Inactive
            && self.alert.is_none()
            && self.windows.iter().all(Window::is_empty)
            && self.hits.iter().all(Hits::is_empty)
            && self
                .latest
                .iter()
                .all(|l| l.is_none_or(|(t, _)| now - t > stale_ms))
    }

    fn value(&self, rule: &Rule, e: &Expr, now: i64, stale_ms: i64) -> Option<f64> {
        let slot = |m: &str| rule.metrics.iter().position(|x| x == m);
        let v = match e {
            Expr::Number(n) => *n,
            Expr::Neg(e) => -self.value(rule, e, now, stale_ms)?,
            Expr::Instant(m) => {
                let (t, v) = (*self.latest.get(slot(m)?)?)?;
                if now - t > stale_ms {
                    return None;
                }
                v
            }
            Expr::Agg {
                func,
                metric,
                window,
            } => {
                let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
                self.windows
                    .get(slot(metric)?)?
                    .aggregate(*func, now, window_ms)?
            }
            Expr::CountMatching {
                path,
                op,
                literal,
                window,
            } => {
                let i = rule.filters.iter().position(|f| {
                    let (p, o, l, w) = &f.source;
                    p == path && o == op && l == literal && w == window
                })?;
                self.hits.get(i)?.count(now, rule.filters[i].window_ms)
            }
            Expr::Binary(a, op, b) => {
                let (a, b) = (
                    self.value(rule, a, now, stale_ms)?,
                    self.value(rule, b, now, stale_ms)?,
                );
                match op {
                    ArithOp::Add => a + b,
                    ArithOp::Sub => a - b,
                    ArithOp::Mul => a * b,
                    ArithOp::Div => a / b,
                }
            }
        };
        v.is_finite().then_some(v)
    }

    /// Whether the condition holds now, and the value it compared (the left side).
    pub(crate) fn test(&self, rule: &Rule, now: i64, stale_ms: i64) -> (bool, Option<f64>) {
        match &rule.condition {
            Condition::Compare(a, op, b) => {
                let left = self.value(rule, a, now, stale_ms);
                let holds = match (left, self.value(rule, b, now, stale_ms)) {
                    (Some(x), Some(y)) => op.apply(x, y),
                    _ => false,
                };
                (holds, left)
            }
            Condition::Absent { window, .. } => {
                let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
                let last = self.latest.first().copied().flatten().map(|(t, _)| t);
                let watched_long_enough = now - self.created >= window_ms;
                let holds = watched_long_enough && last.is_none_or(|t| now - t >= window_ms);
                (holds, Some(if holds { 1.0 } else { 0.0 }))
            }
        }
    }

    /// Moves the phase given whether the condition holds at `now`.
    pub(crate) fn step(
        &mut self,
        holds: bool,
        value: Option<f64>,
        now: i64,
        for_ms: i64,
    ) -> Transition {
        match (self.phase, holds) {
            (Phase::Inactive, false) => Transition::None,
            (Phase::Pending { .. }, false) => {
                self.phase = Phase::Inactive;
                Transition::Phase
            }
            (Phase::Firing { .. }, false) => {
                self.phase = Phase::Inactive;
                if let Some(a) = &mut self.alert {
                    a.status = Status::Resolved;
                    a.ends_at = Some(now);
                    a.value = value;
                }
                Transition::Resolved
            }
            (Phase::Inactive, true) if for_ms > 0 => {
                self.phase = Phase::Pending { since: now };
                Transition::Phase
            }
            (Phase::Pending { since }, true) if now - since < for_ms => Transition::None,
            (Phase::Inactive | Phase::Pending { .. }, true) => {
                self.phase = Phase::Firing { since: now };
                match &mut self.alert {
                    Some(a) => {
                        a.status = Status::Firing;
                        a.ends_at = None;
                        a.value = value;
                    }
                    None => {
                        self.alert = Some(Alert {
                            status: Status::Firing,
                            starts_at: now,
                            ends_at: None,
                            value,
                            last_sent: None,
                        });
                    }
                }
                Transition::Fired
            }
            (Phase::Firing { .. }, true) => {
                if let Some(a) = &mut self.alert {
                    a.value = value;
                }
                Transition::None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::RuleConfig;
    use super::*;

    fn rule(expr: &str, for_s: u64) -> Rule {
        Rule::compile(&RuleConfig {
            name: "R".into(),
            expr: expr.into(),
            for_: std::time::Duration::from_secs(for_s),
            group_by: vec![],
            severity: "critical".into(),
            labels: Default::default(),
            annotations: Default::default(),
        })
        .expect("compiles")
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let r = rule("cpu > 80", 60);
        let mut g = Group::new(vec![], &r, 0);
        let at = |g: &mut Group, t: i64, v: f64| {
            g.record(&r, 0, t, v);
            let (holds, value) = g.test(&r, t, 300_000);
            g.step(holds, value, t, r.for_ms)
        };
        assert_eq!(at(&mut g, 0, 90.0), Transition::Phase);
        assert_eq!(g.phase, Phase::Pending { since: 0 });
        assert_eq!(at(&mut g, 30_000, 95.0), Transition::None);
        assert_eq!(
            at(&mut g, 40_000, 50.0),
            Transition::Phase,
            "back to inactive"
        );
        assert_eq!(at(&mut g, 50_000, 90.0), Transition::Phase);
        assert_eq!(at(&mut g, 100_000, 91.0), Transition::None, "50 s < for");
        assert_eq!(at(&mut g, 110_000, 92.0), Transition::Fired);
        let a = g.alert.clone().expect("an alert");
        assert_eq!(
            (a.status, a.starts_at, a.value),
            (Status::Firing, 110_000, Some(92.0))
        );
        assert_eq!(at(&mut g, 120_000, 10.0), Transition::Resolved);
        let a = g.alert.clone().expect("an alert");
        assert_eq!((a.status, a.ends_at), (Status::Resolved, Some(120_000)));
        assert_eq!(g.phase, Phase::Inactive);
    }

    #[test]
    fn stale_samples_and_missing_values_do_not_hold() {
        let r = rule("cpu > 80", 0);
        let mut g = Group::new(vec![], &r, 0);
        g.record(&r, 0, 0, 90.0);
        assert_eq!(g.test(&r, 1000, 5000), (true, Some(90.0)));
        assert_eq!(
            g.test(&r, 6000, 5000),
            (false, None),
            "stale after resolve_timeout"
        );
        let ratio = rule("sum(a[1m]) / sum(b[1m]) > 0.05", 0);
        let mut g = Group::new(vec![], &ratio, 0);
        g.record(&ratio, 0, 0, 3.0);
        g.record(&ratio, 1, 0, 0.0);
        assert_eq!(g.test(&ratio, 0, 5000), (false, None), "division by zero");
        g.record(&ratio, 1, 1, 50.0);
        assert_eq!(g.test(&ratio, 1, 5000), (true, Some(0.06)));
    }

    #[test]
    fn absence_needs_a_full_window_without_samples() {
        let r = rule("absent(heartbeat[2m])", 0);
        let mut g = Group::new(vec![], &r, 0);
        assert!(!g.test(&r, 60_000, 0).0, "not watched for 2m yet");
        assert!(g.test(&r, 120_000, 0).0, "nothing for 2m");
        g.record(&r, 0, 130_000, 1.0);
        assert!(!g.test(&r, 200_000, 0).0);
        assert!(g.test(&r, 250_000, 0).0);
    }
}
