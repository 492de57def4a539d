//! Prometheus text exposition. Written by hand because the values come from our own
//! atomics and hdrhistograms; the format is a handful of line rules. Every HELP and TYPE
//! line comes from the catalogue ([`super::catalog`]).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use std::sync::Arc;

use super::catalog::family;
use super::{ComponentKind, ComponentMetrics, LatencyRecorder, Telemetry};

pub(super) fn render(t: &Telemetry) -> String {
    let components = t.components();
    let mut out = String::with_capacity(512 + components.len() * 600);
    {
        use crate::build_info::{COMMIT, DATE, TARGET, VERSION};
        family(&mut out, "sluice_build_info");
        let _ = writeln!(
            out,
            "sluice_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\",target=\"{TARGET}\",build_date=\"{DATE}\"}} 1"
        );
    }

    render_event_counters(&mut out, &components);
    render_byte_counters(&mut out, &components);

    // Each family's samples follow its own TYPE line: the format requires one group per
    // metric.
    type Fill = fn((usize, usize)) -> usize;
    let buffers: [(&str, Fill); 2] = [
        ("sluice_buffer_events", |(len, _)| len),
        ("sluice_buffer_max_events", |(_, cap)| cap),
    ];
    for (name, read) in buffers {
        family(&mut out, name);
        for c in &components {
            if let Some(fill) = c.buffered_events() {
                let _ = writeln!(out, "{name}{{{}}} {}", component_labels(c), read(fill));
            }
        }
    }

    // Component-specific counters and gauges, one HELP/TYPE block per name.
    let mut labeled: indexmap::IndexMap<&str, Vec<String>> = indexmap::IndexMap::new();
    for c in &components {
        let counters = c.labeled_counters();
        let gauges = c.labeled_gauges();
        let samples = counters
            .iter()
            .map(|m| (m.name, &m.labels, m.get() as f64))
            .chain(gauges.iter().map(|m| (m.name, &m.labels, m.get())));
        for (name, labels, value) in samples {
            let mut line = format!("{name}{{{}", component_labels(c));
            for (k, v) in labels {
                let _ = write!(line, ",{k}=\"{}\"", escape(v));
            }
            let _ = write!(line, "}} {value}");
            labeled.entry(name).or_default().push(line);
        }
    }
    for (name, lines) in labeled {
        family(&mut out, name);
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }

    let name = "sluice_component_latency_seconds";
    family(&mut out, name);
    for c in &components {
        write_buckets(&mut out, name, &component_labels(c), c.latency());
    }

    let name = "sluice_end_to_end_latency_seconds";
    family(&mut out, name);
    write_buckets(&mut out, name, "", t.latency());
    for (name, value) in [
        ("sluice_config_reloads_total", &t.reloads),
        ("sluice_config_reload_failures_total", &t.reload_failures),
    ] {
        family(&mut out, name);
        let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
    }
    let name = "sluice_config_reload_duration_seconds";
    family(&mut out, name);
    write_buckets(&mut out, name, "", &t.reload_duration);
    if let Some((used, limit)) = t.memory() {
        let share = if limit == 0 {
            0.0
        } else {
            used as f64 / limit as f64
        };
        for (name, value) in [
            ("sluice_memory_limit_bytes", limit as f64),
            ("sluice_memory_used_bytes", used as f64),
            ("sluice_memory_used_ratio", share),
        ] {
            family(&mut out, name);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    super::process::render(&mut out);
    out
}

/// The counters every component has. Series with a label that depends on what happened
/// (`error_type`, `stage`) appear at their first count.
fn render_event_counters(out: &mut String, components: &[Arc<ComponentMetrics>]) {
    let name = "sluice_component_received_events_total";
    family(out, name);
    for c in components {
        let _ = writeln!(
            out,
            "{name}{{{}}} {}",
            component_labels(c),
            c.received.load(Ordering::Relaxed)
        );
    }

    let name = "sluice_component_sent_events_total";
    family(out, name);
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
    family(out, name);
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
    family(out, name);
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
    let counters: [(&str, ComponentKind, Read); 2] = [
        (
            "sluice_component_received_bytes_total",
            ComponentKind::Source,
            |c| c.received_bytes.load(Ordering::Relaxed),
        ),
        (
            "sluice_component_sent_bytes_total",
            ComponentKind::Sink,
            |c| c.sent_bytes.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, read) in counters {
        family(out, name);
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

/// The `_bucket`, `_sum` and `_count` lines of one histogram series. Bucket counts come
/// from the hdrhistogram, whose 1 % precision is far finer than the buckets.
fn write_buckets(out: &mut String, name: &str, labels: &str, recorder: &LatencyRecorder) {
    let buckets = recorder.buckets(&super::catalog::LATENCY_BUCKETS);
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, n) in super::catalog::LATENCY_BUCKETS
        .iter()
        .zip(&buckets.cumulative)
    {
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
        let r = c.counter(
            "sluice_webhook_rejected_requests_total",
            &[("route", "/a"), ("reason", "too_large")],
        );
        r.add(2);
        c.counter(
            "sluice_webhook_rejected_requests_total",
            &[("route", "/a"), ("reason", "too_large")],
        )
        .add(1);
        let text = t.render_prometheus();
        assert!(text.contains(
            "sluice_webhook_rejected_requests_total{component_id=\"in\\\"x\",component_kind=\"source\",component_type=\"generator\",route=\"/a\",reason=\"too_large\"} 3"
        ), "{text}");
        assert_eq!(
            text.matches("# TYPE sluice_webhook_rejected_requests_total counter")
                .count(),
            1
        );
        c.gauge("sluice_status_feed_items", &[("feed", "aws")])
            .set(1.5);
        c.gauge("sluice_status_feed_items", &[("feed", "gcp")])
            .set(1_700_000_000.0);
        let text = t.render_prometheus();
        assert_eq!(
            text.matches("# TYPE sluice_status_feed_items gauge")
                .count(),
            1
        );
        assert!(text.contains(
            "sluice_status_feed_items{component_id=\"in\\\"x\",component_kind=\"source\",component_type=\"generator\",feed=\"aws\"} 1.5"
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
