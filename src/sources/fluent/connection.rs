//! One Forward protocol connection: TLS, the handshake, then messages one at a time:
//! read (bounded, charged to the memory budget), decode (off the runtime when large),
//! hand the events to the pipeline, and ack once they are delivered when asked to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vrl::value::{ObjectMap, Value};

use super::FluentSourceConfig;
use super::closed::Closed;
use super::read::{Held, Reader, decode};
use crate::buffer::MemoryBudget;
use crate::component::SourceOutput;
use crate::event::{BatchAck, Event, SourceId, VrlMetadata};
use crate::fluent::frame::{Limits, Scanner};
use crate::fluent::handshake;
use crate::fluent::message::{self, Events, Request};
use crate::sources::util::handover::{Handed, hand_over};
use crate::telemetry::{ComponentMetrics, LabeledGauge, LatencyRecorder};
use crate::telemetry::{ErrorType, Stage};

/// The handshake's messages are small.
const MAX_HANDSHAKE_BYTES: usize = 4096;

/// What every connection of one source shares.
pub(super) struct Shared {
    pub(super) id: SourceId,
    pub(super) out: Mutex<SourceOutput>,
    pub(super) metrics: Arc<ComponentMetrics>,
    pub(super) latency: Arc<LatencyRecorder>,
    pub(super) budget: Arc<MemoryBudget>,
    /// The turn to wait for memory (see [`Held`]).
    pub(super) turn: super::read::Turn,
    pub(super) config: FluentSourceConfig,
    pub(super) hostname: String,
    pub(super) open: Arc<LabeledGauge>,
    /// Connections open now; set into `open` under the lock, so the gauge never lags.
    pub(super) connections: std::sync::Mutex<usize>,
}

impl Shared {
    fn count_connection(&self, delta: isize) {
        let mut open = self
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *open = open.saturating_add_signed(delta);
        self.open.set(*open as f64);
    }
}

/// Writes all of `bytes` unless the client stops reading for `timeout`.
async fn write_timed<W: AsyncWrite + Unpin>(
    write: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), Closed> {
    let send = async {
        write.write_all(bytes).await?;
        write.flush().await
    };
    tokio::time::timeout(timeout, send)
        .await
        .map_err(|_| Closed::WriteTimeout)?
        .map_err(Closed::Io)
}

/// Serves one accepted connection until it ends, logging why sluice closed it.
pub(super) async fn accept(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    shared.count_connection(1);
    let result = match tls {
        Some(acceptor) => {
            let handshake = async {
                plain_client(&stream).await?;
                acceptor.accept(stream).await.map_err(Closed::Tls)
            };
            match tokio::time::timeout(shared.config.read_timeout, handshake).await {
                Ok(Ok(stream)) => serve(stream, peer, &shared, &stop).await,
                Ok(Err(e)) => Err(e),
                Err(_) => Err(Closed::Timeout("the TLS handshake")),
            }
        }
        None => serve(stream, peer, &shared, &stop).await,
    };
    shared.count_connection(-1);
    if let Err(Closed::Idle) = result {
        // Closing an idle connection is routine, not an error: clients reconnect.
        tracing::debug!(component_id = %shared.id, peer = %peer, "idle fluent connection closed");
        return;
    }
    if let Err(e) = result {
        let reason = e.reason();
        shared
            .metrics
            .counter(
                "sluice_fluent_connection_errors_total",
                &[("reason", reason)],
            )
            .add(1);
        let error_type = if reason == "malformed" {
            ErrorType::Parse
        } else {
            ErrorType::Request
        };
        shared.metrics.add_errors(1, error_type, Stage::Receiving);
        tracing::warn!(component_id = %shared.id, peer = %peer, reason, error = %e, "fluent connection closed");
    }
}

/// Refuses a client that sends plain Forward protocol to a TLS listener, with a reason
/// it can act on: a TLS client's first byte starts a handshake record (0x16).
async fn plain_client(stream: &tokio::net::TcpStream) -> Result<(), Closed> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) => Err(Closed::Truncated),
        Ok(_) if first[0] != 0x16 => Err(Closed::PlainToTls),
        Ok(_) => Ok(()),
        Err(e) => Err(Closed::Io(e)),
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    shared: &Shared,
    stop: &CancellationToken,
) -> Result<(), Closed> {
    let config = &shared.config;
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = Reader {
        stream: read,
        buf: BytesMut::new(),
        scanner: Scanner::new(Limits {
            max_bytes: MAX_HANDSHAKE_BYTES,
            max_depth: 4,
        }),
        held: Held::new(&shared.budget, &shared.turn),
        read_timeout: config.read_timeout,
    };
    if let Some(key) = &config.shared_key {
        handshake(&mut reader, &mut write, shared, key, stop).await?;
    }
    reader.scanner = Scanner::new(Limits {
        max_bytes: config.max_message_bytes,
        max_depth: config.max_depth,
    });
    let peer_text = Value::from(peer.to_string());
    // Heartbeats do not count as activity: a client sending only heartbeats would
    // otherwise hold its connection slot for ever.
    let mut idle_until = tokio::time::Instant::now() + config.idle_timeout;
    loop {
        let idle = idle_until.saturating_duration_since(tokio::time::Instant::now());
        let Some(frame) = reader.next(idle, stop).await? else {
            return Ok(());
        };
        shared.metrics.add_received_bytes(frame.len());
        let request = decode(frame, &mut reader.held, config).await?;
        let Request::Events(events) = request else {
            reader.held.release();
            continue;
        };
        idle_until = tokio::time::Instant::now() + config.idle_timeout;
        let chunk = events.chunk.clone();
        // The charge is held until the events are in the pipeline.
        let handed = deliver(
            events,
            &peer_text,
            shared,
            chunk.is_some(),
            &mut reader.held,
        )
        .await;
        match (chunk, handed) {
            (None, _) => {}
            (Some(chunk), Handed::Delivered | Handed::Rejected) => {
                write_timed(&mut write, &message::ack(&chunk), config.read_timeout).await?;
            }
            (Some(_), Handed::Pending) => {
                return Err(Closed::NoAck("delivery outlasted ack_timeout"));
            }
            (Some(_), Handed::Failed) => return Err(Closed::NoAck("a sink failed the events")),
            (Some(_), Handed::Full | Handed::Stopped) => {
                return Err(Closed::NoAck("the pipeline stayed full"));
            }
        }
        if stop.is_cancelled() {
            return Ok(());
        }
    }
}

/// The server's side of the handshake: `HELO`, the client's `PING`, then `PONG`.
async fn handshake<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut Reader<'_, R>,
    write: &mut W,
    shared: &Shared,
    key: &str,
    stop: &CancellationToken,
) -> Result<(), Closed> {
    let config = &shared.config;
    let nonce = handshake::random16();
    let auth_salt = if config.users.is_empty() {
        Vec::new()
    } else {
        handshake::random16().to_vec()
    };
    let helo = handshake::helo(&nonce, &auth_salt, true);
    write_timed(write, &helo, config.read_timeout).await?;
    let frame = reader
        .next(config.read_timeout, stop)
        .await
        .map_err(|e| Closed::HandshakeRead(Box::new(e)))?
        .ok_or(Closed::Refused("the client left before its PING"))?;
    reader.held.release();
    let ping = match handshake::parse_ping(&frame) {
        Ok(ping) => ping,
        Err(e) => {
            // As fluentd does: the client learns why before the connection closes.
            let refusal = handshake::refusal("invalid ping message");
            let _ = write_timed(write, &refusal, config.read_timeout).await;
            return Err(e.into());
        }
    };
    let key_ok = ping.proves(&nonce, key);
    // Every user is checked, so the time taken does not tell which names exist.
    let user_ok = config.users.is_empty()
        || config.users.iter().fold(false, |ok, u| {
            ok | ping.logs_in(&auth_salt, &u.username, &u.password)
        });
    let reason = match (key_ok, user_ok) {
        (true, true) => None,
        (false, _) => Some("shared_key mismatch"),
        (true, false) => Some("username/password mismatch"),
    };
    let pong = handshake::pong(
        reason.is_none(),
        reason.unwrap_or(""),
        &shared.hostname,
        &ping,
        &nonce,
        key,
    );
    write_timed(write, &pong, config.read_timeout).await?;
    match reason {
        None => Ok(()),
        Some(reason) => Err(Closed::Refused(reason)),
    }
}

/// Hands a message's events to the pipeline; with `wait`, until they are delivered
/// or `ack_timeout` passes.
async fn deliver(
    events: Events,
    peer: &Value,
    shared: &Shared,
    wait: bool,
    held: &mut Held<'_>,
) -> Handed {
    let n = events.entries.len();
    if n == 0 {
        held.release();
        return Handed::Delivered;
    }
    let tag = Value::from(events.tag);
    let mut fluent = ObjectMap::new();
    fluent.insert("tag".into(), tag.clone());
    fluent.insert("peer".into(), peer.clone());
    let mut meta = ObjectMap::new();
    meta.insert("fluent".into(), Value::Object(fluent));
    let meta = VrlMetadata::shared(Value::Object(meta));
    let now = chrono::Utc::now();
    let (ack, done) = BatchAck::with_receiver(n, Some(Arc::clone(&shared.latency)));
    let batch: Vec<Event> = events
        .entries
        .into_iter()
        .map(|(time, mut record)| {
            record.insert("tag".into(), tag.clone());
            record.insert("timestamp".into(), Value::Timestamp(time.unwrap_or(now)));
            let mut e = Event::new(Value::Object(record), shared.id, now);
            if wait {
                e = e.with_ack(ack.event_ack());
            }
            e.meta.vrl = meta.clone();
            e
        })
        .collect();
    drop(ack);
    // While it waits for the lock the message holds what its events take, not the
    // allowance decoding had: others may decode with the rest.
    held.shrink_to(crate::buffer::budget::batch_size(&batch));
    let send = async {
        let mut out = shared.out.lock().await;
        // Sending waits for room in the budget: a message must not wait on its own
        // charge. One connection at a time holds the lock, so at most one message's
        // events wait uncharged.
        held.release();
        out.send(batch).await;
        true
    };
    if !wait {
        // No ack asked: TCP backpressure is the only answer.
        send.await;
        shared.metrics.add_received(n);
        return Handed::Delivered;
    }
    let deadline = Instant::now() + shared.config.ack_timeout;
    hand_over(send, done, n, deadline, &shared.metrics).await
}
