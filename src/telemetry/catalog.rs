//! Every metric sluice exports: its name, type, labels and meaning. The one place their
//! descriptions live: `/metrics` takes each HELP line from here, and `sluice docs`
//! renders the metrics reference page from it.

use std::fmt::Write;

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric.
#[derive(Debug)]
pub(crate) struct Metric {
    pub(crate) name: &'static str,
    pub(crate) kind: Type,
    /// Which components export it (`every component`, `sources`, a type name), or
    /// `process` for process-wide metrics without component labels.
    pub(crate) from: &'static str,
    /// Labels beyond `component_id`, `component_kind` and `component_type`.
    pub(crate) labels: &'static [&'static str],
    pub(crate) help: &'static str,
}

const fn m(
    name: &'static str,
    kind: Type,
    from: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        from,
        labels,
        help,
    }
}

use Type::{Counter, Gauge, Histogram};

/// Every metric, grouped as the reference page shows them.
pub(crate) const ALL: &[Metric] = &[
    // Every component.
    m(
        "sluice_component_received_events_total",
        Counter,
        "every component",
        &[],
        "Events a component took in.",
    ),
    m(
        "sluice_component_sent_events_total",
        Counter,
        "every component",
        &["output"],
        "Events a component passed on, by output; a sink's line without the output label counts what it delivered, and its dead_letter output what it gave up on.",
    ),
    m(
        "sluice_component_errors_total",
        Counter,
        "every component",
        &["error_type", "stage"],
        "Errors a component met, by error_type and stage (receiving, processing, sending). A series appears at its first error.",
    ),
    m(
        "sluice_component_discarded_events_total",
        Counter,
        "every component",
        &["intentional"],
        "Events dropped: intentional=\"true\" on purpose (filtered, sampled, throttled, deduplicated, or sent to an output nobody reads), intentional=\"false\" by overload (a full buffer with when_full: drop_newest) or by a sink that gave up on them with nothing reading its dead_letter output (the source is told they failed).",
    ),
    m(
        "sluice_component_received_bytes_total",
        Counter,
        "sources",
        &[],
        "Bytes a source read, as they came: request bodies before decompression, file and stdin lines, Kafka payloads, Forward messages, status-feed bodies (the generator, api and postgres sources count none).",
    ),
    m(
        "sluice_component_sent_bytes_total",
        Counter,
        "sinks",
        &[],
        "Bytes a sink delivered: HTTP request bodies as sent, Kafka keys and payloads, file and console lines, Forward messages (the postgres, prometheus_exporter and blackhole sinks count none).",
    ),
    m(
        "sluice_component_latency_seconds",
        Histogram,
        "every component",
        &[],
        "Age of events (since their source received them) when they leave a component: passed on by a source or transform, delivered by a sink.",
    ),
    m(
        "sluice_buffer_events",
        Gauge,
        "transforms and sinks",
        &[],
        "Events waiting in a component's input buffer.",
    ),
    m(
        "sluice_buffer_max_events",
        Gauge,
        "transforms and sinks",
        &[],
        "Capacity of a component's input buffer.",
    ),
    m(
        "sluice_buffer_damaged_records_total",
        Counter,
        "sinks with a disk buffer",
        &[],
        "Records of a disk buffer lost to damage (bad checksum, torn write) and skipped.",
    ),
    // Sources.
    m(
        "sluice_webhook_accepted_events_total",
        Counter,
        "webhook",
        &["route"],
        "Events a webhook route accepted into the pipeline.",
    ),
    m(
        "sluice_webhook_rejected_requests_total",
        Counter,
        "webhook",
        &["route", "reason"],
        "Requests a webhook route turned away, by reason.",
    ),
    m(
        "sluice_webhook_duplicate_messages_total",
        Counter,
        "webhook",
        &["route"],
        "SNS messages a webhook route dropped because it had accepted them already.",
    ),
    m(
        "sluice_file_truncated_lines_total",
        Counter,
        "file",
        &[],
        "Lines longer than max_line_bytes, cut to it.",
    ),
    m(
        "sluice_file_invalid_utf8_lines_total",
        Counter,
        "file",
        &[],
        "Lines that were not valid UTF-8 (invalid bytes replaced by U+FFFD).",
    ),
    m(
        "sluice_file_json_errors_total",
        Counter,
        "file",
        &[],
        "Lines that did not parse as JSON (kept as message).",
    ),
    m(
        "sluice_file_format_errors_total",
        Counter,
        "file",
        &[],
        "Lines in neither shape of `format: cri` or `docker` (kept whole as message).",
    ),
    m(
        "sluice_file_files_added_total",
        Counter,
        "file",
        &[],
        "Files the source started watching.",
    ),
    m(
        "sluice_file_files_rotated_total",
        Counter,
        "file",
        &[],
        "Watched files renamed or deleted (rotation).",
    ),
    m(
        "sluice_file_files_truncated_total",
        Counter,
        "file",
        &[],
        "Watched files truncated or rewritten in place, read again from the start.",
    ),
    m(
        "sluice_file_files_released_total",
        Counter,
        "file",
        &[],
        "Rotated files read to their end and released.",
    ),
    m(
        "sluice_file_files_removed_total",
        Counter,
        "file",
        &[],
        "Files deleted by remove_after once read and delivered.",
    ),
    m(
        "sluice_kafka_commit_errors_total",
        Counter,
        "kafka (source)",
        &[],
        "Offset commits the broker refused or that failed.",
    ),
    m(
        "sluice_kafka_rewinds_total",
        Counter,
        "kafka (source)",
        &[],
        "Partitions read again from an offset whose events errored downstream.",
    ),
    m(
        "sluice_fluent_connections",
        Gauge,
        "fluent (source)",
        &[],
        "Forward protocol connections open now.",
    ),
    m(
        "sluice_fluent_connection_errors_total",
        Counter,
        "fluent (source)",
        &["reason"],
        "Forward protocol connections closed by sluice, by reason.",
    ),
    m(
        "sluice_status_feed_polls_total",
        Counter,
        "status_feed",
        &["feed", "result"],
        "Polls of a status feed by result: updated (a body was read), not_modified (304) or error.",
    ),
    m(
        "sluice_status_feed_errors_total",
        Counter,
        "status_feed",
        &["feed", "reason"],
        "Failed polls of a status feed by reason.",
    ),
    m(
        "sluice_status_feed_last_success_timestamp_seconds",
        Gauge,
        "status_feed",
        &["feed"],
        "When a status feed was last polled successfully (Unix time).",
    ),
    m(
        "sluice_status_feed_consecutive_errors",
        Gauge,
        "status_feed",
        &["feed"],
        "Failed polls of a status feed since its last success.",
    ),
    m(
        "sluice_status_feed_items",
        Gauge,
        "status_feed",
        &["feed"],
        "Entries in the last document read from a status feed.",
    ),
    m(
        "sluice_status_feed_open_incidents",
        Gauge,
        "status_feed",
        &["feed"],
        "Incidents of a status feed announced as firing and not resolved.",
    ),
    m(
        "sluice_backfill_rows_expected",
        Gauge,
        "postgres (source)",
        &[],
        "Rows a backfill has to read (counted at its start, including rows read before a restart).",
    ),
    m(
        "sluice_backfill_rows_done",
        Gauge,
        "postgres (source)",
        &[],
        "Rows a backfill has read and seen delivered.",
    ),
    // Transforms.
    m(
        "sluice_alert_rule_notifications_total",
        Counter,
        "alert_rule",
        &["rule", "status"],
        "Alert notifications sent, by rule and status.",
    ),
    m(
        "sluice_alert_rule_series_dropped_total",
        Counter,
        "alert_rule",
        &["rule"],
        "Samples dropped because their rule already holds max_series label sets.",
    ),
    m(
        "sluice_alert_rule_firing",
        Gauge,
        "alert_rule",
        &["rule"],
        "Alerts currently firing, by rule.",
    ),
    m(
        "sluice_alertmanager_route_muted_total",
        Counter,
        "alertmanager_route",
        &["reason"],
        "Alerts an alertmanager_route sent to its _muted output, by reason.",
    ),
    m(
        "sluice_alertmanager_route_untracked_sources_total",
        Counter,
        "alertmanager_route",
        &[],
        "Firing alerts not remembered as inhibition sources because max_sources was reached.",
    ),
    m(
        "sluice_incident_alerts_total",
        Counter,
        "incident",
        &["outcome"],
        "Alerts taken in by the incident transform, by what they did.",
    ),
    m(
        "sluice_incident_notifications_total",
        Counter,
        "incident",
        &["action"],
        "Incident notifications sent, by action.",
    ),
    m(
        "sluice_incident_open",
        Gauge,
        "incident",
        &[],
        "Incidents open now.",
    ),
    m(
        "sluice_subscription_matched_events_total",
        Counter,
        "subscription",
        &["subscription"],
        "Events a subscription matched.",
    ),
    m(
        "sluice_subscription_auto_resolved_events_total",
        Counter,
        "subscription",
        &["subscription"],
        "Resolved events emitted because a firing alert was not resolved in time.",
    ),
    m(
        "sluice_subscription_timers_dropped_total",
        Counter,
        "subscription",
        &[],
        "Auto-resolve timers dropped because `max_pending` was reached.",
    ),
    m(
        "sluice_subscription_file_reloads_total",
        Counter,
        "subscription",
        &["result"],
        "Changes to a subscription file, by what came of them.",
    ),
    // Sinks.
    m(
        "sluice_prometheus_exporter_dropped_series_total",
        Counter,
        "prometheus_exporter",
        &[],
        "New series a prometheus_exporter sink dropped at its max_series.",
    ),
    m(
        "sluice_prometheus_exporter_skipped_total",
        Counter,
        "prometheus_exporter",
        &[],
        "Events a metric of a prometheus_exporter sink could not read (a field missing or not a number).",
    ),
    // The process.
    m(
        "sluice_build_info",
        Gauge,
        "process",
        &["version", "commit", "target", "build_date"],
        "The running binary: version, git commit, target and build date (always 1).",
    ),
    m(
        "sluice_end_to_end_latency_seconds",
        Histogram,
        "process",
        &[],
        "Time from a source receiving a batch to its last copy being settled.",
    ),
    m(
        "sluice_config_reloads_total",
        Counter,
        "process",
        &[],
        "Pipeline reloads applied.",
    ),
    m(
        "sluice_config_reload_failures_total",
        Counter,
        "process",
        &[],
        "Pipeline reloads refused (invalid file or a component that failed to build); the running pipeline was kept.",
    ),
    m(
        "sluice_config_reload_duration_seconds",
        Histogram,
        "process",
        &[],
        "Time to load, validate and apply a pipeline, including the hand-over of replaced components.",
    ),
    m(
        "sluice_memory_limit_bytes",
        Gauge,
        "process",
        &[],
        "The memory_limit setting: bytes that in-memory buffers and decoding may hold (exported when it is set).",
    ),
    m(
        "sluice_memory_used_bytes",
        Gauge,
        "process",
        &[],
        "Bytes of memory_limit in use.",
    ),
    m(
        "sluice_memory_used_ratio",
        Gauge,
        "process",
        &[],
        "The share of memory_limit in use (0 to 1).",
    ),
    m(
        "process_cpu_seconds_total",
        Counter,
        "process",
        &[],
        "Total user and system CPU time spent in seconds.",
    ),
    m(
        "process_resident_memory_bytes",
        Gauge,
        "process",
        &[],
        "Resident memory size in bytes.",
    ),
    m(
        "process_virtual_memory_bytes",
        Gauge,
        "process",
        &[],
        "Virtual memory size in bytes.",
    ),
    m(
        "process_start_time_seconds",
        Gauge,
        "process",
        &[],
        "Start time of the process since the Unix epoch in seconds.",
    ),
    m(
        "process_open_fds",
        Gauge,
        "process",
        &[],
        "Number of open file descriptors.",
    ),
    m(
        "process_max_fds",
        Gauge,
        "process",
        &[],
        "Maximum number of open file descriptors.",
    ),
];

/// In debug builds (the tests), refuses a metric the catalogue lacks or whose labels
/// differ from the catalogue's: the reference page would be wrong.
pub(crate) fn debug_check(name: &str, labels: &[(&str, &str)]) {
    if cfg!(debug_assertions) {
        let m = find(name).unwrap_or_else(|| panic!("{name} is not in telemetry::catalog"));
        let keys: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys, m.labels,
            "the labels of {name} differ from the catalogue's"
        );
    }
}

/// The HELP and TYPE lines of `name`, from the catalogue.
pub(super) fn family(out: &mut String, name: &str) {
    let (kind, help) = find(name).map_or(("untyped", ""), |m| (m.kind.as_str(), m.help));
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The metric called `name`.
pub(crate) fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().find(|m| m.name == name)
}

/// Upper bounds in seconds: from 100 µs (an event passed through in memory) to 5 min (a
/// sink retrying through an outage).
pub(crate) const LATENCY_BUCKETS: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric name written in the source is catalogued, and every catalogued name
    /// is written somewhere else than here.
    #[test]
    fn the_catalogue_matches_the_source() {
        let literal = regex::Regex::new(r#""((?:sluice|process)_[a-z0-9_]+)""#).expect("regex");
        let mut used = std::collections::BTreeSet::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("telemetry/catalog.rs")
                {
                    let text = std::fs::read_to_string(&path).expect("read");
                    used.extend(literal.captures_iter(&text).map(|c| c[1].to_owned()));
                }
            }
        }
        // Strings that are not metrics.
        // A field name of the load harness, not a metric.
        assert!(
            used.remove("sluice_bench"),
            "sluice_bench is no longer used: drop it here"
        );
        let missing: Vec<&String> = used.iter().filter(|n| find(n).is_none()).collect();
        assert!(
            missing.is_empty(),
            "metrics missing from the catalogue: {missing:?}"
        );
        let stale: Vec<&str> = ALL
            .iter()
            .map(|m| m.name)
            .filter(|n| !used.contains(*n))
            .collect();
        assert!(stale.is_empty(), "catalogued but never exported: {stale:?}");
        let mut names: Vec<&str> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a metric is catalogued twice");
    }
}
