//! OTLP spans as events: one event per span.
//!
//! Each carries `trace_id`, `span_id` and `parent_span_id` (hex), `trace_state`,
//! `name`, `kind` (`internal`, `server`, `client`, `producer`, `consumer`),
//! `timestamp` (the start) and `end_timestamp`, `attributes`, `events` (`name`,
//! `timestamp`, `attributes`), `links` (`trace_id`, `span_id`, `trace_state`,
//! `attributes`), `status` (`code`: `unset`, `ok` or `error`, and `message`), the
//! `dropped_*_count`s that are not zero, and the `resources` and `scope` as log events
//! have them.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use vrl::value::{ObjectMap, Value};

use super::field;
use super::logs::context;
use super::value::{from_attributes, hex_id, timestamp};

/// How many spans a request carries.
pub(crate) fn count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// Every span of a request as an event value.
pub(crate) fn to_events(request: ExportTraceServiceRequest) -> Vec<Value> {
    let mut out = Vec::with_capacity(count(&request));
    for resource_spans in request.resource_spans {
        for scope_spans in resource_spans.scope_spans {
            let shared = context(resource_spans.resource.clone(), scope_spans.scope);
            for span in scope_spans.spans {
                out.push(Value::Object(span_fields(span, shared.clone())));
            }
        }
    }
    out
}

fn insert_some(map: &mut ObjectMap, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.into(), v);
    }
}

fn insert_count(map: &mut ObjectMap, key: &str, n: u32) {
    if n != 0 {
        map.insert(key.into(), Value::Integer(i64::from(n)));
    }
}

fn span_fields(span: Span, mut event: ObjectMap) -> ObjectMap {
    insert_some(&mut event, field::TRACE_ID, hex_id(&span.trace_id));
    insert_some(&mut event, field::SPAN_ID, hex_id(&span.span_id));
    insert_some(&mut event, "parent_span_id", hex_id(&span.parent_span_id));
    if !span.trace_state.is_empty() {
        event.insert("trace_state".into(), Value::from(span.trace_state));
    }
    event.insert("name".into(), Value::from(span.name));
    let kind = match span.kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    };
    event.insert("kind".into(), Value::from(kind));
    insert_some(
        &mut event,
        field::TIMESTAMP,
        timestamp(span.start_time_unix_nano),
    );
    insert_some(
        &mut event,
        "end_timestamp",
        timestamp(span.end_time_unix_nano),
    );
    if span.flags != 0 {
        event.insert(field::FLAGS.into(), Value::Integer(i64::from(span.flags)));
    }
    if !span.attributes.is_empty() {
        event.insert(
            field::ATTRIBUTES.into(),
            Value::Object(from_attributes(span.attributes)),
        );
    }
    if !span.events.is_empty() {
        let events = span
            .events
            .into_iter()
            .map(|e| {
                let mut m = ObjectMap::new();
                m.insert("name".into(), Value::from(e.name));
                insert_some(&mut m, field::TIMESTAMP, timestamp(e.time_unix_nano));
                if !e.attributes.is_empty() {
                    m.insert(
                        field::ATTRIBUTES.into(),
                        Value::Object(from_attributes(e.attributes)),
                    );
                }
                Value::Object(m)
            })
            .collect();
        event.insert("events".into(), Value::Array(events));
    }
    if !span.links.is_empty() {
        let links = span
            .links
            .into_iter()
            .map(|l| {
                let mut m = ObjectMap::new();
                insert_some(&mut m, field::TRACE_ID, hex_id(&l.trace_id));
                insert_some(&mut m, field::SPAN_ID, hex_id(&l.span_id));
                if !l.trace_state.is_empty() {
                    m.insert("trace_state".into(), Value::from(l.trace_state));
                }
                if !l.attributes.is_empty() {
                    m.insert(
                        field::ATTRIBUTES.into(),
                        Value::Object(from_attributes(l.attributes)),
                    );
                }
                Value::Object(m)
            })
            .collect();
        event.insert("links".into(), Value::Array(links));
    }
    if let Some(status) = span.status {
        let mut m = ObjectMap::new();
        let code = match status.code {
            1 => "ok",
            2 => "error",
            _ => "unset",
        };
        m.insert("code".into(), Value::from(code));
        if !status.message.is_empty() {
            m.insert("message".into(), Value::from(status.message));
        }
        event.insert("status".into(), Value::Object(m));
    }
    insert_count(
        &mut event,
        field::DROPPED_ATTRIBUTES_COUNT,
        span.dropped_attributes_count,
    );
    insert_count(
        &mut event,
        "dropped_events_count",
        span.dropped_events_count,
    );
    insert_count(&mut event, "dropped_links_count", span.dropped_links_count);
    event
}
