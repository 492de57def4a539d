//! The normalized alert schema that decoders produce and alerting components read.

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
