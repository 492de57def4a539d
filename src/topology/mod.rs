//! Turning a validated [`Pipeline`] into running tasks, changing it while it runs, and
//! stopping it.
//!
//! Every component id has a *shell* that lives as long as the id is in the pipeline:
//! its input buffer (transforms and sinks, see [`input`]) and its outputs (sources and
//! transforms, see [`output`]). A shell runs one task at a time; a reload that changes
//! the component swaps the task, not the shell, so upstream keeps sending into the same
//! buffer and downstream keeps receiving from the same outputs. The DAG is nothing more
//! than the consumer list of each output.
//!
//! [`Topology::apply`] starts a pipeline and changes it: it builds every new or changed
//! component first (sockets bound, programs compiled) and touches nothing running if
//! any build fails. Only then does it commit: spawn the new tasks, rewire every output,
//! ask replaced tasks to hand over and removed ones to drain, within `drain_timeout`.
//!
//! Shutdown runs front to back: sources stop accepting; a component that ends for good
//! clears its outputs, which closes the buffers it fed once they are drained; each
//! transform ends when all its inputs are closed and drained, and so on until the sinks
//! have settled everything.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::buffer::{
    self, BufferConfig, BufferProbe, BufferReceiver, BufferSender, DEFAULT_BUFFER_EVENTS, Limits,
    MemoryBudget, WeakBufferSender, memory_buffer,
};
use crate::component::{
    BuildError, ComponentError, ComponentInput, ComponentTask, Consumer, FileNotices, InputSlot,
    ListenerPool, Output, SinkContext, SourceContext, SourceOutput, Transform, TransformContext,
    TransformOutputs, close_input, input_slot,
};
use crate::config::{OutputRef, Pipeline};
use crate::telemetry::{ComponentKind, ComponentMetrics, ComponentState, Telemetry};

/// Options that come from global settings rather than the pipeline file.
#[derive(Debug, Clone)]
pub struct TopologyOptions {
    pub data_dir: PathBuf,
    /// How long a replaced or removed component may take to hand over or drain.
    pub drain_timeout: Duration,
    /// The clock sinks wait on (a [`crate::clock::ManualClock`] in tests).
    pub clock: Arc<dyn crate::clock::Clock>,
    /// The global budget of in-memory buffers (`memory_limit`); `None`: unbounded.
    pub memory_budget: Option<Arc<MemoryBudget>>,
    /// Where the application's file watcher tells components that their files changed.
    pub file_notices: FileNotices,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        Self {
            data_dir: std::env::temp_dir(),
            drain_timeout: Duration::from_secs(10),
            clock: Arc::new(crate::clock::TokioClock),
            memory_budget: None,
            file_notices: FileNotices::default(),
        }
    }
}

/// A component that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("component `{id}`: {error}")]
pub struct ComponentBuildError {
    pub id: String,
    pub error: BuildError,
}

/// Every component that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct BuildErrors(pub Vec<ComponentBuildError>);

/// How a shutdown went.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every component finished; every event was settled.
    Complete,
    /// These components were still running at the deadline and were aborted.
    TimedOut(Vec<String>),
}

/// What a successful [`Topology::apply`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Replaced or removed components that did not finish within the drain timeout and
    /// were aborted (their unsettled events were reported to their sources as failed).
    pub aborted: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The task currently running in a shell.
struct TaskControl {
    generation: u64,
    /// Sources: stop accepting. Transforms and sinks: stop reading and hand over.
    stop: CancellationToken,
    /// Ends the task at once (drain deadline passed); set when the task is spawned.
    kill: Option<tokio::task::AbortHandle>,
    /// Cancelled by the supervisor once the task has ended and cleaned up.
    done: CancellationToken,
    /// [`RUNNING`], then either [`REPLACED`] (set by `apply` before `stop`: another task
    /// takes over the shell, which stays wired) or [`ENDED`] (set by the supervisor: the
    /// component is done for good, its outputs and input are closed). One atomic
    /// decision, so a task ending on its own while being replaced cannot close what its
    /// replacement uses.
    state: Arc<AtomicU8>,
}

const RUNNING: u8 = 0;
const REPLACED: u8 = 1;
const ENDED: u8 = 2;

struct Shell {
    kind: ComponentKind,
    type_name: &'static str,
    fingerprint: u64,
    buffer: BufferConfig,
    metrics: Arc<ComponentMetrics>,
    input: Option<ShellInput>,
    /// Keyed by output name (`None` for the default output).
    outputs: HashMap<Option<String>, Arc<Output>>,
    task: Option<TaskControl>,
}

struct ShellInput {
    slot: InputSlot,
    sender: WeakBufferSender,
    probe: BufferProbe,
    /// The only strong sender left until the first rewire hands clones to the outputs
    /// feeding this component (without it the buffer would close at once).
    bootstrap: Option<BufferSender>,
}

/// A component built but not yet running.
struct Built {
    id: String,
    task: ComponentTask,
    control: TaskControl,
}

/// A running pipeline. See the module docs.
pub struct Topology {
    pipeline: Pipeline,
    shells: HashMap<String, Shell>,
    tasks: JoinSet<(String, u64)>,
    live: HashSet<(String, u64)>,
    generation: u64,
    sources_shutdown: CancellationToken,
    telemetry: Arc<Telemetry>,
    options: TopologyOptions,
    listeners: ListenerPool,
}

/// Builds and starts `pipeline`; either every component starts or none does.
pub async fn start(
    pipeline: Pipeline,
    telemetry: Arc<Telemetry>,
    options: &TopologyOptions,
) -> Result<Topology, BuildErrors> {
    let mut topology = Topology::new(telemetry, options.clone());
    topology.apply(pipeline).await?;
    Ok(topology)
}

impl Topology {
    /// An empty topology; [`Topology::apply`] gives it a pipeline.
    pub fn new(telemetry: Arc<Telemetry>, options: TopologyOptions) -> Self {
        Self {
            pipeline: Pipeline::default(),
            shells: HashMap::new(),
            tasks: JoinSet::new(),
            live: HashSet::new(),
            generation: 0,
            sources_shutdown: CancellationToken::new(),
            telemetry,
            options,
            listeners: ListenerPool::default(),
        }
    }

    /// The pipeline currently running.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Makes `new` the running pipeline, changing only what differs. On error nothing
    /// running was touched.
    pub async fn apply(&mut self, new: Pipeline) -> Result<Changes, BuildErrors> {
        self.reap();
        let mut changes = Changes::default();
        // (id, kind, type, fingerprint, buffer) of every component of `new`.
        let wanted = describe_all(&new);
        let mut added_shells: HashMap<String, Shell> = HashMap::new();
        let mut to_build: Vec<String> = Vec::new();
        let mut failed_shells: Vec<String> = Vec::new();
        let mut shell_errors: Vec<ComponentBuildError> = Vec::new();

        for (id, kind, type_name, fingerprint, buffer) in &wanted {
            match self.shells.get(id) {
                Some(s)
                    if s.kind == *kind
                        && s.type_name == *type_name
                        && buffer::same_storage(&s.buffer, buffer) =>
                {
                    // A transform or sink that ended (failed, or drained because all its
                    // producers ended) runs again; a finished source stays finished
                    // unless its options change (it would emit its events again).
                    let ended = s.kind != ComponentKind::Source
                        && s.task
                            .as_ref()
                            .is_none_or(|t| t.state.load(Ordering::Acquire) == ENDED);
                    if s.fingerprint != *fingerprint || ended {
                        changes.changed.push(id.clone());
                        to_build.push(id.clone());
                    }
                }
                existing => {
                    // New, or the same id with another kind, type or buffer storage: the
                    // old one (if any) drains and goes, a new one comes.
                    if existing.is_some() {
                        changes.removed.push(id.clone());
                    }
                    changes.added.push(id.clone());
                    match self.new_shell(&new, id, *kind, type_name, *fingerprint, *buffer) {
                        Ok(shell) => {
                            added_shells.insert(id.clone(), shell);
                            to_build.push(id.clone());
                        }
                        Err(error) => {
                            failed_shells.push(id.clone());
                            shell_errors.push(ComponentBuildError {
                                id: id.clone(),
                                error,
                            });
                        }
                    }
                }
            }
        }
        let wanted_ids: HashSet<&str> = wanted.iter().map(|w| w.0.as_str()).collect();
        for id in self.shells.keys() {
            if !wanted_ids.contains(id.as_str()) {
                changes.removed.push(id.clone());
            }
        }
        // Named outputs a rebuilt component's new config adds.
        let mut gained: HashMap<(String, Option<String>), Arc<Output>> = HashMap::new();
        for id in &to_build {
            if added_shells.contains_key(id) {
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

        // A rebuilt transform or sink whose buffer was closed (it ended for good) gets a
        // new one. A running one keeps its buffer even when all its producers are gone:
        // what is queued or handed back there still has to reach the replacement.
        let mut fresh_inputs: HashMap<String, ShellInput> = HashMap::new();
        for id in &to_build {
            if let Some(shell) = self
                .shells
                .get(id)
                .filter(|_| !added_shells.contains_key(id))
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

        // Build phase: nothing running is touched.
        let mut built = Vec::new();
        let mut errors = shell_errors;
        for id in &to_build {
            let shell = match added_shells.get(id) {
                // (a shell of `added_shells` shadows a removed one with the same id)
                Some(s) => s,
                None => match self.shells.get(id) {
                    Some(s) => s,
                    None => continue,
                },
            };
            self.generation += 1;
            match self
                .build(
                    &new,
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
            for id in added_shells.keys().chain(failed_shells.iter()) {
                match self.shells.get(id) {
                    // A type change that did not happen: the old component keeps its
                    // counters.
                    Some(old) => self.telemetry.register(Arc::clone(&old.metrics)),
                    None => self.telemetry.remove(id),
                }
            }
            self.listeners.retain(self.listen_addresses(&self.pipeline));
            return Err(BuildErrors(errors));
        }

        // Commit.
        let mut waiting: Vec<(String, CancellationToken, Option<tokio::task::AbortHandle>)> =
            Vec::new();
        for id in &changes.removed {
            if let Some(shell) = self.shells.remove(id)
                && let Some(task) = shell.task
            {
                if shell.kind == ComponentKind::Source {
                    task.stop.cancel();
                }
                // Transforms and sinks are unwired below; they drain what they hold
                // and end when their buffer closes.
                waiting.push((id.clone(), task.done, task.kill));
            }
        }
        for ((id, name), output) in gained {
            if let Some(shell) = self.shells.get_mut(&id) {
                shell.outputs.insert(name, output);
            }
        }
        for (id, shell) in &mut self.shells {
            let default = (shell.kind != ComponentKind::Sink).then_some(None);
            let names: HashSet<Option<String>> = default
                .into_iter()
                .chain(new.named_outputs(id).into_iter().map(Some))
                .collect();
            shell.outputs.retain(|name, _| names.contains(name));
        }
        for (id, shell) in added_shells {
            self.shells.insert(id, shell);
        }
        for (id, input) in fresh_inputs {
            if let Some(shell) = self.shells.get_mut(&id) {
                shell.input = Some(input);
            }
        }
        for (id, _, _, fingerprint, buffer) in &wanted {
            if let Some(shell) = self.shells.get_mut(id) {
                shell.fingerprint = *fingerprint;
                if shell.buffer != *buffer {
                    if let Some(input) = &shell.input {
                        input.probe.reconfigure(buffer);
                    }
                    shell.buffer = *buffer;
                }
            }
        }
        // Outputs of components getting a new task are open again (a previous task
        // may have ended for good and closed them).
        for b in &built {
            if let Some(shell) = self.shells.get(&b.id) {
                for output in shell.outputs.values() {
                    output.reopen();
                }
            }
        }
        // Wire every output before any new task runs: a source that emits at once must
        // find its consumers in place.
        self.pipeline = new;
        self.rewire();
        for shell in self.shells.values_mut() {
            if let Some(input) = &mut shell.input {
                input.bootstrap = None;
            }
        }
        for mut b in built {
            let Some(shell) = self.shells.get_mut(&b.id) else {
                continue;
            };
            if let Some(old) = shell.task.take() {
                // If it already ended for good, there is nothing to hand over.
                if old
                    .state
                    .compare_exchange(RUNNING, REPLACED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    old.stop.cancel();
                    waiting.push((b.id.clone(), old.done, old.kill));
                }
            }
            let outputs: Vec<Arc<Output>> = shell.outputs.values().cloned().collect();
            let input = shell.input.as_ref().map(|i| Arc::clone(&i.slot));
            let metrics = Arc::clone(&shell.metrics);
            metrics.set_state(ComponentState::Running);
            let generation = b.control.generation;
            self.live.insert((b.id.clone(), generation));
            // The component runs as its own task, so nothing wraps its polls; the
            // supervisor only wakes when it ends.
            let inner = tokio::spawn(b.task);
            b.control.kill = Some(inner.abort_handle());
            self.tasks.spawn(supervise(
                b.id.clone(),
                generation,
                metrics,
                inner,
                outputs,
                input,
                b.control.done.clone(),
                Arc::clone(&b.control.state),
            ));
            shell.task = Some(b.control);
        }
        self.listeners.retain(self.listen_addresses(&self.pipeline));

        // Let replaced components hand over and removed ones drain, within the deadline.
        let deadline = tokio::time::Instant::now() + self.options.drain_timeout;
        for (id, done, kill) in waiting {
            if tokio::time::timeout_at(deadline, done.cancelled())
                .await
                .is_err()
            {
                tracing::warn!(component_id = %id, timeout = ?self.options.drain_timeout, "component did not finish in time; aborting it");
                if let Some(kill) = kill {
                    kill.abort();
                }
                done.cancelled().await;
                changes.aborted.push(id);
            }
        }
        for id in &changes.removed {
            if !self.shells.contains_key(id) {
                self.telemetry.remove(id);
            }
        }
        self.reap();
        Ok(changes)
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

    async fn build(
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
                let cx = SourceContext {
                    id: Arc::from(id),
                    out: SourceOutput::new(output(None)?)
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

    /// Points every output at the components that read it in the current pipeline.
    fn rewire(&self) {
        for (id, shell) in &self.shells {
            for (name, output) in &shell.outputs {
                let out_ref = OutputRef {
                    component: id.clone(),
                    output: name.clone(),
                };
                let expected = self.pipeline.graph.consumers_of(&out_ref).count();
                let consumers: Vec<Consumer> = self
                    .pipeline
                    .graph
                    .consumers_of(&out_ref)
                    .filter_map(|consumer| {
                        let input = self.shells.get(consumer)?.input.as_ref()?;
                        let sender = input
                            .bootstrap
                            .clone()
                            .or_else(|| input.sender.upgrade());
                        if sender.is_none() {
                            tracing::error!(component_id = %consumer, "input buffer is closed; cannot wire it");
                        }
                        Some(Consumer {
                            id: Arc::from(consumer),
                            sender: sender?,
                        })
                    })
                    .collect();
                output.set_consumers(consumers, expected);
            }
        }
    }

    fn listen_addresses<'a>(&self, pipeline: &'a Pipeline) -> Vec<&'a str> {
        pipeline
            .sources
            .values()
            .filter_map(|d| d.config.listen_address())
            .collect()
    }

    fn reap(&mut self) {
        while let Some(result) = self.tasks.try_join_next() {
            self.on_joined(result);
        }
    }

    fn on_joined(&mut self, result: Result<(String, u64), tokio::task::JoinError>) {
        match result {
            Ok(key) => {
                self.live.remove(&key);
            }
            Err(e) => tracing::error!(error = %e, "component task panicked"),
        }
    }

    /// Waits until every component has finished on its own (all sources reached their
    /// end and everything drained). Cancel-safe; returns at once if nothing runs.
    pub async fn finished(&mut self) {
        while let Some(result) = self.tasks.join_next().await {
            self.on_joined(result);
        }
    }

    /// Ids of components with a task still running.
    pub fn running(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.live.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Stops the sources and waits up to `timeout` for everything in flight to drain.
    pub async fn stop(mut self, timeout: Duration) -> Drained {
        self.sources_shutdown.cancel();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(result)) => self.on_joined(result),
                Ok(None) => return Drained::Complete,
                Err(_) => {
                    let left = self.running();
                    for shell in self.shells.values() {
                        if let Some(kill) = shell.task.as_ref().and_then(|t| t.kill.as_ref()) {
                            kill.abort();
                        }
                    }
                    while let Some(result) = self.tasks.join_next().await {
                        self.on_joined(result);
                    }
                    return Drained::TimedOut(left);
                }
            }
        }
    }
}

/// (id, kind, type, fingerprint, buffer) of every component.
fn describe_all(p: &Pipeline) -> Vec<(String, ComponentKind, &'static str, u64, BufferConfig)> {
    let transform_buffer = BufferConfig {
        max_events: Some(DEFAULT_BUFFER_EVENTS),
        ..BufferConfig::default()
    };
    p.sources
        .iter()
        .map(|(id, d)| {
            (
                id.clone(),
                ComponentKind::Source,
                d.config.type_name(),
                d.fingerprint,
                BufferConfig::default(),
            )
        })
        .chain(p.transforms.iter().map(|(id, d)| {
            (
                id.clone(),
                ComponentKind::Transform,
                d.config.type_name(),
                d.fingerprint,
                transform_buffer,
            )
        }))
        .chain(p.sinks.iter().map(|(id, d)| {
            (
                id.clone(),
                ComponentKind::Sink,
                d.config.type_name(),
                d.fingerprint,
                d.buffer,
            )
        }))
        .collect()
}

/// Awaits one component task, records how it ended and cleans up after it.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    id: String,
    generation: u64,
    metrics: Arc<ComponentMetrics>,
    task: tokio::task::JoinHandle<Result<(), ComponentError>>,
    outputs: Vec<Arc<Output>>,
    input: Option<InputSlot>,
    done: CancellationToken,
    state: Arc<AtomicU8>,
) -> (String, u64) {
    let result = match task.await {
        Ok(r) => r,
        Err(e) if e.is_cancelled() => Err(ComponentError::Other(
            "aborted at the drain deadline".into(),
        )),
        Err(e) => Err(ComponentError::Other(format!("panicked: {e}"))),
    };
    // Ended for good, unless a reload replaced it first.
    let for_good = state
        .compare_exchange(RUNNING, ENDED, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    match result {
        Ok(()) => {
            if for_good && metrics.state() == ComponentState::Running {
                metrics.set_state(ComponentState::Stopped);
            }
            tracing::debug!(component_id = %id, generation, replaced = !for_good, "component finished");
        }
        Err(e) => {
            // Shown on `/health`, which probes reach without a token.
            let error = crate::redact::redact(&e.to_string()).into_owned();
            tracing::error!(component_id = %id, generation, error = %error, "component failed");
            if for_good {
                metrics.set_state(ComponentState::Failed(error));
            }
        }
    }
    if for_good {
        for output in outputs {
            output.close();
        }
        if let Some(slot) = input {
            close_input(&slot).await;
        }
    }
    done.cancel();
    (id, generation)
}

/// Drives a synchronous transform: input → `process` → outputs, `flush` on its
/// interval and once more before the task ends (drained, or replaced by a reload).
///
/// It also flushes as soon as shutdown begins: a source may be waiting for the
/// acknowledgement of events a transform holds (an HTTP request open until its alerts
/// are aggregated), and the source cannot finish, nor close this transform's input,
/// until those are settled.
async fn run_transform(
    mut transform: Box<dyn Transform>,
    mut input: ComponentInput,
    default: Arc<Output>,
    named: Vec<Arc<Output>>,
    metrics: Arc<ComponentMetrics>,
    shutdown: CancellationToken,
) -> Result<(), ComponentError> {
    let mut shutdown_flushed = false;
    let mut out = TransformOutputs::new(named.len());
    let mut ticker = transform.flush_interval().map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        let tick = async {
            match ticker.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            batch = input.recv() => match batch {
                Some(batch) => {
                    metrics.add_received(batch.len());
                    transform.process(batch, &mut out);
                }
                None => break,
            },
            () = tick => transform.flush(&mut out),
            () = shutdown.cancelled(), if !shutdown_flushed => {
                shutdown_flushed = true;
                transform.flush(&mut out);
            }
        }
        send_outputs(&mut out, &default, &named).await;
    }
    transform.flush(&mut out);
    send_outputs(&mut out, &default, &named).await;
    Ok(())
}

async fn send_outputs(out: &mut TransformOutputs, default: &Output, named: &[Arc<Output>]) {
    if !out.default.is_empty() {
        default.send(std::mem::take(&mut out.default)).await;
    }
    for (output, events) in named.iter().zip(out.named.iter_mut()) {
        if !events.is_empty() {
            output.send(std::mem::take(events)).await;
        }
    }
}
