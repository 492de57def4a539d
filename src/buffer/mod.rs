//! The buffer in front of every transform and sink: in memory ([`memory`]) or, for a
//! sink that asks for it, on disk ([`disk`]). Both give the same handles, so the rest of
//! the topology does not care which one a component has.
//!
//! Invariants shared by both: a full buffer makes senders wait (or drops the newest
//! events, if configured so); once every strong sender is gone and the buffer is
//! drained, the receiver sees the end; closing the receiver gives senders their batch
//! back as [`Closed`].

pub(crate) mod budget;
mod config;
pub mod cost;
pub(crate) mod disk;
mod memory;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use self::budget::{Charge, MemoryBudget};
pub use self::config::{
    BufferConfig, BufferType, DEFAULT_BUFFER_EVENTS, DEFAULT_DISK_BUFFER_BYTES, SyncMode, WhenFull,
};
use crate::event::EventBatch;
use crate::telemetry::{BufferGauge, ComponentMetrics};

/// The receiver is gone; the batch comes back so its events can be settled.
#[derive(Debug)]
pub(crate) struct Closed(pub EventBatch);

/// The bounds and policies of a buffer, resolved from its [`BufferConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_events: usize,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) when_full: WhenFull,
    /// Disk only: `None` syncs before every acknowledgement.
    pub(crate) sync_every: Option<Duration>,
}

impl Limits {
    /// Only an event bound, blocking when full.
    #[cfg(test)]
    pub(crate) fn events(max_events: usize) -> Self {
        Self {
            max_events,
            max_bytes: None,
            when_full: WhenFull::Block,
            sync_every: None,
        }
    }

    pub(crate) fn from_config(c: &BufferConfig) -> Self {
        Self {
            max_events: c.max_events(),
            max_bytes: c.max_bytes(),
            when_full: c.when_full,
            sync_every: c.sync_every(),
        }
    }
}

/// Sending half; cloned once per upstream output that feeds this component.
#[derive(Clone)]
pub(crate) enum BufferSender {
    Memory(memory::Sender),
    Disk(disk::Sender),
}

/// A sender that does not keep the buffer open.
#[derive(Clone)]
pub(crate) enum WeakBufferSender {
    Memory(memory::WeakSender),
    Disk(disk::WeakSender),
}

/// Receiving half, owned by the component's task.
pub(crate) enum BufferReceiver {
    Memory(memory::Receiver),
    Disk(disk::Receiver),
}

/// View of a buffer's fill level for telemetry, and the handle to change its bounds.
#[derive(Clone)]
pub(crate) enum BufferProbe {
    Memory(memory::Probe),
    Disk(disk::Probe),
}

pub(crate) fn memory_buffer(
    limits: &Limits,
    budget: Option<Arc<MemoryBudget>>,
    metrics: Option<Arc<ComponentMetrics>>,
) -> (BufferSender, BufferReceiver, BufferProbe) {
    let (tx, rx, probe) = memory::channel(limits, budget, metrics);
    (
        BufferSender::Memory(tx),
        BufferReceiver::Memory(rx),
        BufferProbe::Memory(probe),
    )
}

/// The buffer `config` asks for, for component `id`.
pub(crate) fn open(
    config: &BufferConfig,
    id: &str,
    data_dir: &Path,
    budget: Option<Arc<MemoryBudget>>,
    metrics: &Arc<ComponentMetrics>,
) -> Result<(BufferSender, BufferReceiver, BufferProbe), disk::OpenError> {
    let limits = Limits::from_config(config);
    match config.kind {
        BufferType::Memory => Ok(memory_buffer(&limits, budget, Some(Arc::clone(metrics)))),
        BufferType::Disk => {
            let (tx, rx, probe) = disk::open(data_dir, id, &limits, Arc::clone(metrics))?;
            Ok((
                BufferSender::Disk(tx),
                BufferReceiver::Disk(rx),
                BufferProbe::Disk(probe),
            ))
        }
    }
}

impl BufferSender {
    pub(crate) fn downgrade(&self) -> WeakBufferSender {
        match self {
            Self::Memory(s) => WeakBufferSender::Memory(s.downgrade()),
            Self::Disk(s) => WeakBufferSender::Disk(s.downgrade()),
        }
    }

    /// Queues `batch`, waiting while the buffer is full. On `Err` the unsent events
    /// come back.
    pub(crate) async fn send(&self, batch: EventBatch) -> Result<(), Closed> {
        match self {
            Self::Memory(s) => s.send(batch).await,
            Self::Disk(s) => s.send(batch).await,
        }
    }
}

impl WeakBufferSender {
    /// A strong sender, unless the buffer is already closed.
    pub(crate) fn upgrade(&self) -> Option<BufferSender> {
        match self {
            Self::Memory(s) => s.upgrade().map(BufferSender::Memory),
            Self::Disk(s) => s.upgrade().map(BufferSender::Disk),
        }
    }
}

impl BufferReceiver {
    /// The next batch, or `None` once every sender is gone and the buffer is drained.
    pub(crate) async fn recv(&mut self) -> Option<EventBatch> {
        match self {
            Self::Memory(r) => r.recv().await,
            Self::Disk(r) => r.recv().await,
        }
    }

    /// A batch available now, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<EventBatch> {
        match self {
            Self::Memory(r) => r.try_recv(),
            Self::Disk(r) => r.try_recv(),
        }
    }

    /// What a component that ended for good leaves queued in memory, to be reported
    /// failed. A disk buffer gives nothing: its records stay on disk for the next run.
    pub(crate) fn take_queued(&mut self) -> Option<EventBatch> {
        match self {
            Self::Memory(r) => r.try_recv(),
            Self::Disk(_) => None,
        }
    }

    /// Refuses further batches; blocked senders get theirs back.
    pub(crate) fn close(&mut self) {
        match self {
            Self::Memory(r) => r.close(),
            Self::Disk(r) => r.close(),
        }
    }
}

impl std::fmt::Debug for BufferProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BufferProbe({}/{})", self.len(), self.capacity())
    }
}

impl BufferGauge for BufferProbe {
    fn len(&self) -> usize {
        BufferProbe::len(self)
    }
    fn capacity(&self) -> usize {
        BufferProbe::capacity(self)
    }
}

impl BufferProbe {
    /// Events held.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Memory(p) => p.len(),
            Self::Disk(p) => p.len(),
        }
    }
    pub(crate) fn capacity(&self) -> usize {
        match self {
            Self::Memory(p) => p.capacity(),
            Self::Disk(p) => p.capacity(),
        }
    }
    /// Whether the buffer refuses batches (its component ended for good).
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::Memory(p) => p.is_closed(),
            Self::Disk(p) => p.is_closed(),
        }
    }

    /// Applies new bounds from a reload. An in-memory buffer changes its event bound
    /// (its byte bound and policy are fixed: a change replaces the buffer, see
    /// [`same_storage`]); a disk buffer takes all of them.
    pub(crate) fn reconfigure(&self, config: &BufferConfig) {
        match self {
            Self::Memory(p) => p.resize(config.max_events()),
            Self::Disk(p) => p.reconfigure(&Limits::from_config(config)),
        }
    }
}

/// Whether a buffer built for `old` can serve `new` after a reload (else the component
/// gets a new buffer, and the old one drains into the old task).
pub(crate) fn same_storage(old: &BufferConfig, new: &BufferConfig) -> bool {
    match (old.kind, new.kind) {
        (BufferType::Memory, BufferType::Memory) => {
            old.max_bytes() == new.max_bytes() && old.when_full == new.when_full
        }
        (BufferType::Disk, BufferType::Disk) => true,
        _ => false,
    }
}
