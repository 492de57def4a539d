//! `sluice test`: the unit tests declared under `tests:` in a pipeline file.
//!
//! Transforms are driven synchronously through the pipeline's real graph: each input
//! is injected at its `insert_at` transform, every transform's outputs flow to the
//! transforms that read them, and at the end every transform is flushed (upstream
//! first) so aggregations emit. Sources and sinks are not started. An `outputs` entry
//! passes when at least one event reached `extract_from` and every such event satisfies
//! every condition; `no_outputs_from` entries must receive nothing.

use std::collections::HashMap;
use std::sync::Arc;

use crate::component::{Transform, TransformContext, TransformOutputs};
use crate::config::{OutputRef, Pipeline, PipelineTest};
use crate::event::{Event, EventBatch};
use crate::program::{self, Mode, Outcome, ProgramSource, Runner};
use crate::telemetry::{ComponentKind, Telemetry};

/// The result of one test.
#[derive(Debug)]
pub(crate) struct TestReport {
    pub(crate) name: String,
    /// Empty when the test passed.
    pub(crate) failures: Vec<String>,
}

struct Harness<'a> {
    pipeline: &'a Pipeline,
    transforms: HashMap<String, (Box<dyn Transform>, Vec<String>)>,
    collected: HashMap<String, Vec<Event>>,
}

/// Runs one test of `pipeline` (its transforms are built afresh for it).
pub(crate) fn run_test(pipeline: &Pipeline, test: &PipelineTest) -> TestReport {
    run_one(pipeline, test)
}

fn run_one(pipeline: &Pipeline, test: &PipelineTest) -> TestReport {
    let mut failures = Vec::new();
    let mut harness = Harness {
        pipeline,
        transforms: HashMap::new(),
        collected: HashMap::new(),
    };
    let telemetry = Telemetry::new();
    for (id, def) in &pipeline.transforms {
        let cx = TransformContext {
            file_notices: Default::default(),
            id: Arc::from(id.as_str()),
            metrics: telemetry.component(id, ComponentKind::Transform, def.config.type_name()),
            clock: Arc::new(crate::clock::TokioClock),
            data_dir: None,
        };
        match def.config.build(&cx) {
            Ok(t) => {
                harness
                    .transforms
                    .insert(id.clone(), (t, def.config.outputs()));
            }
            Err(e) => failures.push(format!("transform `{id}` does not build: {e}")),
        }
    }
    if failures.is_empty() {
        for input in &test.inputs {
            if !pipeline.transforms.contains_key(&input.insert_at) {
                failures.push(format!(
                    "insert_at `{}` is not a transform of this pipeline",
                    input.insert_at
                ));
                continue;
            }
            let values = input.value.iter().chain(&input.values);
            let batch: EventBatch = values
                .map(|v| {
                    Event::new(
                        vrl::value::Value::from(v.clone()),
                        crate::event::SourceId::intern("test"),
                        chrono::Utc::now(),
                    )
                })
                .collect();
            harness.push(&input.insert_at, batch);
        }
        for id in topological(pipeline) {
            harness.flush(&id);
        }
        failures.extend(harness.check(test));
    }
    TestReport {
        name: test.name.clone(),
        failures,
    }
}

impl Harness<'_> {
    fn push(&mut self, id: &str, batch: EventBatch) {
        let Some((transform, names)) = self.transforms.get_mut(id) else {
            return;
        };
        let mut out = TransformOutputs::new(names.len());
        transform.process(batch, &mut out);
        self.route(id, out);
    }

    fn flush(&mut self, id: &str) {
        let Some((transform, names)) = self.transforms.get_mut(id) else {
            return;
        };
        let mut out = TransformOutputs::new(names.len());
        transform.flush(&mut out);
        self.route(id, out);
    }

    fn route(&mut self, id: &str, out: TransformOutputs) {
        let names = self
            .transforms
            .get(id)
            .map(|(_, n)| n.clone())
            .unwrap_or_default();
        let outputs =
            std::iter::once((None, out.default)).chain(names.into_iter().map(Some).zip(out.named));
        for (name, events) in outputs {
            if events.is_empty() {
                continue;
            }
            let key = OutputRef {
                component: id.to_owned(),
                output: name,
            };
            self.collected
                .entry(key.to_string())
                .or_default()
                .extend(events.iter().cloned());
            let consumers: Vec<String> = self
                .pipeline
                .graph
                .consumers_of(&key)
                .filter(|c| self.pipeline.transforms.contains_key(*c))
                .map(str::to_owned)
                .collect();
            for consumer in consumers {
                self.push(&consumer, events.clone());
            }
        }
    }

    fn check(&self, test: &PipelineTest) -> Vec<String> {
        let mut failures = Vec::new();
        for expected in &test.outputs {
            let events = self
                .collected
                .get(&expected.extract_from)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if events.is_empty() {
                failures.push(format!("no event reached `{}`", expected.extract_from));
                continue;
            }
            for condition in &expected.conditions {
                let program = match program::compile(
                    &ProgramSource::Inline(condition.clone()),
                    Mode::Condition,
                ) {
                    Ok(p) => p,
                    Err(e) => {
                        failures.push(format!("condition `{condition}` does not compile: {e}"));
                        continue;
                    }
                };
                let mut runner = Runner::new(program);
                for event in events {
                    let (mut value, mut meta) =
                        (event.value().clone(), event.meta.vrl.get().clone());
                    if !matches!(
                        runner.run(&mut value, &mut meta),
                        Outcome::Done(vrl::value::Value::Boolean(true))
                    ) {
                        let json = serde_json::to_string(event.value()).unwrap_or_default();
                        failures.push(format!(
                            "condition `{condition}` failed at `{}` for {json}",
                            expected.extract_from
                        ));
                    }
                }
            }
        }
        for id in &test.no_outputs_from {
            if let Some(events) = self.collected.get(id).filter(|e| !e.is_empty()) {
                let json = serde_json::to_string(events[0].value()).unwrap_or_default();
                failures.push(format!(
                    "`{id}` was expected to receive nothing but got {} event(s), e.g. {json}",
                    events.len()
                ));
            }
        }
        failures
    }
}

/// Transform ids, each after every transform it reads.
fn topological(p: &Pipeline) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut remaining: Vec<&String> = p.transforms.keys().collect();
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|id| {
            let ready = p
                .graph
                .inputs
                .get(id.as_str())
                .into_iter()
                .flatten()
                .all(|i| !p.transforms.contains_key(&i.component) || order.contains(&i.component));
            if ready {
                order.push((*id).clone());
            }
            !ready
        });
        if remaining.len() == before {
            // A cycle; validation rejects those, so this only guards against a loop.
            order.extend(remaining.drain(..).cloned());
        }
    }
    order
}
