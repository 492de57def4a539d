//! Turning a validated [`Pipeline`] into running tasks, and stopping them.
//!
//! Every component is its own tokio task, keyed by id, reading one bounded input buffer
//! (transforms and sinks) and writing through one [`Fanout`] per output (sources and
//! transforms). The DAG is nothing more than which buffer senders each fanout holds.
//!
//! Shutdown runs front to back: sources are cancelled and stop accepting; when a source
//! task ends its fanouts drop, closing the buffers it fed once they are drained; each
//! transform ends when all its inputs are closed and drained, and so on until the sinks
//! have settled everything. Nothing is cut off unless `shutdown_timeout` passes.

mod buffer;
mod fanout;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use buffer::{BufferProbe, BufferReceiver, BufferSender, Closed, buffer};
pub use fanout::{Fanout, FanoutControl, FanoutHandle};

use crate::component::{
    BuildError, ComponentTask, SinkContext, SourceContext, SourceOutput, Transform,
    TransformContext, TransformOutputs,
};
use crate::config::{DEFAULT_BUFFER_EVENTS, OutputRef, Pipeline};
use crate::telemetry::{ComponentKind, ComponentMetrics, ComponentState, Telemetry};

/// Options that come from global settings rather than the pipeline file.
#[derive(Debug, Clone)]
pub struct TopologyOptions {
    pub data_dir: PathBuf,
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

/// A running pipeline.
pub struct RunningTopology {
    tasks: JoinSet<String>,
    running: HashSet<String>,
    sources_shutdown: CancellationToken,
    /// Handles to re-point every output (used by hot reload).
    pub fanouts: HashMap<OutputRef, FanoutHandle>,
    telemetry: Arc<Telemetry>,
}

/// How a shutdown went.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every component finished; every event was settled.
    Complete,
    /// These components were still running at the deadline and were aborted.
    TimedOut(Vec<String>),
}

/// Builds every component of `pipeline` and starts them.
///
/// Either every component starts or none does: all are built (sockets bound, programs
/// compiled) before the first task is spawned.
pub async fn start(
    pipeline: Pipeline,
    telemetry: Arc<Telemetry>,
    options: &TopologyOptions,
) -> Result<RunningTopology, BuildErrors> {
    let mut errors = Vec::new();
    let mut senders: HashMap<String, BufferSender> = HashMap::new();
    let mut receivers: HashMap<String, BufferReceiver> = HashMap::new();
    let mut metrics: HashMap<String, Arc<ComponentMetrics>> = HashMap::new();

    for (id, def) in &pipeline.sources {
        metrics.insert(
            id.clone(),
            telemetry.component(id, ComponentKind::Source, def.config.type_name()),
        );
    }
    let buffered = pipeline
        .transforms
        .iter()
        .map(|(id, d)| {
            (
                id,
                ComponentKind::Transform,
                d.config.type_name(),
                DEFAULT_BUFFER_EVENTS,
            )
        })
        .chain(pipeline.sinks.iter().map(|(id, d)| {
            (
                id,
                ComponentKind::Sink,
                d.config.type_name(),
                d.buffer.max_events,
            )
        }));
    for (id, kind, type_name, capacity) in buffered {
        let m = telemetry.component(id, kind, type_name);
        let (tx, rx, probe) = buffer(capacity);
        m.set_buffer(probe);
        senders.insert(id.clone(), tx);
        receivers.insert(id.clone(), rx);
        metrics.insert(id.clone(), m);
    }

    // One fanout per output, wired to the buffers of its consumers.
    let mut fanouts: HashMap<OutputRef, Fanout> = HashMap::new();
    let mut handles: HashMap<OutputRef, FanoutHandle> = HashMap::new();
    let mut outputs: Vec<OutputRef> = pipeline
        .sources
        .keys()
        .map(|id| default_output(id))
        .collect();
    for (id, def) in &pipeline.transforms {
        outputs.push(default_output(id));
        outputs.extend(def.config.outputs().into_iter().map(|o| OutputRef {
            component: id.clone(),
            output: Some(o),
        }));
    }
    for output in outputs {
        let Some(m) = metrics.get(&output.component) else {
            continue;
        };
        let (mut fanout, handle) = Fanout::new(Arc::clone(m));
        for consumer in pipeline.graph.consumers_of(&output) {
            if let Some(tx) = senders.get(consumer) {
                fanout.add(consumer.to_owned(), tx.clone());
            }
        }
        handles.insert(output.clone(), handle);
        fanouts.insert(output, fanout);
    }
    // Only fanouts may hold senders now, so buffers close when their producers end.
    drop(senders);

    let sources_shutdown = CancellationToken::new();
    let mut built: Vec<(String, Arc<ComponentMetrics>, ComponentTask)> = Vec::new();

    for (id, def) in &pipeline.sinks {
        let (Some(input), Some(m)) = (receivers.remove(id), metrics.get(id)) else {
            continue;
        };
        let cx = SinkContext {
            id: Arc::from(id.as_str()),
            input,
            metrics: Arc::clone(m),
        };
        match def.config.build(cx).await {
            Ok(task) => built.push((id.clone(), Arc::clone(m), task)),
            Err(error) => errors.push(ComponentBuildError {
                id: id.clone(),
                error,
            }),
        }
    }

    for (id, def) in &pipeline.transforms {
        let (Some(input), Some(m)) = (receivers.remove(id), metrics.get(id)) else {
            continue;
        };
        let cx = TransformContext {
            id: Arc::from(id.as_str()),
            metrics: Arc::clone(m),
        };
        let transform = match def.config.build(&cx) {
            Ok(t) => t,
            Err(error) => {
                errors.push(ComponentBuildError {
                    id: id.clone(),
                    error,
                });
                continue;
            }
        };
        let default = fanouts.remove(&default_output(id));
        let named: Vec<Fanout> = def
            .config
            .outputs()
            .into_iter()
            .filter_map(|o| {
                fanouts.remove(&OutputRef {
                    component: id.clone(),
                    output: Some(o),
                })
            })
            .collect();
        let Some(default) = default else {
            continue;
        };
        let task = run_transform(transform, input, default, named, Arc::clone(m));
        built.push((id.clone(), Arc::clone(m), Box::pin(task)));
    }

    for (id, def) in &pipeline.sources {
        let (Some(fanout), Some(m)) = (fanouts.remove(&default_output(id)), metrics.get(id)) else {
            continue;
        };
        let cx = SourceContext {
            id: Arc::from(id.as_str()),
            out: SourceOutput::new(fanout),
            shutdown: sources_shutdown.child_token(),
            metrics: Arc::clone(m),
            telemetry: Arc::clone(&telemetry),
            data_dir: options.data_dir.clone(),
        };
        match def.config.build(cx).await {
            Ok(task) => built.push((id.clone(), Arc::clone(m), task)),
            Err(error) => errors.push(ComponentBuildError {
                id: id.clone(),
                error,
            }),
        }
    }

    if !errors.is_empty() {
        return Err(BuildErrors(errors));
    }

    let mut tasks = JoinSet::new();
    let mut running = HashSet::new();
    for (id, m, task) in built {
        running.insert(id.clone());
        m.set_state(ComponentState::Running);
        tasks.spawn(supervise(id, m, task));
    }
    Ok(RunningTopology {
        tasks,
        running,
        sources_shutdown,
        fanouts: handles,
        telemetry,
    })
}

fn default_output(id: &str) -> OutputRef {
    OutputRef {
        component: id.to_owned(),
        output: None,
    }
}

/// Runs one component task and records how it ended.
async fn supervise(id: String, metrics: Arc<ComponentMetrics>, task: ComponentTask) -> String {
    match task.await {
        Ok(()) => {
            if metrics.state() == ComponentState::Running {
                metrics.set_state(ComponentState::Stopped);
            }
            tracing::debug!(component_id = %id, "component finished");
        }
        Err(e) => {
            tracing::error!(component_id = %id, error = %e, "component failed");
            metrics.set_state(ComponentState::Failed(e.to_string()));
        }
    }
    id
}

/// Drives a synchronous transform: input buffer → `process` → output fanouts.
async fn run_transform(
    mut transform: Box<dyn Transform>,
    mut input: BufferReceiver,
    mut default: Fanout,
    mut named: Vec<Fanout>,
    metrics: Arc<ComponentMetrics>,
) -> Result<(), crate::component::ComponentError> {
    let mut out = TransformOutputs::new(named.len());
    while let Some(batch) = input.recv().await {
        metrics.add_received(batch.len());
        transform.process(batch, &mut out);
        if !out.default.is_empty() {
            default.send(std::mem::take(&mut out.default)).await;
        }
        for (fanout, events) in named.iter_mut().zip(out.named.iter_mut()) {
            if !events.is_empty() {
                fanout.send(std::mem::take(events)).await;
            }
        }
    }
    Ok(())
}

impl RunningTopology {
    /// Waits until every component has finished on its own (all sources reached their
    /// end and everything drained). Returns at once if nothing runs.
    pub async fn finished(&mut self) {
        while let Some(result) = self.tasks.join_next().await {
            self.on_joined(result);
        }
    }

    fn on_joined(&mut self, result: Result<String, tokio::task::JoinError>) {
        match result {
            Ok(id) => {
                self.running.remove(&id);
            }
            Err(e) => tracing::error!(error = %e, "component task panicked or was aborted"),
        }
    }

    /// Ids of components still running.
    pub fn running(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.running.iter().cloned().collect();
        ids.sort();
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
                    self.tasks.abort_all();
                    for id in &left {
                        for m in self.telemetry.components() {
                            if m.id == *id {
                                m.set_state(ComponentState::Failed(
                                    "aborted at shutdown deadline".into(),
                                ));
                            }
                        }
                    }
                    return Drained::TimedOut(left);
                }
            }
        }
    }
}
