//! `elasticsearch`: events into Elasticsearch or OpenSearch through the bulk API.
//!
//! Each input batch becomes bulk requests of at most `batch.max_events` and
//! `batch.max_bytes`. The answer is read item by item: a request that succeeds as a
//! whole may still refuse some documents. Items refused with 429 or 5xx (the cluster was
//! busy) are sent again, alone, with backoff; items refused for good (a mapping error)
//! go to the dead letter with Elasticsearch's reason; the others are delivered. A whole
//! request answered 429, 5xx, or not at all is retried; other 4xx answers dead-letter
//! it. With `id_field`, a document's `_id` comes from the event, so a resend overwrites
//! (`index`) or is recognised (`create`, 409) instead of duplicating.
//!
//! `index` may hold strftime codes (rendered with the event's `timestamp`, else the time
//! it was received) and `{{ field }}` templates; a rendered name Elasticsearch would
//! refuse dead-letters that event alone.

mod bulk;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::format::{Item, StrftimeItems};
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use vrl::value::Value;

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SinkConfig, SinkContext, delivered,
};
use crate::delivery::{DEAD_LETTER, DeadLetter, Failure};
use crate::event::Event;
use crate::net::{Backoff, FailureHandling, Pause};
use crate::template::Template;
use bulk::ItemOutcome;

/// The bulk answer is read whole (filtered to statuses and errors); past this it is
/// not trusted.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Writes events to Elasticsearch or OpenSearch with the bulk API, reading each item's
/// result.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ElasticsearchConfig {
    /// The cluster's URL (`https://es.example.com:9200`); requests go to its `/_bulk`.
    pub(crate) endpoint: String,
    /// The index (or, with `mode: data_stream`, the data stream) of each event: strftime
    /// codes and `{{ field }}` templates (default `sluice-%Y.%m.%d`).
    #[serde(default = "default_index")]
    pub(crate) index: String,
    /// `bulk` (default: `index` actions) or `data_stream` (`create` actions, and
    /// `@timestamp` added from the event's `timestamp` when missing, as data streams
    /// require).
    #[serde(default)]
    pub(crate) mode: Mode,
    /// The event field (a path: `labels.fingerprint`) whose value is the document's
    /// `_id` (e.g. `fingerprint`);
    /// without it Elasticsearch makes one up, and a resend may duplicate.
    pub(crate) id_field: Option<String>,
    /// How to authenticate (none by default).
    pub(crate) auth: Option<Auth>,
    /// `gzip` compresses request bodies; `none` (default).
    #[serde(default)]
    pub(crate) compression: Compression,
    /// How many events and bytes one bulk request carries at most.
    #[serde(default)]
    pub(crate) batch: BulkBatch,
    /// How long one request may take (default 60s).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
    /// Verify the server's TLS certificate (default true).
    #[serde(default = "crate::units::yes")]
    pub(crate) ssl_verify: bool,
    /// PEM file with extra trusted CA certificates.
    pub(crate) ca_file: Option<PathBuf>,
    /// Retries with backoff (of whole requests and of busy items), then the
    /// `dead_letter` output.
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
}

/// The bulk action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// `index` actions into indices.
    #[default]
    Bulk,
    /// `create` actions into data streams.
    DataStream,
}

/// Request body compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Compression {
    /// Plain NDJSON.
    #[default]
    None,
    /// `Content-Encoding: gzip`.
    Gzip,
}

/// `auth:` one of basic (`user` and `password`), `api_key` or `bearer`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Auth {
    /// Basic authentication's user.
    pub(crate) user: Option<String>,
    /// Basic authentication's password (use a `${VARIABLE}`).
    pub(crate) password: Option<String>,
    /// An API key as Elasticsearch encodes it (base64 of `id:key`), sent as
    /// `Authorization: ApiKey …`.
    pub(crate) api_key: Option<String>,
    /// A bearer token.
    pub(crate) bearer: Option<String>,
}

/// `batch:` the size of one bulk request.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkBatch {
    /// Most events in one request (default 1000).
    #[serde(default = "default_max_events")]
    pub(crate) max_events: usize,
    /// Most bytes of NDJSON in one request, before compression (default 10 MiB).
    #[serde(default = "default_max_bytes")]
    pub(crate) max_bytes: usize,
}

impl Default for BulkBatch {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
        }
    }
}

fn default_index() -> String {
    "sluice-%Y.%m.%d".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_events() -> usize {
    1000
}
fn default_max_bytes() -> usize {
    10 * 1024 * 1024
}

impl ElasticsearchConfig {
    fn op(&self) -> &'static str {
        match self.mode {
            Mode::Bulk => "index",
            Mode::DataStream => "create",
        }
    }

    fn url(&self) -> Result<String, BuildError> {
        let mut url = reqwest::Url::parse(&self.endpoint)
            .map_err(|e| BuildError(format!("`endpoint`: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(BuildError("`endpoint` must be an http(s) URL".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BuildError(
                "`endpoint` carries credentials: give them in `auth` instead".into(),
            ));
        }
        if url.path_segments().and_then(|mut s| {
            s.next_back()
                .filter(|l| !l.is_empty())
                .or_else(|| s.next_back())
        }) == Some("_bulk")
        {
            return Err(BuildError(
                "`endpoint` is the cluster's URL, without `/_bulk` (sluice adds it)".into(),
            ));
        }
        url.path_segments_mut()
            .map_err(|()| BuildError("`endpoint` must be an http(s) URL".into()))?
            .pop_if_empty()
            .push("_bulk");
        // The user's parameters (`pipeline=`) stay; the answer is cut to what is read.
        url.query_pairs_mut().append_pair(
            "filter_path",
            "errors,items.*.status,items.*.error.type,items.*.error.reason",
        );
        Ok(url.into())
    }

    fn authorization(&self) -> Result<Option<HeaderValue>, BuildError> {
        use base64::Engine;
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let blank = |s: &Option<String>| s.as_deref().is_some_and(|s| s.trim().is_empty());
        if blank(&auth.password) || blank(&auth.api_key) || blank(&auth.bearer) {
            return Err(BuildError(
                "an `auth` secret is empty (is its variable unset?): an empty secret is refused"
                    .into(),
            ));
        }
        let value = match (&auth.user, &auth.password, &auth.api_key, &auth.bearer) {
            (Some(user), Some(password), None, None) => {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                // A server may echo the header back in an error.
                crate::redact::register(&encoded);
                format!("Basic {encoded}")
            }
            (None, None, Some(key), None) => format!("ApiKey {key}"),
            (None, None, None, Some(token)) => format!("Bearer {token}"),
            _ => {
                return Err(BuildError(
                    "`auth` takes `user` and `password`, or `api_key`, or `bearer`".into(),
                ));
            }
        };
        let mut header = HeaderValue::from_str(&value)
            .map_err(|_| BuildError("`auth` holds characters a header cannot".into()))?;
        header.set_sensitive(true);
        Ok(Some(header))
    }

    fn id_path(&self) -> Result<Option<(String, vrl::path::OwnedValuePath)>, BuildError> {
        self.id_field
            .as_ref()
            .map(|f| {
                vrl::path::parse_value_path(f)
                    .map(|p| (f.clone(), p))
                    .map_err(|e| BuildError(format!("`id_field` `{f}`: {e}")))
            })
            .transpose()
    }

    fn check_options(&self) -> Result<(), BuildError> {
        self.url()?;
        self.id_path()?;
        self.authorization()?;
        if StrftimeItems::new(&self.index).any(|i| matches!(i, Item::Error)) {
            return Err(BuildError(format!(
                "`index` `{}` has an invalid strftime code",
                self.index
            )));
        }
        Template::parse(&self.index).map_err(|e| BuildError(format!("`index`: {e}")))?;
        if self.batch.max_events == 0 || self.batch.max_bytes == 0 || self.timeout.is_zero() {
            return Err(BuildError(
                "`batch.max_events`, `batch.max_bytes` and `timeout` must be above zero".into(),
            ));
        }
        self.failure_handling.check().map_err(BuildError)
    }
}

impl SinkConfig for ElasticsearchConfig {
    fn type_name(&self) -> &'static str {
        "elasticsearch"
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

    fn healthcheck(&self, _timeout: Duration) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(crate::net::probe::without_credentials(
            &self.endpoint,
            self.ssl_verify,
            self.timeout,
        )))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check_options()?;
            let client = crate::net::http_client(
                self.ssl_verify,
                self.ca_file.as_deref(),
                self.timeout,
                crate::net::Redirects::Refuse,
            )
            .map_err(BuildError)?;
            let writer = Writer {
                url: self.url()?,
                authorization: self.authorization()?,
                client,
                index: Mutex::new(None),
                id_path: self.id_path()?,
                config: self.clone(),
            };
            Ok(Box::pin(run(writer, cx)) as ComponentTask)
        })
    }
}

struct Writer {
    url: String,
    authorization: Option<HeaderValue>,
    client: reqwest::Client,
    /// The index template of the current strftime rendering (a new day, a new one).
    index: Mutex<Option<(String, Template)>>,
    /// `id_field` as written and as a path (`labels.fingerprint`).
    id_path: Option<(String, vrl::path::OwnedValuePath)>,
    config: ElasticsearchConfig,
}

impl Writer {
    fn index_of(&self, event: &Event, at: chrono::DateTime<chrono::Utc>) -> Result<String, String> {
        // strftime first, on the option's own text: a `%` in an event's value stays text.
        let pattern = at
            .format_with_items(StrftimeItems::new(&self.config.index))
            .to_string();
        let mut cached = self.index.lock().map_err(|_| "index cache poisoned")?;
        if cached.as_ref().is_none_or(|(p, _)| *p != pattern) {
            let template = Template::parse(&pattern)?;
            *cached = Some((pattern, template));
        }
        let name = cached
            .as_ref()
            .map(|(_, t)| t.render(event))
            .ok_or("no index template")??;
        bulk::check_index_name(&name)?;
        Ok(name)
    }

    fn encode(&self, event: &Event) -> Result<Vec<u8>, String> {
        let at = crate::event::time_of(event);
        let index = self.index_of(event, at)?;
        let id = match &self.id_path {
            Some((field, path)) => Some(
                match event.value().get(path) {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.to_string_lossy().into_owned()),
                }
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("`id_field` `{field}` is missing from the event"))?,
            ),
            None => None,
        };
        let stamp = (self.config.mode == Mode::DataStream).then_some(at);
        bulk::item(event, &index, self.config.op(), id.as_deref(), stamp)
    }

    fn body(&self, items: &[(Event, Vec<u8>)]) -> Result<Bytes, String> {
        let mut ndjson = Vec::with_capacity(items.iter().map(|(_, b)| b.len()).sum());
        for (_, bytes) in items {
            ndjson.extend_from_slice(bytes);
        }
        match self.config.compression {
            Compression::None => Ok(Bytes::from(ndjson)),
            Compression::Gzip => {
                crate::delivery::gzip(&ndjson, flate2::Compression::fast()).map(Bytes::from)
            }
        }
    }

    /// One attempt: each item's outcome, or why the whole request failed (and whether
    /// that may pass on retry, with the server's `Retry-After`).
    async fn send(&self, items: &[(Event, Vec<u8>)]) -> Result<Vec<ItemOutcome>, WholeFailure> {
        let body = self.body(items).map_err(WholeFailure::permanent)?;
        let mut request = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body);
        if self.config.compression == Compression::Gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let mut response = request.send().await.map_err(|e| {
            let retry = !crate::net::is_certificate_error(&e);
            WholeFailure {
                reason: crate::net::error_chain(&e.without_url()),
                retry,
                status: None,
                body: None,
                retry_after: None,
            }
        })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = crate::net::retry_after(response.headers());
            let body = crate::net::excerpt(&mut response, 4096).await;
            return Err(WholeFailure {
                reason: format!("HTTP {status}"),
                retry: matches!(status, 408 | 429 | 500..=599),
                status: Some(status),
                body: Some(body),
                retry_after,
            });
        }
        let answer = crate::net::read_at_most(&mut response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| WholeFailure::retryable(format!("reading the bulk answer: {e}")))?;
        bulk::outcomes(&answer, items.len(), self.config.op()).map_err(WholeFailure::retryable)
    }
}

struct WholeFailure {
    reason: String,
    retry: bool,
    status: Option<u16>,
    body: Option<String>,
    retry_after: Option<Duration>,
}

impl WholeFailure {
    fn permanent(reason: String) -> Self {
        Self {
            reason,
            retry: false,
            status: None,
            body: None,
            retry_after: None,
        }
    }
    fn retryable(reason: String) -> Self {
        Self {
            reason,
            retry: true,
            status: None,
            body: None,
            retry_after: None,
        }
    }
}

async fn run(writer: Writer, mut cx: SinkContext) -> Result<(), ComponentError> {
    let dead_letter = DeadLetter::new(
        Arc::clone(&cx.id),
        cx.outputs.first().cloned(),
        Arc::clone(&cx.metrics),
    );
    let stop = cx.input.stop_token();
    let batch_config = writer.config.batch;
    while let Some(batch) = cx.input.recv().await {
        cx.metrics.add_received(batch.len());
        let mut requests: Vec<Vec<(Event, Vec<u8>)>> = vec![Vec::new()];
        let mut bytes = 0;
        for event in batch {
            match writer.encode(&event) {
                Ok(item) => {
                    let full = requests.last().is_some_and(|r| {
                        !r.is_empty()
                            && (r.len() >= batch_config.max_events
                                || bytes + item.len() > batch_config.max_bytes)
                    });
                    if full {
                        requests.push(Vec::new());
                        bytes = 0;
                    }
                    bytes += item.len();
                    if let Some(r) = requests.last_mut() {
                        r.push((event, item));
                    }
                }
                Err(error) => {
                    let failure = Failure {
                        error,
                        status: None,
                        attempts: 0,
                        body: None,
                    };
                    dead_letter.send(vec![event], &failure).await;
                }
            }
        }
        let mut requests = requests.into_iter().filter(|r| !r.is_empty());
        while let Some(mut pending) = requests.next() {
            let mut backoff = Backoff::new(writer.config.failure_handling);
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                let (reason, retry_after, last) = match writer.send(&pending).await {
                    Ok(outcomes) => {
                        let mut retry = Vec::new();
                        let mut last_reason = String::new();
                        let mut sent = 0;
                        for ((event, item), outcome) in pending.into_iter().zip(outcomes) {
                            match outcome {
                                ItemOutcome::Delivered => {
                                    sent += item.len();
                                    delivered(&cx.metrics, vec![event]);
                                }
                                ItemOutcome::Retry(reason) => {
                                    last_reason = reason;
                                    retry.push((event, item));
                                }
                                ItemOutcome::Failed { status, reason } => {
                                    let failure = Failure {
                                        error: reason,
                                        status: Some(status),
                                        attempts,
                                        body: None,
                                    };
                                    dead_letter.send(vec![event], &failure).await;
                                }
                            }
                        }
                        cx.metrics.add_sent_bytes(sent);
                        pending = retry;
                        if pending.is_empty() {
                            break;
                        }
                        (
                            format!("{} item(s) refused for now: {last_reason}", pending.len()),
                            None,
                            (None, None),
                        )
                    }
                    Err(whole) if !whole.retry => {
                        let failure = Failure {
                            error: crate::redact::redact(&whole.reason).into_owned(),
                            status: whole.status,
                            attempts,
                            body: whole.body,
                        };
                        dead_letter
                            .send(pending.into_iter().map(|(e, _)| e).collect(), &failure)
                            .await;
                        break;
                    }
                    Err(whole) => (
                        crate::redact::redact(&whole.reason).into_owned(),
                        whole.retry_after,
                        (whole.status, whole.body),
                    ),
                };
                let pause = backoff.pause(retry_after, &*cx.clock, Some(&stop), |wait| {
                    tracing::warn!(component_id = %cx.id, error = %reason, wait = ?wait, "bulk request not fully taken; retrying");
                });
                match pause.await {
                    Pause::Retry => {}
                    Pause::Exhausted => {
                        let failure = Failure::gave_up(attempts, &reason, last.0, last.1);
                        dead_letter
                            .send(pending.into_iter().map(|(e, _)| e).collect(), &failure)
                            .await;
                        break;
                    }
                    Pause::Stopped => {
                        // Replaced by a reload: what is not delivered goes to the replacement.
                        let mut rest: Vec<Event> = pending.into_iter().map(|(e, _)| e).collect();
                        rest.extend(requests.flatten().map(|(e, _)| e));
                        cx.input.hand_back(rest);
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}
