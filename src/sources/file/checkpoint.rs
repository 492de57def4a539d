//! Checkpoints: where each file stands, in `data_dir/<source id>/checkpoints.json`.
//!
//! An offset is the byte where the first line not yet settled begins, so a restart reads
//! again at most what was unacknowledged and never skips a line. The file is replaced
//! atomically (temp file, fsync, rename, fsync of the directory): a crash leaves the old
//! or the new checkpoints, never half of them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fingerprint::FileId;

/// One file's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) id: FileId,
    /// The head checksum, when the file had a settled one.
    pub(crate) checksum: Option<u64>,
    /// Where the file was last seen (for people reading the file; identity is `id`).
    pub(crate) path: PathBuf,
    pub(crate) offset: u64,
    /// Checksum of the (up to) 256 bytes before `offset`: a copy of the file (copytruncate
    /// while stopped) continues from `offset` only if it holds the same bytes there.
    #[serde(default)]
    pub(crate) tail: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoints {
    version: u32,
    files: Vec<Record>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckpointError {
    #[error("checkpoint file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("checkpoint file {path} is corrupt: {error}")]
    Corrupt {
        path: PathBuf,
        error: serde_json::Error,
    },
}

/// The checkpoint file of a source.
pub(crate) fn path_for(data_dir: &Path, source_id: &str) -> PathBuf {
    data_dir.join(source_id).join("checkpoints.json")
}

/// The stored records; none when the file does not exist yet.
pub(crate) fn load(path: &Path) -> Result<Vec<Record>, CheckpointError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Checkpoints>(&bytes)
            .map(|c| c.files)
            .map_err(|error| CheckpointError::Corrupt {
                path: path.to_owned(),
                error,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(CheckpointError::Io {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Replaces the stored records atomically.
pub(crate) fn save(path: &Path, files: Vec<Record>) -> Result<(), CheckpointError> {
    let io = |error| CheckpointError::Io {
        path: path.to_owned(),
        error,
    };
    let body = serde_json::to_vec(&Checkpoints { version: 1, files })
        .map_err(|e| io(std::io::Error::other(e)))?;
    crate::state_file::write_atomically(path, &body).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_temp_files_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_for(dir.path(), "logs");
        assert_eq!(load(&path).expect("missing is empty"), vec![]);
        let rec = Record {
            id: FileId { dev: 1, ino: 2 },
            checksum: Some(42),
            path: "/var/log/a.log".into(),
            offset: 1234,
            tail: None,
        };
        save(&path, vec![rec.clone()]).expect("save");
        save(&path, vec![rec.clone()]).expect("save again");
        assert_eq!(load(&path).expect("load"), vec![rec]);
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("checkpoints.json")]);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_for(dir.path(), "logs");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, b"{not json").expect("write");
        assert!(matches!(load(&path), Err(CheckpointError::Corrupt { .. })));
    }
}
