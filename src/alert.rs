//! The normalized alert schema that decoders produce and alerting components read:
//! its field names ([`field`]), and the values `status` and `severity` take.

/// The names of the normalized schema's fields (see the README's "Alert webhooks").
pub mod field {
    pub const ID: &str = "id";
    pub const TIME: &str = "time";
    pub const EVENT_TYPE: &str = "event_type";
    pub const SOURCE: &str = "source";
    pub const KIND: &str = "kind";
    pub const STATUS: &str = "status";
    pub const SEVERITY: &str = "severity";
    pub const SERVICE: &str = "service";
    pub const REGION: &str = "region";
    pub const PROJECT: &str = "project";
    pub const SUMMARY: &str = "summary";
    pub const DESCRIPTION: &str = "description";
    pub const LABELS: &str = "labels";
    /// The stable key of one alert across its firing and resolved notices (the
    /// PagerDuty sink's `dedup_key`, `dedupe`'s default key).
    pub const FINGERPRINT: &str = "fingerprint";
    pub const STARTS_AT: &str = "starts_at";
    pub const ENDS_AT: &str = "ends_at";
    pub const URL: &str = "url";
    pub const RAW: &str = "raw";
}

/// Every value `status` may take.
pub const STATUSES: &[&str] = &["firing", "resolved"];
/// Every value `severity` may take, most severe first.
pub const SEVERITIES: &[&str] = &["critical", "high", "medium", "low", "info"];

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
    pub fn as_str(self) -> &'static str {
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
pub enum Status {
    // The aliases read alert_rule snapshots written before the names were lower case.
    #[serde(alias = "Firing")]
    Firing,
    #[serde(alias = "Resolved")]
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
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
