//! The transform without a store: incidents in memory, shared live across a reload,
//! with a journal of changes and snapshots in `data_dir`.

use std::collections::HashSet;
use std::sync::Arc;

use super::{IncidentState, IncidentTransform, journal};
use crate::component::TransformOutputs;
use crate::state_file::{self, lock};

impl IncidentTransform {
    pub(super) fn timers(&mut self, out: &mut TransformOutputs) {
        let now = self.clock.wall().timestamp_millis();
        let state = Arc::clone(&self.state);
        let mut state = lock(&state);
        let state = &mut *state;
        let settled = self.take_settled();
        let mut changed = self.settle(state, now, settled);
        let mut live_groups: HashSet<String> = HashSet::new();
        let mut open = 0usize;
        for (key, incident) in state.incidents.iter_mut() {
            let again = self.recheck(incident, now);
            if incident.tick(now, &self.timing) || again {
                changed = true;
                state.nothing_to_evict = false;
                state.changed.insert(key.clone());
                if incident.pending.is_some() {
                    state.pending.insert(key.clone());
                    self.policy
                        .schedule(state.groups.entry(incident.group.clone()).or_default(), now);
                }
            }
            if incident.is_open() {
                open += 1;
            }
        }
        let mut notices = Vec::new();
        changed |= self.flush_due(state, now, &mut notices);
        let before = state.incidents.len();
        let timing = self.timing;
        state.incidents.retain(|_, i| !i.is_done(now, &timing));
        changed |= state.incidents.len() != before;
        for i in state.incidents.values() {
            live_groups.insert(i.group.clone());
        }
        state
            .groups
            .retain(|g, clock| clock.next_flush.is_some() || live_groups.contains(g));
        self.counters.open.set(open as f64);
        self.dirty |= changed || std::mem::take(&mut state.edited);
        self.journal(state);
        self.emit(notices, &mut [], out);
    }

    /// Makes this batch's changes durable before its notifications leave.
    pub(super) fn journal(&self, state: &mut IncidentState) {
        if state.changed.is_empty() {
            return;
        }
        let keys: Vec<String> = state.changed.drain(..).collect();
        let Some(path) = &self.persist else {
            return;
        };
        if let Err(e) = journal::append(&journal::path_for(path), state, &keys) {
            tracing::warn!(component_id = %self.id, error = %e, "cannot write the incident journal; changes survive only a clean stop");
        }
    }

    /// Rewrites the state file (and empties the journal) every `snapshot_interval`
    /// when anything changed, and when the component stops (`force`).
    pub(super) fn save(&mut self, force: bool) {
        let Some(path) = &self.persist else {
            return;
        };
        let now = self.clock.wall().timestamp_millis();
        let mut state = lock(&self.state);
        // Changes by hand happen under the lock, outside this instance.
        self.dirty |= std::mem::take(&mut state.edited);
        let due =
            (self.dirty || self.touched) && (force || now - self.last_write >= self.snapshot_every);
        if !due {
            return;
        }
        // Under the lock throughout: an instance sharing the state (during a reload)
        // must not append to the journal between the snapshot and the clearing.
        let written = serde_json::to_vec(&*state)
            .map_err(std::io::Error::other)
            .and_then(|bytes| state_file::write_atomically(path, &bytes))
            .and_then(|()| journal::clear(&journal::path_for(path)));
        drop(state);
        match written {
            Ok(()) => {
                self.dirty = false;
                self.touched = false;
                self.last_write = now;
            }
            Err(e) => {
                tracing::warn!(component_id = %self.id, file = %path.display(), error = %e, "cannot write the incident state")
            }
        }
    }
}

/// Moves an unreadable state file aside (`<file>.corrupt-<time>`) rather than letting
/// the next write replace it: its incidents may be recovered by hand.
pub(super) fn set_aside(path: &std::path::Path, e: &serde_json::Error) {
    let aside = path.with_extension(format!(
        "json.corrupt-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    ));
    let kept = std::fs::rename(path, &aside).is_ok();
    tracing::error!(file = %path.display(), error = %e, kept_as = %aside.display(), kept, "unreadable incident state; starting without its incidents");
}
