//! Bearer or HTTP Basic credentials that a small server (an exporter being scraped, a
//! remote-write receiver) asks of its clients: Prometheus's `authorization` and
//! `basic_auth`. Compared in constant time; an empty secret is a configuration error,
//! since an unset `${VAR}` would otherwise let anyone in.

use axum::http::{HeaderMap, header};
use base64::Engine;
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// How a client authenticates: `bearer` or `basic`. A request that does not is
/// answered 401. Unset: anyone who reaches the address may call it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum ServerAuth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP Basic with this `user` and `password`.
    Basic { user: String, password: String },
}

impl ServerAuth {
    /// Refuses empty secrets.
    pub(crate) fn check(&self) -> Result<(), String> {
        let blank = |s: &str| s.trim().is_empty();
        match self {
            Self::Bearer(token) if blank(token) => Err(
                "`auth.bearer` is empty (is its variable unset?): an empty secret is refused"
                    .into(),
            ),
            Self::Basic { user, password } if user.is_empty() || blank(password) => Err(
                "`auth.basic` needs a `user` and a non-empty `password` (is its variable unset?)"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// Whether the request carries these credentials.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // The scheme is case-insensitive (RFC 7235); the credentials are not.
        let Some(space) = given.iter().position(|b| *b == b' ') else {
            return false;
        };
        let (scheme, credentials) = (&given[..space], &given[space + 1..]);
        let (wanted, expected) = match self {
            Self::Bearer(token) => ("bearer", token.clone()),
            Self::Basic { user, password } => (
                "basic",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
            ),
        };
        scheme.eq_ignore_ascii_case(wanted.as_bytes())
            && bool::from(credentials.ct_eq(expected.as_bytes()))
    }
}

/// The `WWW-Authenticate` challenge of a 401.
pub(crate) const CHALLENGE: &str = "Bearer, Basic";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_credentials_are_admitted() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().expect("header"));
            h
        };
        let bearer = ServerAuth::Bearer("t0k3n".into());
        assert!(bearer.admits(&headers("Bearer t0k3n")));
        assert!(bearer.admits(&headers("bearer t0k3n")));
        assert!(!bearer.admits(&headers("Bearer  t0k3n")));
        assert!(!bearer.admits(&headers("Basic t0k3n")));
        assert!(!bearer.admits(&headers("t0k3n")));
        assert!(!bearer.admits(&headers("Bearer t0k3")));
        assert!(!bearer.admits(&headers("Bearer t0k3n2")));
        assert!(!bearer.admits(&HeaderMap::new()));
        let basic = ServerAuth::Basic {
            user: "prom".into(),
            password: "pw".into(),
        };
        // base64("prom:pw")
        assert!(basic.admits(&headers("Basic cHJvbTpwdw==")));
        assert!(!basic.admits(&headers("Basic cHJvbTo=")));
        assert!(ServerAuth::Bearer(" ".into()).check().is_err());
        let no_password = ServerAuth::Basic {
            user: "u".into(),
            password: String::new(),
        };
        assert!(no_password.check().is_err());
    }
}
