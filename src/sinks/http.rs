//! `http`: events POSTed (or PUT/PATCHed) to a URL.
//!
//! `url` may use `{{ field.path }}` after its host (path, query, fragment); values are
//! percent-encoded, and an event whose values would make a `.`/`..` path segment or
//! that lacks a field goes to `dead_letter`. Events are batched per rendered URL. `encoding`:
//! `json` sends one object per request, `ndjson` and `json_array` batch. `extra_args`
//! adds fields to every delivered object; `flatten_payload` joins nested keys with `.`.
//! Batching, retries, the rate limit and the `dead_letter` output come from
//! [`crate::delivery`].

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue,
};
use serde::Deserialize;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::component::{BoxFuture, BuildError, ComponentTask, SinkConfig, SinkContext};
use crate::delivery::{
    BatchConfig, DEAD_LETTER, EncodedEvents, EncodedRequest, HttpEncoder, HttpSinkParts,
    RequestConfig, Tls, run_http_sink,
};
use crate::event::{Event, SourceId};
use crate::key_values::KeyValues;
use crate::net::{FailureHandling, TlsOptions};
use crate::template::Template;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum HttpMethod {
    #[default]
    Post,
    Put,
    Patch,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HttpEncoding {
    /// One JSON object per request.
    #[default]
    Json,
    /// One JSON object per line, batched.
    Ndjson,
    /// A JSON array of objects, batched.
    JsonArray,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

/// How requests authenticate, by `strategy`: `bearer` sends `token` as
/// `Authorization: Bearer`; `basic` sends `user` and `password`; `oauth2` fetches a
/// token with client credentials, caches it, and fetches another on expiry and on a
/// 401. An empty secret (an unset variable) is refused at validate time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum HttpAuth {
    Bearer {
        token: String,
    },
    Basic {
        user: String,
        password: String,
    },
    /// OAuth 2.0 client credentials: a cached token, refreshed on expiry and on 401.
    Oauth2(crate::net::OAuth2Config),
}

/// Sends events to an HTTP endpoint in batches (JSON, NDJSON or a JSON array).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpSinkConfig {
    /// Where to send (http or https). May contain `{{ field.path }}` in the path, query
    /// or fragment, never in the scheme, host or port; each value is percent-encoded, so
    /// it cannot add path segments, a query or a fragment of its own. An event missing a
    /// field, or whose value in the path is `.`, `..` or empty (which would leave an
    /// empty path segment), goes to `dead_letter`.
    pub(crate) url: String,
    /// The HTTP method of every request (default `POST`).
    #[serde(default)]
    pub(crate) method: HttpMethod,
    #[serde(default)]
    pub(crate) headers: KeyValues,
    /// Fields added to every delivered object.
    #[serde(default)]
    pub(crate) extra_args: KeyValues,
    /// Verify the server's TLS certificate.
    #[serde(default = "crate::units::yes")]
    pub(crate) ssl_verify: bool,
    #[serde(default)]
    pub(crate) tls: TlsOptions,
    /// Nested keys become `a.b.c` top-level keys.
    #[serde(default)]
    pub(crate) flatten_payload: bool,
    /// The request body: `json` (default) one object per request, `ndjson` one object
    /// per line, `json_array` an array of objects; the last two batch.
    #[serde(default)]
    pub(crate) encoding: HttpEncoding,
    /// Compresses the request body and sets `Content-Encoding`: `none` (default), `gzip`
    /// or `zstd`.
    #[serde(default)]
    pub(crate) compression: Compression,
    pub(crate) auth: Option<HttpAuth>,
    #[serde(default)]
    pub(crate) batch: BatchConfig,
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
    #[serde(default)]
    pub(crate) request: RequestConfig,
}

impl HttpSinkConfig {
    fn encoder(&self) -> Result<HttpSinkEncoder, BuildError> {
        self.batch.check().map_err(BuildError)?;
        self.failure_handling.check().map_err(BuildError)?;
        self.request.check().map_err(BuildError)?;
        let url = Template::parse(&self.url).map_err(|e| BuildError(format!("`url`: {e}")))?;
        url.check_url()
            .map_err(|e| BuildError(format!("`url` `{}`: {e}", self.url)))?;
        // A URL without fields is the same for every event: rendered (and checked) once
        // here rather than per event, which cost about 12% of the CPU of NDJSON → http.
        let static_url = if url.is_static() {
            let blank = Event::new(
                Value::Object(ObjectMap::new()),
                SourceId::intern(""),
                Default::default(),
            );
            let rendered = url
                .render_url(&blank)
                .map_err(|e| BuildError(format!("`url` `{}`: {e}", self.url)))?;
            let parsed = reqwest::Url::parse(&rendered)
                .map_err(|e| BuildError(format!("`url` `{}`: {e}", self.url)))?;
            Some(parsed)
        } else {
            None
        };
        let mut headers = HeaderMap::new();
        for (name, value) in self.headers.pairs("headers")? {
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| {
                BuildError(format!("`headers`: `{name}` is not a header name: {e}"))
            })?;
            let value = HeaderValue::from_str(&value)
                .map_err(|e| BuildError(format!("`headers`: invalid value for `{name}`: {e}")))?;
            headers.insert(name, value);
        }
        match &self.auth {
            Some(HttpAuth::Bearer { token }) if token.trim().is_empty() => {
                return Err(BuildError(
                    "`auth.token` is empty (is its variable unset?): an empty secret is refused"
                        .into(),
                ));
            }
            Some(HttpAuth::Basic { user, password })
                if user.trim().is_empty() || password.is_empty() =>
            {
                let option = if password.is_empty() {
                    "password"
                } else {
                    "user"
                };
                return Err(BuildError(format!(
                    "`auth.{option}` is empty (is its variable unset?): an empty secret is refused"
                )));
            }
            Some(HttpAuth::Bearer { token }) => {
                let v = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|e| BuildError(format!("`auth.token`: {e}")))?;
                headers.insert(AUTHORIZATION, v);
            }
            Some(HttpAuth::Basic { user, password }) => {
                let creds =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                let v = HeaderValue::from_str(&format!("Basic {creds}"))
                    .map_err(|e| BuildError(format!("`auth`: {e}")))?;
                headers.insert(AUTHORIZATION, v);
            }
            Some(HttpAuth::Oauth2(oauth2)) => oauth2.check().map_err(BuildError)?,
            None => {}
        }
        let content_type = match self.encoding {
            HttpEncoding::Ndjson => "application/x-ndjson",
            HttpEncoding::Json | HttpEncoding::JsonArray => "application/json",
        };
        headers
            .entry(CONTENT_TYPE)
            .or_insert(HeaderValue::from_static(content_type));
        match self.compression {
            Compression::None => {}
            Compression::Gzip => {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Compression::Zstd => {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("zstd"));
            }
        }
        let extra_args = self
            .extra_args
            .pairs("extra_args")?
            .into_iter()
            .map(|(k, v)| (KeyString::from(k), Value::from(v)))
            .collect();
        Ok(HttpSinkEncoder {
            url,
            static_url,
            method: match self.method {
                HttpMethod::Post => reqwest::Method::POST,
                HttpMethod::Put => reqwest::Method::PUT,
                HttpMethod::Patch => reqwest::Method::PATCH,
            },
            headers,
            extra_args,
            flatten: self.flatten_payload,
            encoding: self.encoding,
            compression: self.compression,
        })
    }
}

impl SinkConfig for HttpSinkConfig {
    fn type_name(&self) -> &'static str {
        "http"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn check(&self) -> Result<(), BuildError> {
        self.encoder().map(drop)
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        self.tls.ca_file.iter().cloned().collect()
    }

    fn healthcheck(
        &self,
        _timeout: std::time::Duration,
    ) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(async move {
            let mut headers = self.encoder().map_err(|e| e.0)?.headers;
            headers.remove(CONTENT_TYPE);
            headers.remove(CONTENT_ENCODING);
            let client = crate::net::http_client(
                self.ssl_verify,
                self.tls.ca_file.as_deref(),
                self.request.timeout,
                crate::net::Redirects::Refuse,
            )?;
            // Configured headers may carry a key (`X-Api-Key`): a 401 or 403 then means
            // it was refused.
            let mut credentials = headers.contains_key(AUTHORIZATION)
                || self.headers.pairs("headers").is_ok_and(|h| !h.is_empty());
            if let Some(HttpAuth::Oauth2(config)) = &self.auth {
                let bearer = crate::net::probe::oauth2_bearer(config, self.request.timeout).await?;
                headers.insert(AUTHORIZATION, bearer);
                credentials = true;
            }
            crate::net::probe::http(&client, &self.url, headers, credentials, self.ssl_verify).await
        }))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let encoder = Arc::new(self.encoder()?);
            let tls = Tls {
                verify: self.ssl_verify,
                ca_file: self.tls.ca_file.as_deref(),
            };
            let oauth2 = match &self.auth {
                Some(HttpAuth::Oauth2(c)) => Some(c),
                _ => None,
            };
            let parts = HttpSinkParts::new(
                tls,
                self.batch,
                self.failure_handling,
                self.request,
                oauth2,
                &cx.clock,
            )?;
            Ok(Box::pin(run_http_sink(encoder, parts, cx)) as ComponentTask)
        })
    }
}

struct HttpSinkEncoder {
    url: Template,
    /// The URL when it has no fields; every event then shares one partition.
    static_url: Option<reqwest::Url>,
    method: reqwest::Method,
    headers: HeaderMap,
    extra_args: ObjectMap,
    flatten: bool,
    encoding: HttpEncoding,
    compression: Compression,
}

impl HttpEncoder for HttpSinkEncoder {
    fn partition(&self, event: &Event) -> Result<String, String> {
        match self.static_url {
            Some(_) => Ok(String::new()),
            None => self.url.render_url(event),
        }
    }

    /// NDJSON's line break is written with each event, so the batch's buffer is the
    /// request body as it is.
    fn encode_into(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        self.encode_json(event, out)?;
        if self.encoding == HttpEncoding::Ndjson {
            out.push(b'\n');
        }
        Ok(())
    }

    fn build_request(&self, url: &str, events: EncodedEvents) -> Result<EncodedRequest, String> {
        let body = match self.encoding {
            HttpEncoding::Json => events.into_first(),
            HttpEncoding::Ndjson => events.into_bytes(),
            HttpEncoding::JsonArray => {
                let mut body = Vec::with_capacity(events.byte_len() + events.len() + 2);
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
        };
        let body = match self.compression {
            Compression::None => body,
            Compression::Gzip => crate::delivery::gzip(&body, flate2::Compression::default())?,
            Compression::Zstd => {
                zstd::encode_all(body.as_slice(), 3).map_err(|e| format!("zstd failed: {e}"))?
            }
        };
        Ok(EncodedRequest {
            method: self.method.clone(),
            url: match &self.static_url {
                Some(url) => url.clone(),
                None => reqwest::Url::parse(url)
                    .map_err(|e| format!("the rendered URL is not a URL: {e}"))?,
            },
            headers: self.headers.clone(),
            body: Bytes::from(body),
        })
    }

    fn max_events(&self) -> usize {
        match self.encoding {
            HttpEncoding::Json => 1,
            HttpEncoding::Ndjson | HttpEncoding::JsonArray => usize::MAX,
        }
    }
}

impl HttpSinkEncoder {
    /// One event as a JSON object.
    fn encode_json(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        // Nothing to add or reshape: serialize the event where it is. Copying its map
        // first cost about 9% of the CPU in the file → http load scenario.
        // An event still in the JSON text it arrived as is written as that text, unparsed.
        if !self.flatten
            && self.extra_args.is_empty()
            && (event.raw_json().is_some() || event.value().is_object())
        {
            return event
                .to_json_line(out)
                .map_err(|e| format!("cannot encode the event as JSON: {e}"));
        }
        let mut object = match event.value() {
            Value::Object(m) if self.flatten => crate::event::flatten::flatten_object(
                m,
                ".",
                None,
                crate::event::flatten::Arrays::Keep,
            ),
            Value::Object(m) => m.clone(),
            other => {
                let mut m = ObjectMap::new();
                m.insert("message".into(), other.clone());
                m
            }
        };
        for (k, v) in &self.extra_args {
            object.insert(k.clone(), v.clone());
        }
        serde_json::to_writer(out, &Value::Object(object))
            .map_err(|e| format!("cannot encode the event as JSON: {e}"))
    }
}
