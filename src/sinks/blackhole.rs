//! `blackhole`: accepts and counts events, for benches and for measuring the rest of a
//! pipeline. With `print_interval` it logs the count and rate periodically.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SinkConfig, SinkContext, delivered,
};

/// Drops every event (counted), for tests and benchmarks.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlackholeConfig {
    /// Log the running count this often (e.g. `10s`).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default, with = "humantime_serde")]
    pub(crate) print_interval: Option<Duration>,
}

impl SinkConfig for BlackholeConfig {
    fn type_name(&self) -> &'static str {
        "blackhole"
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.print_interval.is_some_and(|i| i.is_zero()) {
            return Err(BuildError("`print_interval` must be above zero".into()));
        }
        Ok(())
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        let interval = self.print_interval;
        Box::pin(async move {
            self.check()?;
            Ok(Box::pin(run(interval, cx)) as ComponentTask)
        })
    }
}

async fn run(interval: Option<Duration>, mut cx: SinkContext) -> Result<(), ComponentError> {
    let mut total: u64 = 0;
    let mut since_print: u64 = 0;
    let mut last_print = Instant::now();
    while let Some(batch) = cx.input.recv().await {
        let n = batch.len() as u64;
        cx.metrics.add_received(batch.len());
        delivered(&cx.metrics, batch);
        total += n;
        since_print += n;
        if let Some(every) = interval
            && last_print.elapsed() >= every
        {
            let secs = last_print.elapsed().as_secs_f64();
            tracing::info!(component_id = %cx.id, total, rate = since_print as f64 / secs, "blackhole received events");
            since_print = 0;
            last_print = Instant::now();
        }
    }
    tracing::info!(component_id = %cx.id, total, "blackhole finished");
    Ok(())
}
