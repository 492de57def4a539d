//! `otlp`: events out as OTLP log records, over HTTP (protobuf, `<endpoint>/v1/logs`)
//! or gRPC (`LogsService/Export`), to an OpenTelemetry Collector or any OTLP receiver.
//!
//! Events map to records as `crate::otlp::logs` describes, so what the `otlp` source
//! took in goes out with every attribute it had. Retries follow OTLP: HTTP 429, 502,
//! 503 and 504, and gRPC `UNAVAILABLE`, `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`,
//! `OUT_OF_RANGE`, `DATA_LOSS` (and `RESOURCE_EXHAUSTED` when the server sends retry
//! details) are retried with backoff, honouring `Retry-After`; any other error
//! dead-letters the batch. A partial success (the receiver kept some records and
//! refused others) is not retried, as OTLP asks: it is logged with the receiver's
//! reason and counted as errors.

mod transport;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use indexmap::IndexMap;
use serde::Deserialize;

use crate::component::{BoxFuture, BuildError, ComponentTask, SinkConfig, SinkContext};
use crate::delivery::{
    BatchConfig, DEAD_LETTER, EncodedEvents, EncodedRequest, HttpEncoder, HttpSinkParts,
    RequestConfig, Sent, Tls, run_http_sink,
};
use crate::event::Event;
use crate::net::FailureHandling;

/// Sends events as OTLP log records over HTTP or gRPC.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OtlpSinkConfig {
    /// The receiver's base URL. With `protocol: http`, requests go to its `/v1/logs`
    /// (`http://collector:4318`); with `grpc`, it is the gRPC server
    /// (`http://collector:4317`, or `https://…` for TLS).
    pub(crate) endpoint: String,
    /// `http` (default: protobuf over HTTP) or `grpc`.
    #[serde(default)]
    pub(crate) protocol: Protocol,
    /// Headers (HTTP) or metadata (gRPC) sent with every request, such as
    /// `authorization: "Bearer ${OTLP_TOKEN}"`. Values are treated as secrets: they
    /// never reach logs or the dead letter.
    #[serde(default)]
    pub(crate) headers: IndexMap<String, String>,
    /// `gzip` (default) or `none`.
    #[serde(default)]
    pub(crate) compression: Compression,
    /// How many events one request carries.
    #[serde(default)]
    pub(crate) batch: BatchConfig,
    /// Timeouts, concurrency and rate limit.
    #[serde(default)]
    pub(crate) request: RequestConfig,
    /// PEM file with extra trusted CA certificates (added to the system's) for an
    /// `https://` endpoint. Certificates are always verified.
    pub(crate) ca_file: Option<PathBuf>,
    /// Retries with backoff, then the `dead_letter` output.
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Protocol {
    /// OTLP/HTTP with protobuf bodies.
    #[default]
    Http,
    /// OTLP/gRPC.
    Grpc,
}

/// Request compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Compression {
    /// gzip (`Content-Encoding` or `grpc-encoding`).
    #[default]
    Gzip,
    /// None.
    None,
}

impl OtlpSinkConfig {
    fn url(&self) -> Result<reqwest::Url, BuildError> {
        let url = reqwest::Url::parse(&self.endpoint)
            .map_err(|e| BuildError(format!("`endpoint`: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(BuildError("`endpoint` must be an http(s) URL".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BuildError(
                "`endpoint` carries credentials: send them in `headers` instead".into(),
            ));
        }
        if url.host_str().is_none() {
            return Err(BuildError("`endpoint` has no host".into()));
        }
        Ok(url)
    }

    fn check_options(&self) -> Result<(), BuildError> {
        self.url()?;
        transport::metadata(&self.headers).map_err(BuildError)?;
        self.failure_handling.check().map_err(BuildError)?;
        self.request.check().map_err(BuildError)?;
        if self.batch.max_events == 0 || self.batch.max_bytes == 0 {
            return Err(BuildError(
                "`batch.max_events` and `batch.max_bytes` must be above zero".into(),
            ));
        }
        Ok(())
    }
}

impl SinkConfig for OtlpSinkConfig {
    fn type_name(&self) -> &'static str {
        "otlp"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn files(&self) -> Vec<PathBuf> {
        self.ca_file.iter().cloned().collect()
    }

    fn check(&self) -> Result<(), BuildError> {
        self.check_options()
    }

    fn healthcheck(
        &self,
        _timeout: std::time::Duration,
    ) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(async move {
            let url = self.url().map_err(|e| e.0)?;
            let host = url.host_str().unwrap_or_default();
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = url
                .port_or_known_default()
                .ok_or("`endpoint` has no port")?;
            crate::net::probe::tcp(&host, port).await
        }))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check_options()?;
            let sender = transport::Sender::new(self, Arc::clone(&cx.id)).map_err(BuildError)?;
            let encoder = Arc::new(OtlpEncoder {
                url: self.url()?,
                sender: Arc::new(sender),
                gzip_body: self.compression == Compression::Gzip && self.protocol == Protocol::Http,
            });
            let tls = Tls {
                verify: true,
                ca_file: self.ca_file.as_deref(),
            };
            let parts = HttpSinkParts::new(
                tls,
                self.batch,
                self.failure_handling,
                self.request,
                None,
                &cx.clock,
            )?;
            Ok(Box::pin(run_http_sink(encoder, parts, cx)) as ComponentTask)
        })
    }
}

struct OtlpEncoder {
    /// Only for the request's record: `send` delivers through `sender`.
    url: reqwest::Url,
    sender: Arc<transport::Sender>,
    /// gRPC compresses its own messages; HTTP bodies are compressed here.
    gzip_body: bool,
}

impl HttpEncoder for OtlpEncoder {
    fn encode_into(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        // Field 1 (`resource_logs`) of an export request: requests are these,
        // concatenated, so the batch's buffer is the request body.
        let resource_logs = crate::otlp::logs::to_resource_logs(event);
        prost::encoding::message::encode(1, &resource_logs, out);
        Ok(())
    }

    fn build_request(&self, _: &str, events: EncodedEvents) -> Result<EncodedRequest, String> {
        let mut body = events.into_bytes();
        if self.gzip_body {
            body = crate::delivery::gzip(&body, flate2::Compression::fast())?;
        }
        Ok(EncodedRequest {
            method: reqwest::Method::POST,
            url: self.url.clone(),
            headers: reqwest::header::HeaderMap::new(),
            body: Bytes::from(body),
        })
    }

    fn send(&self, request: &EncodedRequest) -> Option<BoxFuture<'static, Sent>> {
        let sender = Arc::clone(&self.sender);
        let body = request.body.clone();
        Some(Box::pin(async move { sender.send(body).await }))
    }
}
