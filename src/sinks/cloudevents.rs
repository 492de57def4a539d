//! `cloudevents`: events as CloudEvents 1.0 over HTTP, as the NVSentinel event exporter
//! sends them.
//!
//! Attributes: `id` from the event's `id` (a new UUID when it has none), `source` from
//! `source` (default `/sluice/<metadata.cluster>`), `type` from `event_type`
//! (templated; the key is not `type`, which names the component type), `subject`
//! (templated), `time` from the event's `time` (else when it was received), RFC 3339.
//! `data` is the event with the `metadata:` map copied into `data.metadata`.
//!
//! Modes (HTTP protocol binding): `structured` (`application/cloudevents+json`, one
//! event per request), `binary` (`ce-*` headers, the data as the body), `batch`
//! (`application/cloudevents-batch+json`, a JSON array). `oidc:` adds OAuth 2.0 client
//! credentials.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use vrl::value::Value;

use crate::component::{BoxFuture, BuildError, ComponentTask, SinkConfig, SinkContext};
use crate::delivery::{
    BatchConfig, DEAD_LETTER, EncodedEvents, EncodedRequest, HttpEncoder, HttpSinkParts,
    RequestConfig, Tls, run_http_sink,
};
use crate::event::Event;
use crate::net::{FailureHandling, OAuth2Config};
use crate::template::Template;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// One event per request, the whole CloudEvent as the JSON body
    /// (`application/cloudevents+json`).
    #[default]
    Structured,
    /// One event per request, attributes in `ce-*` headers and `data` as the body.
    Binary,
    /// A JSON array of CloudEvents per request (`application/cloudevents-batch+json`).
    Batch,
}

/// Where the CloudEvents go: the endpoint URL, the time an attempt may take, and
/// whether its TLS certificate is checked.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Endpoint {
    /// The URL events are POSTed to (http or https).
    pub(crate) endpoint: String,
    /// How long one attempt may take before it fails and is retried (default 30s);
    /// replaces `request.timeout`.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
    /// Accept any TLS certificate from the endpoint (default false).
    #[serde(default)]
    pub(crate) insecure_skip_verify: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_event_type() -> String {
    "com.sluice.event".into()
}

/// Sends events as CloudEvents 1.0 over HTTP (structured, binary or batch), with OAuth2 client credentials.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudEventsConfig {
    pub(crate) sink: Endpoint,
    /// How events are put in requests: `structured` (default), `binary` or `batch`.
    #[serde(default)]
    pub(crate) mode: Mode,
    /// The CloudEvents `type` attribute (templated).
    #[serde(default = "default_event_type")]
    pub(crate) event_type: String,
    /// The `subject` attribute (templated).
    pub(crate) subject: Option<String>,
    /// The `source` attribute; defaults to `/sluice/<metadata.cluster>`.
    pub(crate) source: Option<String>,
    /// Copied into `data.metadata`; `cluster` is required.
    pub(crate) metadata: IndexMap<String, serde_json::Value>,
    pub(crate) oidc: Option<OAuth2Config>,
    #[serde(default)]
    pub(crate) batch: BatchConfig,
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
    #[serde(default)]
    pub(crate) request: RequestConfig,
}

impl CloudEventsConfig {
    /// The encoder the sink runs, without a client: benches measure encoding alone.
    pub fn http_encoder(&self) -> Result<Arc<dyn HttpEncoder>, BuildError> {
        Ok(Arc::new(self.encoder()?))
    }

    fn encoder(&self) -> Result<CloudEventsEncoder, BuildError> {
        let endpoint = reqwest::Url::parse(&self.sink.endpoint)
            .map_err(|e| BuildError(format!("`sink.endpoint`: {e}")))?;
        self.batch.check().map_err(BuildError)?;
        self.failure_handling.check().map_err(BuildError)?;
        self.request.check().map_err(BuildError)?;
        if let Some(o) = &self.oidc {
            o.check().map_err(BuildError)?;
        }
        let cluster = match self.metadata.get("cluster") {
            Some(serde_json::Value::String(c)) if !c.is_empty() => c.clone(),
            _ => return Err(BuildError("`metadata.cluster` is required".into())),
        };
        let source = match &self.source {
            Some(s) => Template::parse(s).map_err(BuildError)?,
            None => Template::parse(&format!("/sluice/{cluster}")).map_err(BuildError)?,
        };
        Ok(CloudEventsEncoder {
            endpoint,
            mode: self.mode,
            event_type: Template::parse(&self.event_type).map_err(BuildError)?,
            subject: self
                .subject
                .as_deref()
                .map(Template::parse)
                .transpose()
                .map_err(BuildError)?,
            source,
            metadata: serde_json::Value::Object(self.metadata.clone().into_iter().collect()),
        })
    }
}

impl SinkConfig for CloudEventsConfig {
    fn type_name(&self) -> &'static str {
        "cloudevents"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn check(&self) -> Result<(), BuildError> {
        self.encoder().map(drop)
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        self.oidc
            .iter()
            .filter_map(|o| o.client_secret_file.clone())
            .collect()
    }

    fn healthcheck(
        &self,
        _timeout: std::time::Duration,
    ) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(async move {
            let client = crate::net::http_client(
                !self.sink.insecure_skip_verify,
                None,
                self.sink.timeout,
                crate::net::Redirects::Refuse,
            )?;
            let mut headers = reqwest::header::HeaderMap::new();
            if let Some(oidc) = &self.oidc {
                let bearer = crate::net::probe::oauth2_bearer(oidc, self.sink.timeout).await?;
                headers.insert(reqwest::header::AUTHORIZATION, bearer);
            }
            let credentials = self.oidc.is_some();
            let reached = crate::net::probe::http(
                &client,
                &self.sink.endpoint,
                headers,
                credentials,
                !self.sink.insecure_skip_verify,
            )
            .await?;
            Ok(if credentials {
                format!("OAuth2 token granted, {reached}")
            } else {
                reached
            })
        }))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let encoder = Arc::new(self.encoder()?);
            let tls = Tls {
                verify: !self.sink.insecure_skip_verify,
                ca_file: None,
            };
            let request = RequestConfig {
                timeout: self.sink.timeout,
                ..self.request
            };
            let parts = HttpSinkParts::new(
                tls,
                self.batch,
                self.failure_handling,
                request,
                self.oidc.as_ref(),
                &cx.clock,
            )?;
            Ok(Box::pin(run_http_sink(encoder, parts, cx)) as ComponentTask)
        })
    }
}

struct CloudEventsEncoder {
    endpoint: reqwest::Url,
    mode: Mode,
    event_type: Template,
    subject: Option<Template>,
    source: Template,
    metadata: Json,
}

impl CloudEventsEncoder {
    /// The event as a structured-mode CloudEvent object.
    fn cloud_event(&self, event: &Event) -> Result<Map<String, Json>, String> {
        let id = match event.get("id").and_then(Value::to_str_lossy) {
            Some(id) if !id.is_empty() => id.into_owned(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        let time = match event.get("time") {
            Some(Value::Timestamp(t)) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            Some(v) => match v
                .to_str_lossy()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
            {
                Some(t) => t
                    .with_timezone(&chrono::Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                None => return Err("`time` is not an RFC 3339 timestamp".into()),
            },
            None => event
                .meta
                .received_at
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        };
        let mut data = match serde_json::to_value(event.value()) {
            Ok(Json::Object(m)) => m,
            Ok(other) => Map::from_iter([("message".to_owned(), other)]),
            Err(e) => return Err(format!("cannot encode the event: {e}")),
        };
        data.insert("metadata".into(), self.metadata.clone());
        let mut ce = Map::new();
        ce.insert("specversion".into(), json!("1.0"));
        ce.insert("id".into(), json!(id));
        ce.insert("source".into(), json!(self.source.render(event)?));
        ce.insert("type".into(), json!(self.event_type.render(event)?));
        if let Some(subject) = &self.subject {
            ce.insert("subject".into(), json!(subject.render(event)?));
        }
        ce.insert("time".into(), json!(time));
        ce.insert("datacontenttype".into(), json!("application/json"));
        ce.insert("data".into(), Json::Object(data));
        Ok(ce)
    }
}

/// HTTP binding: header values percent-encode space, `"`, `%` and everything outside
/// printable ASCII.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b == b' ' || b == b'"' || b == b'%' || !(0x21..=0x7e).contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

impl HttpEncoder for CloudEventsEncoder {
    fn encode_into(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        serde_json::to_writer(out, &Json::Object(self.cloud_event(event)?))
            .map_err(|e| e.to_string())
    }

    fn build_request(
        &self,
        _partition: &str,
        events: EncodedEvents,
    ) -> Result<EncodedRequest, String> {
        let mut headers = HeaderMap::new();
        let body = match self.mode {
            Mode::Structured => {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/cloudevents+json"),
                );
                events.into_first()
            }
            Mode::Batch => {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/cloudevents-batch+json"),
                );
                let mut body = Vec::with_capacity(events.byte_len() + events.len() + 1);
                body.push(b'[');
                for (i, e) in events.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(e);
                }
                body.push(b']');
                body
            }
            Mode::Binary => {
                let one = events.into_first();
                let mut ce: Map<String, Json> =
                    serde_json::from_slice(&one).map_err(|e| e.to_string())?;
                let data = ce.remove("data").unwrap_or(Json::Null);
                let content_type = ce
                    .remove("datacontenttype")
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "application/json".into());
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_str(&content_type).map_err(|e| e.to_string())?,
                );
                for (name, value) in ce {
                    let text = match value {
                        Json::String(s) => s,
                        other => other.to_string(),
                    };
                    let name = HeaderName::from_bytes(format!("ce-{name}").as_bytes())
                        .map_err(|e| e.to_string())?;
                    let value =
                        HeaderValue::from_str(&percent_encode(&text)).map_err(|e| e.to_string())?;
                    headers.insert(name, value);
                }
                serde_json::to_vec(&data).map_err(|e| e.to_string())?
            }
        };
        Ok(EncodedRequest {
            method: reqwest::Method::POST,
            url: self.endpoint.clone(),
            headers,
            body: Bytes::from(body),
        })
    }

    fn max_events(&self) -> usize {
        match self.mode {
            Mode::Batch => usize::MAX,
            Mode::Structured | Mode::Binary => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn header_values_are_percent_encoded_per_the_http_binding() {
        assert_eq!(percent_encode("a b\"c%d€"), "a%20b%22c%25d%E2%82%AC");
        assert_eq!(percent_encode("/sluice/prod-1"), "/sluice/prod-1");
    }
}
