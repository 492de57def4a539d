//! OTLP log records as events, and events as OTLP log records.
//!
//! A record becomes an event of these fields (each only when set): `message` (the
//! body), `attributes`, `resources` (the resource's attributes), `scope` (`name`,
//! `version`, `attributes`), `severity_text`, `severity_number`, `timestamp`,
//! `observed_timestamp`, `trace_id` and `span_id` (hex), `flags`, `event_name` and
//! `dropped_attributes_count`. The way back reads the same fields, so a record that
//! went through sluice unchanged comes out with every attribute it had. Any other
//! top-level field of an event (an alert's `summary`, `severity`, …) becomes an
//! attribute; an event without `message` takes its `summary` as body, and one without
//! `severity_number` takes it from an alert's `severity`.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use vrl::value::{ObjectMap, Value};

use super::field;
use super::value::{
    from_any, from_attributes, hex_id, id_bytes, nanos, text, timestamp, to_any, to_attributes,
};
use crate::event::Event;

/// The event fields a record's own parts come from; others become attributes.
const RECORD_FIELDS: &[&str] = &[
    field::MESSAGE,
    field::ATTRIBUTES,
    field::RESOURCES,
    field::SCOPE,
    field::SEVERITY_TEXT,
    field::SEVERITY_NUMBER,
    field::TIMESTAMP,
    field::OBSERVED_TIMESTAMP,
    field::TRACE_ID,
    field::SPAN_ID,
    field::FLAGS,
    field::EVENT_NAME,
    field::DROPPED_ATTRIBUTES_COUNT,
];

/// How many log records a request carries.
pub(crate) fn count(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// The resource's attributes and the scope, as the fields every event of them shares.
pub(crate) fn context(
    resource: Option<Resource>,
    scope: Option<InstrumentationScope>,
) -> ObjectMap {
    let mut shared = ObjectMap::new();
    if let Some(resource) = resource
        && !resource.attributes.is_empty()
    {
        shared.insert(
            field::RESOURCES.into(),
            Value::Object(from_attributes(resource.attributes)),
        );
    }
    if let Some(scope) = scope {
        let mut s = ObjectMap::new();
        if !scope.name.is_empty() {
            s.insert("name".into(), Value::from(scope.name));
        }
        if !scope.version.is_empty() {
            s.insert("version".into(), Value::from(scope.version));
        }
        if !scope.attributes.is_empty() {
            s.insert(
                field::ATTRIBUTES.into(),
                Value::Object(from_attributes(scope.attributes)),
            );
        }
        if !s.is_empty() {
            shared.insert(field::SCOPE.into(), Value::Object(s));
        }
    }
    shared
}

/// Every log record of a request as an event value.
pub(crate) fn to_events(request: ExportLogsServiceRequest) -> Vec<Value> {
    let mut out = Vec::with_capacity(count(&request));
    for resource_logs in request.resource_logs {
        for scope_logs in resource_logs.scope_logs {
            let shared = context(resource_logs.resource.clone(), scope_logs.scope);
            for record in scope_logs.log_records {
                out.push(Value::Object(record_fields(record, shared.clone())));
            }
        }
    }
    out
}

fn record_fields(record: LogRecord, mut event: ObjectMap) -> ObjectMap {
    let body = from_any(record.body);
    if body != Value::Null {
        event.insert(field::MESSAGE.into(), body);
    }
    if !record.attributes.is_empty() {
        event.insert(
            field::ATTRIBUTES.into(),
            Value::Object(from_attributes(record.attributes)),
        );
    }
    if !record.severity_text.is_empty() {
        event.insert(
            field::SEVERITY_TEXT.into(),
            Value::from(record.severity_text),
        );
    }
    if record.severity_number != 0 {
        event.insert(
            field::SEVERITY_NUMBER.into(),
            Value::Integer(i64::from(record.severity_number)),
        );
    }
    if let Some(t) = timestamp(record.time_unix_nano) {
        event.insert(field::TIMESTAMP.into(), t);
    }
    if let Some(t) = timestamp(record.observed_time_unix_nano) {
        event.insert(field::OBSERVED_TIMESTAMP.into(), t);
    }
    if let Some(id) = hex_id(&record.trace_id) {
        event.insert(field::TRACE_ID.into(), id);
    }
    if let Some(id) = hex_id(&record.span_id) {
        event.insert(field::SPAN_ID.into(), id);
    }
    if record.flags != 0 {
        event.insert(field::FLAGS.into(), Value::Integer(i64::from(record.flags)));
    }
    if !record.event_name.is_empty() {
        event.insert(field::EVENT_NAME.into(), Value::from(record.event_name));
    }
    if record.dropped_attributes_count != 0 {
        event.insert(
            field::DROPPED_ATTRIBUTES_COUNT.into(),
            Value::Integer(i64::from(record.dropped_attributes_count)),
        );
    }
    event
}

/// The severity number and text of a normalized alert severity.
fn alert_severity(severity: &str) -> Option<(i32, &'static str)> {
    Some(match severity {
        "critical" => (21, "FATAL"),
        "high" => (17, "ERROR"),
        "medium" => (13, "WARN"),
        "low" | "info" => (9, "INFO"),
        _ => return None,
    })
}

fn int(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Integer(i) => Some(*i),
        _ => None,
    }
}

/// One event as a log record.
pub(crate) fn to_record(event: &Event) -> LogRecord {
    let map = match event.value() {
        Value::Object(m) => std::borrow::Cow::Borrowed(m),
        other => {
            let mut m = ObjectMap::new();
            m.insert(field::MESSAGE.into(), other.clone());
            std::borrow::Cow::Owned(m)
        }
    };
    let get = |k: &str| map.get(k);
    let mut attributes = match get(field::ATTRIBUTES) {
        Some(Value::Object(a)) => to_attributes(a),
        _ => Vec::new(),
    };
    for (k, v) in map.iter() {
        if !RECORD_FIELDS.contains(&k.as_str()) {
            attributes.push(opentelemetry_proto::tonic::common::v1::KeyValue {
                key: k.to_string(),
                value: Some(to_any(v)),
                ..Default::default()
            });
        }
    }
    let body = get(field::MESSAGE)
        .or_else(|| get(crate::alert::field::SUMMARY))
        .map(to_any);
    let alert = get(crate::alert::field::SEVERITY)
        .and_then(text)
        .and_then(|s| alert_severity(&s));
    let severity_number = int(get(field::SEVERITY_NUMBER))
        .and_then(|n| i32::try_from(n).ok())
        .or(alert.map(|a| a.0))
        .unwrap_or(0);
    let severity_text = get(field::SEVERITY_TEXT)
        .and_then(text)
        .map(|t| t.into_owned())
        .or(alert.map(|a| a.1.to_owned()))
        .unwrap_or_default();
    let observed = match nanos(get(field::OBSERVED_TIMESTAMP)) {
        0 => event
            .meta
            .received_at
            .timestamp_nanos_opt()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        n => n,
    };
    LogRecord {
        time_unix_nano: nanos(get(field::TIMESTAMP)),
        observed_time_unix_nano: observed,
        severity_number,
        severity_text,
        body,
        attributes,
        dropped_attributes_count: int(get(field::DROPPED_ATTRIBUTES_COUNT))
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        flags: int(get(field::FLAGS))
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        trace_id: id_bytes(get(field::TRACE_ID), 16).unwrap_or_default(),
        span_id: id_bytes(get(field::SPAN_ID), 8).unwrap_or_default(),
        event_name: get(field::EVENT_NAME)
            .and_then(text)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
    }
}

/// The resource of an event (its `resources` field).
fn resource_of(event: &Event) -> Option<Resource> {
    match event.get(field::RESOURCES) {
        Some(Value::Object(attributes)) => Some(Resource {
            attributes: to_attributes(attributes),
            ..Resource::default()
        }),
        _ => None,
    }
}

/// The scope of an event (its `scope` field).
fn scope_of(event: &Event) -> Option<InstrumentationScope> {
    let Some(Value::Object(scope)) = event.get(field::SCOPE) else {
        return None;
    };
    let text_of = |k: &str| {
        scope
            .get(k)
            .and_then(text)
            .map(|t| t.into_owned())
            .unwrap_or_default()
    };
    Some(InstrumentationScope {
        name: text_of("name"),
        version: text_of("version"),
        attributes: match scope.get(field::ATTRIBUTES) {
            Some(Value::Object(a)) => to_attributes(a),
            _ => Vec::new(),
        },
        dropped_attributes_count: 0,
    })
}

/// One event as the `ResourceLogs` of its own record: its resource, its scope, the
/// record. A request is these, one after another (OTLP's receivers merge nothing and
/// need nothing merged).
pub(crate) fn to_resource_logs(event: &Event) -> ResourceLogs {
    ResourceLogs {
        resource: resource_of(event),
        scope_logs: vec![ScopeLogs {
            scope: scope_of(event),
            log_records: vec![to_record(event)],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}
