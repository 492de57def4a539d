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

mod build;
mod commit;
mod plan;
mod run;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::plan::Current;
use crate::buffer::{BufferConfig, BufferProbe, BufferSender, MemoryBudget, WeakBufferSender};
use crate::component::{
    BuildError, ComponentTask, Consumer, FileNotices, InputSlot, ListenerPool, Output,
};
use crate::config::{OutputRef, Pipeline};
use crate::telemetry::{ComponentKind, ComponentMetrics, Telemetry};

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
    pub(crate) id: String,
    pub(crate) error: BuildError,
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
    pub(crate) fn new(telemetry: Arc<Telemetry>, options: TopologyOptions) -> Self {
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

    /// Makes `new` the running pipeline, changing only what differs: [`plan`] decides
    /// what, [`Topology::build`] makes it without touching anything running, and
    /// [`Topology::commit`] swaps it in. On error nothing running was touched.
    pub async fn apply(&mut self, new: Pipeline) -> Result<Changes, BuildErrors> {
        self.reap();
        let wanted = plan::wanted(&new);
        let plan = plan::plan(&self.current(), &wanted);
        let staged = self.build(&new, &plan, &wanted).await?;
        Ok(self.commit(new, &wanted, plan, staged).await)
    }

    /// The running components, as [`plan`] sees them.
    fn current(&self) -> HashMap<String, Current> {
        self.shells
            .iter()
            .map(|(id, s)| {
                let ended = s
                    .task
                    .as_ref()
                    .is_none_or(|t| t.state.load(Ordering::Acquire) == ENDED);
                let current = Current {
                    kind: s.kind,
                    type_name: s.type_name,
                    fingerprint: s.fingerprint,
                    buffer: s.buffer,
                    ended,
                };
                (id.clone(), current)
            })
            .collect()
    }

    /// Points every output at the components that read it in the current pipeline.
    fn rewire(&self) {
        // Every consumer list is made before any is installed: installing one drops the
        // output's old senders, and when those were the last strong senders of a buffer
        // (a sink whose only producer changes, say `hook` to a new transform in front of
        // it), the buffer would close before its new producer took a sender from it.
        let mut wiring = Vec::new();
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
                wiring.push((output, consumers, expected));
            }
        }
        for (output, consumers, expected) in wiring {
            output.set_consumers(consumers, expected);
        }
    }

    /// Every socket the pipeline listens on: TCP addresses, and UDP ones by their key.
    fn listen_addresses(&self, pipeline: &Pipeline) -> Vec<String> {
        let sources = pipeline.sources.values().map(|d| d.config.listen_address());
        let sinks = pipeline.sinks.values().map(|d| d.config.listen_address());
        let udp = pipeline
            .sources
            .values()
            .filter_map(|d| d.config.udp_address())
            .map(crate::component::udp_key);
        sources
            .chain(sinks)
            .flatten()
            .map(str::to_owned)
            .chain(udp)
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
    pub(crate) fn running(&self) -> Vec<String> {
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
