//! What the API may do to silences, with Alertmanager's rules: a new silence that
//! starts in the past starts now, one that ends in the past is refused, and every
//! matcher may not match the empty string (that would silence nearly everything). An
//! update keeps the id only while the matchers are the same and an active silence keeps
//! its start (a pending one may move it, not into the past); otherwise the old silence
//! is expired and a new one made. Expiring ends a silence now and keeps it listed.
//! Silences from the pipeline file are changed there, not here.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{API_ORIGIN, RETENTION, Silence, SilenceSpec, SilenceStore, State, rfc3339, time};
use crate::matchers::{self, Matcher, Op};

/// At most this many silences from the API (expired ones included, until forgotten).
pub const MAX_API_SILENCES: usize = 10_000;
/// At most this many matchers in one silence.
pub const MAX_MATCHERS: usize = 64;
const MAX_COMMENT_BYTES: usize = 4096;
const MAX_CREATED_BY_BYTES: usize = 256;

/// Why a silence was not set. The texts are Alertmanager's where it has one.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SetError {
    #[error("silence invalid: {0}")]
    Invalid(String),
    #[error("start time must be before end time")]
    StartAfterEnd,
    #[error("end time can't be in the past")]
    EndInPast,
    #[error("silence not found")]
    NotFound,
    #[error("silence `{id}` comes from the pipeline file ({origin}): change it there")]
    FromConfig { id: String, origin: String },
    #[error("{MAX_API_SILENCES} silences from the API are stored already: expire some first")]
    Full,
}

/// What expiring did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The silence ended now.
    Now,
    /// It had ended already; nothing changed.
    Already,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExpireError {
    #[error("silence not found")]
    NotFound,
    #[error("silence `{id}` comes from the pipeline file ({origin}): change it there")]
    FromConfig { id: String, origin: String },
}

impl SilenceStore {
    /// Makes a silence from the API, or updates the one `spec.id` names; answers the id
    /// it has now (a new one when it could not be updated in place).
    pub(crate) fn set(
        &self,
        mut spec: SilenceSpec,
        now: DateTime<Utc>,
    ) -> Result<String, SetError> {
        let starts_at = time(&spec.starts_at, "starts_at").map_err(SetError::Invalid)?;
        let ends_at = time(&spec.ends_at, "ends_at").map_err(SetError::Invalid)?;
        check_times(starts_at, ends_at, now)?;
        let matchers = checked_matchers(&spec)?;
        self.try_update(now, |list| {
            if let Some(id) = spec.id.take() {
                let i = list
                    .iter()
                    .position(|s| s.id == id)
                    .ok_or(SetError::NotFound)?;
                let old = Arc::clone(&list[i]);
                if old.origin != API_ORIGIN {
                    return Err(SetError::FromConfig {
                        id,
                        origin: old.origin.clone(),
                    });
                }
                if can_update(&old, &matchers, starts_at, now) {
                    spec.id = Some(id.clone());
                    list[i] = Arc::new(made(spec, id.clone(), now)?);
                    return Ok(id);
                }
                list[i] = Arc::new(ended(&old, now));
            }
            if list.iter().filter(|s| s.origin == API_ORIGIN).count() >= MAX_API_SILENCES {
                return Err(SetError::Full);
            }
            if starts_at.is_some_and(|s| s < now) {
                spec.starts_at = Some(rfc3339(now));
            }
            let id = uuid::Uuid::new_v4().to_string();
            list.push(Arc::new(made(spec, id.clone(), now)?));
            Ok(id)
        })
    }

    /// Ends a silence from the API now (a pending one never starts); it stays listed.
    pub fn expire(&self, id: &str, now: DateTime<Utc>) -> Result<Expired, ExpireError> {
        self.try_update(now, |list| {
            let i = list
                .iter()
                .position(|s| s.id == id)
                .ok_or(ExpireError::NotFound)?;
            let old = Arc::clone(&list[i]);
            if old.origin != API_ORIGIN {
                return Err(ExpireError::FromConfig {
                    id: id.to_owned(),
                    origin: old.origin.clone(),
                });
            }
            if old.state(now) == State::Expired {
                return Ok(Expired::Already);
            }
            list[i] = Arc::new(ended(&old, now));
            Ok(Expired::Now)
        })
    }
}

/// The checks of a silence's times, which come before its matchers' (so errors are
/// the ones Alertmanager gives first).
pub fn check_times(
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), SetError> {
    if let (Some(s), Some(e)) = (starts_at, ends_at)
        && e <= s
    {
        return Err(SetError::StartAfterEnd);
    }
    if ends_at.is_some_and(|e| e < now) {
        return Err(SetError::EndInPast);
    }
    Ok(())
}

/// Forgets silences from the API that ended more than [`RETENTION`] ago.
pub(super) fn forget_ended(list: &mut Vec<Arc<Silence>>, now: DateTime<Utc>) {
    list.retain(|s| {
        s.origin != API_ORIGIN
            || s.ends_at
                .is_none_or(|e| now.signed_duration_since(e) <= RETENTION)
    });
}

fn checked_matchers(spec: &SilenceSpec) -> Result<Vec<Matcher>, SetError> {
    let invalid = |e: String| SetError::Invalid(e);
    if spec.matchers.is_empty() {
        return Err(invalid("at least one matcher is required".into()));
    }
    if spec.matchers.len() > MAX_MATCHERS {
        return Err(invalid(format!("more than {MAX_MATCHERS} matchers")));
    }
    if spec.comment.len() > MAX_COMMENT_BYTES {
        return Err(invalid(format!(
            "the comment is longer than {MAX_COMMENT_BYTES} bytes"
        )));
    }
    if spec.created_by.len() > MAX_CREATED_BY_BYTES {
        return Err(invalid(format!(
            "createdBy is longer than {MAX_CREATED_BY_BYTES} bytes"
        )));
    }
    let matchers = matchers::parse_all_lenient(&spec.matchers, "matchers").map_err(invalid)?;
    if matchers.iter().all(matches_empty) {
        return Err(invalid(
            "at least one matcher must not match the empty string".into(),
        ));
    }
    Ok(matchers)
}

/// Whether a positive matcher takes the empty string (a missing label); negative ones
/// never count, as in Alertmanager.
fn matches_empty(m: &Matcher) -> bool {
    matches!(m.op, Op::Equal | Op::Regex) && m.matches(Some(""))
}

fn can_update(
    old: &Silence,
    matchers: &[Matcher],
    starts_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    if old.matchers != matchers {
        return false;
    }
    let second = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp());
    match old.state(now) {
        State::Expired => false,
        State::Active => second(starts_at) == second(old.starts_at),
        State::Pending => starts_at.is_none_or(|s| s >= now),
    }
}

fn made(spec: SilenceSpec, id: String, now: DateTime<Utc>) -> Result<Silence, SetError> {
    let mut silence = Silence::new(spec, id, API_ORIGIN).map_err(SetError::Invalid)?;
    silence.updated_at = now;
    Ok(silence)
}

/// `old`, ended at `now`: a pending silence also starts then, so it never was active.
fn ended(old: &Silence, now: DateTime<Utc>) -> Silence {
    let mut s = old.clone();
    if s.state(now) == State::Pending {
        s.starts_at = Some(now);
        s.spec.starts_at = Some(rfc3339(now));
    }
    s.ends_at = Some(now);
    s.spec.ends_at = Some(rfc3339(now));
    s.updated_at = now;
    s
}
