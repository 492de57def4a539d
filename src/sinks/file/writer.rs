//! Writing the `file` sink's batches: each event's path is rendered and confined, lines
//! are grouped per file and appended, files rotate by time or size, the least recently
//! written file is closed once `max_open_files` are open, and what could not be written
//! is settled errored (may pass) or dead-lettered (never will).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::format::StrftimeItems;
use tokio::io::AsyncWriteExt;

use super::manifest::Manifest;
use super::paths::{self, OpenError};
use super::{FilePaths, FileSinkConfig, Rotation, Sync};
use crate::clock::Clock;
use crate::component::{ComponentError, SinkContext, delivered};
use crate::delivery::{DeadLetter, Failure};
use crate::event::{Event, EventStatus, settle_all};
use crate::telemetry::{ErrorType, Stage};
use crate::template::Template;

pub(super) struct OpenFile {
    file: tokio::fs::File,
    size: u64,
    /// When it was last written (a counter), for closing the least recently used.
    last_used: u64,
    /// Written since its last fsync.
    unsynced: bool,
}

pub(super) struct Writer {
    pub(super) paths: FilePaths,
    rotation: Option<Rotation>,
    max_bytes: u64,
    pub(super) retention: Option<chrono::Duration>,
    sync: Sync,
    pub(super) clock: Arc<dyn Clock>,
    max_open: usize,
    pub(super) open: HashMap<PathBuf, OpenFile>,
    tick: u64,
    last_sync: Option<std::time::Instant>,
    /// With `retention_days`: the files this sink created.
    pub(super) manifest: Option<Manifest>,
    /// Files closed to make room during the current batch whose final flush or fsync
    /// failed: their lines of this batch are not settled delivered.
    close_failures: HashMap<PathBuf, String>,
}

/// What became of a batch.
#[derive(Default)]
struct Outcome {
    written: Vec<Event>,
    /// The bytes of the lines of `written`.
    written_bytes: usize,
    /// Refused for good, with the reason: dead letter.
    rejected: Vec<(String, Event)>,
    /// Not written for a reason that may pass (disk full): the source may retry.
    errored: Vec<Event>,
    /// The first error behind `errored`.
    error: Option<String>,
}

impl Outcome {
    fn fail(&mut self, events: Vec<Event>, error: String) {
        self.errored.extend(events);
        self.error.get_or_insert(error);
    }
}

/// Lines bound for one file.
struct Group {
    path: PathBuf,
    bytes: Vec<u8>,
    events: Vec<Event>,
}

pub(super) async fn run(mut w: Writer, mut cx: SinkContext) -> Result<(), ComponentError> {
    let dead_letter = DeadLetter::new(
        Arc::clone(&cx.id),
        cx.outputs.first().cloned(),
        Arc::clone(&cx.metrics),
    );
    w.apply_retention().await;
    let mut retention_checked = w.clock.wall();
    while let Some(batch) = cx.input.recv().await {
        cx.metrics.add_received(batch.len());
        let outcome = w.write(batch).await;
        cx.metrics.add_sent_bytes(outcome.written_bytes);
        delivered(&cx.metrics, outcome.written);
        if !outcome.errored.is_empty() {
            let error = outcome.error.unwrap_or_default();
            tracing::error!(component_id = %cx.id, events = outcome.errored.len(), error = %error, "cannot write events");
            cx.metrics
                .add_errors(outcome.errored.len(), ErrorType::Writer, Stage::Sending);
            settle_all(outcome.errored, EventStatus::Errored);
        }
        // Events refused for the same reason leave together.
        let mut by_reason: Vec<(String, Vec<Event>)> = Vec::new();
        for (reason, event) in outcome.rejected {
            match by_reason.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, events)) => events.push(event),
                None => by_reason.push((reason, vec![event])),
            }
        }
        for (error, events) in by_reason {
            let failure = Failure {
                error,
                status: None,
                attempts: 0,
                body: None,
            };
            dead_letter.send(events, &failure).await;
        }
        let now = w.clock.wall();
        if now - retention_checked >= chrono::Duration::hours(1) {
            w.apply_retention().await;
            retention_checked = now;
        }
    }
    for f in w.open.values_mut() {
        f.file.flush().await?;
        f.file.sync_data().await?;
    }
    Ok(())
}
impl Writer {
    pub(super) fn new(
        config: &FileSinkConfig,
        paths: FilePaths,
        clock: Arc<dyn Clock>,
        manifest: Option<Manifest>,
    ) -> Self {
        Self {
            paths,
            rotation: config.rotation,
            max_bytes: config.max_bytes,
            retention: config
                .retention_days
                .map(|d| chrono::Duration::days(i64::from(d))),
            sync: config.sync,
            clock,
            max_open: config.max_open_files,
            open: HashMap::new(),
            tick: 0,
            last_sync: None,
            manifest,
            close_failures: HashMap::new(),
        }
    }

    fn render(&self, event: &Event) -> Result<PathBuf, String> {
        let now = self.clock.wall();
        let mut dated = String::new();
        use std::fmt::Write;
        write!(
            dated,
            "{}",
            now.format_with_items(StrftimeItems::new(&self.paths.pattern))
        )
        .map_err(|_| "cannot format the file name".to_string())?;
        let rendered = Template::parse(&dated)?.render(event)?;
        paths::confine(&self.paths.root, &rendered)?;
        Ok(PathBuf::from(rendered))
    }

    async fn write(&mut self, batch: Vec<Event>) -> Outcome {
        let mut outcome = Outcome::default();
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<PathBuf, usize> = HashMap::new();
        let mut line = Vec::new();
        for event in batch {
            let path = match self.render(&event) {
                Ok(p) => p,
                Err(reason) => {
                    outcome.rejected.push((reason, event));
                    continue;
                }
            };
            line.clear();
            if let Err(e) = event.to_json_line(&mut line) {
                outcome
                    .rejected
                    .push((format!("cannot encode the event as JSON: {e}"), event));
                continue;
            }
            line.push(b'\n');
            let i = *index.entry(path.clone()).or_insert_with(|| {
                groups.push(Group {
                    path,
                    bytes: Vec::new(),
                    events: Vec::new(),
                });
                groups.len() - 1
            });
            groups[i].bytes.extend_from_slice(&line);
            groups[i].events.push(event);
        }
        // Time-based rotation: files no longer rendered are finished.
        if matches!(self.rotation, Some(Rotation::Daily | Rotation::Hourly)) {
            let stale: Vec<PathBuf> = self
                .open
                .keys()
                .filter(|p| !index.contains_key(*p))
                .cloned()
                .collect();
            for p in stale {
                if let Some(f) = self.open.remove(&p)
                    && let Err(e) = close(f).await
                {
                    tracing::error!(file = %p.display(), error = %e, "cannot sync a finished file");
                }
            }
        }
        self.close_failures.clear();
        let mut written: Vec<Group> = Vec::new();
        for group in groups {
            match self.append(&group.path, &group.bytes).await {
                Ok(()) => written.push(group),
                Err(OpenError::Reject(reason)) => outcome
                    .rejected
                    .extend(group.events.into_iter().map(|e| (reason.clone(), e))),
                Err(e @ OpenError::Io { .. }) => outcome.fail(group.events, e.to_string()),
            }
        }
        let due = match self.sync {
            Sync::Always => true,
            Sync::Interval => self
                .last_sync
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1)),
        };
        // A file closed to make room was flushed and synced then; the others are now.
        for group in written {
            let result = match self.open.get_mut(&group.path) {
                Some(f) => finish(f, due).await,
                None => match self.close_failures.get(&group.path) {
                    Some(e) => Err(std::io::Error::other(e.clone())),
                    None => Ok(()),
                },
            };
            match result {
                Ok(()) => {
                    outcome.written_bytes += group.bytes.len();
                    outcome.written.extend(group.events);
                }
                Err(e) => {
                    self.open.remove(&group.path);
                    outcome.fail(
                        group.events,
                        format!("cannot write `{}`: {e}", group.path.display()),
                    );
                }
            }
        }
        if due {
            for (p, f) in &mut self.open {
                if let Err(e) = finish(f, true).await {
                    tracing::error!(file = %p.display(), error = %e, "cannot sync a file");
                }
            }
            self.last_sync = Some(std::time::Instant::now());
        }
        outcome
    }

    /// Appends `bytes` to `path`, rotating by size and opening it as needed.
    async fn append(&mut self, path: &Path, bytes: &[u8]) -> Result<(), OpenError> {
        let io = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Opened first so a file closed to make room (or left by an earlier run) has its
        // size known before the size rule is applied.
        if !self.open.contains_key(path) {
            self.make_room().await;
            let file = self.open_file(path).await?;
            self.open.insert(path.to_path_buf(), file);
        }
        if self.rotation == Some(Rotation::Size)
            && let Some(f) = self.open.get(path)
            && f.size > 0
            && f.size + bytes.len() as u64 > self.max_bytes
        {
            // A name one `.<n>` short of NAME_MAX cannot rotate: that is the name's fault.
            self.rotate_by_size(path)
                .await
                .map_err(|e| paths::classify(path, e))?;
            let file = self.open_file(path).await?;
            self.open.insert(path.to_path_buf(), file);
        }
        self.tick += 1;
        let tick = self.tick;
        let Some(f) = self.open.get_mut(path) else {
            return Ok(());
        };
        f.last_used = tick;
        f.unsynced = true;
        if let Err(e) = f.file.write_all(bytes).await {
            // Where the file stands is unknown: reopen it next time.
            self.open.remove(path);
            return Err(io(e));
        }
        f.size += bytes.len() as u64;
        Ok(())
    }

    /// Closes the least recently written files until one more may open.
    async fn make_room(&mut self) {
        while self.open.len() >= self.max_open {
            let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, f)| f.last_used)
                .map(|(p, _)| p.clone())
            else {
                return;
            };
            if let Some(f) = self.open.remove(&oldest) {
                tracing::debug!(file = %oldest.display(), "max_open_files reached; closing the least recently written file");
                if let Err(e) = close(f).await {
                    tracing::error!(file = %oldest.display(), error = %e, "cannot sync a file being closed");
                    self.close_failures.insert(oldest, e.to_string());
                }
            }
        }
    }

    async fn open_file(&mut self, path: &Path) -> Result<OpenFile, OpenError> {
        let root = PathBuf::from(&self.paths.root);
        let below = path
            .to_string_lossy()
            .strip_prefix(&self.paths.root)
            .map(str::to_owned)
            .ok_or_else(|| {
                OpenError::Reject(format!(
                    "`{}` is not under `{}`",
                    path.display(),
                    self.paths.root
                ))
            })?;
        let (file, created, size) = tokio::task::spawn_blocking(move || {
            let (file, created) = paths::open_confined(&root, &below)?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            Ok::<_, OpenError>((file, created, size))
        })
        .await
        .map_err(|e| OpenError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })??;
        if created {
            self.remember(path).await;
        }
        Ok(OpenFile {
            file: tokio::fs::File::from_std(file),
            size,
            last_used: 0,
            unsynced: false,
        })
    }

    /// Lists a file this sink created in the manifest (with `retention_days`).
    async fn remember(&mut self, path: &Path) {
        let Some(m) = &mut self.manifest else { return };
        if m.files.insert(path.to_string_lossy().into_owned())
            && let Err(e) = m.save().await
        {
            tracing::warn!(file = %path.display(), error = %e, "cannot save the file sink's manifest; retention_days may keep this file");
        }
    }

    async fn rotate_by_size(&mut self, path: &Path) -> std::io::Result<()> {
        if let Some(f) = self.open.remove(path) {
            close(f).await?;
        }
        let mut n = 1u32;
        let target = loop {
            let candidate = PathBuf::from(format!("{}.{n}", path.display()));
            // Not `try_exists`: a dangling link counts as taken, and is never written.
            match tokio::fs::symlink_metadata(&candidate).await {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break candidate,
                Err(e) => return Err(e),
                Ok(_) => n += 1,
            }
        };
        tokio::fs::rename(path, &target).await?;
        let ours = self
            .manifest
            .as_ref()
            .is_some_and(|m| m.files.contains(&*path.to_string_lossy()));
        if ours {
            self.remember(&target).await;
        }
        Ok(())
    }
}

/// Flushes a file (and fsyncs it when `sync` and it has unsynced writes).
async fn finish(f: &mut OpenFile, sync: bool) -> std::io::Result<()> {
    f.file.flush().await?;
    if sync && f.unsynced {
        f.file.sync_data().await?;
        f.unsynced = false;
    }
    Ok(())
}

/// Flushes, fsyncs and closes a file, so what was written survives its descriptor.
async fn close(mut f: OpenFile) -> std::io::Result<()> {
    finish(&mut f, true).await
}
