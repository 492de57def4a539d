//! Global settings (not the pipeline): layered with the `config` crate.
//!
//! Precedence, lowest first: `config/default.yaml` (embedded), the `--settings` file,
//! `SLUICE_*` environment variables (`__` separates nesting levels), command-line flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

/// The embedded defaults.
pub const DEFAULT_SETTINGS: &str = include_str!("../config/default.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub api: ApiSettings,
    pub log: LogSettings,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub reload_drain_timeout: Duration,
    /// Folders of VRL plugins overriding or adding to the built-in decoders and formatters.
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    /// Bytes all in-memory buffers may hold together; sources wait while it is spent.
    /// `None` (or 0): no global bound, only each buffer's own.
    #[serde(default)]
    pub memory_limit: Option<crate::config::ByteSize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub enabled: bool,
    pub address: String,
    /// Empty: no token required.
    #[serde(default)]
    pub auth_token: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// Flag values that override everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub api_address: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid settings: {0}")]
pub struct SettingsError(#[from] config::ConfigError);

impl Settings {
    /// Layers defaults, `file`, the process environment and `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, SettingsError> {
        Self::load_with_env(file, overrides, None)
    }

    /// Like [`Settings::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        overrides: &Overrides,
        env: Option<config::Map<String, String>>,
    ) -> Result<Self, SettingsError> {
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_SETTINGS, FileFormat::Yaml));
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Yaml).required(true));
        }
        builder = builder.add_source(
            Environment::with_prefix("SLUICE")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(env),
        );
        if let Some(dir) = &overrides.data_dir {
            builder = builder.set_override("data_dir", dir.to_string_lossy().into_owned())?;
        }
        if let Some(address) = &overrides.api_address {
            builder = builder.set_override("api.address", address.clone())?;
        }
        Ok(builder.build()?.try_deserialize()?)
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
}
