//! `aggregate`: one metric event per group and interval.
//!
//! Every `interval`, each group of `group_by` values seen gives one event:
//! `{ event_type: "metric", name, <group_by fields>, count, <field>: { sum, min, max,
//! avg }, window_start, window_end }` for each numeric field of `fields` (non-numeric
//! values are ignored). Input events are settled with the outcome of the aggregate made
//! from them (delivered when a sink delivered it), so a source's acknowledgement waits
//! for the aggregate's delivery. The transform flushes on its interval, when shutdown
//! begins and before a reload replaces it: nothing is lost.

use std::time::Duration;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::fields::{self, Reads};
use crate::event::{BatchAck, Event, EventAck, EventBatch, SourceId};

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_name() -> String {
    "aggregate".into()
}

/// Counts, sums, minimums, maximums and averages of fields per group and interval.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AggregateConfig {
    /// How often each group's metric event is emitted (default 10s).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub(crate) interval: Duration,
    /// Field paths whose values make a group (a missing field counts as null); copied
    /// into the metric event. Empty (the default): one group for all events.
    #[serde(default)]
    pub(crate) group_by: Vec<String>,
    /// Numeric field paths summarized per group as `{ sum, min, max, avg }`; other
    /// values are ignored.
    #[serde(default)]
    pub(crate) fields: Vec<String>,
    /// `name` of the metric events.
    #[serde(default = "default_name")]
    pub(crate) name: String,
}

fn paths(names: &[String], what: &str) -> Result<Vec<(String, OwnedValuePath)>, BuildError> {
    names
        .iter()
        .map(|n| {
            vrl::path::parse_value_path(n)
                .map(|p| (n.clone(), p))
                .map_err(|e| BuildError(format!("`{what}`: `{n}`: {e}")))
        })
        .collect()
}

impl TransformConfig for AggregateConfig {
    fn type_name(&self) -> &'static str {
        "aggregate"
    }

    fn build(&self, cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        if self.interval.is_zero() {
            return Err(BuildError("`interval` must be above zero".into()));
        }
        let group_by = paths(&self.group_by, "group_by")?;
        let fields = paths(&self.fields, "fields")?;
        Ok(Box::new(Aggregate {
            id: SourceId::intern(&cx.id),
            interval: self.interval,
            reads: Reads::of_paths(group_by.iter().chain(&fields).map(|(_, p)| p)),
            group_by,
            fields,
            name: self.name.clone(),
            groups: IndexMap::new(),
            window_start: Utc::now(),
        }))
    }
}

#[derive(Clone, Copy)]
struct Stat {
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
}

struct Group {
    keys: Vec<Value>,
    count: u64,
    stats: Vec<Option<Stat>>,
    acks: Vec<EventAck>,
}

struct Aggregate {
    id: SourceId,
    interval: Duration,
    /// The top-level fields of `group_by` and `fields`: all an event still in its JSON
    /// text has read out of it.
    reads: Reads,
    group_by: Vec<(String, OwnedValuePath)>,
    fields: Vec<(String, OwnedValuePath)>,
    name: String,
    groups: IndexMap<String, Group>,
    window_start: DateTime<Utc>,
}

use crate::event::as_f64 as number;

impl Transform for Aggregate {
    fn process(&mut self, batch: EventBatch, _out: &mut TransformOutputs) {
        for mut event in batch {
            let root = fields::root(&self.reads, &event);
            let keys: Vec<Value> = self
                .group_by
                .iter()
                .map(|(_, p)| root.get(p).cloned().unwrap_or(Value::Null))
                .collect();
            let key = serde_json::to_string(&keys).unwrap_or_default();
            let fields = self.fields.len();
            let group = self.groups.entry(key).or_insert_with(|| Group {
                keys,
                count: 0,
                stats: vec![None; fields],
                acks: Vec::new(),
            });
            group.count += 1;
            for (slot, (_, path)) in group.stats.iter_mut().zip(&self.fields) {
                if let Some(x) = number(root.get(path)) {
                    let s = slot.get_or_insert(Stat {
                        n: 0,
                        sum: 0.0,
                        min: x,
                        max: x,
                    });
                    s.n += 1;
                    s.sum += x;
                    s.min = s.min.min(x);
                    s.max = s.max.max(x);
                }
            }
            drop(root);
            group.acks.push(event.meta.ack.take());
        }
    }

    fn flush_interval(&self) -> Option<Duration> {
        Some(self.interval)
    }

    fn flush(&mut self, out: &mut TransformOutputs) {
        let end = Utc::now();
        for (_, group) in self.groups.drain(..) {
            let mut m = ObjectMap::new();
            m.insert("event_type".into(), "metric".into());
            m.insert("name".into(), Value::from(self.name.as_str()));
            for ((name, _), value) in self.group_by.iter().zip(group.keys) {
                m.insert(KeyString::from(name.as_str()), value);
            }
            m.insert("count".into(), Value::from(group.count as i64));
            for ((name, _), stat) in self.fields.iter().zip(group.stats) {
                let Some(s) = stat else { continue };
                let mut st = ObjectMap::new();
                for (k, v) in [
                    ("sum", s.sum),
                    ("min", s.min),
                    ("max", s.max),
                    ("avg", s.sum / s.n as f64),
                ] {
                    // Sums of finite inputs are finite; a NaN cannot arise here.
                    st.insert(k.into(), Value::from_f64_or_zero(v));
                }
                m.insert(KeyString::from(name.as_str()), Value::Object(st));
            }
            m.insert("window_start".into(), Value::Timestamp(self.window_start));
            m.insert("window_end".into(), Value::Timestamp(end));
            let ack = BatchAck::forwarding(group.acks);
            out.default
                .push(Event::new(Value::Object(m), self.id, end).with_ack(ack.event_ack()));
        }
        self.window_start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn aggregate() -> Box<dyn Transform> {
        let cx = TransformContext::for_test("aggregate", Arc::new(ManualClock::default()));
        let config = AggregateConfig {
            interval: Duration::from_secs(10),
            group_by: vec!["service".into(), "labels.team".into()],
            fields: vec!["latency".into(), "size.bytes".into()],
            name: "m".into(),
        };
        config.build(&cx).expect("builds")
    }

    /// The groups' metrics, without their windows (they differ between two runs).
    fn metrics(kept: bool, texts: &[&str]) -> Vec<Value> {
        let mut t = aggregate();
        let events = texts.iter().map(|text| Event::json(text, kept)).collect();
        let mut out = TransformOutputs::new(0);
        t.process(events, &mut out);
        t.flush(&mut out);
        out.default
            .into_iter()
            .map(|e| {
                let mut v = e.into_value();
                if let Value::Object(m) = &mut v {
                    m.remove("window_start");
                    m.remove("window_end");
                }
                v
            })
            .collect()
    }

    #[test]
    fn events_in_their_json_text_aggregate_as_parsed_ones() {
        let texts = [
            r#"{"service":"a","labels":{"team":"x"},"latency":5,"size":{"bytes":10}}"#,
            r#"{"latency":7.5,"labels":{"team":"x"},"service":"a","junk":[1,{"a":2}]}"#,
            r#"{"service":"b","latency":"slow","size":{"bytes":-3}}"#,
            r#"{"ser\u0076ice":"a","labels":{"team":"x"},"latency":1}"#,
            r#"{"labels":{"team":null}}"#,
        ];
        let parsed = metrics(false, &texts);
        assert_eq!(parsed.len(), 3, "{parsed:?}");
        let count = |v: &Value| match v {
            Value::Object(m) => m.get("count").and_then(Value::as_integer),
            _ => None,
        };
        assert_eq!(
            parsed.iter().map(count).collect::<Vec<_>>(),
            [Some(3), Some(1), Some(1)]
        );
        assert_eq!(metrics(true, &texts), parsed);
    }
}
