//! Google Cloud's status: `incidents.json` (one element per incident) and the Atom
//! feed (one entry per update).

use super::{Incident, item_key, names, nonempty, str_field, title_prefix};
use crate::alert::Severity;
use crate::alert::Status;
use crate::sources::status_feed::parse::{Item, html_to_text, timestamp};

/// `Affected products: Cloud Monitoring, Operations` in a GCP entry's HTML.
fn gcp_affected(html: &str, what: &str) -> Option<String> {
    let text = html_to_text(html);
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(what).map(str::trim))?;
    nonempty(line)
}

/// GCP's Atom feed: one entry per update, its id `tag:…:feed:<incident>.<update>`.
pub(super) fn gcp_atom(items: Vec<Item>) -> Vec<Incident> {
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

/// One element of GCP's `incidents.json` (schema: status.cloud.google.com/incidents.schema.json).
pub(super) fn gcp_json(inc: &serde_json::Value) -> Option<Incident> {
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
