//! Handing a request's events to the pipeline and waiting for their delivery: what the
//! sources that answer a sender (webhooks, the API) share.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use vrl::value::Value;

use crate::component::SourceOutput;
use crate::event::{BatchAck, BatchReceiver, Event, EventStatus, SourceId};
use crate::telemetry::{ComponentMetrics, LatencyRecorder};

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

/// A request-answering source's way into the pipeline: events go in with one
/// acknowledgement, and the request waits for their delivery until `request_timeout`.
pub(crate) struct Intake {
    pub(crate) id: SourceId,
    out: tokio::sync::Mutex<Option<SourceOutput>>,
    pub(crate) metrics: Arc<ComponentMetrics>,
    latency: Arc<LatencyRecorder>,
    request_timeout: Duration,
}

impl Intake {
    pub(crate) fn new(
        id: SourceId,
        out: SourceOutput,
        metrics: Arc<ComponentMetrics>,
        latency: Arc<LatencyRecorder>,
        request_timeout: Duration,
    ) -> Self {
        Self {
            id,
            out: tokio::sync::Mutex::new(Some(out)),
            metrics,
            latency,
            request_timeout,
        }
    }

    /// Sends `values` into the pipeline and waits for their delivery.
    pub(crate) async fn take(&self, values: Vec<Value>) -> Handed {
        let n = values.len();
        if n == 0 {
            return Handed::Delivered;
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let (ack, done) = BatchAck::with_receiver(n, Some(Arc::clone(&self.latency)));
        let now = chrono::Utc::now();
        let batch: Vec<Event> = values
            .into_iter()
            .map(|v| Event::new(v, self.id, now).with_ack(ack.event_ack()))
            .collect();
        drop(ack);
        let send = async {
            let mut out = self.out.lock().await;
            match out.as_mut() {
                Some(out) => {
                    out.send(batch).await;
                    true
                }
                None => false,
            }
        };
        hand_over(send, done, n, deadline, &self.metrics).await
    }

    /// Sends `values` to the named output at `output` (see
    /// [`SourceOutput::send_to`]) and waits for their delivery, telling how many of
    /// them a sink refused for good (for protocols that report partial success).
    /// A `stop` that fires while the events are on their way ends the wait (`Pending`).
    pub(crate) async fn take_counted(
        &self,
        output: usize,
        values: Vec<Value>,
        stop: &tokio_util::sync::CancellationToken,
    ) -> (Handed, u64) {
        let n = values.len();
        if n == 0 {
            return (Handed::Delivered, 0);
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let now = chrono::Utc::now();
        // One acknowledgement per event, so each outcome is known on its own.
        let mut receivers = Vec::with_capacity(n);
        let batch: Vec<Event> = values
            .into_iter()
            .map(|v| {
                let (ack, done) = BatchAck::with_receiver(1, Some(Arc::clone(&self.latency)));
                receivers.push(done);
                Event::new(v, self.id, now).with_ack(ack.event_ack())
            })
            .collect();
        let send = async {
            let mut out = self.out.lock().await;
            match out.as_mut() {
                Some(out) => {
                    out.send_to(output, batch).await;
                    true
                }
                None => false,
            }
        };
        match tokio::time::timeout_at(deadline, send).await {
            Err(_) => return (Handed::Full, 0),
            Ok(false) => return (Handed::Stopped, 0),
            Ok(true) => {}
        }
        self.metrics.add_received(n);
        let all = futures_util::future::join_all(receivers.into_iter().map(BatchReceiver::wait));
        let waited = tokio::select! {
            waited = tokio::time::timeout_at(deadline, all) => waited,
            () = stop.cancelled() => return (Handed::Pending, 0),
        };
        match waited {
            Ok(statuses) => {
                let rejected = statuses
                    .iter()
                    .filter(|s| **s == EventStatus::Rejected)
                    .count() as u64;
                let handed = match statuses.into_iter().max() {
                    Some(EventStatus::Errored) => Handed::Failed,
                    Some(EventStatus::Rejected) => Handed::Rejected,
                    _ => Handed::Delivered,
                };
                (handed, rejected)
            }
            Err(_) => (Handed::Pending, 0),
        }
    }

    /// Stops taking: requests still sending finish first, later ones are told the
    /// source stopped.
    pub(crate) async fn close(&self) {
        self.out.lock().await.take();
    }
}
