//! Atlassian Statuspage (and OCI, whose status page runs on it): the status words of
//! its RSS and Atom entries, and its `/api/v2/incidents.json`.

use super::{Incident, item_key, names, nonempty, str_field};
use crate::alert::Severity;
use crate::alert::Status;
use crate::sources::status_feed::parse::{FeedKind, Item, html_to_text, timestamp};

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
pub(super) fn statuspage_item(item: &Item, kind: FeedKind) -> Incident {
    let updates = posts(&item.html);
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

/// Statuspage's `/api/v2/incidents.json`.
pub(super) fn statuspage_json(value: &serde_json::Value) -> Vec<Incident> {
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

/// One post of a Statuspage incident, newest first in the page's HTML: the status word
/// in `<strong>` and the text after it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Post {
    pub(super) word: String,
    pub(super) text: String,
}

/// The posts of a Statuspage RSS/Atom entry's HTML. Each is
/// `<p><small>date</small><br><strong>Word</strong> - text</p>`, newest first.
pub(super) fn posts(html: &str) -> Vec<Post> {
    let mut updates = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<strong>") {
        let after = &rest[start + "<strong>".len()..];
        let Some(end) = after.find("</strong>") else {
            break;
        };
        let word = html_to_text(&after[..end]);
        let body = &after[end + "</strong>".len()..];
        let stop = [body.find("<strong>"), body.find("</p>")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(body.len());
        let text = html_to_text(&body[..stop]);
        let text = text
            .strip_prefix('-')
            .map(str::trim_start)
            .unwrap_or(&text)
            .to_owned();
        if !word.is_empty() {
            updates.push(Post { word, text });
        }
        rest = &body[stop..];
    }
    updates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuspage_posts_newest_first() {
        let html = "<p> <small>Jul <var data-var='date'> 9</var>, <var data-var='time'>06:01</var> UTC</small><br> <strong>Update</strong> - We are continuing to work on a mitigation. </p> <p> <small>Jul 9, 04:34 UTC</small><br> <strong>Investigating</strong> - We are investigating reports &lt;of&gt; degraded performance for Actions </p>";
        let updates = posts(html);
        assert_eq!(
            updates,
            vec![
                Post {
                    word: "Update".into(),
                    text: "We are continuing to work on a mitigation.".into()
                },
                Post {
                    word: "Investigating".into(),
                    text: "We are investigating reports <of> degraded performance for Actions"
                        .into()
                },
            ]
        );
    }
}
