//! The delivery options every network sink accepts.

use std::time::Duration;

use serde::Deserialize;

/// `batch:` how many events go in one request.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchConfig {
    /// Most events in one request (default 100); a full batch is sent at once. Sinks
    /// that send one event per request ignore it.
    #[serde(default = "default_max_events")]
    pub(crate) max_events: usize,
    /// Most bytes of encoded events in one request, before compression (default
    /// 1048576, 1 MiB). NDJSON's line breaks count; a JSON array's brackets and commas
    /// do not. An event that would pass it starts a new batch.
    #[serde(default = "default_max_bytes")]
    pub(crate) max_bytes: usize,
    /// How long a partial batch may wait for more events.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_batch_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
}

fn default_max_events() -> usize {
    100
}
fn default_max_bytes() -> usize {
    1024 * 1024
}
fn default_batch_timeout() -> Duration {
    Duration::from_secs(1)
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout: default_batch_timeout(),
        }
    }
}

/// `request:` per-request limits.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestConfig {
    /// How long one attempt (connecting included) may take before it fails and is
    /// retried (default 30s); also bounds OAuth2 token requests. `cloudevents` uses
    /// `sink.timeout` instead.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
    /// Requests in flight at once (1 keeps delivery in order).
    #[serde(default = "default_concurrency")]
    pub(crate) concurrency: usize,
    pub(crate) rate_limit: Option<RateLimitConfig>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_concurrency() -> usize {
    1
}

impl Default for RequestConfig {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            concurrency: default_concurrency(),
            rate_limit: None,
        }
    }
}

/// `rate_limit:` requests per second, with bursts.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitConfig {
    /// Requests started per second at most, retries included (at least 0.001).
    pub(crate) per_second: f64,
    /// Requests that may start back to back before the rate applies (default 1).
    pub(crate) burst: Option<u32>,
}

impl BatchConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.max_events == 0 || self.max_bytes == 0 {
            return Err("`batch.max_events` and `batch.max_bytes` must be at least 1".into());
        }
        Ok(())
    }
}

impl RequestConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("`request.concurrency` must be at least 1".into());
        }
        if let Some(r) = self.rate_limit
            && !(r.per_second >= 0.001 && r.per_second.is_finite())
        {
            return Err(
                "`request.rate_limit.per_second` must be a number of at least 0.001".into(),
            );
        }
        Ok(())
    }
}
