//! The one watcher over the pipeline files and the files components read.
//!
//! Directories are watched rather than files, and a change is decided by content, not
//! by the name an event carries. Editors replace a file by renaming a new one over it,
//! and Kubernetes updates a mounted ConfigMap by swapping a `..data` symlink, so the
//! event names `..data` while `pipeline.yaml` (a symlink through it) now reads
//! differently. Any event in a watched directory therefore re-reads the files watched
//! there and reports those whose content hash changed; touching a file reports nothing.
//!
//! Events cannot see everything: a watched directory that is deleted and created again
//! takes its watch with it, and a file reached through a symlinked directory
//! (`current -> release-2`) changes when the link moves, which no event in the watched
//! directory tells. A sweep every few seconds therefore looks at every watched file's
//! metadata and re-reads those whose size, time or inode moved; after each reload the
//! directories are watched afresh.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::component::absolute;

/// How often the sweep looks at the watched files' metadata.
pub(crate) const SWEEP: Duration = Duration::from_secs(2);

/// What a watched file held when last read: `None` when it could not be read (absent,
/// or a symlink whose target is being swapped).
type Content = Option<u64>;

/// What the sweep compares before reading a file again: size, modification time and
/// identity, through symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    dev: u64,
    ino: u64,
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    content: Content,
    stamp: Option<Stamp>,
}

impl Seen {
    fn of(path: &Path) -> Self {
        let stamp = stamp_of(path);
        Self {
            content: hash_of(path),
            stamp,
        }
    }

    /// Reads the file again (only when its metadata moved, with `by_stamp`); whether
    /// its content changed.
    fn refresh(&mut self, path: &Path, by_stamp: bool) -> bool {
        let stamp = stamp_of(path);
        if by_stamp && stamp == self.stamp {
            return false;
        }
        self.stamp = stamp;
        let content = hash_of(path);
        let changed = content != self.content;
        self.content = content;
        changed
    }
}

type Files = Arc<Mutex<HashMap<PathBuf, Seen>>>;

/// Watches a set of files for changes of content.
pub(crate) struct FileWatcher {
    watcher: RecommendedWatcher,
    dirs: HashSet<PathBuf>,
    files: Files,
}

impl FileWatcher {
    /// Each change to the content of a watched file sends its absolute path on `notify`
    /// (debouncing is the receiver's job); the sweep runs every `sweep` until the
    /// watcher is dropped.
    pub(crate) fn new(
        notify: mpsc::UnboundedSender<PathBuf>,
        sweep: Duration,
    ) -> notify::Result<Self> {
        let files: Files = Arc::default();
        let watched = Arc::clone(&files);
        let on_event = notify.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            let Ok(mut files) = watched.lock() else {
                return;
            };
            let touched: HashSet<PathBuf> = event
                .paths
                .iter()
                .map(|p| absolute(p))
                .flat_map(|p| [p.parent().map(Path::to_path_buf), Some(p)])
                .flatten()
                .collect();
            for (path, seen) in files.iter_mut() {
                // A watched folder changes with what is in it.
                let touched_here = touched.contains(path)
                    || path.parent().is_some_and(|dir| touched.contains(dir));
                if touched_here && seen.refresh(path, false) {
                    let _ = on_event.send(path.clone());
                }
            }
        })?;
        let swept = Arc::downgrade(&files);
        std::thread::Builder::new()
            .name("sluice-watch-sweep".into())
            .spawn(move || sweep_loop(&swept, &notify, sweep))
            .map_err(|e| notify::Error::generic(&format!("cannot start the sweep: {e}")))?;
        Ok(Self {
            watcher,
            dirs: HashSet::new(),
            files,
        })
    }

    /// Watches exactly `files` from now on. A file already watched keeps the content
    /// last seen, so a change made while the caller reloaded is still reported. Every
    /// directory is watched afresh: one deleted and created again lost its watch.
    pub(crate) fn set_files(&mut self, files: &[PathBuf]) {
        let wanted: HashSet<PathBuf> = files.iter().map(|f| absolute(f)).collect();
        let dirs: HashSet<PathBuf> = wanted
            .iter()
            .flat_map(|f| {
                let folder = f.is_dir().then(|| f.clone());
                [f.parent().map(Path::to_path_buf), folder]
            })
            .flatten()
            .collect();
        if let Ok(mut watched) = self.files.lock() {
            watched.retain(|path, _| wanted.contains(path));
            for path in &wanted {
                if !watched.contains_key(path) {
                    watched.insert(path.clone(), Seen::of(path));
                }
            }
        }
        for dir in &self.dirs {
            let _ = self.watcher.unwatch(dir);
        }
        for dir in &dirs {
            if let Err(e) = self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for changes");
            }
        }
        self.dirs = dirs;
    }
}

/// Until the watcher is dropped: every `every`, re-reads the watched files whose
/// metadata moved and reports those whose content changed.
fn sweep_loop(
    files: &Weak<Mutex<HashMap<PathBuf, Seen>>>,
    notify: &mpsc::UnboundedSender<PathBuf>,
    every: Duration,
) {
    loop {
        std::thread::sleep(every);
        let Some(files) = files.upgrade() else { return };
        let Ok(mut files) = files.lock() else { return };
        for (path, seen) in files.iter_mut() {
            if seen.refresh(path, true) && notify.send(path.clone()).is_err() {
                return;
            }
        }
    }
}

/// A hash of the file's content, read through symlinks; of a folder, the names of
/// the pipeline files in it.
fn hash_of(path: &Path) -> Content {
    if path.is_dir() {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for file in crate::config::paths::listing(path) {
            hasher.write(file.as_os_str().as_encoded_bytes());
        }
        return Some(hasher.finish());
    }
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Some(hasher.finish()),
            Ok(n) => hasher.write(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real files and the real inotify watcher; each test waits for the report with a
    //! deadline, never for a fixed time, except to show that nothing comes.

    use std::os::unix::fs::symlink;
    use std::time::Duration;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    struct Rig {
        watcher: FileWatcher,
        changes: mpsc::UnboundedReceiver<PathBuf>,
        dir: tempfile::TempDir,
    }

    impl Rig {
        fn new() -> Self {
            let (tx, changes) = mpsc::unbounded_channel();
            Self {
                watcher: FileWatcher::new(tx, Duration::from_millis(50)).expect("watcher"),
                changes,
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            absolute(&self.dir.path().join(name))
        }

        async fn next_change(&mut self) -> PathBuf {
            tokio::time::timeout(DEADLINE, self.changes.recv())
                .await
                .expect("a change is reported")
                .expect("watcher alive")
        }

        /// Nothing is reported: after a marker file's change (which is reported) no
        /// report of anything else came first.
        async fn assert_quiet(&mut self) {
            let marker = self.path("marker.yaml");
            std::fs::write(&marker, "before").expect("marker");
            let mut files: Vec<PathBuf> = self
                .watcher
                .files
                .lock()
                .expect("lock")
                .keys()
                .cloned()
                .collect();
            files.push(marker.clone());
            self.watcher.set_files(&files);
            std::fs::write(&marker, "after").expect("marker");
            assert_eq!(self.next_change().await, marker, "only the marker changed");
        }
    }

    #[tokio::test]
    async fn a_file_written_in_place_is_reported() {
        let mut rig = Rig::new();
        let file = rig.path("pipeline.yaml");
        std::fs::write(&file, "a: 1\n").expect("write");
        rig.watcher.set_files(std::slice::from_ref(&file));
        std::fs::write(&file, "a: 2\n").expect("write");
        assert_eq!(rig.next_change().await, file);
    }

    #[tokio::test]
    async fn an_atomic_rename_over_the_file_is_reported() {
        let mut rig = Rig::new();
        let file = rig.path("pipeline.yaml");
        std::fs::write(&file, "a: 1\n").expect("write");
        rig.watcher.set_files(std::slice::from_ref(&file));
        let tmp = rig.path(".pipeline.yaml.tmp");
        std::fs::write(&tmp, "a: 2\n").expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
        assert_eq!(rig.next_change().await, file);
    }

    #[tokio::test]
    async fn an_editor_that_deletes_and_recreates_the_file_is_reported() {
        let mut rig = Rig::new();
        let file = rig.path("pipeline.yaml");
        std::fs::write(&file, "a: 1\n").expect("write");
        rig.watcher.set_files(std::slice::from_ref(&file));
        // vim's default: write a backup, remove the original, write the new file.
        std::fs::rename(&file, rig.path("pipeline.yaml~")).expect("backup");
        std::fs::write(&file, "a: 2\n").expect("write");
        std::fs::remove_file(rig.path("pipeline.yaml~")).expect("remove backup");
        // The gap between removal and write may be seen as one change or two; the last
        // report must come from the new content.
        loop {
            assert_eq!(rig.next_change().await, file);
            let seen = rig.watcher.files.lock().expect("lock")[&file].content;
            if seen.is_some() && seen == hash_of(&file) {
                break;
            }
        }
    }

    /// What the kubelet does to a mounted ConfigMap: the files are symlinks through
    /// `..data`, itself a symlink to a timestamped directory; an update writes a new
    /// directory, points `..data_tmp` at it and renames that over `..data`. No event
    /// names `pipeline.yaml`.
    #[tokio::test]
    async fn a_configmap_symlink_swap_is_reported() {
        let mut rig = Rig::new();
        let root = rig.dir.path().to_path_buf();
        let v1 = root.join("..2026_12_05_10_00_00.1");
        std::fs::create_dir(&v1).expect("dir");
        std::fs::write(v1.join("pipeline.yaml"), "a: 1\n").expect("write");
        symlink("..2026_12_05_10_00_00.1", root.join("..data")).expect("symlink");
        symlink("..data/pipeline.yaml", root.join("pipeline.yaml")).expect("symlink");
        let file = rig.path("pipeline.yaml");
        rig.watcher.set_files(std::slice::from_ref(&file));

        let v2 = root.join("..2026_12_05_10_01_00.2");
        std::fs::create_dir(&v2).expect("dir");
        std::fs::write(v2.join("pipeline.yaml"), "a: 2\n").expect("write");
        symlink("..2026_12_05_10_01_00.2", root.join("..data_tmp")).expect("symlink");
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
        std::fs::remove_dir_all(&v1).expect("old version");
        assert_eq!(rig.next_change().await, file);
    }

    /// The folder is deleted and made again: its watch is gone, the sweep still sees
    /// the new content.
    #[tokio::test]
    async fn a_folder_deleted_and_made_again_is_still_watched() {
        let mut rig = Rig::new();
        let dir = rig.path("conf");
        std::fs::create_dir(&dir).expect("dir");
        let file = dir.join("pipeline.yaml");
        std::fs::write(&file, "a: 1\n").expect("write");
        rig.watcher.set_files(std::slice::from_ref(&file));
        std::fs::remove_dir_all(&dir).expect("remove");
        std::fs::create_dir(&dir).expect("dir");
        std::fs::write(&file, "a: 2\n").expect("write");
        loop {
            assert_eq!(rig.next_change().await, file);
            if rig.watcher.files.lock().expect("lock")[&file].content == hash_of(&file) {
                break;
            }
        }
        // A reload watches the folder afresh: events work again.
        rig.watcher.set_files(std::slice::from_ref(&file));
        std::fs::write(&file, "a: 3\n").expect("write");
        assert_eq!(rig.next_change().await, file);
    }

    /// Releases behind a symlinked folder: `current -> r1`, then `current -> r2`.
    #[tokio::test]
    async fn a_symlinked_folder_that_moves_is_seen() {
        let mut rig = Rig::new();
        let root = rig.dir.path().to_path_buf();
        for (release, version) in [("r1", 1), ("r2", 2)] {
            std::fs::create_dir(root.join(release)).expect("dir");
            std::fs::write(root.join(release).join("p.yaml"), format!("a: {version}\n"))
                .expect("write");
        }
        symlink("r1", root.join("current")).expect("symlink");
        let file = rig.path("current/p.yaml");
        rig.watcher.set_files(std::slice::from_ref(&file));
        symlink("r2", root.join("current.new")).expect("symlink");
        std::fs::rename(root.join("current.new"), root.join("current")).expect("swap");
        assert_eq!(rig.next_change().await, file);
        assert_eq!(
            rig.watcher.files.lock().expect("lock")[&file].content,
            hash_of(&root.join("r2/p.yaml"))
        );
    }

    #[tokio::test]
    async fn the_same_content_or_another_file_is_not_a_change() {
        let mut rig = Rig::new();
        let file = rig.path("pipeline.yaml");
        std::fs::write(&file, "a: 1\n").expect("write");
        rig.watcher.set_files(std::slice::from_ref(&file));
        // The same bytes put in place whole (a rewrite in place may be read half-way:
        // truncated, then written), a touch, and another file.
        let tmp = rig.path(".pipeline.yaml.new");
        std::fs::write(&tmp, "a: 1\n").expect("same bytes");
        std::fs::rename(&tmp, &file).expect("replace");
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()))
            .expect("touch");
        std::fs::write(rig.path("unrelated.txt"), "x").expect("other file");
        rig.assert_quiet().await;
    }
}
