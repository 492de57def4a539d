//! Time as components see it, so tests can control it.
//!
//! Components that wait by policy (retry backoff, `Retry-After`) sleep through the
//! [`Clock`] in their context instead of calling tokio directly. Production uses
//! [`TokioClock`]; tests use [`ManualClock`], which records every requested sleep and
//! returns at once, so a test can assert "waited 2 s as `Retry-After` said" without
//! waiting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::component::BoxFuture;

pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Real time.
#[derive(Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Records sleeps and returns immediately; `on_sleep` runs on each (with the total
/// slept so far), e.g. to bring a receiver back up after "20 seconds".
#[derive(Clone, Default)]
pub struct ManualClock {
    slept: Arc<Mutex<Vec<Duration>>>,
    #[allow(clippy::type_complexity)]
    on_sleep: Arc<Mutex<Option<Box<dyn FnMut(Duration) + Send>>>>,
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ManualClock({:?})", self.sleeps())
    }
}

impl ManualClock {
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
        if let Ok(mut hook) = self.on_sleep.lock()
            && let Some(h) = hook.as_mut()
        {
            h(total);
        }
        // Yield so a sleeping task still lets others run, as a real sleep would.
        Box::pin(tokio::task::yield_now())
    }
}
