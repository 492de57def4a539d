//! What a scenario run found, as JSON (`--json`) and as a table.

use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::load::child::Stage;
use crate::cli::load::noise::Noise;
use crate::cli::load::receiver::Slow;
use crate::cli::load::scenario::Measure;

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: String,
    pub(crate) description: String,
    pub(crate) measure: Measure,
    pub(crate) quick: bool,
    /// Set when the scenario could not run here (a missing service outside CI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) skipped: Option<String>,
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) failed: u64,
    /// Requests sluice answered 429/503 (backpressure) that the driver sent again.
    pub(crate) retried: u64,
    /// Events/s asked for; `null` is flat out.
    pub(crate) rate: Option<f64>,
    /// Events/s the driver managed on its own clock: when it is close to sluice's
    /// figure, the driver, not sluice, was the bound.
    pub(crate) driver_events_per_sec: f64,
    /// The sluice child's peak resident memory over the run (its `VmHWM`), in MiB;
    /// absent where `/proc` has no such line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sluice_peak_rss_mib: Option<f64>,
    /// Latency inside sluice, per component and end to end, from its own histograms
    /// (webhook, NDJSON and Forward scenarios): whether the tail of the end-to-end figures
    /// is there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) sluice_stages: Vec<Stage>,
    pub(crate) sluice: Figures,
    pub(crate) baseline: Baseline,
    /// sluice / baseline on the scenario's measure.
    pub(crate) ratio: f64,
    pub(crate) machine: String,
    pub(crate) date: String,
    pub(crate) command: String,
}

/// Throughput and end-to-end latency of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Figures {
    pub(crate) events_per_sec: f64,
    pub(crate) mib_per_sec: f64,
    pub(crate) elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) latency_ms: Option<Percentiles>,
    /// The slowest events, slowest first, with their send times: to set beside the
    /// timer's stalls in `noise`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) slowest: Vec<Slow>,
    /// Timer stalls and stolen CPU during the run (webhook, NDJSON and Forward scenarios).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) noise: Option<Noise>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Baseline {
    pub(crate) what: String,
    #[serde(flatten)]
    pub(crate) figures: Figures,
    /// When the baseline is the slower of several (Kafka read, Postgres COPY).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) parts: Vec<crate::cli::load::baseline::Ceiling>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p99_9: f64,
    pub(crate) max: f64,
}

impl Percentiles {
    /// From a histogram in microseconds; `None` when it is empty.
    pub(crate) fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1_000.0;
        Some(Self {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }
}

impl Report {
    /// sluice / baseline on the measure, 0 when a side has no figure.
    pub(crate) fn compute_ratio(&mut self) {
        let (s, b) = match self.measure {
            Measure::Throughput => (
                self.sluice.events_per_sec,
                self.baseline.figures.events_per_sec,
            ),
            Measure::Latency => (
                self.sluice.latency_ms.map_or(0.0, |l| l.p50),
                self.baseline.figures.latency_ms.map_or(0.0, |l| l.p50),
            ),
        };
        self.ratio = if b > 0.0 { s / b } else { 0.0 };
    }
}

/// The reports as a plain-text table, one row for sluice and one for its baseline.
pub(crate) fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:<9} {:>9} {:>9} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "scenario",
        "run",
        "sent",
        "delivered",
        "events/s",
        "MiB/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "ratio"
    );
    for r in reports {
        if let Some(why) = &r.skipped {
            let _ = writeln!(out, "{:<28} skipped: {why}", r.scenario);
            continue;
        }
        let row = |out: &mut String, run: &str, f: &Figures, sent: &str, del: &str, ratio: &str| {
            let l = |get: fn(&Percentiles) -> f64| {
                f.latency_ms
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |p| format!("{:.2}", get(p)))
            };
            let _ = writeln!(
                out,
                "{:<28} {:<9} {:>9} {:>9} {:>12.0} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
                if run == "sluice" {
                    r.scenario.as_str()
                } else {
                    ""
                },
                run,
                sent,
                del,
                f.events_per_sec,
                f.mib_per_sec,
                l(|p| p.p50),
                l(|p| p.p90),
                l(|p| p.p99),
                l(|p| p.p99_9),
                l(|p| p.max),
                ratio
            );
        };
        row(
            &mut out,
            "sluice",
            &r.sluice,
            &r.sent.to_string(),
            &r.delivered.to_string(),
            &format!("{:.2}", r.ratio),
        );
        row(&mut out, "baseline", &r.baseline.figures, "", "", "");
        let _ = writeln!(out, "{:<28} baseline: {}", "", r.baseline.what);
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        for st in &r.sluice_stages {
            let _ = writeln!(
                out,
                "{:<28} inside sluice, {}: p50 {:.2} p99 {:.2} p99.9 {} max {} ms ({} events)",
                "",
                st.stage,
                st.p50,
                st.p99,
                ms(st.p99_9),
                ms(st.max),
                st.events
            );
        }
        for (run, f) in [("sluice", &r.sluice), ("baseline", &r.baseline.figures)] {
            let seen = f.noise.as_ref().map(Noise::describe).unwrap_or_default();
            if !seen.is_empty() {
                let _ = writeln!(out, "{:<28} machine during the {run} run: {seen}", "");
            }
            if r.measure == Measure::Latency && !f.slowest.is_empty() {
                let _ = writeln!(out, "{:<28} slowest of the {run} run: {}", "", slowest(f));
            }
        }
        if let Some(mib) = r.sluice_peak_rss_mib {
            let _ = writeln!(out, "{:<28} sluice's peak RSS: {mib:.1} MiB", "");
        }
        for p in &r.baseline.parts {
            let _ = writeln!(
                out,
                "{:<28}   {}: {:.0} events/s, {:.1} MiB/s",
                "", p.what, p.events_per_sec, p.mib_per_sec
            );
        }
    }
    out
}

/// The slowest events, each marked when its time in flight overlapped a timer stall.
fn slowest(f: &Figures) -> String {
    let stalls = f.noise.as_ref().map_or(&[][..], |n| n.stalls.as_slice());
    f.slowest
        .iter()
        .map(|s| {
            let (from, to) = (s.sent_unix_ms as f64, s.sent_unix_ms as f64 + s.latency_ms);
            let held = stalls.iter().any(|st| {
                let woke = st.woke_unix_ms as f64;
                woke - st.late_ms <= to + 1.0 && woke + 1.0 >= from
            });
            let held = if held { ", during a timer stall" } else { "" };
            format!("{:.2} ms (#{}{held})", s.latency_ms, s.id)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU model, cores and memory, for the README's table.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / f64::from(1 << 20));
    format!(
        "{cores} vCPU {cpu}, {mem_gib:.0} GiB, {}",
        std::env::consts::OS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_milliseconds() {
        let mut h = crate::cli::load::receiver::latency_histogram();
        for us in 1..=1000 {
            h.record(us * 10).expect("in range");
        }
        let p = Percentiles::of(&h).expect("not empty");
        assert!((p.p50 - 5.0).abs() < 0.01, "{p:?}");
        assert!((p.max - 10.0).abs() < 0.01, "{p:?}");
        assert!(Percentiles::of(&crate::cli::load::receiver::latency_histogram()).is_none());
    }

    #[test]
    fn a_slow_event_in_flight_during_a_stall_is_marked() {
        let slow = |id, sent_unix_ms, latency_ms| Slow {
            id,
            sent_unix_ms,
            latency_ms,
        };
        let f = Figures {
            // In flight 10,000–10,098 ms, 20,000–20,003 ms, 30,500–30,502 ms.
            slowest: vec![
                slow(7, 10_000, 98.0),
                slow(9, 20_000, 3.0),
                slow(4, 30_500, 2.0),
            ],
            noise: Some(Noise {
                // Stood still 10,010–10,100 ms and 30,000–30,200 ms.
                stalls: vec![
                    crate::cli::load::noise::Stall {
                        woke_unix_ms: 10_100,
                        late_ms: 90.0,
                    },
                    crate::cli::load::noise::Stall {
                        woke_unix_ms: 30_200,
                        late_ms: 200.0,
                    },
                ],
                ..Noise::default()
            }),
            ..Figures::default()
        };
        assert_eq!(
            slowest(&f),
            "98.00 ms (#7, during a timer stall), 3.00 ms (#9), 2.00 ms (#4)"
        );
    }
}
