//! OTLP metric data points as events: one event per data point.
//!
//! Each carries the metric's `name`, `description` and `unit` (when set), its `type`
//! (`gauge`, `sum`, `histogram`, `exponential_histogram` or `summary`), the point's
//! `attributes`, `timestamp` and `start_timestamp`, the `resources` and `scope` as log
//! events have them, and what the type measures:
//! - gauge and sum: `value` (an integer or a float); a sum adds `is_monotonic` and
//!   `aggregation_temporality` (`delta` or `cumulative`);
//! - histogram: `count`, `sum`, `min`, `max`, `bucket_counts`, `explicit_bounds`;
//! - exponential histogram: `count`, `sum`, `min`, `max`, `scale`, `zero_count`,
//!   `zero_threshold`, `positive` and `negative` (`offset`, `bucket_counts`);
//! - summary: `count`, `sum`, `quantile_values` (`quantile`, `value`).
//!
//! Exemplars are not kept.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
};
use vrl::value::{ObjectMap, Value};

use super::field;
use super::logs::context;
use super::value::{from_attributes, timestamp};

/// How many data points a request carries.
pub(crate) fn count(request: &ExportMetricsServiceRequest) -> usize {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        })
        .sum()
}

fn float(f: f64) -> Value {
    if f.is_nan() {
        Value::Null
    } else {
        Value::from_f64_or_zero(f)
    }
}

fn counts(counts: Vec<u64>) -> Value {
    Value::Array(
        counts
            .into_iter()
            .map(|c| Value::Integer(i64::try_from(c).unwrap_or(i64::MAX)))
            .collect(),
    )
}

fn temporality(t: i32) -> Value {
    Value::from(match t {
        1 => "delta",
        2 => "cumulative",
        _ => "unspecified",
    })
}

fn buckets(b: Buckets) -> Value {
    let mut m = ObjectMap::new();
    m.insert("offset".into(), Value::Integer(i64::from(b.offset)));
    m.insert("bucket_counts".into(), counts(b.bucket_counts));
    Value::Object(m)
}

/// The fields every point has: attributes and times.
fn point(
    base: &ObjectMap,
    attributes: Vec<KeyValue>,
    start: u64,
    time: u64,
    flags: u32,
) -> ObjectMap {
    let mut event = base.clone();
    if !attributes.is_empty() {
        event.insert(
            field::ATTRIBUTES.into(),
            Value::Object(from_attributes(attributes)),
        );
    }
    if let Some(t) = timestamp(time) {
        event.insert(field::TIMESTAMP.into(), t);
    }
    if let Some(t) = timestamp(start) {
        event.insert("start_timestamp".into(), t);
    }
    if flags != 0 {
        event.insert(field::FLAGS.into(), Value::Integer(i64::from(flags)));
    }
    event
}

fn integer(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Every data point of a request as an event value.
pub(crate) fn to_events(request: ExportMetricsServiceRequest) -> Vec<Value> {
    let mut out = Vec::with_capacity(count(&request));
    for resource_metrics in request.resource_metrics {
        for scope_metrics in resource_metrics.scope_metrics {
            let shared = context(resource_metrics.resource.clone(), scope_metrics.scope);
            for metric in scope_metrics.metrics {
                let mut base = shared.clone();
                base.insert("name".into(), Value::from(metric.name));
                if !metric.description.is_empty() {
                    base.insert("description".into(), Value::from(metric.description));
                }
                if !metric.unit.is_empty() {
                    base.insert("unit".into(), Value::from(metric.unit));
                }
                push_points(&mut out, base, metric.data);
            }
        }
    }
    out
}

fn push_points(out: &mut Vec<Value>, mut base: ObjectMap, data: Option<Data>) {
    let kind = match &data {
        Some(Data::Gauge(_)) => "gauge",
        Some(Data::Sum(_)) => "sum",
        Some(Data::Histogram(_)) => "histogram",
        Some(Data::ExponentialHistogram(_)) => "exponential_histogram",
        Some(Data::Summary(_)) => "summary",
        None => return,
    };
    base.insert("type".into(), Value::from(kind));
    let number = |p: number_data_point::Value| match p {
        number_data_point::Value::AsDouble(d) => float(d),
        number_data_point::Value::AsInt(i) => Value::Integer(i),
    };
    match data {
        Some(Data::Gauge(g)) => {
            for p in g.data_points {
                let mut e = point(
                    &base,
                    p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    p.flags,
                );
                e.insert("value".into(), p.value.map_or(Value::Null, number));
                out.push(Value::Object(e));
            }
        }
        Some(Data::Sum(s)) => {
            base.insert("is_monotonic".into(), Value::Boolean(s.is_monotonic));
            base.insert(
                "aggregation_temporality".into(),
                temporality(s.aggregation_temporality),
            );
            for p in s.data_points {
                let mut e = point(
                    &base,
                    p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    p.flags,
                );
                e.insert("value".into(), p.value.map_or(Value::Null, number));
                out.push(Value::Object(e));
            }
        }
        Some(Data::Histogram(h)) => {
            base.insert(
                "aggregation_temporality".into(),
                temporality(h.aggregation_temporality),
            );
            for p in h.data_points {
                let mut e = point(
                    &base,
                    p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    p.flags,
                );
                e.insert("count".into(), integer(p.count));
                for (k, v) in [("sum", p.sum), ("min", p.min), ("max", p.max)] {
                    if let Some(v) = v {
                        e.insert(k.into(), float(v));
                    }
                }
                e.insert("bucket_counts".into(), counts(p.bucket_counts));
                e.insert(
                    "explicit_bounds".into(),
                    Value::Array(p.explicit_bounds.into_iter().map(float).collect()),
                );
                out.push(Value::Object(e));
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            base.insert(
                "aggregation_temporality".into(),
                temporality(h.aggregation_temporality),
            );
            for p in h.data_points {
                let mut e = point(
                    &base,
                    p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    p.flags,
                );
                e.insert("count".into(), integer(p.count));
                for (k, v) in [("sum", p.sum), ("min", p.min), ("max", p.max)] {
                    if let Some(v) = v {
                        e.insert(k.into(), float(v));
                    }
                }
                e.insert("scale".into(), Value::Integer(i64::from(p.scale)));
                e.insert("zero_count".into(), integer(p.zero_count));
                e.insert("zero_threshold".into(), float(p.zero_threshold));
                if let Some(b) = p.positive {
                    e.insert("positive".into(), buckets(b));
                }
                if let Some(b) = p.negative {
                    e.insert("negative".into(), buckets(b));
                }
                out.push(Value::Object(e));
            }
        }
        Some(Data::Summary(s)) => {
            for p in s.data_points {
                let mut e = point(
                    &base,
                    p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    p.flags,
                );
                e.insert("count".into(), integer(p.count));
                e.insert("sum".into(), float(p.sum));
                let quantiles = p
                    .quantile_values
                    .into_iter()
                    .map(|q| {
                        let mut m = ObjectMap::new();
                        m.insert("quantile".into(), float(q.quantile));
                        m.insert("value".into(), float(q.value));
                        Value::Object(m)
                    })
                    .collect();
                e.insert("quantile_values".into(), Value::Array(quantiles));
                out.push(Value::Object(e));
            }
        }
        None => {}
    }
}
