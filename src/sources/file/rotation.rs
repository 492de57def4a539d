//! Copytruncate and rotation of the `file` source.
//!
//! When a file shrinks or its first line changes, what was known about its old content
//! (the tracker, the offset reached, its head checksum) becomes an [`Orphan`]. A file
//! appearing with the same head checksum and the same bytes before that offset is the
//! copy, and continues from there instead of from its start. A copy that appears while
//! the original still holds the same bytes is kept as a dormant twin and takes over when
//! the original is truncated or released.

use std::fs::File;
use std::time::Instant;

use super::fingerprint::{FileId, TAIL, head_checksum, same_content};
use super::orphan::Orphan;
use super::tailer::{Tailer, Watched};
use crate::hashing::fnv1a;

impl Watched {
    /// The checksum of the bytes before `at`, from the bytes just read when they reach
    /// back far enough.
    pub(super) fn tail_from_recent(&self, at: u64) -> Option<u64> {
        let want = TAIL.min(at as usize);
        (at == self.framer.pos() && self.recent.len() >= want)
            .then(|| fnv1a(&self.recent[self.recent.len() - want..]))
    }

    pub(super) fn remember(&mut self, chunk: &[u8]) {
        if chunk.len() >= TAIL {
            self.recent.clear();
            self.recent.extend_from_slice(&chunk[chunk.len() - TAIL..]);
        } else {
            self.recent.extend_from_slice(chunk);
            let excess = self.recent.len().saturating_sub(TAIL);
            self.recent.drain(..excess);
        }
    }
}

impl Tailer {
    /// The watched file `copy` (of `size` bytes, first line `checksum`) was copied from.
    pub(super) fn live_original(&self, copy: &File, checksum: u64, size: u64) -> Option<FileId> {
        self.files
            .iter()
            .find(|f| {
                f.twin_of.is_none()
                    && f.checksum == Some(checksum)
                    && f.file.metadata().is_ok_and(|m| m.len() >= size)
                    && same_content(&f.file, copy, size).unwrap_or(false)
            })
            .map(|f| f.id)
    }

    /// Whether file `i` was truncated or rewritten in place; if so, it is read again from
    /// its start and what was known about its old content goes to its copy.
    pub(super) fn check_truncated(&mut self, i: usize, now: Instant) -> bool {
        let w = &self.files[i];
        let Ok(meta) = w.file.metadata() else {
            return false;
        };
        let shrunk = meta.len() < w.framer.pos();
        let rewritten = !shrunk
            && w.checksum.is_some()
            && meta.len() > 0
            && head_checksum(&w.file).ok().flatten() != w.checksum;
        let emptied = !shrunk && w.checksum.is_some() && meta.len() == 0;
        if !(shrunk || rewritten || emptied) {
            return false;
        }
        self.truncated(i, now);
        true
    }

    pub(super) fn truncated(&mut self, i: usize, now: Instant) {
        self.emitter.counters.files_truncated.add(1);
        let fresh = self.tracker(0);
        let w = &mut self.files[i];
        tracing::info!(file = %w.path.display(), "file truncated; reading it from the start");
        let resume = w.unemitted();
        let orphan = Orphan {
            id: Some(w.id),
            checksum: w.checksum,
            path: w.path.clone(),
            resume,
            tail: w.tail_from_recent(resume),
            tracker: std::mem::replace(&mut w.tracker, fresh),
            expires: now + self.orphan_ttl,
        };
        let original = w.id;
        w.restart_at(0);
        w.checksum = head_checksum(&w.file).ok().flatten();
        self.hand_over(original, orphan);
        self.dirty = true;
    }

    /// Gives an original's old content to its dormant twin, or keeps it as an orphan.
    pub(super) fn hand_over(&mut self, original: FileId, orphan: Orphan) {
        let twin = self.files.iter_mut().find(|t| {
            t.twin_of == Some(original) && t.file.metadata().is_ok_and(|m| m.len() >= orphan.resume)
        });
        match twin {
            Some(t) => {
                tracing::info!(file = %t.path.display(), offset = orphan.resume, "copy takes over where the original stopped");
                adopt(t, orphan);
            }
            None if orphan.tracker.pending.is_empty() && orphan.resume == 0 => {}
            None => self.orphans.push(orphan),
        }
    }
}

pub(super) fn adopt(w: &mut Watched, o: Orphan) {
    w.tracker = o.tracker;
    w.twin_of = None;
    w.restart_at(o.resume);
}
