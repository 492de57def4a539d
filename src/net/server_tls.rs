//! TLS for the servers sluice runs (webhooks, the Forward protocol): a certificate
//! chain and key from PEM files.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerTls {
    /// PEM file with the certificate chain, the server's certificate first.
    pub(crate) cert: PathBuf,
    /// PEM file with the private key of `cert`.
    pub(crate) key: PathBuf,
}

/// A rustls acceptor from PEM files.
pub(crate) fn tls_acceptor(tls: &ServerTls) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    super::install_crypto_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("`tls.cert` {}: {e}", tls.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "`tls.cert` {}: no certificate in the file",
            tls.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| format!("`tls.key` {}: {e}", tls.key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("`tls`: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
