//! Notification groups: an alert joins the group its incident's `group_by` values
//! name, or without `group_by` a group of its own. An alert carrying
//! `%alertmanager_route` (an upstream `alertmanager_route`) is grouped by its route's
//! receiver and `group_by` labels instead, and timed by the route's `group_wait`,
//! `group_interval` and `repeat_interval` over the incident's own, as Alertmanager
//! times each route.

use vrl::value::Value;

use super::groups::Policy;
use super::{IncidentTransform, identity};
use crate::event::{Event, as_f64};

/// The timing an alert's route gives it, in ms.
pub(crate) struct RouteTiming {
    /// Its notification group: the receiver and the route's `group_by` label values
    /// (with `...`, the incident alone).
    pub(crate) group: String,
    pub(crate) policy: Policy,
    pub(crate) repeat_interval: i64,
}

/// The timing of `event`'s route, when an `alertmanager_route` set one; `latest` is
/// the alert (its `labels`), `key` its incident.
pub(crate) fn route(event: &Event, latest: &Value, key: &str) -> Option<RouteTiming> {
    let Value::Object(meta) = event.meta.vrl.get() else {
        return None;
    };
    let Some(Value::Object(route)) = meta.get("alertmanager_route") else {
        return None;
    };
    let ms = |name: &str| -> Option<i64> {
        let secs = as_f64(route.get(name)).filter(|s| s.is_finite() && *s >= 0.0)?;
        Some((secs * 1000.0).round() as i64)
    };
    let receiver = route.get("receiver")?.to_string_lossy();
    let mut group = format!("route\u{1f}{receiver}");
    match route.get("group_by") {
        Some(Value::Array(names)) => {
            let labels = match latest {
                Value::Object(o) => match o.get("labels") {
                    Some(Value::Object(l)) => Some(l),
                    _ => None,
                },
                _ => None,
            };
            for name in names {
                let name = name.to_string_lossy();
                group.push('\u{1f}');
                if let Some(v) = labels.and_then(|l| l.get(name.as_ref())) {
                    group.push_str(&v.to_string_lossy());
                }
            }
        }
        // `group_by: ['...']`: every alert is its own group.
        _ => {
            group.push_str("\u{1f}key\u{1f}");
            group.push_str(key);
        }
    }
    Some(RouteTiming {
        group,
        policy: Policy {
            group_wait: ms("group_wait_seconds")?,
            group_interval: ms("group_interval_seconds")?,
        },
        repeat_interval: ms("repeat_interval_seconds")?,
    })
}

impl IncidentTransform {
    /// The notification group of an alert of incident `key`: its `group_by` values, or
    /// without `group_by` the incident itself.
    pub(super) fn group_of(&self, value: &Value, key: &str) -> String {
        if self.group_by.is_empty() {
            return identity(format!("key\u{1f}{key}"));
        }
        let mut g = String::new();
        for (i, p) in self.group_by.iter().enumerate() {
            if i > 0 {
                g.push('\u{1f}');
            }
            if let Some(v) = value.get(p).filter(|v| !matches!(v, Value::Null)) {
                g.push_str(&v.to_string_lossy());
            }
        }
        identity(g)
    }
}
