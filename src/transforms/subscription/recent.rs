//! What a subscription transform saw lately: the last events in, and the last matches of
//! each subscription, for the API to test subscriptions against and show their events.
//!
//! Copies cost, so they are bounded per batch: at most [`PER_BATCH`] events of a batch
//! (its last ones), [`PER_BATCH`] matches per subscription and [`MATCHES_PER_BATCH`]
//! matches in all (the first ones) are kept, and the lock is taken once per batch. A
//! trickle of events is kept whole; in a flood the rings hold a sample of the newest.
//! (Without the overall bound, 10,000 subscriptions matched once each in a batch of
//! 1,000 events cost 1,600 copies per batch and a third of the transform's throughput.)

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use vrl::value::Value;

use crate::state_file::lock;

/// Recent events kept.
pub(crate) const EVENTS: usize = 100;
/// Recent matches kept per subscription.
pub(crate) const MATCHES: usize = 50;
/// Copies taken from one batch (events, and matches per subscription).
pub(crate) const PER_BATCH: usize = 16;
/// Matches copied from one batch, over all subscriptions.
pub(crate) const MATCHES_PER_BATCH: usize = 64;

/// A copy of an event and when it was seen.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) at: DateTime<Utc>,
    pub(crate) value: Value,
}

#[derive(Default)]
struct Rings {
    events: VecDeque<Seen>,
    matches: HashMap<Arc<str>, VecDeque<Seen>>,
}

/// The rings of one transform instance.
#[derive(Default)]
pub(crate) struct Recent {
    rings: Mutex<Rings>,
}

/// What one batch adds, gathered without the lock.
#[derive(Default)]
pub(crate) struct BatchCopies {
    pub(crate) events: Vec<Value>,
    /// (subscription name, event), at most [`PER_BATCH`] per name.
    pub(crate) matches: Vec<(Arc<str>, Value)>,
    /// Matches seen in this batch, by subscription index.
    taken: Vec<usize>,
}

impl BatchCopies {
    /// Starts a batch matched against `subs` subscriptions.
    pub(crate) fn start(&mut self, subs: usize) {
        self.taken.clear();
        self.taken.resize(subs, 0);
    }

    /// Whether another match of subscription `i` is copied; counts it if so.
    pub(crate) fn wants_match(&mut self, i: usize) -> bool {
        if self.matches.len() >= MATCHES_PER_BATCH {
            return false;
        }
        match self.taken.get_mut(i) {
            Some(n) => {
                *n += 1;
                *n <= PER_BATCH
            }
            None => false,
        }
    }
}

impl Recent {
    /// Adds a batch's copies (emptying `copies`).
    pub(crate) fn add(&self, copies: &mut BatchCopies, at: DateTime<Utc>) {
        if copies.events.is_empty() && copies.matches.is_empty() {
            return;
        }
        let mut rings = lock(&self.rings);
        for value in copies.events.drain(..) {
            if rings.events.len() == EVENTS {
                rings.events.pop_front();
            }
            rings.events.push_back(Seen { at, value });
        }
        for (name, value) in copies.matches.drain(..) {
            let ring = rings.matches.entry(name).or_default();
            if ring.len() == MATCHES {
                ring.pop_front();
            }
            ring.push_back(Seen { at, value });
        }
    }

    /// The recent events, oldest first.
    pub(crate) fn events(&self) -> Vec<Seen> {
        lock(&self.rings).events.iter().cloned().collect()
    }

    /// The recent matches of subscription `name`, oldest first.
    pub(crate) fn matches(&self, name: &str) -> Vec<Seen> {
        lock(&self.rings)
            .matches
            .get(name)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets the matches of a deleted or renamed subscription.
    pub(crate) fn forget(&self, name: &str) {
        lock(&self.rings).matches.remove(name);
    }
}
