//! A buffer's options as the pipeline file gives them (`buffer:` on a sink).

use serde::Deserialize;

use crate::units::ByteSize;

/// The input buffer of a sink (`buffer:`); transforms use the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// `memory` (default) or `disk`: a disk buffer keeps events in checksummed segment
    /// files under `data_dir/buffers/<sink id>/` and acknowledges them to their source
    /// once they are durable, so they survive a crash or a restart of sluice.
    #[serde(rename = "type", default)]
    pub(crate) kind: BufferType,
    /// Events the buffer holds before `when_full` applies. Default: 1000 in memory,
    /// unlimited on disk (`max_bytes` bounds it).
    #[serde(default)]
    pub(crate) max_events: Option<usize>,
    /// Bytes the buffer holds before `when_full` applies: the encoded size on disk, or an
    /// estimate of the events' size in memory. Default: unlimited in memory, 256MiB on
    /// disk.
    #[serde(default)]
    pub(crate) max_bytes: Option<ByteSize>,
    /// `block` (default): upstream waits for room, which slows the sources down.
    /// `drop_newest`: events that do not fit are dropped and counted as discarded.
    #[serde(default)]
    pub(crate) when_full: WhenFull,
    /// Disk only. `always` (default): events are flushed to disk (fsync, one flush for
    /// every write that arrived meanwhile) before their source is told. `interval`: they
    /// are flushed every `sync_interval`, and their source waits for that.
    #[serde(default)]
    pub(crate) sync: Option<SyncMode>,
    /// Disk only, with `sync: interval`. Default 500ms.
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) sync_interval: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BufferType {
    #[default]
    Memory,
    Disk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    #[default]
    Block,
    DropNewest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    #[default]
    Always,
    Interval,
}

/// Events a component's input buffer holds before upstream waits.
pub const DEFAULT_BUFFER_EVENTS: usize = 1000;
/// Bytes a disk buffer holds by default.
pub const DEFAULT_DISK_BUFFER_BYTES: u64 = 256 << 20;

const DEFAULT_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            kind: BufferType::Memory,
            max_events: None,
            max_bytes: None,
            when_full: WhenFull::Block,
            sync: None,
            sync_interval: None,
        }
    }
}

impl BufferConfig {
    pub fn max_events(&self) -> usize {
        self.max_events.unwrap_or(match self.kind {
            BufferType::Memory => DEFAULT_BUFFER_EVENTS,
            BufferType::Disk => usize::MAX,
        })
    }

    pub fn max_bytes(&self) -> Option<u64> {
        match (self.max_bytes, self.kind) {
            (Some(b), _) => Some(b.0),
            (None, BufferType::Disk) => Some(DEFAULT_DISK_BUFFER_BYTES),
            (None, BufferType::Memory) => None,
        }
    }

    /// How often a disk buffer flushes; `None`: before every acknowledgement.
    pub fn sync_every(&self) -> Option<std::time::Duration> {
        match self.sync.unwrap_or_default() {
            SyncMode::Always => None,
            SyncMode::Interval => Some(self.sync_interval.unwrap_or(DEFAULT_SYNC_INTERVAL)),
        }
    }

    /// Option values that do not go together.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.max_events == Some(0) {
            return Err("`buffer.max_events` must be at least 1".into());
        }
        if self.max_bytes.is_some_and(|b| b.0 == 0) {
            return Err("`buffer.max_bytes` must be at least 1".into());
        }
        if self.kind == BufferType::Memory && (self.sync.is_some() || self.sync_interval.is_some())
        {
            return Err(
                "`buffer.sync` and `buffer.sync_interval` apply to `type: disk` only".into(),
            );
        }
        if self.sync_interval.is_some() && self.sync != Some(SyncMode::Interval) {
            return Err("`buffer.sync_interval` needs `sync: interval`".into());
        }
        if self.sync_interval.is_some_and(|d| d.is_zero()) {
            return Err("`buffer.sync_interval` must be more than 0".into());
        }
        Ok(())
    }
}
