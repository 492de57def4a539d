//! `stdin`: NDJSON or plain lines from standard input, until EOF.
//!
//! Lines are batched while more input is already buffered, so a pipe full of lines moves
//! in large batches and an interactive line moves at once. An NDJSON line that is not
//! valid JSON is kept as `{ "message": line }`, counted as an error and logged.

use std::sync::Arc;

use chrono::Utc;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use vrl::value::Value;

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SourceConfig, SourceContext,
};
use crate::event::{BatchAck, Event, SourceId};
use crate::telemetry::ComponentState;
use crate::telemetry::{ErrorType, Stage};

const MAX_BATCH: usize = 1000;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StdinDecoding {
    /// One JSON value per line.
    #[default]
    Ndjson,
    /// Each line becomes `{ "message": line }`.
    Lines,
}

/// Reads NDJSON or lines from standard input.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StdinConfig {
    /// How each line becomes an event: `ndjson` (default) or `lines`.
    #[serde(default)]
    pub(crate) decoding: StdinDecoding,
    /// Longer lines are truncated (and counted as errors).
    #[serde(default = "default_max_line_bytes")]
    pub(crate) max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    1024 * 1024
}

impl SourceConfig for StdinConfig {
    fn type_name(&self) -> &'static str {
        "stdin"
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        let config = self.clone();
        Box::pin(async move {
            Ok(Box::pin(read_lines(config, tokio::io::stdin(), cx)) as ComponentTask)
        })
    }
}

/// Reads `input` to its end (or until shutdown), emitting one event per line.
pub(crate) async fn read_lines<R: AsyncRead + Unpin>(
    config: StdinConfig,
    input: R,
    mut cx: SourceContext,
) -> Result<(), ComponentError> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut line = Vec::new();
    let mut batch = Vec::new();
    let mut line_no: u64 = 0;
    let source = cx.id;
    loop {
        line.clear();
        let read = tokio::select! {
            biased;
            _ = cx.shutdown.cancelled() => break,
            r = reader.read_until(b'\n', &mut line) => r?,
        };
        if read == 0 {
            break;
        }
        cx.metrics.add_received_bytes(read);
        line_no += 1;
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.len() > config.max_line_bytes {
            line.truncate(config.max_line_bytes);
            cx.metrics.add_errors(1, ErrorType::Parse, Stage::Receiving);
            tracing::warn!(component_id = %cx.id, line = line_no, limit = config.max_line_bytes, "line truncated");
        }
        if line.is_empty() {
            continue;
        }
        batch.push(decode(&config, &line, line_no, &cx));
        if batch.len() >= MAX_BATCH || reader.buffer().is_empty() {
            flush(&mut batch, source, &mut cx).await;
        }
    }
    flush(&mut batch, source, &mut cx).await;
    cx.metrics.set_state(ComponentState::Stopped);
    Ok(())
}

fn decode(config: &StdinConfig, line: &[u8], line_no: u64, cx: &SourceContext) -> Value {
    let text = || Value::from(String::from_utf8_lossy(line).into_owned());
    match config.decoding {
        StdinDecoding::Lines => text(),
        StdinDecoding::Ndjson => match serde_json::from_slice::<Value>(line) {
            Ok(v) => v,
            Err(e) => {
                cx.metrics.add_errors(1, ErrorType::Parse, Stage::Receiving);
                tracing::warn!(component_id = %cx.id, line = line_no, error = %e, "invalid JSON line kept as message");
                text()
            }
        },
    }
}

async fn flush(values: &mut Vec<Value>, source: SourceId, cx: &mut SourceContext) {
    if values.is_empty() {
        return;
    }
    let now = Utc::now();
    let ack = BatchAck::fire_and_forget(values.len(), Some(Arc::clone(cx.telemetry.latency())));
    let batch: Vec<Event> = values
        .drain(..)
        .map(|v| Event::new(v, source, now).with_ack(ack.event_ack()))
        .collect();
    cx.metrics.add_received(batch.len());
    cx.out.send(batch).await;
}
