//! Announcing changes: a group's pending changes become notices; notices leave as
//! events carrying the acknowledgement of the alert that caused them; what the sinks
//! did not deliver, or did not confirm within `confirm_timeout` (the process that sent
//! it may have died), is announced again.

use std::sync::Arc;

use vrl::value::Value;

use super::state::{Action, Again, Incident, MAX_REDELIVERIES};
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
        carrier: Option<(String, usize)>,
        notices: &mut Vec<Notice>,
    ) {
        let keys: Vec<String> = match &carrier {
            // Without `group_by` an incident is its group's only member.
            Some((key, _)) if self.group_by.is_empty() => vec![key.clone()],
            _ => state
                .pending
                .iter()
                .filter(|k| state.incidents.get(*k).is_some_and(|i| i.group == group))
                .cloned()
                .collect(),
        };
        self.flush_members(state, group, keys, now, carrier, notices);
    }

    /// Announces every group whose time has come, in one pass over the pending keys
    /// (many groups may be due at once: without `group_by` each incident is one).
    /// Returns whether any group was due.
    pub(super) fn flush_due(
        &self,
        state: &mut IncidentState,
        now: i64,
        notices: &mut Vec<Notice>,
    ) -> bool {
        let due: std::collections::HashSet<String> = state
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush.is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return false;
        }
        let mut members: std::collections::HashMap<String, Vec<String>> =
            due.iter().map(|g| (g.clone(), Vec::new())).collect();
        for key in &state.pending {
            if let Some(i) = state.incidents.get(key)
                && let Some(m) = members.get_mut(&i.group)
            {
                m.push(key.clone());
            }
        }
        for (group, keys) in members {
            self.flush_members(state, &group, keys, now, None, notices);
        }
        true
    }

    /// Announces the pending changes of `keys`, members of `group`, and marks the group
    /// announced.
    fn flush_members(
        &self,
        state: &mut IncidentState,
        group: &str,
        keys: Vec<String>,
        now: i64,
        mut carrier: Option<(String, usize)>,
        notices: &mut Vec<Notice>,
    ) {
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
                notices.push(Notice {
                    key: key.clone(),
                    id: incident.id.clone(),
                    action,
                    sent: now,
                    value,
                    slot: None,
                });
                incident.unconfirmed = Some(now.saturating_add(self.timing.confirm_timeout));
            }
            // The alert's acknowledgement rides the last change it caused (an earlier
            // one, an acknowledgement by hand, is not the sender's to wait for).
            if let Some((k, slot)) = carrier.take_if(|(k, _)| *k == key)
                && let Some(last) = notices.last_mut().filter(|n| n.key == k)
            {
                last.slot = Some(slot);
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
    /// (the sender waits for the page); what the sinks say of each comes back through
    /// [`IncidentTransform::settle`] at the next timer pass.
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
            let settled = Arc::clone(&self.settled);
            let in_flight = Arc::clone(&self.in_flight);
            let (key, id, action, sent) = (n.key, n.id, n.action, n.sent);
            {
                let mut flying = lock(&in_flight);
                if flying.len() < MAX_SETTLED {
                    flying.insert((id.clone(), sent));
                }
            }
            let ack = BatchAck::forwarding_then(inputs, move |status| {
                lock(&in_flight).remove(&(id.clone(), sent));
                let mut settled = lock(&settled);
                // Beyond, a confirmation is lost: the change goes out again at its
                // `confirm_timeout`, a failure is not retried.
                if settled.len() < MAX_SETTLED {
                    settled.push(Settled {
                        key,
                        id,
                        action,
                        sent,
                        delivered: status == EventStatus::Delivered,
                    });
                }
            });
            out.default
                .push(Event::new(n.value, self.id, wall).with_ack(ack.event_ack()));
        }
    }

    /// Takes what the sinks said of the notices so far.
    pub(super) fn take_settled(&self) -> Vec<Settled> {
        std::mem::take(&mut *lock(&self.settled))
    }

    /// Gives outcomes back to be applied at the next pass (their transaction failed).
    pub(super) fn give_back(&self, settled: Vec<Settled>) {
        let mut list = lock(&self.settled);
        let room = MAX_SETTLED.saturating_sub(list.len());
        list.extend(settled.into_iter().take(room));
    }

    /// Applies what the sinks said: a delivered change is confirmed; a failed one is
    /// pending again (after 1, 2, 4, 8, 16 s), unless the incident moved on since.
    /// Returns whether any incident changed.
    pub(super) fn settle(
        &self,
        state: &mut IncidentState,
        now: i64,
        settled: Vec<Settled>,
    ) -> bool {
        let mut changed = false;
        for f in settled {
            let Some(i) = state.incidents.get_mut(&f.key) else {
                continue;
            };
            // This very sending: an outcome of an earlier copy (a redelivery's
            // predecessor, answered late) says nothing of the latest one.
            let same = i.id == f.id && i.announced == Some((f.action, f.sent));
            // An earlier change than the last announced one failed (an acknowledgement
            // sent just before an escalation): made good when it still holds.
            let earlier = i.id == f.id
                && !f.delivered
                && i.announced.is_some_and(|(a, _)| a != f.action)
                && i.still_holds(f.action);
            if earlier && i.pending.is_none() {
                i.announced = Some((f.action, f.sent));
            } else if !same || i.pending.is_some() {
                continue;
            }
            if f.delivered {
                if i.unconfirmed.take().is_some() {
                    if !i.is_open() {
                        // Confirmed resolved: it may make room now.
                        state.nothing_to_evict = false;
                    }
                    state.changed.insert(f.key);
                    changed = true;
                }
                continue;
            }
            changed = true;
            state.changed.insert(f.key.clone());
            if !self.again(i, "was not delivered") {
                continue;
            }
            let at = now.saturating_add(1000 << (i.redeliveries - 1));
            i.notify_at = Some(at);
            state.pending.insert(f.key.clone());
            let clock = state.groups.entry(i.group.clone()).or_default();
            clock.next_flush = Some(clock.next_flush.map_or(at, |n| n.min(at)));
        }
        changed
    }

    /// Announces again a change whose delivery was not confirmed within
    /// `confirm_timeout` (its sender may have died with it). Returns whether the
    /// incident changed.
    pub(super) fn recheck(&self, i: &mut Incident, now: i64) -> bool {
        if i.pending.is_some() || i.unconfirmed.is_none_or(|at| now < at) {
            return false;
        }
        if let Some((_, sent)) = i.announced
            && lock(&self.in_flight).contains(&(i.id.clone(), sent))
        {
            // Still with this process's sinks (a backlog): their outcome will come.
            return false;
        }
        let why = if i.unconfirmed == Some(RESTARTED) {
            "sent before a restart was not confirmed delivered before it"
        } else {
            "was not confirmed delivered within confirm_timeout"
        };
        self.again(i, why);
        true
    }

    /// Makes `i`'s last change pending again; false when it was tried often enough.
    fn again(&self, i: &mut Incident, why: &str) -> bool {
        let action = i.announced.map_or("", |(a, _)| a.as_str());
        match i.announce_again() {
            Again::Yes => {
                self.counters.alert("redelivery");
                tracing::warn!(component_id = %self.id, incident = %i.id, action, "a notification {why}; announcing it again");
                true
            }
            // One sink failing for good (and no dead letter) must not page the others
            // forever.
            Again::GaveUp => {
                tracing::error!(component_id = %self.id, incident = %i.id, action, "a notification {why}, after {MAX_REDELIVERIES} more tries; giving up on it (wire the sink's dead_letter output to keep such notifications)");
                false
            }
        }
    }
}

/// A notification to send: the change `action` of incident `id` (key `key`), and the
/// batch slot of the alert whose acknowledgement it carries.
pub(super) struct Notice {
    pub(super) key: String,
    pub(super) id: String,
    pub(super) action: Action,
    /// When it was announced (which sending of the change this is).
    pub(super) sent: i64,
    pub(super) value: Value,
    pub(super) slot: Option<usize>,
}

/// What the sinks did with a notification: delivered it, or failed it (gave up, or its
/// event was dropped by accident).
#[derive(Debug, Clone)]
pub(super) struct Settled {
    pub(super) key: String,
    pub(super) id: String,
    pub(super) action: Action,
    pub(super) sent: i64,
    pub(super) delivered: bool,
}

/// `unconfirmed` of a change a previous process sent: due at once.
pub(super) const RESTARTED: i64 = i64::MIN;

/// Outcomes waiting for the next timer pass, at most.
const MAX_SETTLED: usize = 10_000;
