//! A look at an export request's protobuf bytes before they are decoded: how many items
//! (log records, data points, spans) it holds, and how many bytes its events will copy.
//!
//! Decoding allocates for every item and every event copies its resource and scope, so
//! a small body can stand for far more memory: 4 MB of empty records, or one large
//! resource attribute shared by thousands of records. The scan reads only lengths and
//! field numbers, allocates nothing, and lets the source refuse such a request first.

/// What a request will cost as events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Cost {
    /// Log records, data points or spans.
    pub(crate) items: usize,
    /// Bytes of wire format the events copy: each item's own, plus its resource's and
    /// scope's (and a metric's name and description) once per item.
    pub(crate) copied: usize,
}

/// The fields of one message: (field number, wire type, bytes of a length-delimited
/// field). Malformed input ends the iteration with an error.
struct Fields<'a> {
    rest: &'a [u8],
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or("a truncated varint")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a varint longer than ten bytes".into())
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, &'a [u8]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let step = (|| {
            let key = varint(&mut self.rest)?;
            let (field, wire) = (key >> 3, key & 7);
            let skip = |rest: &mut &'a [u8], n: usize| -> Result<&'a [u8], String> {
                if rest.len() < n {
                    return Err("a field runs past the end of its message".into());
                }
                let (taken, after) = rest.split_at(n);
                *rest = after;
                Ok(taken)
            };
            let body = match wire {
                0 => {
                    varint(&mut self.rest)?;
                    &[][..]
                }
                1 => skip(&mut self.rest, 8)?,
                2 => {
                    let len = usize::try_from(varint(&mut self.rest)?)
                        .map_err(|_| "a length past the address space".to_owned())?;
                    skip(&mut self.rest, len)?
                }
                5 => skip(&mut self.rest, 4)?,
                other => return Err(format!("wire type {other} is not protobuf's")),
            };
            // Only length-delimited fields are read further; the others are skipped.
            Ok((if wire == 2 { field } else { 0 }, body))
        })();
        if step.is_err() {
            self.rest = &[];
        }
        Some(step)
    }
}

fn fields(bytes: &[u8]) -> Fields<'_> {
    Fields { rest: bytes }
}

/// A message's context (field 1: a resource, or a scope) and its children (field 2),
/// as (the context's length, the children).
fn context_and_children(message: &[u8]) -> Result<(usize, Vec<&[u8]>), String> {
    let (mut context, mut children) = (0, Vec::new());
    for f in fields(message) {
        match f? {
            (1, c) => context += c.len(),
            (2, child) => children.push(child),
            _ => {}
        }
    }
    Ok((context, children))
}

/// Every scope-level message of a request (`resource_logs` → `scope_logs`, and so on),
/// with the length of its resource.
fn scoped(bytes: &[u8]) -> Result<Vec<(usize, &[u8])>, String> {
    let mut out = Vec::new();
    for top in fields(bytes) {
        let (1, resource_items) = top? else { continue };
        let (resource, scopes) = context_and_children(resource_items)?;
        out.extend(scopes.into_iter().map(|s| (resource, s)));
    }
    Ok(out)
}

/// Adds `items` items of `own` bytes, each copying `shared` bytes.
fn add(cost: &mut Cost, items: usize, own: usize, shared: usize) {
    cost.items += items;
    cost.copied = cost
        .copied
        .saturating_add(own)
        .saturating_add(items.saturating_mul(shared));
}

/// Logs: `resource_logs` (1) → `resource` (1), `scope_logs` (2) → `scope` (1),
/// `log_records` (2). Traces have the same shape (`resource_spans`, `scope_spans`,
/// `spans`).
pub(crate) fn logs_or_traces(bytes: &[u8]) -> Result<Cost, String> {
    let mut cost = Cost::default();
    for (resource, scoped) in scoped(bytes)? {
        let (scope, items) = context_and_children(scoped)?;
        let own = items.iter().map(|i| i.len() + 2).sum();
        add(&mut cost, items.len(), own, resource + scope);
    }
    Ok(cost)
}

/// Metrics: `resource_metrics` (1) → `resource` (1), `scope_metrics` (2) → `scope`
/// (1), `metrics` (2) → the data (gauge 5, sum 7, histogram 9, exponential histogram
/// 10, summary 11) → `data_points` (1); the metric's other fields are copied per point.
pub(crate) fn metrics(bytes: &[u8]) -> Result<Cost, String> {
    let mut cost = Cost::default();
    for (resource, scoped) in scoped(bytes)? {
        let (scope, metrics) = context_and_children(scoped)?;
        for metric in metrics {
            let (mut header, mut points, mut own) = (0, 0, 0);
            for f in fields(metric) {
                match f? {
                    (5 | 7 | 9 | 10 | 11, data) => {
                        for p in fields(data) {
                            if let (1, point) = p? {
                                points += 1;
                                own += point.len() + 2;
                            }
                        }
                    }
                    (_, other) => header += other.len(),
                }
            }
            add(&mut cost, points, own, resource + scope + header);
        }
    }
    Ok(cost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    #[test]
    fn counts_records_and_the_copies_of_their_resource() {
        let key = "k".repeat(1000);
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key,
                        value: Some(AnyValue {
                            value: Some(any_value::Value::BoolValue(true)),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); 50],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = prost::Message::encode_to_vec(&request);
        let cost = logs_or_traces(&bytes).expect("scanned");
        assert_eq!(cost.items, 50);
        assert!(cost.copied > 50 * 1000, "{cost:?}");
        assert!(logs_or_traces(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(logs_or_traces(&[]).expect("empty"), Cost::default());
    }

    #[test]
    fn counts_the_data_points_of_every_metric() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::{
            Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data,
        };
        let metric = |data| Metric {
            name: "n".repeat(100),
            data: Some(data),
            ..Default::default()
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint::default(); 3],
                        })),
                        metric(Data::Sum(Sum {
                            data_points: vec![NumberDataPoint::default(); 2],
                            ..Default::default()
                        })),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let cost = metrics(&prost::Message::encode_to_vec(&request)).expect("scanned");
        assert_eq!(cost.items, 5);
        assert!(
            cost.copied >= 5 * 100,
            "each point copies its metric's name: {cost:?}"
        );
    }
}
