//! What a reload changes: a pure diff of the running components against a new
//! pipeline, decided before anything is built (Vector's `ConfigDiff` plays this part).
//!
//! Per component id:
//! - in the new pipeline only: **added**;
//! - running only: **removed** (it drains and goes);
//! - in both with the same kind, type and buffer storage: kept as it is, or
//!   **changed** (a new task in the same shell, so its buffer and outputs stay) when its
//!   options differ or when a transform or sink ended and must run again. A source
//!   that finished stays finished unless its options change: it would emit its events
//!   again;
//! - in both, but with another kind, type or buffer storage: **removed** and **added**
//!   (a new shell, since the buffer or the outputs cannot carry over).

use std::collections::{HashMap, HashSet};

use crate::buffer::{self, BufferConfig, DEFAULT_BUFFER_EVENTS};
use crate::component::ComponentKind;
use crate::config::Pipeline;

/// What the plan needs to know of one component of the new pipeline.
#[derive(Debug, Clone)]
pub(super) struct Wanted {
    pub(crate) id: String,
    pub(crate) kind: ComponentKind,
    pub(crate) type_name: &'static str,
    /// Hash of the options that make a rebuild necessary.
    pub(crate) fingerprint: u64,
    pub(crate) buffer: BufferConfig,
}

/// What the plan needs to know of one running component.
#[derive(Debug, Clone)]
pub(super) struct Current {
    pub(crate) kind: ComponentKind,
    pub(crate) type_name: &'static str,
    pub(crate) fingerprint: u64,
    pub(crate) buffer: BufferConfig,
    /// Its task ended for good (failed, or drained because its producers ended).
    pub(crate) ended: bool,
}

/// The diff. `build` lists the ids that get a new task, in pipeline order; `fresh`
/// those of them that need a new shell.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub(crate) added: Vec<String>,
    pub(crate) changed: Vec<String>,
    pub(crate) removed: Vec<String>,
    pub(crate) build: Vec<String>,
    pub(crate) fresh: HashSet<String>,
}

/// Every component of `p`, sources first, then transforms, then sinks.
pub(super) fn wanted(p: &Pipeline) -> Vec<Wanted> {
    let transform_buffer = BufferConfig {
        max_events: Some(DEFAULT_BUFFER_EVENTS),
        ..BufferConfig::default()
    };
    let mut out = Vec::new();
    for (id, c) in &p.sources {
        out.push(Wanted {
            id: id.clone(),
            kind: ComponentKind::Source,
            type_name: c.config.type_name(),
            fingerprint: c.fingerprint,
            buffer: BufferConfig::default(),
        });
    }
    for (id, c) in &p.transforms {
        out.push(Wanted {
            id: id.clone(),
            kind: ComponentKind::Transform,
            type_name: c.config.type_name(),
            fingerprint: c.fingerprint,
            buffer: transform_buffer,
        });
    }
    for (id, c) in &p.sinks {
        out.push(Wanted {
            id: id.clone(),
            kind: ComponentKind::Sink,
            type_name: c.config.type_name(),
            fingerprint: c.fingerprint,
            buffer: c.buffer,
        });
    }
    out
}

/// The diff from `current` to `wanted` (see the module docs).
pub(super) fn plan(current: &HashMap<String, Current>, wanted: &[Wanted]) -> Plan {
    let mut plan = Plan::default();
    for w in wanted {
        match current.get(&w.id) {
            Some(c)
                if c.kind == w.kind
                    && c.type_name == w.type_name
                    && buffer::same_storage(&c.buffer, &w.buffer) =>
            {
                let rerun = c.ended && c.kind != ComponentKind::Source;
                if c.fingerprint != w.fingerprint || rerun {
                    plan.changed.push(w.id.clone());
                    plan.build.push(w.id.clone());
                }
            }
            existing => {
                if existing.is_some() {
                    plan.removed.push(w.id.clone());
                }
                plan.added.push(w.id.clone());
                plan.build.push(w.id.clone());
                plan.fresh.insert(w.id.clone());
            }
        }
    }
    let wanted_ids: HashSet<&str> = wanted.iter().map(|w| w.id.as_str()).collect();
    let mut gone: Vec<String> = current
        .keys()
        .filter(|id| !wanted_ids.contains(id.as_str()))
        .cloned()
        .collect();
    gone.sort();
    plan.removed.extend(gone);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufferType;

    fn wanted(id: &str, kind: ComponentKind, type_name: &'static str, fingerprint: u64) -> Wanted {
        Wanted {
            id: id.into(),
            kind,
            type_name,
            fingerprint,
            buffer: BufferConfig::default(),
        }
    }

    fn running(w: &[Wanted]) -> HashMap<String, Current> {
        w.iter()
            .map(|w| {
                let c = Current {
                    kind: w.kind,
                    type_name: w.type_name,
                    fingerprint: w.fingerprint,
                    buffer: w.buffer,
                    ended: false,
                };
                (w.id.clone(), c)
            })
            .collect()
    }

    fn pipeline() -> Vec<Wanted> {
        vec![
            wanted("in", ComponentKind::Source, "webhook", 1),
            wanted("shape", ComponentKind::Transform, "remap", 2),
            wanted("out", ComponentKind::Sink, "http", 3),
        ]
    }

    #[test]
    fn the_same_pipeline_changes_nothing() {
        let p = pipeline();
        assert_eq!(plan(&running(&p), &p), Plan::default());
    }

    #[test]
    fn from_nothing_everything_is_added_in_pipeline_order() {
        let p = pipeline();
        let diff = plan(&HashMap::new(), &p);
        assert_eq!(diff.added, ["in", "shape", "out"]);
        assert_eq!(diff.build, ["in", "shape", "out"]);
        assert_eq!(diff.fresh.len(), 3);
        assert!(diff.changed.is_empty() && diff.removed.is_empty());
    }

    #[test]
    fn new_options_rebuild_in_the_same_shell() {
        let mut p = pipeline();
        let now = running(&p);
        p[1].fingerprint = 20;
        let diff = plan(&now, &p);
        assert_eq!(diff.changed, ["shape"]);
        assert_eq!(diff.build, ["shape"]);
        assert!(diff.fresh.is_empty() && diff.added.is_empty() && diff.removed.is_empty());
    }

    #[test]
    fn another_type_or_buffer_storage_replaces_the_shell() {
        let mut p = pipeline();
        let now = running(&p);
        p[1].type_name = "filter";
        p[2].buffer = BufferConfig {
            kind: BufferType::Disk,
            ..BufferConfig::default()
        };
        let diff = plan(&now, &p);
        assert_eq!(diff.removed, ["shape", "out"]);
        assert_eq!(diff.added, ["shape", "out"]);
        assert_eq!(diff.fresh, HashSet::from(["shape".into(), "out".into()]));
    }

    #[test]
    fn a_bigger_memory_buffer_is_no_rebuild() {
        let mut p = pipeline();
        let now = running(&p);
        p[2].buffer.max_events = Some(5000);
        assert_eq!(plan(&now, &p), Plan::default());
    }

    #[test]
    fn ended_transforms_and_sinks_run_again_but_finished_sources_do_not() {
        let p = pipeline();
        let mut now = running(&p);
        for c in now.values_mut() {
            c.ended = true;
        }
        let diff = plan(&now, &p);
        assert_eq!(diff.changed, ["shape", "out"]);
    }

    #[test]
    fn ids_no_longer_declared_are_removed() {
        let p = pipeline();
        let now = running(&p);
        let diff = plan(&now, &p[..1]);
        assert_eq!(diff.removed, ["out", "shape"]);
        assert!(diff.build.is_empty());
    }
}
