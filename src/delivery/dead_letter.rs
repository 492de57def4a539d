//! The `dead_letter` output of network sinks.
//!
//! A dead-lettered event keeps its payload and its acknowledgement (the source learns
//! the outcome of the dead-letter delivery) and gains a `dead_letter` object with
//! `error`, `status`, `attempts`, `body` (truncated) and `sink`. They are nested rather
//! than top-level so they cannot overwrite the event's own `status` (firing/resolved).

use std::sync::Arc;

use vrl::value::{ObjectMap, Value};

use crate::component::Output;
use crate::event::{Event, EventStatus, settle_all};
use crate::telemetry::ComponentMetrics;
use crate::telemetry::{ErrorType, Stage};

/// Name of the output.
pub(crate) const DEAD_LETTER: &str = "dead_letter";

/// Longest response body kept on a dead-lettered event.
pub(crate) const MAX_BODY: usize = 4096;

/// Why a batch could not be delivered.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) error: String,
    pub(crate) status: Option<u16>,
    pub(crate) attempts: u32,
    pub(crate) body: Option<String>,
}

/// How a failure whose retries ran out begins.
const GAVE_UP: &str = "gave up after";

impl Failure {
    /// Whether the events failed only because retries ran out (the endpoint was down or
    /// busy), not because they were refused: sending them again later may succeed.
    pub(crate) fn retries_ran_out(&self) -> bool {
        self.error.starts_with(GAVE_UP)
    }

    /// Retries ran out: the last attempt's reason, status and body.
    pub(crate) fn gave_up(
        attempts: u32,
        reason: &str,
        status: Option<u16>,
        body: Option<String>,
    ) -> Self {
        Self {
            error: format!("{GAVE_UP} {attempts} attempts: {reason}"),
            status,
            attempts,
            body,
        }
    }
}

/// Sends undeliverable events to the sink's `dead_letter` output.
pub(crate) struct DeadLetter {
    sink: Arc<str>,
    output: Option<Arc<Output>>,
    metrics: Arc<ComponentMetrics>,
}

impl DeadLetter {
    pub(crate) fn new(
        sink: Arc<str>,
        output: Option<Arc<Output>>,
        metrics: Arc<ComponentMetrics>,
    ) -> Self {
        Self {
            sink,
            output,
            metrics,
        }
    }

    pub(crate) async fn send(&self, mut events: Vec<Event>, failure: &Failure) {
        let n = events.len();
        self.metrics
            .add_errors(n, ErrorType::Delivery, Stage::Sending);
        // Whatever built the failure, a secret must not travel on with the events or
        // reach the log.
        let failure = &Failure {
            error: crate::redact::redact(&failure.error).into_owned(),
            body: failure
                .body
                .as_deref()
                .map(|b| crate::redact::redact(b).into_owned()),
            ..failure.clone()
        };
        let record = self.record(failure);
        for event in &mut events {
            event.insert(DEAD_LETTER, record.clone());
        }
        let unread = match &self.output {
            Some(output) => output.send_if_read(events).await.err(),
            None => Some(events),
        };
        match unread {
            None => {
                tracing::warn!(component_id = %self.sink, events = n, error = %failure.error, "events sent to the dead_letter output");
            }
            Some(events) => {
                tracing::error!(
                    component_id = %self.sink,
                    events = n,
                    error = %failure.error,
                    status = ?failure.status,
                    attempts = failure.attempts,
                    "events could not be delivered and nothing reads the dead_letter output"
                );
                self.metrics.add_discarded_unintended(n);
                // A source that answers its sender says "try again" for an endpoint that
                // was down, and "refused" only for events an endpoint refused.
                let status = if failure.retries_ran_out() {
                    EventStatus::Errored
                } else {
                    EventStatus::Rejected
                };
                settle_all(events, status);
            }
        }
    }

    fn record(&self, failure: &Failure) -> Value {
        let mut m = ObjectMap::new();
        m.insert("error".into(), failure.error.clone().into());
        m.insert(
            "status".into(),
            failure
                .status
                .map_or(Value::Null, |s| Value::from(i64::from(s))),
        );
        m.insert("attempts".into(), Value::from(i64::from(failure.attempts)));
        m.insert(
            "body".into(),
            failure
                .body
                .as_deref()
                .map_or(Value::Null, |b| Value::from(truncate(b, MAX_BODY))),
        );
        m.insert("sink".into(), Value::from(self.sink.as_ref()));
        Value::Object(m)
    }
}

fn truncate(s: &str, max: usize) -> String {
    let kept = crate::text::prefix_bytes(s, max);
    if kept.len() == s.len() {
        s.to_owned()
    } else {
        format!("{kept}…")
    }
}
