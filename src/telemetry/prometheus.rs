//! Prometheus text exposition. Written by hand because the values come from our own
//! atomics and an hdrhistogram summary; the format is a handful of line rules.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::Telemetry;

pub(super) fn render(t: &Telemetry) -> String {
    let components = t.components();
    let mut out = String::with_capacity(512 + components.len() * 600);
    {
        use crate::build_info::{COMMIT, DATE, TARGET, VERSION};
        let _ = writeln!(
            out,
            "# HELP sluice_build_info The running binary: version, git commit, target and build date (always 1).\n# TYPE sluice_build_info gauge\nsluice_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\",target=\"{TARGET}\",build_date=\"{DATE}\"}} 1"
        );
    }

    type Read = fn(&super::ComponentMetrics) -> u64;
    let counters: [(&str, &str, Read); 4] = [
        (
            "sluice_component_received_events_total",
            "Events a component took in.",
            |c| c.received.load(Ordering::Relaxed),
        ),
        (
            "sluice_component_sent_events_total",
            "Events a component passed on (sources and transforms) or delivered (sinks).",
            |c| c.sent.load(Ordering::Relaxed),
        ),
        (
            "sluice_component_errors_total",
            "Errors a component met (failed VRL programs, failed deliveries, bad requests).",
            |c| c.errors.load(Ordering::Relaxed),
        ),
        (
            "sluice_component_discarded_events_total",
            "Events dropped on purpose (filtered, aborted, or sent to an output nobody reads).",
            |c| c.discarded.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, read) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for c in &components {
            let _ = writeln!(
                out,
                "{name}{{component_id=\"{}\",component_kind=\"{}\",component_type=\"{}\"}} {}",
                escape(&c.id),
                c.kind.as_str(),
                c.type_name,
                read(c)
            );
        }
    }

    let _ = writeln!(
        out,
        "# HELP sluice_buffer_events Events waiting in a component's input buffer.\n# TYPE sluice_buffer_events gauge"
    );
    let _ = writeln!(
        out,
        "# HELP sluice_buffer_max_events Capacity of a component's input buffer.\n# TYPE sluice_buffer_max_events gauge"
    );
    for c in &components {
        if let Some((len, cap)) = c.buffered_events() {
            let labels = format!(
                "component_id=\"{}\",component_kind=\"{}\",component_type=\"{}\"",
                escape(&c.id),
                c.kind.as_str(),
                c.type_name
            );
            let _ = writeln!(out, "sluice_buffer_events{{{labels}}} {len}");
            let _ = writeln!(out, "sluice_buffer_max_events{{{labels}}} {cap}");
        }
    }

    // Component-specific counters, one HELP/TYPE block per name.
    let mut labeled: indexmap::IndexMap<&str, (&str, Vec<String>)> = indexmap::IndexMap::new();
    for c in &components {
        for counter in c.labeled_counters() {
            let mut line = format!(
                "{}{{component_id=\"{}\",component_kind=\"{}\",component_type=\"{}\"",
                counter.name,
                escape(&c.id),
                c.kind.as_str(),
                c.type_name
            );
            for (k, v) in &counter.labels {
                let _ = write!(line, ",{k}=\"{}\"", escape(v));
            }
            let _ = write!(line, "}} {}", counter.get());
            labeled
                .entry(counter.name)
                .or_insert_with(|| (counter.help, Vec::new()))
                .1
                .push(line);
        }
    }
    for (name, (help, lines)) in labeled {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }

    // Component-specific gauges, likewise.
    let mut gauges: indexmap::IndexMap<&str, (&str, Vec<String>)> = indexmap::IndexMap::new();
    for c in &components {
        for gauge in c.labeled_gauges() {
            let mut line = format!(
                "{}{{component_id=\"{}\",component_kind=\"{}\",component_type=\"{}\"",
                gauge.name,
                escape(&c.id),
                c.kind.as_str(),
                c.type_name
            );
            for (k, v) in &gauge.labels {
                let _ = write!(line, ",{k}=\"{}\"", escape(v));
            }
            let _ = write!(line, "}} {}", gauge.get());
            gauges
                .entry(gauge.name)
                .or_insert_with(|| (gauge.help, Vec::new()))
                .1
                .push(line);
        }
    }
    for (name, (help, lines)) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }

    let name = "sluice_component_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Age of events (since their source received them) when they leave a component: passed on by a source or transform, delivered by a sink.\n# TYPE {name} summary"
    );
    for c in &components {
        let labels = format!(
            "component_id=\"{}\",component_kind=\"{}\",component_type=\"{}\"",
            escape(&c.id),
            c.kind.as_str(),
            c.type_name
        );
        let snap = c.latency().snapshot();
        for (q, v) in snap.quantiles {
            // No observation yet: the quantile is undefined, not zero.
            let v = if snap.count == 0 { f64::NAN } else { v };
            let _ = writeln!(out, "{name}{{{labels},quantile=\"{q}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}",
            snap.sum_seconds, snap.count
        );
    }

    write_summary(
        &mut out,
        "sluice_end_to_end_latency_seconds",
        "Time from a source receiving a batch to its last copy being settled.",
        &t.latency().snapshot(),
    );
    let _ = writeln!(
        out,
        "# HELP sluice_config_reloads_total Pipeline reloads applied.\n# TYPE sluice_config_reloads_total counter\nsluice_config_reloads_total {}",
        t.reloads.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP sluice_config_reload_failures_total Pipeline reloads refused (invalid file or a component that failed to build); the running pipeline was kept.\n# TYPE sluice_config_reload_failures_total counter\nsluice_config_reload_failures_total {}",
        t.reload_failures.load(Ordering::Relaxed)
    );
    write_summary(
        &mut out,
        "sluice_config_reload_duration_seconds",
        "Time to load, validate and apply a pipeline, including the hand-over of replaced components.",
        &t.reload_duration.snapshot(),
    );
    if let Some((used, limit)) = t.memory() {
        let share = if limit == 0 {
            0.0
        } else {
            used as f64 / limit as f64
        };
        let _ = writeln!(
            out,
            "# HELP sluice_memory_limit_bytes The memory_limit setting: bytes that in-memory buffers and decoding may hold.\n# TYPE sluice_memory_limit_bytes gauge\nsluice_memory_limit_bytes {limit}\n# HELP sluice_memory_used_bytes Bytes of memory_limit in use.\n# TYPE sluice_memory_used_bytes gauge\nsluice_memory_used_bytes {used}\n# HELP sluice_memory_used_ratio The share of memory_limit in use (0 to 1).\n# TYPE sluice_memory_used_ratio gauge\nsluice_memory_used_ratio {share}"
        );
    }
    super::process::render(&mut out);
    out
}

/// A summary from an hdrhistogram snapshot: quantiles, `_sum` and `_count`.
fn write_summary(
    out: &mut String,
    name: &str,
    help: &str,
    snap: &crate::event::latency::LatencySnapshot,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
    for (q, v) in snap.quantiles {
        let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "{name}_sum {}\n{name}_count {}",
        snap.sum_seconds, snap.count
    );
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::{ComponentKind, Telemetry};
    use std::time::Duration;

    #[test]
    fn renders_counters_and_latency() {
        let t = Telemetry::new();
        let c = t.component("in\"x", ComponentKind::Source, "generator");
        c.add_sent(5);
        t.latency().record(Duration::from_millis(2), 10);
        let text = t.render_prometheus();
        assert!(text.contains(
            "sluice_component_sent_events_total{component_id=\"in\\\"x\",component_kind=\"source\",component_type=\"generator\"} 5"
        ));
        assert!(text.contains("sluice_end_to_end_latency_seconds_count 10"));
        assert!(text.contains(&format!(
            "sluice_build_info{{version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        )));
        let r = c.counter("sluice_x_total", "X.", &[("route", "/a")]);
        r.add(2);
        c.counter("sluice_x_total", "X.", &[("route", "/a")]).add(1);
        let text = t.render_prometheus();
        assert!(text.contains(
            "sluice_x_total{component_id=\"in\\\"x\",component_kind=\"source\",component_type=\"generator\",route=\"/a\"} 3"
        ), "{text}");
        assert_eq!(text.matches("# TYPE sluice_x_total counter").count(), 1);
        c.gauge("sluice_g", "G.", &[("feed", "aws")]).set(1.5);
        c.gauge("sluice_g", "G.", &[("feed", "gcp")])
            .set(1_700_000_000.0);
        let text = t.render_prometheus();
        assert_eq!(text.matches("# TYPE sluice_g gauge").count(), 1);
        assert!(text.contains(
            "sluice_g{component_id=\"in\\\"x\",component_kind=\"source\",component_type=\"generator\",feed=\"aws\"} 1.5"
        ), "{text}");
        assert!(text.contains("feed=\"gcp\"} 1700000000\n"), "{text}");
        assert!(text.contains("sluice_end_to_end_latency_seconds{quantile=\"0.5\"} 0.002"));
        assert!(text.contains("sluice_component_latency_seconds{component_id=\"in\\\"x\",component_kind=\"source\",component_type=\"generator\",quantile=\"0.5\"} NaN"), "{text}");
        c.latency().record(Duration::from_millis(3), 4);
        let text = t.render_prometheus();
        assert!(text.contains("sluice_component_latency_seconds_count{component_id=\"in\\\"x\",component_kind=\"source\",component_type=\"generator\"} 4"), "{text}");
        assert!(text.contains(",quantile=\"0.99\"} 0.003"), "{text}");
    }
}
