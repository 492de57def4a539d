//! The feed state's tests, apart so `state.rs` reads as the state and the plan alone.

use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn cx(initial: Initial, now: &str) -> PlanContext {
    PlanContext {
        feed: "f".into(),
        provider: Provider::Statuspage,
        default_severity: Severity::Medium,
        initial,
        resolve_missing: false,
        retention: chrono::Duration::days(30),
        now: t(now),
    }
}

fn incident(key: &str, status: Status, phase: &str, updated: &str) -> Incident {
    Incident {
        key: key.into(),
        status,
        phase: phase.into(),
        severity: None,
        summary: format!("incident {key}"),
        description: None,
        service: None,
        region: None,
        url: None,
        starts_at: None,
        updated: Some(t(updated)),
        ends_at: (status == Status::Resolved).then(|| t(updated)),
        labels: BTreeMap::new(),
        raw: serde_json::Value::Null,
    }
}

/// Plans, then commits every emitted record (as if all were delivered).
fn step(state: &mut FeedState, list: Vec<Incident>, cx: &PlanContext) -> Vec<String> {
    let plan = plan(state, list, cx);
    *state = plan.state;
    plan.emits
        .into_iter()
        .map(|e| {
            let label = format!("{} {} {}", e.key, e.seen.status.as_str(), e.seen.phase);
            state.incidents.insert(e.key, e.seen);
            label
        })
        .collect()
}

#[test]
fn initial_modes() {
    let list = || {
        vec![
            incident("a", Status::Firing, "investigating", "2026-07-09T06:00:00Z"),
            incident("b", Status::Resolved, "resolved", "2026-07-07T16:17:00Z"),
        ]
    };
    let now = "2026-07-09T07:00:00Z";
    for (initial, want) in [
        (Initial::SkipExisting, vec![]),
        (Initial::EmitOpen, vec!["a firing investigating"]),
        (
            Initial::EmitAll,
            vec!["b resolved resolved", "a firing investigating"],
        ),
    ] {
        let mut state = FeedState::default();
        assert_eq!(
            step(&mut state, list(), &cx(initial, now)),
            want,
            "{initial:?}"
        );
        assert_eq!(state.incidents.len(), 2, "everything is remembered");
        assert!(
            step(&mut state, list(), &cx(initial, now)).is_empty(),
            "{initial:?}: never twice"
        );
    }
}

#[test]
fn stages_severities_resolution_and_reopening() {
    let cx = cx(Initial::EmitOpen, "2026-07-09T07:00:00Z");
    let mut state = FeedState::default();
    let a = |status, phase: &str, updated: &str| incident("a", status, phase, updated);
    assert_eq!(
        step(
            &mut state,
            vec![a(Status::Firing, "investigating", "2026-07-09T06:00:00Z")],
            &cx
        ),
        ["a firing investigating"]
    );
    // An `updated` that moved without a new stage is not news.
    assert!(
        step(
            &mut state,
            vec![a(Status::Firing, "investigating", "2026-07-09T06:30:00Z")],
            &cx
        )
        .is_empty()
    );
    assert_eq!(
        step(
            &mut state,
            vec![a(Status::Firing, "identified", "2026-07-09T06:40:00Z")],
            &cx
        ),
        ["a firing identified"]
    );
    let mut worse = a(Status::Firing, "identified", "2026-07-09T06:50:00Z");
    worse.severity = Some(Severity::Critical);
    assert_eq!(step(&mut state, vec![worse], &cx), ["a firing identified"]);
    assert_eq!(state.incidents["a"].severity, "critical");
    assert_eq!(
        step(
            &mut state,
            vec![a(Status::Resolved, "resolved", "2026-07-09T07:00:00Z")],
            &cx
        ),
        ["a resolved resolved"]
    );
    assert_eq!(
        state.incidents["a"].severity, "critical",
        "a resolution keeps the severity it had"
    );
    assert!(
        step(
            &mut state,
            vec![a(Status::Resolved, "postmortem", "2026-07-10T07:00:00Z")],
            &cx
        )
        .is_empty()
    );
    assert_eq!(
        step(
            &mut state,
            vec![a(Status::Firing, "investigating", "2026-07-11T07:00:00Z")],
            &cx
        ),
        ["a firing investigating"],
        "reopened"
    );
}

#[test]
fn new_incidents_after_the_baseline() {
    let mut state = FeedState::default();
    let cx0 = cx(Initial::EmitOpen, "2026-07-09T07:00:00Z");
    assert!(step(&mut state, vec![], &cx0).is_empty());
    let later = cx(Initial::EmitOpen, "2026-07-10T07:00:00Z");
    let got = step(
        &mut state,
        vec![
            // Over before we started watching: history, not news.
            incident("old", Status::Resolved, "resolved", "2026-07-01T00:00:00Z"),
            // Began and ended between two polls.
            incident(
                "short",
                Status::Resolved,
                "resolved",
                "2026-07-09T08:00:00Z",
            ),
            incident(
                "new",
                Status::Firing,
                "investigating",
                "2026-07-10T06:00:00Z",
            ),
        ],
        &later,
    );
    assert_eq!(got, ["short resolved resolved", "new firing investigating"]);
    assert!(state.incidents.contains_key("old"));
}

#[test]
fn missing_incidents_resolve_only_where_the_feed_lists_open_ones() {
    let mut cx = cx(Initial::EmitOpen, "2026-07-09T07:00:00Z");
    let mut state = FeedState::default();
    let a = incident("a", Status::Firing, "active", "2026-07-09T06:00:00Z");
    assert_eq!(step(&mut state, vec![a.clone()], &cx), ["a firing active"]);
    assert!(
        step(&mut state, vec![], &cx).is_empty(),
        "a history feed dropped it"
    );
    cx.resolve_missing = true;
    assert_eq!(step(&mut state, vec![], &cx), ["a resolved resolved"]);
    assert!(step(&mut state, vec![], &cx).is_empty());
    cx.now += chrono::Duration::days(31);
    assert!(step(&mut state, vec![], &cx).is_empty());
    assert!(state.incidents.is_empty(), "forgotten after the retention");
}

#[test]
fn events_follow_the_schema() {
    let cx = cx(Initial::EmitOpen, "2026-07-09T07:00:00Z");
    let mut i = incident(
        "tag:x,2005:Incident/1",
        Status::Resolved,
        "resolved",
        "2026-07-09T06:00:00Z",
    );
    i.service = Some("Actions".into());
    i.labels.insert("impact".into(), "major".into());
    let plan = plan(
        &FeedState {
            baseline: Some(t("2026-07-01T00:00:00Z")),
            ..FeedState::default()
        },
        vec![i],
        &cx,
    );
    let event = serde_json::to_value(plan.emits[0].event(&cx, true)).expect("json");
    assert_eq!(event["kind"], "outage");
    assert_eq!(event["event_type"], "alert");
    assert_eq!(event["source"], "statuspage");
    assert_eq!(event["status"], "resolved");
    assert_eq!(event["severity"], "medium");
    assert_eq!(event["service"], "Actions");
    assert_eq!(event["region"], serde_json::Value::Null);
    assert_eq!(event["labels"]["feed"], "f");
    assert_eq!(event["labels"]["phase"], "resolved");
    assert_eq!(event["labels"]["impact"], "major");
    assert_eq!(event["time"], "2026-07-09T06:00:00Z");
    assert_eq!(event["ends_at"], "2026-07-09T06:00:00Z");
    assert_eq!(
        event["fingerprint"],
        fingerprint(Provider::Statuspage, "tag:x,2005:Incident/1")
    );
    assert_eq!(event["fingerprint"].as_str().map(str::len), Some(32));
    let again = serde_json::to_value(plan.emits[0].event(&cx, false)).expect("json");
    assert_eq!(again["id"], event["id"], "the same change has the same id");
    assert!(again.get("raw").is_none());
}

#[test]
fn state_round_trips_through_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("status_feed-x.json");
    assert_eq!(
        load(&path).expect("missing is empty"),
        SourceState::default()
    );
    let mut s = SourceState::default();
    let mut feed = FeedState {
        etag: Some("\"v1\"".into()),
        ..FeedState::default()
    };
    step(
        &mut feed,
        vec![incident(
            "a",
            Status::Firing,
            "investigating",
            "2026-07-09T06:00:00Z",
        )],
        &cx(Initial::EmitOpen, "2026-07-09T07:00:00Z"),
    );
    s.feeds.insert("github".into(), feed);
    save(&path, &s).expect("save");
    assert_eq!(load(&path).expect("load"), s);
    std::fs::write(&path, b"{").expect("write");
    assert!(matches!(load(&path), Err(StateError::Corrupt { .. })));
}
