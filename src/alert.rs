//! The normalized alert schema that decoders produce and alerting components read:
//! its field names ([`field`]), and the values `status` and `severity` take.

/// The names of the normalized schema's fields (see the README's "Alert webhooks").
pub(crate) mod field {
    pub(crate) const ID: &str = "id";
    pub(crate) const TIME: &str = "time";
    pub(crate) const EVENT_TYPE: &str = "event_type";
    pub(crate) const SOURCE: &str = "source";
    pub(crate) const KIND: &str = "kind";
    pub(crate) const STATUS: &str = "status";
    pub(crate) const SEVERITY: &str = "severity";
    pub(crate) const SERVICE: &str = "service";
    pub(crate) const REGION: &str = "region";
    pub(crate) const PROJECT: &str = "project";
    pub(crate) const SUMMARY: &str = "summary";
    pub(crate) const DESCRIPTION: &str = "description";
    pub(crate) const LABELS: &str = "labels";
    /// The stable key of one alert across its firing and resolved notices (the
    /// PagerDuty sink's `dedup_key`, `dedupe`'s default key).
    pub(crate) const FINGERPRINT: &str = "fingerprint";
    pub(crate) const STARTS_AT: &str = "starts_at";
    pub(crate) const ENDS_AT: &str = "ends_at";
    pub(crate) const URL: &str = "url";
    pub(crate) const RAW: &str = "raw";
}

/// Every value `status` may take.
pub(crate) const STATUSES: &[&str] = &["firing", "resolved"];
/// Every value `severity` may take, most severe first.
pub(crate) const SEVERITIES: &[&str] = &["critical", "high", "medium", "low", "info"];

use serde::{Deserialize, Serialize};

/// The normalized severities, for `default_severity`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    High,
    #[default]
    Medium,
    Low,
    Info,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
            Self::Info => "info",
        }
    }
}

/// Whether an alert is firing or resolved (`status` in the normalized schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    // The aliases read alert_rule snapshots written before the names were lower case.
    #[serde(alias = "Firing")]
    Firing,
    #[serde(alias = "Resolved")]
    Resolved,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// What a notification asks of an on-call tool's alert (PagerDuty's event action,
/// Opsgenie's create, close and acknowledge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Trigger,
    Resolve,
    Acknowledge,
}

impl Action {
    /// The action of an event's `status` (no status means firing).
    pub(crate) fn of_status(status: Option<&str>) -> Result<Self, String> {
        match status.map(str::to_ascii_lowercase).as_deref() {
            None | Some("firing" | "trigger" | "triggered" | "alerting") => Ok(Self::Trigger),
            Some("resolved" | "resolve" | "ok") => Ok(Self::Resolve),
            Some("acknowledged" | "acknowledge") => Ok(Self::Acknowledge),
            Some(other) => Err(format!(
                "status `{other}` is not firing, resolved or acknowledged"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_written_lower_case_and_read_in_either_case() {
        assert_eq!(
            serde_json::to_string(&Status::Firing).expect("json"),
            "\"firing\""
        );
        for (text, status) in [
            ("\"resolved\"", Status::Resolved),
            ("\"Resolved\"", Status::Resolved),
            ("\"Firing\"", Status::Firing),
        ] {
            assert_eq!(serde_json::from_str::<Status>(text).expect(text), status);
        }
        assert_eq!(Status::Resolved.as_str(), "resolved");
    }
}
