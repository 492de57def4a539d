//! Global settings (not the pipeline): layered with the `config` crate.
//!
//! Precedence, lowest first: `config/default.yaml` (embedded), the `--settings` file,
//! `SLUICE_*` environment variables (`__` separates nesting levels), command-line flags.
//!
//! Only variables that name a setting are read: others with the prefix are the
//! environment's business, not typos to refuse (Kubernetes sets `SLUICE_PORT` and
//! `SLUICE_SERVICE_HOST` in every pod of a namespace with a Service named `sluice`), so
//! they are listed in [`Settings::ignored_env`] for a debug line. Values from the
//! environment are taken as text (never guessed into numbers), and errors never quote them.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

/// The embedded defaults.
pub const DEFAULT_SETTINGS: &str = include_str!("../config/default.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    pub(crate) data_dir: PathBuf,
    pub(crate) api: ApiSettings,
    pub(crate) log: LogSettings,
    #[serde(with = "humantime_serde")]
    pub(crate) shutdown_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) reload_drain_timeout: Duration,
    /// Folders of VRL plugins overriding or adding to the built-in decoders and formatters.
    #[serde(default)]
    pub(crate) plugin_dirs: Vec<PathBuf>,
    /// Bytes all in-memory buffers may hold together; sources wait while it is spent.
    /// `None` (or 0): no global bound, only each buffer's own.
    #[serde(default)]
    pub(crate) memory_limit: Option<crate::units::ByteSize>,
    /// `SLUICE_*` variables that name no setting (ignored; logged at debug level).
    #[serde(skip)]
    pub(crate) ignored_env: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiSettings {
    /// Serve the management API.
    pub(crate) enabled: bool,
    /// Where it listens. Default `127.0.0.1:8686` (loopback: only this host reaches it).
    pub(crate) address: String,
    /// Bearer token required by the endpoints that change or reveal things (`/reload`,
    /// `/tap`, `/silences`, status-feed checks). Unset: none required, which is allowed
    /// only on a loopback address. Set but empty is an error (an unset variable, usually).
    #[serde(default)]
    pub(crate) auth_token: Option<String>,
    /// Serve the API on a non-loopback address without `auth_token` anyway (logged as a
    /// warning at start). Default false: sluice refuses to start that way.
    #[serde(default)]
    pub(crate) allow_unauthenticated: bool,
    /// Tokens with roles (viewer, operator, admin), besides `auth_token` (an admin).
    #[serde(default)]
    pub(crate) tokens: Vec<TokenSettings>,
}

/// What an API token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything except `/tap`.
    Viewer,
    /// Also manages silences and incidents and asks status feeds to poll.
    Operator,
    /// Also reloads the pipeline and taps events.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// One API token: who holds it, its role, and its value or digest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenSettings {
    /// Who holds it: the audit log names it (never the token).
    pub(crate) name: String,
    /// viewer, operator or admin.
    pub(crate) role: Role,
    /// The token, or `${VAR}`: read from that environment variable at start.
    #[serde(default)]
    pub(crate) token: Option<String>,
    /// The token's SHA-256 in hex (`printf %s "$TOKEN" | sha256sum`) instead of the
    /// token itself, so the settings file holds no secret.
    #[serde(default)]
    pub(crate) sha256: Option<String>,
}

/// A token as the API compares it: name, SHA-256 of the value, role.
pub(crate) type ResolvedToken = (String, [u8; 32], Role);

impl TokenSettings {
    /// Its name, digest and role; `lookup` reads `${VAR}`.
    fn resolve(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<ResolvedToken, String> {
        let at = format!("api.tokens `{}`", self.name);
        let digest = match (&self.token, &self.sha256) {
            (Some(_), Some(_)) => return Err(format!("{at}: give `token` or `sha256`, not both")),
            (None, None) => return Err(format!("{at}: give `token` or `sha256`")),
            (Some(t), None) => {
                let value = match t.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                    Some(var) => lookup(var).ok_or_else(|| {
                        format!("{at}: the environment variable {var} is not set")
                    })?,
                    None => t.clone(),
                };
                if value.trim().is_empty() {
                    return Err(format!("{at}: the token is empty"));
                }
                crate::redact::register(&value);
                let d = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
                let mut out = [0u8; 32];
                out.copy_from_slice(d.as_ref());
                out
            }
            (None, Some(hex)) => {
                let hex = hex.trim();
                let bytes: Option<Vec<u8>> = (hex.len() == 64)
                    .then(|| {
                        (0..32)
                            .map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
                            .collect()
                    })
                    .flatten();
                let bytes =
                    bytes.ok_or_else(|| format!("{at}: `sha256` must be 64 hexadecimal digits"))?;
                let mut out = [0u8; 32];
                out.copy_from_slice(&bytes);
                out
            }
        };
        Ok((self.name.clone(), digest, self.role))
    }
}

impl ApiSettings {
    /// The token, when one is required.
    pub(crate) fn token(&self) -> Option<&str> {
        self.auth_token.as_deref()
    }

    /// Whether any token is required (`auth_token` or `tokens`).
    pub(crate) fn has_tokens(&self) -> bool {
        self.auth_token.is_some() || !self.tokens.is_empty()
    }

    /// Every token the API accepts: `auth_token` (an admin) and `tokens`.
    pub(crate) fn resolved_tokens(&self) -> Result<Vec<ResolvedToken>, String> {
        let mut out = Vec::new();
        if let Some(t) = self.auth_token.as_deref().filter(|t| !t.trim().is_empty()) {
            let d = ring::digest::digest(&ring::digest::SHA256, t.as_bytes());
            let mut digest = [0u8; 32];
            digest.copy_from_slice(d.as_ref());
            out.push(("auth_token".to_owned(), digest, Role::Admin));
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.tokens {
            if t.name.trim().is_empty() {
                return Err(
                    "api.tokens: every token needs a `name` (the audit log shows it)".into(),
                );
            }
            if !names.insert(t.name.as_str()) {
                return Err(format!("api.tokens: the name `{}` is given twice", t.name));
            }
            out.push(t.resolve(|v| std::env::var(v).ok())?);
        }
        Ok(out)
    }

    /// Whether only this host can reach `address`: a loopback IP, `localhost`, or a name
    /// that resolves to loopback addresses only.
    pub(crate) fn is_loopback(&self) -> bool {
        is_loopback_address(&self.address)
    }

    /// Refuses what would expose the API: an empty token, or a non-loopback address
    /// without a token (unless `allow_unauthenticated`).
    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self
            .auth_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(
                "api.auth_token is empty (is SLUICE_API__AUTH_TOKEN set to an empty \
                        value?): set a token, or leave it unset to run without one on a \
                        loopback address"
                    .into(),
            );
        }
        self.resolved_tokens()?;
        if !self.has_tokens() && !self.allow_unauthenticated && !self.is_loopback() {
            return Err(format!(
                "the API would listen on {} with no token, so anyone who can reach it could \
                 reload the pipeline, read every event through /tap and add silences: set \
                 api.auth_token (SLUICE_API__AUTH_TOKEN), or bind api.address to loopback \
                 (127.0.0.1:8686), or set api.allow_unauthenticated: true to accept the risk",
                self.address
            ));
        }
        Ok(())
    }
}

/// `host:port` that only this host can reach.
pub fn is_loopback_address(address: &str) -> bool {
    if let Ok(a) = address.parse::<SocketAddr>() {
        return a.ip().is_loopback();
    }
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    // A name: loopback only if everything it resolves to is.
    match address.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogSettings {
    /// `text` or `json`.
    pub(crate) format: LogFormat,
    /// A level (error, warn, info, debug, trace, off) or tracing directives
    /// (`info,sluice=debug`).
    pub(crate) level: String,
}

/// Level names `log.level` accepts, alone or after `target=`.
pub(crate) const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace", "off"];

/// Checks a `log.level` value: tracing would read an unknown word as a target name and
/// silently log nothing else.
pub(crate) fn check_log_level(level: &str) -> Result<(), String> {
    let valid = !level.trim().is_empty()
        && level.split(',').all(|directive| {
            let directive = directive.trim();
            let level = directive
                .rsplit_once('=')
                .map_or(
                    directive,
                    |(target, level)| {
                        if target.trim().is_empty() { "" } else { level }
                    },
                );
            LOG_LEVELS
                .iter()
                .any(|l| l.eq_ignore_ascii_case(level.trim()))
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a log level: use one of {}, or directives such as `info,sluice=debug`",
            level.escape_debug(),
            LOG_LEVELS.join(", ")
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Flag values that override everything else.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) api_address: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SettingsError {
    /// The layers could not be read or merged (message already redacted).
    #[error("invalid settings: {0}")]
    Load(String),
    /// A value that was read but cannot be used.
    #[error("invalid settings: {0}")]
    Invalid(String),
}

/// The environment variables the settings read: the known ones, and the ignored names.
struct EnvSplit {
    known: config::Map<String, String>,
    /// (variable, setting key, value) of the known ones, for error messages.
    used: Vec<(String, String, String)>,
    ignored: Vec<String>,
}

/// Dotted keys of every setting the environment may set: the leaves of the embedded
/// defaults, which list every setting. Lists (`plugin_dirs`) are left out: the command
/// line reads `SLUICE_PLUGIN_DIRS` itself (`:`-separated).
fn env_keys() -> BTreeSet<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            serde_json::Value::Array(_) => {}
            _ => {
                out.insert(prefix.to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    if let Ok(defaults) = serde_saphyr::from_str::<serde_json::Value>(DEFAULT_SETTINGS) {
        walk("", &defaults, &mut out);
    }
    out
}

const ENV_PREFIX: &str = "SLUICE_";

fn split_env(env: Option<config::Map<String, String>>) -> EnvSplit {
    let vars: Vec<(String, String)> = match env {
        Some(map) => map.into_iter().collect(),
        None => std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    };
    let keys = env_keys();
    let mut split = EnvSplit {
        known: config::Map::new(),
        used: Vec::new(),
        ignored: Vec::new(),
    };
    for (name, value) in vars {
        let Some(rest) = name
            .get(..ENV_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
            .and_then(|_| name.get(ENV_PREFIX.len()..))
        else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        if keys.contains(&key) {
            if crate::redact::is_secret_key(&key) {
                crate::redact::register(&value);
            }
            split.used.push((name.clone(), key, value.clone()));
            split.known.insert(name, value);
        } else if key != "plugin_dirs" {
            split.ignored.push(name);
        }
    }
    split.ignored.sort();
    split
}

/// A settings error's text without any value that came from the environment: the
/// `config` crate quotes values (lowercased) in type errors, and one may be a secret put
/// in the wrong variable.
fn scrub(message: &str, used: &[(String, String, String)]) -> String {
    let mut message = message.to_owned();
    for (name, _, value) in used {
        for form in [value.clone(), value.to_lowercase()] {
            if form.is_empty() {
                continue;
            }
            // Name the variable instead, so the error still says where to look.
            let quoted = format!("\"{form}\"");
            message = message.replace(&quoted, &format!("from {name} (value not shown)"));
            if form.chars().count() >= 4 {
                message = message.replace(&form, crate::redact::REDACTED);
            }
        }
    }
    crate::redact::redact(&message).into_owned()
}

impl Settings {
    /// Layers defaults, `file`, the process environment and `overrides`.
    pub(crate) fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, SettingsError> {
        Self::load_with_env(file, overrides, None)
    }

    /// Like [`Settings::load`] with an explicit environment (for tests).
    pub(crate) fn load_with_env(
        file: Option<&Path>,
        overrides: &Overrides,
        env: Option<config::Map<String, String>>,
    ) -> Result<Self, SettingsError> {
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_SETTINGS, FileFormat::Yaml));
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Yaml).required(true));
        }
        let env = split_env(env);
        let load_error =
            |e: config::ConfigError| SettingsError::Load(scrub(&e.to_string(), &env.used));
        builder = builder.add_source(
            Environment::with_prefix("SLUICE")
                .prefix_separator("_")
                .separator("__")
                // Text stays text: parsing would turn a token `0123` into 123.
                .try_parsing(false)
                .source(Some(env.known.clone())),
        );
        if let Some(dir) = &overrides.data_dir {
            builder = builder
                .set_override("data_dir", dir.to_string_lossy().into_owned())
                .map_err(load_error)?;
        }
        if let Some(address) = &overrides.api_address {
            builder = builder
                .set_override("api.address", address.clone())
                .map_err(load_error)?;
        }
        let mut settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(load_error)?;
        settings.ignored_env = env.ignored.clone();
        if let Some(token) = settings.api.token() {
            crate::redact::register(token);
        }
        // Name the variable when the value came from one: that is where to fix it.
        let source_of = |key: &str, fallback: &str| {
            env.used
                .iter()
                .find(|(_, k, _)| k == key)
                .map_or_else(|| fallback.to_owned(), |(name, _, _)| name.clone())
        };
        check_log_level(&settings.log.level).map_err(|e| {
            SettingsError::Invalid(format!("{}: {e}", source_of("log.level", "log.level")))
        })?;
        settings.api.check().map_err(SettingsError::Invalid)?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<config::Map<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_env_and_flags_layer_in_order() {
        let s = Settings::load_with_env(None, &Overrides::default(), env(&[])).expect("defaults");
        assert_eq!(s.api.address, "127.0.0.1:8686");
        assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(s.reload_drain_timeout, Duration::from_secs(10));
        assert_eq!(s.log.format, LogFormat::Text);

        let s = Settings::load_with_env(
            None,
            &Overrides::default(),
            env(&[
                ("SLUICE_DATA_DIR", "/var/lib/sluice"),
                ("SLUICE_API__ADDRESS", "0.0.0.0:9000"),
                ("SLUICE_API__AUTH_TOKEN", "t0k"),
                ("SLUICE_LOG__LEVEL", "debug"),
                ("SLUICE_LOG__FORMAT", "json"),
            ]),
        )
        .expect("env");
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/sluice"));
        assert_eq!(s.api.address, "0.0.0.0:9000");
        assert_eq!(s.log.level, "debug");
        assert_eq!(s.log.format, LogFormat::Json);

        let s = Settings::load_with_env(
            None,
            &Overrides {
                data_dir: Some("/tmp/x".into()),
                api_address: Some("127.0.0.1:1".into()),
            },
            env(&[("SLUICE_API__ADDRESS", "0.0.0.0:9000")]),
        )
        .expect("flags");
        assert_eq!(s.api.address, "127.0.0.1:1");
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn a_settings_file_overrides_defaults_and_typos_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.yaml");
        std::fs::write(&path, "shutdown_timeout: 5s\napi:\n  enabled: false\n").expect("write");
        let s =
            Settings::load_with_env(Some(&path), &Overrides::default(), env(&[])).expect("file");
        assert_eq!(s.shutdown_timeout, Duration::from_secs(5));
        assert!(!s.api.enabled);

        std::fs::write(&path, "shutdown_timout: 5s\n").expect("write");
        let e = Settings::load_with_env(Some(&path), &Overrides::default(), env(&[]))
            .expect_err("typo");
        assert!(e.to_string().contains("shutdown_timout"), "{e}");
    }

    #[test]
    fn unknown_sluice_variables_are_ignored_and_values_stay_text() {
        let s = Settings::load_with_env(
            None,
            &Overrides::default(),
            env(&[
                // What Kubernetes sets for a Service named `sluice`.
                ("SLUICE_PORT", "tcp://10.0.0.7:8686"),
                ("SLUICE_SERVICE_HOST", "10.0.0.7"),
                ("SLUICE_API", "x"),
                ("SLUICE_API__AUTH_TOKEN", "0123"),
                ("SLUICE_API__ENABLED", "false"),
                ("SLUICE_PLUGIN_DIRS", "/a:/b"),
                ("OTHER", "1"),
            ]),
        )
        .expect("unknown variables are not errors");
        assert_eq!(
            s.ignored_env,
            ["SLUICE_API", "SLUICE_PORT", "SLUICE_SERVICE_HOST"]
        );
        assert_eq!(s.api.auth_token.as_deref(), Some("0123"));
        assert!(!s.api.enabled);
    }

    #[test]
    fn log_levels_are_checked_and_errors_name_the_variable() {
        for good in [
            "info",
            "DEBUG",
            "off",
            "info,sluice=debug",
            "warn,hyper=off",
        ] {
            assert!(check_log_level(good).is_ok(), "{good}");
        }
        for bad in ["bogus", "", "sluice", "info,=debug", "verbose"] {
            assert!(check_log_level(bad).is_err(), "{bad:?}");
        }
        let e = Settings::load_with_env(
            None,
            &Overrides::default(),
            env(&[("SLUICE_LOG__LEVEL", "bogus")]),
        )
        .expect_err("bogus");
        let e = e.to_string();
        assert!(
            e.contains("SLUICE_LOG__LEVEL") && e.contains("error, warn, info"),
            "{e}"
        );
    }

    #[test]
    fn values_from_the_environment_are_not_quoted_in_errors() {
        let e = Settings::load_with_env(
            None,
            &Overrides::default(),
            env(&[("SLUICE_API__ENABLED", "Hunter2-Secret")]),
        )
        .expect_err("not a boolean");
        let e = e.to_string();
        assert!(e.contains("api.enabled"), "{e}");
        assert!(!e.to_lowercase().contains("hunter2-secret"), "{e}");
        assert!(
            e.contains("from SLUICE_API__ENABLED (value not shown)"),
            "the error names the variable to fix: {e}"
        );
    }

    #[test]
    fn the_api_needs_a_token_beyond_loopback() {
        let api = |address: &str, token: Option<&str>, allow: bool| ApiSettings {
            enabled: true,
            address: address.into(),
            auth_token: token.map(Into::into),
            allow_unauthenticated: allow,
            tokens: Vec::new(),
        };
        assert!(api("127.0.0.1:8686", None, false).check().is_ok());
        assert!(api("localhost:8686", None, false).check().is_ok());
        assert!(api("[::1]:8686", None, false).check().is_ok());
        assert!(api("0.0.0.0:8686", None, false).check().is_err());
        assert!(api("[::]:8686", None, false).check().is_err());
        assert!(api("10.1.2.3:8686", None, false).check().is_err());
        assert!(api("0.0.0.0:8686", Some("t"), false).check().is_ok());
        assert!(api("0.0.0.0:8686", None, true).check().is_ok());
        assert!(api("127.0.0.1:8686", Some(""), false).check().is_err());
        assert!(api("127.0.0.1:8686", Some("  "), true).check().is_err());
    }
}
