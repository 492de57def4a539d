//! The browser guard: every request is checked before routing, so that a web page a
//! user opens cannot drive the API (`Host` on a loopback bind, `Origin`, and a JSON
//! content type for requests with a body). See the module documentation of `api`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiState;

/// What [`guard`] needs to know about where the API listens.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guard {
    /// The API listens on loopback only, so a `Host` naming anything else can only come
    /// from a DNS-rebinding page.
    pub(crate) loopback: bool,
    /// The configured host (lowercase, without port), accepted as a `Host` as well.
    pub(crate) configured_host: Option<String>,
}

impl Guard {
    /// The guard for an API configured at `address` and bound to `local`.
    pub(crate) fn for_bind(address: &str, local: SocketAddr) -> Self {
        let host = split_host_port(address).map(|(h, _)| h.to_ascii_lowercase());
        Self {
            loopback: local.ip().is_loopback(),
            configured_host: host.filter(|h| !h.is_empty()),
        }
    }

    /// Whether `host` (no port, lowercase, IPv6 in brackets) names this API.
    fn allows_host(&self, host: &str) -> bool {
        let ip = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .parse::<IpAddr>();
        host == "localhost"
            || ip.is_ok_and(|ip| ip.is_loopback())
            || self.configured_host.as_deref() == Some(host)
    }

    /// `None` when the request may proceed; otherwise why not.
    fn refuse(&self, method: &Method, headers: &HeaderMap) -> Option<Refusal> {
        let hosts: Vec<&HeaderValue> = headers.get_all(header::HOST).iter().collect();
        if hosts.len() > 1 {
            return Some(Refusal::forbidden(
                "host_not_allowed",
                "several Host headers",
            ));
        }
        // HTTP/1.0 clients may send no Host; browsers always send one.
        let host = match hosts.first() {
            Some(v) => {
                let Some((name, _)) = v.to_str().ok().and_then(split_host_port) else {
                    return Some(Refusal::forbidden(
                        "host_not_allowed",
                        "a malformed Host header",
                    ));
                };
                Some((name.to_ascii_lowercase(), v.to_str().unwrap_or_default()))
            }
            None => None,
        };
        if self.loopback
            && let Some((name, _)) = &host
            && !self.allows_host(name)
        {
            return Some(Refusal::forbidden(
                "host_not_allowed",
                "the API listens on loopback and answers only to a loopback Host \
                 (localhost, 127.0.0.1, [::1]): this request looks like DNS rebinding",
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let same = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://"))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("http"))
                .zip(host.as_ref())
                .is_some_and(|((_, authority), (_, host))| authority.eq_ignore_ascii_case(host));
            if !same {
                return Some(Refusal::forbidden(
                    "foreign_origin",
                    "requests from web pages are refused: the Origin is not this API",
                ));
            }
        }
        // Browsers label what a page sends; a page elsewhere is never the API's own.
        if headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !matches!(v, "same-origin" | "none"))
        {
            return Some(Refusal::forbidden(
                "cross_site_request",
                "requests from web pages are refused (Sec-Fetch-Site)",
            ));
        }
        let acts = matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        if acts && has_body(headers) && !is_json(headers) {
            return Some(Refusal {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                reason: "unsupported_media_type",
                message: "a request body must be sent as `Content-Type: application/json`",
            });
        }
        None
    }
}

/// `host:port`, `host`, `[v6]:port` → (host, port); `None` when malformed.
fn split_host_port(value: &str) -> Option<(&str, Option<&str>)> {
    let value = value.trim();
    if value.starts_with('[') {
        let end = value.find(']')?;
        let (host, rest) = value.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => {
                let port = rest.strip_prefix(':')?;
                port.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then_some((host, Some(port)))
            }
        };
    }
    match value.split_once(':') {
        Some((host, port)) => (port.bytes().all(|b| b.is_ascii_digit()) && !host.is_empty())
            .then_some((host, Some(port))),
        None => (!value.is_empty()).then_some((value, None)),
    }
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"))
}

/// Why [`guard`] turned a request away.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: &'static str,
}

impl Refusal {
    fn forbidden(reason: &'static str, message: &'static str) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            reason,
            message,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({ "error": self.message, "reason": self.reason })),
        )
            .into_response()
    }
}

/// Runs before every route: refuses what a browser was made to send (see the module
/// documentation).
pub(super) async fn browser_guard(
    State(s): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(refusal) = s.guard.refuse(request.method(), request.headers()) {
        // Before any token is read, so no one is named: the refusal of a call is audited
        // like the refusals that follow authentication.
        tracing::info!(
            target: "sluice::audit",
            who = "unknown (refused before authentication)",
            method = %request.method(),
            route = %request.uri().path(),
            status = refusal.status.as_u16(),
            reason = refusal.reason,
            "API call refused"
        );
        return refusal.into_response();
    }
    next.run(request).await
}
