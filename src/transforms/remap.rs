//! `remap`: runs a VRL program on every event.
//!
//! The program sees the event as `.` and its metadata as `%`. If it leaves an array at
//! the root, each element becomes an event (an empty array drops the event). `abort`
//! drops the event on purpose. A program that reads and writes only top-level fields by
//! name runs on those fields alone when the event is still the JSON text it came as, and
//! they are written back into the text (see [`crate::event::field_splice`]). A runtime
//! error either passes the *unchanged* event on (default) or, with `drop_on_error:
//! true`, sends it to the `dropped` output with the error in its `error` field; both are
//! counted as component errors.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use vrl::value::Value;

use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::{Event, EventBatch, EventStatus, into_object};
use crate::program::{self, CompiledProgram, Mode, Outcome, ProgramSource, Runner};
use crate::telemetry::ComponentMetrics;
use crate::telemetry::{ErrorType, Stage};

/// Changes events with a VRL program; events it fails on go to `<id>.dropped`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemapConfig {
    /// The program, inline.
    pub(crate) source: Option<String>,
    /// Or a file holding it.
    pub(crate) file: Option<PathBuf>,
    /// Send failed events to `<id>.dropped` instead of passing them on unchanged.
    #[serde(default)]
    pub(crate) drop_on_error: bool,
}

impl RemapConfig {
    fn compile(&self) -> Result<Arc<CompiledProgram>, BuildError> {
        let source = ProgramSource::from_options(self.source.as_deref(), self.file.as_deref())?;
        program::compile(&source, Mode::ReadWrite)
    }
}

const DROPPED: usize = 0;

impl TransformConfig for RemapConfig {
    fn type_name(&self) -> &'static str {
        "remap"
    }

    fn outputs(&self) -> Vec<String> {
        vec!["dropped".into()]
    }

    fn files(&self) -> Vec<PathBuf> {
        self.file.iter().cloned().collect()
    }

    fn build(&self, cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        Ok(Box::new(Remap {
            runner: Runner::new(self.compile()?),
            drop_on_error: self.drop_on_error,
            metrics: Arc::clone(&cx.metrics),
            id: Arc::clone(&cx.id),
        }))
    }
}

struct Remap {
    runner: Runner,
    drop_on_error: bool,
    metrics: Arc<ComponentMetrics>,
    id: Arc<str>,
}

impl Transform for Remap {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        for mut event in batch {
            match self.runner.run_event(&mut event) {
                Outcome::Done(_) => emit(event, &mut out.default),
                Outcome::Aborted(_) => {
                    self.metrics.add_discarded(1);
                    event.settle(EventStatus::Delivered);
                }
                Outcome::Failed(error) => {
                    self.metrics
                        .add_errors(1, ErrorType::Script, Stage::Processing);
                    tracing::debug!(component_id = %self.id, %error, "VRL program failed");
                    if self.drop_on_error {
                        event.insert("error", error);
                        out.named[DROPPED].push(event);
                    } else {
                        out.default.push(event);
                    }
                }
            }
        }
    }
}

/// Splits a root array into one event per element; keeps an object as it is.
fn emit(mut event: Event, out: &mut EventBatch) {
    // JSON text holds an object: the program changed only some of its fields.
    if event.raw_json().is_some() {
        out.push(event);
        return;
    }
    match std::mem::replace(event.value_mut(), Value::Null) {
        Value::Array(items) => {
            let mut ack = event.meta.ack.take();
            let n = items.len();
            if n == 0 {
                ack.settle(EventStatus::Delivered);
                return;
            }
            for (i, item) in items.into_iter().enumerate() {
                let mut e = event.clone();
                e.set_value(into_object(item));
                e.meta.ack = if i + 1 == n { ack.take() } else { ack.clone() };
                out.push(e);
            }
        }
        other => {
            event.set_value(into_object(other));
            out.push(event);
        }
    }
}
