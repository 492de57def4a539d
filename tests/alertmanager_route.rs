//! An Alertmanager configuration file routes a held set of alerts through the
//! `alertmanager_route` transform to the same receivers that Alertmanager's own
//! `amtool config routes test` names for them; its inhibit rules and time intervals mute
//! as Alertmanager's do.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{eventually, free_port, parse, start, string, wait_for_port};
use serde_json::json;
use sluice::testing::CaptureSink;

const AMTOOL: &str = "amtool";

/// Receivers and a tree using every way Alertmanager matches: `matchers` (one per line
/// and the `{…}` form, all four operators), the older `match` and `match_re`,
/// `continue`, nesting and inherited settings.
const CONFIG: &str = r#"
global:
  resolve_timeout: 5m
route:
  receiver: default
  group_by: [alertname]
  routes:
    - matchers: [team="db"]
      receiver: db
      continue: true
    - matchers: ['severity=~"critical|page"', 'env!="dev"']
      receiver: pager
      group_wait: 5s
      routes:
        - match: { service: checkout }
          receiver: checkout-pager
        - matchers: ['{service=~"pay.*", region!~"us-.*"}']
          receiver: payments-eu
    - match_re: { team: "web|api" }
      receiver: web
      routes:
        - matchers: [alertname="Maintenance"]
          receiver: quiet
          mute_time_intervals: [always]
        - matchers: [alertname="Backup"]
          receiver: quiet
          active_time_intervals: [never]
inhibit_rules:
  - source_match: { alertname: HostDown }
    target_matchers: ['severity=~"warning|info"']
    equal: [host]
time_intervals:
  - name: always
    time_intervals: [{ years: ["2000:2999"] }]
  - name: never
    time_intervals: [{ years: ["1990"] }]
receivers:
  - name: default
    webhook_configs: [{ url: "http://example.invalid/hook" }]
  - name: db
  - name: pager
  - name: checkout-pager
  - name: payments-eu
  - name: web
  - name: quiet
templates: []
"#;

const RECEIVERS: [&str; 7] = [
    "default",
    "db",
    "pager",
    "checkout-pager",
    "payments-eu",
    "web",
    "quiet",
];

/// The held set: label sets that take each branch, and its neighbours.
fn label_sets() -> Vec<Vec<(&'static str, &'static str)>> {
    vec![
        vec![("alertname", "A"), ("team", "ops")],
        vec![("alertname", "A"), ("team", "db")],
        vec![("alertname", "A"), ("team", "db"), ("severity", "critical")],
        vec![
            ("alertname", "A"),
            ("team", "db"),
            ("severity", "critical"),
            ("env", "dev"),
        ],
        vec![
            ("alertname", "A"),
            ("severity", "page"),
            ("service", "checkout"),
        ],
        vec![
            ("alertname", "A"),
            ("severity", "page"),
            ("service", "payroll"),
        ],
        vec![
            ("alertname", "A"),
            ("severity", "page"),
            ("service", "payments"),
            ("region", "eu-west-1"),
        ],
        vec![
            ("alertname", "A"),
            ("severity", "page"),
            ("service", "payments"),
            ("region", "us-east-1"),
        ],
        vec![("alertname", "A"), ("severity", "criticality")],
        vec![("alertname", "A"), ("team", "web")],
        vec![("alertname", "A"), ("team", "webapp")],
        vec![
            ("alertname", "A"),
            ("team", "api"),
            ("severity", "critical"),
        ],
        vec![("alertname", "A")],
    ]
}

fn amtool_receivers(config: &std::path::Path, labels: &[(&str, &str)]) -> BTreeSet<String> {
    let out = Command::new(AMTOOL)
        .args(["config", "routes", "test"])
        .arg(format!("--config.file={}", config.display()))
        .args(labels.iter().map(|(k, v)| format!("{k}={v}")))
        .output()
        .expect("amtool runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// A pipeline routing webhook events through `alertmanager_route` into one capture
/// sink per receiver (and one for `_muted`).
async fn router(
    config: &std::path::Path,
) -> (u16, Vec<(String, CaptureSink)>, sluice::topology::Topology) {
    let hook = free_port();
    let sinks: Vec<(String, CaptureSink)> = RECEIVERS
        .iter()
        .chain(&["_muted"])
        .map(|name| (name.to_string(), CaptureSink::default()))
        .collect();
    let (topology, _) = start(router_pipeline(hook, config, "", &sinks)).await;
    wait_for_port(hook).await;
    (hook, sinks, topology)
}

/// The router's pipeline: `extra` is added to the transform's options. The router's id
/// carries the hook's port: a reload hands inhibition sources over by component id
/// within the process, and tests run in parallel in one process.
fn router_pipeline(
    hook: u16,
    config: &std::path::Path,
    extra: &str,
    sinks: &[(String, CaptureSink)],
) -> sluice::config::Pipeline {
    let mut p = parse(&format!(
        r#"
sources:
  alerts: {{ type: webhook, address: "127.0.0.1:{hook}" }}
transforms:
  router_{hook}:
    type: alertmanager_route
    inputs: [alerts]
    alertmanager_config: "{}"
    {extra}
"#,
        config.display()
    ));
    for (name, sink) in sinks {
        sink.attach(
            &mut p,
            &format!("to_{name}"),
            &[&format!("router_{hook}.{name}")],
            100,
        );
    }
    p
}

async fn post(hook: u16, events: &[serde_json::Value]) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook}/"))
        .json(&events)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// The outputs an event (by fingerprint) left on.
fn outputs_of(sinks: &[(String, CaptureSink)], fingerprint: &str) -> BTreeSet<String> {
    sinks
        .iter()
        .filter(|(_, sink)| {
            sink.values()
                .iter()
                .any(|e| string(e, "fingerprint").as_deref() == Some(fingerprint))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_file_routes_as_amtool_says() {
    if !common::tool_or_skip(AMTOOL, "prometheus-alertmanager") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, CONFIG).expect("config");
    let (hook, sinks, _topology) = router(&config).await;
    let sets = label_sets();
    let events: Vec<_> = sets
        .iter()
        .enumerate()
        .map(|(i, labels)| {
            let labels: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            json!({"status": "firing", "fingerprint": format!("f{i}"), "labels": labels})
        })
        .collect();
    post(hook, &events).await;
    let delivered = || sinks.iter().map(|(_, s)| s.values().len()).sum::<usize>();
    // Each event leaves at least once; two (team=db with a page) twice.
    eventually("every event routed", || delivered() > sets.len()).await;
    let mut checked = 0;
    for (i, labels) in sets.iter().enumerate() {
        let expected = amtool_receivers(&config, labels);
        assert_eq!(
            outputs_of(&sinks, &format!("f{i}")),
            expected,
            "labels {labels:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 13);
    // The nested route took it alone, not its parent's receiver too.
    let paged = sinks
        .iter()
        .find(|(n, _)| n == "checkout-pager")
        .expect("sink")
        .1
        .values();
    assert_eq!(paged.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inhibit_rules_and_time_intervals_mute_as_alertmanager_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, CONFIG).expect("config");
    let (hook, sinks, _topology) = router(&config).await;
    let alert = |fp: &str, status: &str, labels: serde_json::Value| json!({"status": status, "fingerprint": fp, "labels": labels});
    post(
        hook,
        &[
            // A host down inhibits the warnings of the same host only.
            alert(
                "down",
                "firing",
                json!({"alertname": "HostDown", "host": "a", "severity": "critical"}),
            ),
            alert(
                "warn-a",
                "firing",
                json!({"alertname": "Disk", "host": "a", "severity": "warning"}),
            ),
            alert(
                "warn-b",
                "firing",
                json!({"alertname": "Disk", "host": "b", "severity": "warning"}),
            ),
            alert(
                "crit-a",
                "firing",
                json!({"alertname": "Disk", "host": "a", "severity": "critical"}),
            ),
            // Muted all the time; active never.
            alert(
                "maint",
                "firing",
                json!({"alertname": "Maintenance", "team": "web"}),
            ),
            alert(
                "backup",
                "firing",
                json!({"alertname": "Backup", "team": "web"}),
            ),
        ],
    )
    .await;
    eventually("six events", || {
        sinks.iter().map(|(_, s)| s.values().len()).sum::<usize>() == 6
    })
    .await;
    let muted = BTreeSet::from(["_muted".to_string()]);
    assert_eq!(outputs_of(&sinks, "warn-a"), muted);
    assert_eq!(outputs_of(&sinks, "maint"), muted);
    assert_eq!(outputs_of(&sinks, "backup"), muted);
    let default = BTreeSet::from(["default".to_string()]);
    let pager = BTreeSet::from(["pager".to_string()]);
    assert_eq!(outputs_of(&sinks, "warn-b"), default);
    assert_eq!(outputs_of(&sinks, "crit-a"), pager);
    assert_eq!(outputs_of(&sinks, "down"), pager);
    // Once the host is back, its warnings go out again; a resolve is never inhibited.
    post(
        hook,
        &[
            alert(
                "down",
                "resolved",
                json!({"alertname": "HostDown", "host": "a", "severity": "critical"}),
            ),
            alert(
                "warn-a2",
                "firing",
                json!({"alertname": "Disk", "host": "a", "severity": "warning"}),
            ),
        ],
    )
    .await;
    eventually("eight events", || {
        sinks.iter().map(|(_, s)| s.values().len()).sum::<usize>() == 8
    })
    .await;
    assert_eq!(outputs_of(&sinks, "warn-a2"), default);
}

#[test]
fn a_route_naming_an_undefined_receiver_is_a_validate_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route: { receiver: a, routes: [{ receiver: ghost }] }\nreceivers: [{ name: a }]\n",
    )
    .expect("config");
    let pipeline = format!(
        "sources:\n  s: {{ type: stdin }}\ntransforms:\n  r: {{ type: alertmanager_route, inputs: [s], alertmanager_config: \"{}\" }}\nsinks:\n  o: {{ type: console, inputs: [r.a] }}\n",
        config.display()
    );
    let err =
        sluice::config::parse_texts(&[(std::path::PathBuf::from("p.yaml"), pipeline)], |_| None)
            .expect_err("refused")
            .to_string();
    assert!(
        err.contains("receiver `ghost` is not in `receivers`"),
        "{err}"
    );
    assert!(err.contains("p.yaml:"), "{err}");
}

/// A reload keeps the inhibition sources: a host that went down before it still
/// inhibits its warnings after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_inhibition_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, CONFIG).expect("config");
    let (hook, sinks, mut topology) = router(&config).await;
    let alert = |fp: &str, labels: serde_json::Value| json!({"status": "firing", "fingerprint": fp, "labels": labels});
    post(
        hook,
        &[alert(
            "down",
            json!({"alertname": "HostDown", "host": "a", "severity": "critical"}),
        )],
    )
    .await;
    eventually("the source routed", || {
        !outputs_of(&sinks, "down").is_empty()
    })
    .await;
    let mut next = router_pipeline(hook, &config, "max_sources: 5000", &sinks);
    next.validate().expect("valid");
    let changes = topology.apply(next).await.expect("reload");
    assert_eq!(changes.changed, vec![format!("router_{hook}")]);
    post(
        hook,
        &[alert(
            "warn-a",
            json!({"alertname": "Disk", "host": "a", "severity": "warning"}),
        )],
    )
    .await;
    eventually("the warning routed", || {
        !outputs_of(&sinks, "warn-a").is_empty()
    })
    .await;
    assert_eq!(
        outputs_of(&sinks, "warn-a"),
        BTreeSet::from(["_muted".to_string()]),
        "inhibited by the source seen before the reload"
    );
}

/// A source that is no longer sent stops inhibiting after `resolve_timeout`, as
/// Alertmanager resolves an alert nobody resends; one resent keeps inhibiting.
#[test]
fn a_source_no_longer_sent_stops_inhibiting_after_resolve_timeout() {
    use sluice::component::TransformOutputs;
    let clock = sluice::clock::ManualClock::default();
    let text = r#"
sources:
  in: { type: generator }
transforms:
  router:
    type: alertmanager_route
    inputs: [in]
    resolve_timeout: 5m
    route: { receiver: default }
    inhibit_rules:
      - source_matchers: [alertname="HostDown"]
        target_matchers: [severity="warning"]
        equal: [host]
"#;
    let (mut router, _) = common::build_transform(text, "router", &clock);
    let event = |fp: &str, labels: serde_json::Value| {
        sluice::event::Event::new(
            serde_json::from_value(
                json!({"status": "firing", "fingerprint": fp, "labels": labels}),
            )
            .expect("value"),
            sluice::event::SourceId::intern("in"),
            chrono::Utc::now(),
        )
    };
    let down = || event("down", json!({"alertname": "HostDown", "host": "a"}));
    let warn = |fp: &str| {
        event(
            fp,
            json!({"alertname": "Disk", "host": "a", "severity": "warning"}),
        )
    };
    // Outputs: `default`, then `_muted`.
    let mut muted = |events| {
        let mut out = TransformOutputs::new(2);
        router.process(events, &mut out);
        out.named[1].len()
    };
    assert_eq!(muted(vec![down(), warn("w1")]), 1, "inhibited");
    clock.advance(std::time::Duration::from_secs(240));
    assert_eq!(muted(vec![down()]), 0, "the source is resent");
    clock.advance(std::time::Duration::from_secs(240));
    assert_eq!(
        muted(vec![warn("w2")]),
        1,
        "4 minutes after it was last seen"
    );
    clock.advance(std::time::Duration::from_secs(61));
    assert_eq!(muted(vec![warn("w3")]), 0, "5 minutes without it: resolved");
}
