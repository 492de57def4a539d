//! `throttle`: at most `threshold` events per `window` per key.
//!
//! Keys come from `key_field` (one shared quota without it). The quota is governor's
//! GCRA: `threshold` may arrive at once, then one more every `window / threshold`.
//! Events over the quota go to `<id>.dropped` (counted as discarded when nothing reads
//! it). Keys idle for a whole window are forgotten, so memory follows active keys.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::EventBatch;
use crate::event::fields::{self, Reads};

/// Limits events per key and window; the excess goes to `<id>.dropped`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThrottleConfig {
    /// Events let through per `window` and key (at least 1); that many may arrive at
    /// once, then one more every `window / threshold`.
    pub(crate) threshold: u32,
    /// The period `threshold` applies to; events over it go to `<id>.dropped`.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(with = "humantime_serde")]
    pub(crate) window: Duration,
    /// Gives each value of this field its own quota; events without it share one.
    /// Unset: one quota for all events.
    pub(crate) key_field: Option<String>,
}

impl TransformConfig for ThrottleConfig {
    fn type_name(&self) -> &'static str {
        "throttle"
    }

    fn outputs(&self) -> Vec<String> {
        vec!["dropped".into()]
    }

    fn build(&self, _cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        let threshold = NonZeroU32::new(self.threshold)
            .ok_or_else(|| BuildError("`threshold` must be at least 1".into()))?;
        if self.window.is_zero() {
            return Err(BuildError("`window` must be above zero".into()));
        }
        let quota = Quota::with_period(self.window / self.threshold)
            .ok_or_else(|| BuildError("`window` is too short for `threshold`".into()))?
            .allow_burst(threshold);
        let key = self
            .key_field
            .as_deref()
            .map(vrl::path::parse_value_path)
            .transpose()
            .map_err(|e| BuildError(format!("`key_field`: {e}")))?;
        Ok(Box::new(Throttle {
            limiter: RateLimiter::keyed(quota),
            reads: Reads::of_paths(&key),
            key,
            window: self.window,
        }))
    }
}

struct Throttle {
    limiter: DefaultKeyedRateLimiter<String>,
    /// The top-level field `key` starts in: all an event still in its JSON text has read
    /// out of it.
    reads: Reads,
    key: Option<vrl::path::OwnedValuePath>,
    window: Duration,
}

impl Transform for Throttle {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        for event in batch {
            let key = self
                .key
                .as_ref()
                .and_then(|p| {
                    fields::root(&self.reads, &event)
                        .get(p)
                        .map(|v| v.to_string_lossy().into_owned())
                })
                .unwrap_or_default();
            if self.limiter.check_key(&key).is_ok() {
                out.default.push(event);
            } else {
                out.named[0].push(event);
            }
        }
    }

    fn flush_interval(&self) -> Option<Duration> {
        Some(self.window)
    }

    fn flush(&mut self, _out: &mut TransformOutputs) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::event::Event;
    use std::sync::Arc;

    fn throttle() -> Box<dyn Transform> {
        let cx = TransformContext::for_test("throttle", Arc::new(ManualClock::default()));
        let config = ThrottleConfig {
            threshold: 2,
            window: Duration::from_secs(60),
            key_field: Some("service".into()),
        };
        config.build(&cx).expect("builds")
    }

    #[test]
    fn events_in_their_json_text_are_throttled_by_key_without_being_parsed() {
        let texts = [
            r#"{"service":"a","n":1}"#,
            r#"{"n":2,"service":"a"}"#,
            r#"{"service":"b","n":3}"#,
            r#"{"service":"a","n":4}"#,
            r#"{"n":5}"#,
            r#"{"ser\u0076ice":"b","n":6}"#,
            r#"{"service":"b","n":7}"#,
            r#"{"n":8}"#,
            r#"{"service":null,"n":9}"#,
        ];
        let run = |kept: bool| {
            let mut t = throttle();
            let mut out = TransformOutputs::new(1);
            let events = texts.iter().map(|text| Event::json(text, kept)).collect();
            t.process(events, &mut out);
            (
                crate::event::passed_ints(&out.default, "n", kept),
                crate::event::passed_ints(&out.named[0], "n", kept),
            )
        };
        let parsed = run(false);
        // `null` is a key of its own; no field at all shares the empty one.
        assert_eq!(parsed, (vec![1, 2, 3, 5, 6, 8, 9], vec![4, 7]));
        assert_eq!(run(true), parsed);
    }
}
