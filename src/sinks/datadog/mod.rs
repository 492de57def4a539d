//! `datadog`: events to Datadog as logs (the v2 logs intake), events (the v1 events
//! API) or metric points (series v2), for the account's `site`.
//!
//! Datadog's limits per request shape the batches, whatever `batch` says: a logs
//! request carries at most 1,000 entries and 5 MB before compression, and one log at
//! most 1 MB; a series request at most 512,000 bytes (the API's limit on the
//! compressed payload, kept here before compression so it always holds) from at most
//! 1,000 events; an event goes alone. An entry over its limit is dead-lettered with the reason instead of failing
//! its batch. The answer decides the rest: 2xx delivered; 408, 429 and 5xx retried with
//! backoff (honouring `Retry-After`); 400, 403 (a wrong key) and 413 dead-lettered.

mod entry;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use indexmap::IndexMap;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::component::{BoxFuture, BuildError, ComponentTask, SinkConfig, SinkContext};
use crate::delivery::{
    BatchConfig, DEAD_LETTER, EncodedEvents, EncodedRequest, HttpEncoder, HttpSinkParts,
    RequestConfig, Tls, run_http_sink,
};
use crate::event::Event;
use crate::net::FailureHandling;
use crate::template::Template;

/// Datadog's documented limits.
pub(crate) mod limit {
    /// Entries in one logs request.
    pub(crate) const LOG_ENTRIES: usize = 1_000;
    /// Bytes of one logs request before compression.
    pub(crate) const LOG_PAYLOAD: usize = 5_000_000;
    /// Bytes of one log.
    pub(crate) const LOG_ENTRY: usize = 1_000_000;
    /// Bytes of one series request (compressed; kept before compression here).
    pub(crate) const SERIES_PAYLOAD: usize = 512_000;
    /// Characters of an event's title.
    pub(crate) const EVENT_TITLE: usize = 100;
    /// Characters of an event's text.
    pub(crate) const EVENT_TEXT: usize = 4_000;
    /// Characters of an event's aggregation key.
    pub(crate) const AGGREGATION_KEY: usize = 100;
    /// Characters of one tag.
    pub(crate) const TAG: usize = 200;
    /// Characters of a metric name.
    pub(crate) const METRIC_NAME: usize = 200;
}

/// Sends events to Datadog as logs, events or metric points.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatadogConfig {
    /// What the events become: `logs` (default; each event a log with its fields as
    /// attributes), `events` (each event a Datadog event, as alerts show in the event
    /// stream) or `metrics` (points, as `metrics` describes).
    #[serde(default)]
    pub(crate) data: DataKind,
    /// The API key (sent as `DD-API-KEY`; keep it in `${…}`).
    pub(crate) api_key: String,
    /// The Datadog site of the account: `datadoghq.com` (default), `us3.datadoghq.com`,
    /// `us5.datadoghq.com`, `datadoghq.eu`, `ap1.datadoghq.com`, `ddog-gov.com`, …
    #[serde(default = "default_site")]
    pub(crate) site: String,
    /// A base URL replacing the site's hosts (a proxy, a test receiver); the API paths
    /// (`/api/v2/logs`, `/api/v1/events`, `/api/v2/series`) are added to it.
    pub(crate) endpoint: Option<String>,
    /// The `ddsource` of logs and the `source_type_name` of events (default `sluice`).
    #[serde(default = "default_source")]
    pub(crate) source: String,
    /// The `service` of logs, as a template; without it, the event's own `service`
    /// field stays. A template whose field is missing leaves it out.
    pub(crate) service: Option<String>,
    /// The host of logs (`hostname`), events (`host`) and metric points (a `host`
    /// resource), as a template; left out when its field is missing.
    pub(crate) hostname: Option<String>,
    /// Tags on everything sent, by name, as templates (`env: prod`,
    /// `severity: "{{ severity }}"`), sent as `name:value`; a tag whose field is
    /// missing is left out, and a value is cut to 200 characters.
    #[serde(default)]
    pub(crate) tags: IndexMap<String, String>,
    /// For `data: events`: the title, as a template (default: the event's `summary`);
    /// cut to 100 characters.
    pub(crate) title: Option<String>,
    /// For `data: events`: the text, as a template (default: the event's `description`,
    /// else its `summary`); cut to 4,000 characters.
    pub(crate) text: Option<String>,
    /// For `data: metrics`: the points each event makes, one per entry it can read.
    #[serde(default)]
    pub(crate) metrics: Vec<MetricConfig>,
    /// `gzip` (default for logs and metrics) or `none`. Events are sent uncompressed.
    #[serde(default)]
    pub(crate) compression: Compression,
    /// How many events one request carries; Datadog's limits (above) cap it.
    #[serde(default)]
    pub(crate) batch: BatchConfig,
    /// Timeouts, concurrency and rate limit.
    #[serde(default)]
    pub(crate) request: RequestConfig,
    /// Whether the server's TLS certificate is verified (default true).
    #[serde(default = "crate::units::yes")]
    pub(crate) ssl_verify: bool,
    /// PEM file with extra trusted CA certificates (for a proxy in `endpoint`).
    pub(crate) ca_file: Option<PathBuf>,
    /// Retries with backoff, then the `dead_letter` output.
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
}

/// What the events become in Datadog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DataKind {
    /// Logs, through the v2 logs intake (`http-intake.logs.<site>/api/v2/logs`).
    #[default]
    Logs,
    /// Events, through the v1 events API (`api.<site>/api/v1/events`).
    Events,
    /// Metric points, through series v2 (`api.<site>/api/v2/series`).
    Metrics,
}

/// Request body compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Compression {
    /// `Content-Encoding: gzip`.
    #[default]
    Gzip,
    /// Plain JSON.
    None,
}

/// One metric made from events.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricConfig {
    /// The metric's name, as a template (`sluice.alerts`, or `{{ name }}` for the
    /// points of the `otlp` source): it must start with a letter and hold letters,
    /// digits, `_` and `.`, at most 200 characters. In a rendered name other characters
    /// become `_`, as Datadog does; an event whose name still is not one makes no point
    /// of this metric.
    pub(crate) name: String,
    /// `count` (default), `gauge` or `rate`.
    #[serde(default, rename = "type")]
    pub(crate) kind: MetricKind,
    /// The event field (a path) holding the number. Required for gauges and rates; a
    /// count without it counts 1 per event. An event without a number there makes no
    /// point of this metric.
    pub(crate) field: Option<String>,
    /// The interval, in seconds, a count or rate covers (Datadog's `interval`).
    pub(crate) interval: Option<u64>,
    /// Tags of this metric's points besides the sink's `tags`, by name, as templates.
    #[serde(default)]
    pub(crate) tags: IndexMap<String, String>,
}

/// A Datadog metric type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MetricKind {
    /// A number of occurrences in the interval (series type 1).
    #[default]
    Count,
    /// Occurrences per second in the interval (series type 2).
    Rate,
    /// The latest value (series type 3).
    Gauge,
}

fn default_site() -> String {
    "datadoghq.com".into()
}
fn default_source() -> String {
    "sluice".into()
}

impl DatadogConfig {
    /// The URL events of this `data` go to.
    fn url(&self) -> Result<String, BuildError> {
        let path = match self.data {
            DataKind::Logs => "/api/v2/logs",
            DataKind::Events => "/api/v1/events",
            DataKind::Metrics => "/api/v2/series",
        };
        let base = match &self.endpoint {
            Some(endpoint) => {
                let url = reqwest::Url::parse(endpoint)
                    .map_err(|e| BuildError(format!("`endpoint`: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
                    return Err(BuildError("`endpoint` must be an http(s) base URL".into()));
                }
                if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
                    return Err(BuildError(
                        "`endpoint` is a base URL: no credentials, no query (the key goes in `api_key`)"
                            .into(),
                    ));
                }
                endpoint.trim_end_matches('/').to_owned()
            }
            None => {
                let site = self.site.trim();
                let valid = !site.is_empty()
                    && site.len() <= 253
                    && site.contains('.')
                    && site.split('.').all(|l| {
                        !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if !valid {
                    return Err(BuildError(format!(
                        "`site` {site:?} is not a host name (e.g. `datadoghq.com`, `datadoghq.eu`)"
                    )));
                }
                let host = match self.data {
                    DataKind::Logs => "http-intake.logs",
                    DataKind::Events | DataKind::Metrics => "api",
                };
                format!("https://{host}.{site}")
            }
        };
        Ok(format!("{base}{path}"))
    }

    fn api_key_header(&self) -> Result<HeaderValue, BuildError> {
        let key = self.api_key.trim();
        if key.is_empty() {
            return Err(BuildError(
                "`api_key` is empty (is its variable unset?): an empty secret is refused".into(),
            ));
        }
        let mut header = HeaderValue::from_str(key)
            .map_err(|_| BuildError("`api_key` holds characters a header cannot".into()))?;
        header.set_sensitive(true);
        crate::redact::register(key);
        Ok(header)
    }

    fn encoder(&self) -> Result<DatadogEncoder, BuildError> {
        let url = self.url()?;
        // `site` passes as a host name but may still not make a URL (`1.2` reads as IPv4).
        let url = reqwest::Url::parse(&url)
            .map_err(|e| BuildError(format!("the intake URL `{url}`: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("dd-api-key"),
            self.api_key_header()?,
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let compress = self.compression == Compression::Gzip && self.data != DataKind::Events;
        if compress {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        self.failure_handling.check().map_err(BuildError)?;
        self.request.check().map_err(BuildError)?;
        if self.batch.max_events == 0 || self.batch.max_bytes == 0 {
            return Err(BuildError(
                "`batch.max_events` and `batch.max_bytes` must be above zero".into(),
            ));
        }
        let only = |set: bool, option: &str, kind: &str| {
            if set {
                Err(BuildError(format!(
                    "`{option}` is for `data: {kind}` (this sink sends {})",
                    self.data_name()
                )))
            } else {
                Ok(())
            }
        };
        if self.data != DataKind::Events {
            only(self.title.is_some(), "title", "events")?;
            only(self.text.is_some(), "text", "events")?;
        }
        if self.data != DataKind::Metrics {
            only(!self.metrics.is_empty(), "metrics", "metrics")?;
        } else if self.metrics.is_empty() {
            return Err(BuildError(
                "`data: metrics` needs `metrics`: the points each event makes".into(),
            ));
        }
        if self.source.trim().is_empty() {
            return Err(BuildError("`source` is empty".into()));
        }
        let shape = entry::Shape::new(self)?;
        Ok(DatadogEncoder {
            url,
            headers,
            compress,
            data: self.data,
            shape,
        })
    }

    fn data_name(&self) -> &'static str {
        match self.data {
            DataKind::Logs => "logs",
            DataKind::Events => "events",
            DataKind::Metrics => "metrics",
        }
    }

    /// The batch options with Datadog's limits applied.
    fn effective_batch(&self) -> BatchConfig {
        let mut batch = self.batch;
        batch.max_events = match self.data {
            // Series have no limit of their own; the same one keeps the framing small.
            DataKind::Logs | DataKind::Metrics => batch.max_events.min(limit::LOG_ENTRIES),
            DataKind::Events => 1,
        };
        // The brackets and commas of a request around its entries.
        let framing = batch.max_events + 16;
        batch.max_bytes = match self.data {
            DataKind::Logs => batch.max_bytes.min(limit::LOG_PAYLOAD - framing),
            DataKind::Metrics => batch
                .max_bytes
                .min(limit::SERIES_PAYLOAD - entry::SERIES_FRAMING - framing),
            DataKind::Events => batch.max_bytes,
        };
        batch
    }
}

impl SinkConfig for DatadogConfig {
    fn type_name(&self) -> &'static str {
        "datadog"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn files(&self) -> Vec<PathBuf> {
        self.ca_file.iter().cloned().collect()
    }

    fn check(&self) -> Result<(), BuildError> {
        self.encoder().map(drop)
    }

    fn healthcheck(
        &self,
        _timeout: std::time::Duration,
    ) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(async move {
            // The API's key check: 403 when the key is wrong.
            let base = match &self.endpoint {
                Some(e) => e.trim_end_matches('/').to_owned(),
                None => format!("https://api.{}", self.site.trim()),
            };
            let mut headers = HeaderMap::new();
            headers.insert(
                HeaderName::from_static("dd-api-key"),
                self.api_key_header().map_err(|e| e.0)?,
            );
            let client = crate::net::http_client(
                self.ssl_verify,
                self.ca_file.as_deref(),
                self.request.timeout,
                crate::net::Redirects::Refuse,
            )?;
            let url = format!("{base}/api/v1/validate");
            crate::net::probe::http(&client, &url, headers, true, self.ssl_verify).await
        }))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let encoder = Arc::new(self.encoder()?);
            let tls = Tls {
                verify: self.ssl_verify,
                ca_file: self.ca_file.as_deref(),
            };
            let parts = HttpSinkParts::new(
                tls,
                self.effective_batch(),
                self.failure_handling,
                self.request,
                None,
                &cx.clock,
            )?;
            Ok(Box::pin(run_http_sink(encoder, parts, cx)) as ComponentTask)
        })
    }
}

struct DatadogEncoder {
    url: reqwest::Url,
    headers: HeaderMap,
    compress: bool,
    data: DataKind,
    shape: entry::Shape,
}

impl HttpEncoder for DatadogEncoder {
    fn encode_into(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        let entry = match self.data {
            DataKind::Logs => self.shape.log(event),
            DataKind::Events => self.shape.event(event),
            DataKind::Metrics => self.shape.series(event),
        }?;
        out.extend_from_slice(&entry);
        Ok(())
    }

    fn build_request(&self, _: &str, entries: EncodedEvents) -> Result<EncodedRequest, String> {
        let mut body = Vec::new();
        match self.data {
            DataKind::Events => body = entries.into_first(),
            DataKind::Logs | DataKind::Metrics => {
                body.extend_from_slice(if self.data == DataKind::Logs {
                    b"["
                } else {
                    b"{\"series\":["
                });
                body.reserve(entries.byte_len() + entries.len() + 4);
                for (i, e) in entries.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(e);
                }
                body.extend_from_slice(if self.data == DataKind::Logs {
                    b"]"
                } else {
                    b"]}"
                });
            }
        }
        if self.compress {
            body = crate::delivery::gzip(&body, flate2::Compression::fast())?;
        }
        Ok(EncodedRequest {
            method: reqwest::Method::POST,
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: Bytes::from(body),
        })
    }

    fn max_events(&self) -> usize {
        match self.data {
            DataKind::Logs | DataKind::Metrics => limit::LOG_ENTRIES,
            DataKind::Events => 1,
        }
    }
}

/// Parses an optional template option, naming it in the error.
fn template(name: &str, source: Option<&String>) -> Result<Option<Template>, BuildError> {
    source
        .map(|s| Template::parse(s))
        .transpose()
        .map_err(|e| BuildError(format!("`{name}`: {e}")))
}
