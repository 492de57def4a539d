//! What the machine did to a run, apart from sluice: how late a 1 ms timer woke up (a
//! stall every process saw: the hypervisor, the kernel, another program) and how much
//! CPU time the hypervisor stole. A latency outlier that coincides with a stall is the
//! machine's; one that does not is traced inside sluice (its per-component latencies).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A wake-up this much later than asked counts as a stall.
const STALL: Duration = Duration::from_millis(10);

/// What was seen over one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Noise {
    /// The latest a 1 ms sleep of a bench thread woke up, beyond its 1 ms, in ms; absent
    /// when no timer thread ran (throughput scenarios, where it would take CPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) longest_stall_ms: Option<f64>,
    /// How many wake-ups were 10 ms or more late.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stalls_over_10ms: Option<u64>,
    /// CPU time the hypervisor gave to others while this machine's CPUs wanted it (the
    /// `steal` of `/proc/stat`, all CPUs), in ms; absent without `/proc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stolen_ms: Option<f64>,
}

impl Noise {
    /// One line for the table.
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

struct Timer {
    stop: Arc<AtomicBool>,
    longest_us: Arc<AtomicU64>,
    stalls: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Watch {
    /// `timer`: also run the 1 ms timer thread (latency scenarios).
    pub(crate) fn start(timer: bool) -> Self {
        Self {
            stolen_at_start: stolen_ticks(),
            timer: timer.then(Timer::start).flatten(),
        }
    }

    pub(crate) fn finish(self) -> Noise {
        let ticks_per_ms = 1_000.0 / clock_ticks_per_second();
        let stolen_ms = self
            .stolen_at_start
            .zip(stolen_ticks())
            .map(|(a, b)| b.saturating_sub(a) as f64 * ticks_per_ms);
        let (longest_stall_ms, stalls_over_10ms) = match self.timer {
            Some(t) => {
                t.stop.store(true, Ordering::Relaxed);
                let _ = t.thread.join();
                (
                    Some(t.longest_us.load(Ordering::Relaxed) as f64 / 1_000.0),
                    Some(t.stalls.load(Ordering::Relaxed)),
                )
            }
            None => (None, None),
        };
        Noise {
            longest_stall_ms,
            stalls_over_10ms,
            stolen_ms,
        }
    }
}

impl Timer {
    fn start() -> Option<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let longest_us = Arc::new(AtomicU64::new(0));
        let stalls = Arc::new(AtomicU64::new(0));
        let (s, l, n) = (stop.clone(), longest_us.clone(), stalls.clone());
        let thread = std::thread::Builder::new()
            .name("bench-noise".into())
            .spawn(move || ticks(&s, &l, &n, std::thread::sleep))
            .ok()?;
        Some(Self {
            stop,
            longest_us,
            stalls,
            thread,
        })
    }
}

/// Sleeps 1 ms at a time until `stop`, keeping the longest overshoot and the count of
/// stalls; `sleep` is the thread's (a test holds it longer, as a stalled machine would).
fn ticks(
    stop: &AtomicBool,
    longest_us: &AtomicU64,
    stalls: &AtomicU64,
    mut sleep: impl FnMut(Duration),
) {
    let tick = Duration::from_millis(1);
    while !stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        sleep(tick);
        let late = asked.elapsed().saturating_sub(tick);
        longest_us.fetch_max(
            u64::try_from(late.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if late >= STALL {
            stalls.fetch_add(1, Ordering::Relaxed);
        }
    }
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

/// `USER_HZ`: 100 on every Linux architecture sluice builds for.
fn clock_ticks_per_second() -> f64 {
    100.0
}

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
    fn a_late_wake_up_is_a_stall() {
        let (stop, longest, stalls) =
            (AtomicBool::new(false), AtomicU64::new(0), AtomicU64::new(0));
        let mut calls = 0;
        ticks(&stop, &longest, &stalls, |tick| {
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
        assert_eq!(stalls.load(Ordering::Relaxed), 1);
        let longest_ms = longest.load(Ordering::Relaxed) as f64 / 1_000.0;
        assert!((25.0..100.0).contains(&longest_ms), "{longest_ms}");
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
        }
    }
}
