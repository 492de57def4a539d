//! The providers against recorded feeds (`tests/fixtures/statuspages`).

use super::generic::generic_item;
use super::*;
use crate::sources::status_feed::parse::{FeedKind, parse};

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
