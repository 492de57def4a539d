//! The Prometheus text format (version 0.0.4) of an exporter's series, in the order the
//! metrics are configured and, within one, sorted by label values, so scrapes are
//! stable and diffable.

use std::fmt::Write;

use super::MetricKind;
use super::series::{Series, State};

pub(super) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) fn render(state: &State) -> String {
    let mut out = String::new();
    for metric in &state.metrics.0 {
        let Some(family) = state.families.get(&metric.identity) else {
            continue;
        };
        let kind = match metric.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge | MetricKind::ActiveAlerts => "gauge",
            MetricKind::Histogram => "histogram",
        };
        let name = &metric.name;
        let _ = writeln!(out, "# HELP {name} {}", escape_help(&metric.help));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let mut series: Vec<(&Vec<String>, &Series)> = family.series.iter().collect();
        series.sort_by(|a, b| a.0.cmp(b.0));
        for (values, s) in series {
            let labels = labels(&metric.label_names, values);
            if metric.kind != MetricKind::Histogram {
                let _ = writeln!(out, "{name}{} {}", braces(&labels), number(s.value));
                continue;
            }
            let mut cumulative = 0;
            let bounds = metric.buckets.iter().map(|b| number(*b));
            for (bound, count) in bounds.chain(["+Inf".to_owned()]).zip(&s.buckets) {
                cumulative += count;
                let le = join(&labels, &format!("le=\"{bound}\""));
                let _ = writeln!(out, "{name}_bucket{{{le}}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_sum{} {}", braces(&labels), number(s.sum));
            let _ = writeln!(out, "{name}_count{} {}", braces(&labels), s.count);
        }
    }
    out
}

/// `a="x",b="y"` with the values escaped.
fn labels(names: &[String], values: &[String]) -> String {
    let mut out = String::new();
    for (name, value) in names.iter().zip(values) {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

fn join(labels: &str, more: &str) -> String {
    if labels.is_empty() {
        more.to_owned()
    } else {
        format!("{labels},{more}")
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as Prometheus writes it (`+Inf`, `-Inf`, `NaN`; integers without a
/// fraction).
pub(super) fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v != 0.0 && !(1e-4..1e15).contains(&v.abs()) {
        // Without an exponent, 1e-320 would print as 330 digits.
        format!("{v:e}")
    } else {
        v.to_string()
    }
}
