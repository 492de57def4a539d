//! `subscription`: alert subscriptions (who receives which alerts), each a named output.
//!
//! ```yaml
//! route:
//!   type: subscription
//!   inputs: [rules]
//!   subscriptions:            # or `file: subscriptions.yaml` (same list under `subscriptions:`)
//!     - name: prod_critical
//!       event_types: [alert]
//!       severity_levels: [critical, high]
//!       custom_filters: { env: prod }          # or [ 'env != prod', 'host =~ "web-.*"' ]
//!       auto_resolve: true
//!       resolve_after_hours: 4
//! ```
//!
//! Invariants:
//! - Each subscription is the output `<id>.<name>`; an event goes to every subscription
//!   it matches (copied for the second and later ones, each copy carrying the
//!   acknowledgement obligation) and to `<id>._unmatched` when it matches none, so every
//!   event leaves on at least one output and is settled by whoever reads it.
//! - A criterion left empty matches everything; a disabled subscription matches nothing
//!   but keeps its output, so the wiring stays valid. Criteria compare `project`,
//!   `event_type`, `service`, `region`, `severity` and `labels` exactly (see [`set`] for
//!   the index, [`crate::matchers`] for `custom_filters`); the VRL `condition` runs last and
//!   cannot modify the event.
//! - `auto_resolve`: a firing alert (`status: firing`, with a `fingerprint`) that goes
//!   out on a subscription starts a timer for (subscription, fingerprint); a resolved
//!   event with that fingerprint going out on the same subscription cancels it; a
//!   repeated firing does not restart it (the alert has been open since the first one).
//!   When `resolve_after_hours` have passed, [`Transform::flush`] (every
//!   `check_interval`) emits on that output a copy of the firing event with
//!   `status: resolved`, `ends_at` and `time` = now, a fresh `id` and
//!   `auto_resolved: true`. It is a new event: no source waits for it. Timers are
//!   bounded by `max_pending` (oldest dropped, with a warning and a metric) and
//!   snapshotted to `<data_dir>/subscription/<id>.json` at each flush, when the
//!   transform stops and when it is dropped; a restart loads them (see [`timers`]).
//!   Timers created since the last snapshot are lost if the process is killed.
//!
//! `file:` and hot swap. Output names are declared when the pipeline loads, so the
//! config reads the file then (a bad file is a pipeline error naming the file and
//! line). The file is one of the transform's watched files, but the reload fingerprint
//! only covers its set of names ([`TransformConfig::rebuild_key`]): an edit that keeps
//! the names does not rebuild the transform. The running transform swaps the new set
//! in by itself: told by the application's file watcher ([`FileNotices`]), and, as a
//! fallback for `--no-watch` and filesystems where inotify misses changes, by a
//! modification-time check at each flush, it reads and compiles the
//! file and stores the result in an `ArcSwap` that `process` loads once per batch, so
//! the swap is one pointer store, events keep flowing, and timers are untouched. A file
//! that does not parse or compile keeps the old set and is reported (error log, the
//! component's error count and `sluice_subscription_file_reloads_total{result="failed"}`);
//! the reload triggered by the same change refuses it too. When the names change, the
//! watcher leaves the running set alone and the reload rebuilds the transform (new
//! outputs must be wired); the replacement shares the timers of the one it replaces.
//!
//! Subscriptions made at runtime (`POST /subscriptions`, see [`manage`]). Outputs are
//! wired when the pipeline loads, so a made subscription delivers to one of the outputs
//! the file sets aside for them in `api_outputs` (each `<id>.<name>`, read by sinks like
//! any other); several may share one, and an event they all match leaves on it once.
//! They are kept in `<data_dir>/subscriptions/<id>.json`, written before they take
//! effect, shared by the instances of a reload and read back at a restart, and compiled
//! together with the file's into the one set `process` loads ([`catalog`]): a change
//! routes from the next batch, nothing is rebuilt and no event waits. The transform also
//! keeps a sample of recent events and of each subscription's matches ([`recent`]) for
//! `/subscriptions/{id}/test` and `/subscriptions/{id}/events`.

mod api_list;
pub(crate) mod catalog;
mod file;
pub(crate) mod manage;
mod recent;
pub(crate) mod set;
pub(crate) mod timers;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use vrl::value::Value;

use crate::clock::Clock;
use crate::component::{
    BuildError, OnChange, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::{Event, EventBatch, SourceId};
use crate::program::{Outcome, Runner};
use crate::telemetry::{ComponentMetrics, LabeledCounter};
use crate::telemetry::{ErrorType, Stage};
use catalog::{CATALOGS, Catalog};
use file::{FileSwap, Seen, parse_file, text_hash};
use recent::BatchCopies;
pub(crate) use set::{Fields, SubscriptionSet, SubscriptionSpec, UNMATCHED};
use timers::{SharedTimers, Timers};

fn default_check_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_max_pending() -> usize {
    100_000
}

/// The options as written; turned into [`SubscriptionConfig`] by reading the file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// The subscriptions, each the output `<id>.<name>` with its criteria. Give this or
    /// `file`.
    subscriptions: Option<Vec<SubscriptionSpec>>,
    /// A YAML file with `subscriptions: [ … ]`, swapped in while running when it changes.
    /// Give this or `subscriptions`.
    file: Option<PathBuf>,
    /// How often due auto-resolves are emitted, timers snapshotted and `file` checked
    /// (default 10s).
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    check_interval: Duration,
    /// Pending auto-resolve timers kept at most (default 100000); the oldest go first.
    #[serde(default = "default_max_pending")]
    max_pending: usize,
    /// Outputs that subscriptions made through the API (`POST /subscriptions`) may
    /// deliver to, each the output `<id>.<name>`, wired to sinks like the others. Without
    /// any, this transform takes no subscriptions through the API.
    #[serde(default)]
    api_outputs: Vec<String>,
}

/// Sends each alert to the subscriptions it matches, each a named output.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "RawConfig")]
pub struct SubscriptionConfig {
    /// Inline, or as read from `file` when the pipeline was loaded.
    pub(crate) subscriptions: Arc<Vec<SubscriptionSpec>>,
    /// A YAML file with `subscriptions: [ … ]`, swapped in while running when it changes.
    pub(crate) file: Option<PathBuf>,
    /// How often due auto-resolves are emitted, timers snapshotted and `file` checked
    /// (default 10s).
    pub(crate) check_interval: Duration,
    /// Pending auto-resolve timers kept at most (default 100000); the oldest go first.
    pub(crate) max_pending: usize,
    /// Outputs that subscriptions made through the API may deliver to.
    pub(crate) api_outputs: Vec<String>,
    /// Hash of the file text `subscriptions` came from.
    file_hash: Option<u64>,
}

impl TryFrom<RawConfig> for SubscriptionConfig {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        let (subscriptions, file_hash) = match (raw.subscriptions, &raw.file) {
            (Some(s), None) => (s, None),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("`file`: cannot read {}: {e}", path.display()))?;
                let specs =
                    parse_file(&text).map_err(|e| format!("`file`: {}: {e}", path.display()))?;
                (specs, Some(text_hash(&text)))
            }
            (Some(_), Some(_)) => {
                return Err("give either `subscriptions` or `file`, not both".into());
            }
            (None, None) if !raw.api_outputs.is_empty() => (Vec::new(), None),
            (None, None) => {
                return Err("one of `subscriptions`, `file` or `api_outputs` is required".into());
            }
        };
        set::check_names(&subscriptions).map_err(|e| match &raw.file {
            Some(f) => format!("`file`: {}: {e}", f.display()),
            None => format!("`subscriptions`: {e}"),
        })?;
        set::check_name_list(
            subscriptions
                .iter()
                .map(|s| s.name.as_str())
                .chain(raw.api_outputs.iter().map(String::as_str)),
        )
        .map_err(|e| {
            format!("`api_outputs`: {e} (outputs and subscription names share one namespace)")
        })?;
        if raw.check_interval.is_zero() {
            return Err("`check_interval` must be more than 0".into());
        }
        if raw.max_pending == 0 {
            return Err("`max_pending` must be at least 1".into());
        }
        Ok(Self {
            subscriptions: Arc::new(subscriptions),
            file: raw.file,
            check_interval: raw.check_interval,
            max_pending: raw.max_pending,
            api_outputs: raw.api_outputs,
            file_hash,
        })
    }
}

impl TransformConfig for SubscriptionConfig {
    fn type_name(&self) -> &'static str {
        "subscription"
    }

    fn outputs(&self) -> Vec<String> {
        self.subscriptions
            .iter()
            .map(|s| s.name.clone())
            .chain(self.api_outputs.iter().cloned())
            .chain([UNMATCHED.to_owned()])
            .collect()
    }

    fn files(&self) -> Vec<PathBuf> {
        self.file.iter().cloned().collect()
    }

    fn rebuild_key(&self) -> Option<u64> {
        self.file
            .as_ref()
            .map(|_| set::names_key(&self.subscriptions))
    }

    fn build(&self, cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        Ok(Box::new(self.build_with(cx, Scan::Index)?))
    }
}

impl SubscriptionConfig {
    /// The same transform, but matching by checking every subscription in turn instead
    /// of through the index: the baseline of `benches/subscription.rs`.
    #[doc(hidden)]
    pub fn build_linear_scan(
        &self,
        cx: &TransformContext,
    ) -> Result<Box<dyn Transform>, BuildError> {
        Ok(Box::new(self.build_with(cx, Scan::Linear)?))
    }

    fn build_with(&self, cx: &TransformContext, scan: Scan) -> Result<Subscription, BuildError> {
        let api_path = cx.data_dir.as_ref().map(|dir| api_list::path(dir, &cx.id));
        let catalog = Arc::new(Catalog::new(
            Arc::clone(&cx.id),
            Arc::clone(&self.subscriptions),
            self.api_outputs.clone(),
            api_path.as_deref().map(api_list::shared),
        )?);
        let set = catalog.current();
        // Output indexes follow `outputs()`: file names, `api_outputs`, `_unmatched`.
        let by_name: HashMap<Arc<str>, usize> = self
            .subscriptions
            .iter()
            .map(|s| s.name.as_str())
            .chain(self.api_outputs.iter().map(String::as_str))
            .enumerate()
            .map(|(i, n)| (Arc::from(n), i))
            .collect();
        let unmatched = by_name.len();
        let (timers, snapshot) = match &cx.data_dir {
            Some(dir) => {
                let path = timers::snapshot_path(dir, &cx.id);
                (timers::shared(&path), Some(path))
            }
            None => (SharedTimers::default(), None),
        };
        let mut me = Subscription {
            id: SourceId::intern(&cx.id),
            scan,
            catalog: Arc::clone(&catalog),
            api_path,
            copies: BatchCopies::default(),
            targets: Vec::new(),
            set: Arc::clone(&set),
            outputs: Vec::new(),
            by_name,
            sub_by_key: HashMap::new(),
            runners: Vec::new(),
            matched: Vec::new(),
            has_conditions: false,
            unmatched,
            timers,
            snapshot,
            generation: timers::next_generation(),
            claimed: false,
            max_pending: self.max_pending,
            check_interval: self.check_interval,
            clock: Arc::clone(&cx.clock),
            dropped_timers: cx
                .metrics
                .counter("sluice_subscription_timers_dropped_total", &[]),
            metrics: Arc::clone(&cx.metrics),
            swap: None,
            _on_change: None,
            hits: Vec::new(),
        };
        me.adopt(set);
        // Only a transform that will run is listed for the API and watches its file
        // (not one built to be checked).
        if cx.data_dir.is_some() {
            CATALOGS.add(&cx.id, &catalog);
        }
        if let (Some(path), Some(_)) = (&self.file, &cx.data_dir) {
            let swap = Arc::new(FileSwap {
                id: Arc::clone(&cx.id),
                path: path.clone(),
                names: self.subscriptions.iter().map(|s| s.name.clone()).collect(),
                catalog: Arc::clone(&catalog),
                // No stamp yet: the first check reads the file once, in case it changed
                // between the pipeline load and this build.
                seen: Mutex::new(Seen {
                    stamp: None,
                    hash: self.file_hash.unwrap_or_default(),
                }),
                metrics: Arc::clone(&cx.metrics),
            });
            let on_change = Arc::clone(&swap);
            let on_change: OnChange = Arc::new(move || on_change.refresh(true));
            cx.file_notices.watch(path, &on_change);
            me._on_change = Some(on_change);
            me.swap = Some(swap);
        }
        Ok(me)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Index,
    Linear,
}

struct Subscription {
    id: SourceId,
    scan: Scan,
    /// The file's and the API's subscriptions, compiled; `set` is what `process` last
    /// loaded from it.
    catalog: Arc<Catalog>,
    /// Where the API's subscriptions are kept (`None`: built only to be checked).
    api_path: Option<PathBuf>,
    /// The copies of this batch for the catalog's recent rings.
    copies: BatchCopies,
    /// The distinct outputs of one event's matches.
    targets: Vec<usize>,
    set: Arc<SubscriptionSet>,
    /// Named-output index of each subscription of `set`.
    outputs: Vec<usize>,
    /// Named-output index by output name: fixed for this instance (a swap keeps the
    /// names).
    by_name: HashMap<Arc<str>, usize>,
    /// Index in `set` by name.
    sub_by_key: HashMap<Arc<str>, usize>,
    /// One per subscription of `set` that has a condition, made on first use.
    runners: Vec<Option<Runner>>,
    /// Matched counters per subscription of `set`, made on first match.
    matched: Vec<Option<Arc<LabeledCounter>>>,
    has_conditions: bool,
    unmatched: usize,
    timers: SharedTimers,
    snapshot: Option<PathBuf>,
    generation: u64,
    /// Whether this instance has run, and so made itself the newest owner of `timers`.
    claimed: bool,
    max_pending: usize,
    check_interval: Duration,
    clock: Arc<dyn Clock>,
    dropped_timers: Arc<LabeledCounter>,
    metrics: Arc<ComponentMetrics>,
    swap: Option<Arc<FileSwap>>,
    /// Kept alive for as long as this instance runs: the file notices hold it weakly.
    _on_change: Option<OnChange>,
    hits: Vec<u32>,
}

impl Subscription {
    /// Starts using `set` (at build, and after a file swap).
    fn adopt(&mut self, set: Arc<SubscriptionSet>) {
        self.outputs = set
            .subs
            .iter()
            .map(|s| {
                self.by_name
                    .get(&s.output)
                    .copied()
                    .unwrap_or(self.unmatched)
            })
            .collect();
        self.sub_by_key = set
            .subs
            .iter()
            .enumerate()
            .map(|(i, s)| (Arc::clone(&s.key), i))
            .collect();
        self.runners = set.subs.iter().map(|_| None).collect();
        // Counters are looked up by a scan of the component's counters: keep those
        // already found across a swap (`self.set` is still the previous set here).
        let known: HashMap<Arc<str>, Arc<LabeledCounter>> = self
            .set
            .names()
            .zip(self.matched.drain(..))
            .filter_map(|(n, c)| Some((Arc::clone(n), c?)))
            .collect();
        self.matched = set.names().map(|n| known.get(n).cloned()).collect();
        self.has_conditions = set.subs.iter().any(|s| s.condition.is_some());
        self.set = set;
    }

    fn adopt_current(&mut self) {
        let current = self.catalog.current();
        if !Arc::ptr_eq(&current, &self.set) {
            self.adopt(current);
        }
    }

    /// On the first run: become the instance that fires timers, and forget timers of
    /// subscriptions this set does not auto-resolve (removed or changed by a reload).
    fn claim(&mut self) {
        if self.claimed {
            return;
        }
        self.claimed = true;
        let mut t = timers::lock(&self.timers);
        t.newest = self.generation;
        let before = t.pending.len();
        let (set, by_key) = (&self.set, &self.sub_by_key);
        t.pending.retain(|(key, _), _| {
            by_key
                .get(key)
                .is_some_and(|&i| set.subs[i].auto_resolve && set.subs[i].enabled)
        });
        if t.pending.len() != before {
            t.dirty = true;
        }
    }

    fn count_match(&mut self, i: usize) {
        let counter = self.matched[i].get_or_insert_with(|| {
            self.metrics.counter(
                "sluice_subscription_matched_events_total",
                &[("subscription", &self.set.subs[i].name)],
            )
        });
        counter.add(1);
    }

    fn persist(&self, t: &mut Timers) {
        let Some(path) = &self.snapshot else { return };
        if !t.dirty {
            return;
        }
        if let Err(e) = timers::persist(t, path) {
            tracing::error!(component_id = %self.id, file = %path.display(), error = %e, "cannot write the auto-resolve snapshot");
            self.metrics
                .add_errors(1, ErrorType::Writer, Stage::Processing);
        }
    }

    /// Starts or cancels the timers of the subscriptions in `hits` for `event`, then
    /// drops the oldest beyond `max_pending`.
    fn track(&self, t: &mut Timers, event: &Event, now: DateTime<Utc>) {
        let subs = self.hits.iter().map(|&i| &self.set.subs[i as usize]);
        timers::track(t, subs, event, now);
        while t.pending.len() > self.max_pending {
            if let Some(((name, fp), _)) = t.pending.shift_remove_index(0) {
                tracing::warn!(component_id = %self.id, subscription = %name, fingerprint = %fp, max_pending = self.max_pending, "too many pending auto-resolves; dropping the oldest");
                self.dropped_timers.add(1);
            }
        }
    }
}

impl Transform for Subscription {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        self.adopt_current();
        self.claim();
        let shared = Arc::clone(&self.timers);
        let mut timers = None;
        let now = self.clock.wall();
        // The batch's last events are copied for the recent ring.
        let copy_from = batch.len().saturating_sub(recent::PER_BATCH);
        self.copies.start(self.set.subs.len());
        for (n, mut event) in batch.into_iter().enumerate() {
            if n >= copy_from {
                self.copies.events.push(event.value().clone());
            }
            {
                let fields = Fields::of(event.value());
                match self.scan {
                    Scan::Index => self.set.matching(&fields, &mut self.hits),
                    Scan::Linear => self.set.matching_linear(&fields, &mut self.hits),
                }
            }
            if self.has_conditions && !self.hits.is_empty() {
                let (set, runners, metrics) = (&self.set, &mut self.runners, &self.metrics);
                self.hits.retain(|&i| {
                    let Some(program) = &set.subs[i as usize].condition else {
                        return true;
                    };
                    let runner =
                        runners[i as usize].get_or_insert_with(|| Runner::new(Arc::clone(program)));
                    match runner.run_event(&mut event) {
                        Outcome::Done(Value::Boolean(b)) => b,
                        Outcome::Done(_) | Outcome::Aborted(_) => false,
                        Outcome::Failed(_) => {
                            metrics.add_errors(1, ErrorType::Script, Stage::Processing);
                            false
                        }
                    }
                });
            }
            if self
                .hits
                .iter()
                .any(|&i| self.set.subs[i as usize].auto_resolve)
            {
                let t = timers.get_or_insert_with(|| timers::lock(&shared));
                self.track(t, &event, now);
            }
            self.targets.clear();
            for k in 0..self.hits.len() {
                let i = self.hits[k] as usize;
                self.count_match(i);
                if self.copies.wants_match(i) {
                    let name = Arc::clone(&self.set.subs[i].name);
                    self.copies.matches.push((name, event.value().clone()));
                }
                // Subscriptions made through the API may share an output: one copy each.
                if !self.targets.contains(&self.outputs[i]) {
                    self.targets.push(self.outputs[i]);
                }
            }
            match self.targets.split_last() {
                None => out.named[self.unmatched].push(event),
                Some((&last, rest)) => {
                    for &o in rest {
                        out.named[o].push(event.clone());
                    }
                    out.named[last].push(event);
                }
            }
        }
        self.catalog.recent.add(&mut self.copies, now);
    }

    fn flush_interval(&self) -> Option<Duration> {
        Some(self.check_interval)
    }

    fn flush(&mut self, out: &mut TransformOutputs) {
        if let Some(swap) = &self.swap {
            swap.refresh(false);
        }
        self.adopt_current();
        self.claim();
        let now = self.clock.wall();
        let shared = Arc::clone(&self.timers);
        let mut t = timers::lock(&shared);
        if t.newest == self.generation {
            let due = timers::take_due(&mut t, &self.set, &self.sub_by_key, now);
            for (i, value, left_on) in due {
                let event = timers::resolved(value, self.id, now);
                // On the output the firing left on, where the alert is open (a
                // subscription made through the API may have moved since).
                let output = left_on
                    .and_then(|o| self.by_name.get(&o).copied())
                    .unwrap_or(self.outputs[i]);
                out.named[output].push(event);
                self.metrics
                    .counter(
                        "sluice_subscription_auto_resolved_events_total",
                        &[("subscription", &self.set.subs[i].name)],
                    )
                    .add(1);
            }
        }
        self.persist(&mut t);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let shared = Arc::clone(&self.timers);
        let mut t = timers::lock(&shared);
        self.persist(&mut t);
        drop(t);
        drop(shared);
        if let Some(path) = &self.snapshot {
            crate::state_file::release(path, &self.timers);
        }
        CATALOGS.remove(&self.id, &self.catalog);
        if let (Some(path), Some(list)) = (&self.api_path, &self.catalog.api) {
            crate::state_file::release(path, list);
        }
    }
}
