//! `file`: tails files matched by globs, line by line, without losing a line across
//! rotation, truncation and restarts.
//!
//! - `fingerprint.rs`: file identity (device + inode + a checksum of the first line).
//! - `checkpoint.rs`: per-file offsets in `data_dir/<source id>/checkpoints.json`,
//!   replaced atomically.
//! - `lines.rs`: framing, `max_line_bytes`; `container.rs`: container runtime formats
//!   (lines a runtime split, joined again); `multiline.rs`: joining lines into groups;
//!   `message.rs`: what these stages pass on.
//! - `tailer.rs`: the loop: scan the globs, read every file in turn, emit batches, and
//!   advance checkpoints as their acknowledgements come back. Beside it: `scan.rs`
//!   (the globs: new, renamed and vanished files), `emitter.rs` (lines to events),
//!   `tracker.rs` (one file's acknowledgement state), `acks.rs` (applying
//!   acknowledgements, writing checkpoints), `orphan.rs` (content whose file went away)
//!   and `rotation.rs` (copytruncate, dormant copies).
//!
//! Invariants: a checkpoint offset only ever covers lines whose events were all settled
//! `Delivered` or `Rejected` (dead-lettered); an `Errored` batch rewinds its file to the
//! batch's first line. A file that is renamed or deleted is read to its end before its
//! descriptor is released. Reading is polling (`glob_interval` for the globs,
//! `poll_interval` between idle rounds), which works on every filesystem, NFS and
//! overlayfs included, where inotify misses changes.

mod acks;
pub(crate) mod checkpoint;
pub(crate) mod container;
mod emitter;
pub(crate) mod fingerprint;
pub(crate) mod lines;
mod message;
pub(crate) mod multiline;
mod orphan;
mod rotation;
mod scan;
mod tailer;
mod tracker;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{BoxFuture, BuildError, ComponentTask, SourceConfig, SourceContext};

pub(crate) use multiline::MultilineConfig;

/// Where to start in a file that has no checkpoint when the source starts. Files that
/// appear later are always read from their beginning (they are new).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ReadFrom {
    #[default]
    Beginning,
    End,
}

/// What the lines of the files are.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LineFormat {
    /// Plain text: each line is the event's `message`.
    #[default]
    Text,
    /// One JSON document per line: the event is the parsed object.
    Json,
    /// The CRI log format of containerd and CRI-O: `<time> <stream> <P|F> <text>`.
    Cri,
    /// Docker's json-file driver: `{"log": "…\n", "stream": "…", "time": "…"}`.
    Docker,
}

fn default_max_line_bytes() -> usize {
    100 * 1024
}
fn default_glob_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_poll_interval() -> Duration {
    Duration::from_millis(100)
}
fn default_max_read_bytes() -> usize {
    1024 * 1024
}
fn default_rotate_wait() -> Duration {
    Duration::from_secs(5)
}
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_max_pending_batches() -> usize {
    128
}

/// Tails files matched by globs, line by line, across rotation, truncation and restarts.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSourceConfig {
    /// Glob patterns of the files to read (`/var/log/app/*.log`, `**` for any depth).
    pub(crate) include: Vec<String>,
    /// Globs of paths to leave out, matched against the full path.
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
    #[serde(default)]
    pub(crate) read_from: ReadFrom,
    /// Longer lines keep their first `max_line_bytes` bytes and are counted.
    #[serde(default = "default_max_line_bytes")]
    pub(crate) max_line_bytes: usize,
    #[serde(default)]
    pub(crate) multiline: Option<MultilineConfig>,
    /// Parse each line as JSON: the event is the parsed object (plus `file`, `host`,
    /// `offset`). A line that does not parse keeps its text in `message` and is counted.
    /// The same as `format: json`.
    #[serde(default)]
    pub(crate) json: bool,
    /// What the lines are: `text` (the line is `message`), `json` (as `json: true`),
    /// `cri` (containerd and CRI-O, as in `/var/log/containers` on Kubernetes) or
    /// `docker` (Docker's json-file driver). With `cri` and `docker`, lines the runtime
    /// split are joined again (per stream, as bytes; `max_line_bytes` bounds the joined
    /// line; a fragment not continued for 5 s is emitted as it is) and the event gets
    /// `message`, `stream` and `timestamp` (the runtime's, of the line's first fragment).
    /// A line in neither shape keeps its text as `message` and is counted in
    /// `sluice_file_format_errors_total`. `multiline` then applies to the joined
    /// messages, each stream apart.
    #[serde(default)]
    pub(crate) format: LineFormat,
    /// How often the globs are evaluated again for new, renamed and deleted files.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_glob_interval", with = "humantime_serde")]
    pub(crate) glob_interval: Duration,
    /// How long to wait after a round in which no file had anything new.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub(crate) poll_interval: Duration,
    /// At most this many bytes from one file per round, so one busy file cannot starve
    /// the others.
    #[serde(default = "default_max_read_bytes")]
    pub(crate) max_read_bytes: usize,
    /// Files last modified longer ago than this are not picked up.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default, with = "humantime_serde")]
    pub(crate) ignore_older: Option<Duration>,
    /// Delete a file once it was read to its end, everything read was delivered, and it
    /// did not grow for this long.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default, with = "humantime_serde")]
    pub(crate) remove_after: Option<Duration>,
    /// A file renamed away or deleted is released once read to its end and not grown for
    /// this long (a writer may still append through its open descriptor).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_rotate_wait", with = "humantime_serde")]
    pub(crate) rotate_wait: Duration,
    /// How often acknowledged offsets are written to `data_dir` (and at shutdown). A
    /// crash re-reads at most what was acknowledged since.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_checkpoint_interval", with = "humantime_serde")]
    pub(crate) checkpoint_interval: Duration,
    /// Batches sent but not yet settled, across all files; reading pauses at this bound.
    #[serde(default = "default_max_pending_batches")]
    pub(crate) max_pending_batches: usize,
    /// The `host` field (default: this machine's hostname).
    #[serde(default)]
    pub(crate) host: Option<String>,
}

impl FileSourceConfig {
    fn compiled(&self) -> Result<tailer::Compiled, BuildError> {
        if self.include.is_empty() {
            return Err(BuildError("`include` needs at least one glob".into()));
        }
        if self.max_line_bytes == 0 || self.max_read_bytes == 0 || self.max_pending_batches == 0 {
            return Err(BuildError(
                "`max_line_bytes`, `max_read_bytes` and `max_pending_batches` must be at least 1"
                    .into(),
            ));
        }
        for p in &self.include {
            glob::Pattern::new(p).map_err(|e| BuildError(format!("`include` glob `{p}`: {e}")))?;
        }
        let exclude = self
            .exclude
            .iter()
            .map(|p| {
                glob::Pattern::new(p).map_err(|e| BuildError(format!("`exclude` glob `{p}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let multiline = self
            .multiline
            .as_ref()
            .map(MultilineConfig::compile)
            .transpose()
            .map_err(BuildError)?;
        let format = match (self.json, self.format) {
            (false, format) | (true, format @ (LineFormat::Text | LineFormat::Json)) => {
                if self.json { LineFormat::Json } else { format }
            }
            (true, other) => {
                return Err(BuildError(format!(
                    "`json: true` and `format: {}` contradict each other; keep `format`",
                    serde_json::to_value(other)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )));
            }
        };
        Ok(tailer::Compiled {
            exclude,
            multiline,
            format,
        })
    }
}

impl SourceConfig for FileSourceConfig {
    fn type_name(&self) -> &'static str {
        "file"
    }

    fn check(&self) -> Result<(), BuildError> {
        self.compiled().map(drop)
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let compiled = self.compiled()?;
            let path: PathBuf = checkpoint::path_for(&cx.data_dir, &cx.id);
            // Read the checkpoints now: a corrupt file stops the pipeline from starting
            // rather than silently starting over.
            let stored = checkpoint::load(&path).map_err(|e| BuildError(e.to_string()))?;
            let tailer = tailer::Tailer::new(self.clone(), compiled, path, stored, &cx);
            Ok(Box::pin(tailer.run(cx)) as ComponentTask)
        })
    }
}
