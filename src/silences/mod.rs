//! Silences.
//!
//! A silence mutes every alert whose labels (with `alertname` and `severity`) match all
//! its matchers ([`crate::matchers`]) while `starts_at <= now < ends_at`.
//!
//! Silences are process-wide, as in Alertmanager: one [`SilenceStore`] ([`global`])
//! shared by every `alert_rule` component and the API (`/silences`). It is persisted to
//! `<data_dir>/silences.json` (tmp + rename) after every change, `data_dir` being the
//! first one attached ([`attach_dir`]: at start-up, or by the first `alert_rule` built
//! with a `data_dir`). Silences written in a component's config carry that component
//! as their origin and a deterministic id, and are replaced as a whole when it is
//! rebuilt; silences from the API have origin `api`. Readers take a lock-free snapshot
//! (`ArcSwap`), so evaluation never waits on the API.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::matchers::{self, Matcher};

mod store;
pub use store::SilenceStore;

/// A silence as written in config and in the API's JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SilenceSpec {
    /// Given by the store when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    /// Label matchers (`name=value`, `!=`, `=~`, `!~`); an alert matching all of them
    /// is silenced.
    pub(crate) matchers: Vec<String>,
    /// RFC 3339; absent: already started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) starts_at: Option<String>,
    /// RFC 3339; absent: never ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ends_at: Option<String>,
    /// Why the silence is there.
    #[serde(default)]
    pub(crate) comment: String,
    /// Who made it.
    #[serde(default)]
    pub(crate) created_by: String,
}

/// A checked silence.
#[derive(Debug, Clone)]
pub struct Silence {
    pub(crate) id: String,
    pub(crate) origin: String,
    pub(crate) matchers: Vec<Matcher>,
    pub(crate) starts_at: Option<DateTime<Utc>>,
    pub(crate) ends_at: Option<DateTime<Utc>>,
    pub(crate) spec: SilenceSpec,
}

fn time(text: &Option<String>, option: &str) -> Result<Option<DateTime<Utc>>, String> {
    text.as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| format!("`{option}`: `{t}` is not an RFC 3339 time: {e}"))
        })
        .transpose()
}

impl Silence {
    /// Checks `spec`; `id` is used when the spec has none.
    pub(crate) fn new(spec: SilenceSpec, id: String, origin: &str) -> Result<Self, String> {
        if spec.matchers.is_empty() {
            return Err("`matchers`: a silence needs at least one matcher".into());
        }
        let matchers = matchers::parse_all_lenient(&spec.matchers, "matchers")?;
        let starts_at = time(&spec.starts_at, "starts_at")?;
        let ends_at = time(&spec.ends_at, "ends_at")?;
        if let (Some(s), Some(e)) = (starts_at, ends_at)
            && e <= s
        {
            return Err("`ends_at` must be after `starts_at`".into());
        }
        let id = spec.id.clone().unwrap_or(id);
        Ok(Self {
            spec: SilenceSpec {
                id: Some(id.clone()),
                ..spec
            },
            id,
            origin: origin.to_owned(),
            matchers,
            starts_at,
            ends_at,
        })
    }

    pub(crate) fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at.is_none_or(|s| s <= now) && self.ends_at.is_none_or(|e| now < e)
    }

    pub(crate) fn mutes(&self, labels: &BTreeMap<String, String>, now: DateTime<Utc>) -> bool {
        self.is_active(now) && self.matchers.iter().all(|m| m.matches_labels(labels))
    }

    /// The API's view: the spec plus origin and state.
    pub fn describe(&self, now: DateTime<Utc>) -> serde_json::Value {
        let state = if self.ends_at.is_some_and(|e| e <= now) {
            "expired"
        } else if self.starts_at.is_some_and(|s| now < s) {
            "pending"
        } else {
            "active"
        };
        let mut v = serde_json::to_value(&self.spec).unwrap_or_default();
        v["origin"] = self.origin.clone().into();
        v["status"] = state.into();
        v
    }
}

static GLOBAL: LazyLock<Arc<SilenceStore>> = LazyLock::new(Default::default);

/// The process-wide silences.
pub fn global() -> Arc<SilenceStore> {
    Arc::clone(&GLOBAL)
}

/// Persists the process-wide silences under `data_dir` (first caller wins).
pub(crate) fn attach_dir(data_dir: &Path) -> Result<(), String> {
    GLOBAL.attach_dir(data_dir)
}

/// Checks a spec from the API and adds it to the global store with a fresh id.
pub(crate) fn add_from_api(spec: SilenceSpec) -> Result<String, String> {
    let silence = Silence::new(spec, uuid::Uuid::new_v4().to_string(), "api")?;
    Ok(GLOBAL.add(silence))
}

#[cfg(test)]
mod tests;
