//! `generator`: synthetic events for tests, benches and demos.
//!
//! `format` is a JSON template in which `{{seq}}` becomes the event's sequence number
//! (from 0). With `rate`, batches are paced so the average stays at `rate` events per
//! second; when downstream is full the generator waits and does not catch up afterwards,
//! so backpressure shows up as a lower rate.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;
use tokio::time::{Instant, MissedTickBehavior};
use vrl::value::Value;

use crate::component::{BoxFuture, BuildError, ComponentTask, SourceConfig, SourceContext};
use crate::event::{BatchAck, Event};
use crate::telemetry::ComponentState;

const DEFAULT_FORMAT: &str = r#"{"message":"generated event {{seq}}","seq":{{seq}}}"#;

/// Generates synthetic events at a set rate, for tests and load.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GeneratorConfig {
    /// Events per second; unlimited when absent.
    pub(crate) rate: Option<f64>,
    /// Total events to emit; unlimited when absent.
    pub(crate) count: Option<u64>,
    /// JSON template; `{{seq}}` is replaced by the sequence number.
    #[serde(default = "default_format")]
    pub(crate) format: String,
    /// Events per batch.
    #[serde(default = "default_batch_size")]
    pub(crate) batch_size: usize,
}

fn default_format() -> String {
    DEFAULT_FORMAT.to_owned()
}

fn default_batch_size() -> usize {
    100
}

/// The parsed template: literal pieces between `{{seq}}` markers.
#[derive(Debug, Clone)]
struct Template {
    pieces: Vec<String>,
    constant: Option<Value>,
}

impl Template {
    fn parse(format: &str) -> Result<Self, BuildError> {
        let pieces: Vec<String> = format.split("{{seq}}").map(str::to_owned).collect();
        let constant = if pieces.len() == 1 {
            Some(parse_json(format)?)
        } else {
            None
        };
        let template = Self { pieces, constant };
        template.render(0)?;
        Ok(template)
    }

    fn render(&self, seq: u64) -> Result<Value, BuildError> {
        if let Some(v) = &self.constant {
            return Ok(v.clone());
        }
        let seq = seq.to_string();
        parse_json(&self.pieces.join(&seq))
    }
}

fn parse_json(text: &str) -> Result<Value, BuildError> {
    serde_json::from_str::<Value>(text).map_err(|e| {
        BuildError(format!(
            "`format` is not valid JSON once `{{{{seq}}}}` is replaced: {e}"
        ))
    })
}

impl GeneratorConfig {
    fn template(&self) -> Result<Template, BuildError> {
        if let Some(rate) = self.rate
            && !(rate > 0.0 && rate.is_finite())
        {
            return Err(BuildError(format!(
                "`rate` must be a positive number, got {rate}"
            )));
        }
        if self.batch_size == 0 {
            return Err(BuildError("`batch_size` must be at least 1".into()));
        }
        Template::parse(&self.format)
    }
}

impl SourceConfig for GeneratorConfig {
    fn type_name(&self) -> &'static str {
        "generator"
    }

    fn check(&self) -> Result<(), BuildError> {
        self.template().map(drop)
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let template = self.template()?;
            let config = self.clone();
            Ok(Box::pin(run(config, template, cx)) as ComponentTask)
        })
    }
}

async fn run(
    config: GeneratorConfig,
    template: Template,
    mut cx: SourceContext,
) -> Result<(), crate::component::ComponentError> {
    let mut ticker = config.rate.map(|rate| {
        let period = Duration::from_secs_f64(config.batch_size as f64 / rate);
        let mut t = tokio::time::interval_at(Instant::now(), period.max(Duration::from_micros(10)));
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    let total = config.count.unwrap_or(u64::MAX);
    let mut seq: u64 = 0;
    let source = cx.id;
    while seq < total {
        if let Some(t) = ticker.as_mut() {
            tokio::select! {
                biased;
                _ = cx.shutdown.cancelled() => break,
                _ = t.tick() => {}
            }
        } else if cx.shutdown.is_cancelled() {
            break;
        } else {
            // Unpaced, the loop may never wait on anything; give other tasks on this
            // worker their turn.
            tokio::task::coop::consume_budget().await;
        }
        let n = (total - seq).min(config.batch_size as u64) as usize;
        let now = Utc::now();
        let ack = BatchAck::fire_and_forget(n, Some(Arc::clone(cx.telemetry.latency())));
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let value = template
                .render(seq)
                .map_err(|e| crate::component::ComponentError::Other(e.0))?;
            batch.push(Event::new(value, source, now).with_ack(ack.event_ack()));
            seq += 1;
        }
        drop(ack);
        cx.metrics.add_received(n);
        tokio::select! {
            biased;
            () = cx.out.send(batch) => {}
            // A shutdown while blocked by backpressure must not hang the generator; the
            // partly sent batch is settled as failed by the dropped future.
            _ = cx.shutdown.cancelled() => break,
        }
    }
    tracing::info!(component_id = %cx.id, emitted = seq, "generator finished");
    cx.metrics.set_state(ComponentState::Stopped);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_replaces_seq_in_numbers_and_strings() {
        let t = Template::parse(r#"{"n":{{seq}},"s":"id-{{seq}}"}"#).expect("valid");
        let v = t.render(42).expect("renders");
        assert_eq!(
            serde_json::to_string(&v).expect("serializes"),
            r#"{"n":42,"s":"id-42"}"#
        );
    }

    #[test]
    fn invalid_template_is_a_build_error() {
        let e = Template::parse(r#"{"n": {{seq}"#).expect_err("invalid JSON");
        assert!(e.0.contains("not valid JSON"), "{e}");
    }
}
