//! Internal telemetry: per-component counters, buffer fill, latency (end to end and per
//! component), backfill progress and component health, rendered for `/metrics`,
//! `/components` and `/health`.
//!
//! Counters are plain atomics handed to each component at build time, so the hot path
//! never takes a lock or looks anything up. Rendering reads them on demand. One
//! [`Telemetry`] belongs to one running process and outlives topology rebuilds, so a
//! component that is replaced keeps its counters monotonic.

pub(crate) mod backfill;
pub(crate) mod catalog;
mod errors;
mod process;
mod prometheus;
pub mod snapshot;
pub(crate) mod status_feeds;
pub(crate) mod tap;
pub(crate) use errors::{ErrorType, Stage};
pub(crate) use tap::{OutputId, Selector as TapSelector, Wiring};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;

pub(crate) use crate::event::latency::LatencyRecorder;

/// The fill level of a component's input buffer, read when telemetry is rendered.
pub(crate) trait BufferGauge: std::fmt::Debug + Send + Sync + 'static {
    /// Events held.
    fn len(&self) -> usize;
    /// Events the buffer holds before upstream waits.
    fn capacity(&self) -> usize;
}

/// Which part of the DAG a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    Source,
    Transform,
    Sink,
}

impl ComponentKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Transform => "transform",
            Self::Sink => "sink",
        }
    }
}

/// Lifecycle of one component, as `/health` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentState {
    Starting,
    Running,
    /// Finished on its own (a generator that reached its count, stdin at EOF).
    Stopped,
    Failed(String),
    /// Runs, but cannot do its job now (a store it needs is unreachable): unhealthy for
    /// probes, so traffic goes elsewhere, yet not a failure.
    Degraded(String),
}

/// Counters of one component. Cheap to clone (an `Arc`).
#[derive(Debug)]
pub struct ComponentMetrics {
    pub id: String,
    pub(crate) kind: ComponentKind,
    pub(crate) type_name: &'static str,
    pub received: AtomicU64,
    /// Events passed on (all outputs) or delivered.
    pub sent: AtomicU64,
    /// Every error, whatever its type and stage.
    pub errors: AtomicU64,
    /// Every discarded event, intended or not.
    pub discarded: AtomicU64,
    /// The share of `discarded` that nobody chose (a full buffer, a sink that gave up
    /// with no dead-letter output): `intentional="false"`.
    discarded_unintended: AtomicU64,
    /// Bytes a source read from the outside (bodies, lines, messages, as they came).
    pub received_bytes: AtomicU64,
    /// Bytes a sink delivered to the outside (request bodies, records, lines).
    pub sent_bytes: AtomicU64,
    errors_by_kind: errors::ErrorCounts,
    /// Events passed on per named output (`None`: the default one), for the `output`
    /// label; registered by each output, so a rebuilt one keeps counting.
    outputs: Mutex<Vec<(Option<String>, Arc<AtomicU64>)>>,
    state: Mutex<ComponentState>,
    buffer: Mutex<Option<Box<dyn BufferGauge>>>,
    labeled: Mutex<Vec<Arc<LabeledCounter>>>,
    gauges: Mutex<Vec<Arc<LabeledGauge>>>,
    /// Age of events when they leave the component: passed on by a source or a transform,
    /// or delivered by a sink. Recorded once per batch.
    latency: LatencyRecorder,
}

/// A component's own counter with extra labels (e.g. a webhook's rejected requests by
/// route and reason), rendered after the component labels; its description is the
/// catalogue's ([`catalog`]).
#[derive(Debug)]
pub struct LabeledCounter {
    pub(crate) name: &'static str,
    pub(crate) labels: Vec<(&'static str, String)>,
    value: AtomicU64,
}

impl LabeledCounter {
    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A component's own gauge with extra labels (e.g. a status feed's last success time),
/// rendered like [`LabeledCounter`]. Holds an `f64` in an atomic, so setting it never
/// takes a lock.
#[derive(Debug)]
pub(crate) struct LabeledGauge {
    pub(crate) name: &'static str,
    pub(crate) labels: Vec<(&'static str, String)>,
    bits: AtomicU64,
}

impl LabeledGauge {
    pub(crate) fn set(&self, v: f64) {
        self.bits.store(v.to_bits(), Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }
}

fn same_labels(a: &[(&'static str, String)], b: &[(&'static str, &str)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1 == y.1)
}

impl ComponentMetrics {
    pub(crate) fn add_received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn add_sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }
    /// Counts `n` errors of one type met at one stage (the `error_type` and `stage`
    /// labels of `sluice_component_errors_total`).
    pub(crate) fn add_errors(&self, n: usize, error_type: ErrorType, stage: Stage) {
        self.errors.fetch_add(n as u64, Ordering::Relaxed);
        self.errors_by_kind.add(error_type, stage, n as u64);
    }
    /// Counts events dropped on purpose: filtered, sampled, throttled, deduplicated, or
    /// sent to an output nobody reads.
    pub(crate) fn add_discarded(&self, n: usize) {
        self.discarded.fetch_add(n as u64, Ordering::Relaxed);
    }
    /// Counts events dropped that nobody chose to drop (see `discarded_unintended`).
    pub(crate) fn add_discarded_unintended(&self, n: usize) {
        self.discarded.fetch_add(n as u64, Ordering::Relaxed);
        self.discarded_unintended
            .fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn add_received_bytes(&self, n: usize) {
        self.received_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn add_sent_bytes(&self, n: usize) {
        self.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    /// The counter of events passed on through output `name` (`None`: the default
    /// output), created on first use.
    pub(crate) fn output_counter(&self, name: Option<&str>) -> Arc<AtomicU64> {
        let mut outputs = lock(&self.outputs);
        if let Some((_, c)) = outputs.iter().find(|(n, _)| n.as_deref() == name) {
            return Arc::clone(c);
        }
        let c = Arc::new(AtomicU64::new(0));
        outputs.push((name.map(str::to_owned), Arc::clone(&c)));
        c
    }
    /// Events passed on per output, in registration order.
    pub(crate) fn outputs_sent(&self) -> Vec<(Option<String>, u64)> {
        lock(&self.outputs)
            .iter()
            .map(|(n, c)| (n.clone(), c.load(Ordering::Relaxed)))
            .collect()
    }
    /// Errors by (type, stage), those that happened at least once.
    pub(crate) fn errors_by_kind(&self) -> Vec<(ErrorType, Stage, u64)> {
        self.errors_by_kind.nonzero()
    }
    /// Discarded events as (intended, unintended).
    pub(crate) fn discarded_split(&self) -> (u64, u64) {
        let all = self.discarded.load(Ordering::Relaxed);
        let unintended = self.discarded_unintended.load(Ordering::Relaxed);
        (all.saturating_sub(unintended), unintended)
    }
    pub(crate) fn set_state(&self, state: ComponentState) {
        *lock(&self.state) = state;
    }
    pub fn state(&self) -> ComponentState {
        lock(&self.state).clone()
    }
    /// Events waiting in this component's input buffer, if it has one.
    pub fn buffered_events(&self) -> Option<(usize, usize)> {
        lock(&self.buffer)
            .as_ref()
            .map(|probe| (probe.len(), probe.capacity()))
    }
    pub(crate) fn set_buffer(&self, probe: impl BufferGauge) {
        *lock(&self.buffer) = Some(Box::new(probe));
    }
    /// The counter `name` with these extra labels, created on first use; a rebuilt
    /// component gets the same counter back, so it stays monotonic.
    pub fn counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Arc<LabeledCounter> {
        catalog::debug_check(name, labels);
        let mut all = lock(&self.labeled);
        if let Some(c) = all
            .iter()
            .find(|c| c.name == name && same_labels(&c.labels, labels))
        {
            return Arc::clone(c);
        }
        let c = Arc::new(LabeledCounter {
            name,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            value: AtomicU64::new(0),
        });
        all.push(Arc::clone(&c));
        c
    }
    pub(crate) fn labeled_counters(&self) -> Vec<Arc<LabeledCounter>> {
        lock(&self.labeled).clone()
    }
    /// The gauge `name` with these extra labels, created on first use (at 0); a rebuilt
    /// component gets the same gauge back.
    pub(crate) fn gauge(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Arc<LabeledGauge> {
        catalog::debug_check(name, labels);
        let mut all = lock(&self.gauges);
        if let Some(g) = all
            .iter()
            .find(|g| g.name == name && same_labels(&g.labels, labels))
        {
            return Arc::clone(g);
        }
        let g = Arc::new(LabeledGauge {
            name,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            bits: AtomicU64::new(0f64.to_bits()),
        });
        all.push(Arc::clone(&g));
        g
    }
    pub(crate) fn labeled_gauges(&self) -> Vec<Arc<LabeledGauge>> {
        lock(&self.gauges).clone()
    }
    /// Records that `batch` leaves this component now. The batch is timed by its first
    /// event (batches are made of events received together), weighted by its length:
    /// one clock read per batch instead of one per event.
    pub(crate) fn record_leaving(&self, batch: &[crate::event::Event]) {
        if let Some(first) = batch.first() {
            self.latency
                .record_age(first.meta.received_at, batch.len() as u64);
        }
    }
    /// See [`ComponentMetrics::record_leaving`].
    pub(crate) fn latency(&self) -> &LatencyRecorder {
        &self.latency
    }
}

/// Process-wide telemetry registry.
#[derive(Debug, Default)]
pub struct Telemetry {
    components: Mutex<IndexMap<String, Arc<ComponentMetrics>>>,
    latency: Arc<LatencyRecorder>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    reload_duration: LatencyRecorder,
    config: Mutex<ConfigStatus>,
    pipeline_running: AtomicBool,
    taps: Arc<tap::TapRegistry>,
    status_feeds: Arc<status_feeds::StatusFeedRegistry>,
    /// What each transform and sink reads (`component`, `output`), for `tap --inputs-of`.
    inputs: Mutex<Wiring>,
    /// The memory budget's use and limit in bytes, when `memory_limit` is set.
    memory: Mutex<Option<MemoryProbe>>,
}

/// Reads the memory budget (which lives in a layer above this one).
pub(crate) struct MemoryProbe(pub(crate) Box<dyn Fn() -> (usize, usize) + Send + Sync>);

impl std::fmt::Debug for MemoryProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryProbe")
    }
}

/// The running configuration, as `/health` reports it.
#[derive(Debug, Default, Clone)]
pub(crate) struct ConfigStatus {
    /// Hash of the running pipeline files (after interpolation), in hex.
    pub(crate) hash: String,
    /// When the running pipeline was applied.
    pub(crate) applied_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The error of the last reload attempt, if it failed (cleared by a success).
    pub(crate) last_reload_error: Option<String>,
}

impl Telemetry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counters of `id`, created on first use. A component rebuilt with another type
    /// gets fresh counters.
    pub fn component(
        &self,
        id: &str,
        kind: ComponentKind,
        type_name: &'static str,
    ) -> Arc<ComponentMetrics> {
        let mut map = lock(&self.components);
        if let Some(existing) = map.get(id)
            && existing.kind == kind
            && existing.type_name == type_name
        {
            return Arc::clone(existing);
        }
        let metrics = Arc::new(ComponentMetrics {
            id: id.to_owned(),
            kind,
            type_name,
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            discarded_unintended: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            errors_by_kind: errors::ErrorCounts::default(),
            outputs: Mutex::new(Vec::new()),
            state: Mutex::new(ComponentState::Starting),
            buffer: Mutex::new(None),
            labeled: Mutex::new(Vec::new()),
            gauges: Mutex::new(Vec::new()),
            latency: LatencyRecorder::with_significant_digits(2),
        });
        map.insert(id.to_owned(), Arc::clone(&metrics));
        metrics
    }

    /// Puts back the counters of a component (a reload that rolled back).
    pub(crate) fn register(&self, metrics: Arc<ComponentMetrics>) {
        lock(&self.components).insert(metrics.id.clone(), metrics);
    }

    /// Forgets a component that is no longer part of the pipeline.
    pub(crate) fn remove(&self, id: &str) {
        lock(&self.components).shift_remove(id);
    }

    /// A snapshot of every registered component.
    pub fn components(&self) -> Vec<Arc<ComponentMetrics>> {
        lock(&self.components).values().cloned().collect()
    }

    pub(crate) fn latency(&self) -> &Arc<LatencyRecorder> {
        &self.latency
    }

    /// Where `sluice tap` readers attach.
    pub(crate) fn taps(&self) -> &Arc<tap::TapRegistry> {
        &self.taps
    }

    /// Where `/metrics` reads the memory budget's use and limit from.
    pub(crate) fn set_memory_probe(&self, probe: MemoryProbe) {
        *lock(&self.memory) = Some(probe);
    }

    /// The memory budget's (used, limit) in bytes, when there is one.
    fn memory(&self) -> Option<(usize, usize)> {
        lock(&self.memory).as_ref().map(|p| (p.0)())
    }

    /// The running pipeline's wiring: what each transform and sink reads.
    pub(crate) fn set_inputs(&self, inputs: Wiring) {
        *lock(&self.inputs) = inputs;
    }

    /// The outputs read by the components whose id matches `pattern`, and how many
    /// components matched.
    pub(crate) fn inputs_of(&self, pattern: &str) -> (Vec<OutputId>, usize) {
        let pattern = wildmatch::WildMatch::new(pattern);
        let inputs = lock(&self.inputs);
        let mut matched = 0;
        let mut outputs = Vec::new();
        for (_, read) in inputs.iter().filter(|(id, _)| pattern.matches(id)) {
            matched += 1;
            for o in read {
                if !outputs.contains(o) {
                    outputs.push(o.clone());
                }
            }
        }
        (outputs, matched)
    }

    /// How many components have an id matching `pattern`.
    pub(crate) fn count_matching(&self, pattern: &str) -> usize {
        let pattern = wildmatch::WildMatch::new(pattern);
        lock(&self.components)
            .keys()
            .filter(|id| pattern.matches(id))
            .count()
    }

    /// Running `status_feed` sources, for the API.
    pub(crate) fn status_feeds(&self) -> &Arc<status_feeds::StatusFeedRegistry> {
        &self.status_feeds
    }

    /// Whether a pipeline is running (false before start and while draining at shutdown).
    pub fn set_pipeline_running(&self, running: bool) {
        self.pipeline_running.store(running, Ordering::Release);
    }

    pub(crate) fn pipeline_running(&self) -> bool {
        self.pipeline_running.load(Ordering::Acquire)
    }

    /// Records the pipeline that was applied at start or by a reload.
    pub(crate) fn config_applied(&self, hash: u64, reload_took: Option<std::time::Duration>) {
        if let Some(took) = reload_took {
            self.reloads.fetch_add(1, Ordering::Relaxed);
            self.reload_duration.record(took, 1);
        }
        let mut status = lock(&self.config);
        status.hash = format!("{hash:016x}");
        status.applied_at = Some(chrono::Utc::now());
        status.last_reload_error = None;
    }

    /// Records a refused reload; the running pipeline is unchanged.
    pub(crate) fn reload_failed(&self, error: String) {
        self.reload_failures.fetch_add(1, Ordering::Relaxed);
        lock(&self.config).last_reload_error = Some(error);
    }

    pub(crate) fn config_status(&self) -> ConfigStatus {
        lock(&self.config).clone()
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        prometheus::render(self)
    }
}

// A poisoned lock only means another thread panicked while holding it; the counters
// it protects stay meaningful, so keep serving them.
use crate::state_file::lock;
