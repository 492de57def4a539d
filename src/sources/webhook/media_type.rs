//! Which `Content-Type`s a route reads. Every decoder reads JSON, so JSON's media types
//! (and `text/plain`, which SNS sends, and NDJSON's) are taken and anything else, such
//! as the form and multipart bodies a browser can send cross-site, is answered 415. A
//! request without a `Content-Type` is read as JSON. CloudEvents in binary mode carry
//! their data's own type, so with a `ce-specversion` header any type is taken there.

use axum::http::{HeaderMap, StatusCode, header};

use super::reply::Rejection;

const JSON_TYPES: &[&str] = &[
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/json-seq",
    "text/json",
    "text/plain",
];

/// Checks the request's `Content-Type` for a route with this decoder.
pub(crate) fn check(decoder: &str, headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    if decoder == "cloudevents" && headers.contains_key("ce-specversion") {
        return Ok(());
    }
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json_suffix = essence.starts_with("application/") && essence.ends_with("+json");
    if json_suffix || JSON_TYPES.contains(&essence.as_str()) {
        return Ok(());
    }
    // `curl -d` sends a form; say how to send JSON instead.
    let hint = if essence == "application/x-www-form-urlencoded" {
        " (with curl, send JSON with --json or -H 'Content-Type: application/json')"
    } else {
        ""
    };
    Err(Rejection::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "unsupported Content-Type `{}`: this route reads JSON (application/json, application/*+json, NDJSON or text/plain){hint}",
            String::from_utf8_lossy(value.as_bytes())
                .chars()
                .take(100)
                .collect::<String>()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(content_type: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h
    }

    #[test]
    fn json_family_is_read_and_browser_forms_are_not() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/plain; charset=UTF-8",
            "application/x-ndjson",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
        ] {
            assert!(check("json", &with(ok)).is_ok(), "{ok}");
        }
        assert!(check("json", &HeaderMap::new()).is_ok(), "no type: JSON");
        for bad in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/html",
            "application/xml",
            "image/+json",
        ] {
            let e = check("grafana", &with(bad)).expect_err(bad);
            assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
            assert!(e.message.contains(bad), "{}", e.message);
        }
        let mut binary = with("application/octet-stream");
        binary.insert("ce-specversion", HeaderValue::from_static("1.0"));
        assert!(check("cloudevents", &binary).is_ok());
        assert!(check("json", &binary).is_err());
    }
}
