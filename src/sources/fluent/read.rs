//! Reading a connection's messages: framing with timeouts, and the memory each message
//! is charged to the budget (`memory_limit`, or the listener's own) while it is read,
//! inflated, decoded and handed to the pipeline.
//!
//! What is charged: the bytes buffered past the first `FREE_BYTES` of a message (so an
//! idle connection or a small message holds nothing), then, once a message is
//! complete, its decoding allowance: `decode_allowance` of its size, or for gzip the
//! inflated size (charged before inflating, at most `max_message_bytes`) and its
//! allowance, plus what its entries' events take (many small records cost more than
//! their bytes suggest). A message gets what it needs or what one message may hold, and
//! is refused for memory when its values outgrow that.
//! The charge is held until the events are in the pipeline, which charges
//! them itself from there.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::FluentSourceConfig;
use super::closed::Closed;
use crate::buffer::cost::{DECODE_BASE_BYTES, decode_allowance};
use crate::buffer::{Charge, MemoryBudget};
use crate::fluent::frame::Scanner;
use crate::fluent::message::{self, Bounds, Request};
use crate::fluent::value::DecodeError;

/// What a message may buffer before it is charged (bounded by `max_connections`).
const FREE_BYTES: usize = 64 * 1024;
/// The first read of a message; later reads grow with the message up to `READ_CHUNK`.
const FIRST_READ: usize = 4 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// Messages from this size on are inflated and decoded on the blocking pool.
const OFF_RUNTIME: usize = 64 * 1024;

/// Memory charged to the budget for one message, for as long as the message holds
/// it: a message waiting for more keeps what it has, since its bytes are still in
/// memory.
///
/// Reading stays under half the budget. When messages being read fill that half and
/// none can finish, one message at a time (the one holding the overflow turn) goes on
/// reading under three quarters, so reads cannot wait on each other for ever.
/// Decoding takes its allowance under three quarters, at least what its entries need
/// and as much more as is free; the quarter above is kept for the pipeline.
pub(super) struct Held<'s> {
    budget: &'s Arc<MemoryBudget>,
    overflow: &'s Mutex<()>,
    turn: Option<MutexGuard<'s, ()>>,
    charges: Vec<Charge>,
    bytes: usize,
}

impl<'s> Held<'s> {
    pub(super) fn new(budget: &'s Arc<MemoryBudget>, overflow: &'s Mutex<()>) -> Self {
        Self {
            budget,
            overflow,
            turn: None,
            charges: Vec::new(),
            bytes: 0,
        }
    }

    /// Charges until `need` bytes of a message being read are held (a quarter more
    /// when it can, so a message read piece by piece takes few charges), waiting for
    /// room until `deadline`. Holds less than `need` when one message may not hold
    /// that much.
    async fn grow(&mut self, need: usize, deadline: Instant) -> Result<(), Closed> {
        if self.bytes >= need {
            return Ok(());
        }
        let limit = self.budget.limit();
        let (reading, overflow) = (limit / 2, limit / 4 * 3);
        if need > overflow {
            return Ok(());
        }
        let least = need - self.bytes;
        let most = need.saturating_add(need / 4).saturating_sub(self.bytes);
        if self.turn.is_none() {
            if let Some(charge) = self.budget.try_reserve_between(least, most, reading) {
                self.add(charge);
                return Ok(());
            }
            let turn = tokio::time::timeout_at(deadline, self.overflow.lock())
                .await
                .map_err(|_| Closed::Memory)?;
            self.turn = Some(turn);
        }
        let charge =
            tokio::time::timeout_at(deadline, self.budget.reserve_between(least, most, overflow))
                .await
                .map_err(|_| Closed::Memory)?;
        self.add(charge);
        Ok(())
    }

    /// Charges at least `least` bytes in all for decoding a message, and up to `want`
    /// as far as the budget has room, waiting for the least until `deadline`. Holds
    /// less than `least` when one message may not hold that much.
    async fn afford(&mut self, least: usize, want: usize, deadline: Instant) -> Result<(), Closed> {
        let ceiling = self.budget.limit() / 4 * 3;
        if self.bytes >= want || least > ceiling {
            return Ok(());
        }
        let charge = tokio::time::timeout_at(
            deadline,
            self.budget.reserve_between(
                least.saturating_sub(self.bytes),
                want - self.bytes,
                ceiling,
            ),
        )
        .await
        .map_err(|_| Closed::Memory)?;
        self.add(charge);
        Ok(())
    }

    fn add(&mut self, charge: Charge) {
        self.bytes += charge.bytes();
        self.charges.push(charge);
    }

    pub(super) fn release(&mut self) {
        self.charges.clear();
        self.bytes = 0;
        self.turn = None;
    }
}

/// A connection's read side.
pub(super) struct Reader<'s, S> {
    pub(super) stream: S,
    pub(super) buf: BytesMut,
    pub(super) scanner: Scanner,
    pub(super) held: Held<'s>,
    pub(super) read_timeout: Duration,
}

impl<S: AsyncRead + Unpin> Reader<'_, S> {
    /// The next complete message, `None` when the client closed between messages or
    /// `stop` fired then. `idle` bounds the wait for a message's first byte,
    /// `read_timeout` the rest of it.
    pub(super) async fn next(
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
            let next_read = self.buf.len().clamp(FIRST_READ, READ_CHUNK);
            if self.buf.len() + next_read > FREE_BYTES {
                let need = self.buf.len() + next_read;
                self.held.grow(need, until).await?;
                // A message may not be read past what one message may hold.
                if self.held.bytes < need {
                    return Err(Closed::TooCostly {
                        need,
                        may: self.held.bytes,
                    });
                }
            }
            self.buf.reserve(next_read);
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
                Err(_) if message_until.is_none() => return Err(Closed::Idle),
                Err(_) => return Err(Closed::Timeout("reading a message")),
                Ok(Ok(0)) if self.buf.is_empty() => return Ok(None),
                Ok(Ok(0)) => return Err(Closed::Truncated),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(Closed::Io(e)),
            }
        }
    }
}

/// Decodes a message, charging what inflating and decoding it take (off the runtime
/// when large).
pub(super) async fn decode(
    frame: BytesMut,
    held: &mut Held<'_>,
    config: &FluentSourceConfig,
) -> Result<Request, Closed> {
    let deadline = Instant::now() + config.read_timeout;
    let max = config.max_message_bytes;
    let mut bounds = Bounds {
        max_depth: config.max_depth,
        max_entries: config.max_entries_per_message,
        max_decompressed: max,
        allowance: 0,
    };
    let max_entries = bounds.max_entries;
    let Some(compressed) = message::compressed_entries(&frame) else {
        let frame = frame.freeze();
        let counted = frame.clone();
        let entries = off_runtime(frame.len(), move || {
            Ok(message::entries_cost(&counted, None, max_entries))
        })
        .await?;
        let allowance = decode_allowance(frame.len()).saturating_add(entries);
        let need = frame.len().saturating_add(allowance);
        held.afford(least(frame.len(), frame.len(), entries), need, deadline)
            .await?;
        // What could be held may be less than the allowance: values rarely take it all.
        bounds.allowance = held.bytes.saturating_sub(frame.len()).min(allowance);
        let may = held.bytes;
        return off_runtime(frame.len(), move || message::parse(&frame, &bounds))
            .await
            .map_err(|e| too_costly(e, need, may));
    };
    // Inflating may take up to the limit: charged first, then what it took decides
    // the allowance.
    let inflating = frame.len().saturating_add(max);
    held.afford(inflating, inflating, deadline).await?;
    if held.bytes < inflating {
        return Err(Closed::TooCostly {
            need: inflating,
            may: held.bytes,
        });
    }
    let packed = compressed.to_vec();
    let inflated = off_runtime(packed.len(), move || message::gunzip(&packed, max)).await?;
    let (frame, inflated) = (frame.freeze(), bytes::Bytes::from(inflated));
    let (counted_frame, counted) = (frame.clone(), inflated.clone());
    let entries = off_runtime(inflated.len(), move || {
        Ok(message::entries_cost(
            &counted_frame,
            Some(&counted),
            max_entries,
        ))
    })
    .await?;
    let allowance = decode_allowance(inflated.len()).saturating_add(entries);
    let holds = frame.len() + inflated.len();
    let need = holds.saturating_add(allowance);
    held.afford(least(holds, inflated.len(), entries), need, deadline)
        .await?;
    bounds.allowance = held.bytes.saturating_sub(holds).min(allowance);
    let may = held.bytes;
    off_runtime(inflated.len(), move || {
        message::parse_inflated(&frame, Some(&inflated), &bounds)
    })
    .await
    .map_err(|e| too_costly(e, need, may))
}

/// The least a message is decoded with: what it holds, its entries' events, and twice
/// its bytes for their values (most records need less than that; one that needs more
/// than it could get is refused for memory).
fn least(holds: usize, bytes: usize, entries: usize) -> usize {
    holds
        .saturating_add(entries)
        .saturating_add(DECODE_BASE_BYTES)
        .saturating_add(bytes.saturating_mul(2))
}

/// A message whose values outgrew what it could hold, when that was less than it may
/// need, is refused for memory with both sizes (one that had all it may need is
/// malformed: its values take more than its size allows).
fn too_costly(e: Closed, need: usize, may: usize) -> Closed {
    match e {
        Closed::Message(message::MessageError::Decode(DecodeError::OverAllowance))
            if may < need =>
        {
            Closed::TooCostly { need, may }
        }
        e => e,
    }
}

async fn off_runtime<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> Result<T, message::MessageError> + Send + 'static,
) -> Result<T, Closed> {
    if size < OFF_RUNTIME {
        return Ok(work()?);
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| Closed::Refused("decoding the message failed"))?
        .map_err(Closed::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fluent::frame::Limits;
    use tokio::io::AsyncWriteExt;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test]
    async fn a_message_waiting_for_more_keeps_what_it_holds_charged() {
        let budget = MemoryBudget::new(1_000);
        let turn = Mutex::new(());
        let mut held = Held::new(&budget, &turn);
        held.afford(300, 300, far()).await.expect("room");
        let pipeline = budget.charge(400);
        // 300 more do not fit under three quarters (750) while the pipeline holds 400.
        let waited =
            tokio::time::timeout(Duration::from_millis(20), held.afford(600, 600, far())).await;
        assert!(waited.is_err(), "waits for room");
        assert_eq!(
            (held.bytes, budget.used()),
            (300, 700),
            "the bytes it holds stay charged while it waits"
        );
        drop(pipeline);
        held.afford(600, 900, far()).await.expect("room");
        assert_eq!(
            (held.bytes, budget.used()),
            (750, 750),
            "as much as is free"
        );
        held.release();
        assert_eq!(budget.used(), 0);
    }

    /// A message of `len` bytes: a msgpack bin 32 whose payload is zeros.
    fn bin_message(len: usize) -> Vec<u8> {
        let payload = len - 5;
        let mut m = vec![0xc6];
        m.extend_from_slice(&u32::try_from(payload).expect("small").to_be_bytes());
        m.resize(len, 0);
        m
    }

    #[tokio::test]
    async fn messages_read_at_once_that_fill_half_the_budget_still_finish_one_by_one() {
        // Three 300 KiB messages read together under 1 MiB: reading stops at half the
        // budget with none complete, and the overflow turn lets them finish in turn.
        let budget = MemoryBudget::new(1024 * 1024);
        let turn = Mutex::new(());
        let stop = CancellationToken::new();
        let len = 300 * 1024;
        let read_one = |n: usize| {
            let (budget, turn, stop) = (&budget, &turn, &stop);
            async move {
                let (mut client, server) = tokio::io::duplex(16 * 1024);
                let writer = tokio::spawn(async move {
                    let message = bin_message(len);
                    for piece in message.chunks(8 * 1024) {
                        client.write_all(piece).await.expect("write");
                    }
                    client
                });
                let mut reader = Reader {
                    stream: server,
                    buf: BytesMut::new(),
                    scanner: Scanner::new(Limits {
                        max_bytes: 1024 * 1024,
                        max_depth: 4,
                    }),
                    held: Held::new(budget, turn),
                    read_timeout: Duration::from_secs(10),
                };
                let frame = reader
                    .next(Duration::from_secs(10), stop)
                    .await
                    .unwrap_or_else(|e| panic!("message {n}: {e}"))
                    .expect("a message");
                assert!(
                    reader.held.bytes + FREE_BYTES >= frame.len(),
                    "message {n}: all but the free bytes charged"
                );
                // Hand the message on a little later, as decoding would.
                tokio::task::yield_now().await;
                reader.held.release();
                drop(writer.await);
                frame.len()
            }
        };
        let lens = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(read_one(1), read_one(2), read_one(3))
        })
        .await
        .expect("no message waits on the others for ever");
        assert_eq!(lens, (len, len, len));
        assert_eq!(budget.used(), 0);
    }
}
