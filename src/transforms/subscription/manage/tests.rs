//! Subscriptions made through the API, on a transform built here: they route from the
//! next batch, share outputs without doubling events, are refused by name when wrong,
//! survive a rebuild from their file, and step aside (listed, matching nothing) when the
//! pipeline file takes their name.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use super::*;
use crate::clock::ManualClock;
use crate::component::{Transform, TransformConfig, TransformContext, TransformOutputs};
use crate::telemetry::{ComponentKind, Telemetry};
use crate::transforms::subscription::SubscriptionConfig;
use crate::transforms::subscription::catalog::CATALOGS;

const CONFIG: &str = r#"{ subscriptions: [ { name: prod, custom_filters: { env: prod } } ], api_outputs: [ hooks, chat ] }"#;

fn build(id: &str, yaml: &str, data_dir: &Path) -> (Box<dyn Transform>, Vec<String>) {
    build_at(id, yaml, data_dir, &ManualClock::default())
}

fn build_at(
    id: &str,
    yaml: &str,
    data_dir: &Path,
    clock: &ManualClock,
) -> (Box<dyn Transform>, Vec<String>) {
    let config: SubscriptionConfig = serde_saphyr::from_str(yaml).expect("config");
    let cx = TransformContext {
        id: Arc::from(id),
        metrics: Telemetry::new().component(id, ComponentKind::Transform, "subscription"),
        clock: Arc::new(clock.clone()),
        data_dir: Some(data_dir.to_path_buf()),
        file_notices: Default::default(),
    };
    (config.build(&cx).expect("builds"), config.outputs())
}

fn catalog(id: &str) -> Arc<Catalog> {
    CATALOGS
        .all()
        .into_iter()
        .find(|(i, _)| i == id)
        .map(|(_, c)| c)
        .expect("the running transform is listed")
}

fn event(n: i64, service: &str, env: &str) -> Event {
    let value: Value = serde_json::from_value(json!({
        "n": n, "event_type": "alert", "service": service, "severity": "critical",
        "labels": { "env": env },
    }))
    .expect("value");
    Event::new(value, crate::event::SourceId::intern("in"), Utc::now())
}

/// Event numbers per output name.
fn route(
    t: &mut Box<dyn Transform>,
    outputs: &[String],
    batch: Vec<Event>,
) -> Vec<(String, Vec<i64>)> {
    let mut out = TransformOutputs::new(outputs.len());
    t.process(batch, &mut out);
    outputs
        .iter()
        .zip(out.named)
        .map(|(name, events)| {
            let ns = events
                .iter()
                .filter_map(|e| e.get("n").and_then(|v| v.as_integer()))
                .collect();
            (name.clone(), ns)
        })
        .collect()
}

fn on<'a>(routed: &'a [(String, Vec<i64>)], output: &str) -> &'a [i64] {
    routed
        .iter()
        .find(|(n, _)| n == output)
        .map(|(_, v)| v.as_slice())
        .expect("output")
}

fn refused_with(r: Result<Json, Refusal>) -> String {
    match r {
        Err(Refusal::Invalid(e)) => format!("invalid: {e}"),
        Err(Refusal::Conflict(e)) => format!("conflict: {e}"),
        Err(Refusal::Missing(e)) => format!("missing: {e}"),
        Err(Refusal::Storage(e)) => format!("storage: {e}"),
        Ok(d) => panic!("accepted: {d}"),
    }
}

#[test]
fn made_subscriptions_route_share_outputs_survive_a_rebuild_and_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = "route-manage-1";
    let (mut t, outputs) = build(id, CONFIG, dir.path());
    assert_eq!(outputs, ["prod", "hooks", "chat", "_unmatched"]);
    let c = catalog(id);

    let routed = route(&mut t, &outputs, vec![event(1, "checkout", "dev")]);
    assert_eq!(on(&routed, "_unmatched"), [1]);

    let made = create(
        &c,
        &json!({"name": "checkout", "services": ["checkout"], "output": "hooks"}),
    )
    .expect("created");
    assert_eq!(made["managed_by"], "api");
    assert_eq!(made["output"], format!("{id}.hooks"));
    let sub_id = made["id"].as_str().expect("id").to_owned();
    // A second one on the same output: an event both match goes out once.
    create(
        &c,
        &json!({"name": "critical", "severity_levels": ["critical"], "output": "hooks"}),
    )
    .expect("created");
    let routed = route(
        &mut t,
        &outputs,
        vec![event(2, "checkout", "dev"), event(3, "search", "prod")],
    );
    assert_eq!(on(&routed, "hooks"), [2, 3], "each once, in order");
    assert_eq!(on(&routed, "prod"), [3]);
    assert!(on(&routed, "_unmatched").is_empty());

    // Refusals name the problem and change nothing.
    for (body, says) in [
        (
            json!({"name": "prod", "output": "hooks"}),
            "conflict: the pipeline file declares",
        ),
        (
            json!({"name": "checkout", "output": "chat"}),
            "conflict: a subscription named `checkout`",
        ),
        (
            json!({"name": "x", "output": "pager"}),
            "invalid: `output` `pager` is not one of",
        ),
        (json!({"name": "x"}), "invalid: name the `output`"),
        (
            json!({"name": "x.y", "output": "chat"}),
            "invalid: subscription name `x.y`",
        ),
        (
            json!({"name": "x", "output": "chat", "colour": 1}),
            "unknown field `colour`",
        ),
        (
            json!({"name": "x", "output": "chat", "condition": "1 +"}),
            "`condition`",
        ),
        (
            json!({"name": "x", "output": "chat", "auto_resolve": true, "resolve_after_hours": -1}),
            "resolve_after_hours",
        ),
        (
            json!({"name": "x", "output": "chat", "services": vec!["s"; 101]}),
            "more than 100",
        ),
        (
            json!({"name": "x".repeat(257), "output": "chat"}),
            "longer than 256",
        ),
        (
            json!({"name": "pro\u{200b}d", "output": "chat"}),
            "letters, digits",
        ),
        (json!({"name": "a b", "output": "chat"}), "letters, digits"),
        (
            json!({"name": "x", "output": "chat", "resolve_after_hours": -1}),
            "resolve_after_hours",
        ),
        (
            json!({"name": "x", "output": "chat", "custom_filters": [r#"l =~ "\pL{95}\pL{95}""#]}),
            "size limit",
        ),
        (
            json!({"name": "x", "output": "chat", "custom_filters": (0..9).map(|i| format!("l{i} =~ a")).collect::<Vec<_>>()}),
            "more than 8 regex",
        ),
    ] {
        let why = refused_with(create(&c, &body));
        assert!(why.contains(says), "{body}: {why}");
    }
    assert_eq!(all(&c).len(), 3, "the file's one and the two made");

    // Changed: it moves to `chat` and matches another service.
    let changed = replace(
        &c,
        &sub_id,
        &json!({"name": "checkout", "services": ["payments"], "output": "chat"}),
    )
    .expect("replaced");
    assert_eq!(changed["output"], format!("{id}.chat"));
    let routed = route(&mut t, &outputs, vec![event(4, "payments", "dev")]);
    assert_eq!(on(&routed, "chat"), [4]);
    assert_eq!(on(&routed, "hooks"), [4], "`critical` still matches it");

    // Its recent matches, and a test against the recent events.
    let (spec, _) = find(&c, &sub_id).expect("found");
    let seen = matched(&c, &spec, 10);
    assert_eq!(seen["count"], 1, "{seen}");
    assert_eq!(seen["events"][0]["event"]["n"], 4);
    let tested = test(&c, &spec).expect("tested");
    assert_eq!(tested["recent"]["checked"], 4, "{tested}");
    assert_eq!(tested["recent"]["matched"], 1);
    assert_eq!(tested["sample"]["matched"], true);
    assert_eq!(tested["sample"]["event"]["service"], "payments");

    // A rebuild (a reload, or a restart once the last instance is gone) reads them back.
    drop(t);
    let (mut t, outputs) = build(id, CONFIG, dir.path());
    let routed = route(&mut t, &outputs, vec![event(5, "payments", "dev")]);
    assert_eq!(on(&routed, "chat"), [5]);
    let c = catalog(id);
    delete(&c, &sub_id).expect("deleted");
    assert!(matches!(delete(&c, &sub_id), Err(Refusal::Missing(_))));
    let routed = route(&mut t, &outputs, vec![event(6, "payments", "dev")]);
    assert!(on(&routed, "chat").is_empty());
    assert_eq!(on(&routed, "hooks"), [6]);
    let stored =
        std::fs::read_to_string(super::super::api_list::path(dir.path(), id)).expect("file");
    assert!(
        !stored.contains(&sub_id) && stored.contains("critical"),
        "{stored}"
    );
}

#[test]
fn a_made_subscription_the_file_takes_the_name_of_steps_aside_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = "route-manage-2";
    let (mut t, outputs) = build(id, CONFIG, dir.path());
    let c = catalog(id);
    let made = create(&c, &json!({"name": "later", "output": "hooks"})).expect("created");
    let sub_id = made["id"].as_str().expect("id");
    // The pipeline's subscription file now declares `later` (swapped in as a file change).
    let mut file: Vec<SubscriptionSpec> = c.file_specs().as_ref().clone();
    file.push(
        serde_json::from_value(json!({"name": "later", "services": ["none"]})).expect("spec"),
    );
    c.set_file(file).expect("swapped");
    let (_, d) = find(&c, sub_id).expect("still listed");
    assert_eq!(d["active"], false);
    assert!(
        d["problem"]
            .as_str()
            .expect("problem")
            .contains("now declares"),
        "{d}"
    );
    let routed = route(&mut t, &outputs, vec![event(1, "checkout", "dev")]);
    assert!(on(&routed, "hooks").is_empty(), "it matches nothing now");
    assert_eq!(on(&routed, "_unmatched"), [1]);
}

#[test]
fn a_transform_without_api_outputs_takes_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = "route-manage-3";
    let (_t, _) = build(id, r#"{ subscriptions: [ { name: prod } ] }"#, dir.path());
    let why = refused_with(create(&catalog(id), &json!({"name": "x"})));
    assert!(
        why.starts_with("conflict:") && why.contains("api_outputs"),
        "{why}"
    );
}

/// Auto-resolves of a subscription made through the API belong to it (by id), and go
/// where its firing went: a subscription moved to another output resolves on the old
/// one, and a new one taking a deleted one's name inherits nothing.
#[test]
fn auto_resolves_follow_the_subscription_and_the_output_the_firing_left_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = "route-manage-4";
    let clock = ManualClock::default();
    let (mut t, outputs) = build_at(id, CONFIG, dir.path(), &clock);
    let c = catalog(id);
    let firing = |n: i64, fp: &str| {
        let mut e = event(n, "checkout", "dev");
        if let Value::Object(m) = e.value_mut() {
            m.insert("status".into(), Value::from("firing"));
            m.insert("fingerprint".into(), Value::from(fp));
        }
        e
    };
    let flush = |t: &mut Box<dyn Transform>| {
        let mut out = TransformOutputs::new(outputs.len());
        t.flush(&mut out);
        outputs
            .iter()
            .zip(out.named)
            .map(|(name, events)| {
                let fps: Vec<String> = events
                    .iter()
                    .filter_map(|e| {
                        e.get("fingerprint")
                            .map(|v| v.to_string_lossy().into_owned())
                    })
                    .collect();
                (name.clone(), fps)
            })
            .collect::<Vec<_>>()
    };
    let made = create(&c, &json!({"name": "ar", "services": ["checkout"], "output": "chat", "auto_resolve": true, "resolve_after_hours": 1})).expect("created");
    let first = made["id"].as_str().expect("id").to_owned();
    let routed = route(&mut t, &outputs, vec![firing(1, "fp-moved")]);
    assert_eq!(on(&routed, "chat"), [1]);
    // Moved to `hooks`: its open alert is on `chat`, and resolves there.
    replace(&c, &first, &json!({"name": "ar", "services": ["checkout"], "output": "hooks", "auto_resolve": true, "resolve_after_hours": 1})).expect("replaced");
    clock.advance(std::time::Duration::from_secs(3601));
    let due = flush(&mut t);
    let chat = &due.iter().find(|(n, _)| n == "chat").expect("chat").1;
    let hooks = &due.iter().find(|(n, _)| n == "hooks").expect("hooks").1;
    assert_eq!(chat, &["fp-moved"], "{due:?}");
    assert!(hooks.is_empty(), "{due:?}");

    // Deleted with an alert open; a new `ar` on `hooks` does not inherit its timer.
    route(&mut t, &outputs, vec![firing(2, "fp-deleted")]);
    delete(&c, &first).expect("deleted");
    create(&c, &json!({"name": "ar", "services": ["nothing"], "output": "hooks", "auto_resolve": true, "resolve_after_hours": 1})).expect("created");
    clock.advance(std::time::Duration::from_secs(3601));
    let due = flush(&mut t);
    assert!(due.iter().all(|(_, fps)| fps.is_empty()), "{due:?}");
}

#[test]
fn regex_matchers_are_budgeted_over_all_made_subscriptions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = "route-manage-5";
    let (_t, _) = build(id, CONFIG, dir.path());
    let c = catalog(id);
    let eight = |n: usize| {
        json!({"name": format!("rx{n}"), "output": "chat",
            "custom_filters": (0..8).map(|i| format!("l{i} =~ \"web-{n}-.*\"")).collect::<Vec<_>>()})
    };
    for n in 0..25 {
        create(&c, &eight(n)).expect("within the budget");
    }
    let why = refused_with(create(&c, &eight(25)));
    assert!(why.contains("more than 200 regex"), "{why}");
    // Equality matchers are not counted.
    create(
        &c,
        &json!({"name": "plain", "output": "chat", "custom_filters": {"env": "prod"}}),
    )
    .expect("no regex");
}
