//! A sink's message formatter: a VRL program (`plugins/formatters/<sink>.vrl`, compiled
//! into the binary, or a user's `formatter_file`) that turns an event into the message
//! object a vendor API takes.
//!
//! Formatting runs on the sink's own task, one event at a time; the program only sees a
//! copy of the event, so a formatter cannot change what the dead letter carries.

use std::path::PathBuf;
use std::sync::Mutex;

use vrl::value::Value;

use crate::error::BuildError;
use crate::event::Event;
use crate::program::{self, Mode, Outcome, ProgramSource, Runner};

pub(crate) struct Formatter {
    /// What error messages call it ("the Slack formatter").
    name: &'static str,
    /// Used by the sink's task only; the mutex is never contended.
    runner: Mutex<Runner>,
}

impl Formatter {
    /// `formatter_file` when given, else `formatters/<plugin>.vrl` from a plugin dir,
    /// else the built-in of that name.
    pub(crate) fn load(
        plugin: &str,
        name: &'static str,
        formatter_file: Option<&PathBuf>,
    ) -> Result<Self, BuildError> {
        let source = match formatter_file {
            Some(f) => ProgramSource::File(f.clone()),
            None => ProgramSource::Inline(
                super::find(super::Kind::Formatter, &[plugin])?
                    .map(|p| p.text)
                    .ok_or_else(|| {
                        BuildError(format!("the built-in {plugin} formatter is missing"))
                    })?,
            ),
        };
        let program = program::compile(&source, Mode::ReadWrite)?;
        Ok(Self {
            name,
            runner: Mutex::new(Runner::new(program)),
        })
    }

    /// The formatter's result for one event.
    pub(crate) fn format(&self, event: &Event) -> Result<Value, String> {
        let mut value = event.value().clone();
        let mut metadata = event.meta.vrl.get().clone();
        let outcome = self
            .runner
            .lock()
            .map_err(|_| "formatter state is poisoned".to_string())?
            .run(&mut value, &mut metadata);
        match outcome {
            Outcome::Done(_) => Ok(value),
            Outcome::Aborted(_) => Err(format!("the {} formatter aborted", self.name)),
            Outcome::Failed(e) => Err(format!("the {} formatter failed: {e}", self.name)),
        }
    }
}

/// A non-empty string field of a formatter's result.
pub(crate) fn text_field(value: &Value, field: &str) -> Option<String> {
    value
        .as_object()
        .and_then(|m| m.get(field))
        .and_then(Value::to_str_lossy)
        .map(|t| t.into_owned())
        .filter(|t| !t.is_empty())
}
