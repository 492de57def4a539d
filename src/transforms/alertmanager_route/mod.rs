//! `alertmanager_route`: Alertmanager's route tree, `inhibit_rules` and time intervals,
//! in Alertmanager's own syntax, inline or read from an `alertmanager.yml`. Each
//! receiver is an output `<id>.<receiver>`.
//!
//! ```yaml
//! notify:
//!   type: alertmanager_route
//!   inputs: [alerts]
//!   alertmanager_config: /etc/alertmanager/alertmanager.yml   # or route: / inhibit_rules: inline
//! ```
//!
//! Invariants:
//! - An alert's labels are its `labels` object. It goes to the receiver of every route
//!   the tree selects ([`tree`]), once per receiver even when two routes name the same
//!   one, with that route's settings in `%alertmanager_route` (`receiver`, `group_by`,
//!   `group_wait_seconds`, `group_interval_seconds`, `repeat_interval_seconds`): a
//!   downstream `incident` groups and times the alert by them, over its own options.
//! - A route is muted while one of its `mute_time_intervals` holds, or while none of
//!   its `active_time_intervals` does ([`intervals`], read on the component's clock).
//!   A firing alert is inhibited while a firing source alert of an inhibit rule shares
//!   the rule's `equal` labels ([`crate::silences::inhibit`]); a resolve is never
//!   inhibited, so a page that went out is closed. An alert that reaches no unmuted
//!   route goes to `<id>._muted`, so every event leaves on an output.
//! - Inhibition sources are the firing alerts this component has seen (by
//!   `fingerprint`, else by their labels) until their resolve or until they have not
//!   been seen firing for `resolve_timeout`, at most `max_sources`
//!   (then new ones are not tracked, and counted). A reload carries them over to the
//!   new instance (matched against its inhibit rules). They are held in memory: after
//!   a restart, sources inhibit again once they fire again, which Prometheus and
//!   Alertmanager repeat every few minutes.

mod intervals;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use serde::Deserialize;
use vrl::value::Value;

use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::{Event, EventBatch};
use crate::matchers::{Matcher, Op};
use crate::silences::inhibit::{InhibitConfig, InhibitRule};
use crate::telemetry::LabeledCounter;
use intervals::{Interval, TimeIntervalConfig};
use tree::{Route, RouteConfig};

/// The output of alerts that no unmuted route reaches.
pub(crate) const MUTED: &str = "_muted";

fn default_max_sources() -> usize {
    100_000
}

/// An inhibit rule as Alertmanager writes it: `source_matchers`/`target_matchers`, or
/// the older `source_match`, `source_match_re`, `target_match` and `target_match_re`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertmanagerInhibit {
    /// Matchers a firing alert must satisfy to inhibit others.
    #[serde(default, deserialize_with = "tree::null_as_empty")]
    pub(crate) source_matchers: Vec<String>,
    /// Matchers an alert must satisfy to be inhibited.
    #[serde(default, deserialize_with = "tree::null_as_empty")]
    pub(crate) target_matchers: Vec<String>,
    /// Older equality matchers of the source, label: value.
    #[serde(default, deserialize_with = "tree::null_as_empty")]
    pub(crate) source_match: BTreeMap<String, String>,
    /// Older regex matchers of the source, label: regex.
    #[serde(default, deserialize_with = "tree::null_as_empty")]
    pub(crate) source_match_re: BTreeMap<String, String>,
    /// Older equality matchers of the target.
    #[serde(default, deserialize_with = "tree::null_as_empty")]
    pub(crate) target_match: BTreeMap<String, String>,
    /// Older regex matchers of the target.
    #[serde(default, deserialize_with = "tree::null_as_empty")]
    pub(crate) target_match_re: BTreeMap<String, String>,
    /// Labels whose values source and target must share.
    #[serde(default, deserialize_with = "tree::null_as_empty")]
    pub(crate) equal: Vec<String>,
}

impl AlertmanagerInhibit {
    /// The rule in sluice's matcher form.
    fn rule(&self) -> Result<InhibitRule, String> {
        let with_legacy = |matchers: &[String],
                           equal: &BTreeMap<String, String>,
                           regex: &BTreeMap<String, String>| {
            // Each entry may hold several matchers, as in routes.
            let mut all = Vec::new();
            for text in matchers {
                let parsed = tree::parse_matchers(text)?;
                all.extend(parsed.iter().map(ToString::to_string));
            }
            for (op, map) in [(Op::Equal, equal), (Op::Regex, regex)] {
                for (label, value) in map {
                    all.push(Matcher::new(label, op, value)?.to_string());
                }
            }
            Ok::<_, String>(all)
        };
        InhibitRule::new(&InhibitConfig {
            source_matchers: with_legacy(
                &self.source_matchers,
                &self.source_match,
                &self.source_match_re,
            )?,
            target_matchers: with_legacy(
                &self.target_matchers,
                &self.target_match,
                &self.target_match_re,
            )?,
            equal: self.equal.clone(),
        })
    }
}

/// The parts of an `alertmanager.yml` this transform reads; the rest is Alertmanager's.
#[derive(Debug, Deserialize)]
struct AlertmanagerFile {
    route: Option<RouteConfig>,
    #[serde(default, deserialize_with = "tree::null_as_empty")]
    inhibit_rules: Vec<AlertmanagerInhibit>,
    #[serde(default, deserialize_with = "tree::null_as_empty")]
    time_intervals: Vec<TimeIntervalConfig>,
    /// The name before Alertmanager 0.24.
    #[serde(default, deserialize_with = "tree::null_as_empty")]
    mute_time_intervals: Vec<TimeIntervalConfig>,
    #[serde(default, deserialize_with = "tree::null_as_empty")]
    receivers: Vec<Receiver>,
}

#[derive(Debug, Deserialize)]
struct Receiver {
    name: String,
}

/// The options as written; turned into [`AlertmanagerRouteConfig`] by reading the file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// An Alertmanager configuration file: its `route`, `inhibit_rules`,
    /// `time_intervals` (or `mute_time_intervals`) and receiver names are read as they
    /// are; the rest (`global`, the receivers' integrations, `templates`) is
    /// Alertmanager's and ignored. Give this or `route`.
    alertmanager_config: Option<PathBuf>,
    /// The route tree, as Alertmanager's `route:` writes it. Give this or
    /// `alertmanager_config`.
    route: Option<RouteConfig>,
    /// Inhibit rules, as Alertmanager writes them (with `route`).
    #[serde(default)]
    inhibit_rules: Vec<AlertmanagerInhibit>,
    /// Named time intervals that routes mute or activate by (with `route`).
    #[serde(default)]
    time_intervals: Vec<TimeIntervalConfig>,
    /// Firing alerts remembered as inhibition sources at most (default 100000).
    #[serde(default = "default_max_sources")]
    max_sources: usize,
    /// A source not seen firing again for this long stops inhibiting, as Alertmanager
    /// resolves an alert that is no longer sent (default 5m, its `resolve_timeout`;
    /// Prometheus resends firing alerts every minute).
    #[serde(default = "default_resolve_timeout", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    resolve_timeout: std::time::Duration,
}

fn default_resolve_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

/// Routes alerts through an Alertmanager route tree (with its inhibit rules and time
/// intervals) to one output per receiver, `<id>.<receiver>`, and what is muted to
/// `<id>._muted`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "RawConfig")]
pub(crate) struct AlertmanagerRouteConfig {
    /// The file the rest was read from, if any.
    file: Option<PathBuf>,
    route: RouteConfig,
    inhibit_rules: Vec<AlertmanagerInhibit>,
    time_intervals: Vec<TimeIntervalConfig>,
    /// The outputs, in order: the file's receivers, or the tree's.
    receivers: Vec<String>,
    max_sources: usize,
    resolve_timeout: std::time::Duration,
}

impl TryFrom<RawConfig> for AlertmanagerRouteConfig {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        let (route, inhibit_rules, time_intervals, declared) = match (
            &raw.alertmanager_config,
            raw.route,
        ) {
            (Some(path), None) => {
                let at = |e: String| format!("`alertmanager_config` {}: {e}", path.display());
                if !raw.inhibit_rules.is_empty() || !raw.time_intervals.is_empty() {
                    return Err(at(
                            "`inhibit_rules` and `time_intervals` come from the file; leave them out here"
                                .into(),
                        ));
                }
                let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
                let file: AlertmanagerFile =
                    serde_saphyr::from_str(&text).map_err(|e| at(e.to_string()))?;
                let route = file.route.ok_or_else(|| at("it has no `route`".into()))?;
                let mut intervals = file.time_intervals;
                intervals.extend(file.mute_time_intervals);
                let names: Vec<String> = file.receivers.into_iter().map(|r| r.name).collect();
                (route, file.inhibit_rules, intervals, Some(names))
            }
            (None, Some(route)) => (route, raw.inhibit_rules, raw.time_intervals, None),
            (Some(_), Some(_)) => {
                return Err("give either `alertmanager_config` or `route`, not both".into());
            }
            (None, None) => return Err("`alertmanager_config` or `route` is required".into()),
        };
        if raw.max_sources == 0 {
            return Err("`max_sources` must be at least 1".into());
        }
        // What is wrong inside the file names the file.
        let in_file = |e: String| match &raw.alertmanager_config {
            Some(path) => format!("`alertmanager_config` {}: {e}", path.display()),
            None => e,
        };
        let compiled = Compiled::new(&route, &inhibit_rules, &time_intervals).map_err(in_file)?;
        let used: Vec<String> = compiled
            .root
            .walk()
            .into_iter()
            .map(|r| r.settings.receiver.clone())
            .collect();
        let receivers = match declared {
            Some(names) => {
                if let Some(missing) = used.iter().find(|r| !names.contains(r)) {
                    return Err(in_file(format!(
                        "`route`: receiver `{missing}` is not in `receivers`"
                    )));
                }
                names
            }
            None => {
                let mut names: Vec<String> = Vec::new();
                for r in used {
                    if !names.contains(&r) {
                        names.push(r);
                    }
                }
                names
            }
        };
        for name in &receivers {
            if name.is_empty() || name.contains('.') || name == MUTED {
                return Err(in_file(format!(
                    "receiver `{name}` cannot be an output name (empty, `.` or `{MUTED}`)"
                )));
            }
        }
        Ok(Self {
            file: raw.alertmanager_config,
            route,
            inhibit_rules,
            time_intervals,
            receivers,
            max_sources: raw.max_sources,
            resolve_timeout: raw.resolve_timeout,
        })
    }
}

/// The tree, inhibit rules and time intervals, compiled.
struct Compiled {
    root: Route,
    inhibit: Vec<InhibitRule>,
    intervals: HashMap<String, Vec<Interval>>,
}

impl Compiled {
    fn new(
        route: &RouteConfig,
        inhibit_rules: &[AlertmanagerInhibit],
        time_intervals: &[TimeIntervalConfig],
    ) -> Result<Self, String> {
        let root = Route::root(route)?;
        let inhibit = inhibit_rules
            .iter()
            .enumerate()
            .map(|(i, r)| r.rule().map_err(|e| format!("`inhibit_rules[{i}]`: {e}")))
            .collect::<Result<_, _>>()?;
        let mut intervals = HashMap::new();
        for named in time_intervals {
            let compiled = named
                .time_intervals
                .iter()
                .map(Interval::compile)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("time interval `{}`: {e}", named.name))?;
            if intervals.insert(named.name.clone(), compiled).is_some() {
                return Err(format!("time interval `{}` is defined twice", named.name));
            }
        }
        for r in root.walk() {
            for name in r.mute_time_intervals.iter().chain(&r.active_time_intervals) {
                if !intervals.contains_key(name) {
                    return Err(format!("`route`: time interval `{name}` is not defined"));
                }
            }
        }
        Ok(Self {
            root,
            inhibit,
            intervals,
        })
    }
}

impl TransformConfig for AlertmanagerRouteConfig {
    fn type_name(&self) -> &'static str {
        "alertmanager_route"
    }

    fn outputs(&self) -> Vec<String> {
        self.receivers
            .iter()
            .cloned()
            .chain([MUTED.to_owned()])
            .collect()
    }

    fn routed_outputs(&self) -> Vec<String> {
        self.receivers.clone()
    }

    fn files(&self) -> Vec<PathBuf> {
        self.file.iter().cloned().collect()
    }

    fn build(&self, cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        let compiled = Compiled::new(&self.route, &self.inhibit_rules, &self.time_intervals)
            .map_err(BuildError)?;
        let counter = |reason| {
            cx.metrics.counter(
                "sluice_alertmanager_route_muted_total",
                &[("reason", reason)],
            )
        };
        let sources = take_over(&cx.id, &compiled.inhibit, self.max_sources);
        Ok(Box::new(AlertmanagerRoute {
            compiled,
            receivers: self.receivers.clone(),
            sources,
            max_sources: self.max_sources,
            resolve_timeout: crate::units::millis(self.resolve_timeout),
            clock: Arc::clone(&cx.clock),
            inhibited: counter("inhibited"),
            time_muted: counter("time_interval"),
            untracked: cx
                .metrics
                .counter("sluice_alertmanager_route_untracked_sources_total", &[]),
        }))
    }
}

/// Inhibition sources by key: their labels, the inhibit rules they are sources of, and
/// when they were last seen firing (ms).
type Sources = HashMap<String, (BTreeMap<String, String>, Vec<usize>, i64)>;

/// The sources of each instance built, by component id, for the instance that
/// replaces it. Several per id: `validate` builds instances that are dropped at once,
/// and they must not hide the one running.
static LIVE: LazyLock<Mutex<Instances>> = LazyLock::new(Default::default);

type Instances = HashMap<String, Vec<Weak<Mutex<Sources>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The sources of the instance of `id` still running, matched against `rules` (a
/// source of none of them is left out), registered for this instance's replacement.
fn take_over(id: &str, rules: &[InhibitRule], max: usize) -> Arc<Mutex<Sources>> {
    let mut live = lock(&LIVE);
    live.retain(|_, all| {
        all.retain(|w| w.strong_count() > 0);
        !all.is_empty()
    });
    let mut sources = Sources::new();
    if let Some(old) = live
        .get(id)
        .and_then(|all| all.iter().rev().find_map(Weak::upgrade))
    {
        for (key, (labels, _, seen)) in lock(&old).iter() {
            let of: Vec<usize> = (0..rules.len())
                .filter(|&i| rules[i].is_source(labels))
                .collect();
            if !of.is_empty() && sources.len() < max {
                sources.insert(key.clone(), (labels.clone(), of, *seen));
            }
        }
    }
    let shared = Arc::new(Mutex::new(sources));
    live.entry(id.to_owned())
        .or_default()
        .push(Arc::downgrade(&shared));
    shared
}

struct AlertmanagerRoute {
    compiled: Compiled,
    receivers: Vec<String>,
    /// Firing alerts that are sources of an inhibit rule, by key; read by the instance
    /// a reload builds to replace this one.
    sources: Arc<Mutex<Sources>>,
    max_sources: usize,
    /// In ms (see the option).
    resolve_timeout: i64,
    clock: Arc<dyn crate::clock::Clock>,
    inhibited: Arc<LabeledCounter>,
    time_muted: Arc<LabeledCounter>,
    untracked: Arc<LabeledCounter>,
}

/// The event's labels as text (nested values are left out: they are not labels).
fn labels_of(event: &Event) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if let Some(Value::Object(map)) = event.get("labels") {
        for (k, v) in map {
            if !matches!(v, Value::Object(_) | Value::Array(_) | Value::Null) {
                labels.insert(k.to_string(), v.to_string_lossy().into_owned());
            }
        }
    }
    labels
}

fn key_of(event: &Event, labels: &BTreeMap<String, String>) -> String {
    match event.get("fingerprint") {
        Some(v) if !matches!(v, Value::Null) => v.to_string_lossy().into_owned(),
        _ => format!("{labels:?}"),
    }
}

impl AlertmanagerRoute {
    /// Remembers or forgets the alert as an inhibition source; then whether it is
    /// inhibited.
    fn inhibition(
        &mut self,
        event: &Event,
        labels: &BTreeMap<String, String>,
        firing: bool,
        now: i64,
    ) -> bool {
        let rules = &self.compiled.inhibit;
        if rules.is_empty() {
            return false;
        }
        let key = key_of(event, labels);
        let mut sources = lock(&self.sources);
        if !firing {
            sources.remove(&key);
            return false;
        }
        let expired = now.saturating_sub(self.resolve_timeout);
        match sources.get_mut(&key) {
            Some(source) => source.2 = now,
            None => {
                // The rules it is a source of, matched once, not at every later event.
                let of: Vec<usize> = (0..rules.len())
                    .filter(|&i| rules[i].is_source(labels))
                    .collect();
                if !of.is_empty() {
                    if sources.len() >= self.max_sources {
                        // Sources no longer sent make room first.
                        sources.retain(|_, s| s.2 >= expired);
                    }
                    if sources.len() < self.max_sources {
                        sources.insert(key.clone(), (labels.clone(), of, now));
                    } else {
                        self.untracked.add(1);
                    }
                }
            }
        }
        sources.iter().any(|(source_key, (source, of, seen))| {
            *source_key != key
                && *seen >= expired
                && of.iter().any(|&i| rules[i].inhibits(source, labels))
        })
    }

    fn time_muted(&self, route: &Route, now: chrono::DateTime<chrono::Utc>) -> bool {
        let holds = |name: &String| {
            self.compiled
                .intervals
                .get(name)
                .is_some_and(|all| all.iter().any(|i| i.contains(now)))
        };
        route.mute_time_intervals.iter().any(holds)
            || (!route.active_time_intervals.is_empty()
                && !route.active_time_intervals.iter().any(holds))
    }
}

fn set_route(event: &mut Event, metadata: Value) {
    if let Value::Object(meta) = event.meta.vrl.make_mut() {
        meta.insert("alertmanager_route".into(), metadata);
    }
}

impl Transform for AlertmanagerRoute {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        let muted_output = self.receivers.len();
        let now = self.clock.wall();
        for mut event in batch {
            let labels = labels_of(&event);
            let status = event.get("status").map(Value::to_string_lossy);
            let firing = status.as_deref() == Some("firing");
            if self.inhibition(&event, &labels, firing, now.timestamp_millis()) {
                self.inhibited.add(1);
                out.named[muted_output].push(event);
                continue;
            }
            let mut targets: Vec<(usize, &Value)> = Vec::new();
            let mut any_muted = false;
            for route in self.compiled.root.matching(&labels) {
                if self.time_muted(route, now) {
                    any_muted = true;
                    continue;
                }
                if let Some(i) = self
                    .receivers
                    .iter()
                    .position(|r| *r == route.settings.receiver)
                    && !targets.iter().any(|(t, _)| *t == i)
                {
                    targets.push((i, &route.metadata));
                }
            }
            if targets.is_empty() {
                if any_muted {
                    self.time_muted.add(1);
                }
                out.named[muted_output].push(event);
                continue;
            }
            let Some(((output, metadata), rest)) = targets.split_last() else {
                continue;
            };
            for (copy_to, copy_metadata) in rest {
                let mut copy = event.clone();
                set_route(&mut copy, (*copy_metadata).clone());
                out.named[*copy_to].push(copy);
            }
            set_route(&mut event, (*metadata).clone());
            out.named[*output].push(event);
        }
    }
}
