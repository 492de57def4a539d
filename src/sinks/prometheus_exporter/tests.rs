use std::time::{Duration, Instant};

use super::exposition::render;
use super::series::{Metrics, Outcome, State};
use super::*;
use crate::event::Event;

fn metrics(yaml: serde_json::Value) -> Result<Metrics, String> {
    let configs: Vec<MetricConfig> = serde_json::from_value(yaml).map_err(|e| e.to_string())?;
    Metrics::compile(&configs).map_err(|e| e.0)
}

fn state(yaml: serde_json::Value, max_series: usize) -> State {
    let mut s = State::default();
    s.configure(metrics(yaml).expect("valid"), max_series, None);
    s
}

fn event(json: serde_json::Value) -> Event {
    let value: vrl::value::Value = serde_json::from_value(json).expect("value");
    Event::new(
        value,
        crate::event::SourceId::intern("test"),
        chrono::Utc::now(),
    )
}

fn record(s: &mut State, events: &[serde_json::Value]) -> Outcome {
    let now = Instant::now();
    let mut sum = Outcome::default();
    for e in events {
        sum += s.record(&event(e.clone()), now);
    }
    sum
}

#[test]
fn counters_gauges_and_histograms_are_rendered_as_prometheus_reads_them() {
    let mut s = state(
        serde_json::json!([
            {"name": "monitoring_total_events", "type": "counter",
             "help": "Events by source.", "labels": {"source": "{{ source }}"}},
            {"name": "bytes_total", "type": "counter", "field": "bytes"},
            {"name": "queue_depth", "type": "gauge", "field": "depth",
             "labels": {"queue": "{{ queue }}"}},
            {"name": "latency_seconds", "type": "histogram", "field": "took",
             "buckets": [0.1, 1.0]},
        ]),
        100,
    );
    let outcome = record(
        &mut s,
        &[
            serde_json::json!({"source": "grafana", "bytes": 10, "depth": 3, "queue": "a", "took": 0.05}),
            serde_json::json!({"source": "grafana", "bytes": 2.5, "depth": 7, "queue": "a", "took": 0.5}),
            serde_json::json!({"source": "aws", "depth": 1, "queue": "b\"x\\\n", "took": 30}),
        ],
    );
    // The third event has no `bytes`: only that metric skips it.
    assert_eq!(
        outcome,
        Outcome {
            dropped: 0,
            skipped: 1
        }
    );
    assert_eq!(
        render(&s),
        "# HELP monitoring_total_events Events by source.\n\
         # TYPE monitoring_total_events counter\n\
         monitoring_total_events{source=\"aws\"} 1\n\
         monitoring_total_events{source=\"grafana\"} 2\n\
         # HELP bytes_total From sluice events.\n\
         # TYPE bytes_total counter\n\
         bytes_total 12.5\n\
         # HELP queue_depth From sluice events.\n\
         # TYPE queue_depth gauge\n\
         queue_depth{queue=\"a\"} 7\n\
         queue_depth{queue=\"b\\\"x\\\\\\n\"} 1\n\
         # HELP latency_seconds From sluice events.\n\
         # TYPE latency_seconds histogram\n\
         latency_seconds_bucket{le=\"0.1\"} 1\n\
         latency_seconds_bucket{le=\"1\"} 2\n\
         latency_seconds_bucket{le=\"+Inf\"} 3\n\
         latency_seconds_sum 30.55\n\
         latency_seconds_count 3\n"
    );
}

#[test]
fn active_alerts_count_what_fires_now_and_follow_an_alert_across_labels() {
    let mut s = state(
        serde_json::json!([{"name": "monitoring_active_alerts", "type": "active_alerts",
                            "labels": {"severity": "{{ severity }}"}}]),
        100,
    );
    let alert = |fp: &str, status: &str, severity: &str| serde_json::json!({"fingerprint": fp, "status": status, "severity": severity});
    record(
        &mut s,
        &[
            alert("a", "firing", "high"),
            alert("a", "firing", "high"), // a repeat counts once
            alert("b", "firing", "high"),
            alert("c", "firing", "low"),
            alert("c", "firing", "critical"), // escalated: it moves
            alert("b", "resolved", "high"),
            alert("never-fired", "resolved", "high"),
        ],
    );
    let text = render(&s);
    assert!(
        text.contains("# TYPE monitoring_active_alerts gauge\n"),
        "{text}"
    );
    assert!(
        text.contains("monitoring_active_alerts{severity=\"high\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("monitoring_active_alerts{severity=\"critical\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("monitoring_active_alerts{severity=\"low\"} 0\n"),
        "{text}"
    );
    let odd = record(
        &mut s,
        &[serde_json::json!({"fingerprint": "d", "severity": "x"})],
    );
    assert_eq!(odd.skipped, 1, "no status: not an alert");
}

#[test]
fn hostile_label_values_cannot_grow_the_series_past_max_series() {
    let mut s = state(
        serde_json::json!([{"name": "hits_total", "type": "counter", "labels": {"path": "{{ path }}"}}]),
        3,
    );
    let events: Vec<_> = (0..100)
        .map(|i| serde_json::json!({"path": format!("/p{i}")}))
        .collect();
    let outcome = record(&mut s, &events);
    assert_eq!(outcome.dropped, 97);
    assert_eq!(render(&s).matches("hits_total{").count(), 3);
    // Series already held still count.
    record(&mut s, &[serde_json::json!({"path": "/p0"})]);
    assert!(render(&s).contains("hits_total{path=\"/p0\"} 2\n"));
    // A label value longer than the limit is skipped, not truncated into another series.
    let long = "x".repeat(series::MAX_LABEL_VALUE_BYTES + 1);
    let outcome = record(&mut s, &[serde_json::json!({ "path": long })]);
    assert_eq!(outcome.skipped, 1);
}

#[test]
fn a_reload_keeps_the_series_of_metrics_it_keeps() {
    let mut s = state(
        serde_json::json!([
            {"name": "a_total", "type": "counter"},
            {"name": "b_total", "type": "counter"},
        ]),
        100,
    );
    record(&mut s, &[serde_json::json!({}), serde_json::json!({})]);
    let reloaded = metrics(serde_json::json!([
        {"name": "a_total", "type": "counter", "help": "Now documented."},
        {"name": "b_total", "type": "counter", "labels": {"x": "{{ x }}"}},
    ]))
    .expect("valid");
    s.configure(reloaded, 100, None);
    record(&mut s, &[serde_json::json!({"x": "1"})]);
    let text = render(&s);
    assert!(text.contains("a_total 3\n"), "{text}");
    // b's labels changed: it is another metric now, started afresh.
    assert!(text.contains("b_total{x=\"1\"} 1\n"), "{text}");
    assert!(!text.contains("b_total 2"), "{text}");
}

#[test]
fn series_expire_unless_an_alert_of_them_still_fires() {
    let mut s = State::default();
    let m = metrics(serde_json::json!([
        {"name": "seen_total", "type": "counter", "labels": {"k": "{{ k }}"}},
        {"name": "active", "type": "active_alerts"},
    ]))
    .expect("valid");
    s.configure(m, 100, Some(Duration::from_secs(60)));
    let t0 = Instant::now();
    s.record(
        &event(serde_json::json!({"k": "old", "fingerprint": "f", "status": "firing"})),
        t0,
    );
    s.record(
        &event(serde_json::json!({"k": "new"})),
        t0 + Duration::from_secs(50),
    );
    s.expire(t0 + Duration::from_secs(61));
    let text = render(&s);
    assert!(!text.contains("k=\"old\""), "{text}");
    assert!(text.contains("seen_total{k=\"new\"} 1\n"), "{text}");
    assert!(
        text.contains("active 1\n"),
        "the firing alert stays: {text}"
    );
}

#[test]
fn bad_definitions_are_validate_errors_naming_the_metric() {
    for (json, says) in [
        (serde_json::json!([]), "at least one metric"),
        (
            serde_json::json!([{"name": "9x", "type": "counter"}]),
            "metric `9x`: a name is",
        ),
        (
            serde_json::json!([{"name": "g", "type": "gauge"}]),
            "needs `field`",
        ),
        (
            serde_json::json!([{"name": "a", "type": "active_alerts", "field": "x"}]),
            "takes no `field`",
        ),
        (
            serde_json::json!([{"name": "h", "type": "histogram", "field": "x", "buckets": [1, 0.5]}]),
            "ascending",
        ),
        (
            serde_json::json!([{"name": "h", "type": "histogram", "field": "x", "labels": {"le": "1"}}]),
            "label `le`",
        ),
        (
            serde_json::json!([{"name": "c", "type": "counter", "labels": {"__x": "1"}}]),
            "label `__x`",
        ),
        (
            serde_json::json!([{"name": "c", "type": "counter"}, {"name": "c", "type": "gauge", "field": "x"}]),
            "written by another metric too",
        ),
        (
            serde_json::json!([{"name": "c", "type": "counter", "key": "{{ id }}"}]),
            "`key` is for `active_alerts` only",
        ),
    ] {
        let err = metrics(json.clone()).expect_err("refused");
        assert!(err.contains(says), "{json}: {err}");
    }
    let config = |auth: serde_json::Value| -> PrometheusExporterConfig {
        serde_json::from_value(serde_json::json!({
            "address": "127.0.0.1:9598",
            "metrics": [{"name": "c_total", "type": "counter"}],
            "auth": auth,
        }))
        .expect("config")
    };
    let err = config(serde_json::json!({"bearer": " "}))
        .check()
        .expect_err("empty")
        .0;
    assert!(err.contains("empty secret"), "{err}");
    let err = config(serde_json::json!({"basic": {"user": "p", "password": ""}}))
        .check()
        .expect_err("empty")
        .0;
    assert!(err.contains("non-empty `password`"), "{err}");
    assert!(
        config(serde_json::json!({"bearer": "t0k3n"}))
            .check()
            .is_ok()
    );
}

#[test]
fn a_noisy_metric_cannot_take_the_room_of_another() {
    let mut s = state(
        serde_json::json!([
            {"name": "events_total", "type": "counter", "labels": {"source": "{{ source }}"}},
            {"name": "active", "type": "active_alerts", "labels": {"severity": "{{ severity }}"}},
        ]),
        10,
    );
    let junk: Vec<_> = (0..100)
        .map(|i| serde_json::json!({"source": format!("junk{i}")}))
        .collect();
    assert_eq!(record(&mut s, &junk).dropped, 90);
    let real = serde_json::json!({"source": "x", "fingerprint": "f", "status": "firing", "severity": "critical"});
    record(&mut s, &[real]);
    assert!(render(&s).contains("active{severity=\"critical\"} 1\n"));
}

#[test]
fn label_bytes_and_keys_are_bounded_per_metric() {
    let mut s = state(
        serde_json::json!([
            {"name": "a_total", "type": "counter", "labels": {"v": "{{ v }}"}},
            {"name": "open", "type": "active_alerts"},
        ]),
        1_000_000,
    );
    // 1000-byte values: a bit over a thousand fit in the metric's 1 MiB.
    let events: Vec<_> = (0..1100)
        .map(|i| serde_json::json!({"v": format!("{i:01000}")}))
        .collect();
    let outcome = record(&mut s, &events);
    assert_eq!(
        outcome.dropped as usize,
        1100 - series::MAX_BYTES_PER_METRIC / 1000
    );
    // An alert key longer than a label value may be is skipped.
    let long = "k".repeat(series::MAX_LABEL_VALUE_BYTES + 1);
    let outcome = record(
        &mut s,
        &[serde_json::json!({"fingerprint": long, "status": "firing"})],
    );
    assert_eq!(
        outcome.skipped, 2,
        "the counter lacks `v`, the key is too long"
    );
}

#[test]
fn totals_do_not_overflow_and_a_changed_key_starts_afresh() {
    let mut s = state(
        serde_json::json!([
            {"name": "big_total", "type": "counter", "field": "n"},
            {"name": "open", "type": "active_alerts"},
        ]),
        100,
    );
    let outcome = record(
        &mut s,
        &[
            serde_json::json!({"n": 1.7e308, "fingerprint": "abc", "status": "firing"}),
            serde_json::json!({"n": 1.7e308}),
        ],
    );
    assert_eq!(
        outcome.skipped, 2,
        "the second addition, and its missing status"
    );
    let text = render(&s);
    assert!(text.contains("big_total 1.7e308\n"), "{text}");
    assert!(text.contains("open 1\n"), "{text}");
    // The key now reads another field: the alerts counted under the old key are gone.
    let reloaded = metrics(serde_json::json!([
        {"name": "big_total", "type": "counter", "field": "n"},
        {"name": "open", "type": "active_alerts", "key": "{{ alertname }}:{{ fingerprint }}"},
    ]))
    .expect("valid");
    s.configure(reloaded, 100, None);
    record(
        &mut s,
        &[serde_json::json!({"alertname": "A", "fingerprint": "abc", "status": "resolved"})],
    );
    let text = render(&s);
    assert!(
        !text.lines().any(|l| l.starts_with("open ")),
        "the old key's alert is not counted: {text}"
    );
    assert!(render(&s).contains("big_total 1.7e308\n"));
}

#[test]
fn numbers_are_written_as_prometheus_reads_them() {
    use super::exposition::number;
    assert_eq!(number(1.0), "1");
    assert_eq!(number(12.5), "12.5");
    assert_eq!(number(1e-320), "1e-320");
    assert_eq!(number(1.7e308), "1.7e308");
    assert_eq!(number(0.0), "0");
    assert_eq!(number(f64::INFINITY), "+Inf");
}
