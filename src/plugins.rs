//! VRL plugins: vendor decoders (`decoders/<name>.vrl`) and sink formatters
//! (`formatters/<name>.vrl`).
//!
//! The files under `plugins/` are compiled into the binary. A `plugin_dirs` entry (global
//! settings) has the same layout; a file there with a built-in's name replaces it, and a
//! new name adds a plugin, so a vendor's format change needs an edited file, not a release.
//! Directories are searched in order, before the built-ins.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::error::BuildError;

mod formatter;

pub(crate) use formatter::{Formatter, text_field};

/// What a plugin does; also its folder name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Decoder,
    Formatter,
}

impl Kind {
    pub(crate) fn folder(self) -> &'static str {
        match self {
            Self::Decoder => "decoders",
            Self::Formatter => "formatters",
        }
    }
}

const BUILTINS: &[(Kind, &str, &str)] = &[
    (
        Kind::Decoder,
        "alertmanager",
        include_str!("../plugins/decoders/alertmanager.vrl"),
    ),
    (
        Kind::Decoder,
        "aws",
        include_str!("../plugins/decoders/aws.vrl"),
    ),
    (
        Kind::Decoder,
        "gcp_monitoring",
        include_str!("../plugins/decoders/gcp_monitoring.vrl"),
    ),
    (
        Kind::Decoder,
        "azure_monitor",
        include_str!("../plugins/decoders/azure_monitor.vrl"),
    ),
    (
        Kind::Decoder,
        "oci",
        include_str!("../plugins/decoders/oci.vrl"),
    ),
    (
        Kind::Decoder,
        "cloudevents",
        include_str!("../plugins/decoders/cloudevents.vrl"),
    ),
    (
        Kind::Formatter,
        "email",
        include_str!("../plugins/formatters/email.vrl"),
    ),
    (
        Kind::Formatter,
        "slack",
        include_str!("../plugins/formatters/slack.vrl"),
    ),
    (
        Kind::Formatter,
        "teams",
        include_str!("../plugins/formatters/teams.vrl"),
    ),
];

static DIRS: std::sync::LazyLock<ArcSwap<Vec<PathBuf>>> =
    std::sync::LazyLock::new(|| ArcSwap::from_pointee(Vec::new()));

/// Sets the `plugin_dirs` searched before the built-ins (at start-up, from settings).
pub fn set_dirs(dirs: Vec<PathBuf>) {
    DIRS.store(Arc::new(dirs));
}

/// Where a plugin's text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    Builtin,
    File(PathBuf),
}

/// A plugin's VRL text.
#[derive(Debug, Clone)]
pub(crate) struct Plugin {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) origin: Origin,
}

/// Every built-in plugin: kind, name and VRL text.
pub(crate) fn builtins() -> impl Iterator<Item = (Kind, &'static str, &'static str)> {
    BUILTINS.iter().copied()
}

/// The built-in text of a plugin.
pub(crate) fn builtin(kind: Kind, name: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(k, n, _)| *k == kind && *n == name)
        .map(|(_, _, text)| *text)
}

/// Finds the first of `names` in the plugin dirs, then among the built-ins.
pub(crate) fn find(kind: Kind, names: &[&str]) -> Result<Option<Plugin>, BuildError> {
    let dirs = DIRS.load();
    find_in(&dirs, kind, names)
}

fn find_in(dirs: &[PathBuf], kind: Kind, names: &[&str]) -> Result<Option<Plugin>, BuildError> {
    for dir in dirs {
        for name in names {
            let path = file_path(dir, kind, name);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    return Ok(Some(Plugin {
                        name: (*name).to_owned(),
                        text,
                        origin: Origin::File(path),
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(BuildError(format!(
                        "cannot read plugin {}: {e}",
                        path.display()
                    )));
                }
            }
        }
    }
    Ok(names.iter().find_map(|name| {
        builtin(kind, name).map(|text| Plugin {
            name: (*name).to_owned(),
            text: text.to_owned(),
            origin: Origin::Builtin,
        })
    }))
}

fn file_path(dir: &Path, kind: Kind, name: &str) -> PathBuf {
    dir.join(kind.folder()).join(format!("{name}.vrl"))
}

/// A plugin name must be a plain file stem, so it cannot reach outside its folder.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_dir_overrides_and_extends_the_builtins() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("decoders")).expect("mkdir");
        std::fs::write(dir.path().join("decoders/oci.vrl"), ". = [.]").expect("write");
        std::fs::write(dir.path().join("decoders/acme.vrl"), ".acme = true").expect("write");
        let dirs = vec![dir.path().to_path_buf()];

        let oci = find_in(&dirs, Kind::Decoder, &["oci"])
            .expect("read")
            .expect("found");
        assert_eq!(oci.text, ". = [.]");
        assert_eq!(
            oci.origin,
            Origin::File(dir.path().join("decoders/oci.vrl"))
        );

        let acme = find_in(&dirs, Kind::Decoder, &["acme"])
            .expect("read")
            .expect("found");
        assert_eq!(acme.text, ".acme = true");

        let aws = find_in(&dirs, Kind::Decoder, &["aws"])
            .expect("read")
            .expect("found");
        assert_eq!(aws.origin, Origin::Builtin);
        assert!(
            find_in(&dirs, Kind::Decoder, &["nope"])
                .expect("read")
                .is_none()
        );
        assert!(
            find_in(&dirs, Kind::Formatter, &["acme"])
                .expect("read")
                .is_none()
        );
    }

    #[test]
    fn names_cannot_escape_their_folder() {
        assert!(valid_name("aws_sns"));
        assert!(!valid_name("../etc/passwd"));
        assert!(!valid_name(""));
    }
}
