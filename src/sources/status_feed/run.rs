//! The running source: one loop that polls the feeds that are due (fetching them
//! concurrently), turns their changes into events, waits for each event's
//! acknowledgement, commits what was delivered and persists it, and answers checks
//! from the API.
//!
//! Every wait goes through `cx.clock`, so tests drive the schedule without sleeping.
//! The loop owns all feed state; the API only reads the snapshot published after each
//! poll and sends check requests over a channel.

use std::sync::{Arc, Mutex};

use serde_json::Value as Json;
use tokio::sync::mpsc;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::control;
use super::feed::{Feed, publish, publish_history};
use super::parse;
use super::poll::{self, Fetched, PollError, Schedule};
use super::providers;
use super::state::{self, Emit, FeedState, Overrides, PlanContext, SourceState};
use super::{FeedSpec, Settings};
use crate::component::{ComponentError, SourceContext};
use crate::event::{BatchAck, Event, EventStatus};
use crate::telemetry::status_feeds::{Control, Reply, StatusFeedHandle};
use crate::telemetry::{ErrorType, Stage};

/// Runs until `cx.shutdown`.
pub(crate) async fn run(
    settings: Arc<Settings>,
    specs: Vec<FeedSpec>,
    client: reqwest::Client,
    state_path: std::path::PathBuf,
    mut cx: SourceContext,
) -> Result<(), ComponentError> {
    let mut file = state::load(&state_path).map_err(|e| ComponentError::Other(e.to_string()))?;
    let start = cx.clock.now();
    // The first poll is right away.
    let mut feeds: Vec<Feed> = specs
        .into_iter()
        .map(|spec| {
            let state = file.feeds.remove(&spec.name).unwrap_or_default();
            let schedule = Schedule::new(spec.interval, settings.jitter, settings.max_backoff);
            Feed::new(spec, state, schedule, &cx.metrics, start)
        })
        .collect();
    // What the API changed before: applied again, unless the file no longer allows it
    // (a provider without a public feed whose feed was removed).
    let mut overrides = std::mem::take(&mut file.control);
    if let Err(e) = control::check(&overrides, &feeds) {
        tracing::warn!(component_id = %cx.id, error = %e, "the monitoring changed through the API no longer applies; polling as the pipeline file says");
        overrides = Overrides::default();
    }
    let mut stored = file.feeds;
    control::apply(
        &mut feeds,
        &overrides,
        &settings,
        &mut stored,
        &cx.metrics,
        start,
    );

    let (control_tx, mut controls) = mpsc::channel::<Control>(16);
    let snapshot = Arc::new(Mutex::new(Json::Null));
    let history = Arc::new(Mutex::new(Json::Array(Vec::new())));
    let _registration = cx.telemetry.status_feeds().register(
        &cx.id,
        StatusFeedHandle {
            // The loop keeps a sender too, so `recv` never sees a closed channel (which
            // would make the select below spin) when the registry drops its handle.
            control: control_tx.clone(),
            snapshot: Arc::clone(&snapshot),
            history: Arc::clone(&history),
        },
    );
    publish(&snapshot, &cx.id, &feeds, cx.clock.now());
    publish_history(&history, &feeds);
    tracing::info!(component_id = %cx.id, feeds = feeds.len(), state = %state_path.display(), "status feeds starting");

    // Each feed's fetch runs on its own: a feed that does not answer delays only itself
    // (and the checks waiting for it), never the other feeds or the API's changes.
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    let mut fetching: HashSet<String> = HashSet::new();
    // Checks waiting for the fetches of the feeds they asked for.
    let mut waiting: Vec<(HashSet<String>, Reply)> = Vec::new();
    loop {
        let now = cx.clock.now();
        for f in &feeds {
            if f.active() && f.next_due <= now && !fetching.contains(&f.spec.name) {
                in_flight.push(start_fetch(f, &settings, &client));
                fetching.insert(f.spec.name.clone());
            }
        }
        // No timer while nothing waits for one (every feed fetching or stopped): a fetch
        // or a request wakes the loop.
        let timer = match feeds
            .iter()
            .filter(|f| f.active() && !fetching.contains(&f.spec.name))
            .map(|f| f.next_due.saturating_duration_since(now))
            .min()
        {
            Some(wait) => cx.clock.sleep(wait),
            None => Box::pin(std::future::pending()),
        };
        tokio::select! {
            biased;
            () = cx.shutdown.cancelled() => break,
            Some((name, result)) = in_flight.next(), if !in_flight.is_empty() => {
                fetching.remove(&name);
                if let Some(feed) = feeds.iter_mut().find(|f| f.spec.name == name)
                    && process(feed, result, &settings, &mut cx).await
                {
                    save(&feeds, &overrides, &state_path, &cx);
                }
                publish_history(&history, &feeds);
                let snap = publish(&snapshot, &cx.id, &feeds, cx.clock.now());
                answer_checks(&mut waiting, &name, &snap);
            }
            Some(request) = controls.recv() => {
                let result = match request {
                    Control::Check { select, reply } => match control::selected(&feeds, &select) {
                        Ok(names) => {
                            for f in feeds.iter().filter(|f| names.contains(&f.spec.name)) {
                                if fetching.insert(f.spec.name.clone()) {
                                    in_flight.push(start_fetch(f, &settings, &client));
                                }
                            }
                            waiting.push((names.into_iter().collect(), reply));
                            None
                        }
                        Err(e) => Some((reply, Err(e))),
                    },
                    Control::Test { reply } => {
                        let _ = reply.send(Ok(control::send_test(&mut cx).await));
                        None
                    }
                    Control::Pause { select, paused, reply } => {
                        let result = control::selected(&feeds, &select).map(|names| {
                            let mut next = overrides.clone();
                            for n in names {
                                if paused {
                                    next.paused.insert(n);
                                } else {
                                    next.paused.remove(&n);
                                }
                            }
                            change(&mut feeds, &mut overrides, next, &settings, &mut stored, &cx, &state_path);
                            tracing::info!(component_id = %cx.id, paused, feeds = ?select, "status feed polling changed through the API");
                        });
                        Some((reply, result))
                    }
                    Control::Configure { interval, providers, dry_run, reply } => {
                        let mut next = overrides.clone();
                        if let Some(i) = interval {
                            next.interval_seconds = i.map(|d| d.as_secs());
                        }
                        if let Some(p) = providers {
                            next.providers = p;
                        }
                        let result = control::check(&next, &feeds).map(|()| {
                            if !dry_run {
                                tracing::info!(component_id = %cx.id, interval_seconds = ?next.interval_seconds, providers = ?next.providers, "status feed monitoring configured through the API");
                                change(&mut feeds, &mut overrides, next, &settings, &mut stored, &cx, &state_path);
                            }
                        });
                        Some((reply, result))
                    }
                };
                // A feed the change removed answers its waiting checks now.
                waiting.retain_mut(|(names, _)| {
                    names.retain(|n| feeds.iter().any(|f| &f.spec.name == n));
                    true
                });
                let snap = publish(&snapshot, &cx.id, &feeds, cx.clock.now());
                answer_checks(&mut waiting, "", &snap);
                if let Some((reply, result)) = result {
                    let _ = reply.send(result.map(|()| snap));
                }
            }
            () = timer => {}
        }
    }
    drop(control_tx);
    tracing::info!(component_id = %cx.id, "status feeds stopped");
    Ok(())
}

/// A fetch in flight: the feed's name and what came back.
type InFlight = Pin<Box<dyn Future<Output = (String, Result<Fetched, PollError>)> + Send>>;

fn start_fetch(f: &Feed, settings: &Settings, client: &reqwest::Client) -> InFlight {
    let request = poll::Request {
        url: f.spec.url.clone(),
        format: f.spec.format,
        etag: f.state.etag.clone(),
        last_modified: f.state.last_modified.clone(),
        max_bytes: settings.max_bytes,
    };
    let (client, name) = (client.clone(), f.spec.name.clone());
    Box::pin(async move {
        let result = poll::fetch(&client, &request).await;
        (name, result)
    })
}

/// `name` was fetched: answers the checks that waited for nothing else.
fn answer_checks(waiting: &mut Vec<(HashSet<String>, Reply)>, name: &str, snap: &Json) {
    for (names, _) in waiting.iter_mut() {
        names.remove(name);
    }
    let (done, still): (Vec<_>, Vec<_>) = std::mem::take(waiting)
        .into_iter()
        .partition(|(names, _)| names.is_empty());
    *waiting = still;
    for (_, reply) in done {
        // The API may have given up waiting; that is fine.
        let _ = reply.send(Ok(snap.clone()));
    }
}

/// Makes `next` the overrides: applied to the feeds and saved.
fn change(
    feeds: &mut Vec<Feed>,
    overrides: &mut Overrides,
    next: Overrides,
    settings: &Settings,
    stored: &mut BTreeMap<String, FeedState>,
    cx: &SourceContext,
    state_path: &std::path::Path,
) {
    control::apply(feeds, &next, settings, stored, &cx.metrics, cx.clock.now());
    *overrides = next;
    save(feeds, overrides, state_path, cx);
}

/// Writes the feeds' committed state and the overrides.
fn save(feeds: &[Feed], overrides: &Overrides, state_path: &std::path::Path, cx: &SourceContext) {
    let file = SourceState {
        feeds: feeds
            .iter()
            .map(|f| (f.spec.name.clone(), f.state.clone()))
            .collect(),
        control: overrides.clone(),
    };
    if let Err(e) = state::save(state_path, &file) {
        // Keep monitoring: this run still remembers; only a restart could repeat.
        cx.metrics
            .add_errors(1, ErrorType::Writer, Stage::Processing);
        tracing::error!(component_id = %cx.id, error = %e, "status feed state not saved");
    }
}

/// Handles one fetch result; returns whether the feed's committed state changed.
async fn process(
    feed: &mut Feed,
    fetched: Result<Fetched, PollError>,
    settings: &Settings,
    cx: &mut SourceContext,
) -> bool {
    let wall = cx.clock.wall();
    feed.polls += 1;
    feed.last_poll = Some(wall);
    let mut changed = false;
    if let Ok(Fetched::Body { body, .. }) = &fetched {
        cx.metrics.add_received_bytes(body.len());
    }
    let outcome = match fetched {
        Ok(Fetched::NotModified) => Ok("not_modified"),
        Ok(Fetched::Body {
            body,
            etag,
            last_modified,
        }) => match parse::parse(feed.spec.format, &body) {
            Err(e) => Err(PollError::Parse(e)),
            Ok(document) => {
                feed.items = document.entries();
                let incidents: Vec<_> = providers::incidents(feed.spec.provider, document)
                    .into_iter()
                    .filter(|i| feed.spec.wants(i))
                    .collect();
                let pcx = PlanContext {
                    feed: feed.spec.name.clone(),
                    provider: feed.spec.provider,
                    default_severity: feed.spec.default_severity,
                    initial: settings.initial,
                    resolve_missing: feed.spec.resolve_missing,
                    retention: settings.retention,
                    now: wall,
                };
                let plan = state::plan(&feed.state, incidents, &pcx);
                let mut next = plan.state;
                let total = plan.emits.len();
                let (failed, worst) =
                    emit(plan.emits, &pcx, settings.keep_raw, cx, &mut next).await;
                // Validators move only when everything was delivered: otherwise the next
                // poll must read the body again to plan the undelivered events.
                if failed == 0 {
                    next.etag = etag;
                    next.last_modified = last_modified;
                }
                changed = next != feed.state;
                feed.state = next;
                if failed == 0 {
                    Ok("updated")
                } else {
                    Err(PollError::Delivery {
                        failed,
                        total,
                        status: worst,
                    })
                }
            }
        },
        Err(e) => Err(e),
    };
    let now = cx.clock.now();
    match outcome {
        Ok(result) => {
            feed.consecutive_errors = 0;
            feed.last_success = Some(wall);
            feed.last_error = None;
            feed.last_result = Some(result);
            feed.next_due = now + feed.schedule.after_success();
            if result == "updated" {
                feed.metrics.polls_updated.add(1);
            } else {
                feed.metrics.polls_not_modified.add(1);
            }
            feed.metrics.last_success.set(wall.timestamp() as f64);
            tracing::debug!(component_id = %cx.id, feed = %feed.spec.name, result, "status feed polled");
        }
        Err(e) => {
            feed.consecutive_errors = feed.consecutive_errors.saturating_add(1);
            feed.last_error = Some(e.to_string());
            feed.last_result = Some("error");
            let wait = feed.schedule.after_failure(e.retry_after());
            feed.next_due = now + wait;
            feed.metrics.polls_failed.add(1);
            cx.metrics
                .counter(
                    "sluice_status_feed_errors_total",
                    &[("feed", &feed.spec.name), ("reason", e.reason())],
                )
                .add(1);
            let error_type = if e.reason() == "parse" {
                ErrorType::Parse
            } else {
                ErrorType::Reader
            };
            cx.metrics.add_errors(1, error_type, Stage::Receiving);
            tracing::warn!(
                component_id = %cx.id,
                feed = %feed.spec.name,
                url = %feed.spec.url,
                reason = e.reason(),
                error = %e,
                consecutive_errors = feed.consecutive_errors,
                retry_in = ?wait,
                "status feed poll failed"
            );
        }
    }
    feed.metrics
        .consecutive_errors
        .set(f64::from(feed.consecutive_errors));
    feed.metrics.items.set(feed.items as f64);
    feed.metrics.open.set(feed.open_incidents() as f64);
    changed
}

/// Sends one event per change, each with its own acknowledgement, and commits the
/// record of each one delivered into `state`. Returns how many were not delivered and
/// the worst status among them.
async fn emit(
    emits: Vec<Emit>,
    pcx: &PlanContext,
    keep_raw: bool,
    cx: &mut SourceContext,
    state: &mut FeedState,
) -> (usize, EventStatus) {
    if emits.is_empty() {
        return (0, EventStatus::Delivered);
    }
    let n = emits.len();
    let mut batch = Vec::with_capacity(n);
    let mut waits = Vec::with_capacity(n);
    for e in &emits {
        // One acknowledgement per event: a sink that refuses one incident must not make
        // the others be sent again.
        let (ack, done) = BatchAck::with_receiver(1, Some(Arc::clone(cx.telemetry.latency())));
        batch.push(Event::new(e.event(pcx, keep_raw), cx.id, pcx.now).with_ack(ack.event_ack()));
        waits.push(done);
    }
    tracing::info!(component_id = %cx.id, feed = %pcx.feed, events = n, "status feed changes");
    cx.metrics.add_received(n);
    cx.out.send(batch).await;
    let mut failed = 0;
    let mut worst = EventStatus::Delivered;
    for (e, done) in emits.into_iter().zip(waits) {
        match done.wait().await {
            EventStatus::Delivered => {
                state.record(&e.seen, pcx.now, pcx.retention);
                state.incidents.insert(e.key, e.seen);
            }
            status => {
                failed += 1;
                worst = worst.max(status);
            }
        }
    }
    (failed, worst)
}
