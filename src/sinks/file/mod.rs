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
//!
//! Here: the config and its checks. `writer.rs` writes batches (open files, rotation,
//! fsync, dead letters); `retention.rs` deletes expired files.

pub(crate) mod manifest;
pub(crate) mod paths;
mod retention;
mod writer;

use std::path::{Path, PathBuf};

use chrono::format::{Item, StrftimeItems};
use serde::Deserialize;

use crate::component::{BoxFuture, BuildError, ComponentTask, SinkConfig, SinkContext};
use crate::delivery::DEAD_LETTER;
use crate::template::Template;
use manifest::Manifest;
use writer::{Writer, run};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Rotation {
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
pub(crate) enum Sync {
    /// fsync the files a batch wrote before settling it.
    Always,
    /// fsync at most once a second.
    #[default]
    Interval,
}

/// Writes events to files named from templates, with rotation and retention.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSinkConfig {
    /// The file to append to: strftime codes (`%Y-%m-%d`) and `{{ field.path }}` allowed.
    /// A rendered path must stay under the directory before the first placeholder
    /// (`/var/log/x/` in `/var/log/x/{{ service }}.log`): an event whose values add a
    /// `..`, an absolute or empty segment, a control character, a name over 255 bytes or
    /// a symbolic link goes to `dead_letter`, as does one missing a field.
    pub(crate) path: String,
    /// Start a new file each day, each hour, or past `max_bytes`.
    pub(crate) rotation: Option<Rotation>,
    /// With `rotation: size`.
    #[serde(default = "default_max_bytes")]
    pub(crate) max_bytes: u64,
    /// Delete files this sink created once last modified longer ago than this. Only files
    /// listed in its manifest (`data_dir/file_sink/<id>.json`, kept while this option is
    /// set) are deleted, never others beside them. Needs a fixed directory in `path`.
    pub(crate) retention_days: Option<u32>,
    /// When written lines are fsynced.
    #[serde(default)]
    pub(crate) sync: Sync,
    /// Files kept open at once; past it, the least recently written is closed (after a
    /// flush and fsync) and reopened when needed. Bounds the descriptors that events with
    /// many distinct names can take from the process.
    #[serde(default = "default_max_open_files")]
    pub(crate) max_open_files: usize,
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

    fn healthcheck(
        &self,
        _timeout: std::time::Duration,
    ) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(async move {
            let root = self.paths().map_err(|e| e.0)?.root;
            let root = PathBuf::from(if root.is_empty() { "." } else { &root });
            // The nearest entry that exists is where the sink would create the rest; a
            // link counts as existing even when it leads nowhere (it would block the
            // sink), so it is found and then refused as not a folder.
            let mut existing = root.as_path();
            while std::fs::symlink_metadata(existing).is_err() {
                existing = existing.parent().unwrap_or(Path::new("."));
            }
            if !existing.is_dir() {
                return Err(format!("`{}` is not a folder", existing.display()));
            }
            tempfile::tempfile_in(existing)
                .map_err(|e| format!("cannot write in `{}`: {e}", existing.display()))?;
            Ok(if existing == root {
                format!("`{}` is writable", root.display())
            } else {
                format!(
                    "`{}` will be created in `{}`, which is writable",
                    root.display(),
                    existing.display()
                )
            })
        }))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let paths = self.paths()?;
            let manifest = self
                .retention_days
                .map(|_| Manifest::load(manifest::path_for(&cx.data_dir, &cx.id)));
            let writer = Writer::new(self, paths, std::sync::Arc::clone(&cx.clock), manifest);
            Ok(Box::pin(run(writer, cx)) as ComponentTask)
        })
    }
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
