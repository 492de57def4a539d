//! A network sink's open batch of one partition: its events and their encoded bytes,
//! until it is full (`max_events`, `max_bytes`) or its time is up.

use tokio::time::Instant;

use super::encoded_events::EncodedEvents;
use crate::event::Event;

pub(super) struct Pending {
    pub(super) events: Vec<Event>,
    pub(super) encoded: EncodedEvents,
    pub(super) since: Instant,
}

impl Pending {
    /// A batch with room for as much as `last` carried (and an eighth more), so a
    /// steady stream fills it without growing it step by step; none unless it is the
    /// only open batch (`alone`): with many partitions, one large batch must not make
    /// every new one reserve its size.
    pub(super) fn new(last: Sizes, alone: bool) -> Self {
        let last = if alone { last } else { Sizes::default() };
        let mut encoded = EncodedEvents::default();
        encoded.reserve(last.bytes + last.bytes / 8);
        Self {
            events: Vec::with_capacity(last.events),
            encoded,
            since: Instant::now(),
        }
    }
}

/// How many events and bytes the last batch of a sink carried.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sizes {
    pub(super) events: usize,
    pub(super) bytes: usize,
}

/// A partition's key (a rendered URL; empty for a sink with one partition).
///
/// Compares an empty key without calling `memcmp`: glibc's AVX-512 `memcmp` reads an
/// empty string's dangling pointer through a masked load, which took a microcode assist
/// on every call here; two such compares per event were 14% of the CPU of NDJSON → http.
#[derive(Debug, Clone)]
pub(super) struct PartitionKey(pub(super) String);

impl std::hash::Hash for PartitionKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As the text hashes, so equal keys hash alike.
        self.0.hash(state);
    }
}

impl PartialEq for PartitionKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && (self.0.is_empty() || self.0 == other.0)
    }
}

impl Eq for PartitionKey {}
