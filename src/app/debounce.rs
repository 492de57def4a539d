//! When a burst of file changes becomes one reload.
//!
//! Editors write a file in several steps (truncate, write, rename), and `kubectl`
//! swaps a whole directory; reloading at the first event would read a half-written
//! file. A change arms a deadline `quiet` later; every further change pushes it back,
//! so the reload runs once the files have been still for `quiet`. Pure state, driven
//! by the instants its caller passes, so tests step time by hand. Instants are tokio's,
//! so the controller's tests can run on tokio's paused clock.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct Debounce {
    quiet: Duration,
    due: Option<Instant>,
}

impl Debounce {
    pub(crate) fn new(quiet: Duration) -> Self {
        Self { quiet, due: None }
    }

    /// A watched file changed at `now`.
    pub(crate) fn changed(&mut self, now: Instant) {
        self.due = Some(now + self.quiet);
    }

    /// When the pending reload is due, if one is pending.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether a reload is due at `now`; if so it is taken (the next one needs a new change).
    pub(crate) fn take_due(&mut self, now: Instant) -> bool {
        match self.due {
            Some(at) if at <= now => {
                self.due = None;
                true
            }
            _ => false,
        }
    }

    /// A reload ran for another reason (SIGHUP, the API): it read the files as they are,
    /// so a pending file reload would only repeat it.
    pub(crate) fn reloaded(&mut self) {
        self.due = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_millis(200);

    #[test]
    fn a_burst_of_changes_is_one_reload_after_the_last() {
        let t0 = Instant::now();
        let mut d = Debounce::new(QUIET);
        assert_eq!(d.due(), None);
        for ms in [0, 50, 120, 190] {
            d.changed(t0 + Duration::from_millis(ms));
            assert!(!d.take_due(t0 + Duration::from_millis(ms)));
        }
        assert_eq!(d.due(), Some(t0 + Duration::from_millis(390)));
        assert!(!d.take_due(t0 + Duration::from_millis(389)));
        assert!(d.take_due(t0 + Duration::from_millis(390)));
        assert!(!d.take_due(t0 + Duration::from_secs(10)), "taken once");
        assert_eq!(d.due(), None);
    }

    #[test]
    fn another_reload_makes_a_pending_file_reload_unnecessary() {
        let t0 = Instant::now();
        let mut d = Debounce::new(QUIET);
        d.changed(t0);
        d.reloaded();
        assert!(!d.take_due(t0 + Duration::from_secs(1)));
        d.changed(t0 + Duration::from_secs(2));
        assert!(d.take_due(t0 + Duration::from_secs(3)));
    }
}
