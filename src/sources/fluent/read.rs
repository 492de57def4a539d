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
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt};

use tokio::sync::{Mutex, MutexGuard, Notify};
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

/// The turn to wait for memory: one message at a time waits, so messages that each
/// hold part of what they need cannot wait on each other for ever.
#[derive(Default)]
pub(super) struct Turn {
    lock: Mutex<()>,
    /// Bytes held by the messages queued for the turn.
    queued: AtomicUsize,
    /// Woken when a message queues: the turn's holder checks whether it must evict.
    queued_more: Notify,
    /// Tells the messages queued for the turn to give up theirs.
    evict: Notify,
}

/// Memory charged to the budget for one message, for as long as the message holds
/// it: a message waiting for more keeps what it has, since its bytes are still in
/// memory.
///
/// What fits at once is taken at once: reading under half the budget, decoding under
/// three quarters. Anything that must wait takes the [`Turn`]: its holder reads on
/// under three quarters and decodes under seven eighths, and keeps the turn until
/// its message is handed over. Waiting can only free
/// what is not itself waiting, so when the messages queued behind the holder hold so
/// much that its need could never fit, they are evicted (their connections closed,
/// the clients resend) and the holder goes on. Only the holder ever waits for memory,
/// and never on the turn, so nothing waits for ever.
pub(super) struct Held<'s> {
    budget: &'s Arc<MemoryBudget>,
    turn: &'s Turn,
    /// The turn, once taken: kept until the message is handed over, so messages
    /// being read finish one at a time rather than all wait half read.
    holds_turn: Option<MutexGuard<'s, ()>>,
    charges: Vec<Charge>,
    bytes: usize,
}

impl<'s> Held<'s> {
    pub(super) fn new(budget: &'s Arc<MemoryBudget>, turn: &'s Turn) -> Self {
        Self {
            budget,
            turn,
            holds_turn: None,
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
        if let Some(charge) = self.budget.try_reserve_between(least, most, reading) {
            self.add(charge);
            return Ok(());
        }
        self.wait(least, most, overflow, deadline).await
    }

    /// Charges at least `least` bytes in all for decoding a message, and up to `want`
    /// as far as the budget has room, waiting for the least until `deadline`. Holds
    /// less than `least` when one message may not hold that much.
    async fn afford(&mut self, least: usize, want: usize, deadline: Instant) -> Result<(), Closed> {
        let limit = self.budget.limit();
        if self.bytes >= want || least > limit - limit / 8 {
            return Ok(());
        }
        let (least, most) = (least.saturating_sub(self.bytes), want - self.bytes);
        if let Some(charge) = self.budget.try_reserve_between(least, most, limit / 4 * 3) {
            self.add(charge);
            return Ok(());
        }
        // Never the whole budget: sources wait for it to be under the limit before
        // they send, and one waiting so may hold what this message needs to finish.
        self.wait(least, most, limit - limit / 8, deadline).await
    }

    /// Queues for the turn, then waits for `least` more bytes under `ceiling` (taking
    /// as much of `most` as fits), evicting the queue when what it holds leaves no
    /// hope of that.
    async fn wait(
        &mut self,
        least: usize,
        most: usize,
        ceiling: usize,
        deadline: Instant,
    ) -> Result<(), Closed> {
        let turn = self.turn;
        if self.holds_turn.is_none() {
            let queued = self.bytes;
            turn.queued.fetch_add(queued, Ordering::AcqRel);
            turn.queued_more.notify_waiters();
            let got = {
                let evicted = turn.evict.notified();
                tokio::pin!(evicted);
                evicted.as_mut().enable();
                tokio::select! {
                    guard = tokio::time::timeout_at(deadline, turn.lock.lock()) => {
                        guard.map_err(|_| Closed::Memory)
                    }
                    () = &mut evicted => Err(Closed::Evicted),
                }
            };
            turn.queued.fetch_sub(queued, Ordering::AcqRel);
            self.holds_turn = Some(got?);
        }
        loop {
            let more = turn.queued_more.notified();
            tokio::pin!(more);
            more.as_mut().enable();
            let behind = turn.queued.load(Ordering::Acquire);
            if behind.saturating_add(self.bytes).saturating_add(least) > ceiling {
                turn.evict.notify_waiters();
            }
            tokio::select! {
                charge = tokio::time::timeout_at(
                    deadline,
                    self.budget.reserve_between(least, most, ceiling),
                ) => {
                    self.add(charge.map_err(|_| Closed::Memory)?);
                    return Ok(());
                }
                () = &mut more => {}
            }
        }
    }

    fn add(&mut self, charge: Charge) {
        self.bytes += charge.bytes();
        self.charges.push(charge);
    }

    /// Holds `bytes` instead of what it holds, when that is less: what decoding
    /// needed beyond its events goes back.
    pub(super) fn shrink_to(&mut self, bytes: usize) {
        if bytes >= self.bytes {
            return;
        }
        let charge = self.budget.charge(bytes);
        self.charges.clear();
        self.bytes = bytes;
        self.charges.push(charge);
    }

    pub(super) fn release(&mut self) {
        self.charges.clear();
        self.bytes = 0;
        self.holds_turn = None;
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
        let turn = Turn::default();
        let mut held = Held::new(&budget, &turn);
        held.afford(300, 300, far()).await.expect("room");
        let pipeline = budget.charge(500);
        // 300 more do not fit in the budget (1000) while the pipeline holds 500.
        let waited =
            tokio::time::timeout(Duration::from_millis(20), held.afford(600, 600, far())).await;
        assert!(waited.is_err(), "waits for room");
        assert_eq!(
            (held.bytes, budget.used()),
            (300, 800),
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
        let turn = Turn::default();
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

    /// A PackedForward message of `records` entries of about 1 KB each.
    fn packed(records: usize) -> BytesMut {
        let mut entries = Vec::new();
        for n in 0..records {
            let entry = rmpv::Value::Array(vec![
                1_700_000_000.into(),
                rmpv::Value::Map(vec![
                    ("n".into(), (n as u64).into()),
                    ("pad".into(), "x".repeat(1000).into()),
                ]),
            ]);
            rmpv::encode::write_value(&mut entries, &entry).expect("encode");
        }
        let message = rmpv::Value::Array(vec![
            "app".into(),
            rmpv::Value::Binary(entries),
            rmpv::Value::Map(Vec::new()),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &message).expect("encode");
        BytesMut::from(&bytes[..])
    }

    #[tokio::test]
    async fn messages_that_cannot_all_decode_give_way_instead_of_waiting_on_each_other() {
        // Three 1.5 MB messages read at once under 8 MiB: each needs about 6 MB to
        // decode while the other two hold 3.75 MB. Before, each waited for the others
        // until read_timeout and all three were lost; now the first waits with the turn,
        // the queue gives way, and the first decodes at once.
        let budget = MemoryBudget::new(8 * 1024 * 1024);
        let turn = Turn::default();
        let config: FluentSourceConfig = serde_json::from_value(serde_json::json!({
            "read_timeout": "30s"
        }))
        .expect("defaults");
        let frame = packed(1500);
        let ready = tokio::sync::Barrier::new(3);
        let one = || {
            let (budget, turn, config, ready) = (&budget, &turn, &config, &ready);
            let frame = frame.clone();
            async move {
                let mut held = Held::new(budget, turn);
                held.grow(frame.len(), far()).await.expect("read");
                ready.wait().await;
                let decoded = decode(frame, &mut held, config).await;
                // Handed over: the events are the pipeline's from here.
                held.release();
                match decoded {
                    Ok(Request::Events(e)) => Ok(e.entries.len()),
                    Ok(_) => panic!("events"),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let (a, b, c) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(one(), one(), one())
        })
        .await
        .expect("no message waits on the others until read_timeout");
        let results = [a, b, c];
        let decoded = results.iter().filter(|r| r == &&Ok(1500)).count();
        assert!(decoded >= 1, "{results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(e.contains("gave way"), "{e}");
            }
        }
        assert_eq!(budget.used(), 0);
    }
}
