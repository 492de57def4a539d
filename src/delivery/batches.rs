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
    /// A batch with `room` reserved (see [`Sizes::room`]).
    pub(super) fn new(room: Sizes) -> Self {
        let mut encoded = EncodedEvents::default();
        encoded.reserve(room.bytes);
        Self {
            events: Vec::with_capacity(room.events),
            encoded,
            since: Instant::now(),
        }
    }
}

/// How many events and bytes the last batch of a sink carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sizes {
    pub(super) events: usize,
    pub(super) bytes: usize,
}

impl Sizes {
    /// What a new batch reserves after this last one: as much (and an eighth more of
    /// bytes, at most `max_bytes`), so a steady stream fills it without growing it step
    /// by step. Nothing unless the batch is the only open one (`alone`: with many
    /// partitions, one large batch must not make every new one reserve its size) and
    /// may hold more than one event (a lone event is encoded to its own size; one
    /// large event must not make each small one after it reserve that much).
    pub(super) fn room(self, alone: bool, max_events: usize, max_bytes: usize) -> Sizes {
        if !alone || max_events <= 1 {
            return Sizes::default();
        }
        Sizes {
            events: self.events.min(max_events),
            bytes: self.bytes.saturating_add(self.bytes / 8).min(max_bytes),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_batch_reserves_the_last_ones_size_only_alone_and_within_max_bytes() {
        let last = Sizes {
            events: 100,
            bytes: 8000,
        };
        let room = |alone, max_events, max_bytes| last.room(alone, max_events, max_bytes);
        assert_eq!(
            room(true, 1000, 1 << 20),
            Sizes {
                events: 100,
                bytes: 9000
            }
        );
        assert_eq!(
            room(false, 1000, 1 << 20),
            Sizes::default(),
            "other partitions open"
        );
        assert_eq!(
            room(true, 1, 1 << 20),
            Sizes::default(),
            "one event per request"
        );
        assert_eq!(room(true, 50, 4096).events, 50);
        assert_eq!(room(true, 1000, 4096).bytes, 4096, "an oversized event");
        let huge = Sizes {
            events: 1,
            bytes: usize::MAX,
        };
        assert_eq!(huge.room(true, 10, 1 << 20).bytes, 1 << 20);
    }
}
