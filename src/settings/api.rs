//! The `api` settings: where the management API listens, and its tokens and roles.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiSettings {
    /// Serve the management API.
    pub(crate) enabled: bool,
    /// Where it listens. Default `127.0.0.1:8686` (loopback: only this host reaches it).
    pub(crate) address: String,
    /// Bearer token required by the endpoints that change or reveal things (`/reload`,
    /// `/tap`, `/silences`, status-feed checks). Unset: none required, which is allowed
    /// only on a loopback address. Set but empty is an error (an unset variable, usually).
    #[serde(default)]
    pub(crate) auth_token: Option<String>,
    /// Serve the API on a non-loopback address without `auth_token` anyway (logged as a
    /// warning at start). Default false: sluice refuses to start that way.
    #[serde(default)]
    pub(crate) allow_unauthenticated: bool,
    /// Tokens with roles (viewer, operator, admin), besides `auth_token` (an admin).
    #[serde(default)]
    pub(crate) tokens: Vec<TokenSettings>,
}

/// What an API token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything except `/tap`.
    Viewer,
    /// Also manages silences and incidents and asks status feeds to poll.
    Operator,
    /// Also reloads the pipeline and taps events.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// One API token: who holds it, its role, and its value or digest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenSettings {
    /// Who holds it: the audit log names it (never the token).
    pub(crate) name: String,
    /// viewer, operator or admin.
    pub(crate) role: Role,
    /// The token, or `${VAR}`: read from that environment variable at start.
    #[serde(default)]
    pub(crate) token: Option<String>,
    /// The token's SHA-256 in hex (`printf %s "$TOKEN" | sha256sum`) instead of the
    /// token itself, so the settings file holds no secret.
    #[serde(default)]
    pub(crate) sha256: Option<String>,
}

/// A token as the API compares it: name, SHA-256 of the value, role.
pub(crate) type ResolvedToken = (String, [u8; 32], Role);

impl TokenSettings {
    /// Its name, digest and role; `lookup` reads `${VAR}`.
    fn resolve(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<ResolvedToken, String> {
        let at = format!("api.tokens `{}`", self.name);
        let digest = match (&self.token, &self.sha256) {
            (Some(_), Some(_)) => return Err(format!("{at}: give `token` or `sha256`, not both")),
            (None, None) => return Err(format!("{at}: give `token` or `sha256`")),
            (Some(t), None) => {
                let value = match t.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                    Some(var) => lookup(var).ok_or_else(|| {
                        format!("{at}: the environment variable {var} is not set")
                    })?,
                    None => t.clone(),
                };
                if value.trim().is_empty() {
                    return Err(format!("{at}: the token is empty"));
                }
                crate::redact::register(&value);
                crate::hashing::sha256(value.as_bytes())
            }
            (None, Some(hex)) => {
                let hex = hex.trim();
                let bytes: Option<Vec<u8>> = (hex.len() == 64)
                    .then(|| {
                        (0..32)
                            .map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
                            .collect()
                    })
                    .flatten();
                let bytes =
                    bytes.ok_or_else(|| format!("{at}: `sha256` must be 64 hexadecimal digits"))?;
                let mut out = [0u8; 32];
                out.copy_from_slice(&bytes);
                out
            }
        };
        Ok((self.name.clone(), digest, self.role))
    }
}

impl ApiSettings {
    /// The token, when one is required.
    pub(crate) fn token(&self) -> Option<&str> {
        self.auth_token.as_deref()
    }

    /// Whether any token is required (`auth_token` or `tokens`).
    pub(crate) fn has_tokens(&self) -> bool {
        self.auth_token.is_some() || !self.tokens.is_empty()
    }

    /// Every token the API accepts: `auth_token` (an admin) and `tokens`.
    pub(crate) fn resolved_tokens(&self) -> Result<Vec<ResolvedToken>, String> {
        let mut out = Vec::new();
        if let Some(t) = self.auth_token.as_deref().filter(|t| !t.trim().is_empty()) {
            out.push((
                "auth_token".to_owned(),
                crate::hashing::sha256(t.as_bytes()),
                Role::Admin,
            ));
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.tokens {
            if t.name.trim().is_empty() {
                return Err(
                    "api.tokens: every token needs a `name` (the audit log shows it)".into(),
                );
            }
            if !names.insert(t.name.as_str()) {
                return Err(format!("api.tokens: the name `{}` is given twice", t.name));
            }
            out.push(t.resolve(|v| std::env::var(v).ok())?);
        }
        Ok(out)
    }

    /// Whether only this host can reach `address`: a loopback IP, `localhost`, or a name
    /// that resolves to loopback addresses only.
    pub(crate) fn is_loopback(&self) -> bool {
        is_loopback_address(&self.address)
    }

    /// Refuses what would expose the API: an empty token, or a non-loopback address
    /// without a token (unless `allow_unauthenticated`).
    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self
            .auth_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(
                "api.auth_token is empty (is SLUICE_API__AUTH_TOKEN set to an empty \
                        value?): set a token, or leave it unset to run without one on a \
                        loopback address"
                    .into(),
            );
        }
        self.resolved_tokens()?;
        if !self.has_tokens() && !self.allow_unauthenticated && !self.is_loopback() {
            return Err(format!(
                "the API would listen on {} with no token, so anyone who can reach it could \
                 reload the pipeline, read every event through /tap and add silences: set \
                 api.auth_token (SLUICE_API__AUTH_TOKEN), or bind api.address to loopback \
                 (127.0.0.1:8686), or set api.allow_unauthenticated: true to accept the risk",
                self.address
            ));
        }
        Ok(())
    }
}

/// `host:port` that only this host can reach.
pub fn is_loopback_address(address: &str) -> bool {
    if let Ok(a) = address.parse::<SocketAddr>() {
        return a.ip().is_loopback();
    }
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    // A name: loopback only if everything it resolves to is.
    match address.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_needs_a_token_beyond_loopback() {
        let api = |address: &str, token: Option<&str>, allow: bool| ApiSettings {
            enabled: true,
            address: address.into(),
            auth_token: token.map(Into::into),
            allow_unauthenticated: allow,
            tokens: Vec::new(),
        };
        assert!(api("127.0.0.1:8686", None, false).check().is_ok());
        assert!(api("localhost:8686", None, false).check().is_ok());
        assert!(api("[::1]:8686", None, false).check().is_ok());
        assert!(api("0.0.0.0:8686", None, false).check().is_err());
        assert!(api("[::]:8686", None, false).check().is_err());
        assert!(api("10.1.2.3:8686", None, false).check().is_err());
        assert!(api("0.0.0.0:8686", Some("t"), false).check().is_ok());
        assert!(api("0.0.0.0:8686", None, true).check().is_ok());
        assert!(api("127.0.0.1:8686", Some(""), false).check().is_err());
        assert!(api("127.0.0.1:8686", Some("  "), true).check().is_err());
    }
}
