//! AWS Health Dashboard's RSS: a new item per update, the level as a title prefix, the
//! service and region in the guid's fragment.

use std::collections::BTreeMap;

use super::{Incident, nonempty, strip_resolved};
use crate::alert::Severity;
use crate::alert::Status;
use crate::sources::status_feed::parse::{Item, html_to_text};

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
fn aws_service_region(code: &str) -> (Option<String>, Option<String>) {
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
pub(super) fn aws(items: Vec<Item>) -> Vec<Incident> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
