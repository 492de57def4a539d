//! Which failures are worth retrying, and how long to wait before the next attempt:
//! the `failure_handling:` options of every component that retries (sinks, and the
//! sources that poll).

use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

/// `failure_handling:` retries with exponential backoff and jitter.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailureHandling {
    /// Retries after the first attempt (default 17: with the default backoff, 25 to 50
    /// minutes of trying); then the events go to the `dead_letter` output.
    #[serde(default = "default_max_retries")]
    pub(crate) max_retries: u32,
    /// The wait before the first retry (default 1s).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub(crate) initial_backoff: Duration,
    /// The longest wait between two retries (default 5m).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub(crate) max_backoff: Duration,
    /// Each wait is the previous one times this (default 2), with jitter.
    #[serde(default = "default_multiplier")]
    pub(crate) backoff_multiplier: f64,
}

fn default_max_retries() -> u32 {
    17
}
fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}
fn default_multiplier() -> f64 {
    2.0
}

impl Default for FailureHandling {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            backoff_multiplier: default_multiplier(),
        }
    }
}

impl FailureHandling {
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(self.backoff_multiplier >= 1.0 && self.backoff_multiplier.is_finite()) {
            return Err("`failure_handling.backoff_multiplier` must be at least 1".into());
        }
        if self.initial_backoff > self.max_backoff {
            return Err("`failure_handling.initial_backoff` exceeds `max_backoff`".into());
        }
        Ok(())
    }
}

/// Retry 408, 429 and 5xx; every other 4xx (and anything odd) is permanent.
pub(crate) fn classify_status(status: u16) -> Retryable {
    match status {
        200..=299 => Retryable::Success,
        408 | 429 | 500..=599 => Retryable::Retry,
        _ => Retryable::Permanent,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retryable {
    Success,
    Retry,
    Permanent,
}

/// `Retry-After`: delta-seconds or an HTTP date.
/// The `Retry-After` of a response's headers, if it has a readable one.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// What waiting for the next attempt came to ([`Backoff::pause`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pause {
    /// The wait is over: try again.
    Retry,
    /// Retries are exhausted: give up.
    Exhausted,
    /// Stopped during the wait.
    Stopped,
}

/// The backoff schedule of one request: exponential with "equal jitter" (a uniform
/// wait between half and all of the exponential step), so many sinks failing together
/// do not retry in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: FailureHandling,
    retries: u32,
}

impl Backoff {
    pub(crate) fn new(policy: FailureHandling) -> Self {
        Self { policy, retries: 0 }
    }

    /// Retries made so far.
    pub(crate) fn retries(&self) -> u32 {
        self.retries
    }

    /// The wait before the next retry, or `None` when retries are exhausted.
    /// `retry_after` from the server wins when it asks for longer (up to `max_backoff`).
    pub(crate) fn next(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if self.retries >= self.policy.max_retries {
            return None;
        }
        let step = self.step(self.retries);
        self.retries += 1;
        let jittered = step.mul_f64(0.5 + fastrand::f64() * 0.5);
        Some(match retry_after {
            Some(ra) => ra.min(self.policy.max_backoff).max(jittered),
            None => jittered,
        })
    }

    /// Waits for the next attempt, the way every retry loop must: gives up at once when
    /// retries are exhausted, and stops waiting when `stop` fires (the component is being
    /// replaced and hands its work over). `announce` hears the wait before it starts, to
    /// log why and for how long.
    pub(crate) async fn pause(
        &mut self,
        retry_after: Option<Duration>,
        clock: &dyn Clock,
        stop: Option<&CancellationToken>,
        announce: impl FnOnce(Duration),
    ) -> Pause {
        let Some(wait) = self.next(retry_after) else {
            return Pause::Exhausted;
        };
        announce(wait);
        match stop {
            Some(stop) => tokio::select! {
                () = clock.sleep(wait) => Pause::Retry,
                () = stop.cancelled() => Pause::Stopped,
            },
            None => {
                clock.sleep(wait).await;
                Pause::Retry
            }
        }
    }

    /// The un-jittered wait before retry number `n` (from 0).
    pub(crate) fn step(&self, n: u32) -> Duration {
        let factor = self.policy.backoff_multiplier.powi(n.min(64) as i32);
        let secs = self.policy.initial_backoff.as_secs_f64() * factor;
        Duration::from_secs_f64(secs.min(self.policy.max_backoff.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_grow_to_the_cap_with_jitter_in_bounds() {
        let mut b = Backoff::new(FailureHandling::default());
        let mut waits = Vec::new();
        while let Some(w) = b.next(None) {
            waits.push(w);
        }
        assert_eq!(waits.len(), 17);
        for (n, w) in waits.iter().enumerate() {
            let step = b.step(n as u32);
            assert!(
                *w >= step / 2 && *w <= step,
                "retry {n}: {w:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
        assert_eq!(b.step(0), Duration::from_secs(1));
        assert_eq!(b.step(3), Duration::from_secs(8));
        assert_eq!(b.step(16), Duration::from_secs(300));
    }

    #[test]
    fn retry_after_wins_when_longer() {
        let mut b = Backoff::new(FailureHandling::default());
        assert_eq!(
            b.next(Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn statuses() {
        assert_eq!(classify_status(204), Retryable::Success);
        for s in [408, 429, 500, 502, 503] {
            assert_eq!(classify_status(s), Retryable::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 413, 301] {
            assert_eq!(classify_status(s), Retryable::Permanent, "{s}");
        }
    }
}
