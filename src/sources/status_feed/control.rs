//! What the API changes in a running source (`/outages`): feeds paused and resumed,
//! every feed's interval, and which providers are polled, a provider without a feed in
//! the pipeline file getting its public one. The changes are [`Overrides`], kept in
//! the state file and applied again at start; the pipeline file stays as written.
//! Also the sample outage `POST /outages/webhook/test` sends through the outputs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value as Json, json};
use vrl::value::{ObjectMap, Value};

use super::Settings;
use super::feed::Feed;
use super::poll::Schedule;
use super::state::{FeedState, Overrides};
use super::{FeedSpec, MIN_INTERVAL, Provider};
use crate::component::SourceContext;
use crate::event::{BatchAck, Event, EventStatus};
use crate::telemetry::ComponentMetrics;
use crate::telemetry::status_feeds::Selector;

/// Providers one configuration may list.
const MAX_PROVIDERS: usize = 32;
/// The longest interval the API sets: a feed polled less than weekly is not monitored.
const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The provider named `name`.
fn provider(name: &str) -> Result<Provider, String> {
    serde_json::from_value::<Provider>(Json::String(name.to_owned()))
        .map_err(|_| format!("unknown provider `{}`", crate::text::clip(name, 64)))
}

/// Checks `ov` against the feeds before anything changes.
pub(super) fn check(ov: &Overrides, feeds: &[Feed]) -> Result<(), String> {
    if let Some(secs) = ov.interval_seconds
        && !(MIN_INTERVAL.as_secs()..=MAX_INTERVAL.as_secs()).contains(&secs)
    {
        return Err(format!(
            "`interval` must be at least {}s and at most 7 days",
            MIN_INTERVAL.as_secs()
        ));
    }
    if let Some(list) = &ov.providers {
        if list.len() > MAX_PROVIDERS {
            return Err(format!("at most {MAX_PROVIDERS} providers"));
        }
        for name in list {
            let p = provider(name)?;
            if p.preset().is_none() && !feeds.iter().any(|f| f.spec.provider == p) {
                return Err(format!(
                    "provider `{name}` has no public feed: declare a feed with its `url` in the pipeline file"
                ));
            }
        }
    }
    Ok(())
}

/// A provider's public feed, named after it.
fn public_feed(p: Provider, feeds: &[Feed], interval: Duration) -> Option<FeedSpec> {
    let (url, format) = p.preset()?;
    let mut name = p.as_str().to_owned();
    if feeds.iter().any(|f| f.spec.name == name) {
        name.push_str("-outages");
    }
    Some(FeedSpec {
        name,
        provider: p,
        url: url.to_owned(),
        format,
        interval,
        services: Vec::new(),
        regions: Vec::new(),
        default_severity: Default::default(),
        resolve_missing: p.feed_lists_only_open(),
    })
}

/// Makes `feeds` follow `ov` (already [`check`]ed): adds the public feed of a listed
/// provider no feed reads (with what `stored` remembers of it), enables the feeds of
/// the listed providers only, pauses those named, and sets the interval.
pub(super) fn apply(
    feeds: &mut Vec<Feed>,
    ov: &Overrides,
    settings: &Settings,
    stored: &mut BTreeMap<String, FeedState>,
    metrics: &ComponentMetrics,
    now: Instant,
) {
    let listed: Option<Vec<Provider>> = ov
        .providers
        .as_ref()
        .map(|l| l.iter().filter_map(|n| provider(n).ok()).collect());
    for &p in listed.iter().flatten() {
        if feeds.iter().any(|f| f.spec.provider == p) {
            continue;
        }
        if let Some(spec) = public_feed(p, feeds, settings.interval) {
            let state = stored.remove(&spec.name).unwrap_or_default();
            let schedule = Schedule::new(spec.interval, settings.jitter, settings.max_backoff);
            let mut feed = Feed::new(spec, state, schedule, metrics, now);
            feed.added = true;
            feeds.push(feed);
        }
    }
    // Public feeds the API added and the list no longer names go (what they remember
    // stays in `stored`, for when they are listed again).
    let (kept, gone): (Vec<Feed>, Vec<Feed>) = std::mem::take(feeds).into_iter().partition(|f| {
        !f.added
            || listed
                .as_ref()
                .is_some_and(|l| l.contains(&f.spec.provider))
    });
    *feeds = kept;
    for f in gone {
        stored.insert(f.spec.name.clone(), f.state);
    }
    for f in feeds.iter_mut() {
        f.enabled = match &listed {
            Some(l) => l.contains(&f.spec.provider),
            None => !f.added,
        };
        f.paused = ov.paused.contains(&f.spec.name);
        let interval = ov
            .interval_seconds
            .map_or(f.spec.interval, Duration::from_secs);
        if f.schedule.interval() != interval {
            f.schedule = Schedule::new(interval, settings.jitter, settings.max_backoff);
            f.next_due = f.next_due.min(now + interval);
        }
    }
}

/// The names of the feeds `select` means; none is an error naming the selector.
pub(super) fn selected(feeds: &[Feed], select: &Selector) -> Result<Vec<String>, String> {
    let names: Vec<String> = feeds
        .iter()
        .filter(|f| select.matches(&f.spec.name, f.spec.provider.as_str()))
        .map(|f| f.spec.name.clone())
        .collect();
    if names.is_empty() {
        let what = match (&select.feed, &select.provider) {
            (Some(f), _) => format!("feed `{}`", crate::text::clip(f, 64)),
            (None, Some(p)) => format!("provider `{}`", crate::text::clip(p, 64)),
            (None, None) => "any feed".to_owned(),
        };
        return Err(format!("this source has no {what}"));
    }
    Ok(names)
}

/// Sends a sample outage through the outputs, firing then resolved (so it leaves no
/// open incident downstream), each with its own acknowledgement, and says what came of
/// each.
pub(super) async fn send_test(cx: &mut SourceContext) -> Json {
    let now = Utc::now();
    let fingerprint = format!("status_feed:test:{}", uuid::Uuid::new_v4().simple());
    let mut batch = Vec::new();
    let mut waits = Vec::new();
    let mut sent = Vec::new();
    for status in ["firing", "resolved"] {
        let mut labels = ObjectMap::new();
        labels.insert("feed".into(), Value::from("test"));
        labels.insert("test".into(), Value::from("true"));
        let mut m = ObjectMap::new();
        let id = uuid::Uuid::new_v4().to_string();
        m.insert("id".into(), Value::from(id.clone()));
        m.insert("time".into(), Value::Timestamp(now));
        m.insert("event_type".into(), Value::from("alert"));
        m.insert("source".into(), Value::from("sluice"));
        m.insert("kind".into(), Value::from("outage"));
        m.insert("status".into(), Value::from(status));
        m.insert("severity".into(), Value::from("info"));
        m.insert("service".into(), Value::from("sluice"));
        m.insert(
            "summary".into(),
            Value::from("Test outage from sluice (POST /outages/webhook/test)"),
        );
        m.insert("labels".into(), Value::Object(labels));
        m.insert("fingerprint".into(), Value::from(fingerprint.clone()));
        m.insert("starts_at".into(), Value::Timestamp(now));
        if status == "resolved" {
            m.insert("ends_at".into(), Value::Timestamp(now));
        }
        let (ack, done) = BatchAck::with_receiver(1, Some(Arc::clone(cx.telemetry.latency())));
        batch.push(Event::new(Value::Object(m), cx.id, now).with_ack(ack.event_ack()));
        waits.push(done);
        sent.push((id, status));
    }
    cx.metrics.add_received(batch.len());
    cx.out.send(batch).await;
    let mut events = Vec::new();
    let mut delivered = 0;
    for ((id, status), done) in sent.into_iter().zip(waits) {
        let outcome = done.wait().await;
        if outcome == EventStatus::Delivered {
            delivered += 1;
        }
        events.push(json!({
            "id": id,
            "status": status,
            "delivery": format!("{outcome:?}").to_lowercase(),
        }));
    }
    tracing::info!(component_id = %cx.id, delivered, "sample outage sent through the outputs");
    json!({
        "source": cx.id.as_str(),
        "fingerprint": fingerprint,
        "sent": events.len(),
        "delivered": delivered,
        "events": events,
    })
}
