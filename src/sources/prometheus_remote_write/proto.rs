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
    #[error("the body claims {0} bytes decompressed, more than snappy can expand {1} bytes to")]
    ImpossibleLength(usize, usize),
    #[error("a series has more than {0} labels")]
    TooManyLabels(usize),
    #[error("its samples would take more than max_decompressed_bytes ({0}) as events")]
    TooCostly(usize),
    #[error("the body is not a protobuf WriteRequest: {0}")]
    Protobuf(String),
    #[error("more than {0} samples in one request (max_samples_per_request)")]
    TooManySamples(usize),
    #[error("a series has no __name__ label")]
    NoName,
}

/// Most labels one series may have (Prometheus's own series rarely have 30).
pub(crate) const MAX_LABELS: usize = 128;

/// What one event costs beyond its labels' bytes: the map, its five fields, the name.
const EVENT_COST: usize = 256;
/// What one label costs in an event beyond its bytes (a map entry, two strings).
const LABEL_COST: usize = 64;

/// Snappy's best ratio: a 3-byte copy element yields 64 bytes.
const SNAPPY_MAX_RATIO: usize = 22;

/// Reads the wire format without decoding it, so a body whose messages would take more
/// memory decoded than it does on the wire (empty series, labels repeated on every
/// sample) is refused before prost allocates for them.
fn prescan(raw: &[u8], max_samples: usize, max_cost: usize) -> Result<(), DecodeError> {
    let malformed = |what: &str| DecodeError::Protobuf(what.to_owned());
    let (mut series, mut samples, mut cost) = (0usize, 0usize, 0usize);
    let mut pos = 0;
    while pos < raw.len() {
        let (field, wire) = key(raw, &mut pos).ok_or_else(|| malformed("a bad field key"))?;
        let body =
            skip(raw, &mut pos, wire).ok_or_else(|| malformed("a field runs past the end"))?;
        if field != 1 || wire != 2 {
            continue;
        }
        series += 1;
        if series > max_samples {
            return Err(DecodeError::TooManySamples(max_samples));
        }
        let (mut labels, mut label_bytes, mut own_samples) = (0usize, 0usize, 0usize);
        let mut inner = 0;
        while inner < body.len() {
            let (field, wire) =
                key(body, &mut inner).ok_or_else(|| malformed("a bad field key"))?;
            let value = skip(body, &mut inner, wire)
                .ok_or_else(|| malformed("a field runs past the end"))?;
            match (field, wire) {
                (1, 2) => {
                    labels += 1;
                    label_bytes += value.len();
                }
                (2, 2) => own_samples += 1,
                _ => {}
            }
        }
        if labels > MAX_LABELS {
            return Err(DecodeError::TooManyLabels(MAX_LABELS));
        }
        samples += own_samples;
        if samples > max_samples {
            return Err(DecodeError::TooManySamples(max_samples));
        }
        let per_event = EVENT_COST + label_bytes + LABEL_COST * labels;
        cost = cost.saturating_add(per_event.saturating_mul(own_samples));
        if cost > max_cost {
            return Err(DecodeError::TooCostly(max_cost));
        }
    }
    Ok(())
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

fn key(buf: &[u8], pos: &mut usize) -> Option<(u64, u8)> {
    let k = varint(buf, pos)?;
    Some((k >> 3, (k & 7) as u8))
}

/// Skips one value of wire type `wire`, returning a length-delimited value's bytes
/// (empty for the others). Groups (types 3 and 4) are refused: WriteRequest has none.
fn skip<'a>(buf: &'a [u8], pos: &mut usize, wire: u8) -> Option<&'a [u8]> {
    let start = *pos;
    match wire {
        0 => {
            varint(buf, pos)?;
        }
        1 => *pos = pos.checked_add(8).filter(|p| *p <= buf.len())?,
        5 => *pos = pos.checked_add(4).filter(|p| *p <= buf.len())?,
        2 => {
            let len = usize::try_from(varint(buf, pos)?).ok()?;
            let end = pos.checked_add(len).filter(|e| *e <= buf.len())?;
            let value = &buf[*pos..end];
            *pos = end;
            return Some(value);
        }
        _ => return None,
    }
    Some(&buf[start..start])
}

/// What a request held: one event per sample, and the samples left out (stale markers,
/// which are NaN, and infinities).
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
    // The decoder allocates (and zeroes) the length the body declares: a 7-byte body
    // must not make it take 64 MiB.
    if len > body.len().saturating_mul(SNAPPY_MAX_RATIO) + 64 {
        return Err(DecodeError::ImpossibleLength(len, body.len()));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    prescan(&raw, max_samples, max_decompressed)?;
    let request = <WriteRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    let samples: usize = request.timeseries.iter().map(|t| t.samples.len()).sum();
    let mut out = Decoded {
        events: Vec::with_capacity(samples),
        stale: 0,
    };
    for series in request.timeseries {
        let mut name = None;
        let mut labels = ObjectMap::new();
        for label in series.labels {
            if label.name == "__name__" {
                name = Some(label.value).filter(|n| !n.is_empty());
            } else {
                labels.insert(label.name.into(), Value::from(label.value));
            }
        }
        let name = Value::from(name.ok_or(DecodeError::NoName)?);
        let labels = Value::Object(labels);
        for sample in series.samples {
            // NaN is the stale marker; infinities have no JSON form, so no sink could
            // send them on. Both are left out and counted.
            if !sample.value.is_finite() {
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
            (
                &[("__name__", "up"), ("job", "x")],
                &[(stale, 1), (f64::INFINITY, 2), (f64::NEG_INFINITY, 3)],
            ),
        ]);
        let d = decode(&b, 1 << 20, 100).expect("decodes");
        assert_eq!(d.stale, 3);
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
        // A 6-byte body claiming 1 MiB: snappy cannot expand it so far.
        let lie = [0xff, 0xff, 0x3f, 0x00, 0x41, 0x00];
        assert_eq!(
            decode(&lie, 64 << 20, 10).err(),
            Some(DecodeError::ImpossibleLength((1 << 20) - 1, 6))
        );
        // A million empty series: two bytes each on the wire, refused by count before
        // prost allocates a series for each.
        let empty = snap::raw::Encoder::new()
            .compress_vec(&[0x0a, 0x00].repeat(1 << 20))
            .expect("compress");
        assert_eq!(
            decode(&empty, 64 << 20, 1000).err(),
            Some(DecodeError::TooManySamples(1000))
        );
        // Many labels on many samples: each sample's event copies them.
        let labels: Vec<(String, String)> = (0..100)
            .map(|i| (format!("l{i}"), "v".repeat(100)))
            .collect();
        let labels: Vec<(&str, &str)> = std::iter::once(("__name__", "x"))
            .chain(labels.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .collect();
        let samples: Vec<(f64, i64)> = (0..1000).map(|i| (1.0, i)).collect();
        let b = body(&[(&labels, &samples)]);
        assert!(b.len() < 20_000, "{} bytes on the wire", b.len());
        assert_eq!(
            decode(&b, 1 << 20, 10_000).err(),
            Some(DecodeError::TooCostly(1 << 20))
        );
        let too_many: Vec<(String, String)> = (0..=MAX_LABELS)
            .map(|i| (format!("l{i}"), String::new()))
            .collect();
        let too_many: Vec<(&str, &str)> = too_many
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            decode(&body(&[(&too_many, &[(1.0, 1)])]), 1 << 20, 10).err(),
            Some(DecodeError::TooManyLabels(MAX_LABELS))
        );
        let garbage = snap::raw::Encoder::new()
            .compress_vec(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])
            .expect("compress");
        assert!(matches!(
            decode(&garbage, 1 << 20, 10),
            Err(DecodeError::Protobuf(_))
        ));
    }
}
