//! One Forward protocol connection: TLS, the handshake, then messages one at a time:
//! read (bounded, charged to the memory budget), decode (off the runtime when large),
//! hand the events to the pipeline, and ack once they are delivered when asked to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vrl::value::{ObjectMap, Value};

use super::FluentSourceConfig;
use crate::buffer::cost::decode_allowance;
use crate::buffer::{Charge, MemoryBudget};
use crate::component::SourceOutput;
use crate::event::{BatchAck, Event, VrlMetadata};
use crate::fluent::frame::{FrameError, Limits, Scanner};
use crate::fluent::handshake::{self, HandshakeError};
use crate::fluent::message::{self, Bounds, Events, Request};
use crate::sources::util::handover::{Handed, hand_over};
use crate::telemetry::{ComponentMetrics, LabeledGauge, LatencyRecorder};

/// Reads are this large at most; the buffer grows by them.
const READ_CHUNK: usize = 64 * 1024;
/// Frames from this size on are decoded on the blocking pool.
const DECODE_OFF_RUNTIME: usize = 64 * 1024;
/// The handshake's messages are small.
const MAX_HANDSHAKE_BYTES: usize = 4096;

/// What every connection of one source shares.
pub(super) struct Shared {
    pub(super) id: Arc<str>,
    pub(super) out: Mutex<SourceOutput>,
    pub(super) metrics: Arc<ComponentMetrics>,
    pub(super) latency: Arc<LatencyRecorder>,
    pub(super) budget: Arc<MemoryBudget>,
    pub(super) config: FluentSourceConfig,
    pub(super) hostname: String,
    pub(super) open: Arc<LabeledGauge>,
}

/// Why a connection was closed by sluice.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Message(#[from] message::MessageError),
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("{0}")]
    Refused(&'static str),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("the connection ended inside a message")]
    Truncated,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no ack: {0}")]
    NoAck(&'static str),
    #[error("memory_limit stayed full")]
    Memory,
}

impl Closed {
    fn reason(&self) -> &'static str {
        match self {
            Self::Frame(_) | Self::Message(_) | Self::Truncated => "malformed",
            Self::Handshake(_) | Self::Refused(_) => "handshake",
            Self::Timeout(_) => "timeout",
            Self::Io(_) => "io",
            Self::NoAck(_) => "no_ack",
            Self::Memory => "memory_limit",
        }
    }
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
    shared.open.set(shared.open.get() + 1.0);
    let result = match tls {
        Some(acceptor) => {
            match tokio::time::timeout(shared.config.read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve(stream, peer, &shared, &stop).await,
                Ok(Err(e)) => Err(Closed::Io(e)),
                Err(_) => Err(Closed::Timeout("the TLS handshake")),
            }
        }
        None => serve(stream, peer, &shared, &stop).await,
    };
    shared.open.set(shared.open.get() - 1.0);
    if let Err(e) = result {
        let reason = e.reason();
        shared
            .metrics
            .counter(
                "sluice_fluent_connection_errors_total",
                "Forward protocol connections closed by sluice, by reason.",
                &[("reason", reason)],
            )
            .add(1);
        shared.metrics.add_errors(1);
        tracing::warn!(component_id = %shared.id, peer = %peer, reason, error = %e, "fluent connection closed");
    }
}

/// A connection's read side: the bytes of the next message and their charge.
struct Reader<'s, S> {
    stream: S,
    buf: BytesMut,
    scanner: Scanner,
    held: Held<'s>,
    read_timeout: Duration,
}

/// Memory charged to the budget for what one message holds, grown as it is read.
struct Held<'s> {
    budget: &'s Arc<MemoryBudget>,
    charges: Vec<Charge>,
    bytes: usize,
}

impl Held<'_> {
    /// Charges until `need` bytes are held (twice what is held at least, so a message
    /// read piece by piece takes few charges), waiting for room until `deadline`. Large
    /// work is capped at three quarters of the budget, keeping the rest for the small.
    async fn ensure(&mut self, need: usize, deadline: Instant) -> Result<(), Closed> {
        if self.bytes >= need {
            return Ok(());
        }
        let limit = self.budget.limit();
        let large = need > limit / 8;
        let ceiling = if large { limit / 4 * 3 } else { limit };
        let target = need.max(self.bytes * 2).min(ceiling);
        if self.bytes >= target {
            return Ok(());
        }
        let charge =
            tokio::time::timeout_at(deadline, self.budget.reserve(target - self.bytes, ceiling))
                .await
                .map_err(|_| Closed::Memory)?;
        self.bytes += charge.bytes();
        self.charges.push(charge);
        Ok(())
    }

    fn release(&mut self) {
        self.charges.clear();
        self.bytes = 0;
    }
}

impl<S: AsyncRead + Unpin> Reader<'_, S> {
    /// The next complete message, `None` when the client closed between messages or
    /// `stop` fired then. `idle` bounds the wait for a message's first byte,
    /// `read_timeout` the rest of it.
    async fn next(
        &mut self,
        idle: Duration,
        stop: &CancellationToken,
    ) -> Result<Option<BytesMut>, Closed> {
        let idle_until = Instant::now() + idle;
        let mut message_until: Option<Instant> = None;
        loop {
            if !self.buf.is_empty() {
                if let Some(n) = self.scanner.scan(&self.buf)? {
                    return Ok(Some(self.buf.split_to(n)));
                }
                message_until.get_or_insert_with(|| Instant::now() + self.read_timeout);
            }
            let until = message_until.unwrap_or(idle_until);
            self.held.ensure(self.buf.len() + READ_CHUNK, until).await?;
            self.buf.reserve(READ_CHUNK);
            let between = self.buf.is_empty();
            let read = tokio::time::timeout_at(until, self.stream.read_buf(&mut self.buf));
            let n = if between {
                // Between messages a stop ends the connection at once: the client
                // reconnects to the replacement.
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return Ok(None),
                    n = read => n,
                }
            } else {
                read.await
            };
            match n {
                Err(_) if message_until.is_none() => {
                    return Err(Closed::Timeout("waiting for a message"));
                }
                Err(_) => return Err(Closed::Timeout("reading a message")),
                Ok(Ok(0)) if self.buf.is_empty() => return Ok(None),
                Ok(Ok(0)) => return Err(Closed::Truncated),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(Closed::Io(e)),
            }
        }
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
        held: Held {
            budget: &shared.budget,
            charges: Vec::new(),
            bytes: 0,
        },
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
    loop {
        let Some(frame) = reader.next(config.idle_timeout, stop).await? else {
            return Ok(());
        };
        let request = decode(frame, &mut reader.held, config).await?;
        reader.held.release();
        let Request::Events(events) = request else {
            continue;
        };
        let chunk = events.chunk.clone();
        let handed = deliver(events, &peer_text, shared, chunk.is_some()).await;
        match (chunk, handed) {
            (None, _) => {}
            (Some(chunk), Handed::Delivered | Handed::Rejected) => {
                write.write_all(&message::ack(&chunk)).await?;
                write.flush().await?;
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
    write
        .write_all(&handshake::helo(&nonce, &auth_salt, true))
        .await?;
    write.flush().await?;
    let frame = reader
        .next(config.read_timeout, stop)
        .await?
        .ok_or(Closed::Refused("the client left before its PING"))?;
    reader.held.release();
    let ping = handshake::parse_ping(&frame)?;
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
    write.write_all(&pong).await?;
    write.flush().await?;
    match reason {
        None => Ok(()),
        Some(reason) => Err(Closed::Refused(reason)),
    }
}

/// Decodes a message, charging what its values take (off the runtime when large).
async fn decode(
    frame: BytesMut,
    held: &mut Held<'_>,
    config: &FluentSourceConfig,
) -> Result<Request, Closed> {
    // A compressed message may inflate up to the limit: it is charged as that.
    let decoded = if message::is_compressed(&frame) {
        config.max_message_bytes
    } else {
        frame.len()
    };
    let want = frame.len().saturating_add(decode_allowance(decoded));
    held.ensure(want, Instant::now() + config.read_timeout)
        .await?;
    let bounds = Bounds {
        max_depth: config.max_depth,
        max_entries: config.max_entries_per_message,
        max_decompressed: config.max_message_bytes,
        allowance: held.bytes.saturating_sub(frame.len()),
    };
    if frame.len() < DECODE_OFF_RUNTIME {
        return Ok(message::parse(&frame, &bounds)?);
    }
    tokio::task::spawn_blocking(move || message::parse(&frame, &bounds))
        .await
        .map_err(|_| Closed::Refused("decoding the message failed"))?
        .map_err(Closed::from)
}

/// Hands a message's events to the pipeline; with `wait`, until they are delivered
/// or `ack_timeout` passes.
async fn deliver(events: Events, peer: &Value, shared: &Shared, wait: bool) -> Handed {
    let n = events.entries.len();
    if n == 0 {
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
            record.insert("timestamp".into(), Value::Timestamp(time));
            let mut e = Event::new(Value::Object(record), Arc::clone(&shared.id), now);
            if wait {
                e = e.with_ack(ack.event_ack());
            }
            e.meta.vrl = meta.clone();
            e
        })
        .collect();
    drop(ack);
    let send = async {
        shared.out.lock().await.send(batch).await;
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
