//! `console`: one event per line on standard output.
//!
//! Standard output carries only events (sluice logs to standard error), so
//! `sluice | jq` works. A batch is settled delivered once it is written and flushed; a
//! failed write (a closed pipe) settles it as errored and stops the sink.

use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SinkConfig, SinkContext, delivered,
};
use crate::event::{Event, EventStatus, settle_all};
use crate::telemetry::{ErrorType, Stage};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConsoleEncoding {
    /// The whole event as one line of JSON.
    #[default]
    Json,
    /// The `message` field as text (the JSON of the event when it has none).
    Text,
}

/// Prints events on standard output.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsoleConfig {
    /// How each event is written: `json` (default) or `text`.
    #[serde(default)]
    pub(crate) encoding: ConsoleEncoding,
}

impl SinkConfig for ConsoleConfig {
    fn type_name(&self) -> &'static str {
        "console"
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        let encoding = self.encoding;
        Box::pin(async move {
            Ok(Box::pin(write_lines(encoding, tokio::io::stdout(), cx)) as ComponentTask)
        })
    }
}

/// Writes every batch from `cx.input` to `out`, one event per line.
pub(crate) async fn write_lines<W: AsyncWrite + Unpin>(
    encoding: ConsoleEncoding,
    mut out: W,
    mut cx: SinkContext,
) -> Result<(), ComponentError> {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(batch) = cx.input.recv().await {
        cx.metrics.add_received(batch.len());
        buf.clear();
        for event in &batch {
            encode(encoding, event, &mut buf);
        }
        let written = async {
            out.write_all(&buf).await?;
            out.flush().await
        }
        .await;
        match written {
            Ok(()) => {
                cx.metrics.add_sent_bytes(buf.len());
                delivered(&cx.metrics, batch);
            }
            Err(e) => {
                cx.metrics
                    .add_errors(batch.len(), ErrorType::Writer, Stage::Sending);
                settle_all(batch, EventStatus::Errored);
                return Err(ComponentError::Io(e));
            }
        }
    }
    Ok(())
}

fn encode(encoding: ConsoleEncoding, event: &Event, buf: &mut Vec<u8>) {
    if encoding == ConsoleEncoding::Text {
        crate::event::message_or_json(event, buf);
    } else {
        json(event, buf);
    }
    buf.push(b'\n');
}

fn json(event: &Event, buf: &mut Vec<u8>) {
    // Serializing a `Value` into memory cannot fail: keys are strings and floats are
    // finite by construction in VRL.
    if let Err(e) = event.to_json_line(buf) {
        tracing::error!(error = %e, "event could not be serialized");
    }
}
