//! Cost per event of each transform's `process`, on batches of 1,000 alert-like events,
//! against a no-op transform that only moves the events (the same-run baseline).
//!
//! Run: `cargo bench --bench transforms`; ns/event = 1e9 / (elements per second).

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice::component::{Transform, TransformContext, TransformOutputs};
use sluice::config::parse_texts;
use sluice::event::{Event, EventBatch, SourceId};
use sluice::telemetry::{ComponentKind, Telemetry};

const BATCH: usize = 1000;

fn events() -> EventBatch {
    let source = SourceId::intern("bench");
    (0..BATCH)
        .map(|i| {
            let json = format!(
                r#"{{"fingerprint":"fp{}","service":"svc{}","severity":"{}","latency":{},"labels":{{"team":"core","region":"eu-west-1","env":{{"name":"prod","tier":2}}}},"summary":"disk almost full on db{}"}}"#,
                i % 200,
                i % 10,
                if i % 7 == 0 { "critical" } else { "low" },
                i % 97,
                i
            );
            Event::new(serde_json::from_str(&json).expect("json"), source, chrono::Utc::now())
        })
        .collect()
}

fn build(yaml: &str) -> (Box<dyn Transform>, usize) {
    let text = format!("sources:\n  in: {{ type: generator }}\ntransforms:\n  t: {yaml}\n");
    let p = parse_texts(&[(PathBuf::from("bench.yaml"), text)], |_| None).expect("parses");
    let def = &p.transforms["t"];
    let telemetry = Telemetry::new();
    let cx = TransformContext {
        file_notices: Default::default(),
        id: Arc::from("t"),
        metrics: telemetry.component("t", ComponentKind::Transform, def.config.type_name()),
        clock: Arc::new(sluice::clock::TokioClock),
        data_dir: None,
    };
    (
        def.config.build(&cx).expect("builds"),
        def.config.outputs().len(),
    )
}

struct Noop;

impl Transform for Noop {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        out.default.extend(batch);
    }
}

fn bench(c: &mut Criterion) {
    let input = events();
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("baseline_noop", None),
        (
            "remap",
            Some(
                r#"{ type: remap, inputs: [in], source: '.severity = upcase(string!(.severity)); .team = .labels.team' }"#,
            ),
        ),
        (
            "filter",
            Some(r#"{ type: filter, inputs: [in], condition: '.severity == "critical"' }"#),
        ),
        ("flatten", Some(r#"{ type: flatten, inputs: [in] }"#)),
        ("unflatten", Some(r#"{ type: unflatten, inputs: [in] }"#)),
        (
            "enrich",
            Some(
                r#"{ type: enrich, inputs: [in], fields: { pipeline: alerts }, extra_args: "a=1,b=2", metadata: { cluster: prod-1, region: eu } }"#,
            ),
        ),
        (
            "route",
            Some(
                r#"{ type: route, inputs: [in], route: { critical: '.severity == "critical"', eu: '.labels.region == "eu-west-1"' } }"#,
            ),
        ),
        (
            "sample",
            Some(
                r#"{ type: sample, inputs: [in], rate: 10, key_field: fingerprint, always_keep: '.severity == "critical"' }"#,
            ),
        ),
        (
            "dedupe",
            Some(r#"{ type: dedupe, inputs: [in], cache_size: 10000 }"#),
        ),
        (
            "throttle",
            Some(
                r#"{ type: throttle, inputs: [in], threshold: 100, window: 1m, key_field: service }"#,
            ),
        ),
        (
            "aggregate",
            Some(
                r#"{ type: aggregate, inputs: [in], group_by: [service, severity], fields: [latency] }"#,
            ),
        ),
    ];
    let mut group = c.benchmark_group("transforms");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, yaml) in cases {
        let (mut transform, named): (Box<dyn Transform>, usize) = match yaml {
            Some(y) => build(y),
            None => (Box::new(Noop), 0),
        };
        group.bench_function(name, |b| {
            b.iter_batched(
                || input.clone(),
                |batch| {
                    let mut out = TransformOutputs::new(named);
                    transform.process(batch, &mut out);
                    transform.flush(&mut out);
                    out
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
