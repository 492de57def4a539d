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
    NumberDataPoint, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
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

/// The fields every point has: attributes, its start and time, and flags.
fn point(
    base: &ObjectMap,
    attributes: Vec<KeyValue>,
    [start, time]: [u64; 2],
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

/// A histogram's `count`, and its `sum`, `min` and `max` when set.
fn stats(e: &mut ObjectMap, count: u64, [sum, min, max]: [Option<f64>; 3]) {
    e.insert("count".into(), integer(count));
    for (k, v) in [("sum", sum), ("min", min), ("max", max)] {
        if let Some(v) = v {
            e.insert(k.into(), float(v));
        }
    }
}

/// Gauge and sum points: their `value`, an integer or a float.
fn numbers(out: &mut Vec<Value>, base: &ObjectMap, points: Vec<NumberDataPoint>) {
    for p in points {
        let mut e = point(
            base,
            p.attributes,
            [p.start_time_unix_nano, p.time_unix_nano],
            p.flags,
        );
        let value = match p.value {
            Some(number_data_point::Value::AsDouble(d)) => float(d),
            Some(number_data_point::Value::AsInt(i)) => Value::Integer(i),
            None => Value::Null,
        };
        e.insert("value".into(), value);
        out.push(Value::Object(e));
    }
}

fn push_points(out: &mut Vec<Value>, mut base: ObjectMap, data: Option<Data>) {
    let Some(data) = data else {
        return;
    };
    let (kind, temporality_of) = match &data {
        Data::Gauge(_) => ("gauge", None),
        Data::Sum(s) => ("sum", Some(s.aggregation_temporality)),
        Data::Histogram(h) => ("histogram", Some(h.aggregation_temporality)),
        Data::ExponentialHistogram(h) => ("exponential_histogram", Some(h.aggregation_temporality)),
        Data::Summary(_) => ("summary", None),
    };
    base.insert("type".into(), Value::from(kind));
    if let Some(t) = temporality_of {
        base.insert("aggregation_temporality".into(), temporality(t));
    }
    match data {
        Data::Gauge(g) => numbers(out, &base, g.data_points),
        Data::Sum(s) => {
            base.insert("is_monotonic".into(), Value::Boolean(s.is_monotonic));
            numbers(out, &base, s.data_points);
        }
        Data::Histogram(h) => {
            for p in h.data_points {
                let mut e = point(
                    &base,
                    p.attributes,
                    [p.start_time_unix_nano, p.time_unix_nano],
                    p.flags,
                );
                stats(&mut e, p.count, [p.sum, p.min, p.max]);
                e.insert("bucket_counts".into(), counts(p.bucket_counts));
                e.insert(
                    "explicit_bounds".into(),
                    Value::Array(p.explicit_bounds.into_iter().map(float).collect()),
                );
                out.push(Value::Object(e));
            }
        }
        Data::ExponentialHistogram(h) => {
            for p in h.data_points {
                let mut e = point(
                    &base,
                    p.attributes,
                    [p.start_time_unix_nano, p.time_unix_nano],
                    p.flags,
                );
                stats(&mut e, p.count, [p.sum, p.min, p.max]);
                e.insert("scale".into(), Value::Integer(i64::from(p.scale)));
                e.insert("zero_count".into(), integer(p.zero_count));
                e.insert("zero_threshold".into(), float(p.zero_threshold));
                for (k, b) in [("positive", p.positive), ("negative", p.negative)] {
                    if let Some(b) = b {
                        e.insert(k.into(), buckets(b));
                    }
                }
                out.push(Value::Object(e));
            }
        }
        Data::Summary(s) => {
            for p in s.data_points {
                let mut e = point(
                    &base,
                    p.attributes,
                    [p.start_time_unix_nano, p.time_unix_nano],
                    p.flags,
                );
                stats(&mut e, p.count, [Some(p.sum), None, None]);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Histogram, HistogramDataPoint, Metric,
        ResourceMetrics, ScopeMetrics, Summary, SummaryDataPoint,
        summary_data_point::ValueAtQuantile,
    };

    fn request(data: Vec<Data>) -> ExportMetricsServiceRequest {
        let metrics = data
            .into_iter()
            .map(|d| Metric {
                name: "m".into(),
                unit: "ms".into(),
                data: Some(d),
                ..Default::default()
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn json(v: &Value) -> serde_json::Value {
        serde_json::to_value(v).expect("json")
    }

    #[test]
    fn every_point_type_keeps_what_it_measures() {
        let request = request(vec![
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 3,
                    sum: Some(7.5),
                    bucket_counts: vec![1, 2],
                    explicit_bounds: vec![5.0],
                    time_unix_nano: 1_000_000_000,
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            }),
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    count: 2,
                    scale: 3,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: -2,
                        bucket_counts: vec![1],
                    }),
                    min: Some(f64::NAN),
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            }),
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    count: 4,
                    sum: 10.0,
                    quantile_values: vec![ValueAtQuantile {
                        quantile: 0.99,
                        value: 9.0,
                    }],
                    ..Default::default()
                }],
            }),
        ]);
        assert_eq!(count(&request), 3);
        let events: Vec<serde_json::Value> = to_events(request).iter().map(json).collect();
        let h = &events[0];
        assert_eq!(h["type"], "histogram");
        assert_eq!(h["unit"], "ms");
        assert_eq!(h["aggregation_temporality"], "cumulative");
        assert_eq!(h["count"], 3);
        assert_eq!(h["sum"], 7.5);
        assert_eq!(h["bucket_counts"], serde_json::json!([1, 2]));
        assert_eq!(h["explicit_bounds"], serde_json::json!([5.0]));
        assert!(h["timestamp"].is_string());
        let e = &events[1];
        assert_eq!(e["type"], "exponential_histogram");
        assert_eq!(e["aggregation_temporality"], "delta");
        assert_eq!(e["positive"]["offset"], -2);
        assert_eq!(e["min"], serde_json::Value::Null, "NaN has no event value");
        assert!(e.get("negative").is_none());
        let s = &events[2];
        assert_eq!(s["type"], "summary");
        assert_eq!(s["quantile_values"][0]["quantile"], 0.99);
        assert_eq!(s["sum"], 10.0);
    }
}
