//! `prometheus_exporter`: events become counters, gauges and histograms, served on the
//! sink's own address for Prometheus to scrape (Vector's `log_to_metric` and
//! `prometheus_exporter` in one).
//!
//! Each entry of `metrics` reads every event: a counter adds 1 (or the number in
//! `field`), a gauge is set to `field`, a histogram observes `field`, and an
//! `active_alerts` gauge counts the keys whose latest event was `status: firing`. Labels
//! are templates over the event. An event an entry cannot read (no such field, a
//! label's field missing) is skipped by that entry and counted; the event is still
//! delivered, since recording it is all there is to do.
//!
//! The series live in memory, bounded by `max_series`; a reload that keeps the sink's
//! id and address keeps them (counters do not fall back to zero). A restart starts from
//! zero, as any exporter's counters do, and Prometheus reads that as a counter reset.

mod exposition;
mod series;
mod server;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SinkConfig, SinkContext, delivered,
};
use crate::net::ServerAuth;
use series::{Metrics, shared_state};

/// Turns events into Prometheus counters, gauges and histograms, served for scraping.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrometheusExporterConfig {
    /// Where `/metrics` is served, `host:port` (default `127.0.0.1:9598`: loopback
    /// only; use `0.0.0.0:9598` for a Prometheus on another host, with `auth`).
    #[serde(default = "default_address")]
    pub(crate) address: String,
    /// The metrics made from the events.
    pub(crate) metrics: Vec<MetricConfig>,
    /// Series held at most, all metrics together; an `active_alerts` key counts as one.
    /// Beyond it, new series are dropped and counted
    /// (`sluice_prometheus_exporter_dropped_series_total`), so hostile label values
    /// cannot take the memory (default 10000).
    #[serde(default = "default_max_series")]
    pub(crate) max_series: usize,
    /// A series that no event has updated for this long is removed. Unset (the
    /// default): series stay, since a counter that disappears and comes back loses
    /// increments in Prometheus's `increase()`; `max_series` still bounds them.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default, with = "humantime_serde")]
    pub(crate) expire_after: Option<Duration>,
    /// Scrapes must authenticate (Prometheus's `authorization` or `basic_auth`); a
    /// scrape that does not is answered 401. Unset: anyone who reaches the address
    /// may scrape.
    pub(crate) auth: Option<ServerAuth>,
    /// Longest time a scraper may take to send its request headers (default 10s).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub(crate) read_timeout: Duration,
}

/// One metric made from events.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricConfig {
    /// The metric's name (`[a-zA-Z_:][a-zA-Z0-9_:]*`; a counter's should end in
    /// `_total`).
    pub(crate) name: String,
    /// What the events make of it.
    #[serde(rename = "type")]
    pub(crate) kind: MetricKind,
    /// The `# HELP` text (default: "From sluice events.").
    pub(crate) help: Option<String>,
    /// The event field holding the number: a counter adds it (without it, 1 per
    /// event), a gauge is set to it, a histogram observes it. Required for gauges and
    /// histograms; events without a number there are skipped by this metric.
    pub(crate) field: Option<String>,
    /// For `active_alerts`: what identifies one alert (a template, default
    /// `{{ fingerprint }}`). Its latest event's `status` (`firing` or `resolved`)
    /// says whether it counts.
    pub(crate) key: Option<String>,
    /// Labels, by name, as templates over the event (`severity: "{{ severity }}"`).
    #[serde(default)]
    pub(crate) labels: IndexMap<String, String>,
    /// A histogram's bucket upper bounds, ascending (default Prometheus's: 0.005 to
    /// 10).
    pub(crate) buckets: Option<Vec<f64>>,
}

/// What the events make of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MetricKind {
    /// Only goes up: 1 per event, or the number in `field` (negative numbers are
    /// skipped).
    Counter,
    /// The latest number in `field`.
    Gauge,
    /// Observations of `field` in buckets, with their sum and count.
    Histogram,
    /// A gauge: how many alerts (by `key`) are firing now.
    ActiveAlerts,
}

fn default_address() -> String {
    "127.0.0.1:9598".into()
}
fn default_max_series() -> usize {
    10_000
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(10)
}

impl SinkConfig for PrometheusExporterConfig {
    fn type_name(&self) -> &'static str {
        "prometheus_exporter"
    }

    fn listen_address(&self) -> Option<&str> {
        Some(&self.address)
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.address.parse::<std::net::SocketAddr>().is_err() {
            return Err(BuildError(format!(
                "`address` `{}` must be ip:port (e.g. 0.0.0.0:9598)",
                self.address
            )));
        }
        if self.max_series == 0 || self.read_timeout.is_zero() {
            return Err(BuildError(
                "`max_series` and `read_timeout` must be above zero".into(),
            ));
        }
        if self.expire_after.is_some_and(|d| d.is_zero()) {
            return Err(BuildError("`expire_after` must be above zero".into()));
        }
        if let Some(auth) = &self.auth {
            auth.check().map_err(BuildError)?;
        }
        Metrics::compile(&self.metrics).map(|_| ())
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check()?;
            let metrics = Metrics::compile(&self.metrics)?;
            let state = shared_state(&cx.id, &self.address);
            state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .configure(metrics, self.max_series, self.expire_after);
            let listener = cx
                .listeners
                .bind(&self.address)
                .map_err(|e| BuildError(format!("cannot listen on {}: {e}", self.address)))?;
            let stop = tokio_util::sync::CancellationToken::new();
            let served = server::serve(
                listener,
                Arc::clone(&state),
                self.auth.clone(),
                self.read_timeout,
                stop.clone(),
            );
            let server = tokio::spawn(served);
            Ok(Box::pin(run(state, cx, stop, server)) as ComponentTask)
        })
    }
}

async fn run(
    state: Arc<Mutex<series::State>>,
    mut cx: SinkContext,
    stop: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<()>,
) -> Result<(), ComponentError> {
    let dropped = cx
        .metrics
        .counter("sluice_prometheus_exporter_dropped_series_total", &[]);
    let skipped = cx
        .metrics
        .counter("sluice_prometheus_exporter_skipped_total", &[]);
    while let Some(batch) = cx.input.recv().await {
        cx.metrics.add_received(batch.len());
        let outcome = {
            let mut state = state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = std::time::Instant::now();
            batch.iter().fold(series::Outcome::default(), |mut sum, e| {
                sum += state.record(e, now);
                sum
            })
        };
        dropped.add(outcome.dropped);
        skipped.add(outcome.skipped);
        delivered(&cx.metrics, batch);
    }
    // The listener's socket stays in the pool for a replacement; this server stops
    // accepting and finishes its scrapes.
    stop.cancel();
    let _ = server.await;
    Ok(())
}
