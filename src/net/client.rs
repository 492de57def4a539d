//! The HTTP client of sinks and fetching sources: timeouts, TLS verification, custom
//! CA, proxies.
//!
//! Proxies come from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`).
//! TLS uses rustls with the ring provider, installed once per process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `tls:` options shared by network sinks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// PEM file with extra trusted CA certificates (added to the system's).
    pub(crate) ca_file: Option<PathBuf>,
}

/// Installs rustls's ring provider for the process; needed before any reqwest client is
/// built (the CLI, sinks and tests all go through here). Idempotent.
pub fn install_crypto_provider() {
    // Fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether a client follows redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// A sink, a token endpoint, a certificate fetch: a redirect is an answer, not a new
    /// destination (a POST turned into a bodyless GET elsewhere would count as delivered).
    Refuse,
    /// A poller that GETs a public page that may have moved.
    Follow,
}

/// Builds a client. `verify: false` accepts any certificate (self-signed receivers in a
/// lab); it is logged at warn level because it removes the protection TLS gives. No
/// client sends a `Referer`: the URL may be the credential (a Slack webhook).
pub fn http_client(
    verify: bool,
    ca_file: Option<&Path>,
    timeout: Duration,
    redirects: Redirects,
) -> Result<reqwest::Client, String> {
    install_crypto_provider();
    let policy = match redirects {
        Redirects::Refuse => reqwest::redirect::Policy::none(),
        Redirects::Follow => reqwest::redirect::Policy::limited(5),
    };
    let mut builder = reqwest::Client::builder()
        .redirect(policy)
        .referer(false)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
    if !verify {
        tracing::warn!("TLS certificate verification is disabled for this sink");
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("CA file {} is not PEM certificates: {e}", path.display()))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", super::error_chain(&e)))
}
