//! What the machine did to a run, apart from what sluice reports of itself: when and how
//! late a 1 ms timer thread in the bench woke up, and how much CPU time the hypervisor
//! stole. A wake-up 10 ms late means the bench could not run for that long: the machine
//! stood still, or its CPUs were busy with something else (sluice included). A slow
//! alert sent during such a stall (the report's `slowest`) was held at least in part by
//! the machine; one sent at a quiet moment was not.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// A wake-up this much later than asked counts as a stall.
const STALL: Duration = Duration::from_millis(10);
/// Stalls whose times are kept (the first ones of a run).
const KEPT: usize = 16;

/// What was seen over one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Noise {
    /// The latest a 1 ms sleep of a bench thread woke up, beyond its 1 ms, in ms; absent
    /// when no timer thread ran (throughput scenarios, where it would take CPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) longest_stall_ms: Option<f64>,
    /// How many wake-ups were 10 ms or more late.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stalls_over_10ms: Option<u64>,
    /// The first 16 of those stalls.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) stalls: Vec<Stall>,
    /// CPU time the hypervisor gave to others while this machine's CPUs wanted it (the
    /// `steal` of `/proc/stat`, all CPUs), in ms; absent without `/proc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stolen_ms: Option<f64>,
}

/// One stall: when the timer woke up and how late.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Stall {
    /// Wall-clock time of the late wake-up, ms since the Unix epoch (the marks' clock).
    pub(crate) woke_unix_ms: u64,
    pub(crate) late_ms: f64,
}

impl Noise {
    /// One line for the table; empty when nothing was measured.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let (Some(longest), Some(n)) = (self.longest_stall_ms, self.stalls_over_10ms) {
            parts.push(format!(
                "longest timer stall {longest:.1} ms, {n} of 10 ms or more"
            ));
        }
        if let Some(stolen) = self.stolen_ms {
            parts.push(format!("{stolen:.0} ms of CPU stolen by the hypervisor"));
        }
        parts.join(", ")
    }
}

/// Watches from `start` to `finish`.
pub(crate) struct Watch {
    stolen_at_start: Option<u64>,
    timer: Option<Timer>,
}

impl Watch {
    /// `timer`: also run the 1 ms timer thread (latency scenarios).
    pub(crate) fn start(timer: bool) -> Self {
        Self {
            stolen_at_start: stolen_ticks(),
            timer: timer.then(Timer::start).flatten(),
        }
    }

    pub(crate) fn finish(mut self) -> Noise {
        let ms_per_tick = 1_000.0 / TICKS_PER_SECOND;
        let mut noise = Noise {
            stolen_ms: self
                .stolen_at_start
                .zip(stolen_ticks())
                .map(|(a, b)| b.saturating_sub(a) as f64 * ms_per_tick),
            ..Noise::default()
        };
        if let Some(mut t) = self.timer.take() {
            t.halt();
            let seen = &t.seen;
            noise.longest_stall_ms = Some(seen.longest_us.load(Ordering::Relaxed) as f64 / 1e3);
            noise.stalls_over_10ms = Some(seen.stalls.load(Ordering::Relaxed));
            noise.stalls =
                std::mem::take(&mut *seen.kept.lock().unwrap_or_else(|p| p.into_inner()));
        }
        noise
    }
}

/// The timer thread and what it found.
struct Timer {
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Seen {
    longest_us: AtomicU64,
    stalls: AtomicU64,
    kept: Mutex<Vec<Stall>>,
}

impl Timer {
    fn start() -> Option<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let (s, n) = (stop.clone(), seen.clone());
        let thread = std::thread::Builder::new()
            .name("bench-noise".into())
            .spawn(move || ticks(&s, &n, std::thread::sleep))
            .ok()?;
        Some(Self {
            stop,
            seen,
            thread: Some(thread),
        })
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A run that fails between `start` and `finish` still stops its timer thread, so it
/// takes no CPU from the scenarios after it.
impl Drop for Timer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Sleeps 1 ms at a time until `stop`, keeping the longest overshoot and the stalls;
/// `sleep` is the thread's (a test holds it longer, as a stalled machine would).
fn ticks(stop: &AtomicBool, seen: &Seen, mut sleep: impl FnMut(Duration)) {
    let tick = Duration::from_millis(1);
    while !stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        sleep(tick);
        let late = asked.elapsed().saturating_sub(tick);
        seen.longest_us.fetch_max(
            u64::try_from(late.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if late >= STALL {
            seen.stalls.fetch_add(1, Ordering::Relaxed);
            let mut kept = seen.kept.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() < KEPT {
                kept.push(Stall {
                    woke_unix_ms: unix_ms(),
                    late_ms: late.as_secs_f64() * 1e3,
                });
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The `steal` column of `/proc/stat`'s `cpu` line, in clock ticks.
fn stolen_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_steal(&stat)
}

fn parse_steal(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // cpu user nice system idle iowait irq softirq steal …
    line.split_whitespace().nth(8)?.parse().ok()
}

/// `USER_HZ`, the unit of `/proc/stat`: 100 on every Linux architecture sluice builds for.
const TICKS_PER_SECOND: f64 = 100.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_steal_column() {
        let stat =
            "cpu  4705 150 1120 16250 520 0 35 77 0 0\ncpu0 2000 70 500 8000 300 0 20 40 0 0\n";
        assert_eq!(parse_steal(stat), Some(77));
        assert_eq!(parse_steal("intr 1 2 3\n"), None);
    }

    #[test]
    fn a_late_wake_up_is_a_stall_with_its_time() {
        let (stop, seen) = (AtomicBool::new(false), Seen::default());
        let started_ms = unix_ms();
        let mut calls = 0;
        ticks(&stop, &seen, |tick| {
            calls += 1;
            // The third wake-up comes 25 ms late, as on a descheduled machine.
            let extra = if calls == 3 {
                Duration::from_millis(25)
            } else {
                Duration::ZERO
            };
            std::thread::sleep(tick + extra);
            if calls == 5 {
                stop.store(true, Ordering::Relaxed);
            }
        });
        assert_eq!(seen.stalls.load(Ordering::Relaxed), 1);
        let longest_ms = seen.longest_us.load(Ordering::Relaxed) as f64 / 1e3;
        assert!((25.0..100.0).contains(&longest_ms), "{longest_ms}");
        let kept = seen.kept.lock().expect("lock").clone();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!((kept[0].late_ms - longest_ms).abs() < 0.01, "{kept:?}");
        assert!(kept[0].woke_unix_ms >= started_ms + 25, "{kept:?}");
    }

    #[test]
    fn a_dropped_watch_stops_its_thread() {
        let watch = Watch::start(true);
        let stop = watch
            .timer
            .as_ref()
            .map(|t| t.stop.clone())
            .expect("a timer");
        drop(watch);
        assert!(stop.load(Ordering::Relaxed));
    }

    #[test]
    fn the_timer_runs_only_when_asked() {
        let noise = Watch::start(true).finish();
        assert!(noise.longest_stall_ms.is_some() && noise.stalls_over_10ms.is_some());
        let quiet = Watch::start(false).finish();
        assert_eq!(
            (quiet.longest_stall_ms, quiet.stalls_over_10ms),
            (None, None)
        );
        if std::path::Path::new("/proc/stat").exists() {
            assert!(quiet.stolen_ms.is_some());
            assert!(!quiet.describe().is_empty());
        } else {
            assert!(quiet.describe().is_empty());
        }
    }
}
