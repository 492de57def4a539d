//! Remote write 1.0's body: a snappy block (not the framed format) of a protobuf
//! `prometheus.WriteRequest`. Only the fields sluice reads are declared; prost skips the
//! rest (exemplars, native histograms, metadata).
//!
//! Hostile bodies are bounded before any allocation they choose: the compressed size
//! by the caller, the decompressed size by the length the block declares, and the
//! samples by count after decoding.

use thiserror::Error;
use vrl::value::{ObjectMap, Value};

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub(crate) timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub(crate) labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Label {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(string, tag = "2")]
    pub(crate) value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Sample {
    #[prost(double, tag = "1")]
    pub(crate) value: f64,
    /// Milliseconds since 1970.
    #[prost(int64, tag = "2")]
    pub(crate) timestamp: i64,
}

/// Why a body was refused (answered 400, which Prometheus does not retry).
#[derive(Debug, Error, PartialEq)]
pub(crate) enum DecodeError {
    #[error("the body is not a snappy block: {0}")]
    Snappy(String),
    #[error("the body decompresses to {0} bytes, more than max_decompressed_bytes ({1})")]
    TooLarge(usize, usize),
    #[error("the body is not a protobuf WriteRequest: {0}")]
    Protobuf(String),
    #[error("more than {0} samples in one request (max_samples_per_request)")]
    TooManySamples(usize),
    #[error("a series has no __name__ label")]
    NoName,
}

/// What a request held: one event per sample, and the samples left out (stale markers,
/// which are NaN).
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) events: Vec<Value>,
    pub(crate) stale: usize,
}

/// Decodes a body into metric events (`event_type: metric`, `name`, `value`,
/// `labels`, `timestamp`), the shape `alert_rule` reads.
pub(crate) fn decode(
    body: &[u8],
    max_decompressed: usize,
    max_samples: usize,
) -> Result<Decoded, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > max_decompressed {
        return Err(DecodeError::TooLarge(len, max_decompressed));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    let request = <WriteRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    let samples: usize = request.timeseries.iter().map(|t| t.samples.len()).sum();
    if samples > max_samples {
        return Err(DecodeError::TooManySamples(max_samples));
    }
    let mut out = Decoded {
        events: Vec::with_capacity(samples),
        stale: 0,
    };
    for series in request.timeseries {
        let mut name = None;
        let mut labels = ObjectMap::new();
        for label in series.labels {
            if label.name == "__name__" {
                name = Some(label.value);
            } else {
                labels.insert(label.name.into(), Value::from(label.value));
            }
        }
        let name = Value::from(name.ok_or(DecodeError::NoName)?);
        let labels = Value::Object(labels);
        for sample in series.samples {
            // NaN is the stale marker (and VRL numbers cannot hold it).
            if sample.value.is_nan() {
                out.stale += 1;
                continue;
            }
            let mut event = ObjectMap::new();
            event.insert("event_type".into(), Value::from("metric"));
            event.insert("name".into(), name.clone());
            event.insert("value".into(), Value::from_f64_or_zero(sample.value));
            event.insert("labels".into(), labels.clone());
            if let Some(t) = chrono::DateTime::from_timestamp_millis(sample.timestamp) {
                event.insert("timestamp".into(), Value::Timestamp(t));
            }
            out.events.push(Value::Object(event));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body as Prometheus sends it.
    /// Labels as (name, value), samples as (value, milliseconds).
    type Series<'a> = (&'a [(&'a str, &'a str)], &'a [(f64, i64)]);

    fn body(series: &[Series<'_>]) -> Vec<u8> {
        let request = WriteRequest {
            timeseries: series
                .iter()
                .map(|(labels, samples)| TimeSeries {
                    labels: labels
                        .iter()
                        .map(|(n, v)| Label {
                            name: (*n).into(),
                            value: (*v).into(),
                        })
                        .collect(),
                    samples: samples
                        .iter()
                        .map(|(value, timestamp)| Sample {
                            value: *value,
                            timestamp: *timestamp,
                        })
                        .collect(),
                })
                .collect(),
        };
        let raw = prost::Message::encode_to_vec(&request);
        snap::raw::Encoder::new()
            .compress_vec(&raw)
            .expect("compress")
    }

    #[test]
    fn each_sample_becomes_a_metric_event_and_stale_markers_are_left_out() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let b = body(&[
            (
                &[("__name__", "queue_depth"), ("instance", "a:9100")],
                &[(42.0, 1_700_000_000_123), (43.5, 1_700_000_001_000)],
            ),
            (&[("__name__", "up"), ("job", "x")], &[(stale, 1)]),
        ]);
        let d = decode(&b, 1 << 20, 100).expect("decodes");
        assert_eq!(d.stale, 1);
        assert_eq!(d.events.len(), 2);
        let e = serde_json::to_value(&d.events[0]).expect("json");
        assert_eq!(e["event_type"], "metric");
        assert_eq!(e["name"], "queue_depth");
        assert_eq!(e["value"], 42.0);
        assert_eq!(e["labels"], serde_json::json!({"instance": "a:9100"}));
        assert_eq!(e["timestamp"], "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn hostile_bodies_are_refused_before_they_take_memory() {
        assert!(matches!(
            decode(b"not snappy at all", 1 << 20, 10),
            Err(DecodeError::Snappy(_) | DecodeError::Protobuf(_))
        ));
        // A block that claims 4 GiB (its length varint) is refused on the claim.
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert_eq!(
            decode(&claim, 1 << 20, 10).err(),
            Some(DecodeError::TooLarge(0xffff_ffff, 1 << 20))
        );
        let many: Vec<(f64, i64)> = (0..11).map(|i| (1.0, i)).collect();
        let b = body(&[(&[("__name__", "x")], &many)]);
        assert_eq!(
            decode(&b, 1 << 20, 10).err(),
            Some(DecodeError::TooManySamples(10))
        );
        let b = body(&[(&[("job", "x")], &[(1.0, 1)])]);
        assert_eq!(decode(&b, 1 << 20, 10).err(), Some(DecodeError::NoName));
        let garbage = snap::raw::Encoder::new()
            .compress_vec(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])
            .expect("compress");
        assert!(matches!(
            decode(&garbage, 1 << 20, 10),
            Err(DecodeError::Protobuf(_))
        ));
    }
}
