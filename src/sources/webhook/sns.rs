//! Amazon SNS over HTTP(S): message signature verification and subscription
//! confirmation, which VRL cannot do.
//!
//! Verification follows AWS's documented procedure: the string to sign is `key\nvalue\n`
//! for a fixed list of keys in byte order (`Subject` only when present and not null);
//! `SignatureVersion` 1 is SHA1withRSA and 2 is SHA256withRSA; the signing certificate is
//! fetched over HTTPS only from an allowlisted host (`sns.<region>.amazonaws.com` by
//! default), checked for its validity period and cached by URL.
//!
//! A verified message is trusted only for what was signed: the route hands the decoder
//! the signed fields alone ([`Verified::signed_envelope`]), so nothing unsigned that rides
//! beside them (a `Records` array, `MessageAttributes`) can become an event. A signed
//! message is also refused when its `Timestamp` is outside `max_age`, and a `MessageId`
//! seen inside that window is dropped, so a captured message cannot be replayed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
pub(crate) struct SnsConfig {
    /// GET the `SubscribeURL` of a SubscriptionConfirmation (otherwise it is logged).
    #[serde(default)]
    pub(crate) auto_confirm: bool,
    /// Hosts a signing certificate may come from (always over HTTPS). `*` matches one
    /// DNS label.
    #[serde(default = "default_hosts")]
    pub(crate) cert_hosts: Vec<String>,
    /// Where `SubscribeURL` may point: `host`, `host:port`, or with a scheme
    /// (`http://127.0.0.1:8080`); without one, HTTPS is required.
    #[serde(default = "default_hosts")]
    pub(crate) subscribe_hosts: Vec<String>,
    /// Accept messages only from these topics (wildcards allowed); empty: any topic.
    #[serde(default)]
    pub(crate) topic_arns: Vec<String>,
    /// Signing certificates known in advance, by `SigningCertURL` (no fetch for these).
    #[serde(default)]
    pub(crate) certificates: BTreeMap<String, PathBuf>,
    /// Refuse a message whose signed `Timestamp` is further than this from now, and drop
    /// a `MessageId` already accepted within it (replays of captured messages). Raise it
    /// only for topics whose delivery policy retries for longer.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub(crate) max_age: Duration,
}

fn default_max_age() -> Duration {
    Duration::from_secs(3600)
}

impl SnsConfig {
    /// What `validate` reports before anything runs.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        if self.auto_confirm && self.topic_arns.is_empty() {
            return Err(BuildError(
                "`sns.auto_confirm` needs `sns.topic_arns`: without it any AWS account could subscribe this endpoint to its own topic and send it alerts".into(),
            ));
        }
        if self.max_age.is_zero() {
            return Err(BuildError("`sns.max_age` must be above zero".into()));
        }
        for h in &self.cert_hosts {
            if h.contains("://") {
                return Err(BuildError(format!(
                    "`sns.cert_hosts`: `{h}`: certificates are fetched over HTTPS only; give a host without a scheme"
                )));
            }
        }
        Ok(())
    }
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
            max_age: default_max_age(),
        }
    }
}

/// What kind of SNS message a verified request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageType {
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

pub(crate) struct Sns {
    config: SnsConfig,
    client: reqwest::Client,
    /// From `certificates`: never evicted, never fetched.
    pinned: HashMap<String, Arc<SigningCert>>,
    fetched: Mutex<HashMap<String, Arc<SigningCert>>>,
    /// URLs whose fetch failed, until when they are not tried again, so a request naming
    /// an unreachable certificate does not cause a fetch each time.
    failed: Mutex<HashMap<String, Instant>>,
    /// At most this many fetches at once, whatever the request rate.
    fetches: tokio::sync::Semaphore,
    /// Accepted or in-flight `MessageId`s and the unix time they can be forgotten (their
    /// `Timestamp` has left the `max_age` window, so a replay would be refused anyway).
    seen: Mutex<HashMap<String, i64>>,
    clock: Arc<dyn Clock>,
}

const CACHE_LIMIT: usize = 64;
const FAILED_LIMIT: usize = 1024;
const FAILURE_TTL: Duration = Duration::from_secs(60);
const SEEN_LIMIT: usize = 100_000;

/// A message whose signature, certificate and age were checked.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) kind: MessageType,
    pub(crate) message_id: String,
    /// When the `MessageId` may be forgotten (unix seconds).
    forget_at: i64,
    /// The signed fields only; what the decoder may read.
    pub(crate) signed_envelope: Value,
}

impl Sns {
    pub(crate) fn new(config: SnsConfig, clock: Arc<dyn Clock>) -> Result<Self, BuildError> {
        config.check()?;
        let mut pinned = HashMap::new();
        for (url, path) in &config.certificates {
            let pem = std::fs::read(path).map_err(|e| {
                BuildError(format!(
                    "`sns.certificates`: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let cert = parse_cert(&pem)
                .map_err(|e| BuildError(format!("`sns.certificates`: {}: {e}", path.display())))?;
            pinned.insert(url.clone(), Arc::new(cert));
        }
        let client =
            crate::net::http_client(true, None, Duration::from_secs(10)).map_err(BuildError)?;
        Ok(Self {
            config,
            client,
            pinned,
            fetched: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            fetches: tokio::sync::Semaphore::new(4),
            seen: Mutex::new(HashMap::new()),
            clock,
        })
    }

    /// Verifies an SNS envelope; a request that fails gets 403 and yields no event.
    pub(crate) async fn verify(&self, envelope: &Value) -> Result<Verified, Rejection> {
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
        let now = self.clock.wall().timestamp();
        let max_age = i64::try_from(self.config.max_age.as_secs()).unwrap_or(i64::MAX);
        let sent = chrono::DateTime::parse_from_rfc3339(&signed.timestamp)
            .map_err(|_| malformed(".Timestamp", "not an RFC 3339 time"))?
            .timestamp();
        if now.saturating_sub(sent) > max_age || sent.saturating_sub(now) > max_age {
            return Err(forbidden(format!(
                "the message's Timestamp {} is further than sns.max_age ({}) from now: a replayed or delayed message",
                signed.timestamp,
                humantime::format_duration(self.config.max_age)
            )));
        }
        let cert = self.certificate(&signed.cert_url).await?;
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
        Ok(Verified {
            kind: signed.kind,
            message_id: signed.message_id,
            forget_at: sent.saturating_add(max_age).saturating_add(1),
            signed_envelope: Value::Object(signed.fields),
        })
    }

    /// Claims a verified message's `MessageId`: false when it was accepted (or is being
    /// processed) already, which makes this copy a replay or a duplicate delivery.
    pub(crate) fn claim(&self, message: &Verified) -> bool {
        let now = self.clock.wall().timestamp();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen
            .get(&message.message_id)
            .is_some_and(|&until| until > now)
        {
            return false;
        }
        if seen.len() >= SEEN_LIMIT {
            seen.retain(|_, until| *until > now);
            // Still full of live ids: forget those closest to leaving the window. Only
            // messages AWS signed get here, so an attacker cannot fill it with forgeries.
            if seen.len() >= SEEN_LIMIT {
                let mut untils: Vec<i64> = seen.values().copied().collect();
                untils.sort_unstable();
                let cut = untils[untils.len() / 2];
                seen.retain(|_, until| *until > cut);
            }
        }
        seen.insert(message.message_id.clone(), message.forget_at);
        true
    }

    /// Releases a claim whose message was not accepted, so the sender's retry is taken.
    pub(crate) fn release(&self, message: &Verified) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&message.message_id);
    }

    /// GETs the `SubscribeURL` of a verified SubscriptionConfirmation.
    pub(crate) async fn confirm(&self, envelope: &Value) -> Result<(), Rejection> {
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

    pub(crate) fn auto_confirm(&self) -> bool {
        self.config.auto_confirm
    }

    async fn certificate(&self, url: &str) -> Result<Arc<SigningCert>, Rejection> {
        if let Some(cert) = self.pinned.get(url) {
            return Ok(Arc::clone(cert));
        }
        if let Some(cert) = self.cached(url) {
            return Ok(cert);
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
            let response = self.client.get(parsed).send().await?.error_for_status()?;
            response.bytes().await
        };
        let pem = match fetch.await {
            Ok(pem) => pem,
            Err(e) => {
                tracing::warn!(url, error = %e.without_url(), "cannot fetch an SNS signing certificate");
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

/// What a signature check needs from an envelope (untrusted input: no panics, every
/// missing field named).
#[derive(Debug)]
pub(crate) struct Signed {
    pub(crate) kind: MessageType,
    pub(crate) topic: String,
    /// The string AWS signed.
    pub(crate) text: String,
    /// SignatureVersion 2 (SHA256) rather than 1 (SHA1).
    pub(crate) sha256: bool,
    pub(crate) signature: Vec<u8>,
    pub(crate) cert_url: String,
    pub(crate) message_id: String,
    pub(crate) timestamp: String,
    /// The signed keys and their values, as the envelope gave them.
    pub(crate) fields: vrl::value::ObjectMap,
}

pub(crate) fn signed_parts(envelope: &Value) -> Result<Signed, Rejection> {
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
    let mut signed_fields = vrl::value::ObjectMap::new();
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
        // The signed text is `key\nvalue\n` pairs: a newline inside a value could carry
        // a following pair (`MessageId: "id\nSubject\nx"` with no `Subject`) and sign the
        // same text under a new MessageId. Only `Message` is free text.
        if *key != "Message" && value.contains(['\n', '\r']) {
            return Err(forbidden(format!("`{key}` holds a line break")));
        }
        text.push_str(key);
        text.push('\n');
        text.push_str(&value);
        text.push('\n');
        signed_fields.insert((*key).into(), Value::from(value));
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
        message_id: require("MessageId")?,
        timestamp: require("Timestamp")?,
        fields: signed_fields,
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
