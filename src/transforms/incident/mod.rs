//! `incident`: one incident per real problem, from any vendor's alerts.
//!
//! Alerts in the normalized schema (`status` firing or resolved) are correlated by a
//! key (a template or a VRL expression, default `fingerprint`). Per key an incident
//! moves open → (acknowledged) → resolved ([`state`]), and only its *changes* leave, as
//! notification events ([`output`]) timed per group like Alertmanager's ([`groups`]).
//! A repeated firing updates `count` and `last_seen` and is consumed; a resolve for a
//! key never opened is consumed and counted. Events that are not alerts, or lack a
//! field of the key, go to the `unmatched` output.
//!
//! Acknowledgements: a change that goes out at once leaves in the alert event that
//! caused it, so the sender's acknowledgement waits for its delivery. Every other input
//! is settled as delivered when it is taken in, and a change that waits for its group
//! goes out later as a new event: what it needs is in the state, which survives
//! restarts and reloads (`<data_dir>/incident/<id>.json`: a change is written at the
//! next timer pass, repeats at most every `snapshot_interval`, everything when the
//! component stops; a reload shares it live).
//!
//! Files: `config.rs` options, `state.rs` the state machine (`phase.rs` its words),
//! `groups.rs` timing, `announce.rs` notices and their redelivery,
//! `output.rs` notification events, `latest.rs` the alert an incident keeps,
//! `local.rs` state in memory with its journal and snapshots, `shared.rs` and `store/`
//! the shared PostgreSQL store, `manual.rs` changes by hand (the API), `intake.rs` and
//! `counters.rs` what it counts.

mod announce;
pub(crate) mod config;
mod counters;
mod grouping;
pub(crate) mod groups;
pub(crate) mod intake;
pub(crate) mod journal;
mod latest;
mod local;
pub(crate) mod manual;
pub(crate) mod output;
pub(crate) mod phase;
pub(crate) mod registry;
mod shared;
pub(crate) mod state;
pub(crate) mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::{IndexMap, IndexSet};
use serde::{Deserialize, Serialize};
use vrl::value::Value;

use announce::Settled;
pub(crate) use config::IncidentConfig;
use counters::Counters;
use groups::{GroupClock, Policy};
pub(crate) use latest::restore_times;
use latest::{bounded, status_of, text_field, top};
use state::{Incident, Sighting, Timing};

use crate::alert::{Status, field};
use crate::clock::Clock;
use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::{Event, EventStatus, SourceId};
use crate::program::{self, Mode, ProgramSource, Runner};
use crate::state_file::{self, lock};
use crate::telemetry::ComponentMetrics;
use crate::template::Template;

const UNMATCHED: usize = 0;
/// Longer keys are refused (to `unmatched`): a key is kept per incident and shown whole.
const MAX_KEY: usize = 1024;
/// How often timers (held resolves, `resolve_after`, groups) are looked at.
const TICK: Duration = Duration::from_secs(1);

/// Everything the component knows; shared live across a reload, written as JSON.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct IncidentState {
    /// By correlation key.
    pub incidents: IndexMap<String, Incident>,
    pub(crate) groups: HashMap<String, GroupClock>,
    /// Keys whose incident has a change to announce.
    #[serde(skip)]
    pending: IndexSet<String>,
    /// Changed by hand since the last write.
    #[serde(skip)]
    edited: bool,
    /// Keys whose incident changed since the last journal write.
    #[serde(skip)]
    changed: IndexSet<String>,
    /// Set when a search for an evictable incident found none; cleared by a resolve.
    #[serde(skip)]
    nothing_to_evict: bool,
    /// Incidents a new one of their key replaced since the last write (the shared
    /// store writes them, closed, with the new one).
    #[serde(skip)]
    replaced: Vec<(String, Incident)>,
    /// `max_incidents` of the component (incidents opened by hand count too).
    #[serde(skip)]
    pub(crate) max_incidents: usize,
    /// Alerts taken in (for `GET /stats`).
    #[serde(skip)]
    pub(crate) intake: intake::Intake,
    /// What the sinks did with the notices, filled by their acknowledgements; shared
    /// with the state so that a reload's new instance hears about the old one's.
    #[serde(skip)]
    settled: Arc<Mutex<Vec<Settled>>>,
    /// (incident id, when sent) of notifications still with this process's sinks:
    /// `confirm_timeout` does not send them again.
    #[serde(skip)]
    in_flight: Arc<Mutex<std::collections::HashSet<(String, i64)>>>,
    /// The correlation key its incidents were keyed by (`key` or `key_source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keyed_by: Option<String>,
    /// The number of the last journal record this state includes.
    #[serde(default)]
    pub(crate) seq: u64,
}

impl IncidentState {
    /// Makes room by forgetting the oldest resolved incident whose resolve went out.
    /// After a scan that found none, no scan runs until something resolves.
    fn evict_one(&mut self) -> bool {
        if self.nothing_to_evict {
            return false;
        }
        let found = self
            .incidents
            .iter()
            .position(|(_, i)| !i.is_open() && i.pending.is_none() && i.unconfirmed.is_none());
        match found {
            Some(index) => {
                self.incidents.shift_remove_index(index);
                true
            }
            None => {
                self.nothing_to_evict = true;
                false
            }
        }
    }

    /// The state file at `path` with its journal replayed (empty when there is none).
    pub fn load(path: &std::path::Path) -> Self {
        let mut state: Self = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                local::set_aside(path, &e);
                Self::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the incident state; starting fresh");
                Self::default()
            }
        };
        journal::replay(&journal::path_for(path), &mut state);
        for incident in state.incidents.values_mut() {
            restore_times(&mut incident.latest);
        }
        state.pending = state
            .incidents
            .iter()
            .filter(|(_, i)| i.pending.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        // Whoever sent them is gone: what it never heard back about goes out again.
        for i in state.incidents.values_mut() {
            if let Some(at) = &mut i.unconfirmed {
                *at = announce::RESTARTED;
            }
        }
        state
    }
}

impl IncidentConfig {
    /// Remembers the key definition with the state; when a reload or restart changes
    /// it, the incidents kept under the old keys are orphaned: say so.
    fn note_key(&self, id: &str, state: &mut IncidentState) {
        let now = match (&self.key_source, &self.key) {
            (Some(src), _) => format!("key_source: {src}"),
            (None, Some(t)) => format!("key: {t}"),
            (None, None) => "key: {{ fingerprint }}".to_owned(),
        };
        let open = state.incidents.values().filter(|i| i.is_open()).count();
        if let Some(before) = &state.keyed_by
            && *before != now
            && open > 0
        {
            tracing::warn!(component_id = %id, before = %before, now = %now, open, "the correlation key changed: open incidents keep their old keys, so alerts now open new incidents and resolves of the old ones are dropped as stray; resolve the old ones by hand (PUT /incidents/{{id}}) or let resolve_after close them");
        }
        state.keyed_by = Some(now);
    }
}

enum Key {
    Template(Template),
    Program(Runner),
}

impl TransformConfig for IncidentConfig {
    fn type_name(&self) -> &'static str {
        "incident"
    }

    fn outputs(&self) -> Vec<String> {
        vec!["unmatched".into()]
    }

    fn build(&self, cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        self.check()?;
        let key = match &self.key_source {
            Some(src) => Key::Program(Runner::new(
                program::compile(&ProgramSource::Inline(src.clone()), Mode::Expression)
                    .map_err(|e| BuildError(format!("`key_source`: {}", e.0)))?,
            )),
            None => Key::Template(
                Template::parse(self.key.as_deref().unwrap_or("{{ fingerprint }}"))
                    .map_err(|e| BuildError(format!("`key`: {e}")))?,
            ),
        };
        let group_by = self
            .group_by
            .iter()
            .map(|f| {
                vrl::path::parse_value_path(f)
                    .map_err(|e| BuildError(format!("`group_by`: `{f}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // `validate` and `sluice test` (no data dir) keep incidents in memory.
        let store = match (&self.store, &cx.data_dir) {
            (Some(cfg), Some(_)) => {
                Some(store::Store::start(&cx.id, &cfg.postgres, self.timing())?)
            }
            _ => None,
        };
        let (state, persist) = match &cx.data_dir {
            Some(_) if store.is_some() => (Arc::new(Mutex::new(IncidentState::default())), None),
            Some(dir) => {
                let path = state_file::path_for(dir, "incident", &cx.id);
                (
                    state_file::take_over(&path, IncidentState::load),
                    Some(path),
                )
            }
            None => (Arc::new(Mutex::new(IncidentState::default())), None),
        };
        let now = cx.clock.wall().timestamp_millis();
        lock(&state).max_incidents = self.max_incidents;
        if store.is_none() {
            self.note_key(&cx.id, &mut lock(&state));
        }
        let settled = Arc::clone(&lock(&state).settled);
        let in_flight = Arc::clone(&lock(&state).in_flight);
        if let Some(store) = &store {
            registry::STORES.add(&cx.id, &store.api());
        } else if persist.is_some() {
            // Only a running pipeline's instances: `validate` and `sluice test` build
            // without a data dir, and must not take the API's place.
            registry::LOCAL.add(&cx.id, &state);
        }
        Ok(Box::new(IncidentTransform {
            id: SourceId::intern(&cx.id),
            key,
            group_by,
            policy: Policy {
                group_wait: config::ms(self.group_wait),
                group_interval: config::ms(self.group_interval),
            },
            timing: self.timing(),
            max_incidents: self.max_incidents,
            state,
            persist,
            store,
            stored_open: 0,
            snapshot_every: config::ms(self.snapshot_interval),
            last_write: now,
            dirty: false,
            touched: false,
            warned_full: false,
            clock: Arc::clone(&cx.clock),
            counters: Counters::new(&cx.metrics),
            settled,
            in_flight,
            held: Vec::new(),
            held_until: 0,
            held_backoff: 0,
            store_down: false,
            metrics: Arc::clone(&cx.metrics),
        }))
    }
}

struct IncidentTransform {
    id: SourceId,
    key: Key,
    group_by: Vec<vrl::path::OwnedValuePath>,
    policy: Policy,
    timing: Timing,
    max_incidents: usize,
    state: Arc<Mutex<IncidentState>>,
    persist: Option<PathBuf>,
    /// The shared store, when configured: `state` then holds only the group clocks
    /// between transactions.
    store: Option<store::Store>,
    /// Incidents open in the store (as of the last transaction), for `max_incidents`.
    stored_open: usize,
    snapshot_every: i64,
    last_write: i64,
    /// A change (not a mere repeat) since the last write: written at the next tick.
    dirty: bool,
    /// Repeats (count, last_seen) since the last write: written every snapshot_interval.
    touched: bool,
    warned_full: bool,
    clock: Arc<dyn Clock>,
    counters: Counters,
    /// What the sinks did with the notices, filled by their acknowledgements (the
    /// state's queue).
    settled: Arc<Mutex<Vec<Settled>>>,
    /// The state's notifications in flight.
    in_flight: Arc<Mutex<std::collections::HashSet<(String, i64)>>>,
    /// With the store: alerts it could not take yet, oldest first, tried again at
    /// `held_until` (backoff `held_backoff` ms).
    held: Vec<Event>,
    held_until: i64,
    held_backoff: i64,
    /// The store failed last time (its failures are logged once per outage).
    store_down: bool,
    metrics: Arc<ComponentMetrics>,
}

impl IncidentTransform {
    fn key_of(&mut self, event: &mut Event) -> Option<String> {
        match &mut self.key {
            Key::Template(t) => t.render(event).ok(),
            Key::Program(runner) => match runner.run_event(event) {
                program::Outcome::Done(Value::Null) => None,
                program::Outcome::Done(v) => Some(v.to_string_lossy().into_owned()),
                _ => None,
            },
        }
    }

    /// Takes one alert in. Returns the key of its incident when that has a change due.
    fn take_in(
        &mut self,
        state: &mut IncidentState,
        event: &mut Event,
        key: String,
        status: Status,
        now: i64,
    ) -> Option<String> {
        let mut latest = std::mem::replace(event.value_mut(), Value::Null);
        if let Value::Object(o) = &mut latest {
            o.remove(field::RAW);
        }
        let latest = bounded(latest);
        let route = grouping::route(event, &latest, &key);
        let group_of = |latest: &Value| match &route {
            Some(r) => identity(r.group.clone()),
            None => self.group_of(latest, &key),
        };
        // The alert's own identity within the incident (one incident may join several).
        let alert = top(&latest, field::FINGERPRINT)
            .filter(|v| !matches!(v, Value::Null))
            .map(|v| identity(v.to_string_lossy().into_owned()))
            .unwrap_or_else(|| key.clone());
        let outcome = match (status, state.incidents.get_mut(&key)) {
            (Status::Firing, Some(incident)) => {
                let severity = text_field(&latest, field::SEVERITY)
                    .map(|s| s.to_ascii_lowercase())
                    .unwrap_or_else(|| incident.severity.clone());
                if incident.is_over(now, &self.timing) {
                    let group = group_of(&latest);
                    let vendor = text_field(&latest, field::SOURCE);
                    let new = Incident::open(new_id(), group, now, severity, vendor, latest);
                    let old = std::mem::replace(incident, new);
                    if self.store.is_some() {
                        state.replaced.push((key.clone(), old));
                    }
                    Sighting::Opened
                } else {
                    let vendor = text_field(&latest, field::SOURCE);
                    incident.fire(now, &severity, vendor.as_deref(), latest)
                }
            }
            (Status::Firing, None) => {
                // With the store, its open incidents count (this instance holds none).
                let held = match self.store {
                    Some(_) => self.stored_open,
                    None => state.incidents.len(),
                };
                if held >= self.max_incidents && !state.evict_one() {
                    self.counters.alert("over_limit");
                    if !self.warned_full {
                        self.warned_full = true;
                        tracing::warn!(component_id = %self.id, max_incidents = self.max_incidents, "incident holds max_incidents; alerts of new keys are dropped");
                    }
                    event.set_value(latest);
                    return None;
                }
                let severity = text_field(&latest, field::SEVERITY)
                    .map(|s| s.to_ascii_lowercase())
                    .unwrap_or_else(|| "medium".into());
                let group = group_of(&latest);
                let vendor = text_field(&latest, field::SOURCE);
                state.incidents.insert(
                    key.clone(),
                    Incident::open(new_id(), group, now, severity, vendor, latest),
                );
                self.stored_open += 1;
                Sighting::Opened
            }
            (Status::Resolved, Some(incident)) => {
                if incident.is_open() && incident.others_fire(&alert) {
                    Sighting::PartialResolve
                } else {
                    incident.resolve_seen(now, latest, &self.timing)
                }
            }
            (Status::Resolved, None) => {
                self.counters.alert("stray_resolve");
                event.set_value(latest);
                return None;
            }
        };
        if matches!(
            outcome,
            Sighting::Opened | Sighting::Reopened | Sighting::Repeat
        ) && let Some(i) = state.incidents.get_mut(&key)
        {
            i.alert_fired(&alert);
            i.repeat_interval = route.as_ref().map(|r| r.repeat_interval);
        }
        if matches!(outcome, Sighting::Repeat | Sighting::PartialResolve)
            && state
                .incidents
                .get(&key)
                .is_some_and(|i| i.pending.is_none())
        {
            self.touched = true;
        } else {
            self.dirty = true;
            state.changed.insert(key.clone());
        }
        if outcome == Sighting::Resolved {
            state.nothing_to_evict = false;
        }
        self.counters.alert(match outcome {
            Sighting::Opened => "opened",
            Sighting::Reopened => "reopened",
            Sighting::Repeat => "repeat",
            Sighting::Resolved => "resolved",
            Sighting::Held => "held",
            Sighting::DuplicateResolve => "duplicate_resolve",
            Sighting::PartialResolve => "partial_resolve",
        });
        let incident = state.incidents.get(&key)?;
        if incident.pending.is_none() {
            state.pending.shift_remove(&key);
            return None;
        }
        let group = incident.group.clone();
        state.pending.insert(key.clone());
        let clock = state.groups.entry(group).or_default();
        if let Some(r) = &route {
            clock.policy = Some(r.policy);
        }
        let due = self.policy.schedule(clock, now);
        (due <= now).then_some(key)
    }
}

/// An alert's fingerprint or a group's values as the state keeps them: without NUL
/// (the store cannot hold it), and a long one as its digest, so what an incident keeps
/// per alert stays small whatever the sender puts there.
fn identity(text: String) -> String {
    let text = store::stored_key(text);
    if text.len() <= MAX_IDENTITY {
        return text;
    }
    format!("sha256:{}", crate::hashing::fingerprint_hex(&text))
}

/// Bytes of a fingerprint or a group kept as they are.
const MAX_IDENTITY: usize = 64;

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Transform for IncidentTransform {
    fn process(&mut self, batch: crate::event::EventBatch, out: &mut TransformOutputs) {
        if self.store.is_some() {
            return self.process_stored(batch, out);
        }
        let now = self.clock.wall().timestamp_millis();
        let shared = Arc::clone(&self.state);
        let mut state = lock(&shared);
        // What the sinks said so far first: a confirmed resolve lets a firing open a
        // new incident.
        let settled = self.take_settled();
        self.dirty |= self.settle(&mut state, now, settled);
        let mut slots = Vec::with_capacity(batch.len());
        let mut notices = Vec::new();
        for mut event in batch {
            let Some(status) = status_of(event.value()) else {
                self.counters.alert("unmatched");
                out.named[UNMATCHED].push(event);
                continue;
            };
            let Some(key) = self.key_of(&mut event).filter(|k| k.len() <= MAX_KEY) else {
                self.counters.alert("unmatched");
                out.named[UNMATCHED].push(event);
                continue;
            };
            state.intake.add(now, 1);
            let slot = slots.len();
            match self.take_in(&mut state, &mut event, key, status, now) {
                Some(key) => self.flush_carried(&mut state, key, slot, now, &mut notices),
                None => self.metrics.add_discarded(1),
            }
            slots.push(event);
        }
        // On disk before the notifications leave.
        self.journal(&mut state);
        drop(state);
        self.emit(notices, &mut slots, out);
        // What carried a notification handed its acknowledgement on; the rest is done.
        for event in slots {
            event.settle(EventStatus::Delivered);
        }
    }

    fn flush_interval(&self) -> Option<Duration> {
        Some(TICK)
    }

    fn stopping(&mut self, out: &mut TransformOutputs) {
        self.flush(out);
        if !self.held.is_empty() {
            // One more try, then back to their senders (a webhook answers 503 now,
            // rather than 202 at its timeout for alerts that would then be dropped).
            let now = self.clock.wall().timestamp_millis();
            let held = std::mem::take(&mut self.held);
            self.try_store(held, now, out);
            let left = std::mem::take(&mut self.held);
            if !left.is_empty() {
                tracing::warn!(component_id = %self.id, alerts = left.len(), "stopping with alerts the incident store did not take; they go back to their senders");
                for event in left {
                    event.settle(EventStatus::Errored);
                }
            }
        }
    }

    fn flush(&mut self, out: &mut TransformOutputs) {
        if self.store.is_some() {
            return self.timers_stored(out);
        }
        self.timers(out);
        self.save(false);
    }
}

impl Drop for IncidentTransform {
    fn drop(&mut self) {
        if let Some(store) = &self.store {
            registry::STORES.remove(&self.id, &store.api());
        }
        // Never taken in: their senders deliver them again.
        for event in self.held.drain(..) {
            event.settle(EventStatus::Errored);
        }
        if self.persist.is_some() {
            registry::LOCAL.remove(&self.id, &self.state);
            // What the sinks said so far is written with the rest, so a restart does
            // not announce again what they delivered.
            let settled = self.take_settled();
            let now = self.clock.wall().timestamp_millis();
            let state = Arc::clone(&self.state);
            self.dirty |= self.settle(&mut lock(&state), now, settled);
        }
        self.save(true);
        if let Some(path) = &self.persist {
            state_file::release(path, &self.state);
        }
    }
}
