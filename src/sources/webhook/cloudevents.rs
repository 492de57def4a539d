//! CloudEvents HTTP binding, receiving side: binary mode (attributes in `ce-*` headers,
//! the body is `data`) is turned into the structured form, so the decoder plugin sees
//! one shape. Structured (`application/cloudevents+json`) and batch
//! (`application/cloudevents-batch+json`) bodies are plain JSON.

use axum::http::{HeaderMap, header};
use base64::Engine;
use vrl::value::{KeyString, ObjectMap, Value};

use super::body::{JsonError, parse_json};

pub(crate) fn payload(headers: &HeaderMap, body: &[u8]) -> Result<Value, JsonError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let structured = content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/cloudevents"));
    if structured || !headers.contains_key("ce-specversion") {
        return parse_json(body);
    }
    let mut event = ObjectMap::new();
    for (name, value) in headers {
        if let Some(attribute) = name.as_str().strip_prefix("ce-") {
            let decoded = percent_decode(value.as_bytes());
            event.insert(KeyString::from(attribute), Value::from(decoded));
        }
    }
    if let Some(c) = &content_type {
        event.insert("datacontenttype".into(), Value::from(c.as_str()));
    }
    let json = content_type.as_deref().is_none_or(|c| {
        c.starts_with("application/json") || c.contains("+json") || c.starts_with("text/json")
    });
    if body.is_empty() {
        // No data at all is valid.
    } else if json {
        let data = parse_json(body).map_err(|e| JsonError {
            path: format!(".data{}", e.path.trim_start_matches('.')),
            message: e.message,
        })?;
        event.insert("data".into(), data);
    } else {
        match std::str::from_utf8(body) {
            Ok(text) => {
                event.insert("data".into(), Value::from(text));
            }
            Err(_) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(body);
                event.insert("data_base64".into(), Value::from(b64));
            }
        }
    }
    Ok(Value::Object(event))
}

/// Header values percent-encode space, `"`, `%` and non-ASCII (CloudEvents HTTP binding).
fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && let Some(hex) = raw.get(i + 1..i + 3)
            && let Ok(s) = std::str::from_utf8(hex)
            && let Ok(b) = u8::from_str_radix(s, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn binary_mode_becomes_structured() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "0001"),
            ("ce-type", "test_event.test_application"),
            ("ce-source", "http://localhost/"),
            ("ce-subject", "caf%C3%A9%20ok"),
            ("content-type", "application/json"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let v = payload(&h, br#"{"hello":"world"}"#).expect("binary");
        let o = v.as_object().expect("object");
        assert_eq!(o.get("id"), Some(&Value::from("0001")));
        assert_eq!(o.get("subject"), Some(&Value::from("café ok")));
        assert_eq!(
            o.get("datacontenttype"),
            Some(&Value::from("application/json"))
        );
        let data = o.get("data").and_then(Value::as_object).expect("data");
        assert_eq!(data.get("hello"), Some(&Value::from("world")));

        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let v = payload(&h, &[0xff, 0x00]).expect("bytes");
        assert_eq!(
            v.as_object().and_then(|o| o.get("data_base64")),
            Some(&Value::from("/wA="))
        );
    }
}
