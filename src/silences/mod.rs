//! Silences, and inhibition ([`inhibit`]): the two ways an alert is muted.
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
//!
//! The API changes silences with Alertmanager's rules ([`SilenceStore::set`],
//! [`SilenceStore::expire`]): a silence is expired, never erased, and stays listed until
//! [`RETENTION`] after its end; one that cannot be updated in place (other matchers, a
//! moved start) is expired and replaced under a new id.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::matchers::{self, Matcher};

mod change;
pub(crate) mod inhibit;
mod store;
pub use change::{ExpireError, Expired, MAX_API_SILENCES, MAX_MATCHERS, SetError, check_times};
pub use store::SilenceStore;

/// How long an ended silence stays listed before it is forgotten (Alertmanager's
/// default `--data.retention`).
pub const RETENTION: chrono::TimeDelta = chrono::TimeDelta::hours(120);
/// The origin of silences made through the API.
pub const API_ORIGIN: &str = "api";

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
    /// When it was made or last changed.
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) spec: SilenceSpec,
}

/// Where a silence stands at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Active,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Expired => "expired",
        }
    }
}

pub(super) fn time(text: &Option<String>, option: &str) -> Result<Option<DateTime<Utc>>, String> {
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
            updated_at: Utc::now(),
        })
    }

    pub fn state(&self, now: DateTime<Utc>) -> State {
        if self.ends_at.is_some_and(|e| e <= now) {
            State::Expired
        } else if self.starts_at.is_some_and(|s| now < s) {
            State::Pending
        } else {
            State::Active
        }
    }

    pub(crate) fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at.is_none_or(|s| s <= now) && self.ends_at.is_none_or(|e| now < e)
    }

    pub(crate) fn mutes(&self, labels: &BTreeMap<String, String>, now: DateTime<Utc>) -> bool {
        self.is_active(now) && self.matchers.iter().all(|m| m.matches_labels(labels))
    }

    /// The API's view: the spec plus origin, state and when it last changed.
    pub fn describe(&self, now: DateTime<Utc>) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.spec).unwrap_or_default();
        v["origin"] = self.origin.clone().into();
        v["status"] = self.state(now).as_str().into();
        v["updated_at"] = rfc3339(self.updated_at).into();
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

/// A time as silences are written: UTC with milliseconds, as Alertmanager writes them.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;
