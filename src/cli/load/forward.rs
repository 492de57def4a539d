//! The Forward protocol driver: PackedForward messages of `batch` generated events over
//! `concurrency` connections, each waiting for its ack before the next (as Fluent Bit
//! with `Require_ack_response` does), so a message counts as sent once sluice has
//! delivered it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use base64::Engine;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::load::LoadError;
use crate::cli::load::driver::{DriverOutcome, Sent, due};
use crate::cli::load::marker::{self, FIELD, Mark};
use crate::fluent::frame::{Limits, Scanner};
use crate::fluent::message::{acked, packed_forward};
use crate::fluent::value::{write_str, write_time};

/// One message of events `first..first + n`, each about `size` bytes as JSON, with the
/// same fields as the HTTP drivers' events.
fn message(first: u64, n: u64, size: usize, chunk: &str) -> Vec<u8> {
    let mut entries = Vec::with_capacity((n as usize) * (size + 16));
    for id in first..first + n {
        let mark = Mark::now(id);
        entries.push(0x92);
        write_time(&mut entries, chrono::Utc::now());
        entries.push(0x87);
        write_str(&mut entries, FIELD.as_bytes());
        write_str(&mut entries, mark.value().as_bytes());
        write_str(&mut entries, b"n");
        let _ = rmp::encode::write_uint(&mut entries, id);
        for (k, v) in [
            ("event_type", "log"),
            ("service", "checkout"),
            ("severity", "high"),
            ("region", "eu-west-1"),
        ] {
            write_str(&mut entries, k.as_bytes());
            write_str(&mut entries, v.as_bytes());
        }
        write_str(&mut entries, b"message");
        let pad = size.saturating_sub(140);
        write_str(&mut entries, "x".repeat(pad).as_bytes());
    }
    packed_forward("bench", &entries, n as usize, Some(chunk), false)
}

/// Sends `count` events to the `fluent` source at `address`, `batch` per message.
pub(crate) async fn forward(
    address: String,
    count: u64,
    batch: u64,
    event_bytes: usize,
    rate: Option<f64>,
    concurrency: usize,
    sent: Sent,
) -> Result<DriverOutcome, LoadError> {
    let next = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let started_ns = marker::unix_ns();
    let mut tasks = tokio::task::JoinSet::new();
    for connection in 0..concurrency {
        let (address, next, bytes, sent) =
            (address.clone(), next.clone(), bytes.clone(), sent.clone());
        tasks.spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&address)
                .await
                .map_err(|e| LoadError::Driver(format!("connect to {address}: {e}")))?;
            let _ = stream.set_nodelay(true);
            let mut buf = BytesMut::new();
            let mut seq = 0u64;
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= count {
                    return Ok::<(), LoadError>(());
                }
                let n = batch.min(count - first);
                if let Some(at) = due(start, first, rate) {
                    tokio::time::sleep_until(at.into()).await;
                }
                seq += 1;
                let chunk =
                    base64::engine::general_purpose::STANDARD.encode(format!("{connection}:{seq}"));
                let body = message(first, n, event_bytes, &chunk);
                let io = |e: std::io::Error| LoadError::Driver(format!("forward: {e}"));
                stream.write_all(&body).await.map_err(io)?;
                let reply = read_reply(&mut stream, &mut buf).await?;
                if acked(&reply) != Some(chunk.as_bytes()) {
                    return Err(LoadError::Driver(
                        "forward: an answer that is not the ack".into(),
                    ));
                }
                bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                sent.fetch_add(n, Ordering::Relaxed);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| LoadError::Driver(e.to_string()))??;
    }
    Ok(DriverOutcome {
        sent: sent.load(Ordering::Relaxed),
        failed: 0,
        retried: 0,
        bytes: bytes.load(Ordering::Relaxed),
        started_ns,
        finished_ns: marker::unix_ns(),
    })
}

async fn read_reply(
    stream: &mut tokio::net::TcpStream,
    buf: &mut BytesMut,
) -> Result<BytesMut, LoadError> {
    let mut scanner = Scanner::new(Limits {
        max_bytes: 4096,
        max_depth: 4,
    });
    loop {
        if !buf.is_empty()
            && let Some(n) = scanner
                .scan(buf)
                .map_err(|e| LoadError::Driver(format!("forward ack: {e}")))?
        {
            return Ok(buf.split_to(n));
        }
        buf.reserve(256);
        let n = stream
            .read_buf(buf)
            .await
            .map_err(|e| LoadError::Driver(format!("forward: {e}")))?;
        if n == 0 {
            return Err(LoadError::Driver(
                "forward: sluice closed the connection".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fluent::message::{Bounds, Request, parse};

    #[test]
    fn messages_carry_marked_events_of_about_the_asked_size() {
        let body = message(10, 3, 200, "c");
        let bounds = Bounds {
            max_depth: 8,
            max_entries: 10,
            max_decompressed: 1 << 20,
            allowance: 1 << 20,
        };
        let Ok(Request::Events(events)) = parse(&body, &bounds) else {
            panic!("a valid message");
        };
        assert_eq!(events.entries.len(), 3);
        let json = serde_json::to_string(&events.entries[0].1).expect("json");
        assert!(
            (180..=230).contains(&json.len()),
            "{} bytes: {json}",
            json.len()
        );
        assert!(json.contains("\"n\":10"));
    }
}
