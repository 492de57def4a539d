//! Test support: a sink that records what reaches it, for in-process pipeline tests and
//! the benches. It is added to a parsed pipeline in code (it has no pipeline-file type),
//! so users never see it.

pub mod kafka;

/// The calling test skips its work, or part of it, because something it needs is not on
/// this machine. Under CI that is a failure (`.ci/run` provides every service and tool).
pub fn skip(reason: &str) {
    assert!(!kafka::in_ci(), "cannot skip under CI: {reason}");
    skip_optional(reason);
}

/// As [`skip`], for what CI does not provide either (a tool that is not a service).
/// The reason is written to standard error directly, past libtest's output capture, so
/// a plain `cargo test` shows it; and appended to the file `SLUICE_SKIP_LOG` names,
/// which `.ci/run` counts at the end.
pub fn skip_optional(reason: &str) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_owned();
    let line = format!("skipped: {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os("SLUICE_SKIP_LOG") {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            let _ = writeln!(std::io::stderr(), "cannot record the skip: {e}");
        }
    }
}

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::buffer::BufferConfig;
use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SinkConfig, SinkContext,
};
use crate::config::{ComponentDef, InputRef, Pipeline, Position};
use crate::event::{EventStatus, settle_all};
use vrl::value::Value;

/// Records event payloads and settles them with a chosen status.
#[derive(Clone)]
pub struct CaptureSink {
    pub events: Arc<Mutex<Vec<Value>>>,
    /// How to settle what arrives.
    pub status: EventStatus,
    /// Sleep this long per batch (a slow sink).
    pub delay: Option<Duration>,
    /// When set, each batch waits for one permit before it is recorded and settled (a
    /// sink stuck retrying); replaced meanwhile, it hands the batch back.
    pub gate: Option<Arc<Semaphore>>,
    /// Sizes of the batches received.
    pub batches: Arc<Mutex<Vec<usize>>>,
}

impl std::fmt::Debug for CaptureSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaptureSink")
    }
}

impl Default for CaptureSink {
    fn default() -> Self {
        Self {
            events: Arc::default(),
            status: EventStatus::Delivered,
            delay: None,
            gate: None,
            batches: Arc::default(),
        }
    }
}

impl CaptureSink {
    /// Payloads received so far.
    pub fn values(&self) -> Vec<Value> {
        self.events.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// A top-level integer field of every received event, in arrival order.
    pub fn ints(&self, field: &str) -> Vec<i64> {
        self.values()
            .iter()
            .filter_map(|v| match v {
                Value::Object(m) => match m.get(field) {
                    Some(Value::Integer(i)) => Some(*i),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// Adds this sink to `pipeline` as `id` reading `inputs`.
    pub fn attach(&self, pipeline: &mut Pipeline, id: &str, inputs: &[&str], max_events: usize) {
        pipeline.sinks.insert(
            id.to_owned(),
            ComponentDef {
                config: Box::new(self.clone()),
                inputs: inputs
                    .iter()
                    .map(|p| InputRef {
                        pattern: (*p).to_owned(),
                        position: Position::default(),
                    })
                    .collect(),
                buffer: BufferConfig {
                    max_events: Some(max_events),
                    ..BufferConfig::default()
                },
                position: Position::default(),
                fingerprint: 0,
            },
        );
    }
}

impl SinkConfig for CaptureSink {
    fn type_name(&self) -> &'static str {
        "capture"
    }

    fn build(&self, mut cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        let me = self.clone();
        Box::pin(async move {
            Ok(Box::pin(async move {
                while let Some(batch) = cx.input.recv().await {
                    cx.metrics.add_received(batch.len());
                    if let Some(gate) = &me.gate {
                        // Like a sink retrying a delivery: when replaced while waiting,
                        // it gives the batch back unsettled for its replacement.
                        tokio::select! {
                            permit = gate.acquire() => {
                                permit.map_err(|e| ComponentError::Other(e.to_string()))?.forget();
                            }
                            () = cx.input.stopping() => {
                                cx.input.hand_back(batch);
                                return Ok(());
                            }
                        }
                    }
                    if let Some(d) = me.delay {
                        tokio::time::sleep(d).await;
                    }
                    if let Ok(mut b) = me.batches.lock() {
                        b.push(batch.len());
                    }
                    if let Ok(mut events) = me.events.lock() {
                        events.extend(batch.iter().map(|e| e.value().clone()));
                    }
                    if me.status == EventStatus::Delivered {
                        cx.metrics.add_sent(batch.len());
                    } else {
                        cx.metrics.add_errors(
                            batch.len(),
                            crate::telemetry::ErrorType::Delivery,
                            crate::telemetry::Stage::Sending,
                        );
                    }
                    settle_all(batch, me.status);
                }
                Ok(())
            }) as ComponentTask)
        })
    }
}
