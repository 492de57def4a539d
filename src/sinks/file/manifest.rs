//! The files a `file` sink created, so `retention_days` deletes those and nothing else.
//!
//! Kept in `<data_dir>/file_sink/<sink id>.json` as a sorted list of paths, replaced
//! atomically (temp file, fsync, rename) whenever a file is created, rotated or deleted.
//! A path enters only after the sink created the file (`O_EXCL`): a file that existed
//! before, even one `path` renders to, is appended to but never listed, so never
//! deleted. A crash between creating a file and saving the list leaves that file
//! unlisted: kept forever rather than deleted wrongly. An unreadable list starts empty
//! for the same reason.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where the manifest of sink `id` lives.
pub(crate) fn path_for(data_dir: &Path, id: &str) -> PathBuf {
    crate::state_file::path_for(data_dir, "file_sink", id)
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Stored {
    files: BTreeSet<String>,
}

/// The files one sink created.
#[derive(Debug)]
pub(crate) struct Manifest {
    path: PathBuf,
    pub(crate) files: BTreeSet<String>,
}

impl Manifest {
    /// Reads the manifest at `path`; missing or unreadable, it starts empty.
    pub(crate) fn load(path: PathBuf) -> Self {
        let files = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Stored>(&bytes) {
                Ok(stored) => stored.files,
                Err(e) => {
                    tracing::warn!(manifest = %path.display(), error = %e, "the file sink's manifest is unreadable; files listed in it will not be deleted by retention_days");
                    BTreeSet::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => {
                tracing::warn!(manifest = %path.display(), error = %e, "cannot read the file sink's manifest; files listed in it will not be deleted by retention_days");
                BTreeSet::new()
            }
        };
        Self { path, files }
    }

    /// Writes the list (off the async workers: it fsyncs).
    pub(crate) async fn save(&self) -> std::io::Result<()> {
        let path = self.path.clone();
        let bytes = serde_json::to_vec(&Stored {
            files: self.files.clone(),
        })
        .map_err(std::io::Error::other)?;
        tokio::task::spawn_blocking(move || crate::state_file::write_atomically(&path, &bytes))
            .await
            .map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_for(dir.path(), "out-x");
        assert!(path.ends_with("file_sink/out-x.json"));
        let mut m = Manifest::load(path.clone());
        assert!(m.files.is_empty());
        m.files.insert("/data/x/b.log".into());
        m.files.insert("/data/x/a.log".into());
        m.save().await.expect("saves");
        let again = Manifest::load(path.clone());
        assert_eq!(
            again.files.into_iter().collect::<Vec<_>>(),
            ["/data/x/a.log", "/data/x/b.log"]
        );
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["out-x.json"]);
    }

    #[test]
    fn a_corrupt_manifest_starts_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_for(dir.path(), "out");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, b"{not json").expect("write");
        assert!(Manifest::load(path).files.is_empty());
    }
}
