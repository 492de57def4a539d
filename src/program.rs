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
use vrl::path::PathPrefix;
use vrl::value::{Secrets, Value};

use crate::error::BuildError;
use crate::event::field_splice::{self, Members};
use crate::event::fields::{self, Picked, Reads};
use crate::event::{Event, EventTarget, EventView, FieldTarget};

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
    /// What of the payload the program reads, and for one that may change the event,
    /// writes (from VRL's lists of its queries and assignments).
    pub(crate) reads: Reads,
    /// Whether it assigns `%` metadata, which outlives a run: what it reads from an
    /// event's text is then copied, not shared (a shared string would keep the text it
    /// came from alive after a splice replaced it).
    pub(crate) writes_metadata: bool,
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
    // VRL's `unnest` reads `.` without VRL listing it. A run on picked fields would be
    // thrown away and run again, and a `log` call in it would show a partial event.
    let reads = if text.contains("unnest") {
        Reads::Whole
    } else if mode == Mode::ReadWrite {
        match Reads::of(info.target_queries.iter().chain(&info.target_assignments)) {
            // A field target tracks what was written with a bit per field.
            Reads::Fields(names) if names.len() > 64 => Reads::Whole,
            reads => reads,
        }
    } else {
        Reads::of(&info.target_queries)
    };
    let writes_metadata = info
        .target_assignments
        .iter()
        .any(|path| path.prefix == PathPrefix::Metadata);
    Ok(Arc::new(CompiledProgram {
        can_fail: info.fallible || info.abortable,
        writes_metadata,
        read_only: mode != Mode::ReadWrite,
        reads,
        program,
    }))
}

/// Runs programs for one component.
pub(crate) struct Runner {
    program: Arc<CompiledProgram>,
    exec: Exec,
    /// Set once the program read outside the fields picked for it (a function reading
    /// `.` that VRL does not list): from then on it reads the whole payload rather than
    /// run twice on every event.
    reads_whole: bool,
    /// The members of the event a program that changes events runs on, reused.
    members: Members,
}

/// A VRL runtime, cleared between runs, and the timezone programs run in.
struct Exec {
    runtime: Runtime,
    timezone: TimeZone,
}

static WHOLE: Reads = Reads::Whole;

impl Runner {
    pub(crate) fn new(program: Arc<CompiledProgram>) -> Self {
        Self {
            program,
            exec: Exec {
                runtime: Runtime::new(RuntimeState::default()),
                timezone: TimeZone::default(),
            },
            reads_whole: false,
            members: Members::default(),
        }
    }

    /// Runs the program on a payload and a `%` metadata object of its own.
    pub(crate) fn run(&mut self, value: &mut Value, metadata: &mut Value) -> Outcome {
        let mut secrets = Secrets::default();
        self.exec.resolve(
            &self.program,
            &mut TargetValueRef {
                value,
                metadata,
                secrets: &mut secrets,
            },
        )
    }

    /// What of the payload this program reads, if it is read-only.
    pub(crate) fn reads(&self) -> Option<&Reads> {
        if self.reads_whole {
            return Some(&WHOLE);
        }
        self.program.read_only.then_some(&self.program.reads)
    }

    /// Runs the program on an event; `%` is copied only if the program writes it. A
    /// read-only program leaves JSON text in place (the event is sent as it came), and
    /// reads from it only the fields it names. One that changes the event runs, where it
    /// can, on the fields it names alone, and writes them back into the text.
    ///
    /// If a program that changes the event fails, the payload is left as it was (`%`
    /// keeps what the program wrote to it before failing).
    pub(crate) fn run_event(&mut self, event: &mut Event) -> Outcome {
        if self.program.read_only {
            let reads = if self.reads_whole {
                &WHOLE
            } else {
                &self.program.reads
            };
            let picked = fields::pick_from(reads, event);
            let (exec, program) = (&mut self.exec, &self.program);
            return exec.read(program, &mut self.reads_whole, event, picked.as_ref());
        }
        if let Some(outcome) = self.run_on_fields(event) {
            return outcome;
        }
        let original = self.program.can_fail.then(|| event.value().clone());
        let mut secrets = Secrets::default();
        let (value, metadata) = event.parts_mut();
        let outcome = self.exec.resolve(
            &self.program,
            &mut EventTarget {
                value,
                metadata,
                secrets: &mut secrets,
            },
        );
        if let (Outcome::Failed(_), Some(original)) = (&outcome, original) {
            event.set_value(original);
        }
        outcome
    }

    /// Runs a program that changes events on the fields it names, picked out of the
    /// event's text, and splices what it wrote back in; `None` when it must run on the
    /// whole payload: the event is parsed, its text is one to leave to the parser, or
    /// the program reached outside its fields (then `%` is as it was before the run).
    fn run_on_fields(&mut self, event: &mut Event) -> Option<Outcome> {
        let Reads::Fields(names) = &self.program.reads else {
            return None;
        };
        if self.reads_whole {
            return None;
        }
        let share = !self.program.writes_metadata;
        let fields = field_splice::open(event, names, &mut self.members, share)?;
        let mut fields = Value::Object(fields);
        let mut secrets = Secrets::default();
        let mut target = FieldTarget::new(&mut fields, names, &mut event.meta.vrl, &mut secrets);
        let outcome = self.exec.resolve(&self.program, &mut target);
        if target.missed() {
            tracing::debug!("a VRL program reached outside the fields it names");
            self.reads_whole = true;
            return None;
        }
        let written = target.written();
        if let (Outcome::Done(_), Value::Object(fields)) = (&outcome, fields) {
            field_splice::splice(event, &self.members, names, written, fields);
        }
        Some(outcome)
    }

    /// Runs a read-only program on an event, on `picked` fields when given (picked once
    /// for several programs, as `route` does, from at least what this one reads).
    pub(crate) fn run_read(&mut self, event: &Event, picked: Option<&Picked>) -> Outcome {
        self.exec
            .read(&self.program, &mut self.reads_whole, event, picked)
    }
}

impl Exec {
    /// [`Runner::run_read`], on the runner's parts: the picked names borrow the program.
    fn read(
        &mut self,
        program: &CompiledProgram,
        reads_whole: &mut bool,
        event: &Event,
        picked: Option<&Picked>,
    ) -> Outcome {
        debug_assert!(program.read_only, "only read-only programs run on a view");
        let mut secrets = Secrets::default();
        // A program that once read outside its fields ignores a pick made for it.
        if let Some(picked) = picked.filter(|_| !*reads_whole) {
            let mut view = EventView::new(&picked.value, Some(picked.names), event, &mut secrets);
            let outcome = self.resolve(program, &mut view);
            if !view.missed.get() {
                return outcome;
            }
            // The program read a field VRL did not list among its queries: its answer
            // came from a partial payload, so it runs again on the whole one.
            tracing::debug!("a read-only program read outside its listed fields");
            *reads_whole = true;
            secrets = Secrets::default();
        }
        let value = event.value();
        self.resolve(
            program,
            &mut EventView::new(value, None, event, &mut secrets),
        )
    }

    fn resolve(&mut self, program: &CompiledProgram, target: &mut dyn Target) -> Outcome {
        let result = self
            .runtime
            .resolve(target, &program.program, &self.timezone);
        self.runtime.clear();
        match result {
            Ok(v) => Outcome::Done(v),
            Err(Terminate::Abort(e)) => Outcome::Aborted(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
