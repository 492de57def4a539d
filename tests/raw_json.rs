//! Events that keep the JSON text they arrived as: a webhook's NDJSON and a file's JSON
//! lines reach an http receiver byte for byte when no component touches them or only
//! reads them (conditions), a component's change is what is sent once it touches one,
//! and the file source's own fields always win over the line's.

mod common;

use std::time::Duration;

use common::{Receiver, eventually, free_port, parse, start, start_with, wait_for_port};
use serde_json::{Value as Json, json};

fn lines(rx: &Receiver, path: &str) -> Vec<String> {
    rx.requests()
        .iter()
        .filter(|r| r.path == path)
        .flat_map(|r| {
            String::from_utf8_lossy(&r.body)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn untouched_webhook_events_are_sent_as_they_came_and_changed_ones_with_their_changes() {
    let rx = Receiver::new(0).start().await;
    let hook = free_port();
    let p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
transforms:
  touch: {{ type: remap, inputs: [hook], source: ".seen = true" }}
  stamp: {{ type: remap, inputs: [hook], source: ".at = t'2026-01-01T00:00:00Z'" }}
sinks:
  stamped:
    type: http
    inputs: [stamp]
    url: "http://127.0.0.1:{port}/stamped"
    encoding: ndjson
  as_is:
    type: http
    inputs: [hook]
    url: "http://127.0.0.1:{port}/as_is"
    encoding: ndjson
  changed:
    type: http
    inputs: [touch]
    url: "http://127.0.0.1:{port}/changed"
    encoding: ndjson
"#,
        port = rx.port
    ));
    let (topo, _) = start(p).await;
    wait_for_port(hook).await;
    // Key order, number spelling, escapes and inner spaces: what parsing would change.
    let sent = [
        r#"{"b":1,"a":{"z":true,"y":[1.0,2e3,-5]}}"#,
        r#"{"c":"\u00e9\n","big":18446744073709551616}"#,
        r#"{ "spaced" : [ 1 , 2 ] }"#,
    ];
    let body = format!("{}\r\n\n{}\n[{}]", sent[0], sent[1], sent[2]);
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook}/"))
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    eventually("every sink", || {
        lines(&rx, "/as_is").len() == 3
            && lines(&rx, "/changed").len() == 3
            && lines(&rx, "/stamped").len() == 3
    })
    .await;
    assert_eq!(lines(&rx, "/as_is"), sent);

    let changed: Vec<Json> = lines(&rx, "/changed")
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(
        changed[0],
        json!({"a": {"y": [1.0, 2000.0, -5], "z": true}, "b": 1, "seen": true})
    );
    assert_eq!(changed[1]["c"], "é\n");
    assert_eq!(changed[1]["seen"], true);
    assert_eq!(changed[2], json!({"seen": true, "spaced": [1, 2]}));
    // The remap wrote one field: the text keeps its members as they came (order,
    // spelling, spaces), and the new one is appended.
    assert_eq!(
        lines(&rx, "/changed"),
        [
            r#"{"b":1,"a":{"z":true,"y":[1.0,2e3,-5]},"seen":true}"#,
            r#"{"c":"\u00e9\n","big":18446744073709551616,"seen":true}"#,
            r#"{"spaced" : [ 1 , 2 ],"seen":true}"#,
        ],
        "the changed field spliced into the text"
    );
    // A timestamp would read back from the text as a string: that event is parsed, and
    // written from its changed value.
    assert_eq!(
        lines(&rx, "/stamped")[0],
        r#"{"a":{"y":[1.0,2000.0,-5],"z":true},"at":"2026-01-01T00:00:00Z","b":1}"#,
        "written from the changed value"
    );
    topo.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn events_that_conditions_only_read_are_sent_as_they_came() {
    let rx = Receiver::new(0).start().await;
    let hook = free_port();
    let p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}", capture_headers: [x-team] }}
transforms:
  keep: {{ type: filter, inputs: [hook], condition: ".dropped != true" }}
  split:
    type: route
    inputs: [keep]
    route:
      high: '%headers."x-team" == "db" && .z != 0'
  always: {{ type: sample, inputs: [split.high], ratio: 0, always_keep: "exists(.b) || exists(.x)" }}
sinks:
  high:
    type: http
    inputs: [always]
    url: "http://127.0.0.1:{port}/high"
    encoding: ndjson
  rest:
    type: http
    inputs: [split._unmatched]
    url: "http://127.0.0.1:{port}/rest"
    encoding: ndjson
"#,
        port = rx.port
    ));
    let (topo, _) = start(p).await;
    wait_for_port(hook).await;
    // Spellings that a parse and a write would change: 3.0E0, the key order, spaces.
    let sent = [
        r#"{"n":1,"dropped":true}"#,
        r#"{"z":0, "n":2.0E0}"#,
        r#"{"n":3.0E0,"b":[1 ,2],"a":"\u00e9"}"#,
        r#"{"n":3,"x":1}"#,
        r#"{"n":5}"#,
    ];
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook}/"))
        .header("x-team", "db")
        .body(sent.join("\n"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    eventually("both sinks", || {
        lines(&rx, "/high").len() == 2 && !lines(&rx, "/rest").is_empty()
    })
    .await;
    assert_eq!(
        lines(&rx, "/high"),
        &sent[2..4],
        "kept by the sample's condition"
    );
    assert_eq!(lines(&rx, "/rest"), &sent[1..2], "filtered, then unmatched");
    topo.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn file_lines_keep_their_text_with_the_source_fields_after_it() {
    let rx = Receiver::new(0).start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.log");
    let lines_in = [
        r#"{"b":1,"a":"x"}"#,
        r#"{"file":"mine","host":"theirs","x":1}"#,
        "{ }",
        "not json",
        "{\"nested\":{\"offset\":-1}}\r",
    ];
    std::fs::write(&path, lines_in.join("\n") + "\n").expect("write");
    let p = parse(&format!(
        r#"
sources:
  logs:
    type: file
    include: ["{glob}"]
    json: true
    glob_interval: 10ms
    poll_interval: 5ms
sinks:
  out: {{ type: http, inputs: [logs], url: "http://127.0.0.1:{port}/logs", encoding: ndjson }}
"#,
        glob = path.display(),
        port = rx.port
    ));
    let options = sluice::topology::TopologyOptions {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    let (topo, _) = start_with(p, options).await;
    eventually("every line", || lines(&rx, "/logs").len() == lines_in.len()).await;
    let got = lines(&rx, "/logs");
    let parsed: Vec<Json> = got
        .iter()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let file = path.display().to_string();
    for (i, event) in parsed.iter().enumerate() {
        assert_eq!(
            event["file"],
            file.as_str(),
            "line {i}: the source's file wins"
        );
        assert!(event["host"].is_string(), "line {i}");
        assert!(event["offset"].is_i64(), "line {i}");
    }
    assert!(
        got[0].starts_with(r#"{"b":1,"a":"x","file":"#),
        "{}",
        got[0]
    );
    assert_eq!(parsed[0]["offset"], 0);
    assert_eq!(parsed[1]["x"], 1);
    assert_ne!(parsed[1]["host"], "theirs", "the source's host wins");
    assert_eq!(parsed[2].as_object().map(|o| o.len()), Some(3));
    assert_eq!(parsed[3]["message"], "not json");
    assert_eq!(parsed[4]["nested"], json!({"offset": -1}));
    assert!(
        got[4].starts_with(r#"{"nested":{"offset":-1},"file":"#),
        "{}",
        got[4]
    );
    topo.stop(Duration::from_secs(5)).await;
}
