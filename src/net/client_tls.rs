//! TLS towards a server a sink connects to over plain TCP (not HTTP): the options, the
//! connector trusting the system's CAs plus `ca_file`'s, and the name the server's
//! certificate must carry.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

/// TLS towards the server.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientTls {
    /// PEM file with extra trusted CA certificates (added to the system's).
    pub(crate) ca_file: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of `address`).
    pub(crate) server_name: Option<String>,
}

/// A TLS connector trusting the system's CAs and `ca_file`'s.
pub(crate) fn tls_connector(tls: &ClientTls) -> Result<tokio_rustls::TlsConnector, String> {
    let config = client_config(tls.ca_file.as_deref())?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A client configuration trusting the system's CAs and `ca_file`'s.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    super::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot parse is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        add_pem(&mut roots, path)?;
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn add_pem(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), String> {
    for cert in pem_certificates(path, "tls.ca_file")? {
        roots
            .add(cert)
            .map_err(|e| format!("`tls.ca_file` {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The certificates of a PEM file named by the option `option`; none is an error.
pub(crate) fn pem_certificates(
    path: &Path,
    option: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("`{option}` {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "`{option}` {}: no certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// The name the server's certificate must carry: `tls.server_name`, or the host of
/// `address`.
pub(crate) fn server_name(
    tls: &ClientTls,
    address: &str,
) -> Result<rustls::pki_types::ServerName<'static>, String> {
    let (option, host) = match &tls.server_name {
        Some(name) => ("tls.server_name", name.clone()),
        None => ("address", host_of(address).to_owned()),
    };
    rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| format!("`{option}` `{host}` is not a name a TLS certificate can carry: {e}"))
}

/// The host of `host:port` (`[::1]:24224` → `::1`).
pub(crate) fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}
