//! One event as a Datadog log, event or series entries (JSON), within Datadog's limits.

use serde_json::{Map, Value as Json, json};
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::{BuildError, DatadogConfig, MetricKind, limit, template};
use crate::alert::field;
use crate::event::Event;
use crate::template::Template;
use crate::text::prefix_chars;

/// Bytes of `{"series":[` and `]}` around series entries.
pub(super) const SERIES_FRAMING: usize = 13;

/// The compiled options that shape entries.
pub(super) struct Shape {
    source: String,
    service: Option<Template>,
    hostname: Option<Template>,
    tags: Vec<(String, Template)>,
    title: Option<Template>,
    text: Option<Template>,
    metrics: Vec<Metric>,
}

struct Metric {
    name: Template,
    kind: MetricKind,
    field: Option<(String, OwnedValuePath)>,
    interval: Option<u64>,
    tags: Vec<(String, Template)>,
}

fn tag_templates(
    option: &str,
    tags: &indexmap::IndexMap<String, String>,
) -> Result<Vec<(String, Template)>, BuildError> {
    tags.iter()
        .map(|(name, value)| {
            if name.trim().is_empty() || name.contains([',', ':']) {
                return Err(BuildError(format!(
                    "`{option}`: the tag name {name:?} is empty or holds `,` or `:`"
                )));
            }
            Template::parse(value)
                .map(|t| (name.clone(), t))
                .map_err(|e| BuildError(format!("`{option}.{name}`: {e}")))
        })
        .collect()
}

fn valid_metric_name(name: &str) -> bool {
    name.chars().count() <= limit::METRIC_NAME
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// A rendered name as Datadog stores it: characters other than letters, digits, `_`
/// and `.` become `_` (`queue-depth` → `queue_depth`).
fn normalize_metric_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Shape {
    pub(super) fn new(config: &DatadogConfig) -> Result<Self, BuildError> {
        let mut metrics = Vec::with_capacity(config.metrics.len());
        for m in &config.metrics {
            let name = Template::parse(&m.name)
                .map_err(|e| BuildError(format!("`metrics` `{}`: {e}", m.name)))?;
            if name.is_static() && !valid_metric_name(&m.name) {
                return Err(BuildError(format!(
                    "`metrics`: {:?} is not a Datadog metric name (a letter first, then letters, digits, `_` and `.`, at most 200)",
                    m.name
                )));
            }
            if m.field.is_none() && m.kind != MetricKind::Count {
                return Err(BuildError(format!(
                    "`metrics` `{}`: a gauge or rate needs `field`",
                    m.name
                )));
            }
            if m.interval == Some(0) || (m.interval.is_some() && m.kind == MetricKind::Gauge) {
                return Err(BuildError(format!(
                    "`metrics` `{}`: `interval` is for counts and rates, above zero",
                    m.name
                )));
            }
            let field = m
                .field
                .as_ref()
                .map(|f| {
                    vrl::path::parse_value_path(f)
                        .map(|p| (f.clone(), p))
                        .map_err(|e| BuildError(format!("`metrics` `{}` `field`: {e}", m.name)))
                })
                .transpose()?;
            metrics.push(Metric {
                name,
                kind: m.kind,
                field,
                interval: m.interval,
                tags: tag_templates("metrics.tags", &m.tags)?,
            });
        }
        Ok(Self {
            source: config.source.clone(),
            service: template("service", config.service.as_ref())?,
            hostname: template("hostname", config.hostname.as_ref())?,
            tags: tag_templates("tags", &config.tags)?,
            title: template("title", config.title.as_ref())?,
            text: template("text", config.text.as_ref())?,
            metrics,
        })
    }

    fn tags<'a>(
        &'a self,
        event: &'a Event,
        extra: &'a [(String, Template)],
    ) -> impl Iterator<Item = String> + 'a {
        self.tags.iter().chain(extra).filter_map(move |(name, t)| {
            let value = t.render(event).ok()?;
            // A comma would split the tag in a log's `ddtags`.
            let value = value.replace([',', '\n', '\r'], "_");
            Some(prefix_chars(&format!("{name}:{}", value.trim()), limit::TAG).to_owned())
        })
    }

    fn hostname(&self, event: &Event) -> Option<String> {
        self.hostname
            .as_ref()
            .and_then(|t| t.render(event).ok())
            .filter(|h| !h.is_empty())
    }

    /// A log: the event's fields as attributes, with `ddsource`, `ddtags`, `hostname`,
    /// `service`, and `message` from `summary` when the event has none.
    pub(super) fn log(&self, event: &Event) -> Result<Vec<u8>, String> {
        let mut object = match event.value() {
            Value::Object(m) => m.clone(),
            other => {
                let mut m = vrl::value::ObjectMap::new();
                m.insert("message".into(), other.clone());
                m
            }
        };
        if !object.contains_key("ddsource") {
            object.insert("ddsource".into(), Value::from(self.source.as_str()));
        }
        if let Some(service) = self.service.as_ref().and_then(|t| t.render(event).ok()) {
            object.insert("service".into(), Value::from(service));
        }
        if let Some(host) = self.hostname(event) {
            object.insert("hostname".into(), Value::from(host));
        }
        let mut tags: Vec<String> = self.tags(event, &[]).collect();
        if let Some(Value::Bytes(own)) = object.get("ddtags") {
            tags.insert(0, String::from_utf8_lossy(own).into_owned());
        }
        if !tags.is_empty() {
            object.insert("ddtags".into(), Value::from(tags.join(",")));
        }
        if !object.contains_key("message")
            && let Some(summary) = object.get(field::SUMMARY).cloned()
        {
            object.insert("message".into(), summary);
        }
        let bytes = serde_json::to_vec(&Value::Object(object))
            .map_err(|e| format!("cannot encode the event as JSON: {e}"))?;
        if bytes.len() > limit::LOG_ENTRY {
            return Err(format!(
                "the log is {} bytes; Datadog takes at most {} per log",
                bytes.len(),
                limit::LOG_ENTRY
            ));
        }
        Ok(bytes)
    }

    /// An event: title, text, the alert type from `status` and `severity`, the
    /// `fingerprint` as aggregation key (so a resolve joins its firing).
    pub(super) fn event(&self, event: &Event) -> Result<Vec<u8>, String> {
        let render = |t: &Option<Template>| t.as_ref().and_then(|t| t.render(event).ok());
        let title = render(&self.title)
            .or_else(|| event.text(field::SUMMARY))
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| "sluice event".into());
        let text = render(&self.text)
            .or_else(|| event.text(field::DESCRIPTION))
            .or_else(|| event.text(field::SUMMARY))
            .unwrap_or_default();
        let mut body = Map::new();
        body.insert(
            "title".into(),
            Json::from(prefix_chars(&title, limit::EVENT_TITLE)),
        );
        body.insert(
            "text".into(),
            Json::from(prefix_chars(&text, limit::EVENT_TEXT)),
        );
        body.insert("alert_type".into(), Json::from(alert_type(event)));
        body.insert("priority".into(), Json::from("normal"));
        body.insert("source_type_name".into(), Json::from(self.source.as_str()));
        body.insert(
            "date_happened".into(),
            Json::from(crate::event::time_of(event).timestamp()),
        );
        if let Some(key) = event
            .text("incident_id")
            .or_else(|| event.text(field::FINGERPRINT))
        {
            body.insert(
                "aggregation_key".into(),
                Json::from(prefix_chars(&key, limit::AGGREGATION_KEY)),
            );
        }
        if let Some(host) = self.hostname(event) {
            body.insert("host".into(), Json::from(host));
        }
        let tags: Vec<String> = self.tags(event, &[]).collect();
        if !tags.is_empty() {
            body.insert("tags".into(), Json::from(tags));
        }
        serde_json::to_vec(&body).map_err(|e| format!("cannot encode the Datadog event: {e}"))
    }

    /// Series entries, one per metric whose number the event has, joined by commas.
    pub(super) fn series(&self, event: &Event) -> Result<Vec<u8>, String> {
        let at = crate::event::time_of(event).timestamp();
        let host = self.hostname(event);
        let mut out = Vec::new();
        let mut unread = Vec::new();
        for metric in &self.metrics {
            let name = match metric.name.render(event).map(|n| normalize_metric_name(&n)) {
                Ok(name) if valid_metric_name(&name) => name,
                Ok(name) => {
                    unread.push(format!("{name:?} (not a Datadog metric name)"));
                    continue;
                }
                Err(e) => {
                    unread.push(e);
                    continue;
                }
            };
            let value = match &metric.field {
                None => 1.0,
                Some((field, path)) => match crate::event::as_f64(event.value().get(path)) {
                    Some(v) if v.is_finite() => v,
                    _ => {
                        unread.push(format!("no number at {field}"));
                        continue;
                    }
                },
            };
            let mut series = json!({
                "metric": name,
                "type": match metric.kind {
                    MetricKind::Count => 1,
                    MetricKind::Rate => 2,
                    MetricKind::Gauge => 3,
                },
                "points": [{"timestamp": at, "value": value}],
                "tags": self.tags(event, &metric.tags).collect::<Vec<_>>(),
            });
            if let Some(host) = &host {
                series["resources"] = json!([{"name": host, "type": "host"}]);
            }
            if let Some(interval) = metric.interval {
                series["interval"] = Json::from(interval);
            }
            if !out.is_empty() {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &series)
                .map_err(|e| format!("cannot encode a series: {e}"))?;
        }
        if out.is_empty() {
            return Err(format!(
                "no metric could be read from the event: {}",
                unread.join("; ")
            ));
        }
        let most = limit::SERIES_PAYLOAD - SERIES_FRAMING;
        if out.len() > most {
            return Err(format!(
                "the event's series are {} bytes; a Datadog series request takes at most {most}",
                out.len()
            ));
        }
        Ok(out)
    }
}

/// Datadog's `alert_type` of a normalized alert.
fn alert_type(event: &Event) -> &'static str {
    if event.text(field::STATUS).as_deref() == Some("resolved") {
        return "success";
    }
    match event.text(field::SEVERITY).as_deref() {
        Some("critical" | "high") => "error",
        Some("medium" | "low") => "warning",
        _ => "info",
    }
}

#[cfg(test)]
mod tests {
    use super::super::DataKind;
    use super::*;

    fn config(extra: serde_json::Value) -> DatadogConfig {
        let mut base = json!({"api_key": "k"});
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).expect("config")
    }

    fn event(json: &str) -> Event {
        let value: Value = serde_json::from_str(json).expect("json");
        Event::new(
            value,
            crate::event::SourceId::intern("t"),
            chrono::Utc::now(),
        )
    }

    #[test]
    fn a_log_keeps_its_fields_and_gains_datadogs_reserved_attributes() {
        let shape = Shape::new(&config(json!({
            "hostname": "{{ host }}",
            "tags": {"env": "prod", "severity": "{{ severity }}", "team": "{{ team }}"}
        })))
        .expect("shape");
        let e = event(
            r#"{"summary": "disk full", "severity": "critical", "host": "db1", "labels": {"a": "b,c"}}"#,
        );
        let log: Json = serde_json::from_slice(&shape.log(&e).expect("log")).expect("json");
        assert_eq!(log["ddsource"], "sluice");
        assert_eq!(log["hostname"], "db1");
        assert_eq!(log["message"], "disk full", "the summary is the message");
        assert_eq!(
            log["ddtags"], "env:prod,severity:critical",
            "team is missing"
        );
        assert_eq!(log["labels"]["a"], "b,c");
    }

    #[test]
    fn an_event_is_cut_to_datadogs_limits_and_typed_by_status() {
        let shape = Shape::new(&config(json!({"data": "events"}))).expect("shape");
        let long = "x".repeat(300);
        let e = event(&format!(
            r#"{{"summary": "{long}", "severity": "critical", "status": "resolved", "fingerprint": "{long}"}}"#
        ));
        let got: Json = serde_json::from_slice(&shape.event(&e).expect("event")).expect("json");
        assert_eq!(got["title"].as_str().map(str::len), Some(100));
        assert_eq!(got["aggregation_key"].as_str().map(str::len), Some(100));
        assert_eq!(got["alert_type"], "success");
        let firing = event(r#"{"summary": "s", "severity": "high"}"#);
        let got: Json = serde_json::from_slice(&shape.event(&firing).expect("e")).expect("json");
        assert_eq!(got["alert_type"], "error");
        assert_eq!(got["text"], "s");
    }

    #[test]
    fn series_come_from_the_metrics_an_event_can_feed() {
        let shape = Shape::new(&config(json!({
            "data": "metrics",
            "metrics": [
                {"name": "sluice.alerts", "interval": 10, "tags": {"sev": "{{ severity }}"}},
                {"name": "sluice.latency", "type": "gauge", "field": "stats.ms"}
            ]
        })))
        .expect("shape");
        let both = event(r#"{"severity": "low", "stats": {"ms": 12.5}}"#);
        let text = format!(
            "[{}]",
            String::from_utf8(shape.series(&both).expect("series")).expect("utf8")
        );
        let got: Json = serde_json::from_str(&text).expect("json");
        assert_eq!(got[0]["type"], 1);
        assert_eq!(got[0]["interval"], 10);
        assert_eq!(got[0]["tags"], json!(["sev:low"]));
        assert_eq!(got[1]["points"][0]["value"], 12.5);
        assert_eq!(got[1]["type"], 3);
        let count_only = event(r#"{"stats": {"ms": "slow"}}"#);
        let text = String::from_utf8(shape.series(&count_only).expect("one")).expect("utf8");
        assert!(!text.contains("latency"), "{text}");
        let named = Shape::new(&config(json!({
            "data": "metrics",
            "metrics": [{"name": "{{ name }}", "type": "gauge", "field": "n"}]
        })))
        .expect("shape");
        let text = String::from_utf8(
            named
                .series(&event(r#"{"name": "queue-depth seconds", "n": 3}"#))
                .expect("normalized"),
        )
        .expect("utf8");
        assert!(text.contains(r#""metric":"queue_depth_seconds""#), "{text}");
        let gauge_only = Shape::new(&config(json!({
            "data": "metrics",
            "metrics": [{"name": "g", "type": "gauge", "field": "n"}]
        })))
        .expect("shape");
        let err = gauge_only.series(&count_only).expect_err("nothing to send");
        assert!(err.contains("no number at n"), "{err}");
    }

    #[test]
    fn options_of_another_kind_and_bad_names_are_refused() {
        for (extra, wanted) in [
            (json!({"title": "x"}), "`title` is for `data: events`"),
            (json!({"data": "metrics"}), "needs `metrics`"),
            (
                json!({"data": "metrics", "metrics": [{"name": "1bad"}]}),
                "not a Datadog metric name",
            ),
            (
                json!({"data": "metrics", "metrics": [{"name": "g", "type": "gauge"}]}),
                "needs `field`",
            ),
            (json!({"api_key": "  "}), "empty secret"),
            (json!({"site": "evil.com/x?"}), "not a host name"),
            // A host name whose last label is a number reads as an IPv4 address.
            (json!({"site": "datadoghq.1"}), "the intake URL"),
            // The endpoint alone parses (outer spaces are trimmed); with the path it does not.
            (json!({"endpoint": "http://127.0.0.1:9 "}), "the intake URL"),
            (
                json!({"endpoint": "http://u:p@127.0.0.1:1"}),
                "no credentials",
            ),
            (json!({"tags": {"a,b": "x"}}), "tag name"),
        ] {
            let err = config(extra.clone())
                .encoder()
                .err()
                .map(|e| e.0)
                .unwrap_or_default();
            assert!(err.contains(wanted), "{extra}: {err}");
        }
        for kind in [DataKind::Logs, DataKind::Events, DataKind::Metrics] {
            let mut c = config(json!({"metrics": [{"name": "m"}]}));
            c.data = kind;
            assert!(
                (kind == DataKind::Metrics) == c.encoder().is_ok(),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn the_site_picks_the_hosts_and_limits_cap_the_batches() {
        let mut c = config(
            json!({"site": "datadoghq.eu", "batch": {"max_events": 5000, "max_bytes": 100000000}}),
        );
        assert_eq!(
            c.url().expect("url"),
            "https://http-intake.logs.datadoghq.eu/api/v2/logs"
        );
        let b = c.effective_batch();
        assert_eq!(b.max_events, 1000);
        assert!(b.max_bytes < 5_000_000);
        c.data = DataKind::Metrics;
        assert_eq!(
            c.url().expect("url"),
            "https://api.datadoghq.eu/api/v2/series"
        );
        assert!(c.effective_batch().max_bytes < 512_000);
        c.data = DataKind::Events;
        assert_eq!(c.effective_batch().max_events, 1);
    }
}
