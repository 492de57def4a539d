//! The series an exporter holds, and what one event does to them.
//!
//! A family is one configured metric; its series are keyed by their label values.
//! Families are keyed by name, kind and label names, so a reload that keeps a metric's
//! definition keeps its series, and one that changes it starts it afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::{MetricConfig, MetricKind};
use crate::component::BuildError;
use crate::event::Event;
use crate::template::Template;

/// Prometheus's default buckets.
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Longest label value (or `active_alerts` key) kept; an event whose label would be
/// longer is skipped, so a hostile value cannot make every scrape megabytes long.
pub(super) const MAX_LABEL_VALUE_BYTES: usize = 1024;

/// One configured metric, compiled.
#[derive(Debug)]
pub(super) struct Metric {
    pub(super) name: String,
    pub(super) help: String,
    pub(super) kind: MetricKind,
    field: Option<OwnedValuePath>,
    key: Option<Template>,
    pub(super) label_names: Vec<String>,
    labels: Vec<Template>,
    pub(super) buckets: Vec<f64>,
    /// Its family's key, made once: events and scrapes look the family up by it.
    pub(super) identity: FamilyKey,
}

/// The compiled `metrics` option.
#[derive(Debug, Default)]
pub(super) struct Metrics(pub(super) Vec<Metric>);

impl Metrics {
    pub(super) fn compile(configs: &[MetricConfig]) -> Result<Self, BuildError> {
        if configs.is_empty() {
            return Err(BuildError("`metrics` must name at least one metric".into()));
        }
        let mut names = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(configs.len());
        for c in configs {
            let m = compile(c).map_err(|e| BuildError(format!("metric `{}`: {e}", c.name)))?;
            // A histogram writes `<name>_bucket`, `_sum` and `_count` as well.
            let written: Vec<String> = if m.kind == MetricKind::Histogram {
                ["", "_bucket", "_sum", "_count"]
                    .iter()
                    .map(|suffix| format!("{}{suffix}", m.name))
                    .collect()
            } else {
                vec![m.name.clone()]
            };
            for name in written {
                if !names.insert(name.clone()) {
                    return Err(BuildError(format!(
                        "metric `{}`: `{name}` is written by another metric too",
                        c.name
                    )));
                }
            }
            out.push(m);
        }
        Ok(Self(out))
    }
}

fn compile(c: &MetricConfig) -> Result<Metric, String> {
    if !is_metric_name(&c.name) {
        return Err("a name is [a-zA-Z_:][a-zA-Z0-9_:]*".into());
    }
    let field = c
        .field
        .as_deref()
        .map(|f| {
            vrl::path::parse_value_path(f).map_err(|e| format!("`field` `{f}` is not a path: {e}"))
        })
        .transpose()?;
    match (c.kind, &field) {
        (MetricKind::Gauge | MetricKind::Histogram, None) => {
            return Err("a gauge or histogram needs `field`, the number it records".into());
        }
        (MetricKind::ActiveAlerts, Some(_)) => {
            return Err("`active_alerts` counts alerts by `key`; it takes no `field`".into());
        }
        _ => {}
    }
    if c.key.is_some() && c.kind != MetricKind::ActiveAlerts {
        return Err("`key` is for `active_alerts` only".into());
    }
    if c.buckets.is_some() && c.kind != MetricKind::Histogram {
        return Err("`buckets` is for histograms only".into());
    }
    let key = (c.kind == MetricKind::ActiveAlerts)
        .then(|| Template::parse(c.key.as_deref().unwrap_or("{{ fingerprint }}")))
        .transpose()
        .map_err(|e| format!("`key`: {e}"))?;
    let buckets = c
        .buckets
        .clone()
        .unwrap_or_else(|| DEFAULT_BUCKETS.to_vec());
    if buckets.is_empty()
        || buckets.iter().any(|b| !b.is_finite())
        || buckets.windows(2).any(|w| w[0] >= w[1])
    {
        return Err("`buckets` must be finite numbers in ascending order".into());
    }
    let mut label_names = Vec::new();
    let mut labels = Vec::new();
    for (name, template) in &c.labels {
        if !crate::matchers::is_label_name(name) || name.starts_with("__") {
            return Err(format!(
                "label `{name}`: a name is [a-zA-Z_][a-zA-Z0-9_]* not starting with __"
            ));
        }
        if c.kind == MetricKind::Histogram && name == "le" {
            return Err("label `le` is the bucket bound of a histogram".into());
        }
        labels.push(Template::parse(template).map_err(|e| format!("label `{name}`: {e}"))?);
        label_names.push(name.clone());
    }
    let identity = (
        c.name.clone(),
        c.kind,
        label_names.clone(),
        key.as_ref().map(|k| format!("{k:?}")),
    );
    Ok(Metric {
        identity,
        name: c.name.clone(),
        help: c
            .help
            .clone()
            .unwrap_or_else(|| "From sluice events.".into()),
        kind: c.kind,
        field,
        key,
        label_names,
        labels,
        buckets,
    })
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// One series' values.
#[derive(Debug, Clone)]
pub(super) struct Series {
    /// A counter's total, a gauge's value, or the number of firing alerts.
    pub(super) value: f64,
    /// A histogram's count per bucket (not cumulative), the last for `+Inf`.
    pub(super) buckets: Vec<u64>,
    pub(super) sum: f64,
    pub(super) count: u64,
    updated: Instant,
}

/// The series of one metric, and what they hold against its bounds.
#[derive(Debug, Default)]
pub(super) struct Family {
    pub(super) series: HashMap<Vec<String>, Series>,
    /// `active_alerts`: each firing alert's key and the labels it counts under.
    open: HashMap<String, Vec<String>>,
    /// Bytes of label values and keys held.
    bytes: usize,
}

impl Family {
    fn held(&self) -> usize {
        self.series.len() + self.open.len()
    }

    /// Whether `series` more series or keys and `bytes` more bytes fit.
    fn fits(&self, series: usize, bytes: usize, max_series: usize) -> bool {
        self.held() + series <= max_series && self.bytes + bytes <= MAX_BYTES_PER_METRIC
    }
}

/// Label values and alert keys one metric may hold, all series together, so a scrape
/// stays small whatever the events hold (a histogram repeats its labels on every
/// bucket line).
pub(super) const MAX_BYTES_PER_METRIC: usize = 1 << 20;

/// A metric's identity across reloads: its series carry over only while these stay.
pub(super) type FamilyKey = (String, MetricKind, Vec<String>, Option<String>);

/// Everything an exporter holds.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(super) metrics: Metrics,
    pub(super) families: HashMap<FamilyKey, Family>,
    max_series: usize,
    expire_after: Option<Duration>,
    last_expiry: Option<Instant>,
}

/// What recording events did beyond updating series.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outcome {
    pub(super) dropped: u64,
    pub(super) skipped: u64,
}

impl std::ops::AddAssign for Outcome {
    fn add_assign(&mut self, other: Self) {
        self.dropped += other.dropped;
        self.skipped += other.skipped;
    }
}

fn label_bytes(labels: &[String]) -> usize {
    labels.iter().map(String::len).sum()
}

impl State {
    /// Takes a (new) configuration: metrics it still defines alike keep their series.
    pub(super) fn configure(
        &mut self,
        metrics: Metrics,
        max_series: usize,
        expire_after: Option<Duration>,
    ) {
        let keep: std::collections::HashSet<FamilyKey> =
            metrics.0.iter().map(|m| m.identity.clone()).collect();
        self.families.retain(|k, _| keep.contains(k));
        for k in keep {
            self.families.entry(k).or_default();
        }
        self.metrics = metrics;
        self.max_series = max_series;
        self.expire_after = expire_after;
    }

    /// Applies one event to every metric.
    pub(super) fn record(&mut self, event: &Event, now: Instant) -> Outcome {
        // Expired series make room before new ones are refused for the lack of it.
        if self
            .last_expiry
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.expire(now);
        }
        let mut outcome = Outcome::default();
        for i in 0..self.metrics.0.len() {
            match self.record_one(i, event, now) {
                Recorded::Yes => {}
                Recorded::Skipped => outcome.skipped += 1,
                Recorded::Dropped => outcome.dropped += 1,
            }
        }
        outcome
    }

    fn record_one(&mut self, i: usize, event: &Event, now: Instant) -> Recorded {
        let metric = &self.metrics.0[i];
        let Some(labels) = label_values(metric, event) else {
            return Recorded::Skipped;
        };
        let Some(family) = self.families.get_mut(&metric.identity) else {
            return Recorded::Skipped;
        };
        if metric.kind == MetricKind::ActiveAlerts {
            return active(metric, family, labels, event, now, self.max_series);
        }
        let Some(number) = number(metric, event) else {
            return Recorded::Skipped;
        };
        if !family.series.contains_key(&labels) {
            let bytes = label_bytes(&labels);
            if !family.fits(1, bytes, self.max_series) {
                return Recorded::Dropped;
            }
            family.bytes += bytes;
            family
                .series
                .insert(labels.clone(), Series::new(metric, now));
        }
        let Some(series) = family.series.get_mut(&labels) else {
            return Recorded::Skipped;
        };
        // A total that would overflow to infinity is left where it is.
        let finite = |v: f64| v.is_finite().then_some(v);
        match metric.kind {
            MetricKind::Counter => match finite(series.value + number) {
                Some(v) => series.value = v,
                None => return Recorded::Skipped,
            },
            MetricKind::Gauge => series.value = number,
            MetricKind::Histogram => {
                let Some(sum) = finite(series.sum + number) else {
                    return Recorded::Skipped;
                };
                let bucket = metric
                    .buckets
                    .iter()
                    .position(|b| number <= *b)
                    .unwrap_or(metric.buckets.len());
                series.buckets[bucket] += 1;
                series.sum = sum;
                series.count += 1;
            }
            MetricKind::ActiveAlerts => {}
        }
        series.updated = now;
        Recorded::Yes
    }

    /// Removes the series no event updated within `expire_after` (an `active_alerts`
    /// series stays while an alert of it fires).
    pub(super) fn expire(&mut self, now: Instant) {
        self.last_expiry = Some(now);
        let Some(after) = self.expire_after else {
            return;
        };
        for ((_, kind, _, _), family) in &mut self.families {
            let firing = |s: &Series| *kind == MetricKind::ActiveAlerts && s.value > 0.0;
            let mut freed = 0;
            family.series.retain(|labels, s| {
                let keep = firing(s) || now.duration_since(s.updated) < after;
                if !keep {
                    freed += label_bytes(labels);
                }
                keep
            });
            family.bytes -= freed;
        }
    }
}

enum Recorded {
    Yes,
    Skipped,
    Dropped,
}

impl Series {
    fn new(metric: &Metric, now: Instant) -> Self {
        let buckets = if metric.kind == MetricKind::Histogram {
            vec![0; metric.buckets.len() + 1]
        } else {
            Vec::new()
        };
        Self {
            value: 0.0,
            buckets,
            sum: 0.0,
            count: 0,
            updated: now,
        }
    }
}

/// The event's label values, or `None` when one cannot be rendered or is too long.
fn label_values(metric: &Metric, event: &Event) -> Option<Vec<String>> {
    metric
        .labels
        .iter()
        .map(|t| {
            t.render(event)
                .ok()
                .filter(|v| v.len() <= MAX_LABEL_VALUE_BYTES)
        })
        .collect()
}

/// The number a metric records for the event.
fn number(metric: &Metric, event: &Event) -> Option<f64> {
    let Some(path) = &metric.field else {
        return Some(1.0);
    };
    let n = match event.value().get(path)? {
        Value::Integer(i) => *i as f64,
        Value::Float(f) => f.into_inner(),
        _ => return None,
    };
    let counter_down = metric.kind == MetricKind::Counter && n < 0.0;
    (n.is_finite() && !counter_down).then_some(n)
}

/// An `active_alerts` event: a firing alert counts under its labels until its resolve.
fn active(
    metric: &Metric,
    family: &mut Family,
    labels: Vec<String>,
    event: &Event,
    now: Instant,
    max_series: usize,
) -> Recorded {
    let Some(key) = metric
        .key
        .as_ref()
        .and_then(|k| k.render(event).ok())
        .filter(|k| k.len() <= MAX_LABEL_VALUE_BYTES)
    else {
        return Recorded::Skipped;
    };
    let firing = match event.get("status").map(Value::to_string_lossy) {
        Some(s) if s == "firing" => true,
        Some(s) if s == "resolved" => false,
        _ => return Recorded::Skipped,
    };
    // The alert leaves the series it counted under (its labels may have changed).
    if let Some(old) = family.open.remove(&key) {
        family.bytes -= key.len();
        if let Some(s) = family.series.get_mut(&old) {
            s.value -= 1.0;
            s.updated = now;
        }
    }
    if !firing {
        return Recorded::Yes;
    }
    let new_series = !family.series.contains_key(&labels);
    let bytes = key.len() + if new_series { label_bytes(&labels) } else { 0 };
    // The key takes a place, and so does a new series.
    if !family.fits(1 + usize::from(new_series), bytes, max_series) {
        return Recorded::Dropped;
    }
    family.bytes += bytes;
    let series = family
        .series
        .entry(labels.clone())
        .or_insert_with(|| Series::new(metric, now));
    series.value += 1.0;
    series.updated = now;
    family.open.insert(key, labels);
    Recorded::Yes
}

/// The state of the exporter `id` on `address`: the one a running copy of it holds, so
/// a reload that replaces the sink keeps its series.
pub(super) fn shared_state(id: &str, address: &str) -> Arc<Mutex<State>> {
    type Running = HashMap<(String, String), Weak<Mutex<State>>>;
    static STATES: OnceLock<Mutex<Running>> = OnceLock::new();
    let mut states = STATES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    states.retain(|_, w| w.strong_count() > 0);
    let key = (id.to_owned(), address.to_owned());
    if let Some(state) = states.get(&key).and_then(Weak::upgrade) {
        return state;
    }
    let state = Arc::new(Mutex::new(State::default()));
    states.insert(key, Arc::downgrade(&state));
    state
}
