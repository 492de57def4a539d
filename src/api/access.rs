//! Who may call what: API tokens with roles, the role every route needs, and the audit
//! line of every call that changes something.
//!
//! - `viewer` reads everything except `/tap` (events and metric samples too);
//! - `operator` also manages silences and incidents, asks status feeds to poll, sends
//!   test outages, and posts events and metric samples into the pipeline;
//! - `admin` also reloads the pipeline, taps events, makes, changes and deletes
//!   subscriptions, and stops, starts and configures outage monitoring.
//!
//! Tokens are compared as SHA-256 digests in constant time, each of them every time, so
//! how long the check takes says nothing about which token, or how much of one, matched.
//! With no token configured (allowed on a loopback address only) every caller is an
//! admin. A missing or unknown token is a 401; a known token whose role is too low is a
//! 403 naming the role the route needs. A token's name, never its value, reaches logs.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

pub use crate::settings::Role;

/// The role a route needs; `None`: open to anyone (probes, metrics). A route missing
/// here needs `admin`, so a new route is closed until it is placed.
pub(crate) fn required(method: &Method, route: &str) -> Option<Role> {
    let read = method == Method::GET || method == Method::HEAD;
    Some(match route {
        // Samples posted into the pipeline; reading the exposition is open.
        "/metrics" if !read => Role::Operator,
        "/health" | "/health/live" | "/health/ready" | "/metrics" | "/components"
        | "/openapi.json" => {
            return None;
        }
        "/events" if read => Role::Viewer,
        "/events" => Role::Operator,
        "/metrics/query" if read => Role::Viewer,
        "/tap" | "/reload" => Role::Admin,
        "/status_feeds/{id}" if read => Role::Viewer,
        "/status_feeds/{id}/check" | "/outages/check/{provider}" | "/outages/webhook/test" => {
            Role::Operator
        }
        "/outages/status" | "/outages/history" if read => Role::Viewer,
        "/outages/start" | "/outages/stop" | "/outages/config" => Role::Admin,
        "/api/v2/status" if read => Role::Viewer,
        "/silences"
        | "/silences/{id}"
        | "/api/v2/alerts"
        | "/api/v2/silences"
        | "/api/v2/silence/{id}"
        | "/incidents"
        | "/incidents/{id}"
        | "/incidents/{id}/timeline" => {
            if read {
                Role::Viewer
            } else {
                Role::Operator
            }
        }
        "/stats" if read => Role::Viewer,
        // Made, changed and deleted by admins; read (and tested: nothing is sent) by all.
        "/subscriptions"
        | "/subscriptions/{id}"
        | "/subscriptions/{id}/test"
        | "/subscriptions/{id}/events" => {
            if read {
                Role::Viewer
            } else {
                Role::Admin
            }
        }
        _ => Role::Admin,
    })
}

/// A token the API knows.
#[derive(Clone)]
struct Known {
    name: Arc<str>,
    digest: [u8; 32],
    role: Role,
}

/// The tokens the API accepts (none: every caller is an admin).
#[derive(Clone, Default)]
pub struct Access {
    tokens: Vec<Known>,
}

/// Who called: the token's name (`None` when no token is configured) and its role.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) role: Role,
}

impl Caller {
    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("anonymous")
    }
}

use crate::hashing::sha256;

impl Access {
    /// No token: every caller is an admin (loopback only; `ApiSettings::check`).
    pub fn open() -> Self {
        Self::default()
    }

    /// Adds a token, given as its value.
    pub fn with_token(self, name: &str, token: &str, role: Role) -> Self {
        self.with_digest(name, sha256(token.as_bytes()), role)
    }

    /// Adds a token, given as the SHA-256 digest of its value.
    pub fn with_digest(mut self, name: &str, digest: [u8; 32], role: Role) -> Self {
        self.tokens.push(Known {
            name: Arc::from(name),
            digest,
            role,
        });
        self
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens of the `api` settings (checked when they were loaded).
    pub(crate) fn from_settings(api: &crate::settings::ApiSettings) -> Result<Self, String> {
        Ok(api
            .resolved_tokens()?
            .into_iter()
            .fold(Self::open(), |a, (name, digest, role)| {
                a.with_digest(&name, digest, role)
            }))
    }

    /// The caller of a request with these headers; `None`: no known token.
    pub(crate) fn identify(&self, headers: &axum::http::HeaderMap) -> Option<Caller> {
        if self.tokens.is_empty() {
            return Some(Caller {
                name: None,
                role: Role::Admin,
            });
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)?;
        let digest = sha256(given.as_bytes());
        let mut found = None;
        for known in &self.tokens {
            if bool::from(digest.ct_eq(&known.digest)) && found.is_none() {
                found = Some(Caller {
                    name: Some(Arc::clone(&known.name)),
                    role: known.role,
                });
            }
        }
        found
    }
}

/// The old single `auth_token`: one admin token (none: open).
impl From<Option<String>> for Access {
    fn from(token: Option<String>) -> Self {
        match token.filter(|t| !t.is_empty()) {
            Some(t) => Self::open().with_token("auth_token", &t, Role::Admin),
            None => Self::open(),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value, whatever the scheme's case.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub(crate) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
        axum::Json(
            json!({ "error": "a valid bearer token (api.tokens or api.auth_token) is required" }),
        ),
    )
        .into_response()
}

fn forbidden(caller: &Caller, needed: Role) -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(json!({
            "error": format!(
                "this needs the {} role; token `{}` has the {} role",
                needed.as_str(),
                caller.name(),
                caller.role.as_str()
            ),
            "required_role": needed.as_str(),
        })),
    )
        .into_response()
}

/// Checks the caller's role against the route's before the handler runs, and writes
/// the audit line of every call that changes something (who, what, the answer).
pub(crate) async fn authorize(
    State(access): State<Arc<Access>>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let method = request.method().clone();
    let Some(needed) = required(&method, &route) else {
        return next.run(request).await;
    };
    let Some(caller) = access.identify(request.headers()) else {
        if method != Method::GET {
            tracing::info!(target: "sluice::audit", who = "unknown token", method = %method, route = %route, status = 401, "API call refused");
        }
        return unauthorized();
    };
    if caller.role < needed {
        tracing::info!(target: "sluice::audit", who = caller.name(), role = caller.role.as_str(), method = %method, route = %route, status = 403, needed = needed.as_str(), "API call refused");
        return forbidden(&caller, needed);
    }
    let path = request.uri().path().chars().take(200).collect::<String>();
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    let changes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changes || route == "/tap" {
        tracing::info!(target: "sluice::audit", who = caller.name(), role = caller.role.as_str(), method = %method, path = %path, status = response.status().as_u16(), "API call");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: &str) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        h
    }

    #[test]
    fn tokens_are_told_apart_and_unknown_ones_refused() {
        let access = Access::open()
            .with_token("ci", "t-viewer", Role::Viewer)
            .with_digest("ops", sha256(b"t-operator"), Role::Operator);
        let c = access.identify(&headers("t-operator")).expect("known");
        assert_eq!((c.name(), c.role), ("ops", Role::Operator));
        assert_eq!(
            access.identify(&headers("t-viewer")).expect("known").role,
            Role::Viewer
        );
        assert!(access.identify(&headers("t-viewe")).is_none());
        assert!(access.identify(&axum::http::HeaderMap::new()).is_none());
        let open = Access::open().identify(&axum::http::HeaderMap::new());
        assert_eq!(open.expect("open").role, Role::Admin);
    }

    #[test]
    fn routes_need_their_roles_and_unknown_ones_need_admin() {
        assert_eq!(required(&Method::GET, "/metrics"), None);
        assert_eq!(required(&Method::GET, "/incidents"), Some(Role::Viewer));
        assert_eq!(
            required(&Method::PUT, "/incidents/{id}"),
            Some(Role::Operator)
        );
        assert_eq!(required(&Method::GET, "/tap"), Some(Role::Admin));
        assert_eq!(required(&Method::POST, "/stats"), Some(Role::Admin));
        assert_eq!(required(&Method::GET, "/something/new"), Some(Role::Admin));
    }
}
