//! Samples kept for PromQL rules, and the evaluation of an [`Expr`] at one instant,
//! with Prometheus 2's semantics: an instant selector takes each series' latest sample
//! within the 5-minute lookback, a range selector the samples in `[t - range, t]`,
//! `rate` and `increase` extrapolate as Prometheus does, arithmetic drops the metric
//! name, and a comparison without `bool` filters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::ast::{AggOp, BinOp, Expr, Func, Grouping, Matching, Selector};
use crate::matchers::Op;

/// [`super::ast::LOOKBACK`] in ms.
const LOOKBACK_MS: i64 = 300_000;

/// A label set; the metric name is the label `__name__`.
pub(crate) type Labels = BTreeMap<String, String>;

pub(crate) const NAME: &str = "__name__";

/// Prometheus's staleness marker: a NaN no computation produces, written when a
/// recorded series stops, after which selectors no longer see the series.
pub(crate) const STALE: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE.to_bits()
}

/// The samples of one series, oldest first.
#[derive(Debug, Default)]
struct Series {
    labels: Arc<Labels>,
    samples: VecDeque<(i64, f64)>,
}

/// Samples by metric name and label set, kept as long as the rules read back.
#[derive(Debug, Default)]
pub(crate) struct Store {
    metrics: HashMap<String, HashMap<Arc<Labels>, Series>>,
    series: usize,
}

impl Store {
    /// Records a sample; `false` when it would be a new series beyond `max_series`.
    pub(crate) fn push(&mut self, labels: Labels, at: i64, value: f64, max_series: usize) -> bool {
        let Some(name) = labels.get(NAME) else {
            return false;
        };
        // The name is copied only for a new metric, not for every sample.
        if let Some(series) = self
            .metrics
            .get_mut(name.as_str())
            .and_then(|family| family.get_mut(&labels))
        {
            series.samples.push_back((at, value));
            return true;
        }
        if self.series >= max_series {
            return false;
        }
        let family = self.metrics.entry(name.clone()).or_default();
        self.series += 1;
        let labels = Arc::new(labels);
        family.insert(
            Arc::clone(&labels),
            Series {
                labels,
                samples: VecDeque::from([(at, value)]),
            },
        );
        true
    }

    /// Drops samples older than `horizon` (ms), and series left without any.
    pub(crate) fn prune(&mut self, horizon: i64) {
        let mut removed = 0;
        self.metrics.retain(|_, family| {
            family.retain(|_, s| {
                while s.samples.front().is_some_and(|(t, _)| *t < horizon) {
                    s.samples.pop_front();
                }
                let keep = !s.samples.is_empty();
                removed += usize::from(!keep);
                keep
            });
            !family.is_empty()
        });
        self.series -= removed;
    }

    /// Every series with its samples, oldest first (for the restart snapshot).
    pub(crate) fn each(&self) -> impl Iterator<Item = (&Labels, &VecDeque<(i64, f64)>)> {
        self.metrics
            .values()
            .flat_map(|f| f.values())
            .map(|s| (&*s.labels, &s.samples))
    }

    #[cfg(test)]
    pub(crate) fn series(&self) -> usize {
        self.series
    }

    fn select<'a>(&'a self, sel: &'a Selector) -> impl Iterator<Item = &'a Series> + 'a {
        let families: Vec<&HashMap<Arc<Labels>, Series>> = match &sel.name {
            Some(name) => self.metrics.get(name).into_iter().collect(),
            None => self.metrics.values().collect(),
        };
        families.into_iter().flat_map(|f| f.values()).filter(|s| {
            sel.matchers
                .iter()
                .all(|m| m.matches(s.labels.get(&m.label).map(String::as_str)))
        })
    }
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) labels: Labels,
    pub(crate) value: f64,
}

/// What an expression evaluates to.
#[derive(Debug)]
pub(crate) enum Value {
    Scalar(f64),
    Vector(Vec<Sample>),
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
}

/// An evaluation that has no result, as Prometheus would fail it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum EvalError {
    #[error(
        "found duplicate series for the match group {0} on the right side of the operation: many-to-many matching not allowed"
    )]
    ManyToMany(String),
    #[error("vector cannot contain metrics with the same labelset {0}")]
    SameLabels(String),
}

/// Evaluates `expr` at `t` (ms).
pub(crate) fn eval(expr: &Expr, store: &Store, t: i64) -> Result<Value, EvalError> {
    Ok(match expr {
        Expr::Number(n) => Value::Scalar(*n),
        Expr::Text => Value::Scalar(f64::NAN),
        Expr::Select(sel) => Value::Vector(
            store
                .select(sel)
                .filter_map(|s| {
                    let (at, v) = *s.samples.iter().rev().find(|(at, _)| *at <= t)?;
                    (at >= t - LOOKBACK_MS && !is_stale(v)).then(|| Sample {
                        labels: (*s.labels).clone(),
                        value: v,
                    })
                })
                .collect(),
        ),
        Expr::Range(sel, range) => {
            let from = t - i64::try_from(range.as_millis()).unwrap_or(i64::MAX);
            Value::Matrix(
                store
                    .select(sel)
                    .filter_map(|s| {
                        let points: Vec<(i64, f64)> = s
                            .samples
                            .iter()
                            .copied()
                            .filter(|(at, v)| *at >= from && *at <= t && !is_stale(*v))
                            .collect();
                        (!points.is_empty()).then(|| ((*s.labels).clone(), points))
                    })
                    .collect(),
            )
        }
        Expr::Negate(e) => match eval(e, store, t)? {
            Value::Scalar(n) => Value::Scalar(-n),
            Value::Vector(v) => Value::Vector(
                v.into_iter()
                    .map(|mut s| {
                        s.labels.remove(NAME);
                        s.value = -s.value;
                        s
                    })
                    .collect(),
            ),
            m => m,
        },
        Expr::Call(func, args) => call(*func, args, store, t)?,
        Expr::Aggregate(op, grouping, e) => {
            Value::Vector(aggregate(*op, grouping, vector(eval(e, store, t)?)))
        }
        Expr::Binary {
            op,
            lhs,
            rhs,
            bool_,
            matching,
        } => {
            let (l, r) = (eval(lhs, store, t)?, eval(rhs, store, t)?);
            binary(*op, l, r, *bool_, matching)?
        }
    })
}

fn vector(v: Value) -> Vec<Sample> {
    match v {
        Value::Vector(v) => v,
        Value::Scalar(_) | Value::Matrix(_) => Vec::new(),
    }
}

fn scalar(v: Value) -> f64 {
    match v {
        Value::Scalar(n) => n,
        _ => f64::NAN,
    }
}

fn call(func: Func, args: &[Expr], store: &Store, t: i64) -> Result<Value, EvalError> {
    let arg = |i: usize| -> Result<Value, EvalError> {
        args.get(i)
            .map_or(Ok(Value::Scalar(f64::NAN)), |a| eval(a, store, t))
    };
    let per_sample = |f: &dyn Fn(f64) -> f64| -> Result<Value, EvalError> {
        Ok(Value::Vector(
            vector(arg(0)?)
                .into_iter()
                .map(|mut s| {
                    s.labels.remove(NAME);
                    s.value = f(s.value);
                    s
                })
                .collect(),
        ))
    };
    Ok(match func {
        Func::Time => Value::Scalar(t as f64 / 1000.0),
        Func::Vector => Value::Vector(vec![Sample {
            labels: Labels::new(),
            value: scalar(arg(0)?),
        }]),
        Func::Scalar => {
            let v = vector(arg(0)?);
            Value::Scalar(if v.len() == 1 { v[0].value } else { f64::NAN })
        }
        Func::Abs => per_sample(&f64::abs)?,
        Func::Ceil => per_sample(&f64::ceil)?,
        Func::Floor => per_sample(&f64::floor)?,
        Func::ClampMin => {
            let min = scalar(arg(1)?);
            per_sample(&|v| v.max(min))?
        }
        Func::ClampMax => {
            let max = scalar(arg(1)?);
            per_sample(&|v| v.min(max))?
        }
        Func::Absent => {
            if !vector(arg(0)?).is_empty() {
                return Ok(Value::Vector(Vec::new()));
            }
            // As promtool 2.42 gives them: the labels of the `=` matchers, except a
            // label that another `=` or `=~` matcher names too (even with the same
            // value); `!=` and `!~` change nothing.
            let mut labels = Labels::new();
            if let Some(Expr::Select(sel)) = args.first() {
                let positive = |m: &&crate::matchers::Matcher| {
                    m.label != NAME && matches!(m.op, Op::Equal | Op::Regex)
                };
                for m in sel.matchers.iter().filter(positive) {
                    let named = sel.matchers.iter().filter(positive);
                    if m.op == Op::Equal && named.filter(|o| o.label == m.label).count() == 1 {
                        labels.insert(m.label.clone(), m.value.clone());
                    }
                }
            }
            Value::Vector(vec![Sample { labels, value: 1.0 }])
        }
        Func::Rate
        | Func::Increase
        | Func::Delta
        | Func::AvgOverTime
        | Func::MinOverTime
        | Func::MaxOverTime
        | Func::SumOverTime
        | Func::CountOverTime
        | Func::LastOverTime
        | Func::PresentOverTime => {
            let range = match args.first() {
                Some(Expr::Range(_, r)) => i64::try_from(r.as_millis()).unwrap_or(i64::MAX),
                _ => 0,
            };
            let Value::Matrix(m) = arg(0)? else {
                return Ok(Value::Vector(Vec::new()));
            };
            Value::Vector(
                m.into_iter()
                    .filter_map(|(mut labels, points)| {
                        let value = over_time(func, &points, t - range, t)?;
                        if func != Func::LastOverTime {
                            labels.remove(NAME);
                        }
                        Some(Sample { labels, value })
                    })
                    .collect(),
            )
        }
    })
}

/// A range function over one series' points in `[start, end]`.
fn over_time(func: Func, points: &[(i64, f64)], start: i64, end: i64) -> Option<f64> {
    let values = points.iter().map(|(_, v)| *v);
    let n = points.len() as f64;
    Some(match func {
        Func::Rate => extrapolated(points, start, end, true, true)?,
        Func::Increase => extrapolated(points, start, end, true, false)?,
        Func::Delta => extrapolated(points, start, end, false, false)?,
        Func::AvgOverTime => values.sum::<f64>() / n,
        Func::MinOverTime => values.fold(f64::INFINITY, f64::min),
        Func::MaxOverTime => values.fold(f64::NEG_INFINITY, f64::max),
        Func::SumOverTime => values.sum(),
        Func::CountOverTime => n,
        Func::LastOverTime => points.last()?.1,
        Func::PresentOverTime => 1.0,
        _ => return None,
    })
}

/// Prometheus's `rate`, `increase` and `delta`: the change over the samples, with
/// counter resets added back, extrapolated towards the range's ends (to the end when
/// the samples come close to it, by half an average interval otherwise, and for a
/// counter never below zero).
fn extrapolated(
    points: &[(i64, f64)],
    start: i64,
    end: i64,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (first, last) = (points[0], points[points.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        let mut prev = first.1;
        for &(_, v) in &points[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut to_start = (first.0 - start) as f64 / 1000.0;
    let to_end = (end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let average = sampled / (points.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    result *= interval / sampled;
    if per_second {
        result /= (end - start) as f64 / 1000.0;
    }
    Some(result)
}

fn aggregate(op: AggOp, grouping: &Grouping, samples: Vec<Sample>) -> Vec<Sample> {
    // Groups in first-seen order: (labels, sum, count, min, max).
    let mut groups: Vec<(Labels, f64, f64, f64, f64)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in samples {
        let key: Labels = match grouping {
            Grouping::By(keep) => s
                .labels
                .into_iter()
                .filter(|(k, _)| keep.contains(k))
                .collect(),
            Grouping::Without(drop) => s
                .labels
                .into_iter()
                .filter(|(k, _)| k != NAME && !drop.contains(k))
                .collect(),
        };
        let v = s.value;
        match index.get(&key) {
            Some(&i) => {
                let g = &mut groups[i];
                g.1 += v;
                g.2 += 1.0;
                // NaN loses to any number, as in Prometheus.
                if v < g.3 || g.3.is_nan() {
                    g.3 = v;
                }
                if v > g.4 || g.4.is_nan() {
                    g.4 = v;
                }
            }
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, v, 1.0, v, v));
            }
        }
    }
    groups
        .into_iter()
        .map(|(labels, sum, count, min, max)| Sample {
            labels,
            value: match op {
                AggOp::Sum => sum,
                AggOp::Avg => sum / count,
                AggOp::Min => min,
                AggOp::Max => max,
                AggOp::Count => count,
            },
        })
        .collect()
}

/// `a op b` on two numbers: the value, and whether a comparison holds.
fn apply(op: BinOp, a: f64, b: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (a + b, true),
        BinOp::Sub => (a - b, true),
        BinOp::Mul => (a * b, true),
        BinOp::Div => (a / b, true),
        BinOp::Mod => (a % b, true),
        BinOp::Pow => (a.powf(b), true),
        BinOp::Eq => (a, a == b),
        BinOp::Ne => (a, a != b),
        BinOp::Gt => (a, a > b),
        BinOp::Lt => (a, a < b),
        BinOp::Ge => (a, a >= b),
        BinOp::Le => (a, a <= b),
        BinOp::And | BinOp::Or | BinOp::Unless => (a, true),
    }
}

fn binary(
    op: BinOp,
    l: Value,
    r: Value,
    bool_: bool,
    matching: &Matching,
) -> Result<Value, EvalError> {
    let result = |lv: f64, rv: f64, keep: f64| -> Option<f64> {
        let (value, holds) = apply(op, lv, rv);
        if !op.is_comparison() {
            return Some(value);
        }
        match (bool_, holds) {
            (true, h) => Some(f64::from(u8::from(h))),
            (false, true) => Some(keep),
            (false, false) => None,
        }
    };
    let drops_name = !op.is_comparison() || bool_;
    Ok(match (l, r) {
        (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(result(a, b, a).unwrap_or(0.0)),
        (Value::Vector(v), Value::Scalar(b)) => Value::Vector(
            v.into_iter()
                .filter_map(|mut s| {
                    s.value = result(s.value, b, s.value)?;
                    if drops_name {
                        s.labels.remove(NAME);
                    }
                    Some(s)
                })
                .collect(),
        ),
        (Value::Scalar(a), Value::Vector(v)) => Value::Vector(
            v.into_iter()
                .filter_map(|mut s| {
                    // A filter keeps the vector's value.
                    s.value = result(a, s.value, s.value)?;
                    if drops_name {
                        s.labels.remove(NAME);
                    }
                    Some(s)
                })
                .collect(),
        ),
        (Value::Vector(l), Value::Vector(r)) if op.is_set() => {
            Value::Vector(set_op(op, l, r, matching))
        }
        (Value::Vector(l), Value::Vector(r)) => {
            let mut right: HashMap<Labels, Sample> = HashMap::new();
            for s in r {
                let sig = signature(&s.labels, matching);
                if right.contains_key(&sig) {
                    return Err(EvalError::ManyToMany(text(&sig)));
                }
                right.insert(sig, s);
            }
            let mut out: Vec<Sample> = Vec::new();
            let mut seen: HashMap<Labels, ()> = HashMap::new();
            for s in l {
                let sig = signature(&s.labels, matching);
                let Some(rs) = right.get(&sig) else {
                    continue;
                };
                if seen.insert(sig.clone(), ()).is_some() {
                    return Err(EvalError::ManyToMany(text(&sig)));
                }
                let Some(value) = result(s.value, rs.value, s.value) else {
                    continue;
                };
                let mut labels = s.labels;
                if drops_name {
                    labels.remove(NAME);
                }
                match matching {
                    Matching::On(on) => labels.retain(|k, _| on.contains(k)),
                    Matching::Ignoring(ignored) => labels.retain(|k, _| !ignored.contains(k)),
                }
                out.push(Sample { labels, value });
            }
            let mut distinct: HashMap<&Labels, ()> = HashMap::new();
            for s in &out {
                if distinct.insert(&s.labels, ()).is_some() {
                    return Err(EvalError::SameLabels(text(&s.labels)));
                }
            }
            Value::Vector(out)
        }
        _ => Value::Vector(Vec::new()),
    })
}

/// The labels two samples are matched on.
fn signature(labels: &Labels, matching: &Matching) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| match matching {
            Matching::On(on) => on.contains(k),
            Matching::Ignoring(ignored) => *k != NAME && !ignored.contains(k),
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn set_op(op: BinOp, l: Vec<Sample>, r: Vec<Sample>, matching: &Matching) -> Vec<Sample> {
    let right: HashMap<Labels, ()> = r
        .iter()
        .map(|s| (signature(&s.labels, matching), ()))
        .collect();
    match op {
        BinOp::And => l
            .into_iter()
            .filter(|s| right.contains_key(&signature(&s.labels, matching)))
            .collect(),
        BinOp::Unless => l
            .into_iter()
            .filter(|s| !right.contains_key(&signature(&s.labels, matching)))
            .collect(),
        _ => {
            let left: HashMap<Labels, ()> = l
                .iter()
                .map(|s| (signature(&s.labels, matching), ()))
                .collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !left.contains_key(&signature(&s.labels, matching))),
            );
            out
        }
    }
}

/// A label set as Prometheus prints it: `{a="1", b="2"}`.
pub(crate) fn text(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
#[path = "tests/eval.rs"]
mod tests;
