//! The input of a transform or sink, which outlives the task reading it.
//!
//! When a reload replaces a component, the new task takes over the same buffer: the
//! buffer sits behind an async mutex that a task holds for as long as it reads. The old
//! task is asked to stop, finishes the batch in hand (or gives it back with
//! [`ComponentInput::hand_back`]) and releases the lock; the new task acquires it and
//! reads the handed-back batches first, then the buffer. Upstream never notices, so
//! nothing is dropped and nothing is read twice.
//!
//! `recv` returns `None` when the buffer is closed and drained (every producer ended)
//! or when this task was asked to stop.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use crate::buffer::BufferReceiver;
use crate::event::EventBatch;

/// The shared part: the buffer and the batches a stopped task gave back.
pub(crate) struct InputState {
    rx: BufferReceiver,
    handed_back: VecDeque<EventBatch>,
}

/// Shared handle to a component's input, kept by the topology across replacements.
pub(crate) type InputSlot = Arc<Mutex<InputState>>;

pub(crate) fn input_slot(rx: BufferReceiver) -> InputSlot {
    Arc::new(Mutex::new(InputState {
        rx,
        handed_back: VecDeque::new(),
    }))
}

/// Closes an input whose component ended for good: producers get their batches back
/// (and report them failed) instead of waiting forever, and what was queued or handed
/// back is settled as failed.
pub(crate) async fn close(slot: &InputSlot) {
    let mut state = slot.lock().await;
    state.rx.close();
    let mut lost = 0;
    for batch in state.handed_back.drain(..) {
        lost += batch.len();
        crate::event::settle_all(batch, crate::event::EventStatus::Errored);
    }
    while let Some(batch) = state.rx.take_queued() {
        lost += batch.len();
        crate::event::settle_all(batch, crate::event::EventStatus::Errored);
    }
    if lost > 0 {
        tracing::error!(
            events = lost,
            "component ended with events queued; reported as failed"
        );
    }
}

/// One task's view of its component's input.
pub struct ComponentInput {
    slot: InputSlot,
    guard: Option<OwnedMutexGuard<InputState>>,
    stop: CancellationToken,
}

impl ComponentInput {
    pub(crate) fn new(slot: InputSlot, stop: CancellationToken) -> Self {
        Self {
            slot,
            guard: None,
            stop,
        }
    }

    /// The next batch; `None` when the input is closed and drained or this task must
    /// stop.
    pub async fn recv(&mut self) -> Option<EventBatch> {
        if self.guard.is_none() {
            let slot = Arc::clone(&self.slot);
            let guard = tokio::select! {
                biased;
                () = self.stop.cancelled() => return None,
                g = slot.lock_owned() => g,
            };
            self.guard = Some(guard);
        }
        let state = self.guard.as_mut()?;
        if let Some(batch) = state.handed_back.pop_front() {
            return Some(batch);
        }
        if self.stop.is_cancelled() {
            return None;
        }
        // Fast path while the buffer has data: no stop future to build and register.
        if let Some(batch) = state.rx.try_recv() {
            return Some(batch);
        }
        tokio::select! {
            biased;
            () = self.stop.cancelled() => None,
            batch = state.rx.recv() => batch,
        }
    }

    /// A batch that is already waiting (given back or queued), without waiting for one:
    /// for sinks that join what has queued up into one write. `None` when nothing
    /// waits, before the first `recv`, or when this task must stop.
    pub(crate) fn try_recv(&mut self) -> Option<EventBatch> {
        if self.stop.is_cancelled() {
            return None;
        }
        let state = self.guard.as_mut()?;
        state
            .handed_back
            .pop_front()
            .or_else(|| state.rx.try_recv())
    }

    /// Gives a batch back, unsettled, for the task that replaces this one. Only valid
    /// after a `recv` returned it.
    pub(crate) fn hand_back(&mut self, batch: EventBatch) {
        if let Some(state) = self.guard.as_mut() {
            state.handed_back.push_back(batch);
        }
    }

    /// Resolves when this task is asked to stop (for sinks retrying a delivery).
    pub(crate) async fn stopping(&self) {
        self.stop.cancelled().await;
    }

    /// The stop signal, for loops that wait on other things besides `recv`.
    pub(crate) fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}
