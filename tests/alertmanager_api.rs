//! Alertmanager's API v2 on sluice's API: the real `amtool` (Debian's
//! `prometheus-alertmanager`) adds, queries and expires silences, and the answers have
//! the shapes and errors of Alertmanager 0.25. Silences are process-wide, so each test
//! uses its own alertname.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use sluice::telemetry::Telemetry;
use tokio_util::sync::CancellationToken;

struct Api {
    url: String,
    client: reqwest::Client,
    _stop: tokio_util::sync::DropGuard,
}

async fn api() -> Api {
    sluice::net::install_crypto_provider();
    let stop = CancellationToken::new();
    let (address, _) =
        sluice::api::serve("127.0.0.1:0", Telemetry::new(), None, None, stop.clone())
            .await
            .expect("API");
    Api {
        url: format!("http://{address}"),
        client: reqwest::Client::new(),
        _stop: stop.drop_guard(),
    }
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.expect("call");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn silence(alertname: &str, minutes: i64) -> Value {
    let now = chrono::Utc::now();
    json!({
        "matchers": [
            {"name": "alertname", "value": alertname, "isRegex": false, "isEqual": true},
            {"name": "host", "value": "db.*", "isRegex": true},
            {"name": "env", "value": "dev", "isRegex": false, "isEqual": false},
        ],
        "startsAt": now.to_rfc3339(),
        "endsAt": (now + chrono::TimeDelta::minutes(minutes)).to_rfc3339(),
        "createdBy": "alice",
        "comment": "maintenance",
    })
}

#[tokio::test]
async fn v2_silences_have_alertmanagers_shape_and_expire_instead_of_vanishing() {
    let api = api().await;
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/api/v2/silences",
            Some(silence("V2Shape", 60)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["silenceID"].as_str().expect("silenceID").to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");

    let (status, one) = api
        .call(reqwest::Method::GET, &format!("/api/v2/silence/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["id"], id.as_str());
    assert_eq!(one["status"]["state"], "active");
    assert_eq!(one["createdBy"], "alice");
    assert_eq!(one["comment"], "maintenance");
    assert_eq!(
        one["matchers"],
        json!([
            {"name": "alertname", "value": "V2Shape", "isRegex": false, "isEqual": true},
            {"name": "host", "value": "db.*", "isRegex": true, "isEqual": true},
            {"name": "env", "value": "dev", "isRegex": false, "isEqual": false},
        ])
    );
    for field in ["startsAt", "endsAt", "updatedAt"] {
        let t = one[field].as_str().expect(field);
        assert!(t.ends_with('Z') && t.len() == 24, "{field}: {t}");
    }

    // The filter keeps silences that have the matcher exactly.
    let (_, listed) = api
        .call(
            reqwest::Method::GET,
            "/api/v2/silences?filter=alertname%3DV2Shape",
            None,
        )
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let (_, none) = api
        .call(
            reqwest::Method::GET,
            "/api/v2/silences?filter=alertname%3DV2Shape&filter=env%3Ddev",
            None,
        )
        .await;
    assert_eq!(none, json!([]), "env!=dev is not env=dev");
    let (status, bad) = api
        .call(reqwest::Method::GET, "/api/v2/silences?filter=nope", None)
        .await;
    assert_eq!((status, bad), (400, json!("bad matcher format: nope")));

    // DELETE expires: still listed, expired; again is no error; unknown is a 500.
    let path = format!("/api/v2/silence/{id}");
    assert_eq!(api.call(reqwest::Method::DELETE, &path, None).await.0, 200);
    let (_, one) = api.call(reqwest::Method::GET, &path, None).await;
    assert_eq!(one["status"]["state"], "expired");
    assert_eq!(api.call(reqwest::Method::DELETE, &path, None).await.0, 200);
    let unknown = format!("/api/v2/silence/{}", uuid::Uuid::new_v4());
    assert_eq!(
        api.call(reqwest::Method::DELETE, &unknown, None).await,
        (500, json!("silence not found"))
    );
    assert_eq!(
        api.call(reqwest::Method::GET, &unknown, None).await,
        (404, json!(""))
    );
    let (status, body) = api
        .call(reqwest::Method::GET, "/api/v2/silence/nope", None)
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["message"],
        "silenceID in path must be of type uuid: \"nope\""
    );

    let (status, st) = api.call(reqwest::Method::GET, "/api/v2/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(st["cluster"]["status"], "disabled");
    assert_eq!(st["config"]["original"], "");
    for field in [
        "version",
        "branch",
        "revision",
        "buildUser",
        "buildDate",
        "goVersion",
    ] {
        assert!(st["versionInfo"][field].is_string(), "{field}: {st}");
    }
}

#[tokio::test]
async fn v2_silence_errors_are_alertmanagers() {
    let api = api().await;
    let base = silence("V2Errors", 60);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        v
    };
    let past = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let cases: Vec<(Value, u16, Value)> = vec![
        (
            with(&|v| v["matchers"] = json!([])),
            422,
            json!({"code": 612, "message": "matchers in body should have at least 1 items"}),
        ),
        (
            with(&|v| {
                v.as_object_mut().unwrap().remove("createdBy");
            }),
            422,
            json!({"code": 602, "message": "createdBy in body is required"}),
        ),
        (
            with(&|v| {
                v["matchers"][0].as_object_mut().unwrap().remove("isRegex");
            }),
            422,
            json!({"code": 602, "message": "matchers.0.isRegex in body is required"}),
        ),
        (
            with(&|v| v["endsAt"] = json!(past.clone())),
            400,
            json!("Failed to create silence: start time must be before end time"),
        ),
        (
            with(&|v| {
                v["startsAt"] = json!(past.clone());
                v["endsAt"] =
                    json!((chrono::Utc::now() - chrono::TimeDelta::minutes(1)).to_rfc3339());
            }),
            400,
            json!("Failed to create silence: end time can't be in the past"),
        ),
        (
            with(&|v| v["id"] = json!(uuid::Uuid::new_v4().to_string())),
            404,
            json!("silence not found"),
        ),
        (
            with(&|v| v["matchers"][0]["name"] = json!("app.kubernetes.io/name")),
            400,
            json!(
                "silence invalid: invalid label matcher 0: invalid label name \"app.kubernetes.io/name\""
            ),
        ),
        (
            with(
                &|v| v["matchers"] = json!([{"name": "a", "value": "", "isRegex": false}, {"name": "b", "value": ".*", "isRegex": true}]),
            ),
            400,
            json!("silence invalid: at least one matcher must not match the empty string"),
        ),
    ];
    for (body, status, answer) in cases {
        let got = api
            .call(
                reqwest::Method::POST,
                "/api/v2/silences",
                Some(body.clone()),
            )
            .await;
        assert_eq!(got, (status, answer), "{body}");
    }
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/api/v2/silences",
            Some(with(&|v| v["matchers"][1]["value"] = json!("("))),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body.as_str()
            .is_some_and(|m| m.starts_with("silence invalid: invalid label matcher 1: ")),
        "{body}"
    );
    // Only negative matchers: accepted (they never count as matching the empty string).
    // This one mutes nothing: silences are process-wide, and other tests run alongside.
    let negative = with(&|v| {
        v["matchers"] =
            json!([{"name": "alertname", "value": ".*", "isRegex": true, "isEqual": false}])
    });
    assert_eq!(
        api.call(reqwest::Method::POST, "/api/v2/silences", Some(negative))
            .await
            .0,
        200
    );
}

const AMTOOL: &str = "amtool";

/// Runs amtool against `url` with an empty HOME (it reads its config from there).
async fn amtool(url: &str, home: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut command = std::process::Command::new(AMTOOL);
    command
        .arg(format!("--alertmanager.url={url}"))
        .args(args)
        .env("HOME", home);
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("amtool answers")
    .expect("joined")
    .expect("amtool runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_adds_queries_and_expires_silences() {
    if !common::tool_or_skip(AMTOOL, "prometheus-alertmanager") {
        return;
    }
    let api = api().await;
    let home = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (url, home) = (api.url.clone(), home.path().to_owned());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            amtool(&url, &home, &args).await
        }
    };

    let (ok, out, err) = run(&[
        "silence",
        "add",
        "alertname=AmtoolX",
        "host=~\"db.*\"",
        "env!=dev",
        "--comment=upgrade",
        "--author=bob",
        "--duration=2h",
    ])
    .await;
    assert!(ok, "{out}{err}");
    let id = out.trim().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{out}");

    let (ok, out, err) = run(&["silence", "query", "alertname=AmtoolX"]).await;
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains(r#"alertname="AmtoolX" host=~"db.*" env!="dev""#)
            && row.contains("bob")
            && row.contains("upgrade"),
        "{row}"
    );
    let (ok, quiet, _) = run(&["silence", "query", "-q", "alertname=AmtoolX"]).await;
    assert!(ok);
    assert_eq!(quiet.trim(), id);

    // Expired: gone from the query, listed by --expired.
    let expire: &'static [&'static str] = Box::leak(
        vec!["silence", "expire", Box::leak(id.clone().into_boxed_str())].into_boxed_slice(),
    );
    let (ok, out, err) = run(expire).await;
    assert!(ok, "{out}{err}");
    let (_, out, _) = run(&["silence", "query", "-q", "alertname=AmtoolX"]).await;
    assert_eq!(out.trim(), "", "an expired silence is not active");
    let (_, out, _) = run(&["silence", "query", "-q", "--expired", "alertname=AmtoolX"]).await;
    assert_eq!(out.trim(), id);

    // Alertmanager's refusals reach the user as amtool prints them.
    let (ok, _, err) = run(&["silence", "add", "alertname=~\".*\"", "--comment=all"]).await;
    assert!(!ok);
    assert!(
        err.contains("at least one matcher must not match the empty string"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_alerts_enter_the_pipeline_as_an_alertmanager_webhook_brings_them() {
    let mut p = common::parse("sources:\n  prom: { type: api }\n");
    let sink = sluice::testing::CaptureSink::default();
    sink.attach(&mut p, "out", &["prom"], 100);
    let (_topology, _) = common::start(p).await;
    let api = api().await;
    let now = chrono::Utc::now();
    let at = |minutes: i64| (now + chrono::TimeDelta::minutes(minutes)).to_rfc3339();

    // A silence that mutes one of the alerts when it arrives.
    let mut muting = silence("PostedMuted", 60);
    muting["matchers"] = json!([{"name": "alertname", "value": "PostedMuted", "isRegex": false}]);
    let (_, body) = api
        .call(reqwest::Method::POST, "/api/v2/silences", Some(muting))
        .await;
    let silence_id = body["silenceID"].as_str().expect("id").to_owned();

    // As Prometheus sends them: no status, no fingerprint; a firing alert's end is in
    // the future, a resolved one's in the past.
    let alerts = json!([
        {"labels": {"alertname": "C", "instance": "db1", "empty": ""},
         "annotations": {"summary": "disk full"}, "startsAt": at(-1), "endsAt": at(4),
         "generatorURL": "http://prometheus:9090/graph?g0.expr=up"},
        {"labels": {"alertname": "PostedResolved"}, "startsAt": at(-10), "endsAt": at(-1)},
        {"labels": {"alertname": "PostedMuted"}, "startsAt": at(-1), "endsAt": at(4)},
    ]);
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/api/v2/alerts?source=prom",
            Some(alerts),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    common::eventually("two events", || sink.values().len() == 2).await;
    let events = sink.values();
    let firing = events
        .iter()
        .find(|e| common::string(e, "status").as_deref() == Some("firing"))
        .expect("the firing alert");
    // The same fingerprint a real Alertmanager's webhook gives the same labels
    // (Alertmanager 0.25 fingerprints {alertname="C", instance="db1"} as 968175a324bab0a1).
    let expected: String =
        ring::digest::digest(&ring::digest::SHA256, b"alertmanager:968175a324bab0a1")
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()[..32]
            .to_owned();
    assert_eq!(common::string(firing, "fingerprint"), Some(expected));
    assert_eq!(
        common::string(firing, "summary").as_deref(),
        Some("disk full")
    );
    let labels = common::field(firing, "labels");
    assert_eq!(common::string(&labels, "instance").as_deref(), Some("db1"));
    assert_eq!(
        common::string(&labels, "empty"),
        None,
        "empty labels are dropped"
    );
    assert!(
        events
            .iter()
            .any(|e| common::string(e, "status").as_deref() == Some("resolved"))
    );

    // GET: the alerts that have not ended; the muted one is suppressed by the silence.
    let (_, all) = api.call(reqwest::Method::GET, "/api/v2/alerts", None).await;
    let names: Vec<&str> = all
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    assert!(
        names.contains(&"C") && names.contains(&"PostedMuted"),
        "{all}"
    );
    assert!(!names.contains(&"PostedResolved"), "{all}");
    let muted = all
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["labels"]["alertname"] == "PostedMuted")
        .expect("muted");
    assert_eq!(muted["status"]["state"], "suppressed");
    assert_eq!(muted["status"]["silencedBy"], json!([silence_id]));
    let c = all
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["labels"]["alertname"] == "C")
        .expect("C");
    assert_eq!(c["fingerprint"], "968175a324bab0a1");
    assert_eq!(c["receivers"], json!([{"name": "prom"}]));
    // amtool alert query's own query: only what nothing mutes.
    let (_, active) = api
        .call(
            reqwest::Method::GET,
            "/api/v2/alerts?active=true&inhibited=false&silenced=false&unprocessed=false&filter=alertname%3D~%22C%7CPostedMuted%22",
            None,
        )
        .await;
    let names: Vec<&str> = active
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    assert_eq!(names, ["C"]);

    // Refused whole, with Alertmanager's messages; nothing of them is taken.
    for (body, status, answer) in [
        (
            json!([{"labels": {}}]),
            400,
            json!("at least one label pair required"),
        ),
        (
            json!([{"labels": {"0bad": "x"}}, {"labels": {"ok": "y"}, "startsAt": at(1), "endsAt": at(-1)}]),
            400,
            json!("invalid label set: invalid name \"0bad\"; start time must be before end time"),
        ),
        (
            json!([{"annotations": {}}]),
            422,
            json!({"code": 602, "message": "0.labels in body is required"}),
        ),
    ] {
        let got = api
            .call(
                reqwest::Method::POST,
                "/api/v2/alerts?source=prom",
                Some(body.clone()),
            )
            .await;
        assert_eq!(got, (status, answer), "{body}");
    }
    let (status, _) = api
        .call(
            reqwest::Method::POST,
            "/api/v2/alerts?source=prom",
            Some(json!({"labels": {}})),
        )
        .await;
    assert_eq!(status, 400);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sink.values().len(), 2);
}
