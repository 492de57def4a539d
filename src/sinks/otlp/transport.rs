//! Sending an encoded export request over OTLP/HTTP (reqwest) or OTLP/gRPC (tonic), and
//! what the answer means: delivered, retried as OTLP says, or refused.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use indexmap::IndexMap;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};

use super::{Compression, OtlpSinkConfig, Protocol};
use crate::delivery::{Sent, Verdict};
use crate::otlp::RpcStatus;

/// What of an answer is read.
const MAX_ANSWER: usize = 64 * 1024;
const GRPC_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// The configured headers, checked; their values are registered as secrets.
pub(super) fn metadata(headers: &IndexMap<String, String>) -> Result<HeaderMap, String> {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let header = HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| format!("`headers`: `{name}` is not a header name"))?;
        if value.trim().is_empty() {
            return Err(format!(
                "`headers.{name}` is empty (is its variable unset?): an empty secret is refused"
            ));
        }
        // gRPC reserves these; HTTP sets them itself.
        if lower.starts_with("grpc-")
            || matches!(
                lower.as_str(),
                "content-type" | "content-encoding" | "te" | "host" | "content-length"
            )
        {
            return Err(format!(
                "`headers.{name}` is set by the protocol and cannot be configured"
            ));
        }
        let mut v = HeaderValue::from_str(value)
            .map_err(|_| format!("`headers.{name}` holds characters a header cannot"))?;
        v.set_sensitive(true);
        crate::redact::register(value);
        // `Bearer <token>`: a receiver may echo the token alone.
        if let Some((_, credential)) = value.trim().split_once(' ')
            && credential.trim().len() >= 8
        {
            crate::redact::register(credential.trim());
        }
        out.insert(header, v);
    }
    Ok(out)
}

pub(super) enum Sender {
    Http {
        client: reqwest::Client,
        url: String,
        headers: HeaderMap,
        sink: Arc<str>,
    },
    Grpc {
        channel: tonic::transport::Channel,
        metadata: HeaderMap,
        gzip: bool,
        timeout: Duration,
        sink: Arc<str>,
    },
}

impl Sender {
    pub(super) fn new(config: &OtlpSinkConfig, sink: Arc<str>) -> Result<Self, String> {
        let mut url = config.url().map_err(|e| e.0)?;
        let headers = metadata(&config.headers)?;
        let timeout = config.request.timeout;
        match config.protocol {
            Protocol::Http => {
                url.path_segments_mut()
                    .map_err(|()| "`endpoint` must be an http(s) URL".to_owned())?
                    .pop_if_empty()
                    .extend(["v1", "logs"]);
                let mut headers = headers;
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                if config.compression == Compression::Gzip {
                    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                let client = crate::net::http_client(
                    true,
                    config.ca_file.as_deref(),
                    timeout,
                    crate::net::Redirects::Refuse,
                )?;
                Ok(Self::Http {
                    client,
                    url: url.into(),
                    headers,
                    sink,
                })
            }
            Protocol::Grpc => Ok(Self::Grpc {
                channel: grpc_channel(&url, config.ca_file.as_deref(), timeout)?,
                metadata: headers,
                gzip: config.compression == Compression::Gzip,
                timeout,
                sink,
            }),
        }
    }

    pub(super) async fn send(&self, body: Bytes) -> Sent {
        match self {
            Self::Http {
                client,
                url,
                headers,
                sink,
            } => send_http(client, url, headers, body, sink).await,
            Self::Grpc {
                channel,
                metadata,
                gzip,
                timeout,
                sink,
            } => send_grpc(channel.clone(), metadata, *gzip, *timeout, body, sink).await,
        }
    }
}

fn partial_success(response: &ExportLogsServiceResponse, sink: &str) {
    if let Some(partial) = &response.partial_success
        && (partial.rejected_log_records > 0 || !partial.error_message.is_empty())
    {
        tracing::warn!(
            component_id = %sink,
            rejected = partial.rejected_log_records,
            reason = %crate::redact::redact(&partial.error_message),
            "the receiver refused some log records (OTLP partial success; not sent again)"
        );
    }
}

async fn send_http(
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: Bytes,
    sink: &str,
) -> Sent {
    let sent = client
        .post(url)
        .headers(headers.clone())
        .body(body)
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => {
            let certificate = crate::net::is_certificate_error(&e);
            let reason = crate::net::error_chain(&e.without_url());
            let verdict = if certificate {
                Verdict::Permanent { reason }
            } else {
                Verdict::Retry {
                    reason,
                    retry_after: None,
                }
            };
            return Sent {
                verdict,
                status: None,
                body: None,
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = crate::net::retry_after(response.headers());
    let protobuf = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-protobuf"));
    let answer = crate::net::read_at_most(&mut response, MAX_ANSWER)
        .await
        .unwrap_or_default();
    if (200..300).contains(&status) {
        if protobuf
            && let Ok(decoded) = <ExportLogsServiceResponse as prost::Message>::decode(&answer[..])
        {
            partial_success(&decoded, sink);
        }
        return Sent {
            verdict: Verdict::Delivered,
            status: Some(status),
            body: None,
        };
    }
    // The error's message: a `google.rpc.Status`, else the text of the answer.
    let message = protobuf
        .then(|| <RpcStatus as prost::Message>::decode(&answer[..]).ok())
        .flatten()
        .map(|s| s.message)
        .unwrap_or_else(|| String::from_utf8_lossy(&answer).into_owned());
    let message = crate::text::prefix_chars(message.trim(), 500).to_owned();
    let reason = format!("HTTP {status}: {message}");
    let verdict = match status {
        429 | 502 | 503 | 504 => Verdict::Retry {
            reason,
            retry_after,
        },
        _ => Verdict::Permanent { reason },
    };
    Sent {
        verdict,
        status: Some(status),
        body: Some(message),
    }
}

async fn send_grpc(
    channel: tonic::transport::Channel,
    metadata: &HeaderMap,
    gzip: bool,
    timeout: Duration,
    body: Bytes,
    sink: &str,
) -> Sent {
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzip {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc = grpc.accept_compressed(CompressionEncoding::Gzip);
    let result = async {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connecting: {e}")))?;
        let mut request = tonic::Request::new(body);
        request.set_timeout(timeout);
        for (name, value) in metadata {
            if let Ok(v) = tonic::metadata::MetadataValue::try_from(value.as_bytes())
                && let Ok(key) = tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes())
            {
                request.metadata_mut().insert(key, v);
            }
        }
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(GRPC_PATH);
        grpc.unary(request, path, RawCodec).await
    }
    .await;
    match result {
        Ok(response) => {
            partial_success(response.get_ref(), sink);
            Sent {
                verdict: Verdict::Delivered,
                status: None,
                body: None,
            }
        }
        Err(status) => {
            // The transport's causes (a refused connection, a certificate) are below the
            // status's own message.
            let mut causes = String::new();
            let mut source = std::error::Error::source(&status);
            while let Some(e) = source {
                causes.push_str(&format!(": {e}"));
                source = e.source();
            }
            let reason = format!(
                "gRPC {:?}: {}{}",
                status.code(),
                crate::text::prefix_chars(status.message(), 500),
                crate::text::prefix_chars(&causes, 500)
            );
            use tonic::Code;
            // A certificate the server will keep presenting does not get better.
            let certificate = reason.to_ascii_lowercase().contains("certificate");
            let retry = !certificate
                && match status.code() {
                    Code::Cancelled
                    | Code::DeadlineExceeded
                    | Code::Aborted
                    | Code::OutOfRange
                    | Code::Unavailable
                    | Code::DataLoss => true,
                    // Retryable only when the server says when (RetryInfo in the details).
                    Code::ResourceExhausted => !status.details().is_empty(),
                    _ => false,
                };
            let verdict = if retry {
                Verdict::Retry {
                    reason,
                    retry_after: None,
                }
            } else {
                Verdict::Permanent { reason }
            };
            Sent {
                verdict,
                status: None,
                body: Some(status.message().to_owned()),
            }
        }
    }
}

/// A lazily connecting channel; `https://` endpoints get TLS (HTTP/2 by ALPN) trusting
/// the system's CAs and `ca_file`'s.
fn grpc_channel(
    url: &reqwest::Url,
    ca_file: Option<&std::path::Path>,
    timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    let tls = if url.scheme() == "https" {
        let mut config = crate::net::client_tls::client_config(ca_file)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
    } else {
        None
    };
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let name = rustls::pki_types::ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|e| format!("`endpoint` host `{host}`: {e}"))?;
    // tonic dials `http://` itself; the connector below does TCP and TLS.
    let mut plain = url.clone();
    plain
        .set_scheme("http")
        .map_err(|()| "`endpoint` cannot be used for gRPC".to_owned())?;
    let endpoint = tonic::transport::Endpoint::from_shared(plain.to_string())
        .map_err(|e| format!("`endpoint`: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let (tls, host, name) = (tls.clone(), host.clone(), name.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect((
                host.trim_start_matches('[').trim_end_matches(']'),
                port,
            ))
            .await?;
            tcp.set_nodelay(true)?;
            let io = match tls {
                None => tokio_util::either::Either::Left(tcp),
                Some(tls) => tokio_util::either::Either::Right(tls.connect(name, tcp).await?),
            };
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(io))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// Sends the already encoded request as it is, and reads the response.
#[derive(Clone, Copy)]
struct RawCodec;

struct RawEncoder;
struct ResponseDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportLogsServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportLogsServiceResponse;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        <ExportLogsServiceResponse as prost::Message>::decode(bytes)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("the answer is not OTLP: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_headers_credential_is_a_secret_on_its_own() {
        let headers: IndexMap<String, String> = [(
            "Authorization".to_owned(),
            "Bearer Otlp-Cred-Part-42".to_owned(),
        )]
        .into();
        let map = metadata(&headers).expect("valid");
        assert!(map["authorization"].is_sensitive());
        let out = crate::redact::redact("PERMISSION_DENIED: token Otlp-Cred-Part-42 is unknown");
        assert!(!out.contains("Otlp-Cred-Part-42"), "{out}");
        for (name, value) in [
            ("grpc-timeout", "1S"),
            ("content-type", "x"),
            ("x-key", " "),
        ] {
            let bad: IndexMap<String, String> = [(name.to_owned(), value.to_owned())].into();
            assert!(metadata(&bad).is_err(), "{name}");
        }
    }
}
