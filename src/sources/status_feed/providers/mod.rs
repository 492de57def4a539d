//! What each provider's feed means: the preset URLs, and how entries become incidents
//! (which key groups the updates of one incident, which words mean resolved, where the
//! service, region and severity are).
//!
//! | provider | key | resolved when | severity |
//! |---|---|---|---|
//! | statuspage, oci (RSS/Atom) | entry id | latest status word Resolved, Postmortem, Completed | none (Scheduled, In progress, Verifying → info) |
//! | statuspage, oci (JSON) | incident id | `status` resolved, postmortem, completed | `impact` |
//! | aws (RSS) | guid's `<service>-<region>` + title | prefix `Service is operating normally` or `[RESOLVED]` | prefix |
//! | gcp (incidents.json) | `id` | `end` set | `status_impact`, `severity` |
//! | gcp (Atom) | incident id in the entry id | title prefix `RESOLVED:` | none |
//! | azure (RSS) | guid, else title | the item left the feed | none |
//!
//! "None" means the feed's `default_severity`. Incidents are returned sorted by key, one
//! per key (several entries of one incident are folded: the latest decides).
//!
//! One file per provider's conventions; this file holds the shared types, the dispatch
//! by provider and format, folding entries into one incident per key, and the small text
//! helpers the providers share.

mod aws;
mod azure;
mod gcp;
mod generic;
mod statuspage;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::parse::{Document, Format, Item};
use crate::alert::{Severity, Status};

/// `provider:` whose conventions a feed follows.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Provider {
    Aws,
    Gcp,
    Azure,
    Oci,
    /// Atlassian Statuspage (GitHub, Atlassian, many SaaS): `url` required.
    Statuspage,
    /// Any RSS or Atom feed: Statuspage's status words when present, else a
    /// `[RESOLVED]` / `RESOLVED:` title prefix.
    #[default]
    Generic,
}

impl Provider {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Gcp => "gcp",
            Self::Azure => "azure",
            Self::Oci => "oci",
            Self::Statuspage => "statuspage",
            Self::Generic => "generic",
        }
    }

    /// The public feed and its format, used when `url` is not given.
    pub(crate) fn preset(self) -> Option<(&'static str, Format)> {
        match self {
            Self::Aws => Some(("https://status.aws.amazon.com/rss/all.rss", Format::Rss)),
            Self::Gcp => Some((
                "https://status.cloud.google.com/incidents.json",
                Format::GcpIncidentsJson,
            )),
            Self::Azure => Some((
                "https://azure.status.microsoft/en-us/status/feed/",
                Format::Rss,
            )),
            // OCI's status page runs on Statuspage.
            Self::Oci => Some((
                "https://ocistatus.oraclecloud.com/api/v2/incidents.json",
                Format::StatuspageJson,
            )),
            Self::Statuspage | Self::Generic => None,
        }
    }

    /// Whether an incident that is no longer in the feed has ended. Azure's feed lists
    /// only current incidents (it is empty when all is well); the others are histories
    /// that drop old entries.
    pub(crate) fn feed_lists_only_open(self) -> bool {
        self == Self::Azure
    }
}

/// One incident as the feed shows it now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Incident {
    /// The same for every update of one incident (the fingerprint hashes it).
    pub(crate) key: String,
    pub(crate) status: Status,
    /// The provider's word for the stage, lower case (Statuspage's investigating,
    /// identified…, AWS's title prefix, GCP's latest update status).
    pub(crate) phase: String,
    /// `None`: the provider does not say (the feed's default applies, or, once resolved,
    /// the severity it had while firing).
    pub(crate) severity: Option<Severity>,
    pub(crate) summary: String,
    pub(crate) description: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) starts_at: Option<DateTime<Utc>>,
    /// When the provider last posted about it.
    pub(crate) updated: Option<DateTime<Utc>>,
    pub(crate) ends_at: Option<DateTime<Utc>>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) raw: serde_json::Value,
}
impl Incident {
    fn new(key: String, summary: String) -> Self {
        Self {
            key,
            status: Status::Firing,
            phase: String::new(),
            severity: None,
            summary,
            description: None,
            service: None,
            region: None,
            url: None,
            starts_at: None,
            updated: None,
            ends_at: None,
            labels: BTreeMap::new(),
            raw: serde_json::Value::Null,
        }
    }
}

/// The incidents of a parsed document, following `provider`'s conventions.
pub(crate) fn incidents(provider: Provider, document: Document) -> Vec<Incident> {
    let list = match document {
        Document::Feed { kind, items } => match provider {
            Provider::Aws => aws::aws(items),
            Provider::Gcp => gcp::gcp_atom(items),
            Provider::Azure => azure::azure(items),
            Provider::Statuspage | Provider::Oci => items
                .iter()
                .map(|i| statuspage::statuspage_item(i, kind))
                .collect(),
            Provider::Generic => items
                .iter()
                .map(|i| generic::generic_item(i, kind))
                .collect(),
        },
        Document::StatuspageJson(value) => statuspage::statuspage_json(&value),
        Document::GcpIncidents(items) => items.iter().filter_map(gcp::gcp_json).collect(),
    };
    fold(list)
}

/// One incident per key: the latest update wins; at equal times a resolution wins (it
/// ends the incident), then the later entry in the document.
fn fold(list: Vec<Incident>) -> Vec<Incident> {
    let mut by_key: BTreeMap<String, Incident> = BTreeMap::new();
    for incident in list {
        if incident.key.is_empty() {
            continue;
        }
        match by_key.get(&incident.key) {
            Some(held) if rank(held) > rank(&incident) => {}
            _ => {
                by_key.insert(incident.key.clone(), incident);
            }
        }
    }
    by_key.into_values().collect()
}

fn rank(i: &Incident) -> (Option<DateTime<Utc>>, bool) {
    (i.updated, i.status == Status::Resolved)
}

/// What an RSS or Atom item gives every provider the same way: its text, link, times
/// and raw form.
fn fill_from_item(incident: &mut Incident, item: &Item) {
    incident.description = nonempty(&super::parse::html_to_text(&item.html));
    incident.url = item.link.clone();
    incident.starts_at = item.created;
    incident.updated = item.updated;
    incident.raw = item.raw();
}

fn nonempty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// The entry's key: its id, else its link, else its title.
fn item_key(item: &Item) -> String {
    item.id
        .clone()
        .or_else(|| item.link.clone())
        .unwrap_or_else(|| item.title.trim().to_owned())
}
/// `RESOLVED: Global: text` → (`resolved`, `Global: text`): an all-capitals word
/// before a colon is the provider's stage.
fn title_prefix(title: &str) -> (Option<String>, &str) {
    let title = title.trim();
    if let Some((head, rest)) = title.split_once(':') {
        let head = head.trim();
        if !head.is_empty()
            && head.len() <= 20
            && head
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == ' ' || c == '_')
        {
            return (Some(head.to_ascii_lowercase()), rest.trim());
        }
    }
    (None, title)
}

fn strip_resolved(text: &str) -> String {
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    match upper.find("[RESOLVED]") {
        Some(at) => {
            let end = at + "[RESOLVED]".len();
            format!("{}{}", &trimmed[..at], &trimmed[end..])
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        }
        None => trimmed.to_owned(),
    }
}

fn str_field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    v.get(name)
        .and_then(|f| f.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn names(list: Option<&serde_json::Value>, field: &str) -> Option<String> {
    let names: Vec<&str> = list?
        .as_array()?
        .iter()
        .filter_map(|c| str_field(c, field))
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}
