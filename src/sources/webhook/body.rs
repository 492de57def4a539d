//! Request bodies: bounded reading, `Content-Encoding` (gzip, deflate, zstd) with the
//! same bound on the decoded size (a small compressed body cannot expand past it), and
//! JSON parsing whose errors name the JSON path.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;
use vrl::value::Value;

use super::bounded_json::{self, Bounded, TopLevel};

use super::reply::Rejection;

/// Decodes `Content-Encoding`; the result is at most `limit` bytes.
pub(crate) fn decode_content(
    headers: &HeaderMap,
    raw: bytes::Bytes,
    limit: usize,
) -> Result<bytes::Bytes, Rejection> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let mut out = Vec::new();
    let read = match encoding.as_str() {
        "" | "identity" => return Ok(raw),
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&raw[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        // RFC 9110's "deflate" is zlib-wrapped; some clients send raw deflate anyway.
        "deflate" => {
            let zlib = flate2::read::ZlibDecoder::new(&raw[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out);
            if zlib.is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(&raw[..])
                    .take(limit as u64 + 1)
                    .read_to_end(&mut out)
            } else {
                zlib
            }
        }
        "zstd" => zstd::stream::read::Decoder::new(&raw[..])
            .and_then(|d| d.take(limit as u64 + 1).read_to_end(&mut out)),
        other => {
            return Err(Rejection::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("unsupported Content-Encoding `{other}`: use gzip, deflate, zstd or none"),
            ));
        }
    };
    if let Err(e) = read {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "bad_encoding",
            format!("the body is not valid {encoding}: {e}"),
        ));
    }
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(out.into())
}

/// How long, and how much, a refused body is still read before the connection closes.
/// A client that writes its whole body before reading the answer (Python's
/// http.client, many shell tools) would otherwise see a reset instead of the 413,
/// because closing a socket with unread data sends RST. nginx calls this lingering
/// close.
const DRAIN_TIME: Duration = Duration::from_secs(2);
const DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// Reads and discards what is left of a body, within [`DRAIN_TIME`] and [`DRAIN_BYTES`].
pub(crate) async fn drain(body: Body) {
    drain_stream(body.into_data_stream()).await;
}

async fn drain_stream(mut stream: axum::body::BodyDataStream) {
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read = read.saturating_add(chunk.len());
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Reads a whole body of at most `limit` bytes within `timeout`. A body over the
/// limit is drained (see [`drain`]) and answered 413.
pub(crate) async fn read_bounded(
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<bytes::Bytes, Rejection> {
    use hyper::body::Body as _;
    // What the client declared, for one allocation of the right size; capped, since a
    // declared length costs the client nothing.
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    let mut stream = body.into_data_stream();
    let read = async {
        // A body that arrives in one chunk is that chunk: no copy.
        let mut first: Option<bytes::Bytes> = None;
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("cannot read the body: {e}"),
                )
            })?;
            let held = first.as_ref().map_or(buf.len(), bytes::Bytes::len);
            if held + chunk.len() > limit {
                return Err(too_large(limit));
            }
            if let Some(first) = first.take() {
                buf.reserve(declared.clamp(held + chunk.len(), limit).min(MAX_RESERVE));
                buf.extend_from_slice(&first);
            } else if buf.is_empty() {
                first = Some(chunk);
                continue;
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(first.unwrap_or_else(|| buf.freeze()))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(raw)) => Ok(raw),
        Ok(Err(rejection)) => {
            if rejection.status == StatusCode::PAYLOAD_TOO_LARGE {
                drain_stream(stream).await;
            }
            Err(rejection)
        }
        Err(_) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the body did not arrive within read_timeout",
        )),
    }
}

/// The most a body's first allocation reserves on the strength of its declared length.
const MAX_RESERVE: usize = 1 << 20;

pub(crate) fn too_large(limit: usize) -> Rejection {
    Rejection::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the body is larger than max_body_bytes ({limit} bytes)"),
    )
}

/// A JSON syntax or shape problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    /// `.alerts[0].labels`, or `.` for the root.
    pub(crate) path: String,
    pub(crate) message: String,
}

/// Parses exactly one JSON document.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, JsonError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(JsonError {
            path: ".".into(),
            message: "empty body: expected a JSON document".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = parse_one(&mut de)?;
    de.end().map_err(|e| JsonError {
        path: ".".into(),
        message: describe(&e),
    })?;
    Ok(value)
}

/// Parses a JSON object, an array (one value per element) or NDJSON (any
/// whitespace-separated sequence of JSON values).
pub(crate) fn parse_json_stream(body: &[u8]) -> Result<Vec<Value>, JsonError> {
    match parse_json_stream_at_most(body, usize::MAX) {
        Ok(values) => Ok(values),
        Err(StreamError::Json(e)) => Err(e),
        Err(StreamError::TooMany { max }) => Err(JsonError {
            path: ".".into(),
            message: format!("more than {max} values"),
        }),
    }
}

/// Why a body could not become events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamError {
    Json(JsonError),
    /// More than `max` events; reading stopped there, so a body of a million tiny
    /// values costs no more than `max` of them.
    TooMany {
        max: usize,
    },
}

/// [`parse_json_stream`] that stops reading once it has more than `max` values.
pub(crate) fn parse_json_stream_at_most(
    body: &[u8],
    max: usize,
) -> Result<Vec<Value>, StreamError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(StreamError::Json(JsonError {
            path: ".".into(),
            message: "empty body: expected a JSON object, an array of objects or NDJSON".into(),
        }));
    }
    // Fast path. `Deserializer::end` reports "more input" as an error whose position
    // serde_json finds by counting lines from the start, which made an NDJSON body
    // quadratic (22% of the NDJSON → http load scenario's CPU). The stream
    // deserializer is stricter about separators, so whatever it accepts the loop
    // below would read the same way; anything else takes the loop, which names the
    // failing path.
    let allowance = bounded_json::remaining();
    let mut fast = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<TopLevel>();
    let mut clean = true;
    for v in stream.by_ref() {
        match v {
            Ok(TopLevel(Value::Array(items))) => fast.extend(items),
            Ok(TopLevel(v)) => fast.push(v),
            Err(_) => {
                clean = false;
                break;
            }
        }
        if fast.len() > max {
            return Err(StreamError::TooMany { max });
        }
    }
    if clean {
        return Ok(fast);
    }
    drop(fast);
    if bounded_json::exceeded() {
        return Err(StreamError::Json(JsonError {
            path: ".".into(),
            message: bounded_json::EXCEEDED_MESSAGE.into(),
        }));
    }
    if bounded_json::too_many() {
        return Err(StreamError::TooMany { max });
    }
    // The same bytes again, with the allowance the first pass spent given back.
    bounded_json::restore(allowance);
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut values = Vec::new();
    while de.end().is_err() {
        match parse_one(&mut de).map_err(StreamError::Json)? {
            Value::Array(items) => values.extend(items),
            v => values.push(v),
        }
        if values.len() > max {
            return Err(StreamError::TooMany { max });
        }
    }
    Ok(values)
}

fn parse_one(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'_>>,
) -> Result<Value, JsonError> {
    serde_path_to_error::deserialize::<_, Bounded>(de)
        .map(|b| b.0)
        .map_err(|e| {
            let path = e.path().to_string();
            JsonError {
                path: if path == "." {
                    path
                } else {
                    format!(".{path}")
                },
                message: describe(e.inner()),
            }
        })
}

fn describe(e: &serde_json::Error) -> String {
    // serde_json's message already ends with "at line L column C".
    format!("invalid JSON: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use std::io::Write;

    fn chunked(pieces: &[&'static str]) -> Body {
        let chunks = pieces
            .iter()
            .map(|p| Ok::<_, std::io::Error>(bytes::Bytes::from_static(p.as_bytes())));
        Body::from_stream(futures_util::stream::iter(chunks.collect::<Vec<_>>()))
    }

    #[tokio::test]
    async fn bodies_are_read_whole_in_one_chunk_or_many_and_bounded() {
        let second = Duration::from_secs(1);
        let one = read_bounded(Body::from("{\"a\":1}"), 100, second).await;
        assert_eq!(one.expect("read").as_ref(), b"{\"a\":1}");
        for pieces in [
            &["{\"a\"", ":1", "}"][..],
            &["", "{\"a\":1}"],
            &["{\"a\":1}", "", ""],
            &["", "", "{\"a\":", "1}"],
        ] {
            let read = read_bounded(chunked(pieces), 100, second).await;
            assert_eq!(read.expect("read").as_ref(), b"{\"a\":1}", "{pieces:?}");
        }
        // The limit counts every chunk, the first one held aside included.
        for pieces in [&["{\"a\":", "1}"][..], &["{\"a\":1}"]] {
            let refused = read_bounded(chunked(pieces), 6, second).await;
            assert_eq!(
                refused.expect_err("over").status,
                StatusCode::PAYLOAD_TOO_LARGE
            );
        }
        let exact = read_bounded(chunked(&["{\"a\":", "1}"]), 7, second).await;
        assert_eq!(exact.expect("at the limit").len(), 7);
    }

    #[test]
    fn one_document_with_its_path_on_error() {
        assert!(parse_json(br#"{"a":[1,2]}"#).is_ok());
        let e = parse_json(br#"{"alerts":[{"labels":{"a":}}]}"#).expect_err("bad");
        assert_eq!(e.path, ".alerts[0].labels.a");
        assert!(
            e.message
                .starts_with("invalid JSON: expected value at line 1 column"),
            "{}",
            e.message
        );
        let e = parse_json(br#"{"a":1} {"b":2}"#).expect_err("two documents");
        assert_eq!(e.path, ".");
        assert!(
            parse_json(b" ")
                .expect_err("empty")
                .message
                .starts_with("empty body")
        );
    }

    #[test]
    fn streams_split_arrays_and_ndjson() {
        assert_eq!(parse_json_stream(br#"{"a":1}"#).expect("object").len(), 1);
        assert_eq!(
            parse_json_stream(br#"[{"a":1},{"a":2}]"#)
                .expect("array")
                .len(),
            2
        );
        assert_eq!(
            parse_json_stream(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n")
                .expect("ndjson")
                .len(),
            3
        );
        let e = parse_json_stream(b"{\"a\":1}\n{\"a\":").expect_err("truncated");
        assert!(e.message.contains("line 2 column"), "{}", e.message);
    }

    #[test]
    fn reading_stops_past_the_event_bound() {
        let body = "1\n".repeat(1_000_000);
        assert_eq!(
            parse_json_stream_at_most(body.as_bytes(), 10),
            Err(StreamError::TooMany { max: 10 })
        );
        assert_eq!(
            parse_json_stream_at_most(b"[1,2,3]\n4", 3),
            Err(StreamError::TooMany { max: 3 })
        );
        assert_eq!(
            parse_json_stream_at_most(b"[1,2,3]", 3).map(|v| v.len()),
            Ok(3)
        );
        // A malformed tail past the bound is reported as too many, not read further.
        assert_eq!(
            parse_json_stream_at_most(b"1 2 3 {", 2),
            Err(StreamError::TooMany { max: 2 })
        );
    }

    #[test]
    fn adjacent_and_mixed_values_read_as_before() {
        let all = parse_json_stream(b"{\"a\":1}{\"a\":2} [{\"a\":3},{\"a\":4}]\n\"x\" 5 ")
            .expect("a stream");
        let text: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                r#"{ "a": 1 }"#,
                r#"{ "a": 2 }"#,
                r#"{ "a": 3 }"#,
                r#"{ "a": 4 }"#,
                r#""x""#,
                "5"
            ]
        );
        let e = parse_json_stream(b"{\"a\":1}\n{\"b\":[1,}").expect_err("bad");
        assert_eq!(e.path, ".b[1]", "{}", e.message);
    }

    #[test]
    fn compressed_bodies_decode_within_the_limit() {
        let text = vec![b'x'; 1000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(
            decode_content(&h, gz.clone().into(), 1000)
                .expect("fits")
                .len(),
            1000
        );
        let e = decode_content(&h, gz.into(), 999).expect_err("too large once decoded");
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);

        let z = zstd::encode_all(&text[..], 1).expect("zstd");
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("zstd"));
        assert_eq!(
            decode_content(&h, z.into(), 4096).expect("zstd").len(),
            1000
        );

        let mut d = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        d.write_all(&text).expect("deflate");
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("deflate"),
        );
        assert_eq!(
            decode_content(&h, d.finish().expect("deflate").into(), 4096)
                .expect("deflate")
                .len(),
            1000
        );

        let e =
            decode_content(&h, bytes::Bytes::from_static(b"not deflate"), 4096).expect_err("bad");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        let e = decode_content(&h, bytes::Bytes::from_static(b"x"), 10).expect_err("br");
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
