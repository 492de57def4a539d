//! Cost of each vendor decoder per request: parse the body and run its VRL plugin, next
//! to parsing the same bytes with serde_json alone (the same-run baseline).
//!
//! Run: `cargo bench --bench decoders`. The ratio decoder/baseline is what to compare
//! across machines.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::sources::webhook::{Decoder, Payload, Severity, Stamp};
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

fn bench(c: &mut Criterion) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webhooks");
    let headers = axum::http::HeaderMap::new();
    let metadata = Value::Null;
    let mut group = c.benchmark_group("decoders");
    for (name, fixture) in CASES {
        let body = std::fs::read(format!("{root}/{fixture}")).expect("fixture");
        let decoder = Decoder::resolve(name, Severity::Medium, true).expect("decoder");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("{name}/serde_json_baseline"), |b| {
            b.iter(|| serde_json::from_slice::<Value>(&body).expect("json"))
        });
        group.bench_function(format!("{name}/decode"), |b| {
            b.iter(|| {
                let stamp = Stamp {
                    now: chrono::Utc::now(),
                    request_id: "bench",
                };
                match decoder.parse(&headers, &body, usize::MAX) {
                    Ok(Payload::Document(doc)) => {
                        decoder.decode(doc, &metadata, &stamp).expect("decodes")
                    }
                    Ok(Payload::Events(v)) => v,
                    Err(e) => panic!("{}", e.message),
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
