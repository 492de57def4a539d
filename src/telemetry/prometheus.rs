//! Prometheus text exposition. Written by hand because the values come from our own
//! atomics and an hdrhistogram summary; the format is a handful of line rules.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use std::sync::Arc;

use super::{ComponentKind, ComponentMetrics, LatencyRecorder, Telemetry};

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

    render_event_counters(&mut out, &components);
    render_byte_counters(&mut out, &components);

    // Each family's samples follow its own TYPE line: the format requires one group per
    // metric.
    type Fill = fn((usize, usize)) -> usize;
    let buffers: [(&str, &str, Fill); 2] = [
        (
            "sluice_buffer_events",
            "Events waiting in a component's input buffer.",
            |(len, _)| len,
        ),
        (
            "sluice_buffer_max_events",
            "Capacity of a component's input buffer.",
            |(_, cap)| cap,
        ),
    ];
    for (name, help, read) in buffers {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for c in &components {
            if let Some(fill) = c.buffered_events() {
                let _ = writeln!(out, "{name}{{{}}} {}", component_labels(c), read(fill));
            }
        }
    }

    // Component-specific counters, one HELP/TYPE block per name.
    let mut labeled: indexmap::IndexMap<&str, (&str, Vec<String>)> = indexmap::IndexMap::new();
    for c in &components {
        for counter in c.labeled_counters() {
            let mut line = format!("{}{{{}", counter.name, component_labels(c));
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
            let mut line = format!("{}{{{}", gauge.name, component_labels(c));
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
        "# HELP {name} Age of events (since their source received them) when they leave a component: passed on by a source or transform, delivered by a sink.\n# TYPE {name} histogram"
    );
    for c in &components {
        write_buckets(&mut out, name, &component_labels(c), c.latency());
    }

    write_histogram(
        &mut out,
        "sluice_end_to_end_latency_seconds",
        "Time from a source receiving a batch to its last copy being settled.",
        t.latency(),
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
    write_histogram(
        &mut out,
        "sluice_config_reload_duration_seconds",
        "Time to load, validate and apply a pipeline, including the hand-over of replaced components.",
        &t.reload_duration,
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

/// The counters every component has. Series with a label that depends on what happened
/// (`error_type`, `stage`) appear at their first count.
fn render_event_counters(out: &mut String, components: &[Arc<ComponentMetrics>]) {
    let name = "sluice_component_received_events_total";
    let _ = writeln!(
        out,
        "# HELP {name} Events a component took in.\n# TYPE {name} counter"
    );
    for c in components {
        let _ = writeln!(
            out,
            "{name}{{{}}} {}",
            component_labels(c),
            c.received.load(Ordering::Relaxed)
        );
    }

    let name = "sluice_component_sent_events_total";
    let _ = writeln!(
        out,
        "# HELP {name} Events a component passed on, by output (sources and transforms), or delivered (sinks, without the output label).\n# TYPE {name} counter"
    );
    for c in components {
        let labels = component_labels(c);
        let outputs = c.outputs_sent();
        if c.kind == ComponentKind::Sink || outputs.is_empty() {
            // A sink's own line is what it delivered; what it passed to its outputs
            // (dead_letter) follows with their names.
            let passed: u64 = outputs.iter().map(|(_, n)| n).sum();
            let delivered = c.sent.load(Ordering::Relaxed).saturating_sub(passed);
            let _ = writeln!(out, "{name}{{{labels}}} {delivered}");
        }
        for (output, n) in outputs {
            let output = output.as_deref().map_or(DEFAULT_OUTPUT.into(), escape);
            let _ = writeln!(out, "{name}{{{labels},output=\"{output}\"}} {n}");
        }
    }

    let name = "sluice_component_errors_total";
    let _ = writeln!(
        out,
        "# HELP {name} Errors a component met, by error_type and stage (receiving, processing, sending).\n# TYPE {name} counter"
    );
    for c in components {
        let labels = component_labels(c);
        for (error_type, stage, n) in c.errors_by_kind() {
            let _ = writeln!(
                out,
                "{name}{{{labels},error_type=\"{}\",stage=\"{}\"}} {n}",
                error_type.as_str(),
                stage.as_str()
            );
        }
    }

    let name = "sluice_component_discarded_events_total";
    let _ = writeln!(
        out,
        "# HELP {name} Events dropped: intentional=\"true\" on purpose (filtered, sampled, throttled, deduplicated, or sent to an output nobody reads), intentional=\"false\" by overload (a full buffer with when_full: drop_newest).\n# TYPE {name} counter"
    );
    for c in components {
        let labels = component_labels(c);
        let (intended, unintended) = c.discarded_split();
        let _ = writeln!(
            out,
            "{name}{{{labels},intentional=\"true\"}} {intended}\n{name}{{{labels},intentional=\"false\"}} {unintended}"
        );
    }
}

/// Bytes from and to the outside: received by sources, sent by sinks.
fn render_byte_counters(out: &mut String, components: &[Arc<ComponentMetrics>]) {
    type Read = fn(&ComponentMetrics) -> u64;
    let counters: [(&str, &str, ComponentKind, Read); 2] = [
        (
            "sluice_component_received_bytes_total",
            "Bytes a source read, as they came: request bodies before decompression, file and stdin lines, Kafka payloads, Forward messages, status-feed bodies (the generator, api and postgres sources count none).",
            ComponentKind::Source,
            |c| c.received_bytes.load(Ordering::Relaxed),
        ),
        (
            "sluice_component_sent_bytes_total",
            "Bytes a sink delivered: HTTP request bodies as sent, Kafka keys and payloads, file and console lines, Forward messages (the postgres, prometheus_exporter and blackhole sinks count none).",
            ComponentKind::Sink,
            |c| c.sent_bytes.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, kind, read) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for c in components.iter().filter(|c| c.kind == kind) {
            let _ = writeln!(out, "{name}{{{}}} {}", component_labels(c), read(c));
        }
    }
}

/// The `output` label of a component's default output (Vector's name for it).
const DEFAULT_OUTPUT: &str = "_default";

fn component_labels(c: &ComponentMetrics) -> String {
    format!(
        "component_id=\"{}\",component_kind=\"{}\",component_type=\"{}\"",
        escape(&c.id),
        c.kind.as_str(),
        c.type_name
    )
}

/// A histogram with no labels but its buckets.
fn write_histogram(out: &mut String, name: &str, help: &str, recorder: &LatencyRecorder) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    write_buckets(out, name, "", recorder);
}

/// The `_bucket`, `_sum` and `_count` lines of one histogram series. Bucket counts come
/// from the hdrhistogram, whose 1 % precision is far finer than the buckets.
fn write_buckets(out: &mut String, name: &str, labels: &str, recorder: &LatencyRecorder) {
    let buckets = recorder.buckets(&LATENCY_BUCKETS);
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, n) in LATENCY_BUCKETS.iter().zip(&buckets.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
    }
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}\n{name}_sum{braces} {sum}\n{name}_count{braces} {count}",
        count = buckets.count,
        sum = buckets.sum_seconds
    );
}

/// Upper bounds in seconds: from 100 µs (an event passed through in memory) to 5 min (a
/// sink retrying through an outage).
const LATENCY_BUCKETS: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];

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
        assert!(text.contains("sluice_end_to_end_latency_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("sluice_end_to_end_latency_seconds_bucket{le=\"0.0025\"} 10\n"));
        assert!(text.contains("sluice_end_to_end_latency_seconds_bucket{le=\"+Inf\"} 10\n"));
        let labels =
            "component_id=\"in\\\"x\",component_kind=\"source\",component_type=\"generator\"";
        assert!(
            text.contains(&format!(
                "sluice_component_latency_seconds_bucket{{{labels},le=\"+Inf\"}} 0\n"
            )),
            "{text}"
        );
        c.latency().record(Duration::from_millis(3), 4);
        let text = t.render_prometheus();
        assert!(
            text.contains(&format!(
                "sluice_component_latency_seconds_count{{{labels}}} 4\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "sluice_component_latency_seconds_bucket{{{labels},le=\"0.0025\"}} 0\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "sluice_component_latency_seconds_bucket{{{labels},le=\"0.005\"}} 4\n"
            )),
            "{text}"
        );
        assert_eq!(text.matches("summary").count(), 0, "{text}");
    }

    #[test]
    fn labels_errors_discards_outputs_and_bytes() {
        use crate::telemetry::{ErrorType, Stage};
        let t = Telemetry::new();
        let route = t.component("route", ComponentKind::Transform, "route");
        let labels = "component_id=\"route\",component_kind=\"transform\",component_type=\"route\"";
        // Sent events are split by output once an output counts them.
        route.add_sent(5);
        route
            .output_counter(None)
            .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        route
            .output_counter(Some("pages"))
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        route.add_errors(2, ErrorType::Script, Stage::Processing);
        route.add_discarded(4);
        route.add_discarded_unintended(1);
        let sink = t.component("out", ComponentKind::Sink, "http");
        sink.add_sent(7);
        // Two of the seven went to its dead-letter output.
        sink.output_counter(Some("dead_letter"))
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        sink.add_sent_bytes(700);
        let source = t.component("in", ComponentKind::Source, "webhook");
        source.add_received_bytes(300);
        let text = t.render_prometheus();
        for line in [
            format!("sluice_component_sent_events_total{{{labels},output=\"_default\"}} 3"),
            format!("sluice_component_sent_events_total{{{labels},output=\"pages\"}} 2"),
            format!("sluice_component_errors_total{{{labels},error_type=\"script_failed\",stage=\"processing\"}} 2"),
            format!("sluice_component_discarded_events_total{{{labels},intentional=\"true\"}} 4"),
            format!("sluice_component_discarded_events_total{{{labels},intentional=\"false\"}} 1"),
            "sluice_component_sent_events_total{component_id=\"out\",component_kind=\"sink\",component_type=\"http\"} 5".into(),
            "sluice_component_sent_events_total{component_id=\"out\",component_kind=\"sink\",component_type=\"http\",output=\"dead_letter\"} 2".into(),
            "sluice_component_sent_bytes_total{component_id=\"out\",component_kind=\"sink\",component_type=\"http\"} 700".into(),
            "sluice_component_received_bytes_total{component_id=\"in\",component_kind=\"source\",component_type=\"webhook\"} 300".into(),
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} missing from\n{text}");
        }
        // No errors yet: no error series for that component.
        assert!(
            !text.contains("sluice_component_errors_total{component_id=\"out\""),
            "{text}"
        );
        // Bytes are a source's or a sink's business only.
        assert!(
            !text.contains(&format!("sluice_component_sent_bytes_total{{{labels}}}")),
            "{text}"
        );
        assert_eq!(route.errors.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
