//! One output of one component, delivered to every component that reads it.
//!
//! The consumer list sits behind an `ArcSwap`: a reload rewires an output with one
//! atomic store, without the cooperation of the task that sends on it (which may be
//! blocked on backpressure at that moment), and the old and the new task of a replaced
//! component can share the same output while one hands over to the other.
//!
//! Invariants:
//! - With one consumer a batch moves without a copy; with N consumers it is cloned N-1
//!   times (each clone carries cloned acknowledgement obligations).
//! - With no consumer the events are settled `Delivered` and counted as discarded: an
//!   output nobody reads is a configuration choice that validation warned about.
//! - A batch that reached its consumers is timed once (the age of its first event once
//!   the last consumer took it, so time blocked on backpressure counts), into the
//!   component's latency histogram: one clock read per batch, none per event.
//! - An output holds the only strong senders of its consumers' buffers. Clearing it when
//!   its component ends for good is what lets downstream buffers close and drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use crate::buffer::{BufferSender, Closed};
use crate::event::{EventBatch, EventStatus, settle_all};
use crate::telemetry::ComponentMetrics;
use crate::telemetry::tap::TapRegistry;
use crate::telemetry::{ErrorType, Stage};

/// A consumer of an output: its id and a sender into its input buffer.
#[derive(Clone)]
pub(crate) struct Consumer {
    pub(crate) id: Arc<str>,
    pub(crate) sender: BufferSender,
}

/// See the module docs.
pub(crate) struct Output {
    consumers: ArcSwap<Vec<Consumer>>,
    metrics: Arc<ComponentMetrics>,
    /// Events passed on through this output (the `output` label).
    sent: Arc<AtomicU64>,
    /// The output's name (`None`: default), for taps.
    name: Option<String>,
    taps: Arc<TapRegistry>,
    /// Set by [`Output::close`]; a closed output stays empty.
    closed: AtomicBool,
    /// How many consumers the pipeline declares; more than are wired means some could
    /// not be reached, and unreachable is not the same as unread.
    expected: AtomicUsize,
}

impl Output {
    pub(crate) fn new(
        metrics: Arc<ComponentMetrics>,
        name: Option<String>,
        taps: Arc<TapRegistry>,
    ) -> Arc<Self> {
        Arc::new(Self {
            consumers: ArcSwap::from_pointee(Vec::new()),
            sent: metrics.output_counter(name.as_deref()),
            metrics,
            name,
            taps,
            closed: AtomicBool::new(false),
            expected: AtomicUsize::new(0),
        })
    }

    /// Replaces the consumer list, unless the output is closed. `expected` is how many
    /// consumers the pipeline declares (some may be unreachable).
    pub(crate) fn set_consumers(&self, consumers: Vec<Consumer>, expected: usize) {
        self.expected.store(expected, Ordering::Release);
        if !self.is_closed() {
            self.consumers.store(Arc::new(consumers));
            // A close that raced with this store must still win.
            if self.is_closed() {
                self.consumers.store(Arc::new(Vec::new()));
            }
        }
    }

    /// Drops every consumer for good: the component that sent here ended, and the
    /// buffers it fed must be able to close. A new task gets a new output.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.consumers.store(Arc::new(Vec::new()));
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Opens a closed output again for a new task of the same component (the caller
    /// rewires it before the task runs).
    pub(crate) fn reopen(&self) {
        self.closed.store(false, Ordering::Release);
    }

    /// Sends `batch` if anything reads this output; otherwise gives it back, so the
    /// caller decides (the dead letter settles it `Rejected` rather than `Delivered`).
    pub(crate) async fn send_if_read(&self, batch: EventBatch) -> Result<(), EventBatch> {
        if self.consumers.load().is_empty() {
            return Err(batch);
        }
        self.send(batch).await;
        Ok(())
    }

    /// Sends `batch` to every consumer, waiting for room in each (backpressure).
    pub(crate) async fn send(&self, batch: EventBatch) {
        let Some(received_at) = batch.first().map(|e| e.meta.received_at) else {
            return;
        };
        let n = batch.len();
        self.taps
            .offer(&self.metrics.id, self.name.as_deref(), &batch);
        let consumers = self.consumers.load_full();
        match consumers.as_slice() {
            [] if self.is_closed() || self.expected.load(Ordering::Acquire) > 0 => {
                // A task that outlived its own end, or consumers that exist but could
                // not be wired: never lose the events silently.
                tracing::error!(component_id = %self.metrics.id, events = n, "no reachable consumer; events reported as failed");
                self.metrics
                    .add_errors(n, ErrorType::Delivery, Stage::Sending);
                settle_all(batch, EventStatus::Errored);
                return;
            }
            [] => {
                self.metrics.add_discarded(n);
                settle_all(batch, EventStatus::Delivered);
                return;
            }
            [only] => self.check(only, only.sender.send(batch).await),
            [rest @ .., last] => {
                for c in rest {
                    self.check(c, c.sender.send(batch.clone()).await);
                }
                self.check(last, last.sender.send(batch).await);
            }
        }
        self.metrics.add_sent(n);
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        self.metrics.latency().record_age(received_at, n as u64);
    }

    fn check(&self, consumer: &Consumer, result: Result<(), Closed>) {
        if let Err(Closed(batch)) = result {
            // The consumer's buffer is gone (its component failed and nothing reads it).
            // Its copy is lost to it: report it to the sources as failed.
            tracing::error!(
                component_id = %self.metrics.id,
                consumer = %consumer.id,
                events = batch.len(),
                "downstream component is gone; its events are reported as failed"
            );
            self.metrics
                .add_errors(batch.len(), ErrorType::Delivery, Stage::Sending);
            settle_all(batch, EventStatus::Errored);
        }
    }
}
