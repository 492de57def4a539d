//! Finding the files of the `file` source: the globs are evaluated every
//! `glob_interval`; a file found is new (resumed from its checkpoint, recognized as a
//! copy, or read from `read_from`), renamed (followed), or no longer matched (read to
//! its end, then released).

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use vrl::value::Value;

use super::LineFormat;
use super::ReadFrom;
use super::container::{Joiner, Runtime};
use super::fingerprint::{FileId, head_checksum, tail_at};
use super::lines::Framer;
use super::multiline::Groups;
use super::rotation::adopt;
use super::tailer::{Tailer, Watched};

impl Tailer {
    /// Truncation checks, then the globs: new files, renames, files gone.
    pub(super) fn scan(&mut self, now: Instant) {
        for i in 0..self.files.len() {
            if self.files[i].twin_of.is_none() && self.check_truncated(i, now) {
                continue;
            }
        }
        let mut found: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
        let mut ids = HashSet::new();
        for pattern in &self.config.include {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for path in paths.flatten() {
                if self.compiled.exclude.iter().any(|p| p.matches_path(&path)) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if meta.is_file() && ids.insert(FileId::of(&meta)) {
                    found.push((path, meta));
                }
            }
        }
        let mut seen = HashSet::new();
        for (path, meta) in found {
            let id = FileId::of(&meta);
            if let Some(w) = self.files.iter_mut().find(|w| w.id == id) {
                seen.insert(id);
                if w.path != path {
                    tracing::info!(from = %w.path.display(), to = %path.display(), "watched file renamed; following it");
                    self.emitter.counters.files_rotated.add(1);
                    w.path_value = path_value(&path);
                    w.path = path;
                    w.gone = false;
                    self.dirty = true;
                }
                continue;
            }
            if let (Some(older), Ok(modified)) = (self.config.ignore_older, meta.modified())
                && modified.elapsed().is_ok_and(|age| age > older)
            {
                continue;
            }
            if let Some(id) = self.add(path, now) {
                seen.insert(id);
            }
        }
        for w in &mut self.files {
            if !w.gone && !seen.contains(&w.id) {
                tracing::info!(file = %w.path.display(), "watched file renamed away or deleted; reading it to its end");
                w.gone = true;
                self.emitter.counters.files_rotated.add(1);
            }
        }
        self.started = true;
        let before = self.orphans.len();
        self.orphans
            .retain(|o| o.expires > now || !o.tracker.pending.is_empty());
        self.dirty |= self.orphans.len() != before;
    }

    /// Starts watching a newly found file; returns its id.
    fn add(&mut self, path: PathBuf, now: Instant) -> Option<FileId> {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot open file");
                return None;
            }
        };
        // The descriptor's identity, not the path's: the path may have moved meanwhile.
        let meta = file.metadata().ok()?;
        let id = FileId::of(&meta);
        if self.files.iter().any(|w| w.id == id) {
            return Some(id);
        }
        let size = meta.len();
        let checksum = head_checksum(&file).ok()?;
        let tracker = self.tracker(0);
        let runtime = match self.compiled.format {
            LineFormat::Cri => Some(Runtime::Cri),
            LineFormat::Docker => Some(Runtime::Docker),
            LineFormat::Text | LineFormat::Json => None,
        };
        let mut w = Watched {
            path_value: path_value(&path),
            path,
            file,
            id,
            checksum,
            framer: Framer::new(
                runtime.map_or(self.config.max_line_bytes, |r| {
                    r.raw_line_limit(self.config.max_line_bytes)
                }),
                0,
            ),
            multiline: self.compiled.multiline.clone().map(Groups::new),
            joiner: runtime.map(|r| Joiner::new(r, self.config.max_line_bytes)),
            tracker,
            recent: Vec::new(),
            gone: false,
            at_eof: false,
            last_growth: now,
            twin_of: None,
            paused_until: None,
        };
        // A watched file with the same first line may have been truncated since the scan
        // looked at it (copytruncate racing the scan): notice that first, so this file is
        // recognized as its copy below rather than read again from the start.
        if let Some(c) = checksum {
            for j in 0..self.files.len() {
                if self.files[j].checksum == Some(c) && self.files[j].twin_of.is_none() {
                    self.check_truncated(j, now);
                }
            }
        }
        // 1. Its own checkpoint: same inode, same first line, not shorter than the offset.
        let own = self.orphans.iter().position(|o| {
            o.id == Some(id) && (o.checksum.is_none() || o.checksum == checksum) && size >= o.resume
        });
        if let Some(k) = own {
            let o = self.orphans.swap_remove(k);
            tracing::info!(file = %w.path.display(), offset = o.resume, "resuming file from its checkpoint");
            adopt(&mut w, o);
        } else if let Some(original) = checksum.and_then(|c| self.live_original(&w.file, c, size)) {
            // 2. A copy of a watched file that still holds the same bytes.
            tracing::info!(file = %w.path.display(), "file is a copy of a watched file; it takes over if the original is truncated");
            w.twin_of = Some(original);
        } else if let Some(k) = checksum.and_then(|c| {
            self.orphans.iter().position(|o| {
                o.checksum == Some(c)
                    && size >= o.resume
                    && o.tail.is_none_or(|t| tail_at(&w.file, o.resume) == Some(t))
            })
        }) {
            // 3. The copy of a file truncated since (copytruncate).
            let o = self.orphans.swap_remove(k);
            tracing::info!(file = %w.path.display(), copy_of = %o.path.display(), offset = o.resume, "file is the copy of a truncated file; continuing where that one stopped");
            adopt(&mut w, o);
        } else {
            let at = if !self.started && self.config.read_from == ReadFrom::End {
                size
            } else {
                0
            };
            w.tracker.acked = at;
            w.restart_at(at);
            tracing::info!(file = %w.path.display(), offset = at, "watching new file");
        }
        self.emitter.counters.files_added.add(1);
        self.files.push(w);
        self.dirty = true;
        Some(id)
    }
}

fn path_value(path: &Path) -> Value {
    Value::Bytes(Bytes::from(path.to_string_lossy().into_owned()))
}
