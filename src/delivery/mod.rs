//! The sink driver every network sink shares: batching, retries with backoff, rate
//! limits and the dead-letter output (the HTTP client, TLS and backoff themselves are
//! [`crate::net`]'s).
//!
//! A sink supplies an [`HttpEncoder`] (how one event becomes bytes, how a batch becomes
//! a request, what a response means) and hands its input to [`run_http_sink`], which
//! owns the rest. Invariants:
//! - an event is settled `Delivered` only when the request carrying it succeeded;
//! - an event that cannot be delivered (permanent error, retries exhausted, or it cannot
//!   be encoded) goes to the sink's `dead_letter` output with the reason; if nothing reads
//!   that output it is counted, logged at error level and settled `Errored` when retries
//!   ran out (sending it again later may succeed), else `Rejected`;
//! - when a reload replaces the sink, events not yet delivered (queued, batched, or in a
//!   request being retried) are handed back to the replacement, not dropped.

mod batches;
mod config;
mod dead_letter;
mod driver;
mod encoded_events;

pub(crate) use config::{BatchConfig, RateLimitConfig, RequestConfig};
pub(crate) use dead_letter::Failure;
pub(crate) use dead_letter::{DEAD_LETTER, DeadLetter};
pub(crate) use driver::single_event_task;

/// A request body gzipped at `level` (sinks pick speed or size).
pub(crate) fn gzip(body: &[u8], level: flate2::Compression) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), level);
    gz.write_all(body)
        .and_then(|()| gz.finish())
        .map_err(|e| format!("gzip failed: {e}"))
}
pub use driver::{
    EncodedRequest, HttpEncoder, HttpSinkParts, Sent, Tls, Verdict, default_verdict, run_http_sink,
};
pub use encoded_events::EncodedEvents;
