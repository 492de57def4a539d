//! The tasks a component runs as: a supervisor around every component task, and the
//! loop that drives a transform (transforms own no channels, so a reload can re-point
//! their outputs without their cooperation).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;

use super::{ENDED, RUNNING};
use crate::component::{
    ComponentError, ComponentInput, InputSlot, Output, Transform, TransformOutputs, close_input,
};
use crate::telemetry::{ComponentMetrics, ComponentState};

/// Awaits one component task, records how it ended and cleans up after it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn supervise(
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
pub(super) async fn run_transform(
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
                transform.stopping(&mut out);
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
