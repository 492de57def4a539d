//! sluice: a stream-processing pipeline for monitoring events.
//!
//! A pipeline file declares sources, transforms and sinks ([`config`]); the
//! [`topology`] runs each as a task connected by bounded buffers; every [`event`]
//! carries an acknowledgement handle so sources learn when sinks delivered it.

/// Events are allocated by one task and freed by another, usually on another thread;
/// glibc's malloc serializes that on arena locks (40% of the engine's time in profiles
/// of the topology bench). mimalloc's per-thread free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod alert;
pub mod api;
pub mod app;
pub mod buffer;
pub mod cli;
pub mod clock;
pub mod component;
pub mod config;
pub mod delivery;
pub mod error;
pub mod event;
pub mod fuzzing;
pub mod kafka;
pub mod key_values;
pub mod matchers;
pub mod net;
pub mod plugins;
pub mod postgres;
pub mod program;
pub mod redact;
pub mod reload;
pub mod settings;
pub mod sinks;
pub mod sources;
pub mod state_file;
pub mod tables;
pub mod telemetry;
pub mod template;
pub mod testing;
pub mod topology;
pub mod transforms;
pub mod units;
