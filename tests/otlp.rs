//! The `otlp` source and sink against real OpenTelemetry parts: Python's SDK and its
//! OTLP exporters (HTTP and gRPC) sending to the source, and a receiver built on
//! Python's opentelemetry-proto taking what the sink sends
//! (`tests/clients/otlp_export.py`, `tests/clients/otlp_receiver.py`; `.ci/run`
//! installs the packages).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{eventually, free_port, manual, parse, start, start_with, wait_for_port};
use serde_json::{Value as Json, json};
use sluice::testing::CaptureSink;
use vrl::value::Value;

fn tools() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/sluice-tools/python")
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Whether the OpenTelemetry packages are there; outside CI a test without them skips.
fn otel_installed() -> bool {
    let ok = Command::new("python3")
        .env("PYTHONPATH", tools())
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, grpc",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        sluice::testing::skip(
            "opentelemetry-sdk and opentelemetry-exporter-otlp are not installed (.ci/run installs them)",
        );
    }
    ok
}

/// Runs the SDK exporter script; whether every export succeeded, and its stderr.
async fn export(protocol: &str, endpoint: String, token: Option<&str>) -> (bool, String) {
    let mut args = vec![protocol.to_owned(), endpoint];
    args.extend(token.map(str::to_owned));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .env("PYTHONPATH", tools())
            .env("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "false")
            .arg(script("otlp_export.py"))
            .args(&args)
            .output()
    })
    .await
    .expect("join")
    .expect("python3 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    let path = vrl::path::parse_value_path(path).expect("path");
    v.get(&path).unwrap_or(&Value::Null)
}

fn text(v: &Value, path: &str) -> String {
    field(v, path).to_string_lossy().into_owned()
}

fn source_pipeline(port: u16, extra: &str) -> sluice::config::Pipeline {
    parse(&format!(
        r#"
sources:
  otel: {{ type: otlp, address: "127.0.0.1:{port}", auth: {{ bearer: "otel-Secret-1" }}{extra} }}
sinks:
  none: {{ type: blackhole, inputs: [otel, otel.metrics, otel.traces] }}
"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_exports_logs_metrics_and_traces_over_http_and_grpc() {
    if !otel_installed() {
        return;
    }
    for protocol in ["http", "grpc"] {
        let port = free_port();
        let mut p = source_pipeline(port, "");
        let (logs, metrics, traces) = (
            CaptureSink::default(),
            CaptureSink::default(),
            CaptureSink::default(),
        );
        logs.attach(&mut p, "logs", &["otel"], 10);
        metrics.attach(&mut p, "metrics", &["otel.metrics"], 10);
        traces.attach(&mut p, "traces", &["otel.traces"], 10);
        let (topo, _) = start(p).await;
        wait_for_port(port).await;
        let endpoint = format!("http://127.0.0.1:{port}");
        let (ok, stderr) = export(protocol, endpoint.clone(), Some("otel-Secret-1")).await;
        assert!(ok, "{protocol}: {stderr}");
        let (refused, _) = export(protocol, endpoint, Some("wrong")).await;
        assert!(!refused, "{protocol}: a wrong token was let in");

        let got = logs.values();
        assert_eq!(got.len(), 2, "{protocol}: {got:?}");
        let declined = &got[0];
        assert_eq!(text(declined, "message"), "card declined");
        assert_eq!(field(declined, "severity_number"), &Value::Integer(13));
        assert_eq!(
            field(declined, "attributes.\"order.id\""),
            &Value::Integer(4711)
        );
        assert_eq!(field(declined, "attributes.retry"), &Value::Boolean(true));
        assert_eq!(text(declined, "attributes.amount"), "12.5");
        assert_eq!(text(declined, "resources.\"service.name\""), "checkout");
        assert_eq!(text(declined, "scope.name"), "checkout.payments");
        assert!(matches!(field(declined, "timestamp"), Value::Timestamp(_)));
        assert_eq!(field(&got[1], "severity_number"), &Value::Integer(17));

        let spans = traces.values();
        assert_eq!(spans.len(), 1, "{protocol}");
        let span = &spans[0];
        assert_eq!(text(span, "name"), "POST /pay");
        assert_eq!(text(span, "trace_id").len(), 32);
        assert_eq!(text(span, "span_id").len(), 16);
        assert_eq!(
            field(span, "attributes.\"http.status_code\""),
            &Value::Integer(502)
        );
        assert_eq!(text(span, "events[0].name"), "retrying");
        assert_eq!(text(span, "scope.name"), "checkout.http");

        let points = metrics.values();
        assert_eq!(points.len(), 1, "{protocol}: {points:?}");
        let point = &points[0];
        assert_eq!(text(point, "name"), "payments");
        assert_eq!(text(point, "type"), "sum");
        assert_eq!(field(point, "value"), &Value::Integer(3));
        assert_eq!(field(point, "is_monotonic"), &Value::Boolean(true));
        assert_eq!(text(point, "attributes.outcome"), "declined");
        topo.stop(std::time::Duration::from_secs(5)).await;
    }
}

async fn post(port: u16, path: &str, ct: &str, body: Vec<u8>, gzip: bool) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", ct)
        .bearer_auth("otel-Secret-1")
        .body(body);
    if gzip {
        request = request.header("content-encoding", "gzip");
    }
    request.send().await.expect("answered")
}

fn json_logs(bodies: &[&str]) -> Vec<u8> {
    let records: Vec<Json> = bodies
        .iter()
        .map(|b| {
            json!({"timeUnixNano": "1765000000000000000", "severityText": "INFO",
                   "body": {"stringValue": b},
                   "attributes": [{"key": "k", "value": {"intValue": "7"}}],
                   "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"})
        })
        .collect();
    serde_json::to_vec(&json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeLogs": [{"scope": {"name": "s"}, "logRecords": records}]
    }]}))
    .expect("json")
}

#[tokio::test]
async fn json_bodies_are_answered_in_json_and_refused_records_as_partial_success() {
    let dd = common::datadog::Datadog::default();
    let dd_port = dd.start().await;
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  otel: {{ type: otlp, address: "127.0.0.1:{port}", auth: {{ bearer: "otel-Secret-1" }} }}
sinks:
  dd: {{ type: datadog, inputs: [otel], api_key: "{key}", endpoint: "http://127.0.0.1:{dd_port}", batch: {{ timeout: 10ms }} }}
"#,
        key = common::datadog::API_KEY
    ));
    let capture = CaptureSink::default();
    capture.attach(&mut p, "capture", &["otel"], 10);
    let (topo, _) = start(p).await;
    wait_for_port(port).await;

    let response = post(
        port,
        "/v1/logs",
        "application/json",
        json_logs(&["a", "b"]),
        false,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Json = response.json().await.expect("json");
    assert!(body.get("partialSuccess").is_none(), "{body}");
    let events = capture.values();
    assert_eq!(events.len(), 2);
    assert_eq!(
        text(&events[0], "trace_id"),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(field(&events[0], "attributes.k"), &Value::Integer(7));
    assert_eq!(text(&events[0], "resources.\"service.name\""), "api");

    // One log Datadog cannot take: the sink dead-letters it (nothing reads the dead
    // letter), the others are delivered.
    let huge = "x".repeat(1_100_000);
    let response = post(
        port,
        "/v1/logs",
        "application/json",
        json_logs(&["c", &huge, "d"]),
        false,
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Json = response.json().await.expect("json");
    let rejected = &body["partialSuccess"]["rejectedLogRecords"];
    assert!(rejected == 1 || rejected == "1", "{body}");
    assert!(
        body["partialSuccess"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("1 of the 3 log records")),
        "{body}"
    );
    eventually("the four small logs at Datadog", || {
        dd.state.lock().expect("lock").logs.len() == 4
    })
    .await;
    topo.stop(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn hostile_requests_are_refused_with_the_reason() {
    let port = free_port();
    let p = source_pipeline(port, ", max_body_bytes: 65536, max_events_per_request: 2");
    let (topo, _) = start(p).await;
    wait_for_port(port).await;
    let url = format!("http://127.0.0.1:{port}/v1/logs");
    let client = reqwest::Client::new();

    let anonymous = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(vec![0u8; 1000])
        .send()
        .await
        .expect("answered");
    assert_eq!(anonymous.status(), 401);

    let text_body = post(port, "/v1/logs", "text/plain", b"hi".to_vec(), false).await;
    assert_eq!(text_body.status(), 415);

    let garbage = post(
        port,
        "/v1/logs",
        "application/x-protobuf",
        vec![0xff; 64],
        false,
    )
    .await;
    assert_eq!(garbage.status(), 400);
    let status: sluice_status::Status =
        prost::Message::decode(garbage.bytes().await.expect("body")).expect("a google.rpc.Status");
    assert_eq!(status.code, 3);
    assert!(
        status.message.contains("not an OTLP protobuf"),
        "{}",
        status.message
    );

    let bomb = {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 10 * 1024 * 1024]).expect("gzip");
        gz.finish().expect("gzip")
    };
    let bombed = post(port, "/v1/logs", "application/x-protobuf", bomb, true).await;
    assert_eq!(bombed.status(), 413);

    let three = post(
        port,
        "/v1/logs",
        "application/json",
        json_logs(&["1", "2", "3"]),
        false,
    )
    .await;
    assert_eq!(three.status(), 413);
    let body: Json = three.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_events_per_request")),
        "{body}"
    );
    topo.stop(std::time::Duration::from_secs(5)).await;
}

/// The error body's shape, as a client decodes it.
mod sluice_status {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
    }
}

/// The Python receiver, killed when dropped.
struct Receiver {
    child: Child,
    grpc: u16,
    http: u16,
    requests: Arc<Mutex<Vec<Json>>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new("python3")
            .env("PYTHONPATH", tools())
            .arg(script("otlp_receiver.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        let ports: Vec<u16> = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("the receiver did not start: {line:?}"))
            .split(' ')
            .map(|p| p.parse().expect("port"))
            .collect();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&requests);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    sink.lock().expect("lock").push(v);
                }
            }
        });
        Self {
            child,
            grpc: ports[0],
            http: ports[1],
            requests,
        }
    }

    fn records(&self, transport: &str) -> Vec<Json> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r["transport"] == transport)
            .flat_map(|r| {
                r["resource_logs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|rl| {
                        let resource = rl["resource"].clone();
                        rl["scopeLogs"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .flat_map(move |sl| {
                                let (resource, scope) = (resource.clone(), sl["scope"].clone());
                                sl["logRecords"]
                                    .as_array()
                                    .cloned()
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(move |r| json!({"resource": resource, "scope": scope, "record": r}))
                            })
                    })
            })
            .collect()
    }
}

fn attribute<'a>(list: &'a Json, key: &str) -> &'a Json {
    list.as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map_or(&Json::Null, |kv| &kv["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_sends_records_over_http_and_grpc_and_retries_an_unavailable_receiver() {
    if !otel_installed() {
        return;
    }
    let receiver = Receiver::start(&["--unavailable", "2"]);
    let p = parse(&format!(
        r#"
sources:
  alerts: {{ type: generator, count: 3, batch_size: 3, format: '{{"summary": "disk {{{{seq}}}} full", "severity": "critical", "fingerprint": "f{{{{seq}}}}", "labels": {{"host": "db1"}}}}' }}
sinks:
  http: {{ type: otlp, inputs: [alerts], endpoint: "http://127.0.0.1:{http}", headers: {{ authorization: "Bearer otlp-Token-9" }} }}
  grpc: {{ type: otlp, inputs: [alerts], protocol: grpc, endpoint: "http://127.0.0.1:{grpc}", headers: {{ authorization: "Bearer otlp-Token-9" }} }}
"#,
        http = receiver.http,
        grpc = receiver.grpc
    ));
    let (clock, options) = manual();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    // The receiver's lines are read on a thread of their own.
    eventually("three records over each transport", || {
        receiver.records("http").len() == 3 && receiver.records("grpc").len() == 3
    })
    .await;
    for transport in ["http", "grpc"] {
        let records = receiver.records(transport);
        assert_eq!(records.len(), 3, "{transport}: {records:?}");
        let first = &records[0]["record"];
        assert_eq!(first["body"]["stringValue"], "disk 0 full");
        assert_eq!(first["severityNumber"], "SEVERITY_NUMBER_FATAL");
        assert_eq!(
            attribute(&first["attributes"], "fingerprint")["stringValue"],
            "f0"
        );
        let labels = &attribute(&first["attributes"], "labels")["kvlistValue"]["values"];
        assert_eq!(attribute(labels, "host")["stringValue"], "db1");
    }
    let requests = receiver.requests.lock().expect("lock").clone();
    assert!(
        requests
            .iter()
            .all(|r| r["authorization"] == "Bearer otlp-Token-9"),
        "{requests:?}"
    );
    // gRPC's own compression is undone before the servicer sees the request.
    assert!(
        requests
            .iter()
            .filter(|r| r["transport"] == "http")
            .all(|r| r["encoding"] == "gzip"),
        "{requests:?}"
    );
    assert_eq!(clock.sleeps().len(), 2, "one pause per unavailable answer");
    assert!(
        clock.sleeps().contains(&std::time::Duration::from_secs(3)),
        "the 503's Retry-After was honoured: {:?}",
        clock.sleeps()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_dead_lettered_with_the_receivers_reason() {
    if !otel_installed() {
        return;
    }
    let receiver = Receiver::start(&["--refuse"]);
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 2, batch_size: 2, format: '{{"message": "m{{{{seq}}}}"}}' }}
sinks:
  http: {{ type: otlp, inputs: [gen], endpoint: "http://127.0.0.1:{http}", compression: none }}
  grpc: {{ type: otlp, inputs: [gen], protocol: grpc, endpoint: "http://127.0.0.1:{grpc}" }}
"#,
        http = receiver.http,
        grpc = receiver.grpc
    ));
    let dead = CaptureSink::default();
    dead.attach(
        &mut p,
        "dead",
        &["http.dead_letter", "grpc.dead_letter"],
        10,
    );
    let (clock, options) = manual();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("four dead letters", || dead.values().len() == 4).await;
    let reasons: Vec<String> = dead
        .values()
        .iter()
        .map(|v| text(v, "dead_letter.error"))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("HTTP 400: schema rejected")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("InvalidArgument") && r.contains("schema rejected")),
        "{reasons:?}"
    );
    assert!(clock.sleeps().is_empty(), "a refusal is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_through_sluice_keeps_every_attribute() {
    if !otel_installed() {
        return;
    }
    let receiver = Receiver::start(&[]);
    let port = free_port();
    let p = parse(&format!(
        r#"
sources:
  otel: {{ type: otlp, address: "127.0.0.1:{port}" }}
sinks:
  out: {{ type: otlp, inputs: [otel], protocol: grpc, endpoint: "http://127.0.0.1:{grpc}", batch: {{ timeout: 10ms }} }}
  none: {{ type: blackhole, inputs: [otel.metrics, otel.traces] }}
"#,
        grpc = receiver.grpc
    ));
    let (topo, _) = start(p).await;
    wait_for_port(port).await;
    let (ok, stderr) = export("grpc", format!("http://127.0.0.1:{port}"), None).await;
    assert!(ok, "{stderr}");
    eventually("both records at the receiver", || {
        receiver.records("grpc").len() == 2
    })
    .await;
    let records = receiver.records("grpc");
    assert_eq!(records.len(), 2, "{records:?}");
    let first = &records[0];
    assert_eq!(
        attribute(&first["resource"]["attributes"], "service.name")["stringValue"],
        "checkout"
    );
    assert_eq!(
        attribute(&first["resource"]["attributes"], "telemetry.sdk.language")["stringValue"],
        "python"
    );
    assert_eq!(first["scope"]["name"], "checkout.payments");
    let record = &first["record"];
    assert_eq!(record["body"]["stringValue"], "card declined");
    assert_eq!(record["severityNumber"], "SEVERITY_NUMBER_WARN");
    assert_eq!(record["severityText"], "WARN");
    let attributes = &record["attributes"];
    assert_eq!(attribute(attributes, "order.id")["intValue"], "4711");
    assert_eq!(attribute(attributes, "retry")["boolValue"], true);
    assert_eq!(attribute(attributes, "amount")["doubleValue"], 12.5);
    assert!(
        record["timeUnixNano"]
            .as_str()
            .is_some_and(|t| t.len() >= 19)
    );
    let tags = &attribute(&records[1]["record"]["attributes"], "tags")["arrayValue"]["values"];
    assert_eq!(tags[0]["stringValue"], "a");
    topo.stop(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn grpc_requests_are_authenticated_and_bounded() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    let port = free_port();
    let p = source_pipeline(port, ", max_body_bytes: 65536, max_events_per_request: 2");
    let (topo, _) = start(p).await;
    wait_for_port(port).await;
    let request = |bodies: &[&str]| -> ExportLogsServiceRequest {
        prost::Message::decode(
            // The JSON shape the HTTP test sends, through the same types.
            &prost::Message::encode_to_vec(
                &serde_json::from_slice::<ExportLogsServiceRequest>(&json_logs(bodies))
                    .expect("OTLP/JSON"),
            )[..],
        )
        .expect("protobuf")
    };
    let mut client = LogsServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connects");
    let anonymous = client.export(request(&["a"])).await.expect_err("refused");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);

    let authed = |r: ExportLogsServiceRequest| {
        let mut r = tonic::Request::new(r);
        r.metadata_mut().insert(
            "authorization",
            "Bearer otel-Secret-1".parse().expect("value"),
        );
        r
    };
    let taken = client.export(authed(request(&["a"]))).await.expect("taken");
    assert!(taken.get_ref().partial_success.is_none());
    let three = client
        .export(authed(request(&["1", "2", "3"])))
        .await
        .expect_err("over max_events_per_request");
    assert_eq!(three.code(), tonic::Code::InvalidArgument);
    assert!(
        three.message().contains("max_events_per_request"),
        "{}",
        three.message()
    );
    let big = "y".repeat(100_000);
    let large = client
        .export(authed(request(&[&big])))
        .await
        .expect_err("over max_body_bytes");
    assert_eq!(large.code(), tonic::Code::InvalidArgument, "{large:?}");
    assert!(large.message().contains("max_body_bytes"), "{large:?}");
    topo.stop(std::time::Duration::from_secs(5)).await;
}

/// Builds a logs request whose resource carries a `key_bytes`-long attribute key, for
/// `records` empty records, as protobuf.
fn amplifying_request(key_bytes: usize, records: usize) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "k".repeat(key_bytes),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); records],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    prost::Message::encode_to_vec(&request)
}

#[tokio::test]
async fn a_small_request_cannot_stand_for_a_large_memory() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    let port = free_port();
    let p = source_pipeline(
        port,
        ", max_body_bytes: 65536, max_events_per_request: 5000",
    );
    let (topo, _) = start(p).await;
    wait_for_port(port).await;
    // 20 KB of resource copied into 2,000 records: 40 MB of events from 24 KB.
    let amplifying = amplifying_request(20_000, 2_000);
    let refused = post(
        port,
        "/v1/logs",
        "application/x-protobuf",
        amplifying.clone(),
        false,
    )
    .await;
    assert_eq!(refused.status(), 413);
    let status: sluice_status::Status =
        prost::Message::decode(refused.bytes().await.expect("body")).expect("a Status");
    assert!(status.message.contains("would copy"), "{}", status.message);
    // 6,000 empty records (12 KB) are counted before they are decoded.
    let many = post(
        port,
        "/v1/logs",
        "application/x-protobuf",
        amplifying_request(1, 6_000),
        false,
    )
    .await;
    assert_eq!(many.status(), 413);

    let mut client = LogsServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connects");
    let mut request = tonic::Request::new(
        <ExportLogsServiceRequest as prost::Message>::decode(&amplifying[..]).expect("decodes"),
    );
    request.metadata_mut().insert(
        "authorization",
        "Bearer otel-Secret-1".parse().expect("value"),
    );
    let refused = client.export(request).await.expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("would copy"),
        "{}",
        refused.message()
    );
    topo.stop(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_grpc_stream_gives_its_turn_back_after_read_timeout() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    let port = free_port();
    let p = source_pipeline(
        port,
        ", max_concurrent_requests: 1, read_timeout: 300ms, request_timeout: 5s",
    );
    let (topo, _) = start(p).await;
    wait_for_port(port).await;
    let mut staller = Command::new("python3")
        .arg(script("h2_stall.py"))
        .args([&port.to_string(), "otel-Secret-1", "1", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    BufReader::new(staller.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "stalled");
    let mut client = LogsServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connects");
    let request = serde_json::from_slice::<ExportLogsServiceRequest>(&json_logs(&["after"]))
        .expect("OTLP/JSON");
    let mut request = tonic::Request::new(request);
    request.metadata_mut().insert(
        "authorization",
        "Bearer otel-Secret-1".parse().expect("value"),
    );
    let started = std::time::Instant::now();
    client
        .export(request)
        .await
        .expect("taken once the stalled stream timed out");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "waited {:?}: the stalled stream held the only turn",
        started.elapsed()
    );
    let _ = staller.kill();
    let _ = staller.wait();
    topo.stop(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_sink_that_stays_down_makes_the_source_say_send_again() {
    let port = free_port();
    let down = free_port();
    let p = parse(&format!(
        r#"
sources:
  otel: {{ type: otlp, address: "127.0.0.1:{port}" }}
sinks:
  out: {{ type: http, inputs: [otel], url: "http://127.0.0.1:{down}/", failure_handling: {{ max_retries: 1 }} }}
"#
    ));
    let (_clock, options) = manual();
    let (topo, _) = start_with(p, options).await;
    wait_for_port(port).await;
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/logs"))
        .header("content-type", "application/json")
        .body(json_logs(&["a"]))
        .send()
        .await
        .expect("answered");
    // Retries ran out on an endpoint that was down: not refused for good.
    assert_eq!(response.status(), 503);
    topo.stop(std::time::Duration::from_secs(5)).await;
}
