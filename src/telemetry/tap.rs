//! Taps: copies of the events flowing out of components, for `sluice tap`.
//!
//! An output checks the registry on every send; with no tap attached that is one atomic
//! load. A tap is a bounded channel of JSON lines: when the reader is slow, events are
//! skipped for the tap (counted), never held back in the pipeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use wildmatch::WildMatch;

use crate::event::Event;

/// An output: a component id, and the output's name (`None`: the default output).
pub(crate) type OutputId = (String, Option<String>);

/// What each transform and sink reads.
pub(crate) type Wiring = indexmap::IndexMap<String, Vec<OutputId>>;

/// Which outputs a tap copies.
pub(crate) enum Selector {
    /// Every output of the components whose id matches (`*` wildcards).
    Components(WildMatch),
    /// Exactly these outputs (`None`: a component's default output): what one
    /// component reads, for `--inputs-of`.
    Outputs(Vec<OutputId>),
}

impl Selector {
    fn matches(&self, component: &str, output: Option<&str>) -> bool {
        match self {
            Self::Components(pattern) => pattern.matches(component),
            Self::Outputs(list) => list
                .iter()
                .any(|(c, o)| c == component && o.as_deref() == output),
        }
    }
}

/// One attached reader.
pub(crate) struct Tap {
    id: u64,
    selector: Selector,
    /// Keep one event in `sample` (1 keeps all).
    sample: u64,
    seen: AtomicU64,
    skipped: AtomicU64,
    tx: mpsc::Sender<String>,
}

/// All taps of the process.
#[derive(Default)]
pub(crate) struct TapRegistry {
    taps: ArcSwap<Vec<Arc<Tap>>>,
    next: AtomicU64,
}

impl std::fmt::Debug for TapRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TapRegistry({} taps)", self.taps.load().len())
    }
}

/// Detaches its tap when dropped (the client went away).
pub(crate) struct TapGuard {
    registry: Arc<TapRegistry>,
    id: u64,
}

impl Drop for TapGuard {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

impl TapRegistry {
    /// Attaches a tap on the outputs `selector` picks.
    pub(crate) fn attach(
        self: &Arc<Self>,
        selector: Selector,
        sample: u64,
    ) -> (mpsc::Receiver<String>, TapGuard) {
        let (tx, rx) = mpsc::channel(1024);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let tap = Arc::new(Tap {
            id,
            selector,
            sample: sample.max(1),
            seen: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            tx,
        });
        self.taps.rcu(|taps| {
            let mut taps = (**taps).clone();
            taps.push(Arc::clone(&tap));
            taps
        });
        (
            rx,
            TapGuard {
                registry: Arc::clone(self),
                id,
            },
        )
    }

    fn remove(&self, id: u64) {
        self.taps.rcu(|taps| {
            taps.iter()
                .filter(|t| t.id != id)
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    /// Offers the events a component just sent to the taps that match it.
    pub(crate) fn offer(&self, component: &str, output: Option<&str>, events: &[Event]) {
        let taps = self.taps.load();
        if taps.is_empty() {
            return;
        }
        for tap in taps
            .iter()
            .filter(|t| t.selector.matches(component, output))
        {
            for event in events {
                if tap.seen.fetch_add(1, Ordering::Relaxed) % tap.sample != 0 {
                    continue;
                }
                let line = serde_json::json!({
                    "component_id": component,
                    "output": output,
                    "event": event.value(),
                })
                .to_string();
                if tap.tx.try_send(line).is_err() {
                    tap.skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
