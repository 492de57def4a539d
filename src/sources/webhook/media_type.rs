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
        // JSON between systems is UTF-8 (RFC 8259); a body declared otherwise would be
        // misread, or refused with a syntax error that hides why.
        if let Some(charset) = charset(value.to_str().unwrap_or_default())
            && !matches!(charset.as_str(), "utf-8" | "utf8" | "us-ascii")
        {
            return Err(Rejection::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "unsupported charset `{}`: this route reads JSON in UTF-8",
                    charset.chars().take(40).collect::<String>()
                ),
            ));
        }
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

/// The `charset` parameter of a media type, lowercase and unquoted.
fn charset(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
    })
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
        for bad in [
            "application/json; charset=utf-16",
            "text/plain;charset=\"UTF-16LE\"",
        ] {
            let e = check("json", &with(bad)).expect_err(bad);
            assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
            assert!(e.message.contains("charset `utf-16"), "{}", e.message);
        }
        assert!(check("json", &with("application/json; Charset=\"utf-8\"")).is_ok());
        let mut binary = with("application/octet-stream");
        binary.insert("ce-specversion", HeaderValue::from_static("1.0"));
        assert!(check("cloudevents", &binary).is_ok());
        assert!(check("json", &binary).is_err());
    }
}
