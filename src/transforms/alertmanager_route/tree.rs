//! Alertmanager's route tree, in its own syntax: which routes, and so which receivers,
//! an alert's labels reach.
//!
//! A route matches when all its matchers do (`matchers`, and the older `match` and
//! `match_re`, anchored). Its children are tried in order; the alert goes to every
//! matching child until one matches that has no `continue: true`, and to the route
//! itself when no child matched. The root matches every alert. A child inherits its
//! parent's `receiver`, `group_by` and timing unless it sets them; it does not inherit
//! matchers, `continue` or time intervals, as in Alertmanager.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use vrl::value::{ObjectMap, Value};

use crate::matchers::{Matcher, Op};

/// One node of the route tree, as Alertmanager's `route:` writes it.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteConfig {
    /// Where the alerts of this route go: an output `<id>.<receiver>`. Required on the
    /// root; inherited otherwise.
    pub(crate) receiver: Option<String>,
    /// Labels that split this route's alerts into notification groups (`['...']`: every
    /// label). Inherited when unset. Carried on the event as `%alertmanager_route.group_by`.
    pub(crate) group_by: Option<Vec<String>>,
    /// After a match, keep trying the following sibling routes (default false).
    #[serde(default, rename = "continue")]
    pub(crate) continue_matching: bool,
    /// Label matchers (`severity="critical"`, `team=~"db|infra"`), all of which must hold.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) matchers: Vec<String>,
    /// Older equality matchers, label: value.
    #[serde(default, rename = "match", deserialize_with = "null_as_empty")]
    pub(crate) match_equal: BTreeMap<String, String>,
    /// Older regex matchers, label: regex (anchored).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) match_re: BTreeMap<String, String>,
    /// How long a new group waits for more alerts (Alertmanager's default at the root:
    /// 30s). Carried on the event as `%alertmanager_route.group_wait_seconds`.
    pub(crate) group_wait: Option<String>,
    /// Least time between two notifications of a group (default 5m).
    pub(crate) group_interval: Option<String>,
    /// A still-firing group is notified again after this long (default 4h).
    pub(crate) repeat_interval: Option<String>,
    /// Names of `time_intervals` during which this route's notifications are muted.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) mute_time_intervals: Vec<String>,
    /// Names of `time_intervals` outside of which this route's notifications are muted.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) active_time_intervals: Vec<String>,
    /// Child routes, tried in order.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) routes: Vec<RouteConfig>,
}

/// A key written with nothing after it (`routes:` with its children commented out)
/// is YAML null, which Alertmanager (Go) reads as empty.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What a route hands on to its children and to the events it routes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub(crate) receiver: String,
    /// `None`: group by every label (`...`).
    pub(crate) group_by: Option<Vec<String>>,
    pub(crate) group_wait: Duration,
    pub(crate) group_interval: Duration,
    pub(crate) repeat_interval: Duration,
}

/// A compiled route.
#[derive(Debug)]
pub(crate) struct Route {
    matchers: Vec<Matcher>,
    continue_matching: bool,
    pub(crate) settings: Settings,
    pub(crate) mute_time_intervals: Vec<String>,
    pub(crate) active_time_intervals: Vec<String>,
    /// `settings` as the `%alertmanager_route` metadata the routed events carry, made
    /// once.
    pub(crate) metadata: Value,
    routes: Vec<Route>,
}

impl Settings {
    fn metadata(&self) -> Value {
        let mut m = ObjectMap::new();
        m.insert("receiver".into(), Value::from(self.receiver.as_str()));
        let group_by = match &self.group_by {
            None => Value::from("..."),
            Some(labels) => Value::Array(labels.iter().map(|l| Value::from(l.as_str())).collect()),
        };
        m.insert("group_by".into(), group_by);
        for (name, d) in [
            ("group_wait_seconds", self.group_wait),
            ("group_interval_seconds", self.group_interval),
            ("repeat_interval_seconds", self.repeat_interval),
        ] {
            m.insert(name.into(), Value::from_f64_or_zero(d.as_secs_f64()));
        }
        Value::Object(m)
    }
}

impl Route {
    /// Compiles the root route (which must name a receiver and takes no matchers).
    pub(crate) fn root(config: &RouteConfig) -> Result<Self, String> {
        let receiver = config
            .receiver
            .clone()
            .ok_or("`route`: the root route needs a `receiver`")?;
        if !config.matchers.is_empty()
            || !config.match_equal.is_empty()
            || !config.match_re.is_empty()
        {
            return Err("`route`: the root route matches every alert; it takes no matchers".into());
        }
        if !config.mute_time_intervals.is_empty() || !config.active_time_intervals.is_empty() {
            return Err("`route`: the root route cannot have time intervals".into());
        }
        let defaults = Settings {
            receiver,
            group_by: Some(Vec::new()),
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(5 * 60),
            repeat_interval: Duration::from_secs(4 * 3600),
        };
        Self::compile(config, &defaults, "route")
    }

    fn compile(config: &RouteConfig, parent: &Settings, path: &str) -> Result<Self, String> {
        let at = |e: String| format!("`{path}`: {e}");
        let mut matchers = Vec::new();
        for text in &config.matchers {
            matchers.extend(parse_matchers(text).map_err(at)?);
        }
        for (label, value) in &config.match_equal {
            matchers.push(Matcher::new(label, Op::Equal, value).map_err(at)?);
        }
        for (label, regex) in &config.match_re {
            matchers.push(Matcher::new(label, Op::Regex, regex).map_err(at)?);
        }
        let duration = |v: &Option<String>, inherited: Duration, option: &str| match v {
            None => Ok(inherited),
            Some(text) => crate::units::prometheus_duration(text).ok_or_else(|| {
                at(format!(
                    "`{option}` `{text}` is not a Prometheus duration (such as 30s, 5m, 1h30m)"
                ))
            }),
        };
        let group_by = match &config.group_by {
            None => parent.group_by.clone(),
            Some(labels) if labels.iter().any(|l| l == "...") => {
                if labels.len() > 1 {
                    return Err(at(
                        "`group_by: ['...']` groups by every label; it stands alone".into(),
                    ));
                }
                None
            }
            Some(labels) => Some(labels.clone()),
        };
        let settings = Settings {
            receiver: config
                .receiver
                .clone()
                .unwrap_or_else(|| parent.receiver.clone()),
            group_by,
            group_wait: duration(&config.group_wait, parent.group_wait, "group_wait")?,
            group_interval: duration(
                &config.group_interval,
                parent.group_interval,
                "group_interval",
            )?,
            repeat_interval: duration(
                &config.repeat_interval,
                parent.repeat_interval,
                "repeat_interval",
            )?,
        };
        if settings.group_interval.is_zero() || settings.repeat_interval.is_zero() {
            return Err(at(
                "`group_interval` and `repeat_interval` must be above zero".into(),
            ));
        }
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, child)| Self::compile(child, &settings, &format!("{path}.routes[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            matchers,
            continue_matching: config.continue_matching,
            metadata: settings.metadata(),
            settings,
            mute_time_intervals: config.mute_time_intervals.clone(),
            active_time_intervals: config.active_time_intervals.clone(),
            routes,
        })
    }

    /// The routes `labels` reach, in tree order (empty only when this route does not
    /// match).
    pub(crate) fn matching<'a>(&'a self, labels: &BTreeMap<String, String>) -> Vec<&'a Route> {
        if !self.matchers.iter().all(|m| m.matches_labels(labels)) {
            return Vec::new();
        }
        let mut all = Vec::new();
        for child in &self.routes {
            let found = child.matching(labels);
            let matched = !found.is_empty();
            all.extend(found);
            if matched && !child.continue_matching {
                break;
            }
        }
        if all.is_empty() {
            all.push(self);
        }
        all
    }

    /// Every route of the tree, this one first.
    pub(crate) fn walk(&self) -> Vec<&Route> {
        let mut out = vec![self];
        for child in &self.routes {
            out.extend(child.walk());
        }
        out
    }
}

/// One `matchers` entry: a matcher, or several in Alertmanager's `{a="x", b=~"y"}` form.
/// As in Alertmanager, commas outside quotes separate matchers with or without the
/// braces (`team=db,env=prod` is two).
pub(crate) fn parse_matchers(text: &str) -> Result<Vec<Matcher>, String> {
    let trimmed = text.trim();
    let inner = match trimmed.strip_prefix('{') {
        Some(rest) => rest
            .strip_suffix('}')
            .ok_or_else(|| format!("matcher {text:?}: `{{` without `}}`"))?,
        None => trimmed,
    };
    split_outside_quotes(inner)
        .into_iter()
        .filter(|part| !part.trim().is_empty())
        .map(Matcher::parse)
        .collect()
}

/// Splits at commas that are not inside double quotes.
fn split_outside_quotes(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}
