//! Handing a request's events to the pipeline and waiting for their delivery: what the
//! sources that answer a sender (webhooks, the API) share.

use std::future::Future;

use crate::event::{BatchReceiver, EventStatus};
use crate::telemetry::ComponentMetrics;

/// What became of events handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handed {
    /// Delivered by every sink.
    Delivered,
    /// In the pipeline; their delivery outlasted the deadline.
    Pending,
    /// No room in the pipeline before the deadline: nothing entered it.
    Full,
    /// The source is stopping: nothing entered the pipeline.
    Stopped,
    /// A sink failed them (they may be sent again).
    Failed,
    /// A sink refused them for good.
    Rejected,
}

/// Runs `send` (which hands `n` events to the pipeline; false: the source is
/// stopping), then waits for their delivery, both until `deadline`.
pub(crate) async fn hand_over(
    send: impl Future<Output = bool>,
    done: BatchReceiver,
    n: usize,
    deadline: tokio::time::Instant,
    metrics: &ComponentMetrics,
) -> Handed {
    match tokio::time::timeout_at(deadline, send).await {
        Err(_) => return Handed::Full,
        Ok(false) => return Handed::Stopped,
        Ok(true) => {}
    }
    metrics.add_received(n);
    match tokio::time::timeout_at(deadline, done.wait()).await {
        Ok(EventStatus::Delivered) => Handed::Delivered,
        Ok(EventStatus::Errored) => Handed::Failed,
        Ok(EventStatus::Rejected) => Handed::Rejected,
        // Every event is in the pipeline, which retries and dead-letters on its own:
        // a sender that retried now would duplicate them.
        Err(_) => Handed::Pending,
    }
}
