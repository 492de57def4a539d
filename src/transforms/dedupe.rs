//! `dedupe`: drops events already seen.
//!
//! The identity is the `fingerprint` field, or the values of `fields` when given.
//! Identities live in an LRU cache of `cache_size` entries. Events without an identity
//! pass. Duplicates are settled delivered and counted as discarded.
//!
//! - `mode: first_seen` (the default): an identity passes once; with `ttl`, it passes
//!   again once `ttl` has gone by since it *first* passed (repeats in between do not
//!   extend it).
//! - `mode: last_state`: an identity passes when its state (`state_fields`, default
//!   `status`) differs from the last one seen, so only changes go on; with `ttl`, an
//!   identity not seen for that long is forgotten (counted from its *last* sighting).
//!
//! For alert lifecycles (flapping, stray resolves, one page per outage) the `incident`
//! transform is the right tool; `dedupe` only compares what it sees.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use serde::Deserialize;
use vrl::path::OwnedValuePath;

use crate::clock::Clock;
use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::fields::{self, Reads};
use crate::event::{EventBatch, EventStatus};
use crate::telemetry::ComponentMetrics;

fn default_cache_size() -> usize {
    5000
}

/// What counts as a duplicate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DedupeMode {
    /// An identity passes once (again after `ttl` from its first sighting).
    #[default]
    FirstSeen,
    /// An identity passes when its `state_fields` changed since its last sighting.
    LastState,
}

fn default_state_fields() -> Vec<String> {
    vec![crate::alert::field::STATUS.into()]
}

/// Drops repeated events: the same fields or fingerprint within a cache, or a state that did not change.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DedupeConfig {
    /// Fields whose values are an event's identity (default `[fingerprint]`). An event
    /// missing one of them passes.
    pub(crate) fields: Option<Vec<String>>,
    /// `first_seen` (default): drop every repeat of an identity; `last_state`: drop
    /// repeats of an identity's last state, pass its changes.
    #[serde(default)]
    pub(crate) mode: DedupeMode,
    /// With `mode: last_state`, the fields whose values are the state (default
    /// `[status]`); a missing field counts as null.
    #[serde(default = "default_state_fields")]
    pub(crate) state_fields: Vec<String>,
    /// Identities remembered (default 5000); the least recently seen is forgotten
    /// first, and then passes again.
    #[serde(default = "default_cache_size")]
    pub(crate) cache_size: usize,
    /// How long an identity is remembered: from its first sighting with `first_seen`,
    /// from its last with `last_state`. Unset (the default): until the cache evicts it.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default, with = "humantime_serde")]
    pub(crate) ttl: Option<Duration>,
}

impl TransformConfig for DedupeConfig {
    fn type_name(&self) -> &'static str {
        "dedupe"
    }

    fn build(&self, cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        if self.cache_size == 0 {
            return Err(BuildError("`cache_size` must be at least 1".into()));
        }
        let fields = self
            .fields
            .clone()
            .unwrap_or_else(|| vec![crate::alert::field::FINGERPRINT.into()]);
        let parse = |option: &str, fields: &[String]| {
            fields
                .iter()
                .map(|f| {
                    vrl::path::parse_value_path(f)
                        .map_err(|e| BuildError(format!("`{option}`: `{f}`: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let paths = parse("fields", &fields)?;
        let state_paths = match self.mode {
            DedupeMode::FirstSeen => Vec::new(),
            DedupeMode::LastState if self.state_fields.is_empty() => {
                return Err(BuildError(
                    "`state_fields` must name at least one field".into(),
                ));
            }
            DedupeMode::LastState => parse("state_fields", &self.state_fields)?,
        };
        Ok(Box::new(Dedupe {
            reads: Reads::of_paths(paths.iter().chain(&state_paths)),
            paths,
            mode: self.mode,
            state_paths,
            cache: LruCache::new(
                std::num::NonZeroUsize::new(self.cache_size)
                    .ok_or_else(|| BuildError("`cache_size` must be at least 1".into()))?,
            ),
            ttl: self.ttl,
            clock: Arc::clone(&cx.clock),
            metrics: Arc::clone(&cx.metrics),
        }))
    }
}

struct Dedupe {
    /// The top-level fields of `paths` and `state_paths`: all an event still in its JSON
    /// text has read out of it.
    reads: Reads,
    paths: Vec<OwnedValuePath>,
    mode: DedupeMode,
    state_paths: Vec<OwnedValuePath>,
    /// identity → when its entry started (see `ttl`) and, with `last_state`, the state;
    /// least recently seen first out.
    cache: LruCache<String, (Instant, String)>,
    ttl: Option<Duration>,
    clock: Arc<dyn Clock>,
    metrics: Arc<ComponentMetrics>,
}

impl Dedupe {
    fn identity(&self, value: &vrl::value::Value) -> Option<String> {
        let mut parts = Vec::with_capacity(self.paths.len());
        for p in &self.paths {
            parts.push(serde_json::to_string(value.get(p)?).ok()?);
        }
        Some(parts.join("\u{1f}"))
    }

    fn state(&self, value: &vrl::value::Value) -> String {
        let mut parts = Vec::with_capacity(self.state_paths.len());
        for p in &self.state_paths {
            parts.push(
                value
                    .get(p)
                    .and_then(|v| serde_json::to_string(v).ok())
                    .unwrap_or_else(|| "null".into()),
            );
        }
        parts.join("\u{1f}")
    }
}

impl Transform for Dedupe {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        let now = self.clock.now();
        for event in batch {
            let root = fields::root(&self.reads, &event);
            let Some(id) = self.identity(&root) else {
                out.default.push(event);
                continue;
            };
            let state = self.state(&root);
            drop(root);
            let ttl = self.ttl;
            // `get_mut` makes the entry the most recently seen. With `first_seen` a
            // duplicate does not extend its entry's life (the TTL counts from the first
            // sighting); with `last_state` every sighting does.
            let fresh = match self.cache.get_mut(&id) {
                None => {
                    // Evicts the least recently seen when full.
                    self.cache.push(id, (now, state));
                    true
                }
                Some((seen, last)) => {
                    let expired = ttl.is_some_and(|ttl| now.duration_since(*seen) >= ttl);
                    let fresh = expired || *last != state;
                    if fresh || self.mode == DedupeMode::LastState {
                        *seen = now;
                    }
                    *last = state;
                    fresh
                }
            };
            if fresh {
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
    use crate::event::Event;

    fn dedupe(config: DedupeConfig, clock: &ManualClock) -> Box<dyn Transform> {
        let cx = TransformContext::for_test("dedupe", Arc::new(clock.clone()));
        config.build(&cx).expect("builds")
    }

    fn config(mode: DedupeMode) -> DedupeConfig {
        DedupeConfig {
            fields: None,
            mode,
            state_fields: default_state_fields(),
            cache_size: 10,
            ttl: Some(Duration::from_secs(60)),
        }
    }

    #[test]
    fn events_in_their_json_text_are_deduplicated_without_being_parsed() {
        let texts = [
            r#"{"service":"a","labels":{"team":"x"},"status":"firing","n":1}"#,
            r#"{"n":2,"status":"firing","labels":{"team":"x"},"service":"a"}"#,
            r#"{"service":"a","labels":{"team":"y"},"status":"firing","n":3}"#,
            r#"{"service":"a","labels":{"team":"x"},"status":"resolved","n":4}"#,
            r#"{"service":"a","labels":{"team":"x"},"n":5}"#,
            r#"{"ser\u0076ice":"a","labels":{"team":"x"},"n":6}"#,
            r#"{"labels":{"team":"x"},"status":"firing","n":7}"#,
            r#"{"service":"a","labels":{"team":"x"},"status":"firing","n":8}"#,
        ];
        let run = |kept: bool| {
            let clock = ManualClock::default();
            let mut config = config(DedupeMode::LastState);
            config.fields = Some(vec!["service".into(), "labels.team".into()]);
            let mut t = dedupe(config, &clock);
            let mut out = TransformOutputs::new(0);
            let events = texts.iter().map(|text| Event::json(text, kept)).collect();
            t.process(events, &mut out);
            crate::event::passed_ints(&out.default, "n", kept)
        };
        let parsed = run(false);
        // 2 repeats 1's state; 5 and 6 change it to no status; 7 has no identity.
        assert_eq!(parsed, vec![1, 3, 4, 5, 7, 8]);
        assert_eq!(run(true), parsed);
    }

    fn passes(t: &mut Box<dyn Transform>, status: &str) -> bool {
        let value =
            serde_json::from_value(serde_json::json!({"fingerprint": "f", "status": status}))
                .expect("value");
        let mut out = TransformOutputs::new(0);
        t.process(
            vec![Event::new(
                value,
                crate::event::SourceId::intern("s"),
                chrono::Utc::now(),
            )],
            &mut out,
        );
        out.default.len() == 1
    }

    #[test]
    fn last_state_counts_the_ttl_from_the_last_sighting_and_passes_changes() {
        let clock = ManualClock::default();
        let mut last = dedupe(config(DedupeMode::LastState), &clock);
        assert!(passes(&mut last, "firing"));
        for _ in 0..3 {
            clock.advance(Duration::from_secs(30));
            assert!(
                !passes(&mut last, "firing"),
                "seen within the TTL every time"
            );
        }
        assert!(passes(&mut last, "resolved"), "a change passes at once");
        assert!(!passes(&mut last, "resolved"));
        assert!(passes(&mut last, "firing"));
        clock.advance(Duration::from_secs(60));
        assert!(
            passes(&mut last, "firing"),
            "forgotten after a TTL of silence"
        );
    }

    #[test]
    fn first_seen_passes_again_a_ttl_after_the_first_sighting() {
        let clock = ManualClock::default();
        let mut first = dedupe(config(DedupeMode::FirstSeen), &clock);
        assert!(passes(&mut first, "firing"));
        clock.advance(Duration::from_secs(30));
        assert!(!passes(&mut first, "firing"));
        clock.advance(Duration::from_secs(30));
        assert!(
            passes(&mut first, "firing"),
            "60 s after the first sighting"
        );
        assert!(
            !passes(&mut first, "resolved"),
            "first_seen ignores the state"
        );
    }

    #[test]
    fn last_state_needs_a_state_field() {
        let clock = ManualClock::default();
        let cx = TransformContext::for_test("dedupe", Arc::new(clock));
        let mut c = config(DedupeMode::LastState);
        c.state_fields.clear();
        let err = c.build(&cx).err().expect("refused");
        assert!(err.0.contains("state_fields"), "{}", err.0);
    }
}
