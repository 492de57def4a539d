//! Amazon SNS over HTTP(S): message signature verification and subscription
//! confirmation, which VRL cannot do.
//!
//! Verification follows AWS's documented procedure: the string to sign is `key\nvalue\n`
//! for a fixed list of keys in byte order (`Subject` only when present and not null);
//! `SignatureVersion` 1 is SHA1withRSA and 2 is SHA256withRSA; the signing certificate is
//! fetched over HTTPS only from an allowlisted host (`sns.<region>.amazonaws.com` by
//! default), checked for its validity period and cached by URL.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use serde::Deserialize;
use vrl::value::Value;
use x509_cert::der::DecodePem;

use super::reply::Rejection;
use crate::clock::Clock;
use crate::component::BuildError;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    /// GET the `SubscribeURL` of a SubscriptionConfirmation (otherwise it is logged).
    #[serde(default)]
    pub auto_confirm: bool,
    /// Hosts a signing certificate may come from (always over HTTPS). `*` matches one
    /// DNS label.
    #[serde(default = "default_hosts")]
    pub cert_hosts: Vec<String>,
    /// Where `SubscribeURL` may point: `host`, `host:port`, or with a scheme
    /// (`http://127.0.0.1:8080`); without one, HTTPS is required.
    #[serde(default = "default_hosts")]
    pub subscribe_hosts: Vec<String>,
    /// Accept messages only from these topics (wildcards allowed); empty: any topic.
    #[serde(default)]
    pub topic_arns: Vec<String>,
    /// Signing certificates known in advance, by `SigningCertURL` (no fetch for these).
    #[serde(default)]
    pub certificates: BTreeMap<String, PathBuf>,
}

fn default_hosts() -> Vec<String> {
    vec![
        "sns.*.amazonaws.com".into(),
        "sns.*.amazonaws.com.cn".into(),
    ]
}

impl Default for SnsConfig {
    fn default() -> Self {
        Self {
            auto_confirm: false,
            cert_hosts: default_hosts(),
            subscribe_hosts: default_hosts(),
            topic_arns: Vec::new(),
            certificates: BTreeMap::new(),
        }
    }
}

/// What kind of SNS message a verified request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

/// A signing certificate's public key and validity.
struct SigningCert {
    /// The RSA public key (PKCS#1 DER), as ring expects it.
    public_key: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

pub struct Sns {
    config: SnsConfig,
    client: reqwest::Client,
    cache: Mutex<HashMap<String, Arc<SigningCert>>>,
    clock: Arc<dyn Clock>,
}

const CACHE_LIMIT: usize = 64;

impl Sns {
    pub fn new(config: SnsConfig, clock: Arc<dyn Clock>) -> Result<Self, BuildError> {
        for h in &config.cert_hosts {
            if h.contains("://") {
                return Err(BuildError(format!(
                    "`sns.cert_hosts`: `{h}`: certificates are fetched over HTTPS only; give a host without a scheme"
                )));
            }
        }
        let mut cache = HashMap::new();
        for (url, path) in &config.certificates {
            let pem = std::fs::read(path).map_err(|e| {
                BuildError(format!(
                    "`sns.certificates`: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let cert = parse_cert(&pem)
                .map_err(|e| BuildError(format!("`sns.certificates`: {}: {e}", path.display())))?;
            cache.insert(url.clone(), Arc::new(cert));
        }
        let client = crate::delivery::http_client(true, None, Duration::from_secs(10))
            .map_err(BuildError)?;
        Ok(Self {
            config,
            client,
            cache: Mutex::new(cache),
            clock,
        })
    }

    /// Verifies an SNS envelope; a request that fails gets 403 and yields no event.
    pub async fn verify(&self, envelope: &Value) -> Result<MessageType, Rejection> {
        let signed = signed_parts(envelope)?;
        if !self.config.topic_arns.is_empty()
            && !self
                .config
                .topic_arns
                .iter()
                .any(|p| wildmatch::WildMatch::new(p).matches(&signed.topic))
        {
            return Err(forbidden(format!(
                "topic {} is not in sns.topic_arns",
                signed.topic
            )));
        }
        let cert = self.certificate(&signed.cert_url).await?;
        let now = self.clock.wall().timestamp();
        if now < cert.not_before || now > cert.not_after {
            return Err(forbidden(
                "the signing certificate is not valid at this time".into(),
            ));
        }
        let algorithm: &dyn ring::signature::VerificationAlgorithm = if signed.sha256 {
            &ring::signature::RSA_PKCS1_2048_8192_SHA256
        } else {
            &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
        };
        ring::signature::UnparsedPublicKey::new(algorithm, &cert.public_key)
            .verify(signed.text.as_bytes(), &signed.signature)
            .map_err(|_| forbidden("the SNS signature does not match the message".into()))?;
        Ok(signed.kind)
    }

    /// GETs the `SubscribeURL` of a verified SubscriptionConfirmation.
    pub async fn confirm(&self, envelope: &Value) -> Result<(), Rejection> {
        let url = envelope
            .as_object()
            .and_then(|o| o.get("SubscribeURL").or_else(|| o.get("SubscribeUrl")))
            .map(|v| v.to_string_lossy().into_owned())
            .ok_or_else(|| malformed(".SubscribeURL", "missing"))?;
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| malformed(".SubscribeURL", &format!("not a URL: {e}")))?;
        if !url_allowed(&parsed, &self.config.subscribe_hosts) {
            return Err(forbidden(format!(
                "SubscribeURL host {} is not in sns.subscribe_hosts",
                parsed.host_str().unwrap_or("?")
            )));
        }
        let response = self.client.get(parsed).send().await.map_err(|e| {
            Rejection::new(
                StatusCode::BAD_GATEWAY,
                "confirm_failed",
                format!("confirming the subscription failed: {e}"),
            )
        })?;
        if !response.status().is_success() {
            return Err(Rejection::new(
                StatusCode::BAD_GATEWAY,
                "confirm_failed",
                format!(
                    "confirming the subscription failed: HTTP {}",
                    response.status()
                ),
            ));
        }
        Ok(())
    }

    pub fn auto_confirm(&self) -> bool {
        self.config.auto_confirm
    }

    async fn certificate(&self, url: &str) -> Result<Arc<SigningCert>, Rejection> {
        if let Some(cert) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
        {
            return Ok(Arc::clone(cert));
        }
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| forbidden("SigningCertURL is not a URL".into()))?;
        let host_ok = parsed.scheme() == "https"
            && parsed.port().is_none()
            && parsed.path().ends_with(".pem")
            && parsed
                .host_str()
                .is_some_and(|h| self.config.cert_hosts.iter().any(|p| host_matches(p, h)));
        if !host_ok {
            return Err(forbidden(format!(
                "SigningCertURL {url} is not an HTTPS .pem URL on an sns.cert_hosts host"
            )));
        }
        let fetch = async {
            let response = self.client.get(parsed).send().await?.error_for_status()?;
            response.bytes().await
        };
        let pem = fetch.await.map_err(|e| {
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cert_unavailable",
                format!("cannot fetch the signing certificate: {e}"),
            )
        })?;
        let cert = Arc::new(
            parse_cert(&pem)
                .map_err(|e| forbidden(format!("the signing certificate is unusable: {e}")))?,
        );
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(url.to_owned(), Arc::clone(&cert));
        Ok(cert)
    }
}

/// What a signature check needs from an envelope (untrusted input: no panics, every
/// missing field named).
#[derive(Debug)]
pub struct Signed {
    pub kind: MessageType,
    pub topic: String,
    /// The string AWS signed.
    pub text: String,
    /// SignatureVersion 2 (SHA256) rather than 1 (SHA1).
    pub sha256: bool,
    pub signature: Vec<u8>,
    pub cert_url: String,
}

pub fn signed_parts(envelope: &Value) -> Result<Signed, Rejection> {
    let fields = envelope
        .as_object()
        .ok_or_else(|| malformed(".", "expected an SNS message object"))?;
    let get = |key: &str| -> Option<String> {
        match fields.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.to_string_lossy().into_owned()),
        }
    };
    let require = |key: &str| get(key).ok_or_else(|| malformed(&format!(".{key}"), "missing"));
    let kind = match require("Type")?.as_str() {
        "Notification" => MessageType::Notification,
        "SubscriptionConfirmation" => MessageType::SubscriptionConfirmation,
        "UnsubscribeConfirmation" => MessageType::UnsubscribeConfirmation,
        other => {
            return Err(malformed(
                ".Type",
                &format!("unknown SNS message type `{other}`"),
            ));
        }
    };
    let keys: &[&str] = match kind {
        MessageType::Notification => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        _ => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
    };
    let mut text = String::new();
    for key in keys {
        let value = match *key {
            "Subject" => match get("Subject") {
                Some(v) => v,
                None => continue,
            },
            "SubscribeURL" => get("SubscribeURL")
                .or_else(|| get("SubscribeUrl"))
                .ok_or_else(|| malformed(".SubscribeURL", "missing"))?,
            k => require(k)?,
        };
        text.push_str(key);
        text.push('\n');
        text.push_str(&value);
        text.push('\n');
    }
    let sha256 = match require("SignatureVersion")?.as_str() {
        "1" => false,
        "2" => true,
        other => return Err(forbidden(format!("unsupported SignatureVersion `{other}`"))),
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(require("Signature")?.trim())
        .map_err(|_| forbidden("the signature is not base64".into()))?;
    let cert_url = get("SigningCertURL")
        .or_else(|| get("SigningCertUrl"))
        .ok_or_else(|| malformed(".SigningCertURL", "missing"))?;
    Ok(Signed {
        kind,
        topic: require("TopicArn")?,
        text,
        sha256,
        signature,
        cert_url,
    })
}

fn parse_cert(pem: &[u8]) -> Result<SigningCert, String> {
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

/// `*` matches exactly one DNS label, so `sns.*.amazonaws.com` cannot match
/// `sns.evil.com.amazonaws.com.attacker.net`.
fn host_matches(pattern: &str, host: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    p.len() == h.len()
        && p.iter()
            .zip(&h)
            .all(|(p, h)| *p == "*" && !h.is_empty() || p.eq_ignore_ascii_case(h))
}

/// `host`, `host:port` (HTTPS), or `scheme://host[:port]`.
fn url_allowed(url: &reqwest::Url, allowed: &[String]) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    allowed.iter().any(|entry| {
        let (scheme, rest) = entry.split_once("://").unwrap_or(("https", entry));
        let (h, port) = match rest.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, p.parse::<u16>().ok()),
            _ => (rest, None),
        };
        url.scheme() == scheme
            && host_matches(h, host)
            && port.is_none_or(|p| url.port_or_known_default() == Some(p))
    })
}

fn malformed(path: &str, message: &str) -> Rejection {
    Rejection::malformed("aws_sns", Some(path.to_owned()), message)
}

fn forbidden(message: String) -> Rejection {
    Rejection::new(StatusCode::FORBIDDEN, "bad_signature", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_one_label_per_star() {
        assert!(host_matches(
            "sns.*.amazonaws.com",
            "sns.us-east-2.amazonaws.com"
        ));
        assert!(!host_matches("sns.*.amazonaws.com", "sns.amazonaws.com"));
        assert!(!host_matches(
            "sns.*.amazonaws.com",
            "sns.a.b.amazonaws.com"
        ));
        assert!(!host_matches(
            "sns.*.amazonaws.com",
            "sns.us-east-2.amazonaws.com.evil.net"
        ));
        let url = |s: &str| reqwest::Url::parse(s).expect("url");
        let allowed = vec![
            "sns.*.amazonaws.com".to_owned(),
            "http://127.0.0.1:8080".to_owned(),
        ];
        assert!(url_allowed(
            &url("https://sns.eu-west-1.amazonaws.com/?Action=x"),
            &allowed
        ));
        assert!(!url_allowed(
            &url("http://sns.eu-west-1.amazonaws.com/"),
            &allowed
        ));
        assert!(url_allowed(&url("http://127.0.0.1:8080/confirm"), &allowed));
        assert!(!url_allowed(
            &url("http://127.0.0.1:8081/confirm"),
            &allowed
        ));
    }
}
