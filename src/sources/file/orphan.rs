//! Content of the `file` source whose file went away: truncated in place, or named by a
//! checkpoint that no file matched yet. Its acknowledgement state waits here for a copy
//! of it to turn up (`rotation.rs`, `scan.rs`).

use std::path::PathBuf;
use std::time::Instant;

use super::fingerprint::FileId;
use super::tracker::Tracker;

/// What is known about content whose file went away (truncated in place, or a
/// checkpoint not matched yet): a copy of it may turn up.
pub(super) struct Orphan {
    pub(super) id: Option<FileId>,
    pub(super) checksum: Option<u64>,
    pub(super) path: PathBuf,
    /// Where a copy continues: the first byte not emitted.
    pub(super) resume: u64,
    /// Checksum of the bytes before `resume`, when known.
    pub(super) tail: Option<u64>,
    pub(super) tracker: Tracker,
    pub(super) expires: Instant,
}
