//! What decoded values take in memory, for the decoders of untrusted bytes (JSON bodies,
//! MessagePack) that charge each value against an allowance while they build it.
//! Measured against the allocator by `tests/decode_memory.rs`.

// The estimates of one value live with the event model, which checks JSON text
// without building it (see `crate::event::raw_json`).
pub(crate) use crate::event::json_size::{ARRAY, MAP_NODE, MAP_NODE_ENTRIES, SLOT};

/// Memory a body's values may take per byte of JSON while it is parsed, beyond
/// [`DECODE_BASE_BYTES`]: enforced while parsing (a body whose values would take more
/// is refused). Generic JSON events take 20 to 50 per byte; shapes such as
/// `[{"a":1},…]` (a 720-byte B-tree node per 8 bytes) are refused.
pub(crate) const DECODE_COST_PER_BYTE: usize = 64;

/// What the requests of one listener may hold while they are read and decoded when no
/// global `memory_limit` is set.
pub(crate) const LISTENER_DECODE_BUDGET: usize = 256 * 1024 * 1024;

/// What any body may take, however small (a one-key object costs a B-tree node).
pub(crate) const DECODE_BASE_BYTES: usize = 64 * 1024;

/// The memory the values of a body of `bytes` may take while it is parsed.
pub fn decode_allowance(bytes: usize) -> usize {
    DECODE_BASE_BYTES.saturating_add(bytes.saturating_mul(DECODE_COST_PER_BYTE))
}
