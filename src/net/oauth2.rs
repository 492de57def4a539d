//! OAuth 2.0 client credentials (RFC 6749 §4.4) for network sinks.
//!
//! One token is shared by every request of a sink. It is fetched on first use, reused
//! until shortly before it expires (`expires_in` minus a margin), and fetched again
//! after a 401 (the driver then retries the request once). Concurrent requests that
//! find no valid token wait for one fetch instead of each starting their own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::clock::Clock;

/// `oidc:` / `auth: { strategy: oauth2 }` options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OAuth2Config {
    /// The token endpoint, where client credentials are exchanged for an access token.
    pub(crate) token_url: String,
    /// The OAuth2 client id.
    pub(crate) client_id: String,
    /// The client secret (keep it in `${…}`); give this or `client_secret_file`, not
    /// both.
    pub(crate) client_secret: Option<String>,
    /// A file holding the secret (a mounted Kubernetes secret); trailing whitespace is
    /// ignored.
    pub(crate) client_secret_file: Option<PathBuf>,
    /// The `scope` sent with the token request (space-separated); left out when unset.
    pub(crate) scope: Option<String>,
    /// Accept any TLS certificate from the token endpoint (default false).
    #[serde(default)]
    pub(crate) insecure_skip_verify: bool,
}

impl OAuth2Config {
    pub(crate) fn check(&self) -> Result<(), String> {
        reqwest::Url::parse(&self.token_url).map_err(|e| format!("`token_url`: {e}"))?;
        if self.client_id.trim().is_empty() {
            return Err("`client_id` is empty (is its variable unset?)".into());
        }
        if self
            .client_secret
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return Err(
                "`client_secret` is empty (is its variable unset?): an empty secret is refused"
                    .into(),
            );
        }
        match (&self.client_secret, &self.client_secret_file) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err("give exactly one of `client_secret` and `client_secret_file`".into()),
        }
    }

    fn secret(&self) -> Result<String, String> {
        match (&self.client_secret, &self.client_secret_file) {
            (Some(s), _) => Ok(s.clone()),
            (None, Some(path)) => {
                let secret = std::fs::read_to_string(path)
                    .map(|s| s.trim_end().to_owned())
                    .map_err(|e| {
                        format!("cannot read client_secret_file {}: {e}", path.display())
                    })?;
                if secret.is_empty() {
                    return Err(format!("client_secret_file {} is empty", path.display()));
                }
                crate::redact::register(&secret);
                Ok(secret)
            }
            (None, None) => Err("no client secret configured".into()),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Refresh this long before the server's expiry.
const MARGIN: Duration = Duration::from_secs(30);

/// A token endpoint's answer is a small JSON object; more is refused.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// Hands out a valid access token.
pub(crate) struct TokenSource {
    config: OAuth2Config,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    cached: Mutex<Option<(String, Option<Instant>)>>,
}

impl TokenSource {
    pub(crate) fn new(
        config: OAuth2Config,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Result<Self, String> {
        config.check()?;
        let client = super::http_client(
            !config.insecure_skip_verify,
            None,
            timeout,
            super::Redirects::Refuse,
        )?;
        Ok(Self {
            config,
            client,
            clock,
            cached: Mutex::new(None),
        })
    }

    /// A token that is not about to expire.
    pub(crate) async fn token(&self) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && expires.is_none_or(|at| self.clock.now() < at)
        {
            return Ok(token.clone());
        }
        let fetched = self.fetch().await?;
        let token = fetched.0.clone();
        *cached = Some(fetched);
        Ok(token)
    }

    /// A token that is not about to expire, and how long it stays valid (`None`: the
    /// server did not say).
    pub(crate) async fn token_and_lifetime(&self) -> Result<(String, Option<Duration>), String> {
        let token = self.token().await?;
        let cached = self.cached.lock().await;
        let left = cached
            .as_ref()
            .and_then(|(_, at)| *at)
            .map(|at| at.saturating_duration_since(self.clock.now()));
        Ok((token, left))
    }

    /// Forgets `token` (the server refused it); the next [`TokenSource::token`] fetches.
    pub(crate) async fn invalidate(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t == token) {
            *cached = None;
        }
    }

    async fn fetch(&self) -> Result<(String, Option<Instant>), String> {
        let secret = self.config.secret()?;
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", self.config.client_id.clone()),
            ("client_secret", secret),
        ];
        if let Some(scope) = &self.config.scope {
            form.push(("scope", scope.clone()));
        }
        let mut response = self
            .client
            .post(&self.config.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("token request failed: {}", super::error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let body = super::excerpt(&mut response, 512).await;
            return Err(format!(
                "token endpoint answered {status}: {}",
                crate::text::prefix_chars(body.trim(), 200)
            ));
        }
        let body = super::read_at_most(&mut response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| format!("token endpoint's answer: {}", super::error_chain(&e)))?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| format!("token endpoint answered with no access_token: {e}"))?;
        // An absurd `expires_in` means "does not expire soon", not a panic.
        let expires = parsed.expires_in.and_then(|s| {
            let lifetime =
                Duration::from_secs(s).saturating_sub(MARGIN.min(Duration::from_secs(s / 2)));
            self.clock.now().checked_add(lifetime)
        });
        tracing::debug!(token_url = %crate::redact::redact_url(&self.config.token_url), expires_in = ?parsed.expires_in, "fetched an OAuth2 token");
        Ok((parsed.access_token, expires))
    }
}
