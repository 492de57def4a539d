//! Request authentication per route: bearer token, HTTP Basic, HMAC body signature
//! (Grafana's `X-Grafana-Alerting-Signature`), API key in a header or the query string.
//!
//! Every secret comparison is constant-time, and a failure is answered 401 with no hint
//! of which part was wrong.

use axum::http::{HeaderMap, header};
use base64::Engine;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::component::BuildError;

/// How a route's requests are authenticated: one of `bearer`, `basic`, `hmac` or
/// `api_key` (a request that fails is answered 401). Unset: no authentication.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum AuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP Basic: `Authorization: Basic` with this `user` and `password`.
    Basic { user: String, password: String },
    /// A hex HMAC of the body (or of `<timestamp>:<body>` with `timestamp_header`).
    Hmac {
        header: String,
        secret: String,
        #[serde(default)]
        algorithm: HmacAlgorithm,
        timestamp_header: Option<String>,
        /// How far the signed timestamp may be from now (replay window).
        #[schemars(schema_with = "crate::units::duration")]
        #[serde(default = "default_max_skew", with = "humantime_serde")]
        max_skew: std::time::Duration,
    },
    /// A shared key in a header or a query parameter.
    ApiKey {
        header: Option<String>,
        query: Option<String>,
        value: String,
    },
}

#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HmacAlgorithm {
    #[default]
    Sha256,
    Sha512,
}

fn default_max_skew() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

impl AuthConfig {
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        let empty = |what: &str| Err(BuildError(format!("`auth`: `{what}` must not be empty")));
        match self {
            Self::Bearer(token) if blank(token) => empty("bearer"),
            Self::Basic { user, .. } if user.is_empty() => empty("user"),
            // An empty password (an unset `${VAR}`) would let `curl -u user:` in.
            Self::Basic { password, .. } if blank(password) => empty("password"),
            Self::Hmac { secret, .. } if blank(secret) => empty("secret"),
            Self::Hmac { header, .. } if header.is_empty() => empty("header"),
            Self::Hmac {
                timestamp_header: Some(h),
                ..
            } if h.is_empty() => empty("timestamp_header"),
            Self::ApiKey { value, .. } if blank(value) => empty("value"),
            Self::ApiKey {
                header: Some(h), ..
            } if h.is_empty() => empty("header"),
            Self::ApiKey { query: Some(q), .. } if q.is_empty() => empty("query"),
            Self::ApiKey {
                header: None,
                query: None,
                ..
            }
            | Self::ApiKey {
                header: Some(_),
                query: Some(_),
                ..
            } => Err(BuildError(
                "`auth.api_key`: give exactly one of `header` and `query`".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Whether this method needs the body (checked after reading it).
    pub(crate) fn needs_body(&self) -> bool {
        matches!(self, Self::Hmac { .. })
    }

    /// The `WWW-Authenticate` challenge to send with a 401, if the scheme has one.
    pub(crate) fn challenge(&self) -> Option<&'static str> {
        match self {
            Self::Bearer(_) => Some("Bearer"),
            Self::Basic { .. } => Some("Basic realm=\"sluice\""),
            _ => None,
        }
    }

    /// Checks the request. `body` is the raw body as received (only read for HMAC);
    /// `now_unix` is the current time in seconds for the HMAC replay window.
    pub(crate) fn verify(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
        now_unix: i64,
    ) -> bool {
        match self {
            Self::Bearer(token) => header_str(headers, header::AUTHORIZATION.as_str())
                .and_then(|v| strip_scheme(v, "Bearer"))
                .is_some_and(|given| ct_eq(given.as_bytes(), token.as_bytes())),
            Self::Basic { user, password } => header_str(headers, header::AUTHORIZATION.as_str())
                .and_then(|v| strip_scheme(v, "Basic"))
                .and_then(|b64| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .ok()
                })
                .is_some_and(|decoded| {
                    let (u, p) = match decoded.iter().position(|&b| b == b':') {
                        Some(i) => (&decoded[..i], &decoded[i + 1..]),
                        None => (&decoded[..], &[][..]),
                    };
                    // Both halves are compared whatever the first one gave.
                    let user_ok = ct_eq(u, user.as_bytes());
                    let password_ok = ct_eq(p, password.as_bytes());
                    user_ok & password_ok
                }),
            Self::Hmac {
                header,
                secret,
                algorithm,
                timestamp_header,
                max_skew,
            } => {
                let Some(given) = header_str(headers, header).and_then(decode_signature) else {
                    return false;
                };
                let algorithm = match algorithm {
                    HmacAlgorithm::Sha256 => ring::hmac::HMAC_SHA256,
                    HmacAlgorithm::Sha512 => ring::hmac::HMAC_SHA512,
                };
                let key = ring::hmac::Key::new(algorithm, secret.as_bytes());
                match timestamp_header {
                    None => ring::hmac::verify(&key, body, &given).is_ok(),
                    Some(ts_header) => {
                        let Some(ts) = header_str(headers, ts_header) else {
                            return false;
                        };
                        let fresh = ts
                            .trim()
                            .parse::<i64>()
                            .is_ok_and(|t| t.abs_diff(now_unix) <= max_skew.as_secs());
                        let mut ctx = ring::hmac::Context::with_key(&key);
                        ctx.update(ts.as_bytes());
                        ctx.update(b":");
                        ctx.update(body);
                        let tag = ctx.sign();
                        ct_eq(tag.as_ref(), &given) & fresh
                    }
                }
            }
            Self::ApiKey {
                header,
                query: param,
                value,
            } => {
                let given = match (header, param) {
                    (Some(h), _) => header_str(headers, h).map(str::to_owned),
                    (None, Some(p)) => query.and_then(|q| query_param(q, p)),
                    (None, None) => None,
                };
                given.is_some_and(|g| ct_eq(g.as_bytes(), value.as_bytes()))
            }
        }
    }
}

/// A secret of only whitespace is as guessable as an empty one (an unset `${VAR}`).
fn blank(secret: &str) -> bool {
    secret.trim().is_empty()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// Hex, optionally prefixed `sha256=` (GitHub style); also accepts base64.
fn decode_signature(value: &str) -> Option<Vec<u8>> {
    let v = value.trim();
    let v = v
        .split_once('=')
        .filter(|(p, _)| p.starts_with("sha"))
        .map_or(v, |(_, s)| s);
    hex_decode(v).or_else(|| base64::engine::general_purpose::STANDARD.decode(v).ok())
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn bearer_and_basic() {
        let bearer = AuthConfig::Bearer("s3cret".into());
        assert!(bearer.verify(
            &headers(&[("authorization", "Bearer s3cret")]),
            None,
            b"",
            0
        ));
        assert!(bearer.verify(
            &headers(&[("authorization", "bearer s3cret")]),
            None,
            b"",
            0
        ));
        assert!(!bearer.verify(&headers(&[("authorization", "Bearer s3cre")]), None, b"", 0));
        assert!(!bearer.verify(&headers(&[]), None, b"", 0));

        let basic = AuthConfig::Basic {
            user: "grafana".into(),
            password: "pw:with:colons".into(),
        };
        let good = base64::engine::general_purpose::STANDARD.encode("grafana:pw:with:colons");
        let bad = base64::engine::general_purpose::STANDARD.encode("grafana:pw");
        assert!(basic.verify(
            &headers(&[("authorization", &format!("Basic {good}"))]),
            None,
            b"",
            0
        ));
        assert!(!basic.verify(
            &headers(&[("authorization", &format!("Basic {bad}"))]),
            None,
            b"",
            0
        ));
        assert!(!basic.verify(
            &headers(&[("authorization", &format!("Bearer {good}"))]),
            None,
            b"",
            0
        ));
    }

    #[test]
    fn hmac_with_and_without_timestamp() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let hex = |tag: ring::hmac::Tag| {
            tag.as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let plain = AuthConfig::Hmac {
            header: "X-Grafana-Alerting-Signature".into(),
            secret: "k".into(),
            algorithm: HmacAlgorithm::Sha256,
            timestamp_header: None,
            max_skew: default_max_skew(),
        };
        let sig = hex(ring::hmac::sign(&key, b"{}"));
        let h = headers(&[("x-grafana-alerting-signature", &sig)]);
        assert!(plain.verify(&h, None, b"{}", 0));
        assert!(!plain.verify(&h, None, b"{ }", 0));

        let stamped = AuthConfig::Hmac {
            header: "X-Grafana-Alerting-Signature".into(),
            secret: "k".into(),
            algorithm: HmacAlgorithm::Sha256,
            timestamp_header: Some("X-Grafana-Alerting-Signature-Timestamp".into()),
            max_skew: default_max_skew(),
        };
        let sig = hex(ring::hmac::sign(&key, b"1700000000:{}"));
        let h = headers(&[
            ("x-grafana-alerting-signature", &sig),
            ("x-grafana-alerting-signature-timestamp", "1700000000"),
        ]);
        assert!(stamped.verify(&h, None, b"{}", 1_700_000_100));
        assert!(
            !stamped.verify(&h, None, b"{}", 1_700_001_000),
            "outside the replay window"
        );
    }

    #[test]
    fn empty_secrets_are_refused() {
        let basic = |password: &str| AuthConfig::Basic {
            user: "alice".into(),
            password: password.into(),
        };
        for (auth, what) in [
            (basic(""), "password"),
            (basic("  "), "password"),
            (AuthConfig::Bearer(String::new()), "bearer"),
            (
                AuthConfig::ApiKey {
                    header: Some("X-Key".into()),
                    query: None,
                    value: " ".into(),
                },
                "value",
            ),
            (
                AuthConfig::Hmac {
                    header: "X-Sig".into(),
                    secret: String::new(),
                    algorithm: HmacAlgorithm::Sha256,
                    timestamp_header: None,
                    max_skew: default_max_skew(),
                },
                "secret",
            ),
        ] {
            let e = auth.check().expect_err(what);
            assert_eq!(e.0, format!("`auth`: `{what}` must not be empty"));
        }
        assert!(basic("pw").check().is_ok());
    }

    #[test]
    fn api_key_in_header_or_query() {
        let in_query = AuthConfig::ApiKey {
            header: None,
            query: Some("tokenid".into()),
            value: "abc def".into(),
        };
        assert!(in_query.verify(&HeaderMap::new(), Some("x=1&tokenid=abc%20def"), b"", 0));
        assert!(!in_query.verify(&HeaderMap::new(), Some("tokenid=abc"), b"", 0));
        let in_header = AuthConfig::ApiKey {
            header: Some("X-Api-Key".into()),
            query: None,
            value: "abc".into(),
        };
        assert!(in_header.verify(&headers(&[("x-api-key", "abc")]), None, b"", 0));
        assert!(in_header.check().is_ok());
        let both = AuthConfig::ApiKey {
            header: Some("a".into()),
            query: Some("b".into()),
            value: "v".into(),
        };
        assert!(both.check().is_err());
    }
}
