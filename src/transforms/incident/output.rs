//! The notification event of one incident change: the latest alert's normalized
//! fields, with the incident's own laid over them.

use vrl::value::{ObjectMap, Value};

use super::state::{Action, Incident};
use crate::alert::field;

use crate::event::timestamp_ms as time;

fn int(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// What the notification of `action` on `incident` (correlation key `key`) carries.
pub(crate) fn notification(
    key: &str,
    incident: &Incident,
    action: Action,
    reason: Option<&str>,
) -> Value {
    let mut out = match &incident.latest {
        Value::Object(o) => o.clone(),
        _ => ObjectMap::new(),
    };
    // From the change, not the phase: an opening acknowledged before it went out is
    // still a trigger, and an escalation of an acknowledged incident still carries
    // its payload (PagerDuty keeps the acknowledgement on a trigger).
    let status = match action {
        Action::Resolved => "resolved",
        Action::Acknowledged => "acknowledged",
        Action::Opened | Action::Reopened | Action::Updated => "firing",
    };
    let mut set = |name: &str, v: Value| {
        out.insert(name.into(), v);
    };
    set("incident_id", Value::from(incident.id.as_str()));
    set("incident_key", Value::from(key));
    set("action", Value::from(action.as_str()));
    set("reason", reason.map_or(Value::Null, Value::from));
    set(field::STATUS, Value::from(status));
    set(field::SEVERITY, Value::from(incident.severity.as_str()));
    set("count", int(incident.count));
    set("flaps", int(incident.flaps));
    set("first_seen", time(incident.first_seen));
    set("last_seen", time(incident.last_seen));
    set(
        "resolved_at",
        incident.resolved_at.map_or(Value::Null, time),
    );
    set(
        "vendors",
        Value::Array(
            incident
                .vendors
                .iter()
                .map(|v| Value::from(v.as_str()))
                .collect(),
        ),
    );
    for (name, v) in [
        ("assigned_to", &incident.assigned_to),
        ("root_cause", &incident.root_cause),
    ] {
        if let Some(v) = v {
            set(name, Value::from(v.as_str()));
        }
    }
    if let Some(at) = incident.resolved_at {
        set(field::ENDS_AT, time(at));
    }
    Value::Object(out)
}
