//! Reading syslog messages: TCP (and TLS) connections through the frame decoder, UDP
//! datagrams one message each; both hand batches to the pipeline, waiting while it is
//! full.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use vrl::value::Value;

use super::frame::Decoder;
use super::{MAX_DATAGRAM, SyslogSourceConfig};
use crate::component::{ComponentError, SourceContext, SourceOutput};
use crate::event::{BatchAck, Event, SourceId};
use crate::telemetry::{ComponentMetrics, ErrorType, LatencyRecorder, Stage};

/// Most events handed over at once.
const MAX_BATCH: usize = 1000;
/// Once the source stops, a connection is read until its sender pauses this long…
const DRAIN_PAUSE: Duration = Duration::from_millis(100);
/// …or for this long at most.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// What every TCP connection of one source shares.
pub(super) struct Shared {
    pub(super) id: SourceId,
    pub(super) metrics: Arc<ComponentMetrics>,
    pub(super) latency: Arc<LatencyRecorder>,
    pub(super) out: Mutex<SourceOutput>,
    pub(super) config: SyslogSourceConfig,
}

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

async fn send(
    values: &mut Vec<Value>,
    id: SourceId,
    latency: &Arc<LatencyRecorder>,
    metrics: &ComponentMetrics,
    out: &mut SourceOutput,
) {
    if values.is_empty() {
        return;
    }
    let now = Utc::now();
    let ack = BatchAck::fire_and_forget(values.len(), Some(Arc::clone(latency)));
    let batch: Vec<Event> = values
        .drain(..)
        .map(|v| Event::new(v, id, now).with_ack(ack.event_ack()))
        .collect();
    metrics.add_received(batch.len());
    out.send(batch).await;
}

/// Serves one accepted TCP connection (after its TLS handshake) until it ends.
pub(super) async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let outcome = match tls {
        None => read_stream(stream, peer, &shared, &stop).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(shared.config.handshake_timeout, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(stream)) => read_stream(stream, peer, &shared, &stop).await,
                Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
                Err(_) => Err("TLS handshake timed out".into()),
            }
        }
    };
    if let Err(reason) = outcome {
        shared
            .metrics
            .add_errors(1, ErrorType::Reader, Stage::Receiving);
        tracing::warn!(component_id = %shared.id, peer = %peer, reason = %reason, "syslog connection closed");
    }
}

async fn read_stream<S: AsyncRead + Unpin>(
    mut io: S,
    peer: SocketAddr,
    shared: &Shared,
    stop: &CancellationToken,
) -> Result<(), String> {
    let peer_ip = peer.ip().to_string();
    let mut decoder = Decoder::new(shared.config.max_length);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut values = Vec::new();
    let mut drain_until = None;
    loop {
        loop {
            match decoder.next(&mut buf) {
                Ok(Some(m)) => {
                    let message = text(&m);
                    // Only whitespace is no message (UDP ignores it too).
                    if !message.trim().is_empty() {
                        values.push(super::event_value(&message, Utc::now(), Some(&peer_ip)));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    shared
                        .metrics
                        .add_errors(1, ErrorType::Parse, Stage::Receiving);
                    tracing::warn!(component_id = %shared.id, peer = %peer, error = %e, "syslog message skipped");
                }
            }
            if values.len() >= MAX_BATCH {
                let mut out = shared.out.lock().await;
                send(
                    &mut values,
                    shared.id,
                    &shared.latency,
                    &shared.metrics,
                    &mut out,
                )
                .await;
            }
        }
        {
            let mut out = shared.out.lock().await;
            send(
                &mut values,
                shared.id,
                &shared.latency,
                &shared.metrics,
                &mut out,
            )
            .await;
        }
        if drain_until.is_none() && stop.is_cancelled() {
            drain_until = Some(tokio::time::Instant::now() + DRAIN_LIMIT);
        }
        let wait = match drain_until {
            Some(until) => {
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Ok(());
                }
                DRAIN_PAUSE.min(left)
            }
            None => shared.config.idle_timeout,
        };
        buf.reserve(16 * 1024);
        let read = tokio::select! {
            biased;
            () = stop.cancelled(), if drain_until.is_none() => continue,
            r = tokio::time::timeout(wait, io.read_buf(&mut buf)) => r,
        };
        match read {
            // Idle past `idle_timeout`, or paused while draining.
            Err(_) => return Ok(()),
            Ok(Ok(0)) => {
                if let Some(last) = decoder.finish(&mut buf) {
                    values.push(super::event_value(&text(&last), Utc::now(), Some(&peer_ip)));
                    let mut out = shared.out.lock().await;
                    send(
                        &mut values,
                        shared.id,
                        &shared.latency,
                        &shared.metrics,
                        &mut out,
                    )
                    .await;
                }
                return Ok(());
            }
            Ok(Ok(n)) => shared.metrics.add_received_bytes(n),
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
        }
    }
}

/// Receives datagrams until the source stops; each is one message.
pub(super) async fn udp(
    config: SyslogSourceConfig,
    socket: tokio::net::UdpSocket,
    mut cx: SourceContext,
) -> Result<(), ComponentError> {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut values = Vec::new();
    let latency = Arc::clone(cx.telemetry.latency());
    loop {
        let first = tokio::select! {
            biased;
            () = cx.shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let mut next = Some(first);
        // Take what already waits, up to a batch, before handing over.
        while let Some(received) = next.take() {
            match received {
                Ok((n, peer)) => {
                    cx.metrics.add_received_bytes(n);
                    if n > config.max_length {
                        cx.metrics.add_errors(1, ErrorType::Parse, Stage::Receiving);
                        tracing::warn!(component_id = %cx.id, peer = %peer, bytes = n, "syslog datagram over `max_length` skipped");
                    } else {
                        let message = text(&buf[..n]);
                        let message = message.trim_end_matches(['\n', '\r', '\0']);
                        if !message.trim().is_empty() {
                            values.push(super::event_value(
                                message,
                                Utc::now(),
                                Some(&peer.ip().to_string()),
                            ));
                        }
                    }
                }
                Err(e) => {
                    // A datagram error (an ICMP report of an earlier send) concerns one
                    // datagram; the socket goes on.
                    tracing::debug!(component_id = %cx.id, error = %e, "udp receive error");
                }
            }
            if values.len() < MAX_BATCH {
                match socket.try_recv_from(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    other => next = Some(other),
                }
            }
        }
        send(&mut values, cx.id, &latency, &cx.metrics, &mut cx.out).await;
    }
    Ok(())
}
