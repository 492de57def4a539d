//! What happens to an incident: the phase it is in, and the actions announced.

use serde::{Deserialize, Serialize};

/// What a notification says happened to an incident (`action` in the output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Opened,
    Updated,
    Acknowledged,
    Resolved,
    Reopened,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Updated => "updated",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
            Self::Reopened => "reopened",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    Open,
    Acknowledged,
    Resolved,
}

impl Phase {
    /// The API's word: open, acknowledged or resolved.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }

    /// The monitoring system's word (the store's `status`, which adds `closed`).
    pub(crate) fn monitoring_word(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "investigating",
            Self::Resolved => "resolved",
        }
    }

    /// A status in either vocabulary, any case; `closed` reads as resolved.
    pub(crate) fn from_word(word: &str) -> Option<Self> {
        match word.to_ascii_lowercase().as_str() {
            "open" => Some(Self::Open),
            "acknowledged" | "investigating" => Some(Self::Acknowledged),
            "resolved" | "closed" => Some(Self::Resolved),
            _ => None,
        }
    }
}
