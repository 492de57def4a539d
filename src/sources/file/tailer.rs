//! The read loop of the `file` source.
//!
//! One task owns every watched file. Each round it drains the acknowledgements that came
//! back, evaluates the globs when `glob_interval` has passed, reads at most
//! `max_read_bytes` from each file in turn (the starting file rotates, so reading is fair),
//! emits the lines as batches, and does its housekeeping (multiline timeouts, releasing
//! rotated files, `remove_after`, writing checkpoints). Reads are positional (`pread`)
//! on open descriptors, so a renamed or deleted file is still read to its end.
//!
//! Acknowledgements and checkpoints are in `tracker.rs`, copytruncate and rotation
//! (orphans, dormant twins) in `rotation.rs`, turning lines into events in `emitter.rs`.
//!
//! File reads are synchronous: they hit the page cache, and each is bounded by a 64 KiB
//! chunk and `max_read_bytes` per file per round.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vrl::value::Value;

use super::FileSourceConfig;
use super::LineFormat;
use super::checkpoint::Record;
use super::container::Joiner;
use super::container::{Joined, RawLine};
use super::emitter::Counters;
use super::emitter::{Emitter, decode};
use super::fingerprint::{FileId, head_checksum};
use super::lines::Framer;
use super::multiline::{Groups, Message, Rules};
use super::orphan::Orphan;
use super::tracker::{Ack, Tracker};
use crate::component::{ComponentError, SourceContext, SourceOutput};
use crate::telemetry::ComponentState;

const CHUNK: usize = 64 * 1024;
const MAX_BATCH: usize = 1000;

/// What `check` compiled from the config.
pub(crate) struct Compiled {
    pub(crate) exclude: Vec<glob::Pattern>,
    pub(crate) multiline: Option<Rules>,
    /// `json: true` folded in.
    pub(crate) format: LineFormat,
}
pub(super) struct Watched {
    pub(super) path: PathBuf,
    pub(super) path_value: Value,
    pub(super) file: File,
    pub(super) id: FileId,
    pub(super) checksum: Option<u64>,
    pub(super) framer: Framer,
    pub(super) multiline: Option<Groups>,
    /// Rejoins lines a container runtime split (`format: cri` or `docker`).
    pub(super) joiner: Option<Joiner>,
    pub(super) tracker: Tracker,
    /// The last bytes fed to the framer (for the checksum before an offset).
    pub(super) recent: Vec<u8>,
    /// No glob matches it any more (renamed away or deleted).
    pub(super) gone: bool,
    pub(super) at_eof: bool,
    pub(super) last_growth: Instant,
    /// A copy of this (live) file: not read until the original is truncated or released.
    pub(super) twin_of: Option<FileId>,
    pub(super) paused_until: Option<Instant>,
}

impl Watched {
    /// The first byte whose line was not emitted yet.
    pub(super) fn unemitted(&self) -> u64 {
        let multiline = self.multiline.as_ref().and_then(Groups::pending_offset);
        let joiner = self.joiner.as_ref().and_then(Joiner::pending_offset);
        [multiline, joiner]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| self.framer.line_start())
    }

    fn holds_unemitted(&self) -> bool {
        self.framer.has_partial()
            || self.multiline.as_ref().is_some_and(|m| !m.is_empty())
            || self.joiner.as_ref().is_some_and(|j| !j.is_empty())
    }

    pub(super) fn restart_at(&mut self, at: u64) {
        self.framer.reset(at);
        self.recent.clear();
        if let Some(m) = &mut self.multiline {
            m.clear();
        }
        if let Some(j) = &mut self.joiner {
            j.clear();
        }
        self.at_eof = false;
    }
}

pub(crate) struct Tailer {
    pub(super) config: FileSourceConfig,
    pub(super) compiled: Compiled,
    pub(super) checkpoint_path: PathBuf,
    pub(super) files: Vec<Watched>,
    pub(super) orphans: Vec<Orphan>,
    pub(super) next_tracker: u64,
    pub(super) emitter: Emitter,
    ack_rx: mpsc::UnboundedReceiver<Ack>,
    chunk: Vec<u8>,
    round: usize,
    pub(super) started: bool,
    pub(super) dirty: bool,
    pub(super) orphan_ttl: Duration,
}

impl Tailer {
    pub(crate) fn new(
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
            emitter: Emitter::new(cx, host, compiled.format == LineFormat::Json, ack_tx),
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

    pub(crate) async fn run(mut self, mut cx: SourceContext) -> Result<(), ComponentError> {
        let source_id = cx.id;
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
        let mut joined = Vec::new();
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
            self.emitter.metrics.add_received_bytes(n);
            let bytes = &chunk[..n];
            w.remember(bytes);
            let counters = &self.emitter.counters;
            let Watched {
                framer,
                multiline,
                joiner,
                ..
            } = w;
            framer.feed(bytes, |line| {
                let Some(joiner) = joiner else {
                    if line.truncated {
                        counters.truncated_lines.add(1);
                    }
                    let msg = Message {
                        text: decode(line.bytes, line.truncated, counters),
                        offset: line.offset,
                        end: line.end,
                        meta: None,
                    };
                    group(multiline, msg, now, &mut messages);
                    return;
                };
                let raw = RawLine {
                    bytes: line.bytes,
                    offset: line.offset,
                    end: line.end,
                    truncated: line.truncated,
                };
                counters.note(joiner.push(raw, now, &mut joined));
                for j in joined.drain(..) {
                    group(multiline, message(j, counters), now, &mut messages);
                }
            });
            for msg in messages.drain(..) {
                end = msg.end;
                values.push(self.emitter.payload(msg, &w.path_value));
            }
            // A line a runtime split and not yet joined lies before what was emitted
            // after it: the checkpoint must not pass its start.
            end = end.min(w.unemitted());
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
            let counters = &self.emitter.counters;
            let mut lines = Vec::new();
            if finished {
                // The last line of a released file may lack its newline: emit it anyway.
                w.framer.flush_partial(|line| {
                    lines.push(Message {
                        text: decode(line.bytes, line.truncated, counters),
                        offset: line.offset,
                        end: line.end,
                        meta: None,
                    })
                });
            }
            if let Some(joiner) = &mut w.joiner {
                let mut joined = Vec::new();
                for line in lines.drain(..) {
                    let raw = RawLine {
                        bytes: line.text.as_bytes(),
                        offset: line.offset,
                        end: line.end,
                        truncated: false,
                    };
                    counters.note(joiner.push(raw, now, &mut joined));
                }
                joiner.flush(now, finished, &mut joined);
                lines = joined.into_iter().map(|j| message(j, counters)).collect();
            }
            let mut messages = Vec::new();
            for line in lines {
                group(&mut w.multiline, line, now, &mut messages);
            }
            if let Some(m) = &mut w.multiline {
                m.flush(now, finished, &mut messages);
            }
            if !messages.is_empty() {
                let end = messages.last().map_or(0, |m| m.end).min(w.unemitted());
                let values = messages
                    .into_iter()
                    .map(|m| self.emitter.payload(m, &w.path_value))
                    .collect();
                self.emitter.send(&mut w.tracker, values, end, out).await;
                continue;
            }
            if w.tracker.pending.is_empty() && w.tracker.acked < w.unemitted() {
                // What a joined line held back, once it was emitted and settled.
                w.tracker.acked = w.unemitted();
                self.dirty = true;
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
}

/// A joined container line as a message: decoded once, whole, so a character split
/// between fragments survives; a cut is counted once per line.
fn message(j: Joined, counters: &Counters) -> Message {
    if j.cut {
        counters.truncated_lines.add(1);
    }
    Message {
        text: decode(&j.bytes, j.cut, counters),
        offset: j.offset,
        end: j.end,
        meta: j.meta.map(Box::new),
    }
}

/// A line into the multiline stage, or straight out without one.
fn group(multiline: &mut Option<Groups>, line: Message, now: Instant, out: &mut Vec<Message>) {
    match multiline {
        Some(m) => m.push(line, now, out),
        None => out.push(line),
    }
}
