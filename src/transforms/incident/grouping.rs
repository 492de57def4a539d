//! Notification groups: an alert joins the group its incident's `group_by` values
//! name, or without `group_by` a group of its own.

use vrl::value::Value;

use super::{IncidentTransform, identity};

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
