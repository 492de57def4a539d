//! SNS signing certificates: pinned ones from `certificates`, and fetched ones (HTTPS,
//! from an allowed host only, bounded in size, a few fetches at once), cached by URL;
//! a URL whose fetch failed is not tried again for a minute.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use x509_cert::der::DecodePem;

use super::hosts::host_matches;
use super::{Sns, forbidden};
use crate::sources::webhook::reply::Rejection;

/// A signing certificate's public key and validity.
pub(super) struct SigningCert {
    /// The RSA public key (PKCS#1 DER), as ring expects it.
    pub(super) public_key: Vec<u8>,
    pub(super) not_before: i64,
    pub(super) not_after: i64,
}

const CACHE_LIMIT: usize = 64;
const FAILED_LIMIT: usize = 1024;
const FAILURE_TTL: Duration = Duration::from_secs(60);
/// A PEM certificate is a few KiB; a bigger answer is not read.
const MAX_CERT_BYTES: usize = 64 * 1024;

impl Sns {
    pub(super) async fn certificate(&self, url: &str) -> Result<Arc<SigningCert>, Rejection> {
        if let Some(cert) = self.pinned.get(url) {
            return Ok(Arc::clone(cert));
        }
        if let Some(cert) = self.cached(url) {
            return Ok(cert);
        }
        let parsed = fetchable(url, &self.config.cert_hosts).map_err(forbidden)?;
        let unavailable = || {
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cert_unavailable",
                "cannot fetch the signing certificate; retry later",
            )
        };
        if self.recently_failed(url) {
            return Err(unavailable());
        }
        let _permit = self.fetches.acquire().await.map_err(|_| unavailable())?;
        // Another request may have fetched it while this one waited.
        if let Some(cert) = self.cached(url) {
            return Ok(cert);
        }
        let fetch = async {
            let mut response = self
                .client
                .get(parsed)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)?;
            crate::net::read_at_most(&mut response, MAX_CERT_BYTES).await
        };
        let pem = match fetch.await {
            Ok(pem) => pem,
            Err(e) => {
                let error = match e {
                    crate::net::BodyError::Http(e) => crate::net::error_chain(&e.without_url()),
                    too_large => too_large.to_string(),
                };
                tracing::warn!(url, error, "cannot fetch an SNS signing certificate");
                self.remember_failure(url);
                return Err(unavailable());
            }
        };
        let cert = match parse_cert(&pem) {
            Ok(cert) => Arc::new(cert),
            Err(e) => {
                self.remember_failure(url);
                return Err(forbidden(format!(
                    "the signing certificate is unusable: {e}"
                )));
            }
        };
        let mut cache = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_LIMIT
            && let Some(old) = cache.keys().next().cloned()
        {
            cache.remove(&old);
        }
        cache.insert(url.to_owned(), Arc::clone(&cert));
        Ok(cert)
    }

    fn cached(&self, url: &str) -> Option<Arc<SigningCert>> {
        self.fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .cloned()
    }

    fn recently_failed(&self, url: &str) -> bool {
        let now = self.clock.now();
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .is_some_and(|&until| until > now)
    }

    fn remember_failure(&self, url: &str) {
        let now = self.clock.now();
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if failed.len() >= FAILED_LIMIT {
            failed.retain(|_, until| *until > now);
            if failed.len() >= FAILED_LIMIT {
                failed.clear();
            }
        }
        failed.insert(url.to_owned(), now + FAILURE_TTL);
    }
}

/// A `SigningCertURL` worth fetching: HTTPS on an `sns.cert_hosts` host, no port, and
/// AWS's own shape, one `SimpleNotificationService-….pem` with no query, fragment or
/// user. Each variant that passed would be a fetch (and a warning) on an unsigned
/// request's say-so; `x.pem?1`, `x.pem?2`, … no longer are.
fn fetchable(url: &str, cert_hosts: &[String]) -> Result<reqwest::Url, String> {
    let refused = || {
        format!(
            "SigningCertURL {url} is not an HTTPS SimpleNotificationService-*.pem URL on an \
             sns.cert_hosts host"
        )
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| "SigningCertURL is not a URL".to_owned())?;
    let file = parsed.path().strip_prefix('/').unwrap_or_default();
    let ok = parsed.scheme() == "https"
        && parsed.port().is_none()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && file.starts_with("SimpleNotificationService-")
        && file.ends_with(".pem")
        && !file.contains('/')
        && parsed
            .host_str()
            .is_some_and(|h| cert_hosts.iter().any(|p| host_matches(p, h)));
    if ok { Ok(parsed) } else { Err(refused()) }
}

pub(super) fn parse_cert(pem: &[u8]) -> Result<SigningCert, String> {
    let cert =
        x509_cert::Certificate::from_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let spki = &tbs.subject_public_key_info;
    let public_key = spki.subject_public_key.raw_bytes().to_vec();
    let secs = |t: &x509_cert::time::Time| {
        i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
    };
    Ok(SigningCert {
        public_key,
        not_before: secs(&tbs.validity.not_before),
        not_after: secs(&tbs.validity.not_after),
    })
}

#[cfg(test)]
mod tests {
    use super::fetchable;

    #[test]
    fn only_aws_shaped_certificate_urls_are_fetched() {
        let hosts = vec!["sns.*.amazonaws.com".to_owned()];
        let good = "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem";
        assert_eq!(fetchable(good, &hosts).expect("AWS's shape").as_str(), good);
        for bad in [
            "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-x.pem?1",
            "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-x.pem#a",
            "https://u:p@sns.us-east-2.amazonaws.com/SimpleNotificationService-x.pem",
            "https://sns.us-east-2.amazonaws.com:8443/SimpleNotificationService-x.pem",
            "https://sns.us-east-2.amazonaws.com/x/SimpleNotificationService-x.pem",
            "https://sns.us-east-2.amazonaws.com/other.pem",
            "http://sns.us-east-2.amazonaws.com/SimpleNotificationService-x.pem",
            "https://sns.us-east-2.evil.com/SimpleNotificationService-x.pem",
            "not a url",
        ] {
            assert!(fetchable(bad, &hosts).is_err(), "{bad}");
        }
    }
}
