//! The edges of the hot path: JSON decoding of an NDJSON webhook body into events (the
//! `json` decoder, what every generic HTTP source request costs) and CloudEvents
//! encoding (structured and batch), each next to a same-run baseline that does the
//! bare serde_json work on the same data.
//!
//! Run: `cargo bench --bench codecs`. Vendor decoders are in `benches/decoders.rs`,
//! VRL remap and flatten in `benches/transforms.rs`, subscription matching in
//! `benches/subscription.rs`.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::alert::Severity;
use sluice::component::SinkConfig;
use sluice::delivery::EncodedEvents;
use sluice::event::{Event, SourceId};
use sluice::sinks::cloudevents::CloudEventsConfig;
use sluice::sources::webhook::{Decoder, Payload, decode_allowance};

const EVENTS: usize = 500;

fn ndjson() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..EVENTS {
        body.extend_from_slice(
            format!(
                r#"{{"id":"{:08x}-0000-4000-8000-000000000000","time":"2026-11-22T05:00:00Z","event_type":"alert","source":"grafana","status":"firing","severity":"high","service":"checkout","region":"eu-west-1","summary":"latency above 500ms on pod {i}","labels":{{"team":"payments","pod":"checkout-{i}"}}}}"#,
                i
            )
            .as_bytes(),
        );
        body.push(b'\n');
    }
    body
}

fn cloudevents(mode: &str) -> Arc<dyn sluice::delivery::HttpEncoder> {
    let yaml = format!(
        "sink: {{ endpoint: http://127.0.0.1:9/events }}\nmode: {mode}\nmetadata: {{ cluster: bench }}\nsubject: \"{{{{ service }}}}\"\n"
    );
    let config: CloudEventsConfig = serde_saphyr::from_str(&yaml).expect("config");
    config.check().expect("valid");
    config.http_encoder().expect("encoder")
}

fn bench(c: &mut Criterion) {
    let body = ndjson();
    let headers = axum::http::HeaderMap::new();
    let decoder = Decoder::resolve("json", Severity::Medium, false).expect("json decoder");

    let mut group = c.benchmark_group("json_decode");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("serde_json_baseline", |b| {
        b.iter(|| {
            serde_json::Deserializer::from_slice(&body)
                .into_iter::<serde_json::Value>()
                .count()
        })
    });
    group.bench_function("webhook_json_decoder", |b| {
        b.iter(
            || match decoder.parse(&headers, &body, usize::MAX, decode_allowance(body.len())) {
                Ok(Payload::Events(v)) => v.len(),
                Ok(Payload::Document(_)) => panic!("the json decoder passes events through"),
                Err(e) => panic!("{}", e.message),
            },
        )
    });
    group.finish();

    let source = SourceId::intern("bench");
    let events: Vec<Event> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            Event::new(
                serde_json::from_slice(l).expect("json"),
                source,
                chrono::Utc::now(),
            )
        })
        .collect();
    let mut group = c.benchmark_group("cloudevents_encode");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("serde_json_baseline", |b| {
        b.iter(|| {
            events
                .iter()
                .map(|e| serde_json::to_vec(e.value()).expect("encodes").len())
                .sum::<usize>()
        })
    });
    for mode in ["structured", "batch"] {
        let encoder = cloudevents(mode);
        group.bench_function(mode, |b| {
            b.iter(|| {
                let mut encoded = EncodedEvents::default();
                for e in &events {
                    encoded
                        .push_with(|out| encoder.encode_into(e, out))
                        .expect("encodes");
                }
                if mode == "batch" {
                    encoder
                        .build_request("", encoded)
                        .expect("request")
                        .body
                        .len()
                } else {
                    encoded.len()
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
