//! Cost of each vendor decoder per request: parse the body and run its VRL plugin, next
//! to parsing the same bytes with serde_json alone (the same-run baseline).
//!
//! Run: `cargo bench --bench decoders`. The ratio decoder/baseline is what to compare
//! across machines.
//!
//! `decoders_scaling` decodes payloads of 10, 1,000 and 10,000 alerts per decoder (for
//! the one-alert-per-payload vendors, GCP and Azure, 10 to 10,000 labels): the time per
//! alert must stay flat. A plugin that grows a collection with `push` or `set` in a loop
//! shows up here as a 100-fold jump per size step.
//!
//! `ndjson_kept` reads the NDJSON body of the load scenarios (500 events of 200 bytes)
//! the way the `json` decoder keeps events as text (checked, never built), next to
//! serde_json skipping the same values (`IgnoredAny`, which checks less: no nesting
//! limit, no repeated keys, no size estimate).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::alert::Severity;
use sluice::sources::webhook::{Decoder, Payload, Stamp, decode_allowance};
use vrl::value::Value;

const CASES: &[(&str, &str)] = &[
    (
        "grafana",
        "grafana/grafana-docs_unified_webhook_firing_2alerts_values.json",
    ),
    (
        "alertmanager",
        "grafana/alertmanager_oncall-example_firing_2alerts.json",
    ),
    (
        "aws_sns",
        "aws/lambda-go_cloudwatch-alarm-sns-payload-single-metric.json",
    ),
    (
        "aws_eventbridge",
        "aws/eventbridge_cloudwatch_alarm_state_change_single_metric.json",
    ),
    (
        "gcp_monitoring",
        "gcp/monitoring_pubsub-channel_v1.2_open_flanksource-capture.json",
    ),
    (
        "azure_monitor",
        "azure/common_schema_metric_resolved_docs.json",
    ),
    (
        "oci",
        "oci/alarm_REPEAT_grouped_2dimensions_v1.1_docs-example.json",
    ),
    ("cloudevents", "cloudevents/spec_json_batch.json"),
];

/// What a webhook route does with a body: parse it, run the plugin.
fn decode(decoder: &Decoder, body: &[u8]) -> Vec<Value> {
    let stamp = Stamp {
        now: chrono::Utc::now(),
        request_id: "bench",
    };
    let headers = axum::http::HeaderMap::new();
    match decoder.parse(&headers, body, usize::MAX, decode_allowance(body.len())) {
        Ok(Payload::Document(doc)) => decoder.decode(doc, &Value::Null, &stamp).expect("decodes"),
        // Parsed here, as the first component to read them would.
        Ok(Payload::Events(v)) => v.into_iter().map(|p| p.into_value()).collect(),
        Err(e) => panic!("{}: {}", decoder.name, e.message),
    }
}

fn bench(c: &mut Criterion) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webhooks");
    let mut group = c.benchmark_group("decoders");
    for (name, fixture) in CASES {
        let body = std::fs::read(format!("{root}/{fixture}")).expect("fixture");
        let decoder = Decoder::resolve(name, Severity::Medium, true).expect("decoder");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("{name}/serde_json_baseline"), |b| {
            b.iter(|| serde_json::from_slice::<Value>(&body).expect("json"))
        });
        group.bench_function(format!("{name}/decode"), |b| {
            b.iter(|| decode(&decoder, &body))
        });
    }
    group.finish();
}

/// A payload of `n` alerts (or labels) for a decoder, built from its fixture.
fn scaled(name: &str, n: usize) -> Vec<u8> {
    use serde_json::{Value as Json, json};
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webhooks");
    let read = |fixture: &str| -> Json {
        serde_json::from_slice(&std::fs::read(format!("{root}/{fixture}")).expect("fixture"))
            .expect("JSON")
    };
    let doc = match name {
        "grafana" | "alertmanager" => {
            let mut doc = read(CASES.iter().find(|(n, _)| *n == name).expect("case").1);
            let one = doc["alerts"][0].clone();
            doc["alerts"] = (0..n)
                .map(|i| {
                    let mut a = one.clone();
                    a["labels"]["alertname"] = json!(format!("Alert{i}"));
                    a["fingerprint"] = json!(format!("{i:016x}"));
                    a
                })
                .collect();
            doc
        }
        "aws_sns" | "aws_eventbridge" => {
            let one = read("aws/eventbridge_cloudwatch_alarm_state_change_single_metric.json");
            (0..n)
                .map(|i| {
                    let mut e = one.clone();
                    e["detail"]["alarmName"] = json!(format!("Alarm{i}"));
                    e
                })
                .collect()
        }
        "gcp_monitoring" => {
            let mut doc = read("gcp/monitoring_pubsub-channel_v1.2_open_flanksource-capture.json");
            doc["incident"]["policy_user_labels"] = (0..n)
                .map(|i| (format!("label{i}"), json!(format!("value{i}"))))
                .collect::<serde_json::Map<_, _>>()
                .into();
            doc
        }
        "azure_monitor" => {
            let mut doc = read(
                "azure/common_schema_test-action_metric_static_fired_customProperties_docs.json",
            );
            doc["data"]["customProperties"] = (0..n)
                .map(|i| (format!("prop{i}"), json!(format!("value{i}"))))
                .collect::<serde_json::Map<_, _>>()
                .into();
            doc
        }
        "oci" => {
            let mut doc = read("oci/alarm_REPEAT_grouped_2dimensions_v1.1_docs-example.json");
            let one = doc["alarmMetaData"][0].clone();
            doc["alarmMetaData"] = (0..n)
                .map(|i| {
                    let mut e = one.clone();
                    e["id"] = json!(format!("ocid1.alarm.oc1.{i}"));
                    e
                })
                .collect();
            doc
        }
        "cloudevents" => {
            let one = read("cloudevents/spec_json_batch.json")[0].clone();
            (0..n)
                .map(|i| {
                    let mut e = one.clone();
                    e["id"] = json!(format!("event-{i}"));
                    e
                })
                .collect()
        }
        other => panic!("no scaled payload for {other}"),
    };
    serde_json::to_vec(&doc).expect("JSON")
}

fn scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("decoders_scaling");
    group.sample_size(10);
    for (name, _) in CASES {
        let decoder = Decoder::resolve(name, Severity::Medium, true).expect("decoder");
        for n in [10, 1_000, 10_000] {
            let body = scaled(name, n);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(format!("{name}/{n}"), |b| {
                b.iter(|| decode(&decoder, &body))
            });
        }
    }
    group.finish();
}

fn ndjson_kept(c: &mut Criterion) {
    let mut body = Vec::new();
    for n in 0..500 {
        let head = format!(
            "{{\"bench_mark\":\"1733000000000000000-{n}\",\"n\":{n},\"event_type\":\"log\",\"service\":\"checkout\",\"severity\":\"high\",\"region\":\"eu-west-1\",\"message\":\""
        );
        body.extend_from_slice(head.as_bytes());
        body.extend(std::iter::repeat_n(b'x', 200 - head.len() - 2));
        body.extend_from_slice(b"\"}\n");
    }
    let decoder = Decoder::resolve("json", Severity::Medium, true).expect("decoder");
    let headers = axum::http::HeaderMap::new();
    let mut group = c.benchmark_group("ndjson_kept");
    group.throughput(Throughput::Elements(500));
    group.bench_function("serde_json_ignored_any_baseline", |b| {
        b.iter(|| {
            let mut n = 0;
            for value in
                serde_json::Deserializer::from_slice(&body).into_iter::<serde::de::IgnoredAny>()
            {
                value.expect("json");
                n += 1;
            }
            n
        })
    });
    group.bench_function("json_decoder", |b| {
        b.iter(
            || match decoder.parse(&headers, &body, 1000, decode_allowance(body.len())) {
                Ok(Payload::Events(events)) => events.len(),
                _ => panic!("NDJSON events"),
            },
        )
    });
    group.finish();
}

criterion_group!(benches, bench, scaling, ndjson_kept);
criterion_main!(benches);
