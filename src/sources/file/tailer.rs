//! The read loop of the `file` source.
//!
//! One task owns every watched file. Each round it drains the acknowledgements that came
//! back, evaluates the globs when `glob_interval` has passed, reads at most
//! `max_read_bytes` from each file in turn (the starting file rotates, so reading is fair),
//! emits the lines as batches, and does its housekeeping (multiline timeouts, releasing
//! rotated files, `remove_after`, writing checkpoints). Reads are positional (`pread`)
//! on open descriptors, so a renamed or deleted file is still read to its end.
//!
//! Per file, a [`Tracker`] keeps the batches sent and not yet settled, in order; the
//! acknowledged offset advances over the contiguous prefix settled `Delivered` or
//! `Rejected`. An `Errored` batch rewinds the file to the acknowledged offset (after a
//! pause), so its lines are read and sent again: at least once, never skipped.
//!
//! Copytruncate: when a file shrinks or its first line changes, what was known about
//! its old content (the tracker, the offset reached, its head checksum) becomes an
//! [`Orphan`]. A file appearing with the same head checksum and the same bytes before
//! that offset is the copy, and continues from there instead of from its start. A copy
//! that appears while the original still holds the same bytes is kept as a dormant twin
//! and takes over when the original is truncated or released.
//!
//! File reads are synchronous: they hit the page cache, and each is bounded by a 64 KiB
//! chunk and `max_read_bytes` per file per round.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use vrl::value::{KeyString, ObjectMap, Value};

use super::checkpoint::{self, Record};
use super::fingerprint::{FileId, fnv1a, head_checksum, same_content};
use super::lines::Framer;
use super::multiline::{Aggregator, Message, Rules};
use super::{FileSourceConfig, ReadFrom};
use crate::component::{ComponentError, SourceContext, SourceOutput};
use crate::event::{BatchAck, Event, EventStatus};
use crate::telemetry::{ComponentMetrics, ComponentState, LabeledCounter, LatencyRecorder};

const CHUNK: usize = 64 * 1024;
const MAX_BATCH: usize = 1000;
/// Bytes before an offset whose checksum vouches for a copy continuing there.
const TAIL: usize = 256;
/// How long reading a file pauses after one of its batches errored.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What `check` compiled from the config.
pub struct Compiled {
    pub exclude: Vec<glob::Pattern>,
    pub multiline: Option<Rules>,
}

struct Pending {
    seq: u64,
    end: u64,
    status: Option<EventStatus>,
}

/// The acknowledgement state of one file's content.
struct Tracker {
    id: u64,
    /// Every line before this offset is settled.
    acked: u64,
    pending: VecDeque<Pending>,
    next_seq: u64,
    errored: bool,
    /// `(offset, checksum of the bytes before it)`, cached for checkpoints.
    tail_cache: Option<(u64, Option<u64>)>,
}

impl Tracker {
    fn new(id: u64, acked: u64) -> Self {
        Self {
            id,
            acked,
            pending: VecDeque::new(),
            next_seq: 0,
            errored: false,
            tail_cache: None,
        }
    }

    fn push(&mut self, end: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back(Pending {
            seq,
            end,
            status: None,
        });
        seq
    }

    /// Records an outcome; true when the acknowledged offset moved.
    fn settle(&mut self, seq: u64, status: EventStatus) -> bool {
        // Outcomes of batches dropped by a rewind find nothing: they are read again.
        if let Some(p) = self.pending.iter_mut().find(|p| p.seq == seq) {
            p.status = Some(status);
        }
        let mut moved = false;
        while let Some(front) = self.pending.front() {
            match front.status {
                Some(EventStatus::Delivered | EventStatus::Rejected) => {
                    self.acked = front.end;
                    self.pending.pop_front();
                    moved = true;
                }
                Some(EventStatus::Errored) => {
                    self.errored = true;
                    break;
                }
                None => break,
            }
        }
        moved
    }
}

/// What is known about content whose file went away (truncated in place, or a
/// checkpoint not matched yet): a copy of it may turn up.
struct Orphan {
    id: Option<FileId>,
    checksum: Option<u64>,
    path: PathBuf,
    /// Where a copy continues: the first byte not emitted.
    resume: u64,
    /// Checksum of the bytes before `resume`, when known.
    tail: Option<u64>,
    tracker: Tracker,
    expires: Instant,
}

struct Watched {
    path: PathBuf,
    path_value: Value,
    file: File,
    id: FileId,
    checksum: Option<u64>,
    framer: Framer,
    multiline: Option<Aggregator>,
    tracker: Tracker,
    /// The last bytes fed to the framer (for the checksum before an offset).
    recent: Vec<u8>,
    /// No glob matches it any more (renamed away or deleted).
    gone: bool,
    at_eof: bool,
    last_growth: Instant,
    /// A copy of this (live) file: not read until the original is truncated or released.
    twin_of: Option<FileId>,
    paused_until: Option<Instant>,
}

impl Watched {
    /// The first byte whose line was not emitted yet.
    fn unemitted(&self) -> u64 {
        self.multiline
            .as_ref()
            .and_then(Aggregator::pending_offset)
            .unwrap_or_else(|| self.framer.line_start())
    }

    fn holds_unemitted(&self) -> bool {
        self.framer.has_partial() || self.multiline.as_ref().is_some_and(|m| !m.is_empty())
    }

    fn restart_at(&mut self, at: u64) {
        self.framer.reset(at);
        self.recent.clear();
        if let Some(m) = &mut self.multiline {
            m.clear();
        }
        self.at_eof = false;
    }

    /// The checksum of the bytes before `at`, from the bytes just read when they reach
    /// back far enough.
    fn tail_from_recent(&self, at: u64) -> Option<u64> {
        let want = TAIL.min(at as usize);
        (at == self.framer.pos() && self.recent.len() >= want)
            .then(|| fnv1a(&self.recent[self.recent.len() - want..]))
    }

    fn remember(&mut self, chunk: &[u8]) {
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

/// The checksum of the bytes before `at` in `file`.
fn tail_at(file: &File, at: u64) -> Option<u64> {
    let want = TAIL.min(at as usize);
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..], at - want as u64 + filled as u64) {
            Ok(0) | Err(_) => return None,
            Ok(n) => filled += n,
        }
    }
    Some(fnv1a(&buf))
}

struct Ack {
    tracker: u64,
    seq: u64,
    status: EventStatus,
}

struct Counters {
    truncated_lines: Arc<LabeledCounter>,
    invalid_utf8: Arc<LabeledCounter>,
    json_errors: Arc<LabeledCounter>,
    files_added: Arc<LabeledCounter>,
    files_rotated: Arc<LabeledCounter>,
    files_truncated: Arc<LabeledCounter>,
    files_released: Arc<LabeledCounter>,
    files_removed: Arc<LabeledCounter>,
}

impl Counters {
    fn new(m: &ComponentMetrics) -> Self {
        Self {
            truncated_lines: m.counter(
                "sluice_file_truncated_lines_total",
                "Lines longer than max_line_bytes, cut to it.",
                &[],
            ),
            invalid_utf8: m.counter(
                "sluice_file_invalid_utf8_lines_total",
                "Lines that were not valid UTF-8 (invalid bytes replaced by U+FFFD).",
                &[],
            ),
            json_errors: m.counter(
                "sluice_file_json_errors_total",
                "Lines that did not parse as JSON (kept as message).",
                &[],
            ),
            files_added: m.counter(
                "sluice_file_files_added_total",
                "Files the source started watching.",
                &[],
            ),
            files_rotated: m.counter(
                "sluice_file_files_rotated_total",
                "Watched files renamed or deleted (rotation).",
                &[],
            ),
            files_truncated: m.counter(
                "sluice_file_files_truncated_total",
                "Watched files truncated or rewritten in place, read again from the start.",
                &[],
            ),
            files_released: m.counter(
                "sluice_file_files_released_total",
                "Rotated files read to their end and released.",
                &[],
            ),
            files_removed: m.counter(
                "sluice_file_files_removed_total",
                "Files deleted by remove_after once read and delivered.",
                &[],
            ),
        }
    }
}

/// Turns lines into events and sends them.
struct Emitter {
    source: Arc<str>,
    host: Value,
    json: bool,
    ack_tx: mpsc::UnboundedSender<Ack>,
    metrics: Arc<ComponentMetrics>,
    latency: Arc<LatencyRecorder>,
    counters: Counters,
}

impl Emitter {
    fn value(&self, msg: Message, file: &Value) -> Value {
        let mut map = if self.json {
            match serde_json::from_str::<Value>(&msg.text) {
                Ok(Value::Object(m)) => m,
                Ok(other) => ObjectMap::from([(KeyString::from("message"), other)]),
                Err(_) => {
                    self.counters.json_errors.add(1);
                    self.metrics.add_errors(1);
                    ObjectMap::from([(
                        KeyString::from("message"),
                        Value::Bytes(Bytes::from(msg.text)),
                    )])
                }
            }
        } else {
            ObjectMap::from([(
                KeyString::from("message"),
                Value::Bytes(Bytes::from(msg.text)),
            )])
        };
        map.insert(KeyString::from("file"), file.clone());
        map.insert(KeyString::from("host"), self.host.clone());
        map.insert(
            KeyString::from("offset"),
            Value::Integer(i64::try_from(msg.offset).unwrap_or(i64::MAX)),
        );
        Value::Object(map)
    }

    /// Sends one batch ending at `end` and tracks its acknowledgement.
    async fn send(
        &self,
        tracker: &mut Tracker,
        values: Vec<Value>,
        end: u64,
        out: &mut SourceOutput,
    ) {
        let n = values.len();
        let (ack, done) = BatchAck::with_receiver(n, Some(Arc::clone(&self.latency)));
        let now = chrono::Utc::now();
        let batch: Vec<Event> = values
            .into_iter()
            .map(|v| Event::new(v, Arc::clone(&self.source), now).with_ack(ack.event_ack()))
            .collect();
        drop(ack);
        let seq = tracker.push(end);
        let (tx, id) = (self.ack_tx.clone(), tracker.id);
        tokio::spawn(async move {
            let status = done.wait().await;
            let _ = tx.send(Ack {
                tracker: id,
                seq,
                status,
            });
        });
        self.metrics.add_received(n);
        out.send(batch).await;
    }
}

/// Decodes a framed line: lossy UTF-8 (counted), except that a multi-byte character cut
/// by truncation is dropped rather than counted as invalid.
fn decode(bytes: &[u8], truncated: bool, counters: &Counters) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(e) if truncated && e.error_len().is_none() => {
            String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned()
        }
        Err(_) => {
            counters.invalid_utf8.add(1);
            String::from_utf8_lossy(bytes).into_owned()
        }
    }
}

pub struct Tailer {
    config: FileSourceConfig,
    compiled: Compiled,
    checkpoint_path: PathBuf,
    files: Vec<Watched>,
    orphans: Vec<Orphan>,
    next_tracker: u64,
    emitter: Emitter,
    ack_rx: mpsc::UnboundedReceiver<Ack>,
    chunk: Vec<u8>,
    round: usize,
    started: bool,
    dirty: bool,
    orphan_ttl: Duration,
}

impl Tailer {
    pub fn new(
        config: FileSourceConfig,
        compiled: Compiled,
        checkpoint_path: PathBuf,
        stored: Vec<Record>,
        cx: &SourceContext,
    ) -> Self {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let host = config.host.clone().unwrap_or_else(|| {
            hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let orphan_ttl = (config.glob_interval * 10).max(Duration::from_secs(60));
        let now = Instant::now();
        let mut me = Self {
            emitter: Emitter {
                source: Arc::clone(&cx.id),
                host: Value::Bytes(Bytes::from(host)),
                json: config.json,
                ack_tx,
                metrics: Arc::clone(&cx.metrics),
                latency: Arc::clone(cx.telemetry.latency()),
                counters: Counters::new(&cx.metrics),
            },
            config,
            compiled,
            checkpoint_path,
            files: Vec::new(),
            orphans: Vec::new(),
            next_tracker: 0,
            ack_rx,
            chunk: vec![0; CHUNK],
            round: 0,
            started: false,
            dirty: false,
            orphan_ttl,
        };
        for r in stored {
            let tracker = me.tracker(r.offset);
            me.orphans.push(Orphan {
                id: Some(r.id),
                checksum: r.checksum,
                path: r.path,
                resume: r.offset,
                tail: r.tail,
                tracker,
                expires: now + orphan_ttl,
            });
        }
        me
    }

    fn tracker(&mut self, acked: u64) -> Tracker {
        self.next_tracker += 1;
        Tracker::new(self.next_tracker, acked)
    }

    fn pending(&self) -> usize {
        self.files
            .iter()
            .map(|f| f.tracker.pending.len())
            .sum::<usize>()
            + self
                .orphans
                .iter()
                .map(|o| o.tracker.pending.len())
                .sum::<usize>()
    }

    pub async fn run(mut self, mut cx: SourceContext) -> Result<(), ComponentError> {
        let source_id = Arc::clone(&cx.id);
        tracing::info!(component_id = %source_id, include = ?self.config.include, "file source starting");
        let mut next_scan = Instant::now();
        let mut next_save = Instant::now() + self.config.checkpoint_interval;
        let mut saving = None;
        loop {
            if cx.shutdown.is_cancelled() {
                break;
            }
            while let Ok(ack) = self.ack_rx.try_recv() {
                self.apply(ack);
            }
            let now = Instant::now();
            self.rewind_errored(now);
            if now >= next_scan {
                self.scan(now);
                next_scan = now + self.config.glob_interval;
            }
            let read = self.read_round(&mut cx.out).await;
            self.housekeeping(&mut cx.out).await;
            if saving
                .as_ref()
                .is_some_and(tokio::task::JoinHandle::is_finished)
                && let Some(done) = saving.take()
            {
                let result = done.await;
                self.saved(result);
            }
            if now >= next_save && self.dirty && saving.is_none() {
                saving = Some(self.save());
                next_save = now + self.config.checkpoint_interval;
            }
            if self.pending() >= self.config.max_pending_batches {
                // Backpressure: nothing more is read until batches settle.
                tokio::select! {
                    Some(ack) = self.ack_rx.recv() => self.apply(ack),
                    () = cx.shutdown.cancelled() => break,
                }
            } else if read == 0 {
                let wait = self
                    .config
                    .poll_interval
                    .min(next_scan.saturating_duration_since(Instant::now()));
                tokio::select! {
                    Some(ack) = self.ack_rx.recv() => self.apply(ack),
                    () = tokio::time::sleep(wait) => {}
                    () = cx.shutdown.cancelled() => break,
                }
            }
        }
        // Stop reading, but let what was sent settle, so the final checkpoint covers it
        // and a restart reads nothing twice. (The topology's shutdown timeout bounds this.)
        while self.pending() > 0 {
            match self.ack_rx.recv().await {
                Some(ack) => self.apply(ack),
                None => break,
            }
        }
        if let Some(done) = saving.take() {
            let result = done.await;
            self.saved(result);
        }
        let result = self.save().await;
        self.saved(result);
        tracing::info!(component_id = %source_id, files = self.files.len(), "file source stopped");
        cx.metrics.set_state(ComponentState::Stopped);
        Ok(())
    }

    fn apply(&mut self, ack: Ack) {
        let tracker = self
            .files
            .iter_mut()
            .map(|f| &mut f.tracker)
            .chain(self.orphans.iter_mut().map(|o| &mut o.tracker))
            .find(|t| t.id == ack.tracker);
        if let Some(t) = tracker
            && t.settle(ack.seq, ack.status)
        {
            self.dirty = true;
        }
    }

    /// A file whose oldest unsettled batch errored is read again from its acknowledged
    /// offset (after a pause, so a failing sink is not hammered).
    fn rewind_errored(&mut self, now: Instant) {
        for w in &mut self.files {
            if !w.tracker.errored {
                continue;
            }
            let at = w.tracker.acked;
            tracing::warn!(file = %w.path.display(), offset = at, "delivery failed; reading the file again from the last delivered line");
            w.tracker.errored = false;
            w.tracker.pending.clear();
            w.restart_at(at);
            w.paused_until = Some(now + ERROR_PAUSE);
        }
        for o in &mut self.orphans {
            // Nothing to read it from: the checkpoint stays where it is.
            if o.tracker.errored {
                o.tracker.errored = false;
                o.tracker.pending.clear();
                o.resume = o.tracker.acked;
                o.tail = None;
            }
        }
    }

    /// Truncation checks, then the globs: new files, renames, files gone.
    fn scan(&mut self, now: Instant) {
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
        let mut w = Watched {
            path_value: path_value(&path),
            path,
            file,
            id,
            checksum,
            framer: Framer::new(self.config.max_line_bytes, 0),
            multiline: self.compiled.multiline.clone().map(Aggregator::new),
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

    /// The watched file `copy` (of `size` bytes, first line `checksum`) was copied from.
    fn live_original(&self, copy: &File, checksum: u64, size: u64) -> Option<FileId> {
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
    fn check_truncated(&mut self, i: usize, now: Instant) -> bool {
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

    fn truncated(&mut self, i: usize, now: Instant) {
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
    fn hand_over(&mut self, original: FileId, orphan: Orphan) {
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

    /// Reads every file once, starting with a different one each round.
    async fn read_round(&mut self, out: &mut SourceOutput) -> usize {
        let n = self.files.len();
        if n == 0 {
            return 0;
        }
        self.round = self.round.wrapping_add(1);
        let mut total = 0;
        // Counted once per round (not per file: that would be quadratic in the files).
        let mut room = self
            .config
            .max_pending_batches
            .saturating_sub(self.pending());
        for k in 0..n {
            if room == 0 {
                break;
            }
            let (bytes, batches) = self.read_file((self.round + k) % n, room, out).await;
            total += bytes;
            room = room.saturating_sub(batches);
        }
        total
    }

    /// Reads file `i` for one turn, sending at most `room` batches; returns the bytes
    /// read and the batches sent.
    async fn read_file(&mut self, i: usize, room: usize, out: &mut SourceOutput) -> (usize, usize) {
        let now = Instant::now();
        {
            let w = &mut self.files[i];
            if w.twin_of.is_some() || w.paused_until.is_some_and(|t| t > now) {
                return (0, 0);
            }
            w.paused_until = None;
        }
        let Ok(meta) = self.files[i].file.metadata() else {
            return (0, 0);
        };
        let size = meta.len();
        let w = &self.files[i];
        if size < w.framer.pos() {
            self.truncated(i, now);
            return (0, 0);
        }
        if size == w.framer.pos() {
            self.files[i].at_eof = true;
            return (0, 0);
        }
        // It grew. Before reading on, make sure it is still the same content: a
        // copytruncate followed by new writes can leave it as long as before.
        let head = head_checksum(&w.file).ok().flatten();
        match w.checksum {
            Some(c) if head != Some(c) => {
                self.truncated(i, now);
                return (0, 0);
            }
            None => self.files[i].checksum = head,
            Some(_) => {}
        }
        let mut chunk = std::mem::take(&mut self.chunk);
        let mut budget = self.config.max_read_bytes;
        let mut total = 0;
        let mut values = Vec::new();
        let mut messages = Vec::new();
        let mut end = 0;
        let mut sent = 0;
        while budget > 0 {
            let w = &mut self.files[i];
            let want = CHUNK.min(budget);
            let n = match w.file.read_at(&mut chunk[..want], w.framer.pos()) {
                Ok(0) => {
                    w.at_eof = true;
                    break;
                }
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(file = %w.path.display(), error = %e, "read failed");
                    break;
                }
            };
            w.at_eof = false;
            w.last_growth = now;
            budget = budget.saturating_sub(n);
            total += n;
            let bytes = &chunk[..n];
            w.remember(bytes);
            let counters = &self.emitter.counters;
            let Watched {
                framer, multiline, ..
            } = w;
            framer.feed(bytes, |line| {
                if line.truncated {
                    counters.truncated_lines.add(1);
                }
                let msg = Message {
                    text: decode(line.bytes, line.truncated, counters),
                    offset: line.offset,
                    end: line.end,
                };
                match multiline {
                    Some(m) => m.push(msg, now, &mut messages),
                    None => messages.push(msg),
                }
            });
            for msg in messages.drain(..) {
                end = msg.end;
                values.push(self.emitter.value(msg, &w.path_value));
            }
            if values.len() >= MAX_BATCH {
                let batch = std::mem::take(&mut values);
                self.emitter
                    .send(&mut self.files[i].tracker, batch, end, out)
                    .await;
                // Backpressure within a file's turn too: a slow sink must not let one
                // turn run on for a whole `max_read_bytes` (nor hold off checkpoints).
                sent += 1;
                if sent >= room {
                    break;
                }
            }
        }
        self.chunk = chunk;
        let w = &mut self.files[i];
        if !values.is_empty() {
            self.emitter.send(&mut w.tracker, values, end, out).await;
            sent += 1;
        } else if w.tracker.pending.is_empty() && w.tracker.acked < w.unemitted() {
            // Only empty lines since the last batch: nothing to wait for.
            w.tracker.acked = w.unemitted();
            self.dirty = true;
        }
        (total, sent)
    }

    /// Multiline timeouts, rotated files read to their end, `remove_after`.
    async fn housekeeping(&mut self, out: &mut SourceOutput) {
        let now = Instant::now();
        let mut release = Vec::new();
        for i in 0..self.files.len() {
            let w = &mut self.files[i];
            if w.twin_of.is_some() {
                if w.gone {
                    release.push(i);
                }
                continue;
            }
            let quiet = now.saturating_duration_since(w.last_growth);
            let finished = w.gone && w.at_eof && quiet >= self.config.rotate_wait;
            let mut messages = Vec::new();
            if let Some(m) = &mut w.multiline {
                m.flush(now, finished, &mut messages);
            }
            if finished {
                // The last line of a released file may lack its newline: emit it anyway.
                let counters = &self.emitter.counters;
                w.framer.flush_partial(|line| {
                    messages.push(Message {
                        text: decode(line.bytes, line.truncated, counters),
                        offset: line.offset,
                        end: line.end,
                    })
                });
            }
            if !messages.is_empty() {
                let end = messages.last().map_or(0, |m| m.end);
                let values = messages
                    .into_iter()
                    .map(|m| self.emitter.value(m, &w.path_value))
                    .collect();
                self.emitter.send(&mut w.tracker, values, end, out).await;
                continue;
            }
            let settled = w.tracker.pending.is_empty() && !w.holds_unemitted();
            if finished && settled {
                release.push(i);
            } else if let Some(after) = self.config.remove_after
                && !w.gone
                && w.at_eof
                && settled
                && quiet >= after
                && w.tracker.acked == w.framer.pos()
            {
                // Only if the path still names this file: never delete a newer one.
                let same = std::fs::metadata(&w.path).is_ok_and(|m| FileId::of(&m) == w.id);
                if same {
                    match std::fs::remove_file(&w.path) {
                        Ok(()) => {
                            tracing::info!(file = %w.path.display(), "file read and delivered; removed");
                            self.emitter.counters.files_removed.add(1);
                            release.push(i);
                        }
                        Err(e) => {
                            tracing::warn!(file = %w.path.display(), error = %e, "cannot remove file")
                        }
                    }
                }
            }
        }
        for i in release.into_iter().rev() {
            let w = self.files.swap_remove(i);
            self.dirty = true;
            if w.twin_of.is_some() {
                continue;
            }
            tracing::info!(file = %w.path.display(), offset = w.framer.pos(), "file read to its end; released");
            self.emitter.counters.files_released.add(1);
            let resume = w.framer.pos();
            let orphan = Orphan {
                id: None,
                checksum: w.checksum,
                path: w.path.clone(),
                resume,
                tail: w.tail_from_recent(resume),
                tracker: w.tracker,
                expires: now,
            };
            // A dormant copy continues after what the original had; otherwise the
            // file's checkpoint is dropped with it.
            if self.files.iter().any(|t| t.twin_of == Some(w.id)) {
                self.hand_over(w.id, orphan);
            }
        }
    }

    /// Starts writing the acknowledged offsets (atomically, on a blocking thread: an
    /// fsync can take long on a busy disk, and reading goes on meanwhile). One write at a
    /// time; returns it.
    fn save(&mut self) -> tokio::task::JoinHandle<Result<(), checkpoint::CheckpointError>> {
        self.dirty = false;
        let mut records = Vec::with_capacity(self.files.len() + self.orphans.len());
        for w in &mut self.files {
            if w.twin_of.is_some() {
                continue;
            }
            let acked = w.tracker.acked;
            let tail = match w.tracker.tail_cache {
                Some((at, tail)) if at == acked => tail,
                _ => {
                    let tail = tail_at(&w.file, acked);
                    w.tracker.tail_cache = Some((acked, tail));
                    tail
                }
            };
            records.push(Record {
                id: w.id,
                checksum: w.checksum,
                path: w.path.clone(),
                offset: acked,
                tail,
            });
        }
        for o in &self.orphans {
            if let Some(id) = o.id {
                records.push(Record {
                    id,
                    checksum: o.checksum,
                    path: o.path.clone(),
                    offset: o.tracker.acked,
                    tail: if o.tracker.acked == o.resume {
                        o.tail
                    } else {
                        None
                    },
                });
            }
        }
        let path = self.checkpoint_path.clone();
        tokio::task::spawn_blocking(move || checkpoint::save(&path, records))
    }

    /// Whether the last write failed (then the offsets are written again next time).
    fn saved(
        &mut self,
        result: Result<Result<(), checkpoint::CheckpointError>, tokio::task::JoinError>,
    ) {
        let error = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(error = %error, "cannot write checkpoints");
        self.emitter.metrics.add_errors(1);
        self.dirty = true;
    }
}

fn adopt(w: &mut Watched, o: Orphan) {
    w.tracker = o.tracker;
    w.twin_of = None;
    w.restart_at(o.resume);
}

fn path_value(path: &Path) -> Value {
    Value::Bytes(Bytes::from(path.to_string_lossy().into_owned()))
}
