//! `dedupe`: drops events already seen.
//!
//! The identity is the `fingerprint` field, or the values of `fields` when given.
//! Identities live in an LRU cache of `cache_size` entries; with `ttl`, an identity
//! older than that is forgotten (so a re-firing alert passes again). Events without an
//! identity pass. Duplicates are settled delivered and counted as discarded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::Deserialize;
use vrl::path::OwnedValuePath;

use crate::clock::Clock;
use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::{EventBatch, EventStatus};
use crate::telemetry::ComponentMetrics;

fn default_cache_size() -> usize {
    5000
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupeConfig {
    pub fields: Option<Vec<String>>,
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
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
        let paths = fields
            .iter()
            .map(|f| {
                vrl::path::parse_value_path(f)
                    .map_err(|e| BuildError(format!("`fields`: `{f}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(Dedupe {
            paths,
            cache: IndexMap::new(),
            cache_size: self.cache_size,
            ttl: self.ttl,
            clock: Arc::clone(&cx.clock),
            metrics: Arc::clone(&cx.metrics),
        }))
    }
}

struct Dedupe {
    paths: Vec<OwnedValuePath>,
    /// identity → when it was last seen; the front is the least recently seen.
    cache: IndexMap<String, Instant>,
    cache_size: usize,
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
}

impl Transform for Dedupe {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        let now = self.clock.now();
        for event in batch {
            let Some(id) = self.identity(&event.value) else {
                out.default.push(event);
                continue;
            };
            let previous = self.cache.shift_remove(&id);
            let fresh = previous
                .is_none_or(|seen| self.ttl.is_some_and(|ttl| now.duration_since(seen) >= ttl));
            // Re-insert at the back: most recently seen. A duplicate does not extend its
            // entry's life (the TTL counts from the first sighting).
            let stamp = match previous {
                Some(seen) if !fresh => seen,
                _ => now,
            };
            self.cache.insert(id, stamp);
            if self.cache.len() > self.cache_size {
                self.cache.shift_remove_index(0);
            }
            if fresh {
                out.default.push(event);
            } else {
                self.metrics.add_discarded(1);
                event.settle(EventStatus::Delivered);
            }
        }
    }
}
