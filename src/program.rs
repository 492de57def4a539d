//! VRL programs: compiled once when a component is built, run per event.
//!
//! A [`Program`] is shared through an `Arc`; each running component keeps its own
//! [`Runner`] (a VRL `Runtime`, cleared between events) so running never locks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::state::{ExternalEnv, RuntimeState};
use vrl::compiler::{
    CompileConfig, Program, Target, TargetValueRef, TimeZone, compile_with_external,
};
use vrl::value::{Secrets, Value};

use crate::error::BuildError;
use crate::event::{Event, EventTarget, EventView};

/// Where a program's source comes from in a component config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProgramSource {
    Inline(String),
    File(PathBuf),
}

impl ProgramSource {
    /// Exactly one of `source` and `file` must be given.
    pub(crate) fn from_options(
        source: Option<&str>,
        file: Option<&Path>,
    ) -> Result<Self, BuildError> {
        match (source, file) {
            (Some(s), None) => Ok(Self::Inline(s.to_owned())),
            (None, Some(f)) => Ok(Self::File(f.to_path_buf())),
            (Some(_), Some(_)) => Err(BuildError(
                "give either `source` or `file`, not both".into(),
            )),
            (None, None) => Err(BuildError("one of `source` or `file` is required".into())),
        }
    }

    fn text(&self) -> Result<String, BuildError> {
        match self {
            Self::Inline(s) => Ok(s.clone()),
            Self::File(path) => std::fs::read_to_string(path)
                .map_err(|e| BuildError(format!("cannot read VRL file {}: {e}", path.display()))),
        }
    }
}

/// How a compiled program may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// May modify the event (remap).
    ReadWrite,
    /// Must not modify the event and must return a boolean (filter conditions).
    Condition,
    /// Must not modify the event; returns any value (keys computed from an event).
    Expression,
}

/// What one run of a program ended with.
pub(crate) enum Outcome {
    Done(Value),
    /// `abort` was called: the event is intentionally dropped. Carries `abort`'s message.
    Aborted(String),
    Failed(String),
}

/// A compiled program.
#[derive(Debug)]
pub(crate) struct CompiledProgram {
    pub(crate) program: Program,
    /// Whether a run can fail or abort (if not, callers need not keep a copy of the event).
    pub(crate) can_fail: bool,
    /// Compiled read-only: it runs on a view of the event, which keeps its JSON text.
    pub(crate) read_only: bool,
}

/// Compiles a program; the error carries VRL's own diagnostic (with its line and column
/// inside the program).
/// The VRL functions sluice adds to the standard library.
pub(crate) fn added_functions() -> Vec<Box<dyn vrl::compiler::Function>> {
    vec![Box::new(crate::tables::LookupTable)]
}

pub(crate) fn compile(
    source: &ProgramSource,
    mode: Mode,
) -> Result<Arc<CompiledProgram>, BuildError> {
    let text = source.text()?;
    let mut config = CompileConfig::default();
    if mode != Mode::ReadWrite {
        config.set_read_only();
    }
    let mut functions = vrl::stdlib::all();
    functions.extend(added_functions());
    let result = compile_with_external(&text, &functions, &ExternalEnv::default(), config)
        .map_err(|diagnostics| {
            BuildError(format!(
                "VRL program does not compile:\n{}",
                vrl::diagnostic::Formatter::new(&text, diagnostics)
            ))
        })?;
    let program = result.program;
    if mode == Mode::Condition && !program.final_type_info().result.is_boolean() {
        return Err(BuildError(
            "a condition must return a boolean (e.g. `.level == \"error\"`)".into(),
        ));
    }
    let info = program.info();
    Ok(Arc::new(CompiledProgram {
        can_fail: info.fallible || info.abortable,
        read_only: mode != Mode::ReadWrite,
        program,
    }))
}

/// Runs programs for one component.
pub(crate) struct Runner {
    program: Arc<CompiledProgram>,
    runtime: Runtime,
    timezone: TimeZone,
}

impl Runner {
    pub(crate) fn new(program: Arc<CompiledProgram>) -> Self {
        Self {
            program,
            runtime: Runtime::new(RuntimeState::default()),
            timezone: TimeZone::default(),
        }
    }

    pub(crate) fn can_fail(&self) -> bool {
        self.program.can_fail
    }

    /// Runs the program on a payload and a `%` metadata object of its own.
    pub(crate) fn run(&mut self, value: &mut Value, metadata: &mut Value) -> Outcome {
        let mut secrets = Secrets::default();
        self.resolve(&mut TargetValueRef {
            value,
            metadata,
            secrets: &mut secrets,
        })
    }

    /// Runs the program on an event; `%` is copied only if the program writes it. A
    /// read-only program leaves JSON text in place (the event is sent as it came).
    pub(crate) fn run_event(&mut self, event: &mut Event) -> Outcome {
        let mut secrets = Secrets::default();
        if self.program.read_only {
            let (value, metadata) = event.parts();
            return self.resolve(&mut EventView {
                value,
                metadata,
                secrets: &mut secrets,
            });
        }
        let (value, metadata) = event.parts_mut();
        self.resolve(&mut EventTarget {
            value,
            metadata,
            secrets: &mut secrets,
        })
    }

    fn resolve(&mut self, target: &mut dyn Target) -> Outcome {
        let result = self
            .runtime
            .resolve(target, &self.program.program, &self.timezone);
        self.runtime.clear();
        match result {
            Ok(v) => Outcome::Done(v),
            Err(Terminate::Abort(e)) => Outcome::Aborted(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}
