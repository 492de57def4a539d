//! The subscription set's tests, apart so `set.rs` reads as the set alone.

use super::*;
use proptest::prelude::*;

fn event(pairs: &[(&str, &str)], labels: &[(&str, &str)]) -> Value {
    let mut map = ObjectMap::new();
    for (k, v) in pairs {
        map.insert((*k).into(), Value::from(*v));
    }
    let mut l = ObjectMap::new();
    for (k, v) in labels {
        l.insert((*k).into(), Value::from(*v));
    }
    map.insert("labels".into(), Value::Object(l));
    Value::Object(map)
}

fn spec(name: &str) -> SubscriptionSpec {
    SubscriptionSpec {
        name: name.into(),
        project_id: None,
        event_types: vec![],
        services: vec![],
        regions: vec![],
        severity_levels: vec![],
        custom_filters: CustomFilters::default(),
        enabled: true,
        auto_resolve: false,
        resolve_after_hours: 24.0,
        condition: None,
    }
}

fn hits<'a>(set: &'a SubscriptionSet, v: &Value) -> Vec<&'a str> {
    let mut out = Vec::new();
    set.matching(&Fields::of(v), &mut out);
    out.iter().map(|&i| &*set.subs[i as usize].name).collect()
}

#[test]
fn each_criterion_narrows_and_empty_criteria_match_everything() {
    let mut crit = spec("crit");
    crit.event_types = vec!["alert".into()];
    crit.severity_levels = vec!["critical".into(), "high".into()];
    crit.custom_filters = CustomFilters(vec![Matcher::equal("env", "prod")]);
    let mut proj = spec("proj");
    proj.project_id = Some("p1".into());
    proj.regions = vec!["eu".into()];
    let mut off = spec("off");
    off.enabled = false;
    let set = SubscriptionSet::compile(&[spec("all"), crit, proj, off]).expect("compiles");
    let e = event(
        &[
            ("event_type", "alert"),
            ("severity", "high"),
            ("project", "p1"),
            ("region", "eu"),
        ],
        &[("env", "prod")],
    );
    assert_eq!(hits(&set, &e), vec!["all", "crit", "proj"]);
    let e = event(
        &[("event_type", "alert"), ("severity", "low")],
        &[("env", "prod")],
    );
    assert_eq!(hits(&set, &e), vec!["all"]);
    let e = event(
        &[("event_type", "alert"), ("severity", "critical")],
        &[("env", "dev")],
    );
    assert_eq!(hits(&set, &e), vec!["all"], "label mismatch");
    let e = event(&[("project", "p1"), ("region", "us")], &[]);
    assert_eq!(hits(&set, &e), vec!["all"], "region mismatch");
    assert_eq!(hits(&set, &Value::from("not an object")), vec!["all"]);
}

#[test]
fn bad_names_and_durations_are_refused() {
    for name in ["", "a.b", UNMATCHED] {
        let e = SubscriptionSet::compile(&[spec(name)]).expect_err(name);
        assert!(e.0.contains("subscription name"), "{e}");
    }
    let e = SubscriptionSet::compile(&[spec("x"), spec("x")]).expect_err("dup");
    assert!(e.0.contains("used twice"), "{e}");
    let mut s = spec("x");
    s.auto_resolve = true;
    s.resolve_after_hours = 0.0;
    let e = SubscriptionSet::compile(&[s]).expect_err("zero");
    assert!(e.0.contains("`resolve_after_hours`"), "{e}");
    let mut s = spec("x");
    s.resolve_after_hours = f64::NAN;
    assert!(
        SubscriptionSet::compile(&[s.clone()]).is_ok(),
        "unused when not auto-resolving"
    );
    s.auto_resolve = true;
    assert!(SubscriptionSet::compile(&[s]).is_err());
    let mut s = spec("x");
    s.condition = Some(".a + 1".into());
    let e = SubscriptionSet::compile(&[s]).expect_err("not boolean");
    assert!(e.0.contains("subscription `x`: `condition`"), "{e}");
}

#[test]
fn custom_filters_read_as_a_map_or_a_matcher_list() {
    let s: SubscriptionSpec =
        serde_json::from_str(r#"{"name":"a","custom_filters":{"env":"prod","tier":2,"on":true}}"#)
            .expect("map");
    let texts: Vec<String> = s.custom_filters.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        texts,
        vec![r#"env = "prod""#, r#"tier = "2""#, r#"on = "true""#]
    );
    let s: SubscriptionSpec = serde_json::from_str(
        r#"{"name":"a","custom_filters":["env != prod","host =~ \"web-.*\""]}"#,
    )
    .expect("list");
    assert_eq!(s.custom_filters.0.len(), 2);
    let e =
        serde_json::from_str::<SubscriptionSpec>(r#"{"name":"a","custom_filters":["env ~ prod"]}"#)
            .expect_err("bad matcher");
    assert!(e.to_string().contains("matcher"), "{e}");
}

#[test]
fn a_subscription_with_many_values_is_capped_but_still_exact() {
    let mut wide = spec("wide");
    wide.services = (0..100).map(|i| format!("svc{i}")).collect();
    wide.severity_levels = vec!["critical".into(), "high".into()];
    let set = SubscriptionSet::compile(&[wide]).expect("compiles");
    let e = event(&[("service", "svc42"), ("severity", "high")], &[]);
    assert_eq!(hits(&set, &e), vec!["wide"]);
    let e = event(&[("service", "svc420"), ("severity", "high")], &[]);
    assert!(hits(&set, &e).is_empty());
    let e = event(&[("service", "svc42"), ("severity", "low")], &[]);
    assert!(hits(&set, &e).is_empty());
}

const TYPES: &[&str] = &["alert", "metric", "log"];
const SERVICES: &[&str] = &["api", "db", "web", "queue"];
const SEVERITIES: &[&str] = &["critical", "high", "low"];
const REGIONS: &[&str] = &["eu", "us"];
const ENVS: &[&str] = &["prod", "dev", "staging"];

fn subset(domain: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(domain, 0..=domain.len())
        .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

fn matchers() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        (
            prop_oneof![Just("="), Just("!="), Just("=~"), Just("!~")],
            prop_oneof![Just("prod"), Just("dev"), Just("pr.*"), Just("")],
        )
            .prop_map(|(op, v)| format!("env {op} \"{v}\"")),
        0..3,
    )
}

fn specs() -> impl Strategy<Value = Vec<SubscriptionSpec>> {
    proptest::collection::vec(
        (
            subset(TYPES),
            subset(SERVICES),
            subset(SEVERITIES),
            subset(REGIONS),
            proptest::option::of(prop_oneof![Just("p1"), Just("p2")]),
            matchers(),
            proptest::bool::weighted(0.9),
        ),
        0..40,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (t, s, v, r, p, m, enabled))| SubscriptionSpec {
                event_types: t,
                services: s,
                severity_levels: v,
                regions: r,
                project_id: p.map(str::to_owned),
                custom_filters: CustomFilters(
                    m.iter()
                        .map(|x| Matcher::parse(x).expect("valid"))
                        .collect(),
                ),
                enabled,
                ..spec(&format!("s{i}"))
            })
            .collect()
    })
}

fn pick(domain: &'static [&'static str]) -> impl Strategy<Value = Option<&'static str>> {
    proptest::option::weighted(0.85, proptest::sample::select(domain))
}

fn events() -> impl Strategy<Value = Value> {
    (
        pick(TYPES),
        pick(SERVICES),
        pick(SEVERITIES),
        pick(REGIONS),
        pick(&["p1", "p2"]),
        pick(ENVS),
    )
        .prop_map(|(t, s, v, r, p, env)| {
            let mut pairs = Vec::new();
            for (k, x) in [
                ("event_type", t),
                ("service", s),
                ("severity", v),
                ("region", r),
                ("project", p),
            ] {
                if let Some(x) = x {
                    pairs.push((k, x));
                }
            }
            let labels: Vec<(&str, &str)> = env.map(|e| ("env", e)).into_iter().collect();
            event(&pairs, &labels)
        })
}

proptest! {
    #[test]
    fn the_index_finds_exactly_what_a_linear_scan_finds(
        specs in specs(),
        events in proptest::collection::vec(events(), 1..20),
    ) {
        let set = SubscriptionSet::compile(&specs).expect("compiles");
        let (mut indexed, mut linear) = (Vec::new(), Vec::new());
        for e in &events {
            let f = Fields::of(e);
            set.matching(&f, &mut indexed);
            set.matching_linear(&f, &mut linear);
            prop_assert_eq!(&indexed, &linear, "event {:?}", e);
        }
    }
}
