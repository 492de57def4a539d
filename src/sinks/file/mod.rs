//! `file`: events as NDJSON lines in local files.
//!
//! `path` may hold strftime codes (`%Y-%m-%d`, rendered with the sink's clock) and
//! `{{ field.path }}` templates; events are appended to whichever file their path
//! renders to. `rotation`:
//! - `daily` / `hourly` start a new file at each day / hour (UTC). If `path` has no
//!   strftime codes, `.YYYY-MM-DD` / `.YYYY-MM-DDTHH` is appended to it;
//! - `size` renames a file to `<path>.<n>` once it would grow past `max_bytes`.
//!
//! `retention_days` deletes files that `path` could have produced, in its directory,
//! once they are older than that (by modification time). `sync: always` fsyncs before
//! a batch is settled; `interval` fsyncs at most once a second. A batch is settled
//! delivered once written (and synced when `sync: always`).

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
use crate::event::{EventStatus, settle_all};
use crate::template::Template;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    Daily,
    Hourly,
    Size,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Sync {
    Always,
    #[default]
    Interval,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: String,
    pub rotation: Option<Rotation>,
    /// With `rotation: size`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub sync: Sync,
}

fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
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
        Template::parse(&pattern).map_err(BuildError)?;
        if self.rotation == Some(Rotation::Size) && self.max_bytes == 0 {
            return Err(BuildError("`max_bytes` must be above zero".into()));
        }
        // For retention: the file names `path` can produce, as a glob in its directory.
        let path = Path::new(&pattern);
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let templated_dir =
            dir.to_string_lossy().contains('%') || dir.to_string_lossy().contains("{{");
        if templated_dir && self.retention_days.is_some() {
            return Err(BuildError(
                "`retention_days` needs a fixed directory in `path`".into(),
            ));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let glob = glob_of(&name);
        Ok(FilePaths {
            pattern,
            dir,
            glob: format!("{glob}*"),
        })
    }
}

/// `%Y-%m-%d-{{ host }}.log` → `*-*-*-*.log`.
fn glob_of(name: &str) -> String {
    let mut out = String::new();
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        let skip = if c == '%' {
            // A strftime code: `%` and the next character.
            rest.chars().take(2).map(char::len_utf8).sum()
        } else if rest.starts_with("{{") {
            rest.find("}}").map_or(rest.len(), |end| end + 2)
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        if !out.ends_with('*') {
            out.push('*');
        }
        rest = &rest[skip..];
    }
    out
}

struct FilePaths {
    pattern: String,
    dir: PathBuf,
    glob: String,
}

impl SinkConfig for FileSinkConfig {
    fn type_name(&self) -> &'static str {
        "file"
    }

    fn check(&self) -> Result<(), BuildError> {
        self.paths().map(drop)
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let paths = self.paths()?;
            let writer = Writer {
                paths,
                rotation: self.rotation,
                max_bytes: self.max_bytes,
                retention: self
                    .retention_days
                    .map(|d| chrono::Duration::days(i64::from(d))),
                sync: self.sync,
                clock: Arc::clone(&cx.clock),
                open: HashMap::new(),
                last_sync: None,
            };
            Ok(Box::pin(run(writer, cx)) as ComponentTask)
        })
    }
}

struct OpenFile {
    file: tokio::fs::File,
    size: u64,
}

struct Writer {
    paths: FilePaths,
    rotation: Option<Rotation>,
    max_bytes: u64,
    retention: Option<chrono::Duration>,
    sync: Sync,
    clock: Arc<dyn Clock>,
    open: HashMap<PathBuf, OpenFile>,
    last_sync: Option<std::time::Instant>,
}

async fn run(mut w: Writer, mut cx: SinkContext) -> Result<(), ComponentError> {
    w.apply_retention().await;
    let mut retention_checked = w.clock.wall();
    while let Some(batch) = cx.input.recv().await {
        cx.metrics.add_received(batch.len());
        match w.write(&batch).await {
            Ok(()) => delivered(&cx.metrics, batch),
            Err(e) => {
                tracing::error!(component_id = %cx.id, error = %e, "cannot write events");
                cx.metrics.add_errors(batch.len());
                settle_all(batch, EventStatus::Errored);
            }
        }
        let now = w.clock.wall();
        if now - retention_checked >= chrono::Duration::hours(1) {
            w.apply_retention().await;
            retention_checked = now;
        }
    }
    for f in w.open.values_mut() {
        f.file.sync_data().await?;
    }
    Ok(())
}

impl Writer {
    fn render(&self, event: &crate::event::Event) -> Result<PathBuf, String> {
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
        Ok(PathBuf::from(rendered))
    }

    async fn write(&mut self, batch: &[crate::event::Event]) -> std::io::Result<()> {
        let mut per_file: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        for event in batch {
            let path = self
                .render(event)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let mut line = Vec::new();
            event
                .to_json_line(&mut line)
                .map_err(std::io::Error::other)?;
            line.push(b'\n');
            match per_file.iter_mut().find(|(p, _)| *p == path) {
                Some((_, buf)) => buf.extend_from_slice(&line),
                None => per_file.push((path, line)),
            }
        }
        // Time-based rotation: files no longer rendered are finished.
        let current: Vec<PathBuf> = per_file.iter().map(|(p, _)| p.clone()).collect();
        if matches!(self.rotation, Some(Rotation::Daily | Rotation::Hourly)) {
            let stale: Vec<PathBuf> = self
                .open
                .keys()
                .filter(|p| !current.contains(p))
                .cloned()
                .collect();
            for p in stale {
                if let Some(mut f) = self.open.remove(&p) {
                    f.file.flush().await?;
                    f.file.sync_data().await?;
                }
            }
        }
        for (path, bytes) in per_file {
            if self.rotation == Some(Rotation::Size)
                && let Some(f) = self.open.get(&path)
                && f.size > 0
                && f.size + bytes.len() as u64 > self.max_bytes
            {
                self.rotate_by_size(&path).await?;
            }
            let file = match self.open.get_mut(&path) {
                Some(f) => f,
                None => {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        tokio::fs::create_dir_all(dir).await?;
                    }
                    let file = tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .await?;
                    let size = file.metadata().await?.len();
                    self.open
                        .entry(path.clone())
                        .or_insert(OpenFile { file, size })
                }
            };
            file.file.write_all(&bytes).await?;
            file.size += bytes.len() as u64;
        }
        let due = match self.sync {
            Sync::Always => true,
            Sync::Interval => self
                .last_sync
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1)),
        };
        for f in self.open.values_mut() {
            f.file.flush().await?;
            if due {
                f.file.sync_data().await?;
            }
        }
        if due {
            self.last_sync = Some(std::time::Instant::now());
        }
        Ok(())
    }

    async fn rotate_by_size(&mut self, path: &Path) -> std::io::Result<()> {
        if let Some(mut f) = self.open.remove(path) {
            f.file.flush().await?;
            f.file.sync_data().await?;
        }
        let mut n = 1u32;
        let target = loop {
            let candidate = PathBuf::from(format!("{}.{n}", path.display()));
            if !tokio::fs::try_exists(&candidate).await? {
                break candidate;
            }
            n += 1;
        };
        tokio::fs::rename(path, &target).await
    }

    async fn apply_retention(&self) {
        let Some(keep) = self.retention else { return };
        let cutoff = self.clock.wall() - keep;
        let glob = wildmatch::WildMatch::new(&self.paths.glob);
        let Ok(mut entries) = tokio::fs::read_dir(&self.paths.dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !glob.matches(&name) || self.open.contains_key(&path) {
                continue;
            }
            let Ok(meta) = entry.metadata().await else {
                continue;
            };
            let Ok(modified) = meta.modified() else {
                continue;
            };
            if meta.is_file() && chrono::DateTime::<chrono::Utc>::from(modified) < cutoff {
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => tracing::info!(file = %path.display(), "deleted by retention_days"),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "cannot delete an expired file")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_of;

    #[test]
    fn globs_cover_what_the_path_can_render() {
        assert_eq!(glob_of("%Y-%m-%d.ndjson"), "*-*-*.ndjson");
        assert_eq!(glob_of("events-{{ host }}.log"), "events-*.log");
        assert_eq!(glob_of("plain.log"), "plain.log");
    }
}
