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
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::FluentSourceConfig;
use super::closed::Closed;
use crate::buffer::cost::decode_allowance;
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

/// Memory charged to the budget for one message.
pub(super) struct Held<'s> {
    budget: &'s Arc<MemoryBudget>,
    charges: Vec<Charge>,
    bytes: usize,
}

impl<'s> Held<'s> {
    pub(super) fn new(budget: &'s Arc<MemoryBudget>) -> Self {
        Self {
            budget,
            charges: Vec::new(),
            bytes: 0,
        }
    }

    /// Charges until `need` bytes are held (when more is needed, twice what is held at
    /// least, so a message read piece by piece takes few charges), waiting for room
    /// until `deadline`. Large work is capped at three quarters of the budget, small
    /// work at half, so no one message can spend all of it; what it holds is then all
    /// it may use.
    async fn ensure(&mut self, need: usize, deadline: Instant) -> Result<(), Closed> {
        if self.bytes >= need {
            return Ok(());
        }
        let ceiling = self.ceiling(need);
        // Growing by doubling takes few charges, and never past twice the need.
        let target = need.max(self.bytes.saturating_mul(2)).min(ceiling);
        if self.bytes >= target {
            return Ok(());
        }
        // What is held is given back while waiting for the larger charge: two messages
        // each holding part and waiting for the rest would wait on each other.
        self.release();
        let charge = tokio::time::timeout_at(deadline, self.budget.reserve(target, ceiling))
            .await
            .map_err(|_| Closed::Memory)?;
        self.bytes = charge.bytes();
        self.charges.push(charge);
        Ok(())
    }

    /// The most one message may hold when it needs `need` bytes.
    fn ceiling(&self, need: usize) -> usize {
        let limit = self.budget.limit();
        if need > limit / 8 {
            limit / 4 * 3
        } else {
            limit / 2
        }
    }

    pub(super) fn release(&mut self) {
        self.charges.clear();
        self.bytes = 0;
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
                self.held.ensure(need, until).await?;
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
        held.ensure(need, deadline).await?;
        // What could be held may be less than the allowance: values rarely take it all.
        bounds.allowance = held.bytes.saturating_sub(frame.len()).min(allowance);
        let may = held.bytes;
        return off_runtime(frame.len(), move || message::parse(&frame, &bounds))
            .await
            .map_err(|e| too_costly(e, need, may));
    };
    // Inflating may take up to the limit: charged first, then what it took decides
    // the allowance.
    held.ensure(frame.len().saturating_add(max), deadline)
        .await?;
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
    held.ensure(need, deadline).await?;
    bounds.allowance = held.bytes.saturating_sub(holds).min(allowance);
    let may = held.bytes;
    off_runtime(inflated.len(), move || {
        message::parse_inflated(&frame, Some(&inflated), &bounds)
    })
    .await
    .map_err(|e| too_costly(e, need, may))
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
