//! Delivery of one component output to every component that lists it in `inputs`.
//!
//! Invariants:
//! - With one consumer the batch moves without a copy; with N consumers it is cloned
//!   N-1 times (the clones carry cloned acknowledgement obligations).
//! - With no consumer the events are settled `Delivered` and counted as discarded: an
//!   output nobody reads is a configuration choice, which validation already warned about.
//! - The consumer list is changed only through [`FanoutControl`] messages, applied
//!   between two batches, so hot reload can re-point outputs without stopping the owner.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::buffer::{BufferSender, Closed};
use crate::event::{EventBatch, EventStatus, settle_all};
use crate::telemetry::ComponentMetrics;

/// Changes to a fanout's consumers.
pub enum FanoutControl {
    /// Add or replace the consumer with this id.
    Add(String, BufferSender),
    Remove(String),
}

/// Handle used by the topology to re-point a running fanout.
pub type FanoutHandle = mpsc::UnboundedSender<FanoutControl>;

/// One output of one component.
pub struct Fanout {
    consumers: Vec<(String, BufferSender)>,
    control: mpsc::UnboundedReceiver<FanoutControl>,
    metrics: Arc<ComponentMetrics>,
}

impl Fanout {
    pub fn new(metrics: Arc<ComponentMetrics>) -> (Self, FanoutHandle) {
        let (tx, control) = mpsc::unbounded_channel();
        (
            Self {
                consumers: Vec::new(),
                control,
                metrics,
            },
            tx,
        )
    }

    /// Adds a consumer directly (while building, before the owner runs).
    pub fn add(&mut self, id: String, sender: BufferSender) {
        self.apply(FanoutControl::Add(id, sender));
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    fn apply(&mut self, msg: FanoutControl) {
        match msg {
            FanoutControl::Add(id, sender) => {
                if let Some(slot) = self.consumers.iter_mut().find(|(c, _)| *c == id) {
                    slot.1 = sender;
                } else {
                    self.consumers.push((id, sender));
                }
            }
            FanoutControl::Remove(id) => self.consumers.retain(|(c, _)| *c != id),
        }
    }

    /// Sends `batch` to every consumer, waiting for room in each (backpressure).
    pub async fn send(&mut self, batch: EventBatch) {
        while let Ok(msg) = self.control.try_recv() {
            self.apply(msg);
        }
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        match self.consumers.len() {
            0 => {
                self.metrics.add_discarded(n);
                settle_all(batch, EventStatus::Delivered);
                return;
            }
            1 => {
                let result = self.consumers[0].1.send(batch).await;
                self.on_result(0, result);
            }
            len => {
                for i in 0..len - 1 {
                    let result = self.consumers[i].1.send(batch.clone()).await;
                    self.on_result(i, result);
                }
                let result = self.consumers[len - 1].1.send(batch).await;
                self.on_result(len - 1, result);
            }
        }
        self.metrics.add_sent(n);
    }

    fn on_result(&mut self, index: usize, result: Result<(), Closed>) {
        if let Err(Closed(batch)) = result {
            // The consumer's task ended (failed, or removed by a reload that raced us).
            // Its events are lost to it: report them as errors to their sources.
            let id = &self.consumers[index].0;
            tracing::error!(
                component_id = %self.metrics.id,
                consumer = %id,
                events = batch.len(),
                "downstream component is gone; its events are reported as failed"
            );
            self.metrics.add_errors(batch.len());
            settle_all(batch, EventStatus::Errored);
        }
    }
}
