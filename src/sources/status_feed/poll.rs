//! One HTTP fetch of a feed, and when to fetch next.
//!
//! Fetches are conditional: the validators of the last body whose incidents were all
//! delivered go out as `If-None-Match` / `If-Modified-Since`, so an unchanged feed costs
//! a `304` and no parsing. The body is read up to `max_bytes`. Polls are spread by
//! jitter; consecutive failures back off exponentially (with jitter, and `Retry-After`
//! honoured), and a success returns to the interval.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap};

use super::parse::{Format, ParseError};
use crate::event::EventStatus;
use crate::net::{Backoff, FailureHandling, error_chain};

/// What to ask for.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) url: String,
    pub(crate) format: Format,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    pub(crate) max_bytes: usize,
}

/// A fetch that worked.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// `304`: nothing changed since the validators were stored.
    NotModified,
    Body {
        body: Bytes,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// Why a poll failed. The reason is a metric label.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PollError {
    #[error("HTTP {status}: {body}")]
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("the body exceeds max_bytes ({0} bytes)")]
    TooLarge(usize),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(
        "{failed} of {total} events were not delivered ({status:?}); they are planned again on the next poll"
    )]
    Delivery {
        failed: usize,
        total: usize,
        status: EventStatus,
    },
}

impl PollError {
    /// The `reason` label of `sluice_status_feed_errors_total`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Status { .. } => "http_status",
            Self::Timeout(_) => "timeout",
            Self::Connect(_) => "connect",
            Self::Request(_) => "request",
            Self::TooLarge(_) => "too_large",
            Self::Parse(_) => "parse",
            Self::Delivery { .. } => "delivery",
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn from_reqwest(e: &reqwest::Error) -> Self {
        let text = error_chain(e);
        if e.is_timeout() {
            Self::Timeout(text)
        } else if e.is_connect() {
            Self::Connect(text)
        } else {
            Self::Request(text)
        }
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|v| !v.is_empty())
}

/// One GET, conditional when validators are known.
pub(crate) async fn fetch(client: &reqwest::Client, req: &Request) -> Result<Fetched, PollError> {
    let mut builder = client
        .get(&req.url)
        .header(header::ACCEPT, req.format.accept());
    if let Some(etag) = &req.etag {
        builder = builder.header(header::IF_NONE_MATCH, etag);
    }
    if let Some(since) = &req.last_modified {
        builder = builder.header(header::IF_MODIFIED_SINCE, since);
    }
    let mut response = builder
        .send()
        .await
        .map_err(|e| PollError::from_reqwest(&e))?;
    let status = response.status().as_u16();
    if status == 304 {
        return Ok(Fetched::NotModified);
    }
    if !(200..300).contains(&status) {
        let retry_after = crate::net::retry_after(response.headers());
        // A short excerpt: error pages can be large HTML.
        let text = crate::net::excerpt(&mut response, 512).await;
        return Err(PollError::Status {
            status,
            body: text.lines().next().unwrap_or("").trim().to_owned(),
            retry_after,
        });
    }
    let etag = header_text(response.headers(), header::ETAG);
    let last_modified = header_text(response.headers(), header::LAST_MODIFIED);
    let body = crate::net::read_at_most(&mut response, req.max_bytes)
        .await
        .map_err(|e| match e {
            crate::net::BodyError::TooLarge(n) => PollError::TooLarge(n),
            crate::net::BodyError::Http(e) => PollError::from_reqwest(&e),
        })?;
    Ok(Fetched::Body {
        body,
        etag,
        last_modified,
    })
}

/// When a feed is polled next.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    interval: Duration,
    jitter: f64,
    policy: FailureHandling,
    backoff: Backoff,
}

impl Schedule {
    /// Polls every `interval` ± `jitter` (a fraction); after failures, waits that
    /// double from twice the interval up to `max_backoff`.
    /// The wait between successful polls.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    pub(crate) fn new(interval: Duration, jitter: f64, max_backoff: Duration) -> Self {
        let policy = FailureHandling {
            max_retries: u32::MAX,
            initial_backoff: interval.saturating_mul(2),
            max_backoff: max_backoff.max(interval),
            backoff_multiplier: 2.0,
        };
        Self {
            interval,
            jitter,
            policy,
            backoff: Backoff::new(policy),
        }
    }

    /// The wait after a successful poll; resets the backoff.
    pub(crate) fn after_success(&mut self) -> Duration {
        self.backoff = Backoff::new(self.policy);
        let spread = self.jitter * (2.0 * fastrand::f64() - 1.0);
        self.interval.mul_f64(1.0 + spread)
    }

    /// The wait after a failed poll.
    pub(crate) fn after_failure(&mut self, retry_after: Option<Duration>) -> Duration {
        self.backoff
            .next(retry_after)
            .unwrap_or(self.policy.max_backoff)
    }

    /// The un-jittered wait after `n` consecutive failures (from 1).
    #[cfg(test)]
    pub(crate) fn backoff_step(&self, n: u32) -> Duration {
        self.backoff.step(n.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_and_backoff_bounds() {
        let interval = Duration::from_secs(60);
        let mut s = Schedule::new(interval, 0.1, Duration::from_secs(600));
        for _ in 0..100 {
            let w = s.after_success();
            assert!(
                w >= Duration::from_secs(54) && w <= Duration::from_secs(66),
                "{w:?}"
            );
        }
        let mut waits = Vec::new();
        for n in 1..=5 {
            let w = s.after_failure(None);
            let step = s.backoff_step(n);
            assert!(w >= step / 2 && w <= step, "failure {n}: {w:?} vs {step:?}");
            waits.push(step);
        }
        assert_eq!(
            waits,
            [120, 240, 480, 600, 600].map(Duration::from_secs).to_vec()
        );
        assert_eq!(
            s.after_failure(Some(Duration::from_secs(3600))),
            Duration::from_secs(600),
            "Retry-After is capped by max_backoff"
        );
        let w = s.after_success();
        assert!(w <= Duration::from_secs(66), "a success resets the backoff");
        let w = s.after_failure(None);
        assert!(w <= Duration::from_secs(120));
    }
}
