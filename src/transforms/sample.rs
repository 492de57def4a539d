//! `sample`: keeps a share of the events.
//!
//! `rate: N` keeps one event in N (every Nth, or by key); `ratio: r` keeps that fraction
//! (at random, or by key). With `key_field`, the decision is a hash of the field's
//! value, so every event of one key gets the same decision (on every replica).
//! `always_keep` is a VRL condition for events never sampled away (errors, say).
//! Dropped events are settled delivered and counted as discarded.

use std::sync::Arc;

use serde::Deserialize;
use vrl::value::Value;

use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::fields::{self, Reads};
use crate::event::{Event, EventBatch, EventStatus};
use crate::program::{self, Mode, Outcome, ProgramSource, Runner};
use crate::telemetry::ComponentMetrics;

/// Keeps one event in N (or a ratio), consistently by key.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SampleConfig {
    /// Keep one event in this many (at least 1). Give this or `ratio`, not both.
    pub(crate) rate: Option<u64>,
    /// Keep this fraction of the events, from 0 to 1. Give this or `rate`, not both.
    pub(crate) ratio: Option<f64>,
    /// Decide by a hash of this field's value, so every event with one value gets the
    /// same decision; events without it are sampled as if it were unset.
    pub(crate) key_field: Option<String>,
    /// A VRL condition: events for which it is true are always kept.
    pub(crate) always_keep: Option<String>,
}

use crate::hashing::fnv1a;

enum Share {
    OneIn(u64),
    Ratio(f64),
}

impl TransformConfig for SampleConfig {
    fn type_name(&self) -> &'static str {
        "sample"
    }

    fn build(&self, cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        let share = match (self.rate, self.ratio) {
            (Some(n), None) if n >= 1 => Share::OneIn(n),
            (None, Some(r)) if (0.0..=1.0).contains(&r) => Share::Ratio(r),
            (Some(_), None) => return Err(BuildError("`rate` must be at least 1".into())),
            (None, Some(_)) => return Err(BuildError("`ratio` must be between 0 and 1".into())),
            _ => return Err(BuildError("give exactly one of `rate` and `ratio`".into())),
        };
        let key = self
            .key_field
            .as_deref()
            .map(vrl::path::parse_value_path)
            .transpose()
            .map_err(|e| BuildError(format!("`key_field`: {e}")))?;
        let keep = self
            .always_keep
            .as_ref()
            .map(|c| program::compile(&ProgramSource::Inline(c.clone()), Mode::Condition))
            .transpose()?
            .map(Runner::new);
        Ok(Box::new(Sample {
            share,
            reads: Reads::of_paths(&key),
            key,
            keep,
            seen: 0,
            metrics: Arc::clone(&cx.metrics),
        }))
    }
}

struct Sample {
    share: Share,
    /// The top-level field `key` starts in: all an event still in its JSON text has read
    /// out of it.
    reads: Reads,
    key: Option<vrl::path::OwnedValuePath>,
    keep: Option<Runner>,
    seen: u64,
    metrics: Arc<ComponentMetrics>,
}

impl Sample {
    fn sampled_in(&mut self, event: &Event) -> bool {
        // Without a key the payload is not read, and with one only the key's field: an
        // event kept as JSON text stays unparsed.
        let keyed = self.key.as_ref().and_then(|p| {
            fields::root(&self.reads, event)
                .get(p)
                .map(|v| fnv1a(v.to_string_lossy().as_bytes()))
        });
        match (&self.share, keyed) {
            (Share::OneIn(n), Some(h)) => h % n == 0,
            (Share::OneIn(n), None) => {
                self.seen += 1;
                self.seen % n == 1 || *n == 1
            }
            (Share::Ratio(r), Some(h)) => (h as f64 / u64::MAX as f64) < *r,
            (Share::Ratio(r), None) => fastrand::f64() < *r,
        }
    }
}

impl Transform for Sample {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        for mut event in batch {
            let always = self.keep.as_mut().is_some_and(|k| {
                matches!(k.run_event(&mut event), Outcome::Done(Value::Boolean(true)))
            });
            if always || self.sampled_in(&event) {
                out.default.push(event);
            } else {
                self.metrics.add_discarded(1);
                event.settle(EventStatus::Delivered);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn sample(rate: u64, key_field: Option<&str>) -> Box<dyn Transform> {
        let cx = TransformContext::for_test("sample", Arc::new(ManualClock::default()));
        let config = SampleConfig {
            rate: Some(rate),
            ratio: None,
            key_field: key_field.map(str::to_owned),
            always_keep: None,
        };
        config.build(&cx).expect("builds")
    }

    fn kept(text: &str) -> Event {
        Event::kept_json(text)
    }

    #[test]
    fn only_a_key_makes_the_sampler_read_the_payload() {
        let text = r#"{"service":"db","n":1}"#;
        let mut out = TransformOutputs::new(0);
        sample(1, None).process(vec![kept(text)], &mut out);
        let passed = out.default.pop().expect("rate 1 keeps every event");
        assert!(passed.unparsed_json().is_some(), "not parsed without a key");

        let mut out = TransformOutputs::new(0);
        sample(1, Some("service")).process(vec![kept(text)], &mut out);
        let passed = out.default.pop().expect("rate 1 keeps every event");
        assert!(
            passed.unparsed_json().is_some(),
            "the key read out of the text"
        );
        assert_eq!(
            passed.raw_json(),
            Some(text.as_bytes()),
            "and sent as it came"
        );
    }

    #[test]
    fn a_keyed_sample_of_kept_text_keeps_what_it_keeps_of_parsed_events() {
        let texts: Vec<String> = (0..60)
            .map(|n| match n % 4 {
                0 => format!(r#"{{"service":"s{n}","n":{n}}}"#),
                1 => format!(r#"{{"n":{n},"service":{{"k":{}}}}}"#, n % 7),
                2 => format!(r#"{{"ser\u0076ice":"s{}","n":{n}}}"#, n % 5),
                _ => format!(r#"{{"n":{n}}}"#),
            })
            .collect();
        let run = |kept_text: bool| {
            let mut out = TransformOutputs::new(0);
            let events = texts.iter().map(|t| Event::json(t, kept_text)).collect();
            sample(3, Some("service")).process(events, &mut out);
            crate::event::passed_ints(&out.default, "n", kept_text)
        };
        let parsed = run(false);
        assert!(parsed.len() > 5 && parsed.len() < 55, "{parsed:?}");
        assert_eq!(run(true), parsed);
    }
}
