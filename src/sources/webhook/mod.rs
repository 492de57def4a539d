//! `webhook`: the front door for alerts. One listener serves any number of `routes`,
//! each with its own path, decoder and authentication, so one port takes Grafana,
//! Alertmanager, AWS SNS, EventBridge, GCP, Azure, OCI and CloudEvents at once.
//!
//! A request is answered once its events are settled: 200 when all were delivered, 503
//! (retry) when one errored, 500 when one was rejected, and 202 when all of them entered
//! the pipeline but their delivery outlasts `request_timeout` (the pipeline goes on
//! retrying them; a sender that retried would duplicate them). A request's events enter
//! the pipeline together or not at all. Before that: 401 for failed authentication (no
//! detail), 403 for a bad, stale or foreign SNS message, 415 for a `Content-Type` that is
//! not JSON or an unknown `Content-Encoding`, 413 over `max_body_bytes` (also after
//! decompression, and after reading the rest of the body briefly so the sender sees the
//! answer), over `max_events_per_request` or over `decode_timeout`, 408 for a body that
//! arrives slower than `read_timeout`, 400 whose JSON body names the decoder, the problem
//! and the JSON path for a payload that cannot be read, and 503 with `Retry-After` when
//! the pipeline or `memory_limit` stays full for `request_timeout`.
//!
//! Untrusted bytes are bounded at every step: the body is charged to `memory_limit`
//! before it is read and again, by its decoded size, before it is decoded; decoding runs
//! on the blocking pool, a few requests at a time, so the async workers keep answering
//! health checks and other senders.
//!
//! Invariant: the listener is bound while building, so a port in use stops the pipeline
//! from starting; on shutdown the listener closes first and in-flight requests still get
//! their answer.

mod auth;
mod body;
mod bounded_json;
mod cloudevents;
pub(crate) mod decoder;
mod media_type;
mod raw_events;
mod reply;
mod route;
mod sns;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde::Deserialize;
use tokio::sync::Mutex;

pub(crate) use self::auth::AuthConfig;
pub(crate) use self::body::parse_json_stream;
pub use self::decoder::{Decoder, Payload, Stamp};
pub(crate) use self::raw_events::read_by_serde;
pub(crate) use self::sns::{SnsConfig, signed_parts};
use crate::alert::Severity;
pub use crate::buffer::cost::decode_allowance;
use crate::buffer::cost::{DECODE_BASE_BYTES, DECODE_COST_PER_BYTE, LISTENER_DECODE_BUDGET};
use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SourceConfig, SourceContext,
};
use crate::net::{ServerTls, tls_acceptor};

/// Takes HTTP webhooks: vendor alert payloads decoded into normalized alerts, or generic JSON.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookConfig {
    /// `host:port` to listen on.
    pub(crate) address: String,
    /// One route without a `routes:` list: path (default `/`), decoder (default `json`),
    /// auth, sns, default_severity, capture_headers.
    pub(crate) path: Option<String>,
    /// How the route reads a body (default `json`: events as sent): `grafana`,
    /// `alertmanager`, `aws_sns`, `aws_eventbridge`, `gcp_monitoring`, `azure_monitor`,
    /// `oci`, `cloudevents`, or the name of a `decoders/<name>.vrl` plugin.
    pub(crate) decoder: Option<String>,
    pub(crate) auth: Option<AuthConfig>,
    pub(crate) sns: Option<SnsConfig>,
    pub(crate) default_severity: Option<Severity>,
    /// Several paths on this listener, each with its decoder and auth.
    #[serde(default)]
    pub(crate) routes: Vec<RouteConfig>,
    /// Largest accepted body, before and after decompression (413 above it).
    #[serde(default = "default_max_body_bytes")]
    pub(crate) max_body_bytes: usize,
    /// Most events one request may carry (413 above it, and none of them is accepted).
    #[serde(default = "default_max_events_per_request")]
    pub(crate) max_events_per_request: usize,
    /// Longest time decoding one body may take (413 above it: the same body would take
    /// as long again). Decoding runs off the async workers, a few bodies at a time,
    /// except for an uncompressed body of at most 16 KiB for a built-in decoder, which
    /// is decoded at once (its work is bounded by its size).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_decode_timeout", with = "humantime_serde")]
    pub(crate) decode_timeout: Duration,
    /// How long a request may wait for room in the pipeline and for its events to be
    /// delivered before it is answered 503.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub(crate) request_timeout: Duration,
    /// Longest time a client may take to send its headers, and then its body.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub(crate) read_timeout: Duration,
    /// Request headers copied into each event's `%headers` metadata (all routes).
    #[serde(default)]
    pub(crate) capture_headers: Vec<String>,
    /// Keep the vendor's original object in each decoded event's `raw` field.
    #[serde(default = "crate::units::yes")]
    pub(crate) keep_raw: bool,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub(crate) tls: Option<ServerTls>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteConfig {
    /// The URL path this route answers (`/grafana`).
    pub(crate) path: String,
    /// How the route reads a body (default `json`): a built-in vendor decoder or the
    /// name of a `decoders/<name>.vrl` plugin, as the listener's `decoder`.
    #[serde(default = "default_decoder")]
    pub(crate) decoder: String,
    pub(crate) auth: Option<AuthConfig>,
    /// Only for the `aws_sns` decoder.
    pub(crate) sns: Option<SnsConfig>,
    /// Severity of a decoded alert whose vendor gives none.
    #[serde(default)]
    pub(crate) default_severity: Severity,
    /// Added to the listener-wide `capture_headers`.
    #[serde(default)]
    pub(crate) capture_headers: Vec<String>,
}

/// What a vendor decoder takes per byte of body, parsing and its VRL plugin together (the
/// plugin copies parts of the payload into each event and its `raw`): measured at 70 to
/// 150 on the largest vendor payloads. Charged, not enforced: the plugins are linear in
/// what parsing let through.
pub(crate) const PLUGIN_COST_PER_BYTE: usize = 160;

/// What a request with a body of `bytes` is charged to `memory_limit` before it is read:
/// the body, and what decoding it takes. `tests/decode_memory.rs` measures that the
/// allocator's peak stays under it for every body accepted.
pub fn request_charge(bytes: usize, plugin: bool) -> usize {
    let per_byte = if plugin {
        PLUGIN_COST_PER_BYTE
    } else {
        DECODE_COST_PER_BYTE
    };
    bytes
        .saturating_mul(1 + per_byte)
        .saturating_add(DECODE_BASE_BYTES)
}

fn default_decoder() -> String {
    "json".into()
}

fn default_max_body_bytes() -> usize {
    10 * 1024 * 1024
}

fn default_max_events_per_request() -> usize {
    10_000
}

fn default_decode_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_read_timeout() -> Duration {
    Duration::from_secs(10)
}

impl WebhookConfig {
    /// The routes, with the single-route shorthand expanded.
    pub(crate) fn resolved_routes(&self) -> Result<Vec<RouteConfig>, BuildError> {
        let shorthand = self.path.is_some()
            || self.decoder.is_some()
            || self.auth.is_some()
            || self.sns.is_some()
            || self.default_severity.is_some();
        if !self.routes.is_empty() {
            if shorthand {
                return Err(BuildError(
                    "give `path`, `decoder`, `auth`, `sns` and `default_severity` inside each of `routes`, not beside them".into(),
                ));
            }
            return Ok(self.routes.clone());
        }
        Ok(vec![RouteConfig {
            path: self.path.clone().unwrap_or_else(|| "/".into()),
            decoder: self.decoder.clone().unwrap_or_else(default_decoder),
            auth: self.auth.clone(),
            sns: self.sns.clone(),
            default_severity: self.default_severity.unwrap_or_default(),
            capture_headers: Vec::new(),
        }])
    }

    fn check_routes(&self) -> Result<Vec<RouteConfig>, BuildError> {
        let routes = self.resolved_routes()?;
        let mut seen = std::collections::HashSet::new();
        for (i, r) in routes.iter().enumerate() {
            let at = |msg: String| {
                if self.routes.is_empty() {
                    BuildError(msg)
                } else {
                    BuildError(format!("`routes[{i}]` ({}): {msg}", r.path))
                }
            };
            if !r.path.starts_with('/') {
                return Err(at(format!("`path` must start with `/`, got `{}`", r.path)));
            }
            if !seen.insert(r.path.as_str()) {
                return Err(at(format!("the path `{}` is used by two routes", r.path)));
            }
            if let Some(a) = &r.auth {
                a.check().map_err(|e| at(e.0))?;
            }
            if let Some(sns) = &r.sns {
                sns.check().map_err(|e| at(e.0))?;
            }
            if r.sns.is_some() && r.decoder != "aws_sns" {
                return Err(at(
                    "`sns` options only apply to the `aws_sns` decoder".into()
                ));
            }
            for h in self.capture_headers.iter().chain(&r.capture_headers) {
                axum::http::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| at(format!("`capture_headers`: `{h}` is not a header name")))?;
            }
        }
        Ok(routes)
    }
}

/// Decodes one listener runs at once: one per core, at least two, so a slow body
/// leaves room for the next and the blocking pool never holds more than a few.
fn decode_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

impl SourceConfig for WebhookConfig {
    fn type_name(&self) -> &'static str {
        "webhook"
    }

    fn listen_address(&self) -> Option<&str> {
        Some(&self.address)
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.max_body_bytes == 0 {
            return Err(BuildError("`max_body_bytes` must be above zero".into()));
        }
        if self.max_events_per_request == 0 {
            return Err(BuildError(
                "`max_events_per_request` must be above zero".into(),
            ));
        }
        if self.decode_timeout.is_zero() {
            return Err(BuildError("`decode_timeout` must be above zero".into()));
        }
        for route in self.check_routes()? {
            decoder::Decoder::resolve(&route.decoder, route.default_severity, self.keep_raw)
                .map_err(|e| BuildError(format!("route {}: {e}", route.path)))?;
        }
        if let Some(tls) = &self.tls {
            tls_acceptor(tls).map_err(BuildError)?;
        }
        Ok(())
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for route in self.resolved_routes().unwrap_or_default() {
            files.extend(decoder::plugin_file(&route.decoder));
            if let Some(sns) = &route.sns {
                files.extend(sns.certificates.values().cloned());
            }
        }
        if let Some(tls) = &self.tls {
            files.push(tls.cert.clone());
            files.push(tls.key.clone());
        }
        files
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let routes = self.check_routes()?;
            let tls = self
                .tls
                .as_ref()
                .map(tls_acceptor)
                .transpose()
                .map_err(BuildError)?;
            let listener = cx
                .listeners
                .bind(&self.address)
                .map_err(|e| BuildError(format!("cannot listen on {}: {e}", self.address)))?;
            let local: SocketAddr = listener
                .local_addr()
                .map_err(|e| BuildError(format!("cannot read the bound address: {e}")))?;

            // Without a global memory_limit, the listener still bounds what its requests
            // hold while they are read and decoded.
            let budget = cx
                .out
                .budget()
                .or_else(|| Some(crate::buffer::MemoryBudget::new(LISTENER_DECODE_BUDGET)));
            let shared = Arc::new(route::Shared {
                id: cx.id,
                budget,
                out: Mutex::new(cx.out),
                metrics: Arc::clone(&cx.metrics),
                latency: Arc::clone(cx.telemetry.latency()),
                clock: Arc::clone(&cx.clock),
                request_timeout: self.request_timeout,
                read_timeout: self.read_timeout,
                max_body_bytes: self.max_body_bytes,
                max_events_per_request: self.max_events_per_request,
                decode_timeout: self.decode_timeout,
                decode_slots: Arc::new(tokio::sync::Semaphore::new(decode_slots())),
            });
            let mut app = Router::new();
            let mut paths = Vec::new();
            for r in routes {
                let handler = route::Route::build(&r, self, Arc::clone(&shared))
                    .map_err(|e| BuildError(format!("route {}: {e}", r.path)))?;
                paths.push(r.path.clone());
                app = app.route(&r.path, post(route::handle).with_state(Arc::new(handler)));
            }
            tracing::info!(component_id = %cx.id, address = %local, routes = ?paths, tls = tls.is_some(), "webhook listening");
            let app = app.fallback(route::not_found);
            let options = crate::net::http_server::ServerOptions {
                header_read_timeout: Some(self.read_timeout),
                tls,
                max_connections: None,
                http2: false,
            };
            let shutdown = cx.shutdown;
            Ok(Box::pin(async move {
                crate::net::http_server::serve_with(listener, app, shutdown, options)
                    .await
                    .map_err(ComponentError::Io)
            }) as ComponentTask)
        })
    }
}
