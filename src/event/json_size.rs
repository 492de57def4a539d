//! What JSON takes on the heap once parsed into VRL values, the estimate shared by the
//! checks of kept text ([`super::raw_json`], [`super::json_scan`]) and the memory
//! budget; and the keys seen in one object, to find a key given twice.

use std::collections::HashSet;

/// A value's inline size, doubled for an array element (a growing vector holds up to
/// twice its length); also the heap of a string beyond its bytes.
pub(crate) const SLOT: usize = 48;
/// A vector's own allocation, however short (size class and allocator header).
pub(crate) const ARRAY: usize = 64;
/// A B-tree node of an object's entries, allocated whole.
pub(crate) const MAP_NODE: usize = 720;
/// Entries per B-tree node.
pub(crate) const MAP_NODE_ENTRIES: usize = 11;
/// Inline size of a value inside a vector or a map node.
pub(crate) const VALUE: usize = 40;

/// Hashes of an object's keys, on the stack for the usual few and in a hash set past
/// them, so an object of a million keys costs a million lookups, not a million squared
/// (a list here made one 878 KB body hold a decode slot for 11 s). A collision only
/// sends the object down the parsing path.
#[derive(Default)]
pub(crate) struct SeenKeys {
    few: [u64; 16],
    len: usize,
    more: HashSet<u64>,
}

impl SeenKeys {
    /// `false` when `hash` was seen already.
    pub(crate) fn insert(&mut self, hash: u64) -> bool {
        let few = &self.few[..self.len.min(self.few.len())];
        if few.contains(&hash) {
            return false;
        }
        if self.len < self.few.len() {
            self.few[self.len] = hash;
        } else if !self.more.insert(hash) {
            return false;
        }
        self.len += 1;
        true
    }
}

/// A fixed-seed hash: no allocation, no need to resist chosen collisions (a collision
/// costs a parse, not a wrong answer). FNV-1a here, a byte at a time, was 3% of the CPU
/// of NDJSON → http.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x5175_6963_655f_6b65).hash_one(key)
}

/// What a parsed object of `entries` entries takes, `contents` being what its keys and
/// values take.
pub(crate) fn object_size(entries: usize, contents: usize) -> usize {
    if entries == 0 {
        return 0;
    }
    (64 + MAP_NODE * entries.div_ceil(MAP_NODE_ENTRIES)).saturating_add(contents)
}
