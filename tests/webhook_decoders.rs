//! Every vendor payload in `tests/fixtures/webhooks` is POSTed over HTTP to a running
//! webhook source, one route per decoder, and the normalized events are compared value
//! by value with `tests/fixtures/webhooks/cases.yaml` (expectations written by reading
//! each payload and its vendor's documentation). Firing/resolved pairs must share a
//! fingerprint. SNS envelopes are re-signed with the test key, so they go through real
//! signature verification; raw CloudWatch alarm messages are wrapped in a signed SNS
//! envelope, as SNS delivers them.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{free_port, parse, resign_sns, start, wait_for_port};
use serde_json::{Value as Json, json};
use sluice::testing::CaptureSink;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const TEST_CERT_URL: &str =
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-sluice-test.pem";
const DECODERS: &[&str] = &[
    "grafana",
    "alertmanager",
    "aws_sns",
    "aws_eventbridge",
    "gcp_monitoring",
    "azure_monitor",
    "oci",
    "cloudevents",
];

struct Harness {
    port: u16,
    sink: CaptureSink,
    client: reqwest::Client,
    /// How often each SNS MessageId was posted: a route drops one it has accepted (a
    /// replay), and several fixtures are one AWS sample delivered two ways.
    sns_ids: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    _topology: sluice::topology::Topology,
}

/// Routes with the `aws_sns` decoder: one per delivery of the same MessageId.
const SNS_ROUTES: usize = 3;

impl Harness {
    async fn start() -> Self {
        let port = free_port();
        let routes: String = DECODERS
            .iter()
            .map(|d| {
                let sns = if *d == "aws_sns" {
                    format!(
                        // The fixtures were signed years ago: a window that still holds them.
                        ", sns: {{ max_age: 36500d, certificates: {{ \"{TEST_CERT_URL}\": \"{FIXTURES}/sns/test-signing-cert.pem\" }} }}"
                    )
                } else {
                    String::new()
                };
                let copies = if *d == "aws_sns" { SNS_ROUTES } else { 1 };
                (0..copies)
                    .map(|i| {
                        let path = if i == 0 { d.to_string() } else { format!("{d}_{i}") };
                        format!("      - {{ path: /{path}, decoder: {d}{sns} }}\n")
                    })
                    .collect::<String>()
            })
            .collect();
        let mut p = parse(&format!(
            "sources:\n  hooks:\n    type: webhook\n    address: \"127.0.0.1:{port}\"\n    routes:\n{routes}"
        ));
        let sink = CaptureSink::default();
        sink.attach(&mut p, "out", &["hooks"], 1000);
        let (topology, _) = start(p).await;
        wait_for_port(port).await;
        Self {
            port,
            sink,
            client: reqwest::Client::new(),
            sns_ids: Default::default(),
            _topology: topology,
        }
    }

    fn captured(&self) -> Vec<Json> {
        self.sink
            .values()
            .iter()
            .map(|v| serde_json::to_value(v).expect("an event is JSON"))
            .collect()
    }

    /// POSTs a fixture (after the edits in `set`) and returns the events it produced.
    async fn post(&self, fixture: &str, decoder: &str, set: Option<&Json>) -> Vec<Json> {
        let path = Path::new(FIXTURES).join("webhooks").join(fixture);
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (headers, mut body) = if fixture.ends_with(".http") {
            split_http(&text)
        } else {
            (Vec::new(), text)
        };
        if let Some(set) = set {
            let mut doc: Json = serde_json::from_slice(&body).expect("fixture is JSON");
            for (pointer, value) in set.as_object().expect("`set` is a map") {
                if let Some(slot) = doc.pointer_mut(pointer) {
                    *slot = value.clone();
                    continue;
                }
                // A new key: insert it into its parent object.
                let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
                doc.pointer_mut(parent)
                    .and_then(Json::as_object_mut)
                    .unwrap_or_else(|| panic!("{fixture}: no object at {parent}"))
                    .insert(key.to_owned(), value.clone());
            }
            body = serde_json::to_vec(&doc).expect("JSON");
        }
        let mut path = decoder.to_owned();
        if decoder == "aws_sns" {
            body = sns_envelope(&body);
            let id = serde_json::from_slice::<Json>(&body).expect("JSON")["MessageId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut ids = self.sns_ids.lock().expect("lock");
            let seen = ids.entry(id).or_insert(0);
            if *seen > 0 {
                path = format!("{decoder}_{seen}");
            }
            *seen += 1;
            assert!(*seen <= SNS_ROUTES, "{fixture}: add an SNS route");
        }
        let before = self.sink.values().len();
        let mut request = self
            .client
            .post(format!("http://127.0.0.1:{}/{path}", self.port))
            .body(body);
        for (k, v) in headers {
            if !["content-length", "host", "connection"].contains(&k.to_ascii_lowercase().as_str())
            {
                request = request.header(k, v);
            }
        }
        let response = request.send().await.expect("POST");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "{fixture} via {decoder}: {text}");
        let events = self.captured();
        events[before..].to_vec()
    }
}

/// `.http` fixtures: request line, headers, blank line, body.
fn split_http(text: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let text = String::from_utf8_lossy(text).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").expect("headers and body");
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    (headers, body.as_bytes().to_vec())
}

/// Re-signs an SNS envelope with the test key, or wraps a bare message (a CloudWatch
/// alarm) in a signed Notification the way SNS delivers it.
fn sns_envelope(body: &[u8]) -> Vec<u8> {
    let doc: Json = serde_json::from_slice(body).expect("JSON");
    let mut envelope = if doc.get("Type").is_some() {
        doc
    } else {
        json!({
            "Type": "Notification",
            // A new message each time: one MessageId seen twice is dropped as a replay.
            "MessageId": uuid::Uuid::new_v4().to_string(),
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:alarms",
            "Subject": "ALARM",
            "Message": String::from_utf8_lossy(body),
            "Timestamp": "2021-01-01T00:00:00.000Z",
        })
    };
    resign_sns(
        &mut envelope,
        TEST_CERT_URL,
        &format!("{FIXTURES}/sns/test-signing-key.pem"),
    );
    serde_json::to_vec(&envelope).expect("JSON")
}

/// `expected` holds for `actual`: equal values; objects match on the keys listed.
fn check(actual: &Json, expected: &Json, at: &str, failures: &mut Vec<String>) {
    match (actual, expected) {
        (Json::Object(a), Json::Object(e)) => {
            for (k, ev) in e {
                check(
                    a.get(k).unwrap_or(&Json::Null),
                    ev,
                    &format!("{at}.{k}"),
                    failures,
                );
            }
        }
        (a, e) if a == e => {}
        // Numbers may come back as floats or integers.
        (Json::Number(a), Json::Number(e)) if a.as_f64() == e.as_f64() => {}
        (a, e) => failures.push(format!("{at}: expected {e}, got {a}")),
    }
}

fn cases() -> Json {
    let text =
        std::fs::read_to_string(format!("{FIXTURES}/webhooks/cases.yaml")).expect("cases.yaml");
    serde_saphyr::from_str(&text).expect("cases.yaml parses")
}

#[tokio::test]
async fn every_vendor_fixture_decodes_to_the_expected_alerts() {
    let h = Harness::start().await;
    let doc = cases();
    let list = doc
        .get("cases")
        .or(Some(&doc))
        .and_then(Json::as_array)
        .expect("a list of cases");
    let mut failures = Vec::new();
    let mut by_fixture: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    let mut covered = std::collections::BTreeSet::new();
    for case in list {
        let fixture = case["fixture"].as_str().expect("fixture");
        let decoder = case["decoder"].as_str().expect("decoder");
        covered.insert(fixture.to_owned());
        let events = h.post(fixture, decoder, None).await;
        let expected = case["events"].as_array().expect("events");
        if events.len() != expected.len() {
            failures.push(format!(
                "{fixture}: expected {} events, got {}: {}",
                expected.len(),
                events.len(),
                serde_json::to_string_pretty(&events).unwrap_or_default()
            ));
            continue;
        }
        for (i, (actual, want)) in events.iter().zip(expected).enumerate() {
            check(actual, want, &format!("{fixture}[{i}]"), &mut failures);
            for field in ["id", "time", "event_type", "source", "request_id"] {
                if actual.get(field).is_none_or(Json::is_null) {
                    failures.push(format!("{fixture}[{i}]: no {field}"));
                }
            }
        }
        by_fixture.insert(fixture.to_owned(), events);
    }
    // Every payload fixture has a case.
    for dir in ["grafana", "aws", "gcp", "azure", "oci", "cloudevents"] {
        for entry in std::fs::read_dir(Path::new(FIXTURES).join("webhooks").join(dir)).expect("dir")
        {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let fixture = format!("{dir}/{name}");
            if (name.ends_with(".json") || name.ends_with(".http")) && !covered.contains(&fixture) {
                failures.push(format!("{fixture}: no case in cases.yaml"));
            }
        }
    }

    // Natural firing/resolved pairs across fixtures.
    for pair in doc
        .get("pairs")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let pick = |side: &str| {
            let fixture = pair[side]["fixture"].as_str().expect("fixture");
            let index = pair[side]["index"].as_u64().unwrap_or(0) as usize;
            by_fixture
                .get(fixture)
                .and_then(|events| events.get(index))
                .cloned()
                .unwrap_or_else(|| panic!("pair refers to {fixture}[{index}]"))
        };
        let (firing, resolved) = (pick("firing"), pick("resolved"));
        if firing["status"] != "firing" || resolved["status"] != "resolved" {
            failures.push(format!(
                "pair {pair}: statuses {} / {}",
                firing["status"], resolved["status"]
            ));
        }
        if firing["fingerprint"] != resolved["fingerprint"] || firing["fingerprint"].is_null() {
            failures.push(format!("pair {pair}: fingerprints differ"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// For vendors without a natural pair among the fixtures, the same payload with its
/// state flipped to resolved keeps the fingerprint.
#[tokio::test]
async fn firing_and_resolved_of_one_alert_share_a_fingerprint() {
    let h = Harness::start().await;
    let doc = cases();
    let edits = doc
        .get("pairs_by_edit")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(!edits.is_empty(), "cases.yaml lists pairs_by_edit");
    let mut failures = Vec::new();
    for edit in edits {
        let fixture = edit["fixture"].as_str().expect("fixture");
        let decoder = edit["decoder"].as_str().expect("decoder");
        let index = edit["index"].as_u64().unwrap_or(0) as usize;
        let before = h.post(fixture, decoder, edit.get("firing_set")).await;
        let after = h
            .post(
                fixture,
                decoder,
                edit.get("set").or_else(|| edit.get("resolved_set")),
            )
            .await;
        let (Some(a), Some(b)) = (before.get(index), after.get(index)) else {
            failures.push(format!("{fixture}: no event {index}"));
            continue;
        };
        let want = edit
            .get("expect_status")
            .and_then(Json::as_str)
            .unwrap_or("resolved");
        if b["status"] != want || a["status"] == b["status"] {
            failures.push(format!(
                "{fixture}: status {} then {}, wanted a change to {want}",
                a["status"], b["status"]
            ));
        }
        if a["fingerprint"] != b["fingerprint"] || a["fingerprint"].is_null() {
            failures.push(format!(
                "{fixture}: fingerprint {} then {}",
                a["fingerprint"], b["fingerprint"]
            ));
        }
        if let Some(expect) = edit.get("expect") {
            check(
                b,
                expect,
                &format!("{fixture} (edited)[{index}]"),
                &mut failures,
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The schema spells "not given" as null: vendor fields that are empty strings never
/// reach an event as `""` (each decoder writes null itself rather than mapping every
/// event at the end).
#[tokio::test]
async fn empty_vendor_strings_become_null() {
    let h = Harness::start().await;
    let am = "grafana/alertmanager_oncall-example_firing_2alerts.json";
    let empty_am = serde_json::json!({
        "/alerts/0/annotations": {"summary": "", "title": "", "description": ""},
        "/alerts/0/generatorURL": "",
        "/externalURL": "",
        "/alerts/0/labels/service": "",
    });
    let legacy = "grafana/grafana-docs_legacy_webhook_alerting.json";
    let empty_legacy = serde_json::json!({"/message": "", "/ruleUrl": ""});
    let mut events = h.post(am, "alertmanager", Some(&empty_am)).await;
    events.extend(h.post(legacy, "grafana", Some(&empty_legacy)).await);
    assert_eq!(events.len(), 3, "{events:?}");
    for event in &events {
        for (key, value) in event.as_object().expect("an object") {
            assert_ne!(value, "", "{key} is an empty string in {event}");
        }
    }
    // The first alert's summary falls back to its alertname; the rest are null.
    assert_eq!(events[0]["summary"], "InstanceDown");
    for key in ["description", "url", "service"] {
        assert!(events[0][key].is_null(), "{key}: {}", events[0]);
    }
    for key in ["description", "url"] {
        assert!(events[2][key].is_null(), "{key}: {}", events[2]);
    }

    // Every other decoder: a fixture with vendor fields emptied, and the keys that must
    // then be null.
    let cases = [
        (
            "aws/eventbridge_cloudwatch_alarm_state_change_single_metric.json",
            "aws_eventbridge",
            serde_json::json!({"/detail/state/reason": "", "/account": "", "/resources/0": ""}),
            &["description", "project"][..],
        ),
        (
            "aws/cloudwatch_alarm_message_single_metric_ALARM.json",
            "aws_sns",
            serde_json::json!({"/NewStateReason": "", "/Trigger/Namespace": "", "/AlarmArn": "", "/Region": ""}),
            &["description", "service"][..],
        ),
        (
            "oci/alarm_REPEAT_grouped_2dimensions_v1.1_docs-example.json",
            "oci",
            serde_json::json!({"/body": "", "/alarmUrl": "", "/alarmMetaData/0/namespace": ""}),
            &["description", "url", "service"][..],
        ),
        (
            "oci/event_objectstorage_createobject_docs-example.json",
            "oci",
            serde_json::json!({"/source": "", "/extensions/compartmentId": "", "/data/compartmentId": ""}),
            &["service", "project"][..],
        ),
        (
            "azure/common_schema_metric_resolved_docs.json",
            "azure_monitor",
            serde_json::json!({"/data/essentials/monitoringService": "", "/data/essentials/description": ""}),
            &["service", "description"][..],
        ),
        (
            "gcp/monitoring_webhook_v1.2_closed_gcp-forwarding-test.json",
            "gcp_monitoring",
            serde_json::json!({"/incident/url": "", "/incident/documentation": ""}),
            &["url", "description"][..],
        ),
        (
            "cloudevents/spec_json_data_object.json",
            "cloudevents",
            serde_json::json!({"/data": "", "/datacontenttype": "text/plain"}),
            &["description"][..],
        ),
    ];
    for (fixture, decoder, set, null_keys) in cases {
        let events = h.post(fixture, decoder, Some(&set)).await;
        assert!(!events.is_empty(), "{fixture}: no events");
        for event in &events {
            for (key, value) in event.as_object().expect("an object") {
                assert_ne!(value, "", "{fixture}: {key} is an empty string in {event}");
            }
            for key in null_keys {
                assert!(event[key].is_null(), "{fixture}: {key}: {event}");
            }
        }
    }
}

/// AWS bodies with several items: an item that is not an object or names an unknown
/// SNS type is refused with its own path, before any error in what an earlier item
/// carries; confirmations among alarms give no event; nothing is half-accepted.
#[tokio::test]
async fn aws_item_errors_name_the_first_bad_item() {
    let h = Harness::start().await;
    let fixture = |name: &str| -> Json {
        let path = format!("{FIXTURES}/webhooks/aws/{name}");
        serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("JSON")
    };
    let alarm = fixture("eventbridge_cloudwatch_alarm_state_change_single_metric.json");
    let confirmation = fixture("sns_body_subscription_confirmation_docs.json");
    let post = |body: Json| {
        h.client
            .post(format!("http://127.0.0.1:{}/aws_eventbridge", h.port))
            .json(&body)
            .send()
    };
    let weird = json!({"Type": "Weird", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": "m"});
    let mut many = vec![json!(1); 50_000];
    many.insert(0, alarm.clone());
    let refused = [
        (json!([alarm, 1]), ".[1]", "expected an object"),
        (
            json!([alarm, weird]),
            ".[1].Type",
            "unknown SNS message type Weird",
        ),
        // The item error at .[2] wins over the content error at .[0].
        (json!([{}, alarm, "x"]), ".[2]", "expected an object"),
        (
            json!([{}, {}]),
            ".[0]",
            "expected an SNS message, an EventBridge event",
        ),
        (
            json!({"Records": [{"Sns": alarm}, 5]}),
            ".Records[1]",
            "expected an object",
        ),
        (Json::Array(many), ".[1]", "expected an object"),
    ];
    let before = h.captured().len();
    for (body, path, error) in refused {
        let response = post(body).await.expect("POST");
        assert_eq!(response.status(), 400, "{path}");
        let answer: Json = response.json().await.expect("JSON answer");
        assert_eq!(answer["path"], path, "{answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.starts_with(error), "{path}: {answer}");
    }
    assert_eq!(h.captured().len(), before, "a refused body gave events");

    let response = post(json!([confirmation, alarm, confirmation]))
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    let events = h.captured();
    assert_eq!(events.len(), before + 1, "{events:?}");
    assert_eq!(events[before]["kind"], "cloudwatch_alarm");
}
