//! `alert_rule` options and their compilation into [`Rule`]s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::expr::{self, CmpOp, Condition, Expr, Literal};
use crate::component::BuildError;
use crate::silences::SilenceSpec;
use crate::silences::inhibit::InhibitConfig;
use crate::template::Template;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
fn default_evaluation_interval() -> Duration {
    secs(1)
}
fn default_group_interval() -> Duration {
    secs(60)
}
fn default_repeat_interval() -> Duration {
    secs(4 * 3600)
}
fn default_resolve_timeout() -> Duration {
    secs(300)
}
fn default_snapshot_interval() -> Duration {
    secs(10)
}
fn default_max_series() -> usize {
    10_000
}
fn default_severity() -> String {
    "medium".into()
}

/// Evaluates alert rules (its own or Prometheus rule files) over metrics and events, with silences and inhibition.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertRuleConfig {
    /// How often rules are evaluated and notifications sent (default 1s).
    #[serde(default = "default_evaluation_interval", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) evaluation_interval: Duration,
    /// Delay before the first notification of a new alert (default 0s).
    #[serde(default, with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) group_wait: Duration,
    /// Least time between two notifications of an alert that changed (default 1m).
    #[serde(default = "default_group_interval", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) group_interval: Duration,
    /// A still-firing alert is notified again after this long (default 4h).
    #[serde(default = "default_repeat_interval", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) repeat_interval: Duration,
    /// Whether resolutions are notified (default true).
    #[serde(default = "crate::units::yes")]
    pub(crate) send_resolved: bool,
    /// A metric's latest sample counts for instant expressions (`x > 1`) this long
    /// (default 5m); after it, the alert resolves for lack of data.
    #[serde(default = "default_resolve_timeout", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) resolve_timeout: Duration,
    /// Label sets kept per rule (default 10000); new ones beyond it are dropped. For
    /// `rule_files`: the series kept for all of them together (what recording rules
    /// write included), with a warning when one is first dropped.
    #[serde(default = "default_max_series")]
    pub(crate) max_series: usize,
    /// Windows (and the samples of `rule_files`) are written to `data_dir` at most this
    /// often (default 10s); state changes (pending, firing, notified) are written at
    /// the evaluation they happen. A restart reads them back.
    #[serde(default = "default_snapshot_interval", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) snapshot_interval: Duration,
    /// Prometheus rule files, as Prometheus reads them: `groups` with `name`,
    /// `interval` (default `evaluation_interval`) and `rules`, each an `alert` (with
    /// `expr`, `for`, `keep_firing_for`, `labels`, `annotations` in Go template
    /// syntax) or a `record`. The PromQL sluice cannot evaluate (`offset`, subqueries,
    /// `histogram_quantile`, …) is a validate error naming the rule and the construct.
    /// Samples are metric events (`name`, `value`, `labels`), timed by arrival.
    /// Alerting rules write `ALERTS` and `ALERTS_FOR_STATE` for rules that read them.
    /// With a `data_dir`, samples and alerts survive a restart, as in Prometheus.
    #[serde(default)]
    pub(crate) rule_files: Vec<PathBuf>,
    /// The rules: each a `name` and an `expr`, with optional `for`, `group_by`,
    /// `severity`, `labels` and `annotations`; one alert per rule and label set.
    #[serde(default)]
    pub(crate) rules: Vec<RuleConfig>,
    /// Silences: an alert whose labels match all of a silence's `matchers` is muted
    /// from `starts_at` to `ends_at` (RFC 3339). Shared with the API's `/silences`.
    #[serde(default)]
    pub(crate) silences: Vec<SilenceSpec>,
    /// A firing alert matching `source_matchers` mutes the alerts matching
    /// `target_matchers` that have the same values for every label in `equal`.
    #[serde(default)]
    pub(crate) inhibit_rules: Vec<InhibitConfig>,
}

/// One rule.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleConfig {
    /// The rule's name: the alert's `alertname` label.
    pub(crate) name: String,
    /// The condition, evaluated on the metric samples each interval.
    pub(crate) expr: String,
    /// How long the condition must hold before the alert fires (default 0s).
    #[serde(default, rename = "for", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) for_: Duration,
    /// Label names whose values split the rule into one alert per label set.
    #[serde(default)]
    pub(crate) group_by: Vec<String>,
    /// The alert's severity: critical, high, medium (the default), low or info; or a
    /// template over `labels` (the alert's, and the input event's), `value` and
    /// `alertname`, e.g. `"{{ labels.tier }}"`. A rendering that is not one of those
    /// five is sent as the default, medium.
    #[serde(default = "default_severity")]
    pub(crate) severity: String,
    /// Added to the alert's labels.
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    /// `summary`, `description` and others; templates over `value`, `alertname`,
    /// `severity` and `labels`: the alert's labels, and the labels of the latest input
    /// event (so `{{ labels.region }}` works when `region` is not in `group_by`).
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
}

/// A `count(path op literal)` filter over events.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub(crate) path: OwnedValuePath,
    pub(crate) op: CmpOp,
    pub(crate) literal: Literal,
    pub(crate) window_ms: i64,
    /// As written, to find the filter of an expression leaf.
    pub(crate) source: (String, CmpOp, Literal, Duration),
}

impl Filter {
    pub(crate) fn matches(&self, event: &Value) -> bool {
        // A missing field, or one of another type, differs from the literal.
        let Some(v) = event.get(&self.path) else {
            return self.op == CmpOp::Ne;
        };
        let ord = match (&self.literal, v) {
            (Literal::Number(n), Value::Integer(i)) => (*i as f64).partial_cmp(n),
            (Literal::Number(n), Value::Float(f)) => f.into_inner().partial_cmp(n),
            (Literal::Text(t), v @ (Value::Bytes(_) | Value::String(_))) => {
                v.to_str_lossy().map(|s| s.as_ref().cmp(t.as_str()))
            }
            (Literal::Bool(x), Value::Boolean(b)) => Some(b.cmp(x)),
            _ => None,
        };
        let Some(ord) = ord else {
            return self.op == CmpOp::Ne;
        };
        use std::cmp::Ordering::*;
        match self.op {
            CmpOp::Eq => ord == Equal,
            CmpOp::Ne => ord != Equal,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
        }
    }
}

/// A checked rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: String,
    /// `name#hash of the definition`: state is kept under it, so a changed rule starts
    /// fresh and an unchanged one keeps its state across a reload or restart.
    pub(crate) key: String,
    pub(crate) condition: Condition,
    /// Metric names the expression reads; a sample's slot is its index here.
    pub(crate) metrics: Vec<String>,
    /// Per metric slot: the longest window over it, in ms (0: only the latest sample).
    pub(crate) windows: Vec<i64>,
    pub(crate) filters: Vec<Filter>,
    pub(crate) for_ms: i64,
    pub(crate) group_by: Vec<String>,
    /// The severity as written; with `severity_template`, its fallback is `medium`.
    pub(crate) severity: String,
    pub(crate) severity_template: Option<Template>,
    pub(crate) labels: BTreeMap<String, String>,
    /// (name, as written, parsed).
    pub(crate) annotations: Vec<(String, String, Template)>,
    /// Labels the templates read that are neither `group_by` nor the rule's own: taken
    /// from each input event, so annotations can name them.
    pub(crate) input_labels: Vec<String>,
}

use crate::units::millis as ms;

impl Rule {
    pub(crate) fn compile(config: &RuleConfig) -> Result<Self, BuildError> {
        let name = &config.name;
        if name.is_empty() {
            return Err(BuildError("`rules`: a rule has an empty `name`".into()));
        }
        let condition = expr::parse(&config.expr)
            .map_err(|e| BuildError(format!("rule `{name}`: `expr` {e} in `{}`", config.expr)))?;
        let mut metrics: Vec<String> = Vec::new();
        let mut windows: Vec<i64> = Vec::new();
        let mut filters: Vec<Filter> = Vec::new();
        let mut slot = |metric: &str, window: i64| match metrics.iter().position(|m| m == metric) {
            Some(i) => windows[i] = windows[i].max(window),
            None => {
                metrics.push(metric.to_owned());
                windows.push(window);
            }
        };
        let mut error = None;
        let mut leaf = |e: &Expr| match e {
            Expr::Instant(m) => slot(m, 0),
            Expr::Agg { metric, window, .. } => slot(metric, ms(*window)),
            Expr::CountMatching {
                path,
                op,
                literal,
                window,
            } => {
                let source = (path.clone(), *op, literal.clone(), *window);
                if filters.iter().any(|f| f.source == source) {
                    return;
                }
                match vrl::path::parse_value_path(path) {
                    Ok(p) => filters.push(Filter {
                        path: p,
                        op: *op,
                        literal: literal.clone(),
                        window_ms: ms(*window),
                        source,
                    }),
                    Err(e) => {
                        error = Some(format!(
                            "rule `{name}`: `expr`: invalid field `{path}`: {e}"
                        ))
                    }
                }
            }
            _ => {}
        };
        match &condition {
            Condition::Compare(a, _, b) => {
                a.visit(&mut leaf);
                b.visit(&mut leaf);
            }
            Condition::Absent { metric, window } => {
                let e = Expr::Agg {
                    func: expr::AggFn::Count,
                    metric: metric.clone(),
                    window: *window,
                };
                leaf(&e);
            }
        }
        if let Some(e) = error {
            return Err(BuildError(e));
        }
        let annotations = config
            .annotations
            .iter()
            .map(|(k, v)| {
                Template::parse(v)
                    .map(|t| (k.clone(), v.clone(), t))
                    .map_err(|e| BuildError(format!("rule `{name}`: `annotations.{k}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let severity_template = if config.severity.contains("{{") {
            Some(
                Template::parse(&config.severity)
                    .map_err(|e| BuildError(format!("rule `{name}`: `severity`: {e}")))?,
            )
        } else {
            None
        };
        let mut input_labels: Vec<String> = Vec::new();
        for t in annotations
            .iter()
            .map(|(_, _, t)| t)
            .chain(severity_template.as_ref())
        {
            for field in t.fields() {
                let Some(label) = field.strip_prefix("labels.") else {
                    continue;
                };
                let label = label.split('.').next().unwrap_or(label).trim_matches('"');
                if label != "alertname"
                    && !config.group_by.iter().any(|g| g == label)
                    && !config.labels.contains_key(label)
                    && !input_labels.iter().any(|l| l == label)
                {
                    input_labels.push(label.to_owned());
                }
            }
        }
        for reserved in ["alertname"] {
            if config.labels.contains_key(reserved) {
                return Err(BuildError(format!(
                    "rule `{name}`: `labels` cannot set `{reserved}` (it is the rule's name)"
                )));
            }
        }
        let definition = serde_json::to_vec(config).unwrap_or_default();
        let hash: String = crate::hashing::sha256(&definition)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            key: format!("{name}#{hash}"),
            name: name.clone(),
            condition,
            metrics,
            windows,
            filters,
            for_ms: ms(config.for_),
            group_by: config.group_by.clone(),
            severity: if severity_template.is_some() {
                default_severity()
            } else {
                config.severity.clone()
            },
            severity_template,
            labels: config.labels.clone(),
            annotations,
            input_labels,
        })
    }

    pub(crate) fn is_absent(&self) -> bool {
        matches!(self.condition, Condition::Absent { .. })
    }
}

pub(super) fn check_policy(c: &AlertRuleConfig) -> Result<(), BuildError> {
    if c.evaluation_interval.is_zero() {
        return Err(BuildError(
            "`evaluation_interval` must be above zero".into(),
        ));
    }
    if c.group_interval.is_zero() {
        return Err(BuildError("`group_interval` must be above zero".into()));
    }
    if c.repeat_interval.is_zero() {
        return Err(BuildError("`repeat_interval` must be above zero".into()));
    }
    if c.max_series == 0 {
        return Err(BuildError("`max_series` must be at least 1".into()));
    }
    if c.rules.is_empty() && c.rule_files.is_empty() {
        return Err(BuildError(
            "`rules` or `rule_files` must give at least one rule".into(),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for r in &c.rules {
        if !names.insert(r.name.as_str()) {
            return Err(BuildError(format!(
                "`rules`: two rules are named `{}`",
                r.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(expr: &str) -> RuleConfig {
        RuleConfig {
            name: "R".into(),
            expr: expr.into(),
            for_: Duration::ZERO,
            group_by: vec![],
            severity: "critical".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn compiling_collects_slots_windows_and_filters() {
        let r = Rule::compile(&rule(
            "avg(x[5m]) + max(x[1m]) - y + count(severity == \"critical\")[10m] > 1",
        ))
        .expect("compiles");
        assert_eq!(r.metrics, vec!["x", "y"]);
        assert_eq!(r.windows, vec![300_000, 0]);
        assert_eq!(r.filters.len(), 1);
        assert_eq!(r.filters[0].window_ms, 600_000);
        assert!(r.key.starts_with("R#"));
        let mut changed = rule("avg(x[5m]) > 2");
        let same = Rule::compile(&changed).expect("compiles").key;
        assert_eq!(Rule::compile(&changed).expect("compiles").key, same);
        changed.for_ = Duration::from_secs(1);
        assert_ne!(Rule::compile(&changed).expect("compiles").key, same);
    }

    #[test]
    fn errors_name_the_rule_and_the_column() {
        let e = Rule::compile(&rule("cpu >")).expect_err("bad");
        assert_eq!(
            e.0,
            "rule `R`: `expr` column 6: expected a value after the comparison in `cpu >`"
        );
        let mut r = rule("x > 1");
        r.annotations.insert("summary".into(), "{{ value".into());
        let e = Rule::compile(&r).expect_err("bad template");
        assert!(e.0.contains("`annotations.summary`"), "{}", e.0);
    }

    #[test]
    fn filters_compare_event_fields() {
        let f = |src: &str| {
            let r = Rule::compile(&rule(&format!("count({src})[1m] > 0"))).expect("compiles");
            r.filters[0].clone()
        };
        let e: Value = serde_json::from_str(
            r#"{"severity":"critical","n":5,"ok":true,"labels":{"env":"prod"}}"#,
        )
        .expect("json");
        let sev = f("severity == 'critical'");
        assert!(sev.matches(&e), "{sev:?} on {e:?}");
        assert!(!f("severity != 'critical'").matches(&e));
        assert!(f("labels.env == 'prod'").matches(&e));
        assert!(f("n > 4").matches(&e) && !f("n > 5").matches(&e) && f("n <= 5").matches(&e));
        assert!(f("ok == true").matches(&e));
        assert!(!f("missing == 1").matches(&e));
        assert!(f("missing != 1").matches(&e));
    }
}
