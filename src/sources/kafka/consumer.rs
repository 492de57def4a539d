//! The consumer thread: polls librdkafka, sends batches downstream, stores offsets.
//!
//! librdkafka calls the rebalance callbacks from inside `poll`, so polling runs on a
//! thread of its own: a revocation may then block (up to `drain_timeout`) until the
//! revoked partitions' events are settled, without stalling the async runtime that
//! settles them. Who may do what:
//! - Only this thread polls, seeks, pauses and resumes.
//! - The settlement tasks (on the runtime) update the [`OffsetTracker`] and store the
//!   new commit point with librdkafka under the tracker's lock, so stores never go
//!   backwards; librdkafka commits stored offsets every `commit_interval`, and this
//!   thread commits synchronously on revocation and at shutdown.
//! - Backpressure: the thread waits briefly for room downstream; when the downstream
//!   stays full the assigned partitions are paused (polling goes on, so the group
//!   membership and callbacks stay alive) and resumed once a batch goes through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use tokio::sync::mpsc;
use vrl::value::{KeyString, ObjectMap, Value};

use super::KafkaDecoding;
use super::offsets::{OffsetTracker, PartitionKey, Settled, Ticket};
use crate::event::{BatchAck, BatchReceiver, Event, EventBatch, SourceId, VrlMetadata};
use crate::kafka::LoggingContext;
use crate::telemetry::{ComponentMetrics, LabeledCounter, LatencyRecorder};
use crate::telemetry::{ErrorType, Stage};

/// How long one poll waits when there is nothing to send.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How long a full downstream may hold a batch before the partitions are paused (the
/// consumer must still be polled now and then, for rebalances).
const BLOCKED_WAIT: Duration = Duration::from_millis(100);

/// State shared by the consumer thread, librdkafka's callbacks and settlement tasks.
pub(crate) struct Shared {
    tracker: Mutex<OffsetTracker>,
    settled: Condvar,
    pub(crate) stop: AtomicBool,
    pub(crate) drain_timeout: Duration,
    pub(crate) retry_backoff: Duration,
    pub(crate) id: SourceId,
    pub(crate) metrics: Arc<ComponentMetrics>,
    pub(crate) commits_failed: Arc<LabeledCounter>,
    pub(crate) rewinds: Arc<LabeledCounter>,
}

impl Shared {
    pub(crate) fn new(
        id: SourceId,
        metrics: Arc<ComponentMetrics>,
        drain_timeout: Duration,
        retry_backoff: Duration,
    ) -> Self {
        let commits_failed = metrics.counter("sluice_kafka_commit_errors_total", &[]);
        let rewinds = metrics.counter("sluice_kafka_rewinds_total", &[]);
        Self {
            tracker: Mutex::new(OffsetTracker::default()),
            settled: Condvar::new(),
            stop: AtomicBool::new(false),
            drain_timeout,
            retry_backoff,
            id,
            metrics,
            commits_failed,
            rewinds,
        }
    }

    fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        // The tracker holds no invariant a panicking holder could break halfway that
        // matters more than continuing to commit; take it back.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until nothing is in flight on `keys` (every partition when `None`), at most
    /// `drain_timeout`. Returns how many ranges were abandoned.
    fn drain(&self, keys: Option<&[PartitionKey]>) -> usize {
        let deadline = Instant::now() + self.drain_timeout;
        let mut tracker = self.tracker();
        loop {
            let in_flight = match keys {
                Some(keys) => keys.iter().map(|k| tracker.in_flight(k)).sum(),
                None => tracker.total_in_flight(),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if in_flight == 0 || left.is_zero() {
                return in_flight;
            }
            tracker = self
                .settled
                .wait_timeout(tracker, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

/// librdkafka's callbacks for the source.
pub(crate) struct SourceContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) logs: LoggingContext,
}

impl ClientContext for SourceContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.logs.log(level, facility, message);
    }

    fn generate_oauth_token(
        &self,
        config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.logs.generate_oauth_token(config)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.logs.error(error, reason);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(partitions) = rebalance else {
            return;
        };
        let keys = keys_of(partitions);
        let abandoned = self.shared.drain(Some(&keys));
        if abandoned > 0 {
            tracing::warn!(
                component_id = &*self.shared.id,
                abandoned,
                "partitions revoked before their events settled; their offsets stay at the first unsettled one"
            );
        }
        commit(consumer, &self.shared);
        let mut tracker = self.shared.tracker();
        for key in &keys {
            tracker.revoke(key);
        }
        tracing::info!(
            component_id = &*self.shared.id,
            partitions = keys.len(),
            "partitions revoked"
        );
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let keys = keys_of(partitions);
                let mut tracker = self.shared.tracker();
                for key in &keys {
                    tracker.assign(key.clone());
                }
                tracing::info!(
                    component_id = &*self.shared.id,
                    partitions = keys.len(),
                    "partitions assigned"
                );
            }
            Rebalance::Error(e) => {
                tracing::warn!(component_id = &*self.shared.id, error = %e, "rebalance failed");
            }
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result
            && !is_no_offset(&e)
        {
            self.shared.commits_failed.add(1);
            tracing::warn!(component_id = &*self.shared.id, error = %e, "offset commit failed");
        }
    }
}

fn is_no_offset(e: &KafkaError) -> bool {
    matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))
}

fn commit(consumer: &BaseConsumer<SourceContext>, shared: &Shared) {
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
        && !is_no_offset(&e)
    {
        shared.commits_failed.add(1);
        tracing::warn!(component_id = &*shared.id, error = %e, "offset commit failed");
    }
}

fn keys_of(partitions: &TopicPartitionList) -> Vec<PartitionKey> {
    partitions
        .elements()
        .iter()
        .map(|e| (Arc::from(e.topic()), e.partition()))
        .collect()
}

/// One message read and decoded, not yet sent.
struct Polled {
    key: PartitionKey,
    epoch: u64,
    offset: i64,
    values: Vec<Value>,
    meta: Value,
}

/// What the thread needs besides the consumer.
pub(crate) struct Settings {
    pub(crate) decoding: KafkaDecoding,
    pub(crate) batch_size: usize,
    pub(crate) latency: Arc<LatencyRecorder>,
    pub(crate) runtime: tokio::runtime::Handle,
}

/// Runs until `shared.stop` is set or the downstream channel closes, then waits for
/// what is in flight (at most `drain_timeout`) and commits.
pub(crate) fn run(
    consumer: Arc<BaseConsumer<SourceContext>>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<EventBatch>,
    settings: Settings,
) {
    let weak = Arc::downgrade(&consumer);
    let mut pending: Vec<Polled> = Vec::new();
    let mut paused: Option<TopicPartitionList> = None;
    while !shared.stop.load(Ordering::Acquire) {
        seek_due_rewinds(&consumer, &shared);
        // While paused, polling only serves librdkafka's callbacks; the wait for room
        // downstream below paces the loop.
        let mut timeout = if pending.is_empty() {
            IDLE_POLL
        } else {
            Duration::ZERO
        };
        while pending.len() < settings.batch_size {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(message)) => {
                    if let Some(polled) = decode(&message, &shared, settings.decoding) {
                        pending.push(polled);
                    }
                }
                Some(Err(e)) => {
                    shared
                        .metrics
                        .add_errors(1, ErrorType::Reader, Stage::Receiving);
                    tracing::warn!(component_id = &*shared.id, error = %e, "kafka consume error");
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        if pending.is_empty() {
            continue;
        }
        // Wait a little for room downstream before pausing: pausing makes librdkafka
        // drop what it prefetched and fetch it again on resume, so it is for real
        // stalls, not for the moment a batch takes to move on.
        let permit = settings
            .runtime
            .block_on(async { tokio::time::timeout(BLOCKED_WAIT, tx.reserve()).await });
        match permit {
            Ok(Ok(permit)) => {
                let batch = start(&mut pending, &shared, &weak, &settings);
                if !batch.is_empty() {
                    permit.send(batch);
                }
                if let Some(partitions) = paused.take()
                    && let Err(e) = consumer.resume(&partitions)
                {
                    tracing::warn!(component_id = &*shared.id, error = %e, "resuming partitions failed");
                }
            }
            Ok(Err(_closed)) => break,
            Err(_elapsed) => {
                if paused.is_none() {
                    match consumer.assignment() {
                        Ok(partitions) => {
                            if let Err(e) = consumer.pause(&partitions) {
                                tracing::warn!(component_id = &*shared.id, error = %e, "pausing partitions failed");
                            }
                            tracing::debug!(
                                component_id = &*shared.id,
                                "downstream is full; partitions paused"
                            );
                            paused = Some(partitions);
                        }
                        Err(e) => {
                            tracing::warn!(component_id = &*shared.id, error = %e, "reading the assignment failed")
                        }
                    }
                }
            }
        }
    }
    // What was read but never sent is not committed: the next owner reads it again.
    drop(tx);
    let abandoned = shared.drain(None);
    if abandoned > 0 {
        tracing::warn!(
            component_id = &*shared.id,
            abandoned,
            "stopped before every event settled; offsets stay at the first unsettled one"
        );
    }
    commit(&consumer, &shared);
}

fn seek_due_rewinds(consumer: &BaseConsumer<SourceContext>, shared: &Shared) {
    let due = shared.tracker().due_rewinds(Instant::now());
    for (key, offset) in due {
        match consumer.seek(
            &key.0,
            key.1,
            Offset::Offset(offset),
            Duration::from_secs(5),
        ) {
            Ok(()) => {
                shared.rewinds.add(1);
                tracing::warn!(
                    component_id = &*shared.id,
                    topic = &*key.0,
                    partition = key.1,
                    offset,
                    "reading again from an offset whose events errored downstream"
                );
                shared.tracker().rewound(&key);
            }
            Err(e) => {
                tracing::warn!(component_id = &*shared.id, error = %e, "seek failed; retrying");
            }
        }
    }
}

/// Turns the pending messages into one batch: one acknowledgement per partition, each
/// registered with the tracker before it leaves.
fn start(
    pending: &mut Vec<Polled>,
    shared: &Arc<Shared>,
    consumer: &Weak<BaseConsumer<SourceContext>>,
    settings: &Settings,
) -> EventBatch {
    struct Group {
        key: PartitionKey,
        epoch: u64,
        first: i64,
        last: i64,
        values: Vec<(Value, VrlMetadata)>,
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut stale = 0usize;
    {
        let tracker = shared.tracker();
        for p in pending.drain(..) {
            if tracker.accepts(&p.key) != Some(p.epoch) {
                // Read before a rebalance or a rewind: the partition is read again from
                // its commit point by whoever owns it now.
                stale += 1;
                continue;
            }
            let group = match groups.iter_mut().position(|g| g.key == p.key) {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(Group {
                        key: p.key.clone(),
                        epoch: p.epoch,
                        first: p.offset,
                        last: p.offset,
                        values: Vec::new(),
                    });
                    let last = groups.len() - 1;
                    &mut groups[last]
                }
            };
            group.last = p.offset;
            // An NDJSON message gives several events; each carries the message's `%kafka`.
            let meta = VrlMetadata::shared(p.meta);
            group
                .values
                .extend(p.values.into_iter().map(|v| (v, meta.clone())));
        }
    }
    if stale > 0 {
        tracing::debug!(
            component_id = &*shared.id,
            stale,
            "dropped messages read before a rebalance or rewind"
        );
    }
    let now = Utc::now();
    let mut batch = Vec::new();
    for group in groups {
        let ticket = shared
            .tracker()
            .register(group.key, group.epoch, group.first, group.last);
        let Some(ticket) = ticket else { continue };
        let (ack, outcome) =
            BatchAck::with_receiver(group.values.len(), Some(Arc::clone(&settings.latency)));
        shared.metrics.add_received(group.values.len());
        for (value, meta) in group.values {
            let mut event = Event::new(value, shared.id, now).with_ack(ack.event_ack());
            event.meta.vrl = meta;
            batch.push(event);
        }
        drop(ack);
        settings.runtime.spawn(settle(
            Arc::clone(shared),
            Weak::clone(consumer),
            ticket,
            outcome,
        ));
    }
    batch
}

/// Waits for a range's outcome and moves its partition's commit point.
async fn settle(
    shared: Arc<Shared>,
    consumer: Weak<BaseConsumer<SourceContext>>,
    ticket: Ticket,
    outcome: BatchReceiver,
) {
    let status = outcome.wait().await;
    {
        let mut tracker = shared.tracker();
        match tracker.settle(&ticket, status, Instant::now() + shared.retry_backoff) {
            Settled::Advanced(next) => {
                // Stored under the lock so that two settlements never store out of order.
                if let Some(consumer) = consumer.upgrade() {
                    store(&consumer, &ticket.key, next, &shared);
                }
            }
            Settled::Rewind(offset) => {
                tracing::warn!(
                    component_id = &*shared.id,
                    topic = &*ticket.key.0,
                    partition = ticket.key.1,
                    offset,
                    "events errored downstream; the partition will be read again"
                );
            }
            Settled::Held | Settled::Stale => {}
        }
    }
    shared.settled.notify_all();
}

fn store(consumer: &BaseConsumer<SourceContext>, key: &PartitionKey, next: i64, shared: &Shared) {
    let mut list = TopicPartitionList::new();
    let stored = list
        .add_partition_offset(&key.0, key.1, Offset::Offset(next))
        .and_then(|()| consumer.store_offsets(&list));
    if let Err(e) = stored {
        // A partition revoked in the meantime refuses the store: that is the point.
        tracing::debug!(component_id = &*shared.id, error = %e, "offset not stored");
    }
}

fn decode(
    message: &BorrowedMessage<'_>,
    shared: &Shared,
    decoding: KafkaDecoding,
) -> Option<Polled> {
    let key: PartitionKey = (Arc::from(message.topic()), message.partition());
    let epoch = shared.tracker().accepts(&key)?;
    let payload = message.payload().unwrap_or_default();
    shared.metrics.add_received_bytes(payload.len());
    let mut values = Vec::new();
    let mut invalid = 0usize;
    match decoding {
        KafkaDecoding::Text => {
            values.push(Value::from(String::from_utf8_lossy(payload).into_owned()));
        }
        KafkaDecoding::Json => {
            if !payload.is_empty() {
                values.push(json_or_text(payload, &mut invalid));
            }
        }
        KafkaDecoding::Ndjson => {
            for line in payload.split(|b| *b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if !line.iter().all(u8::is_ascii_whitespace) {
                    values.push(json_or_text(line, &mut invalid));
                }
            }
        }
    }
    if invalid > 0 {
        shared
            .metrics
            .add_errors(invalid, ErrorType::Parse, Stage::Receiving);
        tracing::warn!(
            component_id = &*shared.id,
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            invalid,
            "invalid JSON kept as message"
        );
    }
    Some(Polled {
        key,
        epoch,
        offset: message.offset(),
        values,
        meta: metadata(message),
    })
}

fn json_or_text(bytes: &[u8], invalid: &mut usize) -> Value {
    crate::event::json_or_text(bytes).unwrap_or_else(|text| {
        *invalid += 1;
        text
    })
}

/// `%kafka`: where the message came from, for VRL.
fn metadata(message: &BorrowedMessage<'_>) -> Value {
    let mut kafka = ObjectMap::new();
    kafka.insert("topic".into(), Value::from(message.topic()));
    kafka.insert(
        "partition".into(),
        Value::from(i64::from(message.partition())),
    );
    kafka.insert("offset".into(), Value::from(message.offset()));
    kafka.insert(
        "key".into(),
        message
            .key()
            .map_or(Value::Null, |k| Value::Bytes(Bytes::copy_from_slice(k))),
    );
    let mut headers = ObjectMap::new();
    if let Some(hs) = message.headers() {
        for h in hs.iter() {
            headers.insert(
                KeyString::from(h.key),
                h.value
                    .map_or(Value::Null, |v| Value::Bytes(Bytes::copy_from_slice(v))),
            );
        }
    }
    kafka.insert("headers".into(), Value::Object(headers));
    let timestamp = message
        .timestamp()
        .to_millis()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .map_or(Value::Null, Value::Timestamp);
    kafka.insert("timestamp".into(), timestamp);
    let mut meta = ObjectMap::new();
    meta.insert("kafka".into(), Value::Object(kafka));
    Value::Object(meta)
}
