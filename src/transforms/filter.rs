//! `filter`: keeps the events for which a VRL `condition` is true.
//!
//! Dropped events are settled as delivered (dropping them is what the user asked for)
//! and counted as discarded. A condition that fails at runtime counts as false and as an
//! error. Conditions are compiled read-only: they cannot modify the event.

use std::sync::Arc;

use serde::Deserialize;
use vrl::value::Value;

use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::{EventBatch, EventStatus};
use crate::program::{self, Mode, Outcome, ProgramSource, Runner};
use crate::telemetry::ComponentMetrics;
use crate::telemetry::{ErrorType, Stage};

/// Keeps the events for which a VRL condition holds.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterConfig {
    /// A VRL expression returning a boolean.
    pub(crate) condition: String,
}

impl TransformConfig for FilterConfig {
    fn type_name(&self) -> &'static str {
        "filter"
    }

    fn build(&self, cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        let program = program::compile(
            &ProgramSource::Inline(self.condition.clone()),
            Mode::Condition,
        )?;
        Ok(Box::new(Filter {
            runner: Runner::new(program),
            metrics: Arc::clone(&cx.metrics),
        }))
    }
}

struct Filter {
    runner: Runner,
    metrics: Arc<ComponentMetrics>,
}

impl Transform for Filter {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        for mut event in batch {
            let keep = match self.runner.run_event(&mut event) {
                Outcome::Done(Value::Boolean(b)) => b,
                Outcome::Done(_) | Outcome::Aborted(_) => false,
                Outcome::Failed(_) => {
                    self.metrics
                        .add_errors(1, ErrorType::Script, Stage::Processing);
                    false
                }
            };
            if keep {
                out.default.push(event);
            } else {
                self.metrics.add_discarded(1);
                event.settle(EventStatus::Delivered);
            }
        }
    }
}
