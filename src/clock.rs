//! Time as components see it, so tests can control it.
//!
//! Components that wait by policy (retry backoff, `Retry-After`) sleep through the
//! [`Clock`] in their context instead of calling tokio directly. Production uses
//! [`TokioClock`]; tests use [`ManualClock`], which records every requested sleep and
//! returns at once, so a test can assert "waited 2 s as `Retry-After` said" without
//! waiting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
    /// The current instant (for expiries such as OAuth2 tokens).
    fn now(&self) -> Instant;
    /// The current wall-clock time (for file names and retention).
    fn wall(&self) -> chrono::DateTime<chrono::Utc>;
}

/// Real time.
#[derive(Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// Records sleeps and returns immediately; `on_sleep` runs on each (with the total
/// slept so far), e.g. to bring a receiver back up after "20 seconds". Its `now` moves
/// only by sleeps and [`ManualClock::advance`].
#[derive(Clone)]
pub struct ManualClock {
    start: Instant,
    start_wall: chrono::DateTime<chrono::Utc>,
    advanced: Arc<Mutex<Duration>>,
    slept: Arc<Mutex<Vec<Duration>>>,
    #[allow(clippy::type_complexity)]
    on_sleep: Arc<Mutex<Option<Box<dyn FnMut(Duration) + Send>>>>,
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ManualClock({:?})", self.sleeps())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            start_wall: chrono::Utc::now(),
            advanced: Arc::default(),
            slept: Arc::default(),
            on_sleep: Arc::default(),
        }
    }
}

impl ManualClock {
    /// A clock whose wall time starts at `at`.
    pub fn starting_at(at: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            start_wall: at,
            ..Self::default()
        }
    }

    fn advanced(&self) -> Duration {
        self.advanced.lock().map(|a| *a).unwrap_or_default()
    }

    /// Moves `now` forward without a sleep.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut a) = self.advanced.lock() {
            *a += by;
        }
    }

    /// Every sleep requested so far.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.slept.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sum of every sleep requested so far.
    pub fn total(&self) -> Duration {
        self.sleeps().iter().sum()
    }

    pub fn on_sleep(&self, hook: impl FnMut(Duration) + Send + 'static) {
        if let Ok(mut h) = self.on_sleep.lock() {
            *h = Some(Box::new(hook));
        }
    }
}

impl Clock for ManualClock {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let total = {
            let Ok(mut slept) = self.slept.lock() else {
                return Box::pin(async {});
            };
            slept.push(duration);
            slept.iter().sum::<Duration>()
        };
        self.advance(duration);
        if let Ok(mut hook) = self.on_sleep.lock()
            && let Some(h) = hook.as_mut()
        {
            h(total);
        }
        // Yield so a sleeping task still lets others run, as a real sleep would.
        Box::pin(tokio::task::yield_now())
    }

    fn now(&self) -> Instant {
        self.start + self.advanced()
    }

    fn wall(&self) -> chrono::DateTime<chrono::Utc> {
        self.start_wall + self.advanced()
    }
}
