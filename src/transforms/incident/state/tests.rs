//! The state machine's unit tests.

use super::*;

fn timing() -> Timing {
    Timing::default()
}

fn incident(now: i64) -> Incident {
    Incident::open(
        "i1".into(),
        String::new(),
        now,
        "high".into(),
        Some("grafana".into()),
        Value::Null,
    )
}

#[test]
fn repeats_update_without_a_notification_and_escalation_is_one() {
    let mut i = incident(0);
    assert_eq!(i.announce(0), Some((Action::Opened, None)));
    assert_eq!(
        i.fire(10, "low", Some("alertmanager"), Value::Null),
        Sighting::Repeat
    );
    assert_eq!(i.pending, None, "a repeat is not a page");
    assert_eq!((i.count, i.last_seen, i.severity.as_str()), (2, 10, "high"));
    assert_eq!(i.vendors.len(), 2);
    i.fire(20, "critical", None, Value::Null);
    assert_eq!(
        i.announce(20),
        Some((Action::Updated, Some("severity".into())))
    );
}

#[test]
fn a_resolve_held_and_cancelled_by_a_firing_is_a_flap() {
    let t = Timing {
        resolve_hold: 60_000,
        ..timing()
    };
    let mut i = incident(0);
    i.announce(0);
    assert_eq!(i.resolve_seen(5_000, Value::Null, &t), Sighting::Held);
    assert!(!i.tick(30_000, &t));
    assert_eq!(i.fire(40_000, "high", None, Value::Null), Sighting::Repeat);
    assert_eq!((i.flaps, i.pending), (1, None));
    i.resolve_seen(50_000, Value::Null, &t);
    assert!(i.tick(110_000, &t), "quiet for resolve_hold");
    assert_eq!(i.announce(110_000), Some((Action::Resolved, None)));
}

#[test]
fn a_firing_after_a_resolve_reopens_within_the_flap_window_and_is_new_after_it() {
    let t = Timing {
        flap_window: 60_000,
        ..timing()
    };
    let mut i = incident(0);
    i.announce(0);
    i.resolve_seen(10_000, Value::Null, &t);
    i.announce(10_000);
    assert!(!i.is_over(20_000, &t));
    assert_eq!(
        i.fire(20_000, "high", None, Value::Null),
        Sighting::Reopened
    );
    assert_eq!(i.announce(20_000), Some((Action::Reopened, None)));
    i.resolve_seen(30_000, Value::Null, &t);
    i.announce(30_000);
    assert!(!i.is_done(80_000, &t));
    assert!(i.is_done(90_000, &t));
    assert!(i.is_over(90_000, &t), "a new incident");
}

#[test]
fn an_unannounced_open_needs_no_resolve_and_an_unheard_resolve_is_taken_back() {
    let t = timing();
    let mut i = incident(0);
    i.resolve_seen(1, Value::Null, &t);
    assert_eq!(i.pending, None);
    assert!(i.is_done(1, &t));

    let mut i = incident(0);
    i.announce(0);
    i.resolve_seen(1, Value::Null, &t);
    assert_eq!(i.pending, Some(Action::Resolved));
    assert!(!i.is_over(2, &t));
    assert_eq!(i.fire(2, "high", None, Value::Null), Sighting::Reopened);
    assert_eq!(i.pending, None, "the listener never heard it close");
}

#[test]
fn resolve_after_and_repeat_interval_fire_on_ticks() {
    let t = Timing {
        resolve_after: 100,
        repeat_interval: 40,
        ..timing()
    };
    let mut i = incident(0);
    i.announce(0);
    assert!(i.tick(40, &t));
    assert_eq!(
        i.announce(40),
        Some((Action::Updated, Some("repeat_interval".into())))
    );
    assert!(i.tick(100, &t));
    assert_eq!(
        i.announce(100),
        Some((Action::Resolved, Some("resolve_after".into())))
    );
    assert_eq!(
        i.resolve_seen(101, Value::Null, &t),
        Sighting::DuplicateResolve
    );
}

#[test]
fn acknowledging_keeps_an_unannounced_open_and_is_once() {
    let mut i = incident(0);
    assert!(i.acknowledge(0));
    assert!(!i.acknowledge(0));
    assert_eq!(i.announce(0), Some((Action::Opened, None)));
    assert_eq!(
        i.announce(0),
        Some((Action::Acknowledged, None)),
        "the acknowledgement follows the opening"
    );
    assert_eq!(i.announce(0), None);
    let mut i = incident(0);
    i.announce(0);
    i.acknowledge(1);
    let whats: Vec<&str> = i.timeline.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(whats, ["opened", "acknowledged"]);
    assert_eq!(i.announce(1), Some((Action::Acknowledged, None)));
}

#[test]
fn an_acknowledgement_does_not_replace_an_update_nobody_heard() {
    let mut i = incident(0);
    i.announce(0);
    i.severity = "low".into();
    i.fire(1, "critical", None, Value::Null);
    assert!(i.acknowledge(2));
    assert_eq!(i.announce(3).map(|(a, _)| a), Some(Action::Acknowledged));
    assert_eq!(i.announce(3).map(|(a, _)| a), Some(Action::Updated));
    assert!(i.still_holds(Action::Acknowledged) && !i.still_holds(Action::Resolved));
}
