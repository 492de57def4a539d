//! The build phase of a reload: everything the plan asks for is made (shells with
//! their buffers and outputs, component tasks not yet spawned) while the running
//! pipeline is left alone. If any part fails, what was made is dropped and the
//! running pipeline goes on as it was.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;

use tokio_util::sync::CancellationToken;

use super::plan::{Plan, Wanted};
use super::run::run_transform;
use super::{
    BuildErrors, Built, ComponentBuildError, RUNNING, Shell, ShellInput, TaskControl, Topology,
};
use crate::buffer::{
    self, BufferConfig, BufferProbe, BufferReceiver, BufferSender, Limits, memory_buffer,
};
use crate::component::{
    BuildError, ComponentInput, ComponentKind, ComponentTask, Output, SinkContext, SourceContext,
    SourceOutput, TransformContext, input_slot,
};
use crate::config::Pipeline;

/// Named outputs a rebuilt component's new config adds, keyed by (id, name).
pub(super) type Gained = HashMap<(String, Option<String>), Arc<Output>>;

/// What the build phase made, for [`Topology::commit`] to install.
pub(super) struct Staged {
    /// Shells of added components (an id that changed type gets a new one too).
    pub(crate) shells: HashMap<String, Shell>,
    pub(crate) gained: Gained,
    /// New input buffers of rebuilt components whose buffer had closed.
    pub(crate) fresh_inputs: HashMap<String, ShellInput>,
    pub(crate) built: Vec<Built>,
}

impl Topology {
    /// Makes everything `plan` asks for; touches nothing running.
    pub(super) async fn build(
        &mut self,
        new: &Pipeline,
        plan: &Plan,
        wanted: &[Wanted],
    ) -> Result<Staged, BuildErrors> {
        let mut errors = Vec::new();
        let mut shells: HashMap<String, Shell> = HashMap::new();
        let mut failed_shells: Vec<String> = Vec::new();
        for w in wanted.iter().filter(|w| plan.fresh.contains(&w.id)) {
            match self.new_shell(new, &w.id, w.kind, w.type_name, w.fingerprint, w.buffer) {
                Ok(shell) => {
                    shells.insert(w.id.clone(), shell);
                }
                Err(error) => {
                    failed_shells.push(w.id.clone());
                    errors.push(ComponentBuildError {
                        id: w.id.clone(),
                        error,
                    });
                }
            }
        }
        let gained = self.gained_outputs(new, plan);
        let fresh_inputs = self.reopened_inputs(plan);

        let mut built = Vec::new();
        for id in &plan.build {
            let shell = if plan.fresh.contains(id) {
                // (a new shell shadows a removed one with the same id; one that could
                // not be made has its error already)
                match shells.get(id) {
                    Some(s) => s,
                    None => continue,
                }
            } else {
                match self.shells.get(id) {
                    Some(s) => s,
                    None => continue,
                }
            };
            self.generation += 1;
            match self
                .build_component(
                    new,
                    id,
                    shell,
                    &gained,
                    fresh_inputs.get(id),
                    self.generation,
                )
                .await
            {
                Ok(b) => built.push(b),
                Err(error) => errors.push(ComponentBuildError {
                    id: id.clone(),
                    error,
                }),
            }
        }
        if !errors.is_empty() {
            drop(built);
            for id in shells.keys().chain(failed_shells.iter()) {
                match self.shells.get(id) {
                    // A type change that did not happen: the old component keeps its
                    // counters.
                    Some(old) => self.telemetry.register(Arc::clone(&old.metrics)),
                    None => self.telemetry.remove(id),
                }
            }
            let keep = self.listen_addresses(&self.pipeline);
            self.listeners.retain(keep.iter().map(String::as_str));
            return Err(BuildErrors(errors));
        }
        Ok(Staged {
            shells,
            gained,
            fresh_inputs,
            built,
        })
    }

    /// Named outputs that rebuilt components gain with their new config.
    fn gained_outputs(&self, new: &Pipeline, plan: &Plan) -> Gained {
        // Named outputs a rebuilt component's new config adds.
        let mut gained = Gained::new();
        for id in &plan.build {
            if plan.fresh.contains(id) {
                continue;
            }
            let Some(shell) = self.shells.get(id) else {
                continue;
            };
            let names: Vec<Option<String>> = new
                .named_outputs(id)
                .into_iter()
                .map(Some)
                .filter(|n| !shell.outputs.contains_key(n))
                .collect();
            for name in names {
                let output = Output::new(
                    Arc::clone(&shell.metrics),
                    name.clone(),
                    Arc::clone(self.telemetry.taps()),
                );
                gained.insert((id.clone(), name), output);
            }
        }
        gained
    }

    /// A rebuilt transform or sink whose buffer was closed (it ended for good) gets a
    /// new one. A running one keeps its buffer even when all its producers are gone:
    /// what is queued or handed back there still has to reach the replacement.
    fn reopened_inputs(&self, plan: &Plan) -> HashMap<String, ShellInput> {
        let mut fresh_inputs: HashMap<String, ShellInput> = HashMap::new();
        for id in &plan.build {
            if let Some(shell) = self.shells.get(id).filter(|_| !plan.fresh.contains(id))
                && let Some(input) = &shell.input
                && input.probe.is_closed()
            {
                let (tx, rx, probe) = match &input.probe {
                    BufferProbe::Disk(disk) => {
                        let (tx, rx) = disk.reopen();
                        (
                            BufferSender::Disk(tx),
                            BufferReceiver::Disk(rx),
                            input.probe.clone(),
                        )
                    }
                    BufferProbe::Memory(_) => memory_buffer(
                        &Limits::from_config(&shell.buffer),
                        self.options.memory_budget.clone(),
                        Some(Arc::clone(&shell.metrics)),
                    ),
                };
                shell.metrics.set_buffer(probe.clone());
                fresh_inputs.insert(
                    id.clone(),
                    ShellInput {
                        slot: input_slot(rx),
                        sender: tx.downgrade(),
                        probe,
                        bootstrap: Some(tx),
                    },
                );
            }
        }
        fresh_inputs
    }

    fn new_shell(
        &self,
        pipeline: &Pipeline,
        id: &str,
        kind: ComponentKind,
        type_name: &'static str,
        fingerprint: u64,
        buffer: BufferConfig,
    ) -> Result<Shell, BuildError> {
        let metrics = self.telemetry.component(id, kind, type_name);
        let input = if kind == ComponentKind::Source {
            None
        } else {
            let (tx, rx, probe) = buffer::open(
                &buffer,
                id,
                &self.options.data_dir,
                self.options.memory_budget.clone(),
                &metrics,
            )
            .map_err(|e| BuildError(e.to_string()))?;
            metrics.set_buffer(probe.clone());
            Some(ShellInput {
                slot: input_slot(rx),
                sender: tx.downgrade(),
                probe,
                bootstrap: Some(tx),
            })
        };
        let mut outputs = HashMap::new();
        let taps = self.telemetry.taps();
        if kind != ComponentKind::Sink {
            outputs.insert(
                None,
                Output::new(Arc::clone(&metrics), None, Arc::clone(taps)),
            );
        }
        for name in pipeline.named_outputs(id) {
            let output = Output::new(Arc::clone(&metrics), Some(name.clone()), Arc::clone(taps));
            outputs.insert(Some(name), output);
        }
        Ok(Shell {
            kind,
            type_name,
            fingerprint,
            buffer,
            metrics,
            input,
            outputs,
            task: None,
        })
    }

    async fn build_component(
        &self,
        pipeline: &Pipeline,
        id: &str,
        shell: &Shell,
        gained: &HashMap<(String, Option<String>), Arc<Output>>,
        fresh_input: Option<&ShellInput>,
        generation: u64,
    ) -> Result<Built, BuildError> {
        let control = TaskControl {
            generation,
            stop: match shell.kind {
                ComponentKind::Source => self.sources_shutdown.child_token(),
                _ => CancellationToken::new(),
            },
            kill: None,
            done: CancellationToken::new(),
            state: Arc::new(AtomicU8::new(RUNNING)),
        };
        let output = |name: Option<String>| -> Result<Arc<Output>, BuildError> {
            gained
                .get(&(id.to_owned(), name.clone()))
                .or_else(|| shell.outputs.get(&name))
                .cloned()
                .ok_or_else(|| BuildError(format!("output {name:?} is not wired")))
        };
        let input = || -> Result<ComponentInput, BuildError> {
            let slot = &fresh_input
                .or(shell.input.as_ref())
                .ok_or_else(|| BuildError("component has no input".into()))?
                .slot;
            Ok(ComponentInput::new(Arc::clone(slot), control.stop.clone()))
        };
        let task: ComponentTask = match shell.kind {
            ComponentKind::Source => {
                let def = pipeline
                    .sources
                    .get(id)
                    .ok_or_else(|| BuildError("not in the pipeline".into()))?;
                let named = def
                    .config
                    .outputs()
                    .into_iter()
                    .map(|n| output(Some(n)))
                    .collect::<Result<Vec<_>, _>>()?;
                let cx = SourceContext {
                    id: crate::event::SourceId::intern(id),
                    out: SourceOutput::new(output(None)?)
                        .with_named(named)
                        .with_budget(self.options.memory_budget.clone()),
                    shutdown: control.stop.clone(),
                    metrics: Arc::clone(&shell.metrics),
                    telemetry: Arc::clone(&self.telemetry),
                    data_dir: self.options.data_dir.clone(),
                    listeners: self.listeners.clone(),
                    clock: Arc::clone(&self.options.clock),
                };
                def.config.build(cx).await?
            }
            ComponentKind::Transform => {
                let def = pipeline
                    .transforms
                    .get(id)
                    .ok_or_else(|| BuildError("not in the pipeline".into()))?;
                let cx = TransformContext {
                    id: Arc::from(id),
                    metrics: Arc::clone(&shell.metrics),
                    clock: Arc::clone(&self.options.clock),
                    data_dir: Some(self.options.data_dir.clone()),
                    file_notices: self.options.file_notices.clone(),
                };
                let transform = def.config.build(&cx)?;
                let named = def
                    .config
                    .outputs()
                    .into_iter()
                    .map(|n| output(Some(n)))
                    .collect::<Result<Vec<_>, _>>()?;
                Box::pin(run_transform(
                    transform,
                    input()?,
                    output(None)?,
                    named,
                    Arc::clone(&shell.metrics),
                    self.sources_shutdown.clone(),
                ))
            }
            ComponentKind::Sink => {
                let def = pipeline
                    .sinks
                    .get(id)
                    .ok_or_else(|| BuildError("not in the pipeline".into()))?;
                let outputs = def
                    .config
                    .outputs()
                    .into_iter()
                    .map(|n| output(Some(n)))
                    .collect::<Result<Vec<_>, _>>()?;
                let cx = SinkContext {
                    id: Arc::from(id),
                    input: input()?,
                    metrics: Arc::clone(&shell.metrics),
                    outputs,
                    clock: Arc::clone(&self.options.clock),
                    data_dir: self.options.data_dir.clone(),
                    listeners: self.listeners.clone(),
                    shutdown: self.sources_shutdown.child_token(),
                };
                def.config.build(cx).await?
            }
        };
        Ok(Built {
            id: id.to_owned(),
            task,
            control,
        })
    }
}
