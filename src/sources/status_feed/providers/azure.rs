//! Azure's status RSS: it lists only current incidents, one item each, titled
//! `<service> - <region>`; an incident ends when its item leaves the feed.

use super::{Incident, fill_from_item, item_key, nonempty};
use crate::sources::status_feed::parse::Item;

/// Azure's feed: each item is a current incident, titled `<service> - <region>`.
pub(super) fn azure(items: Vec<Item>) -> Vec<Incident> {
    items
        .iter()
        .map(|item| {
            let mut incident = Incident::new(item_key(item), item.title.trim().to_owned());
            incident.phase = "active".into();
            if let Some((service, region)) = item.title.rsplit_once(" - ") {
                incident.service = nonempty(service);
                incident.region = nonempty(region);
            }
            fill_from_item(&mut incident, item);
            incident
        })
        .collect()
}
