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
//!
//! Files: this one the options and the checks of one message; `signed.rs` what AWS
//! signed in an envelope; `certs.rs` the signing certificates (pinned, fetched and
//! cached); `hosts.rs` which hosts a certificate or a `SubscribeURL` may be on.

mod certs;
mod hosts;
mod signed;

use certs::{SigningCert, parse_cert};
use hosts::url_allowed;
pub(crate) use signed::signed_parts;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::Deserialize;
use vrl::value::Value;

use super::reply::Rejection;
use crate::clock::Clock;
use crate::component::BuildError;

/// `sns:` how Amazon SNS messages are checked (signature, topic, age) and subscriptions
/// confirmed; only with the `aws_sns` decoder.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnsConfig {
    /// GET the `SubscribeURL` of a SubscriptionConfirmation (otherwise it is logged).
    #[serde(default)]
    pub(crate) auto_confirm: bool,
    /// Hosts a signing certificate may come from (always over HTTPS, and only AWS's own
    /// URL shape: `/SimpleNotificationService-….pem`, no port, query or fragment). `*`
    /// matches one DNS label.
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

/// `arn:PARTITION:sns:REGION:ACCOUNT:TOPIC` with a literal 12-digit account.
fn names_an_account(pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "sns"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
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
        for topic in &self.topic_arns {
            if topic.trim().is_empty() {
                return Err(BuildError(
                    "`sns.topic_arns` has an empty entry (an unset variable?): it would match no topic and every message would be refused".into(),
                ));
            }
            if self.auto_confirm && !names_an_account(topic) {
                return Err(BuildError(format!(
                    "`sns.topic_arns`: `{topic}` does not name an AWS account; with `sns.auto_confirm`, each entry must be `arn:aws:sns:REGION:ACCOUNT:TOPIC` with a literal account id (wildcards only in the region and the topic), or any account could subscribe this endpoint"
                )));
            }
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
        let client = crate::net::http_client(
            true,
            None,
            Duration::from_secs(10),
            crate::net::Redirects::Refuse,
        )
        .map_err(BuildError)?;
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
}

fn malformed(path: &str, message: &str) -> Rejection {
    Rejection::malformed("aws_sns", Some(path.to_owned()), message)
}

fn forbidden(message: String) -> Rejection {
    Rejection::new(StatusCode::FORBIDDEN, "bad_signature", message)
}
