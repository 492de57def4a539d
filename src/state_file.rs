//! Small state files components keep under `data_dir` (manifests, timer snapshots,
//! silences): where they live and how they are replaced, so a crash leaves either the
//! old file or the new one, never half of one; and the live state a component's old and
//! new instance share during a hot reload ([`take_over`]).

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

/// `<data_dir>/<kind>/<id>.json`. A component id (letters of any script, digits, `_`,
/// `-`, up to 160 bytes) is its own file name; anything else is replaced (or cut) and
/// the name gets a hash of the whole id, so two ids never share a file.
pub(crate) fn path_for(data_dir: &Path, kind: &str, id: &str) -> PathBuf {
    let mut safe: String = id
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // File names stop at 255 bytes: a long id is cut, and told apart by the hash.
    const MAX_NAME_BYTES: usize = 160;
    if safe != id || safe.len() > MAX_NAME_BYTES {
        let cut = crate::text::prefix_bytes(&safe, MAX_NAME_BYTES).len();
        safe.truncate(cut);
        safe.push_str(&format!("-{:016x}", crate::hashing::fnv1a(id.as_bytes())));
    }
    data_dir.join(kind).join(format!("{safe}.json"))
}

/// Replaces `path` with `bytes` durably: a temporary file beside it, fsync, rename, and
/// an fsync of the directory so the rename survives a crash too.
/// `value` as JSON, through [`write_atomically`]; the error names the file.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    write_atomically(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// What a previous run wrote to `path` as JSON: `None` on a first start (no file), and
/// also, with a warning naming `what`, when the file cannot be read or parsed, so the
/// component starts fresh instead of failing.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Option<T> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read {what}; starting fresh");
            return None;
        }
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| {
            tracing::warn!(file = %path.display(), error = %e, "unreadable {what}; starting fresh");
        })
        .ok()
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

/// State shared by the instances of one component, by its state file's path.
type Registry = HashMap<PathBuf, Arc<dyn Any + Send + Sync>>;

static LIVE: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);

/// Locks shared state, going on after a panic elsewhere: component state is updated
/// field by field, so what a panic leaves is consistent enough to keep the pipeline up.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The live state of the component whose state file is `path`: shared with an instance
/// still running (a hot reload builds the new instance before the old one stops, so
/// a file written by the old one would come too late), else `load(path)`.
pub(crate) fn take_over<T: Send + 'static>(
    path: &Path,
    load: impl FnOnce(&Path) -> T,
) -> Arc<Mutex<T>> {
    let mut live = lock(&LIVE);
    if let Some(found) = live.get(path)
        && let Ok(state) = Arc::clone(found).downcast::<Mutex<T>>()
    {
        return state;
    }
    let state = Arc::new(Mutex::new(load(path)));
    live.insert(
        path.to_owned(),
        Arc::clone(&state) as Arc<dyn Any + Send + Sync>,
    );
    state
}

/// Called when an instance goes away (after its last write): the registry forgets the
/// state once no other instance holds it.
pub(crate) fn release<T: Send + 'static>(path: &Path, state: &Arc<Mutex<T>>) {
    let mut live = lock(&LIVE);
    if let Some(found) = live.get(path)
        && let Ok(shared) = Arc::clone(found).downcast::<Mutex<T>>()
        && Arc::ptr_eq(&shared, state)
        // The registry's reference, `shared` and the caller's.
        && Arc::strong_count(state) <= 3
    {
        live.remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_share_live_state_until_the_last_one_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_for(dir.path(), "test_kind", "shared");
        let first = take_over(&path, |_| 1u32);
        let second = take_over(&path, |_| 2u32);
        assert!(
            Arc::ptr_eq(&first, &second),
            "a second instance shares the state"
        );
        *lock(&second) = 5;
        release(&path, &first);
        drop(first);
        assert_eq!(*lock(&take_over(&path, |_| 9u32)), 5, "still live");
        release(&path, &second);
        drop(second);
        assert_eq!(*lock(&take_over(&path, |_| 9u32)), 9, "loaded afresh");
    }

    #[test]
    fn ids_become_safe_names_and_writes_replace_whole_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_for(dir.path(), "file_sink", "../a b/c");
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(
            name.starts_with("___a_b_c-") && name.ends_with(".json"),
            "{name}"
        );
        assert_eq!(path.parent(), Some(dir.path().join("file_sink").as_path()));
        // A long id is cut to a name the file system takes, and stays apart.
        let long = "é".repeat(120);
        let a = path_for(dir.path(), "k", &format!("{long}a"));
        let b = path_for(dir.path(), "k", &format!("{long}b"));
        assert_ne!(a, b);
        for p in [&a, &b] {
            write_json(p, &1).expect("a long id still persists");
            assert!(p.file_name().map_or(0, |n| n.len()) < 255);
        }
        // Ids that reduce to one name keep files of their own.
        assert_eq!(
            path_for(dir.path(), "incident", "café"),
            dir.path().join("incident").join("café.json")
        );
        let ids = ["café", "caf_", "caf-", "a.b", "a_b", "a/b"];
        let paths: std::collections::HashSet<_> =
            ids.iter().map(|id| path_for(dir.path(), "k", id)).collect();
        assert_eq!(paths.len(), ids.len());
        write_atomically(&path, b"one").expect("write");
        write_atomically(&path, b"two").expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let left: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
    }
}
