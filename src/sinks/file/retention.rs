//! `retention_days`: files this sink created (its manifest) are deleted once older than
//! that. Only files the manifest lists and that still sit below the sink's root are
//! touched: an edited manifest or a directory swapped for a link must not make
//! retention delete anything else.

use std::path::PathBuf;

use super::paths::{self, OpenError};
use super::writer::Writer;

impl Writer {
    /// Deletes the expired files this sink created, and forgets files that are gone.
    pub(super) async fn apply_retention(&mut self) {
        let Some(keep) = self.retention else { return };
        let Some(m) = &mut self.manifest else { return };
        let cutoff = self.clock.wall() - keep;
        let root = PathBuf::from(&self.paths.root);
        let mut changed = false;
        for listed in m.files.clone() {
            let path = PathBuf::from(&listed);
            if self.open.contains_key(&path) {
                continue;
            }
            // An edited manifest, or a directory swapped for a link since the file was
            // written, must not make retention delete anything outside the root.
            let below = match paths::confine(&self.paths.root, &listed) {
                Ok(below) => below.to_owned(),
                Err(e) => {
                    tracing::warn!(file = %listed, error = %e, "not deleting a manifest entry outside the sink's directory");
                    m.files.remove(&listed);
                    changed = true;
                    continue;
                }
            };
            let walk_root = root.clone();
            let dirs =
                tokio::task::spawn_blocking(move || paths::walk_dirs(&walk_root, &below, false))
                    .await;
            let meta = match dirs {
                Ok(Ok(true)) => tokio::fs::symlink_metadata(&path).await,
                Ok(Ok(false)) => Err(std::io::ErrorKind::NotFound.into()),
                Ok(Err(OpenError::Reject(e))) => {
                    // A directory on the way became a link: what it leads to is not ours.
                    tracing::warn!(file = %listed, error = %e, "not deleting a file reached through a link");
                    m.files.remove(&listed);
                    changed = true;
                    continue;
                }
                Ok(Err(e @ OpenError::Io { .. })) => {
                    tracing::warn!(file = %listed, error = %e, "cannot check an expired file");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(file = %listed, error = %e, "cannot check an expired file");
                    continue;
                }
            };
            let meta = match meta {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => {
                    // Replaced by a link or a directory: not the file this sink wrote.
                    m.files.remove(&listed);
                    changed = true;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    m.files.remove(&listed);
                    changed = true;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(file = %listed, error = %e, "cannot check an expired file");
                    continue;
                }
            };
            let Ok(modified) = meta.modified() else {
                continue;
            };
            if chrono::DateTime::<chrono::Utc>::from(modified) >= cutoff {
                continue;
            }
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {
                    tracing::info!(file = %listed, "deleted by retention_days");
                    m.files.remove(&listed);
                    changed = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    m.files.remove(&listed);
                    changed = true;
                }
                Err(e) => {
                    tracing::warn!(file = %listed, error = %e, "cannot delete an expired file")
                }
            }
        }
        if changed && let Err(e) = m.save().await {
            tracing::warn!(error = %e, "cannot save the file sink's manifest");
        }
    }
}
