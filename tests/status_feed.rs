//! The `status_feed` source against a real HTTP server on loopback that serves the real
//! status feeds of `tests/fixtures/statuspages` and changes them between polls, the way
//! the providers do: a new incident, new posts, a resolution. Polls are driven through
//! the API (`POST /status_feeds/<id>/check`, which answers once the poll's events are
//! delivered) or through a clock whose sleeps end only when the test says so; no test
//! waits for real time to pass.

mod common;

use std::time::Duration;

use common::eventually;
use common::feeds::{FeedServer, StepClock, fixture, run, t};
use serde_json::Value;
use sluice::event::EventStatus;
use sluice::testing::CaptureSink;

// ---------------------------------------------------------------------------------
// Statuspage Atom documents at earlier stages of the real incidents.

/// The Atom entries of a Statuspage history feed, and its header.
struct Atom {
    header: String,
    entries: Vec<String>,
}

impl Atom {
    fn read(name: &str) -> Self {
        let text = fixture(name);
        let start = text.find("<entry>").expect("an entry");
        let header = text[..start].trim_end().to_owned();
        let entries = text[start..]
            .split("<entry>")
            .filter_map(|e| e.split_once("</entry>"))
            .map(|(body, _)| format!("<entry>{body}</entry>"))
            .collect();
        Self { header, entries }
    }

    fn entry(&self, incident: &str) -> String {
        self.entries
            .iter()
            .find(|e| e.contains(&format!("Incident/{incident}</id>")))
            .cloned()
            .unwrap_or_else(|| panic!("incident {incident}"))
    }
}

fn document(header: &str, entries: &[String]) -> String {
    format!("{header}\n  {}\n</feed>\n", entries.join("\n  "))
}

/// The entry as its incident looked after its first `posts` posts: the newer posts
/// removed (Statuspage lists them newest first) and `updated` set to the time of the
/// newest one kept (`<small>Aug 6, 15:03 UTC</small>`, the year from `published`).
fn at_stage(entry: &str, posts: usize) -> String {
    let (head, rest) = entry
        .split_once("<content type=\"html\">")
        .expect("content");
    let (content, tail) = rest.split_once("</content>").expect("content end");
    let blocks: Vec<&str> = content
        .split("&lt;/p&gt;")
        .filter(|b| !b.trim().is_empty())
        .collect();
    assert!(posts <= blocks.len(), "{posts} of {} posts", blocks.len());
    let kept = &blocks[blocks.len() - posts..];
    let newest = kept[0].replace("&lt;", "<").replace("&gt;", ">");
    let small = newest
        .split_once("<small>")
        .and_then(|(_, s)| s.split_once("</small>"))
        .expect("a post time")
        .0;
    let mut text = String::new();
    let mut in_tag = false;
    for c in small.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text.replace("UTC", "");
    let words: Vec<&str> = text.split_whitespace().collect();
    let year = &head[head.find("<published>").expect("published") + 11..][..4];
    let when = chrono::NaiveDateTime::parse_from_str(
        &format!("{year} {} {} {}", words[0], words[1], words[2]),
        "%Y %b %d, %H:%M",
    )
    .expect("post time")
    .and_utc()
    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let updated_at = head.find("<updated>").expect("updated");
    let updated_end = head.find("</updated>").expect("updated end");
    let head = format!(
        "{}<updated>{when}{}",
        &head[..updated_at],
        &head[updated_end..]
    );
    let content: Vec<String> = kept.iter().map(|b| format!("{b}&lt;/p&gt;")).collect();
    format!(
        "{head}<content type=\"html\">{}</content>{tail}",
        content.join("")
    )
}

const GITHUB: &str = "/github/history.atom";

fn github_pipeline(port: u16, initial: &str) -> String {
    format!(
        r#"
sources:
  feeds:
    type: status_feed
    initial: {initial}
    feeds:
      - {{ name: github, provider: statuspage, url: "http://127.0.0.1:{port}{GITHUB}" }}
"#
    )
}

// ---------------------------------------------------------------------------------

/// GitHub's real history feed, replayed: the ongoing incident of 2026-07-09, then two
/// incidents of August at the stages their own posts show (Investigating, Monitoring,
/// Resolved), a broken body in between. Each poll emits exactly the changes, in order.
#[tokio::test]
async fn statuspage_changes_become_the_exact_event_sequence() {
    let ongoing = Atom::read("statuspage_githubstatus_history.atom_excerpt_ongoing_incident.xml");
    let full = Atom::read("statuspage_githubstatus_history.atom_full_snapshot.xml");
    // C: "Delays starting Actions runs" (ongoing), D: resolved the day before.
    let (c, d) = (ongoing.entry("30837849"), ongoing.entry("30818171"));
    // A: Pages (Investigating → Monitoring → Resolved), B: Actions (Investigating →
    // Resolved).
    let (a, b) = (full.entry("31107586"), full.entry("31200202"));
    let server = FeedServer::default();
    let port = server.start().await;
    server.serve(
        GITHUB,
        &document(&ongoing.header, &[at_stage(&c, 1), d.clone()]),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = StepClock::at("2026-07-09T07:00:00Z");
    let r = run(
        &github_pipeline(port, "emit_open"),
        &clock,
        dir.path(),
        CaptureSink::default(),
    )
    .await;

    // 1. The first poll (at start): only what is open now; D is history.
    r.polled(1).await;
    assert_eq!(
        r.lines(0),
        ["Delays starting Actions runs firing investigating medium"]
    );
    let first = &r.events()[0];
    assert_eq!(first["kind"], "outage");
    assert_eq!(first["event_type"], "alert");
    assert_eq!(first["source"], "statuspage");
    assert_eq!(first["labels"]["feed"], "github");
    assert_eq!(
        first["url"],
        "https://www.githubstatus.com/incidents/cstx3v63mklm"
    );
    assert_eq!(first["time"], "2026-07-09T04:34:00Z");
    assert_eq!(first["starts_at"], "2026-07-09T06:01:43Z");
    assert_eq!(
        first["description"],
        "We are investigating reports of degraded performance for Actions"
    );
    assert!(
        first["raw"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("Investigating"))
    );

    // 2. Nothing changed: a 304, and nothing emitted.
    let snap = r.check().await;
    let hits = server.hits(GITHUB);
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].status, 304);
    assert!(hits[1].if_none_match.is_some(), "the ETag was sent back");
    assert_eq!(snap["feeds"][0]["last_result"], "not_modified");
    assert_eq!(r.events().len(), 1);

    // 3. A new incident; C got two `Update` posts (no new stage): one event.
    server.serve(
        GITHUB,
        &document(&ongoing.header, &[at_stage(&a, 1), c.clone(), d.clone()]),
    );
    r.check().await;
    assert_eq!(
        r.lines(1),
        ["Incident with Pages - Deployment Lag firing investigating medium"]
    );

    // 4. A moves to Monitoring, B appears: in the order the provider posted them.
    server.serve(
        GITHUB,
        &document(
            &ongoing.header,
            &[at_stage(&b, 1), at_stage(&a, 2), c.clone(), d.clone()],
        ),
    );
    r.check().await;
    assert_eq!(
        r.lines(2),
        [
            "Incident with Pages - Deployment Lag firing monitoring medium",
            "Incident with Actions firing investigating medium",
        ]
    );

    // 5. A broken body (cut mid-entry): an error, counted, and nothing emitted.
    let errors_before = r
        .metric("sluice_component_errors_total{component_id=\"feeds\"")
        .unwrap_or(0.0);
    let broken = document(&ongoing.header, &[a.clone(), b.clone(), c.clone()]);
    server.serve(GITHUB, &broken[..broken.len() / 2]);
    let snap = r.check().await;
    assert_eq!(r.events().len(), 4);
    let feed = &snap["feeds"][0];
    assert_eq!(feed["state"], "error");
    assert_eq!(feed["consecutive_errors"], 1);
    assert!(
        feed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not a valid feed")),
        "{feed}"
    );
    assert_eq!(
        r.metric("sluice_component_errors_total{component_id=\"feeds\""),
        Some(errors_before + 1.0)
    );
    assert_eq!(
        r.metric(
            "sluice_status_feed_errors_total{component_id=\"feeds\",component_kind=\"source\",component_type=\"status_feed\",feed=\"github\",reason=\"parse\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        r.metric("sluice_status_feed_consecutive_errors{component_id=\"feeds\""),
        Some(1.0)
    );
    let (code, health) = r.get("/health").await;
    assert_eq!(
        code, 200,
        "a failing feed is not a failing sluice: {health}"
    );
    assert_eq!(health["components"]["feeds"]["feeds"][0]["state"], "error");
    assert_eq!(
        health["components"]["feeds"]["feeds"][0]["consecutive_errors"],
        1
    );

    // 6. The next good body recovers, and both incidents resolve.
    server.serve(
        GITHUB,
        &document(
            &ongoing.header,
            &[b.clone(), a.clone(), c.clone(), d.clone()],
        ),
    );
    let snap = r.check().await;
    assert_eq!(
        r.lines(4),
        [
            "Incident with Pages - Deployment Lag resolved resolved medium",
            "Incident with Actions resolved resolved medium",
        ]
    );
    assert_eq!(snap["feeds"][0]["state"], "ok");
    assert_eq!(snap["feeds"][0]["consecutive_errors"], 0);
    assert_eq!(
        r.metric("sluice_status_feed_consecutive_errors{component_id=\"feeds\""),
        Some(0.0)
    );
    assert_eq!(
        r.metric("sluice_status_feed_last_success_timestamp_seconds{component_id=\"feeds\""),
        Some(t("2026-07-09T07:00:00Z").timestamp() as f64)
    );
    assert_eq!(
        r.metric("sluice_status_feed_items{component_id=\"feeds\""),
        Some(4.0)
    );
    assert_eq!(
        r.metric(
            "sluice_status_feed_polls_total{component_id=\"feeds\",component_kind=\"source\",component_type=\"status_feed\",feed=\"github\",result=\"updated\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        r.metric(
            "sluice_status_feed_polls_total{component_id=\"feeds\",component_kind=\"source\",component_type=\"status_feed\",feed=\"github\",result=\"not_modified\"}"
        ),
        Some(1.0)
    );

    // Every event of one incident has its fingerprint; every event its own id.
    let events = r.events();
    assert_eq!(events.len(), 6);
    let fingerprints_of = |summary: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["summary"] == summary)
            .map(|e| e["fingerprint"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let pages = fingerprints_of("Incident with Pages - Deployment Lag");
    assert_eq!(pages.len(), 3);
    assert!(pages.iter().all(|f| f == &pages[0] && f.len() == 32));
    assert_ne!(pages[0], fingerprints_of("Incident with Actions")[0]);
    let mut ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    let resolved = &events[4];
    assert_eq!(resolved["ends_at"], "2026-08-10T21:16:18Z");
    assert_eq!(resolved["time"], "2026-08-10T21:16:18Z");

    // The API: only C is still open; an unknown source is a 404.
    let (code, snap) = r.get("/status_feeds/feeds").await;
    assert_eq!(code, 200);
    let open = snap["open_incidents"].as_array().expect("open incidents");
    assert_eq!(open.len(), 1, "{snap}");
    assert_eq!(open[0]["summary"], "Delays starting Actions runs");
    assert_eq!(open[0]["phase"], "investigating");
    assert_eq!(open[0]["fingerprint"], first["fingerprint"]);
    assert_eq!(snap["feeds"][0]["open_incidents"], 1);
    assert_eq!(snap["feeds"][0]["polls"], 6);
    let (code, _) = r.get("/status_feeds/nope").await;
    assert_eq!(code, 404);
    let code = r
        .http
        .post(format!("{}/status_feeds/nope/check", r.api))
        .send()
        .await
        .expect("POST")
        .status();
    assert_eq!(code, 404);
    r.stop().await;
}

/// A restart reads the state from `data_dir`: the persisted ETag is sent (a 304), a
/// full body with the same incidents emits nothing, and only a real change is news.
#[tokio::test]
async fn a_restart_repeats_nothing() {
    let ongoing = Atom::read("statuspage_githubstatus_history.atom_excerpt_ongoing_incident.xml");
    let full = Atom::read("statuspage_githubstatus_history.atom_full_snapshot.xml");
    let a = full.entry("31107586");
    let server = FeedServer::default();
    let port = server.start().await;
    server.serve(GITHUB, &document(&ongoing.header, &ongoing.entries));
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = StepClock::at("2026-07-09T07:00:00Z");

    let r = run(
        &github_pipeline(port, "emit_all"),
        &clock,
        dir.path(),
        CaptureSink::default(),
    )
    .await;
    r.polled(1).await;
    assert_eq!(
        r.lines(0),
        [
            "Actions and Codespaces APIs experiencing partial failures resolved resolved medium",
            "Delays starting Actions runs firing investigating medium",
        ]
    );
    let etag = server.hits(GITHUB)[0].clone();
    r.stop().await;
    assert!(dir.path().join("status_feed-feeds.json").exists());

    // Restarted: the same ETag goes out and the server says 304.
    let r = run(
        &github_pipeline(port, "emit_all"),
        &clock,
        dir.path(),
        CaptureSink::default(),
    )
    .await;
    r.polled(1).await;
    let hits = server.hits(GITHUB);
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].status, 304);
    assert!(hits[1].if_none_match.is_some());
    assert_eq!(
        etag.if_none_match, None,
        "the very first poll had no validator"
    );

    // The server loses its ETags (a new deployment): the full body comes back, and
    // the remembered incidents are not announced again.
    server.update(GITHUB, |d| d.salt = 1);
    r.check().await;
    assert_eq!(server.hits(GITHUB)[2].status, 200);
    assert!(r.events().is_empty(), "{:?}", r.lines(0));

    // A new incident is the only news.
    server.serve(
        GITHUB,
        &document(
            &ongoing.header,
            &[
                at_stage(&a, 1),
                ongoing.entries[0].clone(),
                ongoing.entries[1].clone(),
            ],
        ),
    );
    r.check().await;
    assert_eq!(
        r.lines(0),
        ["Incident with Pages - Deployment Lag firing investigating medium"]
    );
    r.stop().await;

    // And a third start, with the change already seen: nothing again.
    let r = run(
        &github_pipeline(port, "emit_all"),
        &clock,
        dir.path(),
        CaptureSink::default(),
    )
    .await;
    r.polled(1).await;
    server.update(GITHUB, |d| d.salt = 2);
    r.check().await;
    assert!(r.events().is_empty(), "{:?}", r.lines(0));
    r.stop().await;
}

/// Events whose delivery failed are not remembered: the next poll fetches the whole
/// body again (no validator) and emits them again, until they are delivered once.
#[tokio::test]
async fn undelivered_events_are_emitted_again() {
    let ongoing = Atom::read("statuspage_githubstatus_history.atom_excerpt_ongoing_incident.xml");
    let server = FeedServer::default();
    let port = server.start().await;
    server.serve(GITHUB, &document(&ongoing.header, &ongoing.entries));
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = StepClock::at("2026-07-09T07:00:00Z");
    let failing = CaptureSink {
        status: EventStatus::Errored,
        ..CaptureSink::default()
    };
    let r = run(
        &github_pipeline(port, "emit_open"),
        &clock,
        dir.path(),
        failing,
    )
    .await;
    r.polled(1).await;
    let snap = r.check().await;
    assert_eq!(
        r.lines(0),
        [
            "Delays starting Actions runs firing investigating medium",
            "Delays starting Actions runs firing investigating medium",
        ]
    );
    let hits = server.hits(GITHUB);
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].if_none_match, None, "validators wait for delivery");
    assert_eq!(hits[1].status, 200);
    assert_eq!(snap["feeds"][0]["consecutive_errors"], 2);
    assert!(
        snap["feeds"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not delivered")),
        "{snap}"
    );
    assert_eq!(
        r.metric(
            "sluice_status_feed_errors_total{component_id=\"feeds\",component_kind=\"source\",component_type=\"status_feed\",feed=\"github\",reason=\"delivery\"}"
        ),
        Some(2.0)
    );
    assert_eq!(snap["open_incidents"].as_array().map(Vec::len), Some(0));
    r.stop().await;

    // With a sink that delivers, the event goes out once more, and then never again.
    let r = run(
        &github_pipeline(port, "emit_open"),
        &clock,
        dir.path(),
        CaptureSink::default(),
    )
    .await;
    r.polled(1).await;
    r.check().await;
    assert_eq!(
        r.lines(0),
        ["Delays starting Actions runs firing investigating medium"]
    );
    assert_eq!(server.hits(GITHUB).last().map(|h| h.status), Some(304));
    r.stop().await;
}

/// AWS (one RSS item per post, folded into incidents; title prefixes give stage and
/// severity; Last-Modified only), GCP's incidents.json (`end`) and Azure (an incident
/// is resolved when it leaves the feed), polled together.
#[tokio::test]
async fn aws_gcp_and_azure_feeds() {
    let aws = fixture("aws_health_dashboard_rss_ec2-ap-northeast-1_excerpt_2019.xml");
    let (aws_head, rest) = aws.split_once("<item>").expect("items");
    let aws_tail = "\n  </channel>\n</rss>\n";
    let items: Vec<String> = format!("<item>{rest}")
        .split("<item>")
        .filter_map(|i| i.split_once("</item>"))
        .map(|(body, _)| format!("<item>{body}</item>"))
        .collect();
    assert_eq!(items.len(), 6);
    // Newest first: [0] Informational 02:39, [1] Degradation 01:54, [2] Informational
    // 21:18 (all "Instance Availability"), then three posts of 2016.
    let rss = |items: &[String]| format!("{aws_head}{}{aws_tail}", items.join("\n"));
    // The resolution AWS would post next: the same incident, prefix and [RESOLVED].
    let resolution = items[0]
        .replace(
            "Informational message: ",
            "Service is operating normally: [RESOLVED] ",
        )
        .replace(
            "Fri, 23 Aug 2019 02:39:42 PDT",
            "Fri, 23 Aug 2019 04:10:00 PDT",
        )
        .replace("_1566553182", "_1566558600");
    // SNS in us-east-1: outside this feed's `services` filter.
    let sms = fixture("aws_health_dashboard_rss_all_reference_item_2022.xml");

    let gcp: Vec<Value> = serde_json::from_str(&fixture(
        "gcp_status_incidents.json_checkmk-edited-sample.json",
    ))
    .expect("JSON");
    let gcp_doc = |i: usize| serde_json::to_string(&[&gcp[i]]).expect("JSON");
    let azure_open = fixture("azure_status_feed_rss_reconstructed_2018.xml");
    let azure_clear = fixture("azure_status_feed_rss_empty_all-clear.xml");

    let server = FeedServer::default();
    let port = server.start().await;
    let aws_version = |server: &FeedServer, body: String, modified: &str| {
        server.serve("/aws.rss", &body);
        server.update("/aws.rss", |d| {
            d.etag = false;
            d.last_modified = Some(modified.to_owned());
        });
    };
    aws_version(&server, rss(&items[2..]), "Fri, 23 Aug 2019 04:18:32 GMT");
    server.serve("/incidents.json", &gcp_doc(0));
    server.serve("/azure", &azure_open);
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = StepClock::at("2019-08-23T05:00:00Z");
    let yaml = format!(
        r#"
sources:
  feeds:
    type: status_feed
    feeds:
      - {{ name: aws, provider: aws, url: "http://127.0.0.1:{port}/aws.rss", services: [ec2] }}
      - {{ name: gcp, provider: gcp, url: "http://127.0.0.1:{port}/incidents.json", format: gcp_incidents_json }}
      - {{ name: azure, provider: azure, url: "http://127.0.0.1:{port}/azure" }}
"#
    );
    let r = run(&yaml, &clock, dir.path(), CaptureSink::default()).await;
    let ia = "インスタンスの接続性について | Instance Availability";
    let sm = "Secret Manager experienced service unavailability in europe-west2";
    let vm = "Virtual Machines/VM Scale Sets - East US 2";

    r.polled(1).await;
    assert_eq!(
        r.lines(0),
        [
            format!("{ia} firing informational message medium"),
            format!("{sm} firing service_outage medium"),
            format!("{vm} firing active medium"),
        ]
    );
    let events = r.events();
    assert_eq!(
        (events[0]["service"].as_str(), events[0]["region"].as_str()),
        (Some("ec2"), Some("ap-northeast-1"))
    );
    assert_eq!(events[0]["source"], "aws");
    assert_eq!(events[0]["starts_at"], "2019-08-23T04:18:32Z");
    assert_eq!(
        (events[1]["service"].as_str(), events[1]["region"].as_str()),
        (Some("Secret Manager"), Some("europe-west2"))
    );
    assert_eq!(
        events[1]["url"],
        "https://status.cloud.google.com/incidents/mLBHeCxhRia17anXCSX1"
    );
    assert_eq!(
        (events[2]["service"].as_str(), events[2]["region"].as_str()),
        (Some("Virtual Machines/VM Scale Sets"), Some("East US 2"))
    );

    // GCP sets `end`; Azure's feed is all clear. AWS unchanged: If-Modified-Since, 304.
    server.serve("/incidents.json", &gcp_doc(1));
    server.serve("/azure", &azure_clear);
    r.check().await;
    assert_eq!(
        r.lines(3),
        [
            format!("{sm} resolved available medium"),
            format!("{vm} resolved resolved medium"),
        ]
    );
    let aws_hits = server.hits("/aws.rss");
    assert_eq!(aws_hits[1].status, 304);
    assert_eq!(
        aws_hits[1].if_modified_since.as_deref(),
        Some("Fri, 23 Aug 2019 04:18:32 GMT")
    );
    let events = r.events();
    assert_eq!(events[3]["ends_at"], "2022-07-10T15:47:00Z");
    assert_eq!(events[3]["fingerprint"], events[1]["fingerprint"]);
    assert_eq!(
        events[4]["ends_at"], "2019-08-23T05:00:00Z",
        "when it left the feed"
    );
    assert_eq!(events[4]["fingerprint"], events[2]["fingerprint"]);

    // AWS: degradation (severity up), then informational again (down), then resolved.
    aws_version(&server, rss(&items[1..]), "Fri, 23 Aug 2019 08:54:51 GMT");
    r.check().await;
    aws_version(&server, rss(&items[0..]), "Fri, 23 Aug 2019 09:39:42 GMT");
    r.check().await;
    let mut newest = vec![resolution, sms];
    newest.extend_from_slice(&items);
    aws_version(&server, rss(&newest), "Fri, 23 Aug 2019 11:10:00 GMT");
    r.check().await;
    assert_eq!(
        r.lines(5),
        [
            format!("{ia} firing service degradation high"),
            format!("{ia} firing informational message medium"),
            format!("{ia} resolved service is operating normally medium"),
        ]
    );
    let events = r.events();
    assert_eq!(events.len(), 8, "nothing from the filtered SNS incident");
    let aws_fps: Vec<&Value> = [0, 5, 6, 7]
        .iter()
        .map(|&i| &events[i]["fingerprint"])
        .collect();
    assert!(aws_fps.iter().all(|f| *f == aws_fps[0]));
    assert_eq!(events[7]["ends_at"], "2019-08-23T11:10:00Z");
    assert_eq!(events[7]["labels"]["updates"], "4");
    let (_, snap) = r.get("/status_feeds/feeds").await;
    assert_eq!(snap["open_incidents"], serde_json::json!([]));
    r.stop().await;
}

/// Scheduled polls, ticked one by one: the interval with ±10% jitter, waits that
/// double while the feed fails, `Retry-After` honoured, and back to the interval.
#[tokio::test]
async fn scheduled_polls_jitter_and_back_off() {
    let ongoing = fixture("statuspage_githubstatus_history.atom_excerpt_ongoing_incident.xml");
    let server = FeedServer::default();
    let port = server.start().await;
    server.serve(GITHUB, &ongoing);
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = StepClock::at("2026-07-09T07:00:00Z");
    let yaml = format!(
        r#"
sources:
  feeds:
    type: status_feed
    interval: 60s
    max_backoff: 10m
    feeds:
      - {{ name: github, provider: statuspage, url: "http://127.0.0.1:{port}{GITHUB}" }}
"#
    );
    let r = run(&yaml, &clock, dir.path(), CaptureSink::default()).await;
    let sleeps = |n: usize| {
        let clock = clock.clone();
        async move {
            eventually(&format!("{n} sleeps"), || clock.sleeps().len() >= n).await;
            clock.sleeps()[n - 1]
        }
    };
    let within = |w: Duration, lo: u64, hi: u64| {
        assert!(
            w >= Duration::from_secs(lo) && w <= Duration::from_secs(hi),
            "{w:?} not in [{lo}s, {hi}s]"
        );
    };
    // After the first poll (at start): the interval, jittered.
    within(sleeps(1).await, 54, 66);
    server.update(GITHUB, |d| d.status = Some(503));
    clock.tick();
    within(sleeps(2).await, 60, 120);
    clock.tick();
    within(sleeps(3).await, 120, 240);
    server.update(GITHUB, |d| {
        d.status = Some(429);
        d.retry_after = Some("500".into());
    });
    clock.tick();
    assert_eq!(sleeps(4).await, Duration::from_secs(500), "Retry-After");
    clock.tick();
    within(sleeps(5).await, 300, 600);
    let (_, snap) = r.get("/status_feeds/feeds").await;
    assert_eq!(snap["feeds"][0]["consecutive_errors"], 4);
    assert!(
        snap["feeds"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("HTTP 429")),
        "{snap}"
    );
    assert_eq!(
        r.metric(
            "sluice_status_feed_errors_total{component_id=\"feeds\",component_kind=\"source\",component_type=\"status_feed\",feed=\"github\",reason=\"http_status\"}"
        ),
        Some(4.0)
    );
    server.update(GITHUB, |d| {
        d.status = None;
        d.retry_after = None;
    });
    clock.tick();
    within(sleeps(6).await, 54, 66);
    let hits = server.hits(GITHUB);
    assert_eq!(
        hits.iter().map(|h| h.status).collect::<Vec<_>>(),
        [200, 503, 503, 429, 429, 304],
        "six polls, one per tick"
    );
    let (_, snap) = r.get("/status_feeds/feeds").await;
    assert_eq!(snap["feeds"][0]["state"], "ok");
    assert_eq!(
        snap["feeds"][0]["last_success"],
        (t("2026-07-09T07:00:00Z")
            + chrono::Duration::from_std(clock.sleeps()[..5].iter().sum::<Duration>())
                .expect("duration"))
        .to_rfc3339()
    );
    assert_eq!(r.events().len(), 1, "errors emit nothing");
    r.stop().await;
}
