use std::collections::BTreeMap;

use super::tree::{Route, RouteConfig};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tree(yaml: &str) -> Route {
    let config: RouteConfig = serde_saphyr::from_str(yaml).expect("route yaml");
    Route::root(&config).expect("valid")
}

fn receivers(root: &Route, pairs: &[(&str, &str)]) -> Vec<String> {
    root.matching(&labels(pairs))
        .iter()
        .map(|r| r.settings.receiver.clone())
        .collect()
}

#[test]
fn the_first_matching_child_wins_unless_it_continues() {
    let root = tree(
        r#"
receiver: default
group_by: [alertname]
routes:
  - matchers: [team="db"]
    receiver: db
    continue: true
  - matchers: ['severity=~"critical|page"']
    receiver: pager
    group_wait: 5s
    routes:
      - match: { service: checkout }
        receiver: checkout-pager
  - match_re: { team: "web|api" }
    receiver: web
"#,
    );
    assert_eq!(receivers(&root, &[("team", "ops")]), ["default"]);
    // `continue` on the db route: the pager route is tried too.
    assert_eq!(
        receivers(&root, &[("team", "db"), ("severity", "critical")]),
        ["db", "pager"]
    );
    // No `continue` on the pager route: web is not tried.
    assert_eq!(
        receivers(&root, &[("team", "web"), ("severity", "page")]),
        ["pager"]
    );
    assert_eq!(receivers(&root, &[("team", "api")]), ["web"]);
    // Regexes are anchored.
    assert_eq!(receivers(&root, &[("team", "webapp")]), ["default"]);
    let nested = root.matching(&labels(&[
        ("severity", "critical"),
        ("service", "checkout"),
    ]));
    assert_eq!(nested.len(), 1);
    let s = &nested[0].settings;
    assert_eq!(s.receiver, "checkout-pager");
    // Inherited from the pager route, and from the root.
    assert_eq!(s.group_wait, std::time::Duration::from_secs(5));
    assert_eq!(s.group_by, Some(vec!["alertname".to_string()]));
    assert_eq!(s.repeat_interval, std::time::Duration::from_secs(4 * 3600));
}

#[test]
fn bad_trees_say_where() {
    for (yaml, says) in [
        ("routes: []", "needs a `receiver`"),
        ("receiver: a\nmatchers: [x=y]", "takes no matchers"),
        (
            "receiver: a\nroutes: [{matchers: ['x=~\"(\"'], receiver: b}]",
            "route.routes[0]",
        ),
        (
            "receiver: a\nroutes: [{group_wait: soon}]",
            "`group_wait` `soon`",
        ),
        ("receiver: a\ngroup_by: ['...', x]", "stands alone"),
    ] {
        let config: RouteConfig = serde_saphyr::from_str(yaml).expect("yaml");
        let err = Route::root(&config).expect_err("refused");
        assert!(err.contains(says), "{yaml}: {err}");
    }
}

#[test]
fn commas_separate_matchers_with_or_without_braces() {
    let root = tree(
        r#"
receiver: default
routes:
  - matchers: ['team=db,env=prod']
    receiver: db-prod
  - matchers: ['a="x,y",b="z"']
    receiver: quoted
"#,
    );
    assert_eq!(
        receivers(&root, &[("team", "db"), ("env", "prod")]),
        ["db-prod"]
    );
    assert_eq!(receivers(&root, &[("team", "db")]), ["default"]);
    assert_eq!(receivers(&root, &[("a", "x,y"), ("b", "z")]), ["quoted"]);
}

#[test]
fn inhibit_rules_take_the_brace_and_comma_forms() {
    let rule = super::AlertmanagerInhibit {
        source_matchers: vec![r#"{alertname="HostDown", severity="critical"}"#.into()],
        target_matchers: vec![r#"severity="warning",team="db""#.into()],
        equal: vec!["host".into()],
        ..Default::default()
    }
    .rule()
    .expect("valid");
    let source = labels(&[
        ("alertname", "HostDown"),
        ("severity", "critical"),
        ("host", "h1"),
    ]);
    let target = labels(&[("severity", "warning"), ("team", "db"), ("host", "h1")]);
    assert!(rule.is_source(&source));
    assert!(rule.inhibits(&source, &target));
    let other_team = labels(&[("severity", "warning"), ("team", "web"), ("host", "h1")]);
    assert!(!rule.inhibits(&source, &other_team));
}

fn from_file(
    text: &str,
) -> (
    tempfile::TempDir,
    Result<super::AlertmanagerRouteConfig, String>,
) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("alertmanager.yml");
    std::fs::write(&path, text).expect("write");
    let yaml = format!("alertmanager_config: {:?}", path.display().to_string());
    let config =
        serde_saphyr::from_str::<super::AlertmanagerRouteConfig>(&yaml).map_err(|e| e.to_string());
    (dir, config)
}

/// What Alertmanager's own loader takes: YAML merge keys, Prometheus durations
/// (`1d`, `1m30s`) and Go's ASCII `\d`.
#[test]
fn an_alertmanager_file_reads_as_alertmanager_reads_it() {
    let (_dir, config) = from_file(
        r#"
route:
  receiver: default
  repeat_interval: 1d
  routes:
    - &pager
      receiver: pager
      group_wait: 1m30s
      matchers: ['severity="critical"']
    - <<: *pager
      matchers: ['team=~"\\d+"']
receivers: [{name: default}, {name: pager}]
"#,
    );
    let config = config.expect("loads");
    let root = Route::root(&config.route).expect("valid");
    assert_eq!(
        root.settings.repeat_interval,
        std::time::Duration::from_secs(86_400)
    );
    let team = root.matching(&labels(&[("team", "42")]));
    assert_eq!(team[0].settings.receiver, "pager");
    assert_eq!(
        team[0].settings.group_wait,
        std::time::Duration::from_secs(90)
    );
    assert_eq!(receivers(&root, &[("team", "٤٢")]), ["default"]);
}

/// Keys with nothing after them (children commented out) are empty, as Alertmanager
/// reads them.
#[test]
fn empty_keys_read_as_empty() {
    let (_dir, config) = from_file(
        "route:\n  receiver: a\n  routes:\n    - receiver: b\n      matchers:\n      match:\n      routes:\nreceivers: [{name: a}, {name: b}]\ninhibit_rules:\n",
    );
    let config = config.expect("loads");
    let root = Route::root(&config.route).expect("valid");
    assert_eq!(receivers(&root, &[("x", "y")]), ["b"]);
}

#[test]
fn what_is_wrong_inside_the_file_names_the_file() {
    for (text, says) in [
        (
            "route: {receiver: a, group_wait: 1 hour}\nreceivers: [{name: a}]",
            "`group_wait` `1 hour` is not a Prometheus duration",
        ),
        (
            "route: {receiver: a, routes: [{receiver: b}]}\nreceivers: [{name: a}]",
            "receiver `b` is not in `receivers`",
        ),
        (
            "route: {receiver: a}\nreceivers: [{name: a}]\ninhibit_rules: [{source_matchers: ['x=~\"(\"']}]",
            "invalid regex",
        ),
    ] {
        let (_dir, config) = from_file(text);
        let err = config.expect_err(text);
        assert!(
            err.contains("alertmanager.yml") && err.contains(says),
            "{err}"
        );
    }
}
