//! The network, shared by sinks and by the sources that fetch (status feeds, SNS
//! certificates) or listen: the HTTP client with its TLS options, the bounded accept
//! loop and the HTTP server that hands over on reload, server TLS, OAuth2 client
//! credentials, retries with backoff, bounded body reads, and error chains fit for
//! logs.
//! The sink driver that batches and dead-letters stays in [`crate::delivery`].

pub(crate) mod accept;
mod body;
mod client;
pub(crate) mod client_tls;
pub(crate) mod http_server;
mod oauth2;
pub(crate) mod probe;
mod retry;
mod server_auth;
mod server_tls;

pub(crate) use body::{BodyError, excerpt, read_at_most};
pub use client::{Redirects, TlsOptions, http_client, install_crypto_provider};
pub(crate) use oauth2::{OAuth2Config, TokenSource};
pub(crate) use retry::{Backoff, FailureHandling, Pause, Retryable, classify_status, retry_after};
pub(crate) use server_auth::{CHALLENGE, ServerAuth};
pub(crate) use server_tls::{ServerTls, tls_acceptor};

/// Whether `e` is, or was caused by, a server certificate that is not trusted. rustls's
/// certificate errors reach us wrapped in connector errors of several types (reqwest's,
/// lettre's); its `Display` ("invalid peer certificate: …") is the stable part.
pub(crate) fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if matches!(
            err.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        ) || err.to_string().contains("invalid peer certificate")
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// An error with its causes ("error sending request: connection refused"), redacted:
/// reqwest prints the request's URL, which for a webhook sink is the credential.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    crate::redact::redact(&s).into_owned()
}
