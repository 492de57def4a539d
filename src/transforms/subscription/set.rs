//! A compiled set of subscriptions and the index that finds the ones an event matches.
//!
//! The index keys every enabled subscription by the cartesian product of its
//! `event_types`, `services` and `severity_levels`, a criterion left open being the
//! wildcard `*`. For a given event a subscription then sits under exactly one of the
//! eight keys `(type|*, service|*, severity|*)`, so a lookup is at most fourteen hash
//! probes in a three-level tree and yields the subscriptions that pass all three
//! criteria, without duplicates and without scanning the others. The remaining
//! criteria (project, regions, labels) are checked on those candidates only; the VRL
//! `condition` is run by the transform last. A subscription listing so many values
//! that its product would exceed [`MAX_KEYS`] is indexed under `*` for its longest
//! lists instead: the index may then return a superset, which the full check narrows,
//! so results never depend on this.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use vrl::value::{ObjectMap, Value};

use crate::component::BuildError;
use crate::matchers::Matcher;
use crate::program::{self, CompiledProgram, Mode, ProgramSource};

/// Index entries one subscription may take before its longest lists are indexed as `*`.
pub(crate) const MAX_KEYS: usize = 64;

/// The output of events no subscription matches.
pub(crate) const UNMATCHED: &str = "_unmatched";

fn default_resolve_after_hours() -> f64 {
    24.0
}

/// One subscription as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriptionSpec {
    /// Output name: events go to `<id>.<name>`.
    pub(crate) name: String,
    /// Matches the event's `project`.
    #[serde(default)]
    pub(crate) project_id: Option<String>,
    /// Matches `event_type`; empty: any.
    #[serde(default)]
    pub(crate) event_types: Vec<String>,
    /// Matches `service`; empty: any.
    #[serde(default)]
    pub(crate) services: Vec<String>,
    /// Matches `region`; empty: any.
    #[serde(default)]
    pub(crate) regions: Vec<String>,
    /// Matches `severity`; empty: any.
    #[serde(default)]
    pub(crate) severity_levels: Vec<String>,
    /// Matchers on `labels` (see [`CustomFilters`]).
    #[serde(default)]
    #[schemars(with = "CustomFiltersText")]
    pub(crate) custom_filters: CustomFilters,
    /// A disabled subscription matches nothing but keeps its output.
    #[serde(default = "crate::units::yes")]
    pub(crate) enabled: bool,
    /// Emit a resolved event for a firing alert not resolved within
    /// `resolve_after_hours`.
    #[serde(default)]
    pub(crate) auto_resolve: bool,
    /// Hours after the first firing before the resolve is emitted (default 24).
    #[serde(default = "default_resolve_after_hours")]
    pub(crate) resolve_after_hours: f64,
    /// A VRL boolean expression the event must also satisfy.
    #[serde(default)]
    pub(crate) condition: Option<String>,
}

/// `custom_filters`: either a map `{ label: value }` (each an equality) or a list of
/// matcher strings (`env != prod`, `host =~ "web-.*"`; see [`crate::matchers`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CustomFilters(pub Vec<Matcher>);

/// How `custom_filters` is written, for the JSON Schema (the parsing is
/// [`CustomFilters`]' own `Deserialize`).
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum CustomFiltersText {
    /// `{ label: value }`, each an equality.
    Map(std::collections::BTreeMap<String, String>),
    /// Matcher strings: `env != prod`, `host =~ "web-.*"`.
    List(Vec<String>),
}

/// Written back as the list of matcher strings.
impl Serialize for CustomFilters {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for CustomFilters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CustomFilters;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of label: value, or a list of matchers such as `env != prod`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((label, value)) = map.next_entry::<String, Scalar>()? {
                    out.push(Matcher::equal(&label, &value.0));
                }
                Ok(CustomFilters(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    out.push(Matcher::parse(&text).map_err(de::Error::custom)?);
                }
                Ok(CustomFilters(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(CustomFilters::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A label value in the map form: strings, numbers and booleans compare as text.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean label value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks what must hold before the names become outputs: each name is non-empty,
/// unique, free of `.` and not `_unmatched`.
pub(crate) fn check_names(specs: &[SubscriptionSpec]) -> Result<(), String> {
    check_name_list(specs.iter().map(|s| s.name.as_str()))
}

/// [`check_names`] on the names alone.
pub(crate) fn check_name_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let mut seen = HashSet::new();
    for name in names {
        check_name(name)?;
        if !seen.insert(name) {
            return Err(format!("subscription name `{name}` is used twice"));
        }
    }
    Ok(())
}

/// A name that can be an output: non-empty, without `.`, not `_unmatched`.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('.') || name == UNMATCHED {
        return Err(format!(
            "subscription name `{name}` is empty, contains `.` or is reserved"
        ));
    }
    Ok(())
}

/// Where a subscription made through the API delivers, and its id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route<'a> {
    pub(crate) output: &'a str,
    pub(crate) id: &'a str,
}

/// One compiled subscription.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) name: Arc<str>,
    /// The named output its matches leave on: its name, or for one made through the
    /// API the output it chose.
    pub(crate) output: Arc<str>,
    /// What its auto-resolve timers are kept under: its name, or for one made through
    /// the API `api:<id>` (a new subscription taking a deleted one's name must not
    /// inherit its timers).
    pub(crate) key: Arc<str>,
    pub(crate) enabled: bool,
    project: Option<String>,
    event_types: Vec<String>,
    services: Vec<String>,
    regions: Vec<String>,
    severities: Vec<String>,
    filters: Vec<Matcher>,
    pub(crate) condition: Option<Arc<CompiledProgram>>,
    pub(crate) auto_resolve: bool,
    pub(crate) resolve_after: Duration,
}

fn one_of(list: &[String], value: Option<&str>) -> bool {
    list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x == v))
}

impl Compiled {
    /// Every criterion but the VRL condition.
    pub(crate) fn matches(&self, f: &Fields<'_>) -> bool {
        self.enabled
            && one_of(&self.event_types, f.event_type.as_deref())
            && one_of(&self.services, f.service.as_deref())
            && one_of(&self.severities, f.severity.as_deref())
            && one_of(&self.regions, f.region.as_deref())
            && self
                .project
                .as_ref()
                .is_none_or(|p| f.project.as_deref() == Some(p.as_str()))
            && self.filters.iter().all(|m| {
                let label = f.labels.and_then(|l| l.get(m.label.as_str()));
                m.matches(label.and_then(text).as_deref())
            })
    }
}

/// A field's text: strings as they are, numbers and booleans as written; other kinds
/// (and absent fields) have none.
pub(crate) fn text(v: &Value) -> Option<Cow<'_, str>> {
    if let Some(s) = v.to_str_lossy() {
        return Some(s);
    }
    match v {
        Value::Integer(i) => Some(Cow::Owned(i.to_string())),
        Value::Float(f) => Some(Cow::Owned(f.to_string())),
        Value::Boolean(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// The fields of an event that subscriptions look at, read once per event.
#[derive(Debug, Default)]
pub(crate) struct Fields<'a> {
    pub(crate) event_type: Option<Cow<'a, str>>,
    pub(crate) service: Option<Cow<'a, str>>,
    pub(crate) severity: Option<Cow<'a, str>>,
    pub(crate) region: Option<Cow<'a, str>>,
    pub(crate) project: Option<Cow<'a, str>>,
    pub(crate) labels: Option<&'a ObjectMap>,
}

impl<'a> Fields<'a> {
    pub(crate) fn of(value: &'a Value) -> Self {
        let Value::Object(map) = value else {
            return Self::default();
        };
        let get = |k: &str| map.get(k).and_then(text);
        Self {
            event_type: get("event_type"),
            service: get("service"),
            severity: get("severity"),
            region: get("region"),
            project: get("project"),
            labels: match map.get("labels") {
                Some(Value::Object(l)) => Some(l),
                _ => None,
            },
        }
    }
}

/// One level of the index tree: children by value, and the wildcard child.
#[derive(Debug)]
struct Level<T> {
    by: HashMap<Box<str>, T>,
    any: Option<T>,
}

impl<T: Default> Level<T> {
    fn new() -> Self {
        Self {
            by: HashMap::new(),
            any: None,
        }
    }

    fn entry(&mut self, key: Option<&str>) -> &mut T {
        match key {
            Some(k) => self.by.entry(Box::from(k)).or_default(),
            None => self.any.get_or_insert_with(T::default),
        }
    }

    /// The child for `value` (if any) and the wildcard child.
    fn get(&self, value: Option<&str>) -> impl Iterator<Item = &T> {
        value
            .and_then(|v| self.by.get(v))
            .into_iter()
            .chain(self.any.as_ref())
    }
}

impl<T: Default> Default for Level<T> {
    fn default() -> Self {
        Self::new()
    }
}

type Index = Level<Level<Level<Vec<u32>>>>;

/// A compiled set of subscriptions, in file order.
#[derive(Debug)]
pub(crate) struct SubscriptionSet {
    pub(crate) subs: Vec<Compiled>,
    index: Index,
}

impl SubscriptionSet {
    /// Compiles `specs` (conditions included). Names must pass [`check_names`].
    pub(crate) fn compile(specs: &[SubscriptionSpec]) -> Result<Self, BuildError> {
        let routed: Vec<(&SubscriptionSpec, Option<Route<'_>>)> =
            specs.iter().map(|s| (s, None)).collect();
        Self::compile_routed(&routed)
    }

    /// Compiles subscriptions that each leave on the given output (`None`: their own
    /// name's).
    pub(crate) fn compile_routed(
        specs: &[(&SubscriptionSpec, Option<Route<'_>>)],
    ) -> Result<Self, BuildError> {
        check_name_list(specs.iter().map(|(s, _)| s.name.as_str())).map_err(BuildError)?;
        if specs.len() > u32::MAX as usize {
            return Err(BuildError("too many subscriptions".into()));
        }
        let mut subs = Vec::with_capacity(specs.len());
        // Programs are compiled once per distinct source: thousands of subscriptions
        // often share a handful of conditions.
        let mut programs: HashMap<&str, Arc<CompiledProgram>> = HashMap::new();
        for &(s, output) in specs {
            let at = |what: &str| format!("subscription `{}`: {what}", s.name);
            if s.auto_resolve && !(s.resolve_after_hours.is_finite() && s.resolve_after_hours > 0.0)
            {
                return Err(BuildError(at(
                    "`resolve_after_hours` must be a positive number",
                )));
            }
            let condition = match &s.condition {
                None => None,
                Some(src) => Some(match programs.get(src.as_str()) {
                    Some(p) => Arc::clone(p),
                    None => {
                        let p =
                            program::compile(&ProgramSource::Inline(src.clone()), Mode::Condition)
                                .map_err(|e| BuildError(at(&format!("`condition`: {}", e.0))))?;
                        programs.insert(src, Arc::clone(&p));
                        p
                    }
                }),
            };
            let dedup = |list: &[String]| {
                let mut seen = HashSet::new();
                list.iter()
                    .filter(|v| seen.insert(v.as_str()))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let name: Arc<str> = Arc::from(s.name.as_str());
            subs.push(Compiled {
                output: output.map_or_else(|| Arc::clone(&name), |r| Arc::from(r.output)),
                key: output
                    .map_or_else(|| Arc::clone(&name), |r| Arc::from(format!("api:{}", r.id))),
                name,
                enabled: s.enabled,
                project: s.project_id.clone(),
                event_types: dedup(&s.event_types),
                services: dedup(&s.services),
                regions: dedup(&s.regions),
                severities: dedup(&s.severity_levels),
                filters: s.custom_filters.0.clone(),
                condition,
                auto_resolve: s.auto_resolve,
                // Checked above when it matters; never let a NaN reach `from_secs_f64`.
                resolve_after: if s.resolve_after_hours.is_finite() {
                    Duration::from_secs_f64((s.resolve_after_hours * 3600.0).clamp(0.0, 1e12))
                } else {
                    Duration::ZERO
                },
            });
        }
        let mut index = Index::new();
        for (i, sub) in subs.iter().enumerate() {
            if !sub.enabled {
                continue;
            }
            let mut dims: [&[String]; 3] = [&sub.event_types, &sub.services, &sub.severities];
            while dims.iter().map(|d| d.len().max(1)).product::<usize>() > MAX_KEYS {
                if let Some(longest) = dims.iter_mut().max_by_key(|d| d.len()) {
                    *longest = &[];
                }
            }
            let keys = |d: &[String]| -> Vec<Option<String>> {
                if d.is_empty() {
                    vec![None]
                } else {
                    d.iter().cloned().map(Some).collect()
                }
            };
            for t in keys(dims[0]) {
                for s in keys(dims[1]) {
                    for v in keys(dims[2]) {
                        index
                            .entry(t.as_deref())
                            .entry(s.as_deref())
                            .entry(v.as_deref())
                            .push(i as u32);
                    }
                }
            }
        }
        Ok(Self { subs, index })
    }

    /// Names in order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.subs.iter().map(|s| &s.name)
    }

    /// Indexes (ascending) of the subscriptions whose criteria, all but `condition`,
    /// `f` satisfies, found through the index. `out` is cleared first.
    pub(crate) fn matching(&self, f: &Fields<'_>, out: &mut Vec<u32>) {
        out.clear();
        let (t, s, v) = (
            f.event_type.as_deref(),
            f.service.as_deref(),
            f.severity.as_deref(),
        );
        for by_service in self.index.get(t) {
            for by_severity in by_service.get(s) {
                for leaf in by_severity.get(v) {
                    out.extend(
                        leaf.iter()
                            .copied()
                            .filter(|&i| self.subs[i as usize].matches(f)),
                    );
                }
            }
        }
        out.sort_unstable();
    }

    /// What [`SubscriptionSet::matching`] returns, by checking every subscription in
    /// turn (the reference the index is tested and benchmarked against).
    pub(crate) fn matching_linear(&self, f: &Fields<'_>, out: &mut Vec<u32>) {
        out.clear();
        out.extend(
            self.subs
                .iter()
                .enumerate()
                .filter(|(_, s)| s.matches(f))
                .map(|(i, _)| i as u32),
        );
    }
}

/// The names of a subscription list, for a reload's rebuild decision.
pub(crate) fn names_key(specs: &[SubscriptionSpec]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    let mut h = DefaultHasher::new();
    names.hash(&mut h);
    h.finish()
}

/// A subscription file: `subscriptions: [ … ]` at its top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriptionFile {
    pub(crate) subscriptions: Vec<SubscriptionSpec>,
}

#[cfg(test)]
mod tests;
