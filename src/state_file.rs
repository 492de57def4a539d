//! Small state files components keep under `data_dir` (manifests, timer snapshots,
//! silences): where they live and how they are replaced, so a crash leaves either the
//! old file or the new one, never half of one.

use std::path::{Path, PathBuf};

/// `<data_dir>/<kind>/<id>.json`, the id reduced to characters safe in a file name.
pub fn path_for(data_dir: &Path, kind: &str, id: &str) -> PathBuf {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    data_dir.join(kind).join(format!("{safe}.json"))
}

/// Replaces `path` with `bytes` durably: a temporary file beside it, fsync, rename, and
/// an fsync of the directory so the rename survives a crash too.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("json.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_safe_names_and_writes_replace_whole_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_for(dir.path(), "file_sink", "../a b/c");
        assert_eq!(path, dir.path().join("file_sink").join("___a_b_c.json"));
        write_atomically(&path, b"one").expect("write");
        write_atomically(&path, b"two").expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let left: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
    }
}
