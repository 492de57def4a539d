//! sluice: a stream-processing pipeline for monitoring events.
//!
//! A pipeline file declares sources, transforms and sinks ([`config`]); the
//! [`topology`] runs each as a task connected by bounded buffers; every [`event`]
//! carries an acknowledgement handle so sources learn when sinks delivered it.
//!
//! Modules are listed by layer, bottom first; each imports only from its own layer or
//! below (`docs/architecture.md`, checked by `tests/layers.rs`). The `pub` ones are the
//! library surface that the `sluice` binary, the integration tests, the benches and
//! the fuzz targets use; `pub(crate)` ones are internal. The same rule holds inside
//! the public modules: an item is `pub` only when one of those uses it, so `pub`
//! tells a reader that changing it changes the library's surface.

/// Events are allocated by one task and freed by another, usually on another thread;
/// glibc's malloc serializes that on arena locks (40% of the engine's time in profiles
/// of the topology bench). mimalloc's per-thread free lists do not.
///
/// It is built without transparent huge pages (`no_thp`). With them, every arena
/// region it touches first becomes a 2 MiB page that the kernel zeroes whole: the idle
/// heap was 10 MiB of huge pages holding 0.6 MiB of data, and the peak RSS under the
/// NDJSON load 101–103 MiB; without them 2.4 MiB and 60–67 MiB, at the same throughput
/// (benches/PROFILING.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Foundations.
pub(crate) mod build_info;
pub mod clock;
pub(crate) mod error;
pub(crate) mod hashing;
pub(crate) mod redact;
pub(crate) mod state_file;
pub(crate) mod text;
pub(crate) mod units;

// Events.
pub mod event;
// Telemetry: counters, gauges, tap (reads buffers through a trait).
pub mod telemetry;
// Buffers and the memory budget.
pub mod buffer;

// Shared vocabulary.
pub mod alert;
pub mod fluent;
pub(crate) mod kafka;
pub(crate) mod key_values;
pub(crate) mod matchers;
pub mod net;
pub(crate) mod otlp;
pub mod plugins;
pub(crate) mod postgres;
pub(crate) mod program;
pub mod silences;
pub(crate) mod tables;
pub(crate) mod template;

// Components: the traits and ports, the sink driver, the component types.
pub mod component;
pub mod delivery;
pub mod sinks;
pub mod sources;
pub mod transforms;

// The pipeline file and global settings; running a pipeline.
pub mod config;
pub mod settings;
pub mod topology;

// Services around the engine.
pub mod api;
pub mod fuzzing;
pub(crate) mod reload;
pub mod testing;

// The tools: the process and the command line.
pub(crate) mod app;
pub mod cli;
