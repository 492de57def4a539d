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
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

mod api;

pub(crate) use api::ApiSettings;
pub use api::{Role, is_loopback_address};

/// The embedded defaults.
pub const DEFAULT_SETTINGS: &str = include_str!("../../config/default.yaml");

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
}
