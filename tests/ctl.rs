//! The control commands (issue 24) against a running sluice: `sluice subscriptions`,
//! `outages`, `silences` and `events`, as tables and as `--json`, with the token from
//! the environment; refusals exit 1 with the API's reason.

mod common;

use std::process::Output;

use common::feeds::{FeedServer, fixture};
use common::{Process, free_port, run_pipeline, sluice};
use serde_json::Value;

struct Ctl {
    api: String,
}

impl Ctl {
    fn run(&self, args: &[&str]) -> Output {
        sluice()
            .args(args)
            .args(["--api-address", &self.api])
            .env("SLUICE_API__AUTH_TOKEN", "tok-admin")
            .output()
            .expect("sluice runs")
    }

    /// Runs `args`, expects success, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).expect("JSON")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_commands_manage_a_running_sluice() {
    let feeds = FeedServer::default();
    let feed_port = feeds.start().await;
    feeds.serve(
        "/github.atom",
        &fixture("statuspage_githubstatus_history.atom_excerpt_ongoing_incident.xml"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook, api) = (free_port(), free_port());
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
  feeds:
    type: status_feed
    feeds: [ {{ name: github, provider: statuspage, url: "http://127.0.0.1:{feed_port}/github.atom" }} ]
transforms:
  route:
    type: subscription
    inputs: [hook]
    subscriptions: [ {{ name: prod, custom_filters: {{ env: prod }} }} ]
    api_outputs: [ hooks ]
sinks:
  out: {{ type: blackhole, inputs: [route.hooks, route.prod, route._unmatched, feeds] }}
"#
        ),
    )
    .expect("pipeline");
    let settings = dir.path().join("settings.yaml");
    std::fs::write(
        &settings,
        "api:\n  tokens:\n    - { name: deployer, token: tok-admin, role: admin }\n",
    )
    .expect("settings");
    let api_address = format!("127.0.0.1:{api}");
    let mut cmd = run_pipeline(&path, &dir.path().join("data"), Some(&api_address));
    cmd.arg("--settings").arg(&settings);
    let mut process = Process::spawn(cmd);
    process.wait_for_port(api).await;
    process.wait_for_port(hook).await;
    let ctl = Ctl { api: api_address };

    // Subscriptions: made, listed as a table and as JSON, tested, deleted.
    let made = ctl.ok(&[
        "subscriptions",
        "add",
        "checkout",
        "--service",
        "checkout,payments",
        "--severity",
        "critical",
        "--filter",
        "env=prod",
    ]);
    assert!(made.starts_with("made subscription "), "{made}");
    let table = ctl.ok(&["subscriptions", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("SERVICES"),
        "{table}"
    );
    assert!(
        table.contains("route.prod") && table.contains("file"),
        "{table}"
    );
    let row = lines
        .iter()
        .find(|l| l.contains("checkout"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("api") && row.contains("route.hooks") && row.contains("checkout,payments"),
        "{row}"
    );
    let listed = ctl.json(&["subscriptions", "list"]);
    assert_eq!(listed["count"], 2);
    let id = listed["subscriptions"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == "checkout"))
        .and_then(|s| s["id"].as_str())
        .expect("id")
        .to_owned();
    let tested = ctl.ok(&["subscriptions", "test", &id]);
    assert!(
        tested.contains("a sample event made from its criteria matches"),
        "{tested}"
    );
    assert!(
        ctl.ok(&["subscriptions", "delete", &id])
            .contains("deleted")
    );
    let gone = ctl.run(&["subscriptions", "show", &id]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("404"),
        "{gone:?}"
    );

    // Outages: status, a check, a stop shown as paused.
    let status = ctl.ok(&["outages", "check", "all"]);
    assert!(
        status.contains("github") && status.contains("statuspage") && status.contains("ok"),
        "{status}"
    );
    let stopped = ctl.ok(&["outages", "stop", "--feed", "github"]);
    assert!(stopped.contains("paused"), "{stopped}");
    let status = ctl.json(&["outages", "status"]);
    assert_eq!(status["monitoring"], "stopped");
    ctl.ok(&["outages", "start"]);
    let history = ctl.ok(&["outages", "history", "--provider", "statuspage"]);
    assert!(
        history.contains("Delays starting Actions runs"),
        "{history}"
    );

    // Silences.
    let added = ctl.json(&[
        "silences",
        "add",
        "--matcher",
        "alertname=DiskFull",
        "--duration",
        "1h",
        "--comment",
        "maintenance",
    ]);
    let silence = added["id"].as_str().expect("id").to_owned();
    let list = ctl.ok(&["silences", "list"]);
    assert!(
        list.contains(&silence) && list.contains("active") && list.contains("maintenance"),
        "{list}"
    );
    assert!(
        ctl.ok(&["silences", "expire", &silence])
            .contains("expired")
    );
    let list = ctl.ok(&["silences", "list"]);
    assert!(
        list.contains(&silence) && list.contains("expired"),
        "{list}"
    );
    let long = ctl.run(&[
        "silences",
        "add",
        "--matcher",
        "a=b",
        "--duration",
        "100000000years",
    ]);
    assert_eq!(long.status.code(), Some(1), "{long:?}");
    assert!(
        String::from_utf8_lossy(&long.stderr).contains("too long"),
        "{long:?}"
    );

    // Refusals: no events table here; a wrong token.
    let refused = ctl.run(&["events", "query", "--event-type", "alert"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("postgres"),
        "{refused:?}"
    );
    let wrong = sluice()
        .args([
            "subscriptions",
            "list",
            "--api-address",
            &ctl.api,
            "--token",
            "nope",
        ])
        .output()
        .expect("runs");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("401"),
        "{wrong:?}"
    );
    drop(process);
}
