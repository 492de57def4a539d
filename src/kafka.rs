//! What the `kafka` source and sink share: client settings and librdkafka's own logs.
//!
//! Both components hand `librdkafka_options` to librdkafka unchanged, after the options
//! sluice sets itself, so an operator can override anything (and is told at `validate`
//! time when a key or value is one librdkafka does not know).

use std::collections::BTreeMap;
use std::path::PathBuf;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::error::BuildError;

/// `tls:` TLS towards the brokers (librdkafka's `ssl.*` settings).
#[derive(Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KafkaTls {
    /// PEM file of the CA certificates that sign the brokers' (default: the system's).
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that require mutual TLS.
    pub(crate) crt_file: Option<PathBuf>,
    /// PEM private key of `crt_file`.
    pub(crate) key_file: Option<PathBuf>,
    /// The password of an encrypted `key_file` (use a `${VARIABLE}`).
    pub(crate) key_password: Option<String>,
    /// Check that each broker's certificate carries the host name it was reached by
    /// (default true).
    #[serde(default = "crate::units::yes")]
    pub(crate) verify_hostname: bool,
}

/// `sasl:` authentication to the brokers.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KafkaSasl {
    /// `plain`, `scram_sha_256`, `scram_sha_512` or `oauthbearer`.
    pub(crate) mechanism: SaslMechanism,
    /// The user name (PLAIN and SCRAM).
    pub(crate) username: Option<String>,
    /// The password (PLAIN and SCRAM; use a `${VARIABLE}`).
    pub(crate) password: Option<String>,
    /// OAUTHBEARER: the OAuth2 client-credentials grant sluice fetches tokens with
    /// (Confluent Cloud, Aiven, Strimzi with an OAuth2 server); each token is handed to
    /// librdkafka, which asks for a new one before it expires.
    pub(crate) oauth2: Option<crate::net::OAuth2Config>,
    /// OAUTHBEARER: the principal name sent with the token (default: `oauth2.client_id`).
    pub(crate) principal: Option<String>,
}

/// A SASL mechanism librdkafka speaks without system libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SaslMechanism {
    /// PLAIN (send it only over TLS).
    #[serde(alias = "PLAIN")]
    Plain,
    /// SCRAM-SHA-256.
    #[serde(rename = "scram_sha_256", alias = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[serde(rename = "scram_sha_512", alias = "SCRAM-SHA-512")]
    ScramSha512,
    /// OAUTHBEARER, with tokens from `oauth2`.
    #[serde(alias = "OAUTHBEARER")]
    Oauthbearer,
}

/// librdkafka settings for `tls` and `sasl`: `security.protocol` and what each needs.
pub(crate) fn security_settings(
    tls: Option<&KafkaTls>,
    sasl: Option<&KafkaSasl>,
) -> Result<Vec<(&'static str, String)>, BuildError> {
    let protocol = match (tls.is_some(), sasl.is_some()) {
        (false, false) => return Ok(Vec::new()),
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    let mut out = vec![("security.protocol", protocol.to_owned())];
    if let Some(tls) = tls {
        let path = |option: &str, p: &PathBuf| -> Result<String, BuildError> {
            if !p.is_file() {
                return Err(BuildError(format!(
                    "`tls.{option}` {} is not a readable file",
                    p.display()
                )));
            }
            Ok(p.display().to_string())
        };
        if let Some(ca) = &tls.ca_file {
            out.push(("ssl.ca.location", path("ca_file", ca)?));
        }
        match (&tls.crt_file, &tls.key_file) {
            (Some(crt), Some(key)) => {
                out.push(("ssl.certificate.location", path("crt_file", crt)?));
                out.push(("ssl.key.location", path("key_file", key)?));
            }
            (None, None) => {}
            _ => {
                return Err(BuildError(
                    "give both `tls.crt_file` and `tls.key_file`, or neither".into(),
                ));
            }
        }
        if let Some(password) = &tls.key_password {
            if password.trim().is_empty() {
                return Err(BuildError(
                    "`tls.key_password` is empty (is its variable unset?): an empty secret is refused".into(),
                ));
            }
            out.push(("ssl.key.password", password.clone()));
        }
        let check = if tls.verify_hostname { "https" } else { "none" };
        out.push(("ssl.endpoint.identification.algorithm", check.to_owned()));
    }
    if let Some(sasl) = sasl {
        let mechanism = match sasl.mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::Oauthbearer => "OAUTHBEARER",
        };
        out.push(("sasl.mechanism", mechanism.to_owned()));
        match (sasl.mechanism, &sasl.username, &sasl.password, &sasl.oauth2) {
            (SaslMechanism::Oauthbearer, None, None, Some(oauth2)) => {
                oauth2
                    .check()
                    .map_err(|e| BuildError(format!("`sasl.oauth2`: {e}")))?;
            }
            (SaslMechanism::Oauthbearer, _, _, _) => {
                return Err(BuildError(
                    "`sasl.mechanism: oauthbearer` takes `oauth2` (the token grant), not `username` or `password`".into(),
                ));
            }
            (_, Some(username), Some(password), None) => {
                if username.trim().is_empty() || password.trim().is_empty() {
                    return Err(BuildError(
                        "`sasl.username` or `sasl.password` is empty (is its variable unset?): an empty secret is refused".into(),
                    ));
                }
                out.push(("sasl.username", username.clone()));
                out.push(("sasl.password", password.clone()));
            }
            _ => {
                return Err(BuildError(format!(
                    "`sasl.mechanism: {}` takes `username` and `password` (`oauth2` is for oauthbearer)",
                    mechanism.to_ascii_lowercase().replace('-', "_")
                )));
            }
        }
        if sasl.principal.is_some() && sasl.mechanism != SaslMechanism::Oauthbearer {
            return Err(BuildError(
                "`sasl.principal` is for `mechanism: oauthbearer`".into(),
            ));
        }
    }
    Ok(out)
}

/// OAUTHBEARER tokens for librdkafka, from an OAuth2 client-credentials grant.
pub(crate) struct OAuthBearer {
    source: crate::net::TokenSource,
    principal: String,
    /// librdkafka asks for tokens on its own threads; the fetch runs on this runtime.
    runtime: tokio::runtime::Handle,
}

impl OAuthBearer {
    /// The token source of `sasl`, when it is OAUTHBEARER; call it inside the runtime.
    pub(crate) fn of(
        sasl: Option<&KafkaSasl>,
        clock: std::sync::Arc<dyn crate::clock::Clock>,
    ) -> Result<Option<std::sync::Arc<Self>>, BuildError> {
        let Some((oauth2, sasl)) = sasl
            .filter(|s| s.mechanism == SaslMechanism::Oauthbearer)
            .and_then(|s| s.oauth2.as_ref().map(|o| (o, s)))
        else {
            return Ok(None);
        };
        let source =
            crate::net::TokenSource::new(oauth2.clone(), clock, std::time::Duration::from_secs(30))
                .map_err(|e| BuildError(format!("`sasl.oauth2`: {e}")))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| BuildError("OAUTHBEARER needs a running runtime".into()))?;
        Ok(Some(std::sync::Arc::new(Self {
            source,
            principal: sasl
                .principal
                .clone()
                .unwrap_or_else(|| oauth2.client_id.clone()),
            runtime,
        })))
    }

    /// A fresh token. Blocking: librdkafka calls it from its own threads, and it may
    /// be a runtime's thread, so the fetch runs on a thread of its own.
    fn token(self: &std::sync::Arc<Self>) -> Result<rdkafka::client::OAuthToken, String> {
        let me = std::sync::Arc::clone(self);
        let fetched =
            std::thread::spawn(move || me.runtime.block_on(me.source.token_and_lifetime()))
                .join()
                .map_err(|_| "the token fetch panicked".to_owned())??;
        let (token, lifetime) = fetched;
        // Without `expires_in`, librdkafka is told an hour (it refreshes at 80%).
        let lifetime = lifetime.unwrap_or(std::time::Duration::from_secs(3600));
        let expires = chrono::Utc::now()
            + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(1));
        Ok(rdkafka::client::OAuthToken {
            token,
            principal_name: self.principal.clone(),
            lifetime_ms: expires.timestamp_millis(),
        })
    }
}

/// What a context answers librdkafka's OAUTHBEARER refresh with.
pub(crate) fn oauth_token(
    bearer: Option<&std::sync::Arc<OAuthBearer>>,
    component_id: &str,
) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
    let Some(bearer) = bearer else {
        return Err("no `sasl.oauth2` is configured for OAUTHBEARER".into());
    };
    bearer.token().map_err(|e| {
        let e = crate::redact::redact(&e).into_owned();
        tracing::warn!(component_id, error = %e, "no OAUTHBEARER token");
        e.into()
    })
}

/// The librdkafka settings for `bootstrap_servers` plus sluice's defaults (`ours`), then
/// the user's passthrough options, which win.
pub(crate) fn client_config(
    bootstrap_servers: &str,
    ours: &[(&str, String)],
    user: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers);
    for (key, value) in ours {
        config.set(*key, value);
    }
    for (key, value) in user {
        config.set(key, value);
    }
    // rdkafka takes its log level from the `log` crate, which sluice does not use (it
    // logs through `tracing`); without this librdkafka's warnings would be silenced. A
    // user's `debug` option (librdkafka's debug contexts) needs debug level.
    config.set_log_level(if user.contains_key("debug") {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Info
    });
    config
}

/// Asks librdkafka whether it accepts every key and value, without creating a client
/// (which would start threads and connect). An empty secret (`sasl.password`, …) is
/// refused first: it is almost always a variable that was not set.
pub(crate) fn check_config(config: &ClientConfig) -> Result<(), BuildError> {
    // `config_map` masks sensitive values; `get` reads them.
    if let Some(key) = config.config_map().into_keys().find(|k| {
        crate::redact::is_secret_key(k) && config.get(k).is_some_and(|v| v.trim().is_empty())
    }) {
        return Err(BuildError(format!(
            "`librdkafka_options.{key}` is empty (is its variable unset?): give the secret, \
             or remove the option"
        )));
    }
    config
        .create_native_config()
        .map(drop)
        .map_err(|e| BuildError(format!("librdkafka rejects the client settings: {e}")))
}

/// Routes librdkafka's logs and errors to `tracing`, tagged with the component id, and
/// answers its OAUTHBEARER token refreshes.
pub(crate) struct LoggingContext {
    pub(crate) component_id: std::sync::Arc<str>,
    pub(crate) bearer: Option<std::sync::Arc<OAuthBearer>>,
}

impl ClientContext for LoggingContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        oauth_token(self.bearer.as_ref(), &self.component_id)
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let id = &*self.component_id;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(component_id = id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(component_id = id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(component_id = id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(component_id = id, facility, "librdkafka: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Transport errors repeat while a broker is down; librdkafka reconnects by itself.
        tracing::warn!(component_id = &*self.component_id, error = %error, "kafka client error: {reason}");
    }
}

/// `validate --check-sinks`: connects with `config` (TLS and SASL included) and reads
/// the cluster's metadata, then looks `topic` up in it. Asking for every topic, not
/// for `topic`, keeps a broker that creates topics on demand from creating it. A failure
/// carries the first reason librdkafka gave (a TLS handshake, a SASL refusal), which its
/// metadata error alone does not. Blocking: run it off the async workers.
pub(crate) fn probe(
    config: &ClientConfig,
    topic: Option<&str>,
    timeout: std::time::Duration,
    bearer: Option<std::sync::Arc<OAuthBearer>>,
) -> Result<String, String> {
    use rdkafka::producer::{BaseProducer, Producer};
    let producer: BaseProducer<ProbeContext> = config
        .create_with_context(ProbeContext(std::sync::Mutex::default(), bearer))
        .map_err(|e| format!("cannot create a Kafka client: {e}"))?;
    let metadata = producer
        .client()
        .fetch_metadata(None, timeout)
        .map_err(|e| {
            // Errors reach the context through the client's event queue.
            producer.poll(std::time::Duration::from_millis(100));
            match producer.context().first_error() {
                Some(reason) => format!("no answer from the brokers: {e}: {reason}"),
                None => format!("no answer from the brokers: {e}"),
            }
        })?;
    let brokers = metadata.brokers().len();
    let mut said = format!("{brokers} broker(s) answered");
    if let Some(topic) = topic {
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) => said.push_str(&format!(
                ", topic `{topic}` has {} partition(s)",
                t.partitions().len()
            )),
            None => {
                return Err(format!(
                    "{said}, but topic `{topic}` does not exist (create it, or let the \
                     brokers create topics on first write)"
                ));
            }
        }
    }
    Ok(said)
}

/// Keeps the first error librdkafka reported, for [`probe`]'s message.
#[derive(Default)]
struct ProbeContext(
    std::sync::Mutex<Option<String>>,
    Option<std::sync::Arc<OAuthBearer>>,
);

impl ProbeContext {
    fn first_error(&self) -> Option<String> {
        crate::state_file::lock(&self.0).clone()
    }
}

impl ClientContext for ProbeContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}

    fn generate_oauth_token(
        &self,
        _: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        oauth_token(self.1.as_ref(), "probe")
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The first reason is the cause (a TLS handshake, a SASL refusal); "all brokers
        // are down" follows from it.
        let mut last = crate::state_file::lock(&self.0);
        if last.is_none() {
            *last = Some(if reason.is_empty() {
                error.to_string()
            } else {
                reason.to_owned()
            });
        }
    }
}

impl rdkafka::producer::ProducerContext for ProbeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

#[cfg(test)]
mod security_tests {
    use super::*;

    #[test]
    fn tls_and_sasl_pick_the_protocol_and_the_settings() {
        let sasl = KafkaSasl {
            mechanism: SaslMechanism::ScramSha256,
            username: Some("u".into()),
            password: Some("pw-secret".into()),
            oauth2: None,
            principal: None,
        };
        let tls = KafkaTls {
            verify_hostname: false,
            ..KafkaTls::default()
        };
        let get = |settings: &[(&str, String)], key: &str| {
            settings
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        let both = security_settings(Some(&tls), Some(&sasl)).expect("valid");
        assert_eq!(get(&both, "security.protocol").as_deref(), Some("sasl_ssl"));
        assert_eq!(
            get(&both, "sasl.mechanism").as_deref(),
            Some("SCRAM-SHA-256")
        );
        assert_eq!(
            get(&both, "ssl.endpoint.identification.algorithm").as_deref(),
            Some("none")
        );
        let only_sasl = security_settings(None, Some(&sasl)).expect("valid");
        assert_eq!(
            get(&only_sasl, "security.protocol").as_deref(),
            Some("sasl_plaintext")
        );
        assert!(security_settings(None, None).expect("valid").is_empty());
        let half = KafkaTls {
            crt_file: Some("/etc/hostname".into()),
            ..KafkaTls::default()
        };
        let err = security_settings(Some(&half), None)
            .expect_err("half a pair")
            .0;
        assert!(
            err.contains("both `tls.crt_file` and `tls.key_file`"),
            "{err}"
        );
    }

    #[test]
    fn oauthbearer_takes_a_grant_and_the_others_a_password() {
        let grant: crate::net::OAuth2Config = serde_json::from_value(serde_json::json!({
            "token_url": "https://idp.example/token", "client_id": "sluice", "client_secret": "s"
        }))
        .expect("grant");
        let sasl = |mechanism, password: Option<&str>, oauth2: Option<crate::net::OAuth2Config>| {
            KafkaSasl {
                mechanism,
                username: password.map(|_| "u".into()),
                password: password.map(Into::into),
                oauth2,
                principal: None,
            }
        };
        let bearer = security_settings(
            None,
            Some(&sasl(SaslMechanism::Oauthbearer, None, Some(grant.clone()))),
        )
        .expect("valid");
        assert!(bearer.contains(&("sasl.mechanism", "OAUTHBEARER".into())));
        assert!(!bearer.iter().any(|(k, _)| k.starts_with("sasl.username")));
        for (wrong, wanted) in [
            (
                sasl(SaslMechanism::Oauthbearer, Some("pw"), Some(grant.clone())),
                "takes `oauth2`",
            ),
            (
                sasl(SaslMechanism::Oauthbearer, None, None),
                "takes `oauth2`",
            ),
            (
                sasl(SaslMechanism::Plain, None, Some(grant)),
                "takes `username` and `password`",
            ),
            (
                sasl(SaslMechanism::ScramSha512, Some(" "), None),
                "empty secret",
            ),
        ] {
            let err = security_settings(None, Some(&wrong))
                .expect_err("refused")
                .0;
            assert!(err.contains(wanted), "{err}");
        }
    }
}
