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
    /// Keeps the batch and takes the dropped events out of it: kept events stay where
    /// they are (moved only to close a gap), where pushing each into a new batch moved
    /// every one of them, 144 bytes each, and grew that batch as it went.
    fn process(&mut self, mut batch: EventBatch, out: &mut TransformOutputs) {
        let (runner, metrics) = (&mut self.runner, &self.metrics);
        let dropped = batch.extract_if(.., |event| {
            let keep = match runner.run_event(event) {
                Outcome::Done(Value::Boolean(b)) => b,
                Outcome::Done(_) | Outcome::Aborted(_) => false,
                Outcome::Failed(_) => {
                    metrics.add_errors(1, ErrorType::Script, Stage::Processing);
                    false
                }
            };
            !keep
        });
        for event in dropped {
            metrics.add_discarded(1);
            event.settle(EventStatus::Delivered);
        }
        if out.default.is_empty() {
            out.default = batch;
        } else {
            out.default.append(&mut batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::event::{BatchAck, Event};

    #[tokio::test]
    async fn kept_events_stay_in_order_and_dropped_ones_are_settled_delivered() {
        let cx = TransformContext::for_test("filter", Arc::new(ManualClock::default()));
        let mut filter = FilterConfig {
            condition: "to_int!(.n) > 1".into(),
        }
        .build(&cx)
        .expect("builds");
        // 1 and 0 fail the condition, "x" makes it fail at runtime.
        let texts = [
            r#"{"n":2}"#,
            r#"{"n":1}"#,
            r#"{"n":3}"#,
            r#"{"n":"x"}"#,
            r#"{"n":0}"#,
            r#"{"n":4}"#,
        ];
        let (ack, kept_receiver) = BatchAck::with_receiver(3, None);
        let (drop_ack, dropped_receiver) = BatchAck::with_receiver(3, None);
        let batch = texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let keep = [0, 2, 5].contains(&i);
                let ack = if keep { &ack } else { &drop_ack };
                Event::kept_json(text).with_ack(ack.event_ack())
            })
            .collect();
        drop((ack, drop_ack));
        let mut out = TransformOutputs::new(0);
        out.default.push(Event::kept_json(r#"{"n":9}"#));
        filter.process(batch, &mut out);

        let passed: Vec<&[u8]> = out.default.iter().filter_map(|e| e.raw_json()).collect();
        let want: [&[u8]; 4] = [b"{\"n\":9}", b"{\"n\":2}", b"{\"n\":3}", b"{\"n\":4}"];
        assert_eq!(passed, want, "appended after what was there, in order");
        assert_eq!(
            dropped_receiver.wait().await,
            EventStatus::Delivered,
            "the three dropped events settled"
        );
        assert_eq!(
            cx.metrics
                .discarded
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        crate::event::settle_all(std::mem::take(&mut out.default), EventStatus::Delivered);
        assert_eq!(kept_receiver.wait().await, EventStatus::Delivered);
    }
}
