//! What every component type implements, and what it is given when it runs.
//!
//! A component config is deserialized from the pipeline file, validated, then built into
//! a task. Sources and sinks are async tasks; transforms are synchronous functions over
//! batches that the topology drives (so a transform never owns channels, and a reload
//! can re-point its outputs without its cooperation).

mod file_notices;
mod input;
mod listeners;
mod live;
mod output;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::buffer::MemoryBudget;
use crate::event::{EventBatch, EventStatus, settle_all};
use crate::telemetry::{ComponentMetrics, Telemetry};

pub use futures_util::future::BoxFuture;

pub use crate::error::BuildError;
pub(crate) use crate::telemetry::ComponentKind;
pub(crate) use file_notices::absolute;
pub use file_notices::{FileNotices, OnChange};
pub(crate) use input::{ComponentInput, InputSlot, close as close_input, input_slot};
pub(crate) use listeners::{ListenerPool, udp_key};
pub(crate) use live::Live;
pub(crate) use output::{Consumer, Output};

/// A running component: resolves when the component has finished.
pub type ComponentTask = BoxFuture<'static, Result<(), ComponentError>>;

/// Why a running component stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// What a source is given to run.
pub struct SourceContext {
    /// The source's id, as its events carry it.
    pub(crate) id: crate::event::SourceId,
    pub(crate) out: SourceOutput,
    /// Cancelled when the source must stop accepting new input (shutdown, or removal by
    /// a reload). Already-emitted events keep flowing.
    pub(crate) shutdown: CancellationToken,
    pub(crate) metrics: Arc<ComponentMetrics>,
    pub(crate) telemetry: Arc<Telemetry>,
    /// Where stateful sources keep checkpoints.
    pub(crate) data_dir: PathBuf,
    /// Bind listening sockets here, so a replacement can take them over.
    pub(crate) listeners: ListenerPool,
    /// Wall time and timers (a [`crate::clock::ManualClock`] in tests).
    pub(crate) clock: Arc<dyn crate::clock::Clock>,
}

/// The outputs of a source.
pub(crate) struct SourceOutput {
    default: Arc<Output>,
    /// In the order of [`SourceConfig::outputs`].
    named: Vec<Arc<Output>>,
    budget: Option<Arc<MemoryBudget>>,
}

impl SourceOutput {
    pub(crate) fn new(default: Arc<Output>) -> Self {
        Self {
            default,
            named: Vec::new(),
            budget: None,
        }
    }

    /// The named outputs, in the order of [`SourceConfig::outputs`].
    pub(crate) fn with_named(mut self, named: Vec<Arc<Output>>) -> Self {
        self.named = named;
        self
    }

    /// Makes sends wait while the global memory budget is spent.
    pub(crate) fn with_budget(mut self, budget: Option<Arc<MemoryBudget>>) -> Self {
        self.budget = budget;
        self
    }

    /// The global memory budget, for sources that charge what they are about to decode.
    pub(crate) fn budget(&self) -> Option<Arc<MemoryBudget>> {
        self.budget.clone()
    }

    /// Sends a batch downstream, waiting while the downstream buffers are full or the
    /// memory budget is spent.
    pub(crate) async fn send(&mut self, batch: EventBatch) {
        if let Some(budget) = &self.budget {
            budget.room().await;
        }
        self.default.send(batch).await;
    }

    /// Sends a batch to the named output at `index` of [`SourceConfig::outputs`] (to
    /// the default output when there is no such output).
    pub(crate) async fn send_to(&mut self, index: usize, batch: EventBatch) {
        if let Some(budget) = &self.budget {
            budget.room().await;
        }
        match self.named.get(index) {
            Some(output) => output.send(batch).await,
            None => self.default.send(batch).await,
        }
    }
}

/// A source type's configuration.
pub trait SourceConfig: Debug + Send + Sync + 'static {
    fn type_name(&self) -> &'static str;
    /// Checks option values without side effects (used by `validate` and before a reload).
    fn check(&self) -> Result<(), BuildError> {
        Ok(())
    }
    /// Files the source reads; a change to one rebuilds it on reload, and the watcher
    /// watches them.
    fn files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// The `host:port` the source listens on (TCP), if it does.
    fn listen_address(&self) -> Option<&str> {
        None
    }
    /// The `host:port` the source receives datagrams on (UDP), if it does.
    fn udp_address(&self) -> Option<&str> {
        None
    }
    /// Names of outputs besides the default one (read as `<id>.<name>`); the source
    /// sends to them with [`SourceOutput::send_to`], by index in this list.
    fn outputs(&self) -> Vec<String> {
        Vec::new()
    }
    /// Builds the running source; binding sockets and opening files happens here so a
    /// failure stops the pipeline from starting instead of surfacing later.
    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>>;
}

/// Output buffers a transform fills for one input batch.
pub struct TransformOutputs {
    pub default: EventBatch,
    /// Indexed like [`TransformConfig::outputs`].
    pub named: Vec<EventBatch>,
}

impl TransformOutputs {
    pub fn new(named: usize) -> Self {
        Self {
            default: Vec::new(),
            named: (0..named).map(|_| Vec::new()).collect(),
        }
    }
}

/// A transform: a synchronous function from a batch to its outputs.
pub trait Transform: Send + 'static {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs);
    /// How often [`Transform::flush`] runs on a timer (aggregations); `None`: never.
    fn flush_interval(&self) -> Option<std::time::Duration> {
        None
    }
    /// Emits what the transform holds. Also called before it stops for good or is
    /// replaced by a reload, so nothing it holds is lost.
    fn flush(&mut self, _out: &mut TransformOutputs) {}
    /// Shutdown began: sources are waiting for the acknowledgements of what the
    /// transform holds. Default: [`Transform::flush`]. A transform holding events it
    /// cannot emit yet settles them now, so their senders learn it at once.
    fn stopping(&mut self, out: &mut TransformOutputs) {
        self.flush(out);
    }
}

/// What a transform is given when built.
pub struct TransformContext {
    pub id: Arc<str>,
    pub metrics: Arc<ComponentMetrics>,
    /// For time-based state (dedupe TTLs).
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Where stateful transforms (alert rules, subscriptions' auto-resolve timers) keep
    /// their snapshots. `None` when the transform is built only to be checked
    /// (`validate`) or exercised (`sluice test`): it must then keep state in memory and
    /// write nothing.
    pub data_dir: Option<PathBuf>,
    /// Changes to the files the transform reads, from the application's watcher.
    pub file_notices: FileNotices,
}

#[cfg(test)]
impl TransformContext {
    /// A context for building one transform of `type_name` in a unit test: fresh metrics,
    /// no data folder, no file notices.
    pub(crate) fn for_test(type_name: &'static str, clock: Arc<dyn crate::clock::Clock>) -> Self {
        Self {
            id: Arc::from(type_name),
            metrics: Telemetry::new().component(
                type_name,
                crate::telemetry::ComponentKind::Transform,
                type_name,
            ),
            clock,
            data_dir: None,
            file_notices: FileNotices::default(),
        }
    }
}

/// A transform type's configuration.
pub trait TransformConfig: Debug + Send + Sync + 'static {
    fn type_name(&self) -> &'static str;
    /// Named outputs besides the default one (e.g. `dropped` for `remap`).
    fn outputs(&self) -> Vec<String> {
        Vec::new()
    }
    /// Named outputs that carry what the user routed somewhere on purpose (an
    /// `alertmanager_route` receiver): `validate` warns for each one nothing reads,
    /// where for an optional output such as `dropped` it stays quiet.
    fn routed_outputs(&self) -> Vec<String> {
        Vec::new()
    }
    /// Files the transform reads (VRL programs, tables): see [`SourceConfig::files`].
    fn files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// For a transform that swaps a changed file in by itself while running (the
    /// `subscription` file): a hash of what of its files it cannot take in that way
    /// (its output names). A reload then rebuilds it only when this key changes, not on
    /// every edit of the files. `None` (the default): any change to a file rebuilds it.
    fn rebuild_key(&self) -> Option<u64> {
        None
    }
    fn build(&self, cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError>;
}

/// What a sink is given to run.
pub struct SinkContext {
    pub(crate) id: Arc<str>,
    /// `recv` yields `None` when the input is drained or when a reload replaces this
    /// sink; a sink holding undelivered events then gives them back with `hand_back`.
    pub input: ComponentInput,
    pub(crate) metrics: Arc<ComponentMetrics>,
    /// The sink's named outputs (such as `dead_letter`), in [`SinkConfig::outputs`] order.
    pub(crate) outputs: Vec<Arc<Output>>,
    /// Sleep through this clock when waiting by policy (retry backoff).
    pub(crate) clock: Arc<dyn crate::clock::Clock>,
    /// Where a sink keeps what it must remember across restarts (the `file` sink's
    /// manifest of the files it created), under a name derived from its id.
    pub(crate) data_dir: PathBuf,
    /// Bind listening sockets here (a sink that is scraped), so a replacement can take
    /// them over.
    pub(crate) listeners: ListenerPool,
    /// Cancelled when the pipeline starts shutting down: a sink holding events on
    /// purpose (an email digest) sends them now instead of at its timer.
    pub(crate) shutdown: tokio_util::sync::CancellationToken,
}

/// A sink type's configuration.
pub trait SinkConfig: Debug + Send + Sync + 'static {
    fn type_name(&self) -> &'static str;
    /// Checks option values without side effects (used by `validate` and before a reload).
    fn check(&self) -> Result<(), BuildError> {
        Ok(())
    }
    /// Files the sink reads: see [`SourceConfig::files`].
    fn files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Named outputs (a sink has no default output), e.g. `dead_letter`.
    fn outputs(&self) -> Vec<String> {
        Vec::new()
    }
    /// The `host:port` the sink serves on (an exporter that is scraped), if it does.
    fn listen_address(&self) -> Option<&str> {
        None
    }
    /// The task must run until `cx.input` is closed and drained, settling every event.
    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>>;
    /// `validate --check-sinks`: reaches what the sink delivers to, the way it does
    /// (name, connection, TLS, and credentials where a cheap probe exists), and says
    /// what answered or which step failed. `None`: it reaches nothing outside.
    fn healthcheck(
        &self,
        _timeout: std::time::Duration,
    ) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        None
    }
}

/// Settles a batch a sink has delivered, counts it and times it (see
/// [`ComponentMetrics::record_leaving`]).
pub(crate) fn delivered(metrics: &ComponentMetrics, batch: EventBatch) {
    metrics.add_sent(batch.len());
    metrics.record_leaving(&batch);
    settle_all(batch, EventStatus::Delivered);
}

/// The JSON Schema of a component type's options. Every config type in a
/// [`component_registry!`] must `#[derive(schemars::JsonSchema)]` (next to `Deserialize`,
/// so the schema follows the serde attributes); doc comments become descriptions. A field
/// read `with = "humantime_serde"` also needs
/// `#[schemars(schema_with = "crate::units::duration")]` (schemars would otherwise take
/// the module for a type: "expected type, found crate `humantime_serde`").
pub(crate) fn options_schema<T: schemars::JsonSchema>(
    generator: &mut schemars::SchemaGenerator,
) -> schemars::Schema {
    T::json_schema(generator)
}

/// Declares a section's component types: `TYPES` (for messages and the pre-scan),
/// `deserialize`, which picks the config struct by type name, and `schemas`, the JSON
/// Schema of each type's options (`sluice schema`, `sluice list`, the reference pages).
/// One line per type; a config type without `#[derive(schemars::JsonSchema)]` fails to
/// compile at `options_schema` ("the trait `JsonSchema` is not implemented for …").
macro_rules! component_registry {
    ($config:path; $($name:literal => $ty:ty),* $(,)?) => {
        /// Type names accepted in this section.
        pub const TYPES: &[&str] = &[$($name),*];

        /// The JSON Schema of each type's options, in `TYPES` order.
        pub(crate) fn schemas(
            generator: &mut schemars::SchemaGenerator,
        ) -> Vec<(&'static str, schemars::Schema)> {
            vec![$(($name, $crate::component::options_schema::<$ty>(generator)),)*]
        }

        /// Deserializes the config of component type `type_name`.
        pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
            type_name: &str,
            d: D,
        ) -> Result<Box<dyn $config>, D::Error> {
            match type_name {
                $($name => Ok(Box::new(<$ty as serde::Deserialize>::deserialize(d)?)),)*
                other => Err(<D::Error as serde::de::Error>::custom(format!(
                    "unknown type `{other}`"
                ))),
            }
        }
    };
}
pub(crate) use component_registry;
