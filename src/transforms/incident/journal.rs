//! What makes a change durable before it is announced: each batch's changed incidents
//! are appended to `<id>.journal` (one JSON line per incident, numbered) and synced
//! before the batch's notifications leave. The full state file is rewritten every
//! `snapshot_interval` and when the component stops, after which the journal starts
//! over. On load the journal is replayed over the state file: only records numbered
//! after the file's own sequence count, so a crash between the two writes replays
//! nothing stale. A torn last line (a crash mid-write) is ignored.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::IncidentState;
use super::state::Incident;

#[derive(Serialize, Deserialize)]
struct Record<I> {
    seq: u64,
    key: String,
    incident: I,
}

pub(crate) fn path_for(state_file: &Path) -> PathBuf {
    state_file.with_extension("journal")
}

/// Appends the incidents of `keys` (those still held) and syncs.
pub(crate) fn append(
    path: &Path,
    state: &mut IncidentState,
    keys: &[String],
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    for key in keys {
        let Some(incident) = state.incidents.get(key) else {
            continue;
        };
        state.seq = state.seq.saturating_add(1);
        let record = Record {
            seq: state.seq,
            key: key.clone(),
            incident,
        };
        serde_json::to_writer(&mut buf, &record).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    if buf.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(&buf)?;
    f.sync_data()
}

/// Empties the journal (its records are in the state file now).
pub(crate) fn clear(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => {
            f.set_len(0)?;
            f.sync_data()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies the journal's records newer than the state file's.
pub(crate) fn replay(path: &Path, state: &mut IncidentState) {
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Record<Incident>>(line) {
            Ok(r) if r.seq > state.seq => {
                state.seq = r.seq;
                state.incidents.insert(r.key, r.incident);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "skipping a torn incident journal line");
            }
        }
    }
}
