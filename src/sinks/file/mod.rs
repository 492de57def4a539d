//! `file`: events as NDJSON lines in local files.
//!
//! `path` may hold strftime codes (`%Y-%m-%d`, rendered with the sink's clock) and
//! `{{ field.path }}` templates; events are appended to whichever file their path
//! renders to. `rotation`:
//! - `daily` / `hourly` start a new file at each day / hour (UTC). If `path` has no
//!   strftime codes, `.YYYY-MM-DD` / `.YYYY-MM-DDTHH` is appended to it;
//! - `size` renames a file to `<path>.<n>` once it would grow past `max_bytes`.
//!
//! Field values come from events and may be hostile: a rendered path must stay under
//! the directory `path` names before its first placeholder (see [`paths`]). An event
//! whose path leaves it, or that lacks a field of the template, goes to the
//! `dead_letter` output with the reason (settled `Rejected`, never retried), and the
//! rest of its batch is written: one bad event never blocks its source.
//!
//! `retention_days` deletes files this sink created (listed in its [`manifest`] under
//! `data_dir`) once they are older than that (by modification time), never other files
//! beside them. At most `max_open_files` files are open at once; the least recently
//! written is flushed, synced and closed first. `sync: always` fsyncs the files a batch
//! wrote before it is settled; `interval` fsyncs at most once a second. A batch's events
//! are settled delivered once written (and synced when `sync: always`).

pub mod manifest;
pub mod paths;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::format::{Item, StrftimeItems};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::clock::Clock;
use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SinkConfig, SinkContext, delivered,
};
use crate::delivery::{DEAD_LETTER, DeadLetter, Failure};
use crate::event::{Event, EventStatus, settle_all};
use crate::template::Template;
use manifest::Manifest;
use paths::OpenError;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    /// A new file each day (UTC).
    Daily,
    /// A new file each hour (UTC).
    Hourly,
    /// `<path>.<n>` once a file would grow past `max_bytes`.
    Size,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Sync {
    /// fsync the files a batch wrote before settling it.
    Always,
    /// fsync at most once a second.
    #[default]
    Interval,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to append to: strftime codes (`%Y-%m-%d`) and `{{ field.path }}` allowed.
    /// A rendered path must stay under the directory before the first placeholder
    /// (`/var/log/x/` in `/var/log/x/{{ service }}.log`): an event whose values add a
    /// `..`, an absolute or empty segment, a control character, a name over 255 bytes or
    /// a symbolic link goes to `dead_letter`, as does one missing a field.
    pub path: String,
    /// Start a new file each day, each hour, or past `max_bytes`.
    pub rotation: Option<Rotation>,
    /// With `rotation: size`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Delete files this sink created once last modified longer ago than this. Only files
    /// listed in its manifest (`data_dir/file_sink/<id>.json`, kept while this option is
    /// set) are deleted, never others beside them. Needs a fixed directory in `path`.
    pub retention_days: Option<u32>,
    /// When written lines are fsynced.
    #[serde(default)]
    pub sync: Sync,
    /// Files kept open at once; past it, the least recently written is closed (after a
    /// flush and fsync) and reopened when needed. Bounds the descriptors that events with
    /// many distinct names can take from the process.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
}

fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}

fn default_max_open_files() -> usize {
    64
}

impl FileSinkConfig {
    fn paths(&self) -> Result<FilePaths, BuildError> {
        let mut pattern = self.path.clone();
        let has_codes = pattern.contains('%');
        match self.rotation {
            Some(Rotation::Daily) if !has_codes => pattern.push_str(".%Y-%m-%d"),
            Some(Rotation::Hourly) if !has_codes => pattern.push_str(".%Y-%m-%dT%H"),
            _ => {}
        }
        if StrftimeItems::new(&pattern).any(|i| matches!(i, Item::Error)) {
            return Err(BuildError(format!(
                "`path` `{}` has an invalid strftime code",
                self.path
            )));
        }
        Template::parse(&pattern).map_err(|e| BuildError(format!("`path`: {e}")))?;
        if self.rotation == Some(Rotation::Size) && self.max_bytes == 0 {
            return Err(BuildError("`max_bytes` must be above zero".into()));
        }
        if self.max_open_files == 0 {
            return Err(BuildError("`max_open_files` must be at least 1".into()));
        }
        let root = paths::root_of(&pattern).to_owned();
        // What `path` itself puts below the root must pass the checks every rendering
        // will meet (no `..`, no `//`, no `%n`), or every event would be refused.
        let sample = sample_of(&pattern);
        paths::confine(&root, &sample)
            .map_err(|e| BuildError(format!("`path` `{}`: {e}", self.path)))?;
        let dir = Path::new(&pattern)
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        if (dir.contains('%') || dir.contains("{{")) && self.retention_days.is_some() {
            return Err(BuildError(
                "`retention_days` needs a fixed directory in `path`".into(),
            ));
        }
        Ok(FilePaths { pattern, root })
    }
}

/// `pattern` with each placeholder replaced by a plain name.
fn sample_of(pattern: &str) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if c == '%' {
            let code: String = rest.chars().take(2).collect();
            // Codes that render whitespace are kept, so the checks see them.
            out.push_str(match code.as_str() {
                "%n" => "\n",
                "%t" => "\t",
                "%%" => "%",
                _ => "x",
            });
            rest = &rest[code.len()..];
        } else if rest.starts_with("{{") {
            out.push('x');
            rest = &rest[rest.find("}}").map_or(rest.len(), |end| end + 2)..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

struct FilePaths {
    pattern: String,
    /// The directory renderings must stay under (see [`paths::root_of`]).
    root: String,
}

impl SinkConfig for FileSinkConfig {
    fn type_name(&self) -> &'static str {
        "file"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn check(&self) -> Result<(), BuildError> {
        self.paths().map(drop)
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let paths = self.paths()?;
            let manifest = self
                .retention_days
                .map(|_| Manifest::load(manifest::path_for(&cx.data_dir, &cx.id)));
            let writer = Writer {
                paths,
                rotation: self.rotation,
                max_bytes: self.max_bytes,
                retention: self
                    .retention_days
                    .map(|d| chrono::Duration::days(i64::from(d))),
                sync: self.sync,
                clock: Arc::clone(&cx.clock),
                max_open: self.max_open_files,
                open: HashMap::new(),
                tick: 0,
                last_sync: None,
                manifest,
                close_failures: HashMap::new(),
            };
            Ok(Box::pin(run(writer, cx)) as ComponentTask)
        })
    }
}

struct OpenFile {
    file: tokio::fs::File,
    size: u64,
    /// When it was last written (a counter), for closing the least recently used.
    last_used: u64,
    /// Written since its last fsync.
    unsynced: bool,
}

struct Writer {
    paths: FilePaths,
    rotation: Option<Rotation>,
    max_bytes: u64,
    retention: Option<chrono::Duration>,
    sync: Sync,
    clock: Arc<dyn Clock>,
    max_open: usize,
    open: HashMap<PathBuf, OpenFile>,
    tick: u64,
    last_sync: Option<std::time::Instant>,
    /// With `retention_days`: the files this sink created.
    manifest: Option<Manifest>,
    /// Files closed to make room during the current batch whose final flush or fsync
    /// failed: their lines of this batch are not settled delivered.
    close_failures: HashMap<PathBuf, String>,
}

/// What became of a batch.
#[derive(Default)]
struct Outcome {
    written: Vec<Event>,
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

async fn run(mut w: Writer, mut cx: SinkContext) -> Result<(), ComponentError> {
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
        delivered(&cx.metrics, outcome.written);
        if !outcome.errored.is_empty() {
            let error = outcome.error.unwrap_or_default();
            tracing::error!(component_id = %cx.id, events = outcome.errored.len(), error = %error, "cannot write events");
            cx.metrics.add_errors(outcome.errored.len());
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
                Ok(()) => outcome.written.extend(group.events),
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

    /// Deletes the expired files this sink created, and forgets files that are gone.
    async fn apply_retention(&mut self) {
        let Some(keep) = self.retention else { return };
        let Some(m) = &mut self.manifest else { return };
        let cutoff = self.clock.wall() - keep;
        let root = PathBuf::from(&self.paths.root);
        let mut changed = false;
        for listed in m.files.clone() {
            let path = PathBuf::from(&listed);
            if self.open.contains_key(&path) {
                continue;
            }
            // An edited manifest, or a directory swapped for a link since the file was
            // written, must not make retention delete anything outside the root.
            let below = match paths::confine(&self.paths.root, &listed) {
                Ok(below) => below.to_owned(),
                Err(e) => {
                    tracing::warn!(file = %listed, error = %e, "not deleting a manifest entry outside the sink's directory");
                    m.files.remove(&listed);
                    changed = true;
                    continue;
                }
            };
            let walk_root = root.clone();
            let dirs =
                tokio::task::spawn_blocking(move || paths::walk_dirs(&walk_root, &below, false))
                    .await;
            let meta = match dirs {
                Ok(Ok(true)) => tokio::fs::symlink_metadata(&path).await,
                Ok(Ok(false)) => Err(std::io::ErrorKind::NotFound.into()),
                Ok(Err(OpenError::Reject(e))) => {
                    // A directory on the way became a link: what it leads to is not ours.
                    tracing::warn!(file = %listed, error = %e, "not deleting a file reached through a link");
                    m.files.remove(&listed);
                    changed = true;
                    continue;
                }
                Ok(Err(e @ OpenError::Io { .. })) => {
                    tracing::warn!(file = %listed, error = %e, "cannot check an expired file");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(file = %listed, error = %e, "cannot check an expired file");
                    continue;
                }
            };
            let meta = match meta {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => {
                    // Replaced by a link or a directory: not the file this sink wrote.
                    m.files.remove(&listed);
                    changed = true;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    m.files.remove(&listed);
                    changed = true;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(file = %listed, error = %e, "cannot check an expired file");
                    continue;
                }
            };
            let Ok(modified) = meta.modified() else {
                continue;
            };
            if chrono::DateTime::<chrono::Utc>::from(modified) >= cutoff {
                continue;
            }
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {
                    tracing::info!(file = %listed, "deleted by retention_days");
                    m.files.remove(&listed);
                    changed = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    m.files.remove(&listed);
                    changed = true;
                }
                Err(e) => {
                    tracing::warn!(file = %listed, error = %e, "cannot delete an expired file")
                }
            }
        }
        if changed && let Err(e) = m.save().await {
            tracing::warn!(error = %e, "cannot save the file sink's manifest");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_would_refuse_every_event_are_config_errors() {
        let config = |path: &str| FileSinkConfig {
            path: path.into(),
            rotation: None,
            max_bytes: default_max_bytes(),
            retention_days: None,
            sync: Sync::Interval,
            max_open_files: default_max_open_files(),
        };
        config("/data/x/{{ service }}.log").check().expect("fine");
        config("/data/%Y/%m/{{ service }}.log")
            .check()
            .expect("fine");
        for (path, why) in [
            ("/data/x/{{ service }}/../y.log", "`..`"),
            ("/data/x/{{ service }}//y.log", "empty segment"),
            ("/data/x/%Y%n.log", "control character"),
        ] {
            let e = config(path).check().expect_err(path).to_string();
            assert!(e.contains(why), "{path}: {e}");
        }
        let mut zero = config("/data/x/a.log");
        zero.max_open_files = 0;
        assert!(zero.check().is_err());
    }
}
