//! The webhook source over real HTTP: routes, authentication, body hygiene, request ids,
//! per-route metrics, TLS, and Amazon SNS signatures and subscription confirmation.

mod common;

use std::io::Write;
use std::sync::Arc;

use common::{
    Receiver, Reply, free_port, parse, sign_sns, start, start_with, string, wait_for_port,
};
use serde_json::{Value as Json, json};
use sluice::clock::ManualClock;
use sluice::testing::CaptureSink;
use sluice::topology::TopologyOptions;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn body_json(r: reqwest::Response) -> Json {
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON body ({e}): {text}"))
}

#[tokio::test]
async fn each_route_has_its_decoder_and_auth_and_errors_name_the_problem() {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hooks:
    type: webhook
    address: "127.0.0.1:{port}"
    capture_headers: [X-Team]
    routes:
      - path: /grafana
        decoder: grafana
        auth: {{ basic: {{ user: grafana, password: "pa:ss" }} }}
      - path: /events
        auth: {{ bearer: tok }}
      - path: /am
        decoder: alertmanager
        default_severity: high
        auth: {{ api_key: {{ query: tokenid, value: k1 }} }}
transforms:
  meta:
    type: remap
    inputs: [hooks]
    source: |
      .meta_headers = %headers
      .meta_request_id = %request_id
      .meta_route = %route
"#
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["meta"], 100);
    let (_topo, telemetry) = start(p).await;
    wait_for_port(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let grafana = std::fs::read(format!(
        "{FIXTURES}/webhooks/grafana/grafana-docs_unified_webhook_firing_2alerts_values.json"
    ))
    .expect("fixture");

    // Wrong or missing credentials: 401, no detail, nothing emitted.
    let r = client()
        .post(format!("{base}/grafana"))
        .body(grafana.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"sluice\"");
    assert_eq!(body_json(r).await, json!({"error": "unauthorized"}));
    let r = client()
        .post(format!("{base}/grafana"))
        .basic_auth("grafana", Some("pass"))
        .body(grafana.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 401);
    let r = client()
        .post(format!("{base}/events"))
        .bearer_auth("nope")
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 401);
    assert!(sink.values().is_empty());

    // Right credentials: the Grafana payload's two alerts, stamped with the request id.
    let r = client()
        .post(format!("{base}/grafana"))
        .basic_auth("grafana", Some("pa:ss"))
        .header("x-request-id", "req-42")
        .header("x-team", "core")
        .body(grafana.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-42");
    assert_eq!(body_json(r).await, json!({"accepted": 2}));
    let events = sink.values();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(string(e, "request_id").as_deref(), Some("req-42"));
        assert_eq!(string(e, "meta_request_id").as_deref(), Some("req-42"));
        assert_eq!(string(e, "meta_route").as_deref(), Some("/grafana"));
        assert_eq!(string(e, "source").as_deref(), Some("grafana"));
        assert_eq!(
            common::field(e, "meta_headers"),
            vrl::value::Value::from(vrl::value::ObjectMap::from([(
                "x-team".into(),
                vrl::value::Value::from("core")
            )]))
        );
    }

    // Generic JSON passes through; a generated request id is sent back and stamped.
    let r = client()
        .post(format!("{base}/events"))
        .bearer_auth("tok")
        .body("{\"n\":1}\n{\"n\":2}")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let generated = r.headers()["x-request-id"].to_str().expect("id").to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let events = sink.values();
    assert_eq!(events.len(), 4);
    assert_eq!(common::int(&events[3], "n"), 2);
    assert!(
        events[3]
            .as_object()
            .expect("object")
            .get("request_id")
            .is_none(),
        "the payload is untouched"
    );
    assert_eq!(
        string(&events[3], "meta_request_id").as_deref(),
        Some(generated.as_str())
    );

    // A malformed body names the decoder, the problem and the JSON path.
    let r = client()
        .post(format!("{base}/am?tokenid=k1"))
        .body(r#"{"alerts": [{"labels": {"a": }}]}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 400);
    let err = body_json(r).await;
    assert_eq!(err["decoder"], "alertmanager");
    assert_eq!(err["path"], ".alerts[0].labels.a");
    assert!(
        err["error"]
            .as_str()
            .expect("error")
            .contains("line 1 column"),
        "{err}"
    );
    // Valid JSON in the wrong shape: the plugin names the path.
    let r = client()
        .post(format!("{base}/am?tokenid=k1"))
        .body(r#"{"alerts": "nope"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 400);
    let err = body_json(r).await;
    assert_eq!(err["decoder"], "alertmanager");
    assert_eq!(err["path"], ".alerts", "{err}");

    // No severity label: the route's default_severity.
    let am = json!({"version": "4", "status": "firing", "receiver": "r", "groupKey": "g",
        "alerts": [{"status": "firing", "labels": {"alertname": "Down"}, "annotations": {},
        "startsAt": "2026-11-21T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "abc"}]});
    let r = client()
        .post(format!("{base}/am?tokenid=k1"))
        .json(&am)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let last = sink.values().pop().expect("event");
    assert_eq!(string(&last, "severity").as_deref(), Some("high"));
    assert_eq!(string(&last, "source").as_deref(), Some("alertmanager"));

    // An unknown path is told so, without a list of the routes (see hostile_webhook).
    let r = client()
        .post(format!("{base}/nope"))
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 404);
    let error = body_json(r).await["error"]
        .as_str()
        .expect("error")
        .to_owned();
    assert!(
        error.contains("no route here") && !error.contains("/grafana"),
        "{error}"
    );

    // Metrics per route: accepted events, rejected requests by reason.
    let text = telemetry.render_prometheus();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.starts_with("sluice_webhook") && l.contains(needle))
            .unwrap_or_else(|| panic!("no metric with {needle} in\n{text}"))
            .rsplit(' ')
            .next()
            .expect("value")
            .to_owned()
    };
    assert_eq!(
        line(
            "accepted_events_total{component_id=\"hooks\",component_kind=\"source\",component_type=\"webhook\",route=\"/grafana\"}"
        ),
        "2"
    );
    assert_eq!(
        line(
            "accepted_events_total{component_id=\"hooks\",component_kind=\"source\",component_type=\"webhook\",route=\"/events\"}"
        ),
        "2"
    );
    assert_eq!(line("route=\"/grafana\",reason=\"unauthorized\"}"), "2");
    assert_eq!(line("route=\"/events\",reason=\"unauthorized\"}"), "1");
    assert_eq!(line("route=\"/am\",reason=\"malformed\"}"), "2");
}

#[tokio::test]
async fn grafana_hmac_signatures_are_checked_over_timestamp_and_body() {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  grafana:
    type: webhook
    address: "127.0.0.1:{port}"
    decoder: grafana
    auth:
      hmac:
        header: X-Grafana-Alerting-Signature
        timestamp_header: X-Grafana-Alerting-Signature-Timestamp
        secret: hush
"#
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["grafana"], 100);
    let (_topo, _) = start(p).await;
    wait_for_port(port).await;
    let body = std::fs::read(format!(
        "{FIXTURES}/webhooks/grafana/grafana-alerting_test_resolved_single.json"
    ))
    .expect("fixture");
    let ts = chrono::Utc::now().timestamp().to_string();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"hush");
    let mut signed = ts.as_bytes().to_vec();
    signed.push(b':');
    signed.extend_from_slice(&body);
    let sig: String = ring::hmac::sign(&key, &signed)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let post = |sig: String, body: Vec<u8>| {
        client()
            .post(format!("http://127.0.0.1:{port}/"))
            .header("X-Grafana-Alerting-Signature", sig)
            .header("X-Grafana-Alerting-Signature-Timestamp", ts.clone())
            .body(body)
            .send()
    };
    let mut tampered = body.clone();
    let last = tampered.len() - 2;
    tampered[last] = b' ';
    assert_eq!(
        post(sig.clone(), tampered).await.expect("POST").status(),
        401
    );
    assert!(sink.values().is_empty());
    assert_eq!(post(sig, body).await.expect("POST").status(), 200);
    let events = sink.values();
    assert_eq!(events.len(), 1);
    assert_eq!(string(&events[0], "status").as_deref(), Some("resolved"));
}

#[tokio::test]
async fn bodies_are_bounded_decompressed_and_read_with_a_deadline() {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{port}", max_body_bytes: 2000, read_timeout: 300ms }}
"#
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["hook"], 100);
    let (_topo, telemetry) = start(p).await;
    wait_for_port(port).await;
    let url = format!("http://127.0.0.1:{port}/");
    let small = b"{\"n\":1}\n{\"n\":2}\n".to_vec();
    let encoded = |encoding: &'static str, body: Vec<u8>| {
        let request = client()
            .post(&url)
            .header("content-encoding", encoding)
            .body(body);
        async move { request.send().await.expect("POST").status().as_u16() }
    };

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&small).expect("gzip");
    assert_eq!(encoded("gzip", gz.finish().expect("gzip")).await, 200);
    let z = zstd::encode_all(&small[..], 3).expect("zstd");
    assert_eq!(encoded("zstd", z).await, 200);
    let mut d = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    d.write_all(&small).expect("deflate");
    assert_eq!(encoded("deflate", d.finish().expect("deflate")).await, 200);
    assert_eq!(sink.ints("n"), vec![1, 2, 1, 2, 1, 2]);

    // Over the limit as sent, and over the limit once decompressed (a zip bomb).
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(3000));
    let r = client()
        .post(&url)
        .body(big.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 413);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(big.as_bytes()).expect("gzip");
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < 2000);
    assert_eq!(encoded("gzip", bomb).await, 413);
    assert_eq!(encoded("br", b"{}".to_vec()).await, 415);
    assert_eq!(encoded("gzip", b"not gzip".to_vec()).await, 400);

    // A sender that stops mid-body gets 408 instead of holding the connection.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    slow.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"n\":")
        .await
        .expect("write");
    let mut answer = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        slow.read_to_string(&mut answer),
    )
    .await
    .expect("answered within the read timeout")
    .expect("read");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // And one that never finishes its headers is disconnected.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    silent
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        silent.read_to_end(&mut rest),
    )
    .await
    .expect("closed within the header timeout")
    .ok();

    assert_eq!(sink.values().len(), 6, "nothing from the rejected requests");
    let text = telemetry.render_prometheus();
    for reason in [
        "too_large\"} 2",
        "unsupported_encoding\"} 1",
        "bad_encoding\"} 1",
        "timeout\"} 1",
    ] {
        assert!(text.contains(reason), "{reason} in\n{text}");
    }
}

#[tokio::test]
async fn tls_serves_https() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("write");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).expect("write");
    let mut p = parse(&format!(
        r#"
sources:
  hook:
    type: webhook
    address: "127.0.0.1:{port}"
    tls: {{ cert: "{d}/cert.pem", key: "{d}/key.pem" }}
"#,
        d = dir.path().display()
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["hook"], 100);
    let (_topo, _) = start(p).await;
    wait_for_port(port).await;
    let ca = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("ca");
    let https = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .expect("client");
    let r = https
        .post(format!("https://localhost:{port}/"))
        .body("{\"n\":7}")
        .send()
        .await
        .expect("POST over TLS");
    assert_eq!(r.status(), 200);
    assert_eq!(sink.ints("n"), vec![7]);
    let plain = client()
        .post(format!("http://127.0.0.1:{port}/"))
        .body("{}")
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()),
        "plain HTTP is not served"
    );
}

/// The real signed SNS samples verify against AWS's (expired) signing certificate at a
/// time it was valid; one changed byte is a 403 and no event.
#[tokio::test]
async fn real_sns_signatures_verify_and_a_changed_byte_is_refused() {
    let port = free_port();
    let cert_url = "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem";
    let mut p = parse(&format!(
        r#"
sources:
  sns:
    type: webhook
    address: "127.0.0.1:{port}"
    routes:
      # Two routes: the Lambda record is the same message (one MessageId) as another
      # sample, which one route would drop as a replay.
      - path: /
        decoder: aws_sns
        sns:
          # The samples were signed over several months of 2022.
          max_age: 365d
          certificates: {{ "{cert_url}": "{FIXTURES}/webhooks/aws/sns_signing_cert_sns.us-east-2_2021-2022.pem" }}
      - path: /again
        decoder: aws_sns
        sns:
          max_age: 365d
          certificates: {{ "{cert_url}": "{FIXTURES}/webhooks/aws/sns_signing_cert_sns.us-east-2_2021-2022.pem" }}
"#
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["sns"], 100);
    let clock = ManualClock::starting_at(
        chrono::DateTime::parse_from_rfc3339("2022-03-01T00:00:00Z")
            .expect("time")
            .to_utc(),
    );
    let options = TopologyOptions {
        clock: Arc::new(clock),
        ..TopologyOptions::default()
    };
    let (_topo, _) = start_with(p, options).await;
    wait_for_port(port).await;
    let url = format!("http://127.0.0.1:{port}/");
    let samples = [
        "sns_notification_sigv1_no-subject.json",
        "sns_notification_sigv1_with-subject.json",
        "sns_notification_sigv2_no-subject.json",
        "sns_notification_sigv2_with-subject.json",
        "sns_lambda-record_sigv1_subject-null_SigningCertUrl-casing.json",
    ];
    for (i, name) in samples.iter().enumerate() {
        let body = std::fs::read(format!("{FIXTURES}/webhooks/aws/{name}")).expect("fixture");
        let doc: Json = serde_json::from_slice(&body).expect("json");
        let found = doc
            .get("SigningCertURL")
            .or_else(|| doc.get("SigningCertUrl"))
            .and_then(Json::as_str);
        assert_eq!(
            found,
            Some(cert_url),
            "{name} is signed by the pinned certificate"
        );
        let url = if name.starts_with("sns_lambda-record") {
            format!("{url}again")
        } else {
            url.clone()
        };
        let r = client()
            .post(&url)
            .header("content-type", "text/plain; charset=UTF-8")
            .body(body.clone())
            .send()
            .await
            .expect("POST");
        assert_eq!(
            r.status(),
            200,
            "{name}: {}",
            r.text().await.unwrap_or_default()
        );
        assert_eq!(sink.values().len(), i + 1, "{name} gave one event");

        // One changed byte of the message: refused, nothing emitted.
        let mut tampered = doc.clone();
        let message = tampered["Message"].as_str().expect("message").to_owned();
        let mut bytes = message.into_bytes();
        bytes[0] ^= 0x01;
        tampered["Message"] = Json::String(String::from_utf8(bytes).expect("utf8"));
        let r = client()
            .post(&url)
            .json(&tampered)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 403, "{name} tampered");
        assert_eq!(sink.values().len(), i + 1);
    }
    let events = sink.values();
    assert_eq!(
        string(&events[1], "summary")
            .as_deref()
            .map(|s| !s.is_empty()),
        Some(true)
    );
}

/// A SubscriptionConfirmation with a valid signature makes sluice GET the SubscribeURL
/// (a local receiver allowlisted for the test); a URL outside the allowlist is refused.
#[tokio::test]
async fn subscription_confirmation_calls_the_subscribe_url() {
    let (port, aws) = (free_port(), free_port());
    let confirm = Receiver::new(aws).start().await;
    confirm.set_fallback(Reply::status(200).with_body("<ConfirmSubscriptionResponse/>"));
    let cert_url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem";
    let key = format!("{FIXTURES}/sns/test-signing-key.pem");
    let mut p = parse(&format!(
        r#"
sources:
  sns:
    type: webhook
    address: "127.0.0.1:{port}"
    decoder: aws_sns
    sns:
      auto_confirm: true
      subscribe_hosts: ["http://127.0.0.1:{aws}"]
      topic_arns: ["arn:aws:sns:eu-west-1:123456789012:*"]
      certificates: {{ "{cert_url}": "{FIXTURES}/sns/test-signing-cert.pem" }}
"#
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["sns"], 100);
    let (_topo, _) = start(p).await;
    wait_for_port(port).await;

    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let envelope = |subscribe_url: &str, topic: &str| {
        let fields = [
            (
                "Message",
                "You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.",
            ),
            ("MessageId", "165545c9-2a5c-472c-8df2-7ff2be2b3b1b"),
            ("SubscribeURL", subscribe_url),
            ("Timestamp", now.as_str()),
            (
                "Token",
                "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",
            ),
            ("TopicArn", topic),
            ("Type", "SubscriptionConfirmation"),
        ];
        let mut doc = serde_json::Map::new();
        for (k, v) in fields {
            doc.insert(k.into(), Json::String(v.into()));
        }
        doc.insert("SignatureVersion".into(), "2".into());
        doc.insert("Signature".into(), sign_sns(&fields, &key).into());
        doc.insert("SigningCertURL".into(), cert_url.into());
        Json::Object(doc)
    };
    let url = format!("http://127.0.0.1:{port}/");
    let good = envelope(
        &format!("http://127.0.0.1:{aws}/?Action=ConfirmSubscription&Token=abc"),
        "arn:aws:sns:eu-west-1:123456789012:alerts",
    );
    let r = client()
        .post(&url)
        .header("x-amz-sns-message-type", "SubscriptionConfirmation")
        .json(&good)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let calls = confirm.requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "GET");
    assert_eq!(calls[0].path, "/?Action=ConfirmSubscription&Token=abc");
    assert!(sink.values().is_empty(), "a confirmation is not an event");

    // Signed correctly, but the SubscribeURL points elsewhere: refused, never fetched.
    let elsewhere = envelope(
        "http://127.0.0.1:1/?Action=ConfirmSubscription",
        "arn:aws:sns:eu-west-1:123456789012:alerts",
    );
    assert_eq!(
        client()
            .post(&url)
            .json(&elsewhere)
            .send()
            .await
            .expect("POST")
            .status(),
        403
    );
    // A topic outside topic_arns: refused.
    let other_topic = envelope(
        &format!("http://127.0.0.1:{aws}/"),
        "arn:aws:sns:eu-west-1:999999999999:x",
    );
    assert_eq!(
        client()
            .post(&url)
            .json(&other_topic)
            .send()
            .await
            .expect("POST")
            .status(),
        403
    );
    assert_eq!(confirm.requests().len(), 1);
}

/// `--plugin-dir` adds a decoder (`decoders/acme.vrl`) and replaces a built-in one
/// (`decoders/oci.vrl`) without a rebuild; `validate` names a plugin that does not compile.
#[tokio::test]
async fn plugin_dirs_add_and_override_decoders() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(plugins.join("decoders")).expect("mkdir");
    std::fs::write(
        plugins.join("decoders/acme.vrl"),
        r#". = [{"status": "firing", "severity": "low", "summary": string!(.title), "source": "acme"}]"#,
    )
    .expect("write");
    std::fs::write(
        plugins.join("decoders/oci.vrl"),
        r#". = [{"status": "resolved", "summary": "overridden", "source": "oci"}]"#,
    )
    .expect("write");
    let out = dir.path().join("out.ndjson");
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
sources:
  hooks:
    type: webhook
    address: "127.0.0.1:{port}"
    routes:
      - {{ path: /acme, decoder: acme }}
      - {{ path: /oci, decoder: oci }}
sinks:
  out: {{ type: file, inputs: [hooks], path: "{}" }}
"#,
            out.display()
        ),
    )
    .expect("write");

    let without = common::sluice()
        .args(["validate", "-c"])
        .arg(&pipeline)
        .output()
        .expect("validate");
    assert_eq!(
        without.status.code(),
        Some(78),
        "acme is unknown without the plugin dir"
    );
    assert!(String::from_utf8_lossy(&without.stderr).contains("unknown decoder `acme`"));

    let mut cmd = common::sluice();
    cmd.args(["run", "--no-watch", "-c"])
        .arg(&pipeline)
        .arg("--plugin-dir")
        .arg(&plugins)
        .env("SLUICE_API__ENABLED", "false");
    let _sluice = common::Process::spawn(cmd);
    wait_for_port(port).await;
    let r = client()
        .post(format!("http://127.0.0.1:{port}/acme"))
        .body(r#"{"title":"Boom"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let r = client()
        .post(format!("http://127.0.0.1:{port}/oci"))
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let text = std::fs::read_to_string(&out).expect("output");
    let events: Vec<Json> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[0]["summary"], "Boom");
    assert_eq!(events[0]["severity"], "low");
    assert_eq!(events[1]["summary"], "overridden");
    assert_eq!(events[1]["severity"], "medium", "the default severity");

    std::fs::write(plugins.join("decoders/acme.vrl"), ". = [").expect("write");
    let broken = common::sluice()
        .args(["validate", "-c"])
        .arg(&pipeline)
        .arg("--plugin-dir")
        .arg(&plugins)
        .output()
        .expect("validate");
    assert_eq!(broken.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(
        stderr.contains("decoders/acme.vrl") && stderr.contains("hooks"),
        "{stderr}"
    );
}

/// A request whose events all entered the pipeline but were not delivered within
/// `request_timeout` is answered 202 (the pipeline goes on delivering; a retry would
/// duplicate them). One that cannot enter a full pipeline is turned away whole with 503
/// and `Retry-After`, counted as `busy`, and nothing of it is delivered later.
#[tokio::test]
async fn a_full_pipeline_answers_503_and_a_slow_one_202() {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{port}", request_timeout: 200ms }}
"#
    ));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let sink = CaptureSink {
        gate: Some(Arc::clone(&gate)),
        ..CaptureSink::default()
    };
    sink.attach(&mut p, "out", &["hook"], 1);
    let (_topo, telemetry) = start(p).await;
    wait_for_port(port).await;
    let url = format!("http://127.0.0.1:{port}/");
    let post = |n: i64| client().post(&url).body(format!("{{\"n\":{n}}}")).send();
    // 1 is taken by the stalled sink, 2 waits in its one-event buffer.
    for n in [1, 2] {
        let r = post(n).await.expect("POST");
        assert_eq!(r.status(), 202);
        assert_eq!(
            body_json(r).await["delivered"],
            json!(false),
            "the answer says the events are still on their way"
        );
    }
    let r = post(3).await.expect("POST");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(telemetry.render_prometheus().contains("reason=\"busy\"} 1"));
    gate.add_permits(10);
    common::eventually("the accepted events are delivered", || {
        sink.ints("n").len() == 2
    })
    .await;
    let r = post(4).await.expect("POST");
    assert_eq!(r.status(), 200);
    assert_eq!(
        sink.ints("n"),
        vec![1, 2, 4],
        "accepted events delivered once, the refused one never"
    );
}

/// The events of one request share their `%` metadata until a program writes it.
#[tokio::test]
async fn a_metadata_write_changes_only_its_own_event() {
    let port = free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hooks:
    type: webhook
    address: "127.0.0.1:{port}"
    path: /events
    capture_headers: [X-Team]
transforms:
  write:
    type: remap
    inputs: [hooks]
    source: |
      if .n == 2 {{
        %headers."x-team" = "changed"
        %extra = true
      }}
  read:
    type: remap
    inputs: [write]
    source: |
      .team = %headers."x-team"
      .extra = %extra
      .rid = %request_id
"#
    ));
    let sink = CaptureSink::default();
    sink.attach(&mut p, "out", &["read"], 100);
    let (_topo, _telemetry) = start(p).await;
    wait_for_port(port).await;
    let r = client()
        .post(format!("http://127.0.0.1:{port}/events"))
        .header("x-team", "core")
        .header("x-request-id", "r-1")
        .body("{\"n\":1}\n{\"n\":2}\n{\"n\":3}")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let mut seen: Vec<(i64, String, Option<bool>, String)> = sink
        .values()
        .iter()
        .map(|e| {
            let extra = match common::field(e, "extra") {
                vrl::value::Value::Boolean(b) => Some(b),
                _ => None,
            };
            (
                common::int(e, "n"),
                string(e, "team").unwrap_or_default(),
                extra,
                string(e, "rid").unwrap_or_default(),
            )
        })
        .collect();
    seen.sort();
    let want = |n, team: &str, extra| (n, team.to_owned(), extra, "r-1".to_owned());
    assert_eq!(
        seen,
        [
            want(1, "core", None),
            want(2, "changed", Some(true)),
            want(3, "core", None)
        ]
    );
}
