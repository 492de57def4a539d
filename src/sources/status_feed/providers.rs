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

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::parse::{Document, FeedKind, Format, Item, html_to_text, statuspage_updates, timestamp};
use crate::alert::Severity;

/// `provider:` whose conventions a feed follows.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
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
    pub fn as_str(self) -> &'static str {
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
    pub fn preset(self) -> Option<(&'static str, Format)> {
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
    pub fn feed_lists_only_open(self) -> bool {
        self == Self::Azure
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Firing,
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

/// One incident as the feed shows it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// The same for every update of one incident (the fingerprint hashes it).
    pub key: String,
    pub status: Status,
    /// The provider's word for the stage, lower case (Statuspage's investigating,
    /// identified…, AWS's title prefix, GCP's latest update status).
    pub phase: String,
    /// `None`: the provider does not say (the feed's default applies, or, once resolved,
    /// the severity it had while firing).
    pub severity: Option<Severity>,
    pub summary: String,
    pub description: Option<String>,
    pub service: Option<String>,
    pub region: Option<String>,
    pub url: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    /// When the provider last posted about it.
    pub updated: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub labels: BTreeMap<String, String>,
    pub raw: serde_json::Value,
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
pub fn incidents(provider: Provider, document: Document) -> Vec<Incident> {
    let list = match document {
        Document::Feed { kind, items } => match provider {
            Provider::Aws => aws(items),
            Provider::Gcp => gcp_atom(items),
            Provider::Azure => azure(items),
            Provider::Statuspage | Provider::Oci => {
                items.iter().map(|i| statuspage_item(i, kind)).collect()
            }
            Provider::Generic => items.iter().map(|i| generic_item(i, kind)).collect(),
        },
        Document::StatuspageJson(value) => statuspage_json(&value),
        Document::GcpIncidents(items) => items.iter().filter_map(gcp_json).collect(),
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

fn is_maintenance(word: &str) -> bool {
    matches!(
        word,
        "scheduled" | "in progress" | "verifying" | "completed"
    )
}

fn statuspage_resolved(word: &str) -> bool {
    matches!(word, "resolved" | "postmortem" | "completed")
}

/// A Statuspage RSS or Atom entry: its latest status word (an `Update` post keeps the
/// stage before it) decides.
fn statuspage_item(item: &Item, kind: FeedKind) -> Incident {
    let updates = statuspage_updates(&item.html);
    let phase = updates
        .iter()
        .map(|u| u.word.to_lowercase())
        .find(|w| w != "update")
        .unwrap_or_else(|| "update".to_owned());
    let mut incident = Incident::new(item_key(item), item.title.clone());
    if statuspage_resolved(&phase) {
        incident.status = Status::Resolved;
        incident.ends_at = item.updated;
    }
    if is_maintenance(&phase) {
        incident.severity = Some(Severity::Info);
    }
    incident.phase = phase;
    incident.description = updates.first().and_then(|u| nonempty(&u.text));
    incident.url = item.link.clone();
    incident.starts_at = match kind {
        FeedKind::Atom | FeedKind::JsonFeed => item.created,
        FeedKind::Rss => None,
    };
    incident.updated = item.updated;
    incident.raw = item.raw();
    incident
}

/// Any feed: Statuspage's words when the entry has them, else a title prefix.
fn generic_item(item: &Item, kind: FeedKind) -> Incident {
    if !statuspage_updates(&item.html).is_empty() {
        return statuspage_item(item, kind);
    }
    let (prefix, rest) = title_prefix(&item.title);
    let resolved_marker = item.title.to_ascii_uppercase().contains("[RESOLVED]");
    let summary = strip_resolved(rest);
    let mut incident = Incident::new(item_key(item), summary);
    let resolved = resolved_marker || prefix.as_deref() == Some("resolved");
    incident.status = if resolved {
        Status::Resolved
    } else {
        Status::Firing
    };
    incident.phase = if resolved {
        "resolved".into()
    } else {
        prefix.unwrap_or_else(|| "open".into())
    };
    if resolved {
        incident.ends_at = item.updated;
    }
    incident.description = nonempty(&html_to_text(&item.html));
    incident.url = item.link.clone();
    incident.starts_at = item.created;
    incident.updated = item.updated;
    incident.raw = item.raw();
    incident
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

/// AWS Health Dashboard's levels, as its RSS titles prefix them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AwsLevel {
    Normal,
    Informational,
    Degradation,
    Disruption,
}

impl AwsLevel {
    fn parse(title: &str) -> (Option<Self>, &str) {
        let Some((head, rest)) = title.split_once(':') else {
            return (None, title.trim());
        };
        let level = match head.trim().to_ascii_lowercase().as_str() {
            "service is operating normally" => Self::Normal,
            "informational message" => Self::Informational,
            "service degradation" => Self::Degradation,
            "service disruption" => Self::Disruption,
            _ => return (None, title.trim()),
        };
        (Some(level), rest.trim())
    }

    fn severity(self) -> Option<Severity> {
        match self {
            Self::Normal => None,
            Self::Informational => Some(Severity::Medium),
            Self::Degradation => Some(Severity::High),
            Self::Disruption => Some(Severity::Critical),
        }
    }
}

/// `http://status.aws.amazon.com/#ec2-ap-northeast-1_1566553182` → `ec2-ap-northeast-1`.
fn aws_code(guid: &str) -> Option<&str> {
    let fragment = guid.rsplit_once('#')?.1;
    let code = match fragment.rsplit_once('_') {
        Some((code, epoch)) if epoch.chars().all(|c| c.is_ascii_digit()) => code,
        _ => fragment,
    };
    (!code.is_empty()).then_some(code)
}

/// `us-east-1`, `ap-northeast-1`, `us-gov-west-1`, `cn-north-1`.
fn is_aws_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let (first, last) = match (parts.first(), parts.last()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => return false,
    };
    let middle_ok = match parts.len() {
        3 => parts[1].chars().all(|c| c.is_ascii_lowercase()),
        4 => {
            matches!(parts[1], "gov" | "iso" | "isob" | "isoe" | "isof")
                && parts[2].chars().all(|c| c.is_ascii_lowercase())
        }
        _ => false,
    };
    first.len() == 2
        && first.chars().all(|c| c.is_ascii_lowercase())
        && middle_ok
        && !last.is_empty()
        && last.chars().all(|c| c.is_ascii_digit())
}

/// `ec2-ap-northeast-1` → (`ec2`, `ap-northeast-1`); `cloudfront` → (`cloudfront`, none).
pub fn aws_service_region(code: &str) -> (Option<String>, Option<String>) {
    let parts: Vec<&str> = code.split('-').collect();
    for i in 1..parts.len() {
        let region = parts[i..].join("-");
        if is_aws_region(&region) {
            return (Some(parts[..i].join("-")), Some(region));
        }
    }
    (nonempty(code), None)
}

/// AWS posts each update as its own item (a new guid each time): items of one service
/// and region with the same title (prefix and `[RESOLVED]` aside) are one incident, and
/// the latest decides.
fn aws(items: Vec<Item>) -> Vec<Incident> {
    struct Post<'a> {
        item: &'a Item,
        order: usize,
        level: Option<AwsLevel>,
        resolved: bool,
        text: String,
    }
    let mut groups: BTreeMap<String, Vec<Post<'_>>> = BTreeMap::new();
    for (order, item) in items.iter().enumerate() {
        let (level, rest) = AwsLevel::parse(&item.title);
        let resolved = level == Some(AwsLevel::Normal)
            || item.title.to_ascii_uppercase().contains("[RESOLVED]");
        let text = strip_resolved(rest);
        let code = item.id.as_deref().and_then(aws_code).unwrap_or("");
        groups
            .entry(format!("{code}:{text}"))
            .or_default()
            .push(Post {
                item,
                order,
                level,
                resolved,
                text,
            });
    }
    groups
        .into_iter()
        .filter_map(|(key, mut posts)| {
            // Oldest first: by time, and among equal times the later in the feed (feeds
            // list the newest first).
            posts.sort_by(|a, b| {
                a.item
                    .updated
                    .cmp(&b.item.updated)
                    .then(b.order.cmp(&a.order))
            });
            let latest = posts.last()?;
            let code = latest.item.id.as_deref().and_then(aws_code).unwrap_or("");
            let (service, region) = aws_service_region(code);
            let mut incident = Incident::new(key, latest.text.clone());
            incident.status = if latest.resolved {
                Status::Resolved
            } else {
                Status::Firing
            };
            // A resolution carries no level: the incident keeps the last one it had.
            incident.severity = posts
                .iter()
                .rev()
                .find_map(|p| p.level.and_then(AwsLevel::severity));
            incident.phase = match latest.level {
                Some(AwsLevel::Normal) => "service is operating normally".into(),
                Some(AwsLevel::Informational) => "informational message".into(),
                Some(AwsLevel::Degradation) => "service degradation".into(),
                Some(AwsLevel::Disruption) => "service disruption".into(),
                None if latest.resolved => "resolved".into(),
                None => "open".into(),
            };
            incident.service = service;
            incident.region = region;
            incident.url = latest.item.link.clone();
            incident.description = nonempty(&html_to_text(&latest.item.html));
            incident.starts_at = posts.first().and_then(|p| p.item.updated);
            incident.updated = latest.item.updated;
            if latest.resolved {
                incident.ends_at = latest.item.updated;
            }
            incident
                .labels
                .insert("updates".into(), posts.len().to_string());
            incident.raw = latest.item.raw();
            Some(incident)
        })
        .collect()
}

/// `Affected products: Cloud Monitoring, Operations` in a GCP entry's HTML.
fn gcp_affected(html: &str, what: &str) -> Option<String> {
    let text = html_to_text(html);
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(what).map(str::trim))?;
    nonempty(line)
}

/// GCP's Atom feed: one entry per update, its id `tag:…:feed:<incident>.<update>`.
fn gcp_atom(items: Vec<Item>) -> Vec<Incident> {
    items
        .iter()
        .map(|item| {
            let id = item.id.as_deref().unwrap_or("");
            let incident_id = id
                .rsplit_once(":feed:")
                .map(|(_, rest)| rest.split('.').next().unwrap_or(rest))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .or_else(|| {
                    item.link
                        .as_deref()
                        .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| item_key(item));
            let (prefix, rest) = title_prefix(&item.title);
            let mut incident = Incident::new(incident_id, rest.to_owned());
            let resolved = prefix.as_deref() == Some("resolved");
            incident.status = if resolved {
                Status::Resolved
            } else {
                Status::Firing
            };
            incident.phase = prefix.unwrap_or_else(|| "update".into());
            incident.service = gcp_affected(&item.html, "Affected products:");
            incident.region = gcp_affected(&item.html, "Affected locations:");
            incident.description = nonempty(&html_to_text(&item.html));
            incident.url = item.link.clone();
            incident.updated = item.updated;
            if resolved {
                incident.ends_at = item.updated;
            }
            incident.raw = item.raw();
            incident
        })
        .collect()
}

/// Azure's feed: each item is a current incident, titled `<service> - <region>`.
fn azure(items: Vec<Item>) -> Vec<Incident> {
    items
        .iter()
        .map(|item| {
            let mut incident = Incident::new(item_key(item), item.title.trim().to_owned());
            incident.phase = "active".into();
            if let Some((service, region)) = item.title.rsplit_once(" - ") {
                incident.service = nonempty(service);
                incident.region = nonempty(region);
            }
            incident.description = nonempty(&html_to_text(&item.html));
            incident.url = item.link.clone();
            incident.starts_at = item.created;
            incident.updated = item.updated;
            incident.raw = item.raw();
            incident
        })
        .collect()
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

/// Statuspage's `/api/v2/incidents.json`.
fn statuspage_json(value: &serde_json::Value) -> Vec<Incident> {
    let page_url = value
        .get("page")
        .and_then(|p| str_field(p, "url"))
        .map(|u| u.trim_end_matches('/').to_owned());
    let Some(list) = value.get("incidents").and_then(|i| i.as_array()) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|inc| {
            let id = str_field(inc, "id")?;
            let phase = str_field(inc, "status")
                .unwrap_or("investigating")
                .to_lowercase();
            let mut incident = Incident::new(
                id.to_owned(),
                str_field(inc, "name").unwrap_or(id).to_owned(),
            );
            incident.severity = match str_field(inc, "impact") {
                Some("critical") => Some(Severity::Critical),
                Some("major") => Some(Severity::High),
                Some("minor") => Some(Severity::Medium),
                Some("none" | "maintenance") => Some(Severity::Info),
                _ => None,
            };
            if is_maintenance(&phase) && incident.severity.is_none() {
                incident.severity = Some(Severity::Info);
            }
            incident.updated = timestamp(inc.get("updated_at"));
            if statuspage_resolved(&phase) {
                incident.status = Status::Resolved;
                incident.ends_at = timestamp(inc.get("resolved_at")).or(incident.updated);
            }
            incident.phase = phase;
            incident.starts_at =
                timestamp(inc.get("started_at")).or_else(|| timestamp(inc.get("created_at")));
            incident.service = names(inc.get("components"), "name");
            incident.url = str_field(inc, "shortlink")
                .map(str::to_owned)
                .or_else(|| page_url.as_ref().map(|p| format!("{p}/incidents/{id}")));
            // The newest post (the API lists them newest first; order by time anyway).
            incident.description = inc
                .get("incident_updates")
                .and_then(|u| u.as_array())
                .and_then(|updates| {
                    updates.iter().max_by_key(|u| {
                        timestamp(u.get("display_at")).or_else(|| timestamp(u.get("created_at")))
                    })
                })
                .and_then(|u| str_field(u, "body"))
                .map(str::to_owned);
            if let Some(impact) = str_field(inc, "impact") {
                incident.labels.insert("impact".into(), impact.to_owned());
            }
            incident.raw = inc.clone();
            Some(incident)
        })
        .collect()
}

/// One element of GCP's `incidents.json` (schema: status.cloud.google.com/incidents.schema.json).
fn gcp_json(inc: &serde_json::Value) -> Option<Incident> {
    let id = str_field(inc, "id")?;
    let summary = str_field(inc, "external_desc").unwrap_or(id);
    let mut incident = Incident::new(id.to_owned(), summary.to_owned());
    let latest = inc.get("most_recent_update");
    let ended = timestamp(inc.get("end"));
    let end_given = str_field(inc, "end").is_some();
    incident.status = if end_given {
        Status::Resolved
    } else {
        Status::Firing
    };
    incident.ends_at = ended;
    incident.phase = latest
        .and_then(|u| str_field(u, "status"))
        .map(str::to_lowercase)
        .unwrap_or_else(|| {
            if end_given {
                "available".into()
            } else {
                "open".into()
            }
        });
    let impact = str_field(inc, "status_impact");
    incident.severity = match (impact, str_field(inc, "severity")) {
        (Some("SERVICE_OUTAGE"), _) => Some(Severity::Critical),
        (_, Some("high")) => Some(Severity::High),
        (_, Some("medium")) => Some(Severity::Medium),
        (_, Some("low")) => Some(Severity::Low),
        (Some("SERVICE_DISRUPTION"), _) => Some(Severity::High),
        (Some("SERVICE_INFORMATION"), _) => Some(Severity::Low),
        _ => None,
    };
    incident.service = str_field(inc, "service_name")
        .map(str::to_owned)
        .or_else(|| names(inc.get("affected_products"), "title"));
    if let Some(products) = names(inc.get("affected_products"), "title") {
        incident.labels.insert("products".into(), products);
    }
    let current = names(inc.get("currently_affected_locations"), "id");
    incident.region = current.or_else(|| names(inc.get("previously_affected_locations"), "id"));
    if let Some(impact) = impact {
        incident
            .labels
            .insert("status_impact".into(), impact.to_owned());
    }
    incident.url = str_field(inc, "uri").map(|uri| {
        if uri.starts_with("http") {
            uri.to_owned()
        } else {
            format!(
                "https://status.cloud.google.com/{}",
                uri.trim_start_matches('/')
            )
        }
    });
    incident.starts_at = timestamp(inc.get("begin"));
    incident.updated =
        timestamp(inc.get("modified")).or_else(|| latest.and_then(|u| timestamp(u.get("when"))));
    incident.description = latest.and_then(|u| str_field(u, "text")).map(str::to_owned);
    incident.raw = inc.clone();
    Some(incident)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::status_feed::parse::parse;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/statuspages")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn read(provider: Provider, format: Format, name: &str) -> Vec<Incident> {
        let doc = parse(format, &fixture(name)).expect("parses");
        incidents(provider, doc)
    }

    #[test]
    fn aws_region_codes() {
        for (code, service, region) in [
            ("ec2-ap-northeast-1", Some("ec2"), Some("ap-northeast-1")),
            ("sns-us-east-1", Some("sns"), Some("us-east-1")),
            (
                "elasticbeanstalk-us-gov-west-1",
                Some("elasticbeanstalk"),
                Some("us-gov-west-1"),
            ),
            (
                "api-gateway-eu-west-3",
                Some("api-gateway"),
                Some("eu-west-3"),
            ),
            ("cloudfront", Some("cloudfront"), None),
            ("", None, None),
        ] {
            assert_eq!(
                aws_service_region(code),
                (service.map(String::from), region.map(String::from)),
                "{code}"
            );
        }
        assert_eq!(
            aws_code("http://status.aws.amazon.com/#sns-us-east-1_1642200240"),
            Some("sns-us-east-1")
        );
        assert_eq!(aws_code("no fragment"), None);
    }

    #[test]
    fn aws_posts_fold_into_incidents() {
        let list = read(
            Provider::Aws,
            Format::Rss,
            "aws_health_dashboard_rss_ec2-ap-northeast-1_excerpt_2019.xml",
        );
        let summary: Vec<(&str, Status, Option<Severity>, &str)> = list
            .iter()
            .map(|i| (i.summary.as_str(), i.status, i.severity, i.phase.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "Degraded volume performance for some EBS volumes",
                    Status::Resolved,
                    Some(Severity::Medium),
                    "service is operating normally"
                ),
                (
                    "Increased API Error Rates",
                    Status::Resolved,
                    None,
                    "service is operating normally"
                ),
                (
                    "インスタンスの接続性について | Instance Availability",
                    Status::Firing,
                    Some(Severity::Medium),
                    "informational message"
                ),
            ]
        );
        let open = &list[2];
        assert_eq!(open.service.as_deref(), Some("ec2"));
        assert_eq!(open.region.as_deref(), Some("ap-northeast-1"));
        assert_eq!(open.labels["updates"], "3");
        assert_eq!(
            open.starts_at.map(|t| t.to_rfc3339()),
            Some("2019-08-23T04:18:32+00:00".into())
        );
        assert_eq!(
            open.updated.map(|t| t.to_rfc3339()),
            Some("2019-08-23T09:39:42+00:00".into())
        );
    }

    #[test]
    fn statuspage_atom_and_rss_words() {
        let list = read(
            Provider::Statuspage,
            Format::Atom,
            "statuspage_githubstatus_history.atom_excerpt_ongoing_incident.xml",
        );
        assert_eq!(list.len(), 2);
        let ongoing = list
            .iter()
            .find(|i| i.key.ends_with("Incident/30837849"))
            .expect("ongoing");
        assert_eq!(ongoing.status, Status::Firing);
        assert_eq!(
            ongoing.phase, "investigating",
            "Update posts keep the stage"
        );
        assert_eq!(ongoing.summary, "Delays starting Actions runs");
        assert_eq!(
            ongoing.description.as_deref(),
            Some("We are continuing to work on a mitigation.")
        );
        assert_eq!(
            ongoing.url.as_deref(),
            Some("https://www.githubstatus.com/incidents/cstx3v63mklm")
        );
        assert_eq!(
            ongoing.starts_at.map(|t| t.to_rfc3339()),
            Some("2026-07-09T06:01:43+00:00".into())
        );
        let done = list
            .iter()
            .find(|i| i.key.ends_with("Incident/30818171"))
            .expect("resolved");
        assert_eq!(
            (done.status, done.phase.as_str()),
            (Status::Resolved, "resolved")
        );

        let rss = read(
            Provider::Statuspage,
            Format::Rss,
            "statuspage_claude_history.rss_sample_4items.xml",
        );
        let words: Vec<(&str, &str)> = rss
            .iter()
            .map(|i| (i.summary.as_str(), i.phase.as_str()))
            .collect();
        assert_eq!(
            words,
            vec![
                ("Elevated errors on platform.claude.com", "identified"),
                ("Elevated errors for Claude Opus 5.5", "resolved"),
                ("Issue with spend limits", "resolved"),
                (
                    "Elevated errors loading usage data on platform.claude.com",
                    "resolved"
                ),
            ]
        );
        assert_eq!(
            rss[0].key,
            "https://status.claude.com/incidents/978mjkgw6mh7"
        );
        assert_eq!(rss[0].starts_at, None, "RSS pubDate is the latest post");
    }

    #[test]
    fn gcp_json_and_atom() {
        let list = read(
            Provider::Gcp,
            Format::GcpIncidentsJson,
            "gcp_status_incidents.json_checkmk-edited-sample.json",
        );
        // Both elements have one id and one `modified`: the resolved one wins.
        assert_eq!(list.len(), 1);
        let i = &list[0];
        assert_eq!(i.status, Status::Resolved);
        assert_eq!(i.phase, "available");
        assert_eq!(i.severity, Some(Severity::Medium));
        assert_eq!(i.service.as_deref(), Some("Secret Manager"));
        assert_eq!(i.region.as_deref(), Some("europe-west2, global"));
        assert_eq!(
            i.url.as_deref(),
            Some("https://status.cloud.google.com/incidents/mLBHeCxhRia17anXCSX1")
        );
        assert_eq!(
            i.ends_at.map(|t| t.to_rfc3339()),
            Some("2022-07-10T15:47:00+00:00".into())
        );

        let atom = read(
            Provider::Gcp,
            Format::Atom,
            "gcp_status_feed.atom_capture_2022-04-01.xml",
        );
        assert_eq!(atom.len(), 1);
        let a = &atom[0];
        assert_eq!(a.key, "B1hD4KAtcxiyAWkcANfV");
        assert_eq!(a.status, Status::Resolved);
        assert_eq!(
            a.summary,
            "Global: Cloud Monitoring Metrics may be unavailable or underreported for Cloud Pub/Sub"
        );
        assert_eq!(
            a.service.as_deref(),
            Some("Cloud Monitoring, Operations, Google Cloud Pub/Sub")
        );
        assert_eq!(a.region.as_deref(), Some("Global"));
    }

    #[test]
    fn azure_items_are_open_incidents() {
        let list = read(
            Provider::Azure,
            Format::Rss,
            "azure_status_feed_rss_reconstructed_2018.xml",
        );
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].key, "Virtual Machines/VM Scale Sets - East US 2");
        assert_eq!(
            list[0].service.as_deref(),
            Some("Virtual Machines/VM Scale Sets")
        );
        assert_eq!(list[0].region.as_deref(), Some("East US 2"));
        assert_eq!(list[0].status, Status::Firing);
        assert!(
            read(
                Provider::Azure,
                Format::Rss,
                "azure_status_feed_rss_empty_all-clear.xml"
            )
            .is_empty()
        );
    }

    #[test]
    fn generic_titles() {
        assert_eq!(
            title_prefix("RESOLVED: Global: x"),
            (Some("resolved".into()), "Global: x")
        );
        assert_eq!(title_prefix("Global: x"), (None, "Global: x"));
        assert_eq!(strip_resolved(" [RESOLVED] SMS  Delays "), "SMS Delays");
        let item = Item {
            id: Some("1".into()),
            title: "[Resolved] Login errors".into(),
            ..Item::default()
        };
        let i = generic_item(&item, FeedKind::Rss);
        assert_eq!(
            (i.status, i.summary.as_str()),
            (Status::Resolved, "Login errors")
        );
    }

    #[test]
    fn statuspage_json_impacts() {
        let body = br#"{"page": {"url": "https://status.example.com/"}, "incidents": [
            {"id": "a1", "name": "API down", "status": "identified", "impact": "major",
             "created_at": "2026-07-09T04:34:00Z", "updated_at": "2026-07-09T05:00:00Z",
             "components": [{"name": "API"}, {"name": "Webhooks"}],
             "incident_updates": [
               {"status": "investigating", "body": "Looking", "created_at": "2026-07-09T04:34:00Z"},
               {"status": "identified", "body": "Found it", "created_at": "2026-07-09T05:00:00Z"}]},
            {"id": "m1", "name": "DB upgrade", "status": "scheduled", "impact": "maintenance"},
            {"name": "no id"}]}"#;
        let list = incidents(
            Provider::Statuspage,
            parse(Format::Auto, body).expect("parses"),
        );
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].severity, Some(Severity::High));
        assert_eq!(list[0].service.as_deref(), Some("API, Webhooks"));
        assert_eq!(list[0].description.as_deref(), Some("Found it"));
        assert_eq!(
            list[0].url.as_deref(),
            Some("https://status.example.com/incidents/a1")
        );
        assert_eq!(list[1].severity, Some(Severity::Info));
        assert_eq!(list[1].status, Status::Firing);
    }
}
