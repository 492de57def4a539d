//! The transform with the shared store: each batch and each timer pass is one
//! transaction over the incidents it touches; notifications leave after the commit.
//!
//! A batch the store cannot take (unreachable, timed out) is settled as errored, so
//! its sender delivers it again (a webhook answers 5xx, Kafka rewinds): nothing is
//! lost, and nothing is announced that the store does not hold.

use std::collections::HashMap;

use super::latest::status_of;
use super::store::{Loaded, StoreError, Writes, alert_detail};
use super::{IncidentState, IncidentTransform, UNMATCHED};

/// Alerts held while the store is unreachable, at most; beyond, they are handed back
/// to their senders (a webhook answers 503, Kafka rewinds).
const MAX_HELD: usize = 10_000;
use crate::component::TransformOutputs;
use crate::event::{EventBatch, EventStatus};
use crate::state_file::lock;
use crate::telemetry::ComponentState;

impl IncidentTransform {
    /// A state holding what the transaction read, and this instance's group clocks.
    fn transaction_state(
        &mut self,
        loaded: Loaded,
    ) -> (IncidentState, HashMap<String, (String, u64)>) {
        self.stored_open = usize::try_from(loaded.open).unwrap_or(usize::MAX);
        self.counters.open.set(loaded.open as f64);
        let mut state = IncidentState {
            groups: std::mem::take(&mut lock(&self.state).groups),
            max_incidents: self.max_incidents,
            // Nothing to forget: the store keeps every incident.
            nothing_to_evict: true,
            ..IncidentState::default()
        };
        let mut before = HashMap::with_capacity(loaded.incidents.len());
        for (key, incident) in loaded.incidents {
            before.insert(key.clone(), (incident.id.clone(), incident.recorded));
            state.incidents.insert(key, incident);
        }
        (state, before)
    }

    /// What the transaction writes: every incident it holds, closing those a new
    /// incident of their key replaced, and those `done` says are over.
    fn writes(
        &self,
        state: &mut IncidentState,
        before: &HashMap<String, (String, u64)>,
        writes: &mut Writes,
        now: i64,
        close_done: bool,
    ) {
        // Replaced within this transaction: written closed, before the new one of
        // their key (the timeline rows of both refer to them).
        for (key, old) in std::mem::take(&mut state.replaced) {
            let recorded_before = match before.get(&key) {
                Some((id, recorded)) if *id == old.id => *recorded,
                _ => 0,
            };
            writes.incident(&key, &old, recorded_before, true, &self.timing);
        }
        for (key, i) in state.incidents.iter_mut() {
            if i.pending.is_some() && i.notify_at.is_none() {
                i.notify_at = state
                    .groups
                    .get(&i.group)
                    .and_then(|g| g.next_flush)
                    .or(Some(now));
            }
            let recorded_before = match before.get(key) {
                Some((id, recorded)) if *id == i.id => *recorded,
                // New here (a replaced one was written closed above).
                _ => 0,
            };
            let done = close_done && i.is_done(now, &self.timing);
            writes.incident(key, i, recorded_before, done, &self.timing);
        }
    }

    /// Gives the group clocks back to the instance, forgetting idle ones.
    fn keep_groups(&self, state: &mut IncidentState, now: i64) {
        let mut groups = std::mem::take(&mut state.groups);
        groups.retain(|_, g| {
            g.next_flush.is_some()
                || g.last_flush
                    .is_some_and(|at| now - at < self.policy.idle_after(g))
        });
        lock(&self.state).groups = groups;
    }

    /// Logs a failure once per outage (the timers try every second).
    fn store_failed(&mut self, doing: &str, e: &StoreError) {
        if !self.store_down {
            self.store_down = true;
            // Shown on `/health` (probes read it without a token): the redacted error.
            let error = crate::redact::redact(&e.to_string()).into_owned();
            self.metrics.set_state(ComponentState::Degraded(error));
            tracing::warn!(component_id = %self.id, error = %e, doing, "incident store failed; alerts wait for it (up to 10,000, then they go back to their senders) and timers wait");
        } else {
            tracing::debug!(component_id = %self.id, error = %e, doing, "incident store still failing");
        }
    }

    fn store_back(&mut self) {
        if std::mem::take(&mut self.store_down) {
            if matches!(self.metrics.state(), ComponentState::Degraded(_)) {
                self.metrics.set_state(ComponentState::Running);
            }
            tracing::info!(component_id = %self.id, "incident store reachable again");
        }
    }

    pub(super) fn process_stored(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        let now = self.clock.wall().timestamp_millis();
        // What the sinks said so far first (see `process`).
        self.settle_stored(now);
        if self.held.is_empty() {
            self.try_store(batch, now, out);
            return;
        }
        // Alerts wait behind the held ones, in order, as long as there is room; a batch
        // (a webhook request) that does not fit goes back whole, so its sender is told.
        if self.held.len() + batch.len() > MAX_HELD {
            self.refuse(batch);
        } else {
            self.held.extend(batch);
        }
        if now >= self.held_until {
            let held = std::mem::take(&mut self.held);
            self.try_store(held, now, out);
        }
    }

    /// Alerts beyond what may be held: handed back to their senders.
    fn refuse(&self, events: EventBatch) {
        for event in events {
            self.counters.alert("store_unavailable");
            event.settle(EventStatus::Errored);
        }
    }

    /// Keeps `events` (their values as they came) for another try after a backoff, when
    /// the store could not be reached. What the store refused (a constraint, a bad
    /// value) would be refused again: those go back to their senders at once, so they
    /// never hold up the alerts behind them.
    fn hold(&mut self, events: EventBatch, now: i64, e: &StoreError) {
        if matches!(e, StoreError::Database(_)) {
            tracing::error!(component_id = %self.id, error = %e, alerts = events.len(), "the incident store refused a batch; its alerts go back to their senders");
            self.refuse(events);
            return;
        }
        self.store_failed("take alerts in", e);
        self.held_backoff = (self.held_backoff * 2).clamp(1_000, 30_000);
        self.held_until = now + self.held_backoff;
        if self.held.len() + events.len() > MAX_HELD {
            self.refuse(events);
        } else {
            self.held.extend(events);
        }
    }

    /// One transaction over `batch`; what the store does not take is held.
    pub(super) fn try_store(&mut self, batch: EventBatch, now: i64, out: &mut TransformOutputs) {
        let mut work = Vec::with_capacity(batch.len());
        for mut event in batch {
            let Some(status) = status_of(event.value()) else {
                self.counters.alert("unmatched");
                out.named[UNMATCHED].push(event);
                continue;
            };
            let Some(key) = self
                .key_of(&mut event)
                .filter(|k| k.len() <= super::MAX_KEY)
            else {
                self.counters.alert("unmatched");
                out.named[UNMATCHED].push(event);
                continue;
            };
            let key = super::store::stored_key(key);
            work.push((event, key, status));
        }
        if work.is_empty() {
            return;
        }
        let keys: Vec<String> = work.iter().map(|(_, k, _)| k.clone()).collect();
        let Some(store) = &self.store else {
            return;
        };
        let loaded = match store.lock(keys) {
            Ok(l) => l,
            Err(e) => {
                let events = work.into_iter().map(|(event, _, _)| event).collect();
                self.hold(events, now, &e);
                return;
            }
        };
        let (mut state, before) = self.transaction_state(loaded);
        let mut notices = Vec::new();
        let mut slots = Vec::with_capacity(work.len());
        let mut originals = Vec::with_capacity(work.len());
        let mut writes = Writes::default();
        for (mut event, key, status) in work {
            let detail = alert_detail(event.value());
            originals.push(event.value().clone());
            let slot = slots.len();
            let due = self.take_in(&mut state, &mut event, key.clone(), status, now);
            if let Some(i) = state.incidents.get(&key) {
                writes.alert(&i.id, now, detail);
            }
            if let Some(key) = due {
                self.flush_carried(&mut state, key, slot, now, &mut notices);
            }
            slots.push(event);
        }
        // The in-memory paths' bookkeeping means nothing here: the store holds it all.
        state.changed.clear();
        self.writes(&mut state, &before, &mut writes, now, false);
        self.keep_groups(&mut state, now);
        let Some(store) = &self.store else {
            return;
        };
        match store.finish(writes) {
            Ok(()) => {
                lock(&store.api_ref().intake).add(now, slots.len() as u64);
                self.held_backoff = 0;
                self.store_back();
                self.emit(notices, &mut slots, out);
                self.metrics
                    .add_discarded(slots.iter().filter(|e| e.meta.ack.is_tracked()).count());
                for event in slots {
                    event.settle(EventStatus::Delivered);
                }
            }
            Err(e) => {
                // Nothing was announced: the alerts go back as they came.
                for (event, original) in slots.iter_mut().zip(originals) {
                    event.set_value(original);
                }
                self.hold(slots, now, &e);
            }
        }
    }

    /// Timers of the incidents due now that no other aggregator holds: held resolves,
    /// `resolve_after`, `repeat_interval`, changes waiting for their group, and
    /// resolved incidents whose key can no longer reopen them (closed).
    pub(super) fn timers_stored(&mut self, out: &mut TransformOutputs) {
        let now = self.clock.wall().timestamp_millis();
        if !self.held.is_empty() && now >= self.held_until {
            let held = std::mem::take(&mut self.held);
            self.try_store(held, now, out);
        }
        self.settle_stored(now);
        let Some(store) = &self.store else {
            return;
        };
        let loaded = match store.claim(now) {
            Ok(l) => l,
            Err(e) => {
                self.store_failed("claim", &e);
                return;
            }
        };
        if self.held.is_empty() {
            self.store_back();
        }
        let (mut state, before) = self.transaction_state(loaded);
        let timing = self.timing;
        for (key, i) in state.incidents.iter_mut() {
            self.recheck(i, now);
            i.tick(now, &timing);
            if i.pending.is_none() {
                continue;
            }
            state.pending.insert(key.clone());
            let clock = state.groups.entry(i.group.clone()).or_default();
            let at = match i.notify_at {
                Some(at) => at,
                None => self.policy.schedule(clock, now),
            };
            i.notify_at = Some(at);
            clock.next_flush = Some(clock.next_flush.map_or(at, |n| n.min(at)));
        }
        let due: Vec<String> = state
            .pending
            .iter()
            .filter_map(|k| state.incidents.get(k))
            .filter(|i| i.notify_at.is_some_and(|at| at <= now))
            .map(|i| i.group.clone())
            .collect();
        let mut notices = Vec::new();
        for group in due {
            if state
                .groups
                .get(&group)
                .is_some_and(|g| g.next_flush.is_some())
            {
                self.flush_group(&mut state, &group, now, None, &mut notices);
            }
        }
        let mut writes = Writes::default();
        self.writes(&mut state, &before, &mut writes, now, true);
        self.keep_groups(&mut state, now);
        let Some(store) = &self.store else {
            return;
        };
        match store.finish(writes) {
            Ok(()) => self.emit(notices, &mut [], out),
            // Nothing changed in the store: the same timers come due again.
            Err(e) => self.store_failed("timers", &e),
        }
    }

    /// What the sinks said of the notices, into the store: delivered changes are
    /// confirmed, failed ones due again.
    pub(super) fn settle_stored(&mut self, now: i64) {
        let settled = self.take_settled();
        if settled.is_empty() {
            return;
        }
        let keys: Vec<String> = settled.iter().map(|f| f.key.clone()).collect();
        let Some(store) = &self.store else {
            return;
        };
        let loaded = match store.lock(keys) {
            Ok(l) => l,
            Err(e) => {
                // Tried again at the next pass.
                self.give_back(settled);
                return self.store_failed("settle notifications", &e);
            }
        };
        let (mut state, before) = self.transaction_state(loaded);
        self.settle(&mut state, now, settled.clone());
        let mut writes = Writes::default();
        self.writes(&mut state, &before, &mut writes, now, false);
        self.keep_groups(&mut state, now);
        if let Some(store) = &self.store
            && let Err(e) = store.finish(writes)
        {
            self.give_back(settled);
            self.store_failed("settle notifications", &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::Incident;

    #[test]
    fn a_pending_change_is_due_when_its_group_says() {
        let mut i = Incident::open(
            "i".into(),
            String::new(),
            0,
            "high".into(),
            None,
            vrl::value::Value::Null,
        );
        i.notify_at = Some(30_000);
        assert_eq!(
            i.next_due(&super::super::state::Timing::default()),
            Some(30_000)
        );
        i.announce(30_000);
        assert_eq!(i.next_due(&super::super::state::Timing::default()), None);
    }
}
