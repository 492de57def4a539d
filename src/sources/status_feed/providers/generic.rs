//! Any RSS or Atom feed: Statuspage's status words when an entry has them, else a
//! `[RESOLVED]` marker or an all-capitals stage before a colon in the title.

use super::statuspage::{posts, statuspage_item};
use super::{Incident, fill_from_item, item_key, strip_resolved, title_prefix};
use crate::alert::Status;
use crate::sources::status_feed::parse::{FeedKind, Item};

/// Any feed: Statuspage's words when the entry has them, else a title prefix.
pub(super) fn generic_item(item: &Item, kind: FeedKind) -> Incident {
    if !posts(&item.html).is_empty() {
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
    fill_from_item(&mut incident, item);
    incident
}
