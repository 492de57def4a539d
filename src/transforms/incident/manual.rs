//! Incidents by hand: how the API shows them, and the changes it may make (create,
//! acknowledge, resolve, severity, assignee, root cause, notes). A change by hand is
//! marked pending with its group due at once, so the component's next timer pass
//! (within a second) sends it downstream like any other: an acknowledgement or a
//! resolve reaches PagerDuty and Slack.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use vrl::value::{ObjectMap, Value};

use super::IncidentState;
use super::state::{Incident, Phase, severity_rank};
use crate::alert::{SEVERITIES, field};

fn time(ms: i64) -> Json {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or(Json::Null, |t| json!(t.to_rfc3339()))
}

fn latest_text(i: &Incident, name: &str) -> Json {
    match &i.latest {
        Value::Object(o) => match o.get(name) {
            None | Some(Value::Null) => Json::Null,
            Some(v) => json!(v.to_string_lossy()),
        },
        _ => Json::Null,
    }
}

/// The status the API shows: open, acknowledged or resolved.
pub(crate) fn status(i: &Incident) -> &'static str {
    i.phase.as_str()
}

/// An incident as the API shows it.
pub(crate) fn describe(component: &str, key: &str, i: &Incident) -> Json {
    let labels = match &i.latest {
        Value::Object(o) => o
            .get(field::LABELS)
            .and_then(|l| serde_json::to_value(l).ok())
            .unwrap_or(Json::Null),
        _ => Json::Null,
    };
    json!({
        "id": i.id,
        "key": key,
        "component": component,
        "title": latest_text(i, field::SUMMARY),
        "description": latest_text(i, field::DESCRIPTION),
        "service": latest_text(i, field::SERVICE),
        "url": latest_text(i, field::URL),
        "labels": labels,
        "severity": i.severity,
        "status": status(i),
        "count": i.count,
        "flaps": i.flaps,
        "first_seen": time(i.first_seen),
        "last_seen": time(i.last_seen),
        "resolved_at": i.resolved_at.map_or(Json::Null, time),
        "vendors": i.vendors,
        "assigned_to": i.assigned_to,
        "root_cause": i.root_cause,
    })
}

/// A timeline entry as the API shows it.
pub(crate) fn entry(e: &super::state::Entry) -> Json {
    json!({ "time": time(e.at), "what": e.what, "text": e.text })
}

/// `POST /incidents`: an incident opened by hand.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewIncident {
    pub(crate) title: String,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) severity: Option<String>,
    #[serde(default)]
    pub(crate) service: Option<String>,
    /// Its correlation key: alerts with this key join it (default `manual/<id>`).
    #[serde(default)]
    pub(crate) key: Option<String>,
    #[serde(default)]
    pub(crate) assigned_to: Option<String>,
    /// Which incident component holds it, when there are several.
    #[serde(default)]
    pub(crate) component: Option<String>,
}

/// `PUT /incidents/{id}`: what a person changes.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncidentChange {
    /// acknowledged (or investigating), resolved (or closed).
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) severity: Option<String>,
    #[serde(default)]
    pub(crate) assigned_to: Option<String>,
    #[serde(default)]
    pub(crate) root_cause: Option<String>,
    #[serde(default)]
    pub(crate) note: Option<String>,
}

impl IncidentChange {
    /// Whether it changes nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.severity.is_none()
            && self.assigned_to.is_none()
            && self.root_cause.is_none()
            && self.note.is_none()
    }
}

/// Whether the incident's latest alert names `service`.
pub(crate) fn has_service(i: &Incident, service: &str) -> bool {
    match &i.latest {
        Value::Object(o) => o
            .get(field::SERVICE)
            .and_then(Value::to_str_lossy)
            .is_some_and(|s| s == service),
        _ => false,
    }
}

const MAX_TEXT: usize = 4096;

fn severity_of(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    if SEVERITIES.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(format!(
            "`severity` must be one of {}",
            SEVERITIES.join(", ")
        ))
    }
}

fn bounded(name: &str, s: &Option<String>) -> Result<(), String> {
    match s {
        Some(t) if t.len() > MAX_TEXT => Err(format!("`{name}` is longer than {MAX_TEXT} bytes")),
        _ => Ok(()),
    }
}

/// Marks `key`'s incident as having a change to send at the next timer pass.
fn due_now(state: &mut IncidentState, key: &str, now: i64) {
    let Some(i) = state.incidents.get(key) else {
        return;
    };
    if i.pending.is_none() {
        return;
    }
    state.pending.insert(key.to_owned());
    let clock = state.groups.entry(i.group.clone()).or_default();
    clock.next_flush = Some(clock.next_flush.map_or(now, |at| at.min(now)));
}

impl IncidentState {
    /// The key of the incident with this id.
    pub(crate) fn key_of(&self, id: &str) -> Option<String> {
        self.incidents
            .iter()
            .find(|(_, i)| i.id == id)
            .map(|(k, _)| k.clone())
    }

    /// Opens an incident by hand; its `opened` goes out at the next timer pass.
    pub(crate) fn create(&mut self, spec: &NewIncident, now: i64) -> Result<String, String> {
        let (key, incident) = new_incident(spec, now)?;
        if self.incidents.get(&key).is_some_and(Incident::is_open) {
            return Err(format!("an open incident already has the key `{key}`"));
        }
        if self
            .incidents
            .get(&key)
            .is_some_and(|i| i.pending.is_some() || i.unconfirmed.is_some())
        {
            return Err(format!(
                "the incident of key `{key}` has a notification still going out; retry in a minute"
            ));
        }
        if !self.incidents.contains_key(&key)
            && self.incidents.len() >= self.max_incidents
            && !self.evict_one()
        {
            return Err(format!(
                "the component holds max_incidents ({}) open incidents",
                self.max_incidents
            ));
        }
        let id = incident.id.clone();
        self.incidents.insert(key.clone(), incident);
        self.edited = true;
        self.changed.insert(key.clone());
        due_now(self, &key, now);
        Ok(id)
    }

    /// Applies a change by hand to the incident with this id.
    pub(crate) fn change(
        &mut self,
        id: &str,
        c: &IncidentChange,
        now: i64,
    ) -> Result<(String, Incident), ChangeError> {
        check_change(c)?;
        let key = self.key_of(id).ok_or(ChangeError::NotFound)?;
        let Some(i) = self.incidents.get_mut(&key) else {
            return Err(ChangeError::NotFound);
        };
        let was_open = i.is_open();
        apply(i, c, now)?;
        if was_open && !i.is_open() {
            self.nothing_to_evict = false;
        }
        let snapshot = i.clone();
        self.edited = true;
        self.changed.insert(key.clone());
        due_now(self, &key, now);
        Ok((key, snapshot))
    }
}

/// An incident opened by hand, and its key.
pub(crate) fn new_incident(spec: &NewIncident, now: i64) -> Result<(String, Incident), String> {
    if spec.title.trim().is_empty() {
        return Err("`title` must not be empty".into());
    }
    for (name, v) in [
        ("title", &Some(spec.title.clone())),
        ("description", &spec.description),
        ("service", &spec.service),
        ("key", &spec.key),
        ("assigned_to", &spec.assigned_to),
    ] {
        bounded(name, v)?;
    }
    // Keys of alerts are bounded the same way (`MAX_KEY`): an index holds them whole.
    if spec.key.as_ref().is_some_and(|k| k.len() > super::MAX_KEY) {
        return Err(format!("`key` is longer than {} bytes", super::MAX_KEY));
    }
    let severity = severity_of(spec.severity.as_deref().unwrap_or("medium"))?;
    let id = uuid::Uuid::new_v4().to_string();
    let key = spec.key.clone().unwrap_or_else(|| format!("manual/{id}"));
    let mut latest = ObjectMap::new();
    latest.insert(field::EVENT_TYPE.into(), Value::from("alert"));
    latest.insert(field::SOURCE.into(), Value::from("api"));
    latest.insert(field::STATUS.into(), Value::from("firing"));
    latest.insert(field::SEVERITY.into(), Value::from(severity.as_str()));
    latest.insert(field::SUMMARY.into(), Value::from(spec.title.as_str()));
    for (name, v) in [
        (field::DESCRIPTION, &spec.description),
        (field::SERVICE, &spec.service),
    ] {
        if let Some(v) = v {
            latest.insert(name.into(), Value::from(v.as_str()));
        }
    }
    // Its own notification group, as an incident without `group_by` has.
    let group = format!("manual\u{1f}{id}");
    let mut incident = Incident::open(
        id,
        group,
        now,
        severity,
        Some("api".into()),
        Value::Object(latest),
    );
    incident.assigned_to = spec.assigned_to.clone();
    Ok((key, incident))
}

/// Refuses a change by hand whose texts are too long or whose severity is unknown.
pub(crate) fn check_change(c: &IncidentChange) -> Result<(), ChangeError> {
    for (name, v) in [
        ("assigned_to", &c.assigned_to),
        ("root_cause", &c.root_cause),
        ("note", &c.note),
    ] {
        bounded(name, v).map_err(ChangeError::Invalid)?;
    }
    if let Some(s) = &c.severity {
        severity_of(s).map_err(ChangeError::Invalid)?;
    }
    Ok(())
}

/// Applies a change by hand (checked by [`check_change`]) to `i`.
pub(crate) fn apply(i: &mut Incident, c: &IncidentChange, now: i64) -> Result<(), ChangeError> {
    let severity = c
        .severity
        .as_deref()
        .map(severity_of)
        .transpose()
        .map_err(ChangeError::Invalid)?;
    match c.status.as_deref().map(|s| (s, Phase::from_word(s))) {
        None => {}
        Some((_, Some(Phase::Acknowledged))) => {
            if !i.is_open() {
                return Err(ChangeError::Invalid(
                    "a resolved incident cannot be acknowledged".into(),
                ));
            }
            i.acknowledge(now);
        }
        Some((_, Some(Phase::Resolved))) if i.is_open() => i.close(now, Some("manual")),
        Some((_, Some(Phase::Resolved))) => {}
        Some((other, _)) => {
            let other = crate::text::prefix_chars(other, 100);
            return Err(ChangeError::Invalid(format!(
                "`status` `{other}` cannot be set: use acknowledged, investigating, resolved or closed (an incident opens when its alerts fire)"
            )));
        }
    }
    if let Some(s) = severity
        && severity_rank(&s) != severity_rank(&i.severity)
    {
        i.set_severity(now, &s);
    }
    if let Some(a) = &c.assigned_to {
        i.assigned_to = Some(a.clone());
        i.record(now, "assigned", Some(a.clone()));
    }
    if let Some(r) = &c.root_cause {
        i.root_cause = Some(r.clone());
        i.record(now, "root_cause", Some(r.clone()));
    }
    if let Some(n) = &c.note {
        i.record(now, "note", Some(n.clone()));
    }
    Ok(())
}

/// Why a change by hand was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ChangeError {
    NotFound,
    Invalid(String),
}
