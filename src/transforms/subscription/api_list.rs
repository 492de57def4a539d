//! Subscriptions made through the API: kept in `<data_dir>/subscriptions/<id>.json`,
//! shared by every instance of the transform, and changed only through
//! [`ApiList::apply`], which writes the file before the change takes effect (a change
//! that cannot be written is refused and leaves nothing behind).
//!
//! Each entry keeps the JSON it was made from, so the file reads back exactly what was
//! accepted whatever the matcher syntax becomes; an entry that no longer parses is
//! reported at load and left out, and the file keeps it until the list is next written.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::set::SubscriptionSpec;

/// API subscriptions one transform holds at most.
pub(crate) const MAX_API_SUBSCRIPTIONS: usize = 1000;

/// One subscription made through the API.
#[derive(Debug, Clone)]
pub(crate) struct ApiSubscription {
    pub(crate) id: String,
    /// One of the transform's `api_outputs`.
    pub(crate) output: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    /// The criteria as given (an object of [`SubscriptionSpec`]'s fields).
    pub(crate) body: Json,
    pub(crate) spec: SubscriptionSpec,
}

/// The API subscriptions of one transform.
#[derive(Debug, Default)]
pub(crate) struct ApiList {
    pub(crate) subs: Vec<ApiSubscription>,
    /// Bumped by every change, so instances know to recompile.
    pub(crate) version: u64,
    path: PathBuf,
}

pub(crate) type SharedApiList = Arc<Mutex<ApiList>>;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    subscriptions: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    id: String,
    output: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    spec: Json,
}

/// `<data_dir>/subscriptions/<id>.json`.
pub(crate) fn path(data_dir: &Path, id: &str) -> PathBuf {
    crate::state_file::path_for(data_dir, "subscriptions", id)
}

/// The list kept at `path`: the one a running instance holds, else the file's.
pub(crate) fn shared(path: &Path) -> SharedApiList {
    crate::state_file::take_over(path, |p| {
        let mut list = read(p).unwrap_or_else(|e| {
            tracing::error!(file = %p.display(), error = %e, "cannot read the API subscriptions; starting without them and keeping the file aside");
            let _ = std::fs::rename(p, p.with_extension("json.unreadable"));
            ApiList::default()
        });
        list.path = p.to_owned();
        list.version = 1;
        list
    })
}

fn read(path: &Path) -> Result<ApiList, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ApiList::default()),
        Err(e) => return Err(e.to_string()),
    };
    let file: File = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if file.version != 1 {
        return Err(format!("unknown version {}", file.version));
    }
    let mut list = ApiList::default();
    let mut names = std::collections::HashSet::new();
    for e in file.subscriptions {
        // Only a hand-edited file breaks these; keep what the API would have accepted.
        if list.subs.len() >= MAX_API_SUBSCRIPTIONS {
            tracing::error!(file = %path.display(), subscription = %e.id, "more API subscriptions than allowed; leaving the rest out");
            break;
        }
        match serde_json::from_value::<SubscriptionSpec>(e.spec.clone()) {
            Ok(spec) if !names.insert(spec.name.clone()) => {
                tracing::error!(file = %path.display(), subscription = %e.id, name = %spec.name, "an API subscription's name is taken by an earlier one; leaving it out");
            }
            Ok(spec) => list.subs.push(ApiSubscription {
                id: e.id,
                output: e.output,
                created_at: e.created_at,
                updated_at: e.updated_at,
                body: e.spec,
                spec,
            }),
            Err(err) => {
                tracing::error!(file = %path.display(), subscription = %e.id, error = %err, "an API subscription no longer parses; leaving it out");
            }
        }
    }
    Ok(list)
}

impl ApiList {
    /// Runs `change` on a copy of the list, writes the copy, then makes it the list.
    pub(crate) fn apply<T, E>(
        &mut self,
        change: impl FnOnce(&mut Vec<ApiSubscription>) -> Result<T, E>,
    ) -> Result<T, ApplyError<E>> {
        let mut subs = self.subs.clone();
        let out = change(&mut subs).map_err(ApplyError::Refused)?;
        let file = File {
            version: 1,
            subscriptions: subs
                .iter()
                .map(|s| Entry {
                    id: s.id.clone(),
                    output: s.output.clone(),
                    created_at: s.created_at,
                    updated_at: s.updated_at,
                    spec: s.body.clone(),
                })
                .collect(),
        };
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| ApplyError::Storage(e.to_string()))?;
        crate::state_file::write_atomically(&self.path, &bytes).map_err(|e| {
            tracing::error!(file = %self.path.display(), error = %e, "cannot write the API subscriptions");
            ApplyError::Storage(format!("cannot write the subscriptions file: {e}"))
        })?;
        self.subs = subs;
        self.version += 1;
        Ok(out)
    }
}

/// Why [`ApiList::apply`] changed nothing.
#[derive(Debug)]
pub(crate) enum ApplyError<E> {
    /// The change itself was refused.
    Refused(E),
    /// The file could not be written.
    Storage(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_edited_file_with_a_name_twice_keeps_the_first_and_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = path(dir.path(), "route");
        let entry = |id: &str, name: &str| {
            serde_json::json!({"id": id, "output": "hooks", "created_at": "2026-12-01T00:00:00Z",
                "updated_at": "2026-12-01T00:00:00Z", "spec": {"name": name}})
        };
        let text = serde_json::json!({"version": 1, "subscriptions": [
            entry("1", "a"), entry("2", "a"), entry("3", "b"),
        ]});
        std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
        std::fs::write(&file, text.to_string()).expect("write");
        let list = read(&file).expect("reads");
        let ids: Vec<&str> = list.subs.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["1", "3"]);
    }
}
