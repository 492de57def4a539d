//! Announcing changes: a group's pending changes become notices; notices leave as
//! events carrying the acknowledgement of the alert that caused them; what the sinks
//! did not deliver is announced again.

use std::sync::Arc;

use vrl::value::Value;

use super::state::Action;
use super::{IncidentState, IncidentTransform, output};
use crate::component::TransformOutputs;
use crate::event::{BatchAck, Event, EventStatus};
use crate::state_file::lock;

impl IncidentTransform {
    /// Announces every pending change of `group` as notices; the change of the
    /// incident `carrier.0` will leave with the acknowledgement of the batch's event in
    /// slot `carrier.1` (see [`IncidentTransform::emit`]).
    pub(super) fn flush_group(
        &self,
        state: &mut IncidentState,
        group: &str,
        now: i64,
        mut carrier: Option<(String, usize)>,
        notices: &mut Vec<Notice>,
    ) {
        let keys: Vec<String> = state
            .pending
            .iter()
            .filter(|k| state.incidents.get(*k).is_some_and(|i| i.group == group))
            .cloned()
            .collect();
        for key in keys {
            state.pending.shift_remove(&key);
            let Some(incident) = state.incidents.get_mut(&key) else {
                continue;
            };
            while let Some((action, reason)) = incident.announce(now) {
                state.changed.insert(key.clone());
                if let Some(c) = self.counters.notifications.get(action.as_str()) {
                    c.add(1);
                }
                let value = output::notification(&key, incident, action, reason.as_deref());
                let slot = match carrier.take() {
                    Some((k, slot)) if k == key => Some(slot),
                    other => {
                        carrier = other;
                        None
                    }
                };
                notices.push(Notice {
                    key: key.clone(),
                    id: incident.id.clone(),
                    action,
                    value,
                    slot,
                });
            }
        }
        if let Some(g) = state.groups.get_mut(group) {
            g.last_flush = Some(now);
            g.next_flush = None;
        }
    }

    /// Announces the group of `key`'s incident now, its own change carried by the
    /// alert in batch slot `slot`.
    pub(super) fn flush_carried(
        &self,
        state: &mut IncidentState,
        key: String,
        slot: usize,
        now: i64,
        notices: &mut Vec<Notice>,
    ) {
        let group = state
            .incidents
            .get(&key)
            .map(|i| i.group.clone())
            .unwrap_or_default();
        self.flush_group(state, &group, now, Some((key, slot)), notices);
    }

    /// Sends the notices. Each carries the acknowledgement of the alert that caused it
    /// (the sender waits for the page); when a notice is not delivered, its change is
    /// announced again at the next timer pass ([`IncidentTransform::redo`]).
    pub(super) fn emit(
        &self,
        notices: Vec<Notice>,
        slots: &mut [Event],
        out: &mut TransformOutputs,
    ) {
        let wall = self.clock.wall();
        for n in notices {
            let inputs = n
                .slot
                .and_then(|i| slots.get_mut(i))
                .map(|e| vec![e.meta.ack.take()])
                .unwrap_or_default();
            let failed = Arc::clone(&self.undelivered);
            let (key, id, action) = (n.key, n.id, n.action);
            let ack = BatchAck::forwarding_then(inputs, move |status| {
                if status != EventStatus::Delivered {
                    let mut failed = lock(&failed);
                    if failed.len() < MAX_UNDELIVERED {
                        failed.push(Undelivered { key, id, action });
                    }
                }
            });
            out.default
                .push(Event::new(n.value, Arc::clone(&self.id), wall).with_ack(ack.event_ack()));
        }
    }

    /// Takes the notices reported undelivered so far.
    pub(super) fn take_undelivered(&self) -> Vec<Undelivered> {
        std::mem::take(&mut *lock(&self.undelivered))
    }

    /// Gives notices back to be tried at the next pass (their transaction failed).
    pub(super) fn give_back(&self, failed: Vec<Undelivered>) {
        let mut list = lock(&self.undelivered);
        let room = MAX_UNDELIVERED.saturating_sub(list.len());
        list.extend(failed.into_iter().take(room));
    }

    /// Marks changes whose notices `failed` as pending again, unless the incident
    /// moved on since. Returns the keys marked.
    pub(super) fn redo(
        &self,
        state: &mut IncidentState,
        now: i64,
        failed: Vec<Undelivered>,
    ) -> Vec<String> {
        let mut marked = Vec::new();
        for f in failed {
            let Some(i) = state.incidents.get_mut(&f.key) else {
                continue;
            };
            let same = i.id == f.id && i.announced.is_some_and(|(a, _)| a == f.action);
            if !same || i.pending.is_some() {
                continue;
            }
            // One sink failing for good (and no dead letter) must not page the others
            // forever: a few more tries, further and further apart.
            if i.redeliveries >= MAX_REDELIVERIES {
                tracing::error!(component_id = %self.id, incident = %i.id, action = f.action.as_str(), "a notification was still not delivered after {MAX_REDELIVERIES} more tries; giving up on it (wire the sink's dead_letter output to keep such notifications)");
                continue;
            }
            i.redeliveries += 1;
            let at = now.saturating_add(1000 << (i.redeliveries - 1));
            i.pending = Some(f.action);
            i.notify_at = Some(at);
            self.counters.alert("redelivery");
            state.changed.insert(f.key.clone());
            state.pending.insert(f.key.clone());
            let clock = state.groups.entry(i.group.clone()).or_default();
            clock.next_flush = Some(clock.next_flush.map_or(at, |n| n.min(at)));
            marked.push(f.key);
        }
        marked
    }
}

/// A notification to send: the change `action` of incident `id` (key `key`), and the
/// batch slot of the alert whose acknowledgement it carries.
pub(super) struct Notice {
    pub(super) key: String,
    pub(super) id: String,
    pub(super) action: Action,
    pub(super) value: Value,
    pub(super) slot: Option<usize>,
}

/// A notification that was not delivered (the sink gave up, or its event was dropped).
#[derive(Clone)]
pub(super) struct Undelivered {
    pub(super) key: String,
    pub(super) id: String,
    pub(super) action: Action,
}

/// Announcements of one change again after the sinks did not deliver it, at most
/// (1 s, 2 s, 4 s, 8 s and 16 s after each failure).
const MAX_REDELIVERIES: u32 = 5;

/// Undelivered notices remembered at most (beyond, the change is not announced again).
pub(super) const MAX_UNDELIVERED: usize = 10_000;
