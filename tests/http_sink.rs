//! The `http` sink against real HTTP(S) receivers on loopback: bytes on the wire,
//! batching and compression, retries and `Retry-After` (on a manual clock), dead
//! letters, an outage, TLS verification, and acknowledgements back to a webhook.

mod common;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use common::{Receiver, Reply, eventually, free_port, parse, start, start_with, wait_for_port};
use sluice::clock::ManualClock;
use sluice::testing::CaptureSink;
use sluice::topology::{Drained, TopologyOptions};
use vrl::value::Value;

fn manual() -> (ManualClock, TopologyOptions) {
    let clock = ManualClock::default();
    let options = TopologyOptions {
        clock: Arc::new(clock.clone()),
        ..TopologyOptions::default()
    };
    (clock, options)
}

fn dead_letter_field(v: &Value, name: &str) -> Option<Value> {
    match v {
        Value::Object(m) => match m.get("dead_letter") {
            Some(Value::Object(d)) => d.get(name).cloned(),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test]
async fn headers_extra_args_and_flattening_byte_for_byte() {
    let rx = Receiver::new(0).start().await;
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 1, format: '{{"svc": "db", "alert": {{"name": "DiskFull", "labels": {{"sev": "high"}}}}, "tags": [1, 2]}}' }}
sinks:
  out:
    type: http
    inputs: [gen]
    url: "http://127.0.0.1:{port}/events/{{{{ svc }}}}"
    headers: "X-Team=core, X-Env=prod"
    extra_args: {{ cluster: c1, shard: 3 }}
    flatten_payload: true
    auth: {{ strategy: bearer, token: s3cret }}
"#,
        port = rx.port
    ));
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/events/db");
    assert_eq!(r.headers["x-team"], "core");
    assert_eq!(r.headers["x-env"], "prod");
    assert_eq!(r.headers["authorization"], "Bearer s3cret");
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        std::str::from_utf8(&r.body).expect("utf-8"),
        r#"{"alert.labels.sev":"high","alert.name":"DiskFull","cluster":"c1","shard":3,"svc":"db","tags":[1,2]}"#
    );
}

#[tokio::test]
async fn ndjson_gzip_and_json_array_zstd_batch_events() {
    let rx = Receiver::new(0).start().await;
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 10, batch_size: 10, format: '{{"n": {{{{seq}}}}}}' }}
sinks:
  lines:
    type: http
    inputs: [gen]
    url: "http://127.0.0.1:{port}/ndjson"
    encoding: ndjson
    compression: gzip
    batch: {{ max_events: 5, timeout: 10s }}
  array:
    type: http
    inputs: [gen]
    url: "http://127.0.0.1:{port}/array"
    encoding: json_array
    compression: zstd
    batch: {{ max_events: 10 }}
    auth: {{ strategy: basic, user: u, password: p }}
"#,
        port = rx.port
    ));
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    let got = rx.requests();
    let ndjson: Vec<String> = got
        .iter()
        .filter(|r| r.path == "/ndjson")
        .map(|r| {
            assert_eq!(r.headers["content-encoding"], "gzip");
            assert_eq!(r.headers["content-type"], "application/x-ndjson");
            let mut s = String::new();
            flate2::read::GzDecoder::new(&r.body[..])
                .read_to_string(&mut s)
                .expect("gzip");
            s
        })
        .collect();
    assert_eq!(
        ndjson,
        [
            "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n",
            "{\"n\":5}\n{\"n\":6}\n{\"n\":7}\n{\"n\":8}\n{\"n\":9}\n"
        ]
    );
    let array: Vec<&common::Recorded> = got.iter().filter(|r| r.path == "/array").collect();
    assert_eq!(array.len(), 1);
    assert_eq!(array[0].headers["content-encoding"], "zstd");
    assert_eq!(array[0].headers["authorization"], "Basic dTpw");
    let body = zstd::decode_all(&array[0].body[..]).expect("zstd");
    assert_eq!(
        String::from_utf8(body).expect("utf-8"),
        r#"[{"n":0},{"n":1},{"n":2},{"n":3},{"n":4},{"n":5},{"n":6},{"n":7},{"n":8},{"n":9}]"#
    );
}

#[tokio::test]
async fn max_bytes_starts_a_new_batch_with_the_event_that_would_pass_it() {
    let rx = Receiver::new(0).start().await;
    // Each line is `{"n":N}` and its line break, 9 bytes: three fit in 30, a fourth not.
    // Over 5, each line still goes, in a request of its own.
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 7, batch_size: 7, format: '{{"n": {{{{seq}}}}}}' }}
sinks:
  lines:
    type: http
    inputs: [gen]
    url: "http://127.0.0.1:{port}/lines"
    encoding: ndjson
    batch: {{ max_events: 100, max_bytes: 30, timeout: 10s }}
  wide:
    type: http
    inputs: [gen]
    url: "http://127.0.0.1:{port}/wide"
    encoding: ndjson
    batch: {{ max_events: 100, max_bytes: 5, timeout: 10s }}
"#,
        port = rx.port
    ));
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    let bodies = |path: &str| -> Vec<String> {
        rx.requests()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| String::from_utf8(r.body.to_vec()).expect("utf-8"))
            .collect()
    };
    let wide = bodies("/wide");
    assert_eq!(wide.len(), 7, "{wide:?}");
    assert!(wide.iter().all(|b| b.lines().count() == 1), "{wide:?}");
    let bodies = bodies("/lines");
    assert_eq!(
        bodies,
        [
            "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n",
            "{\"n\":3}\n{\"n\":4}\n{\"n\":5}\n",
            "{\"n\":6}\n"
        ]
    );
}

fn one_event_to(port: u16, extra: &str) -> sluice::config::Pipeline {
    parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 1, format: '{{"id": 42, "status": "firing"}}' }}
sinks:
  out:
    type: http
    inputs: [gen]
    url: "http://127.0.0.1:{port}/"
{extra}
"#
    ))
}

#[tokio::test]
async fn retries_503_with_exponential_backoff_then_delivers_once() {
    let rx = Receiver::new(0).start().await;
    rx.script([Reply::status(503), Reply::status(503), Reply::status(503)]);
    let (clock, options) = manual();
    let (mut topo, telemetry) = start_with(one_event_to(rx.port, ""), options).await;
    topo.finished().await;
    let got = rx.requests();
    assert_eq!(got.len(), 4, "three failures, one success");
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "the same request each time"
    );
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 3);
    for (n, (wait, step)) in sleeps.iter().zip([1u64, 2, 4]).enumerate() {
        let step = Duration::from_secs(step);
        assert!(
            *wait >= step / 2 && *wait <= step,
            "retry {n} waited {wait:?}, expected within [{:?}, {step:?}]",
            step / 2
        );
    }
    let out = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "out")
        .expect("out");
    assert_eq!(
        out.sent.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "delivered once"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let rx = Receiver::new(0).start().await;
    rx.script([Reply::status(429).with_header("Retry-After", "2")]);
    let (clock, options) = manual();
    let (mut topo, _) = start_with(one_event_to(rx.port, ""), options).await;
    topo.finished().await;
    assert_eq!(rx.requests().len(), 2);
    assert_eq!(
        clock.sleeps(),
        vec![Duration::from_secs(2)],
        "the next attempt waited the 2 s the server asked for"
    );
}

#[tokio::test]
async fn a_400_goes_to_the_dead_letter_output_with_the_reason() {
    let rx = Receiver::new(0).start().await;
    rx.script([Reply::status(400).with_body("{\"error\":\"missing field routing_key\"}")]);
    let mut p = one_event_to(rx.port, "");
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["out.dead_letter"], 100);
    let (clock, options) = manual();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    assert_eq!(rx.requests().len(), 1, "a 400 is not retried");
    assert!(clock.sleeps().is_empty());
    let values = dead.values();
    assert_eq!(values.len(), 1);
    assert_eq!(dead.ints("id"), vec![42], "the original event");
    let firing: Value = "firing".into();
    assert_eq!(
        values[0].as_object().and_then(|m| m.get("status")),
        Some(&firing),
        "its own status is untouched"
    );
    assert_eq!(
        dead_letter_field(&values[0], "status"),
        Some(Value::from(400))
    );
    assert_eq!(
        dead_letter_field(&values[0], "attempts"),
        Some(Value::from(1))
    );
    let error = dead_letter_field(&values[0], "error")
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(error.starts_with("HTTP 400"), "{error}");
    let body = dead_letter_field(&values[0], "body")
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert_eq!(body, "{\"error\":\"missing field routing_key\"}");
}

#[tokio::test]
async fn retries_exhausted_go_to_the_dead_letter_output() {
    let rx = Receiver::new(0).start().await;
    rx.set_fallback(Reply::status(502));
    let mut p = one_event_to(rx.port, "    failure_handling: { max_retries: 3 }");
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["out.dead_letter"], 100);
    let (_, options) = manual();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    assert_eq!(rx.requests().len(), 4);
    let values = dead.values();
    assert_eq!(
        dead_letter_field(&values[0], "attempts"),
        Some(Value::from(4))
    );
    let error = dead_letter_field(&values[0], "error")
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        error.starts_with("gave up after 4 attempts: HTTP 502"),
        "{error}"
    );
}

#[tokio::test]
async fn a_receiver_down_for_20_seconds_loses_nothing() {
    let port = free_port();
    let rx = Receiver::new(port);
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 50, batch_size: 10, format: '{{"n": {{{{seq}}}}}}' }}
sinks:
  out:
    type: http
    inputs: [gen]
    url: "http://127.0.0.1:{port}/"
    encoding: ndjson
    batch: {{ max_events: 10, timeout: 10ms }}
    request: {{ timeout: 2s }}
"#
    ));
    let (clock, options) = manual();
    // The receiver comes up once the sink has waited 20 s in total.
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handle = tokio::runtime::Handle::current();
    let (rx2, up2) = (rx.clone(), Arc::clone(&up));
    clock.on_sleep(move |total| {
        if total >= Duration::from_secs(20) && !up2.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind receiver");
            listener.set_nonblocking(true).expect("nonblocking");
            let app = rx2.router();
            handle.spawn(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, app).await;
            });
        }
    });
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    assert!(
        clock.total() >= Duration::from_secs(20),
        "the sink kept retrying through the outage"
    );
    let ns = common::ndjson_ints(&rx.requests(), "n");
    assert_eq!(ns, (0..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_rate_limit_spaces_requests() {
    let rx = Receiver::new(0).start().await;
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 5, format: '{{"n": {{{{seq}}}}}}' }}
sinks:
  out:
    type: http
    inputs: [gen]
    url: "http://127.0.0.1:{port}/"
    request: {{ rate_limit: {{ per_second: 20, burst: 1 }} }}
"#,
        port = rx.port
    ));
    let started = std::time::Instant::now();
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    assert_eq!(rx.requests().len(), 5);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "5 requests at 20/s take at least 200 ms: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_webhook_answers_after_the_http_sink_delivered_and_500_when_it_is_rejected() {
    let rx = Receiver::new(0).start().await;
    rx.script([Reply::status(200), Reply::status(422)]);
    let hook = free_port();
    let p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
sinks:
  out: {{ type: http, inputs: [hook], url: "http://127.0.0.1:{port}/" }}
"#,
        port = rx.port
    ));
    let (topo, _) = start(p).await;
    wait_for_port(hook).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("http://127.0.0.1:{hook}/"))
        .body(r#"{"a":1}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    assert_eq!(rx.requests().len(), 1, "answered after the receiver got it");
    let r = client
        .post(format!("http://127.0.0.1:{hook}/"))
        .body(r#"{"a":2}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 500, "rejected with no dead-letter reader");
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
}

struct TlsReceiver {
    port: u16,
    receiver: Receiver,
    cert_pem: String,
}

async fn tls_receiver() -> TlsReceiver {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert_der = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .expect("key");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let receiver = Receiver::new(port);
    let app = receiver.router();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        use tower::ServiceExt;
                        app.clone().oneshot(req)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TlsReceiver {
        port,
        receiver,
        cert_pem: certified.cert.pem(),
    }
}

#[tokio::test]
async fn tls_verification_rejects_a_self_signed_receiver_unless_told_otherwise() {
    let tls = tls_receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.cert_pem).expect("write");
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 1, format: '{{"n": 1}}' }}
sinks:
  verified: {{ type: http, inputs: [gen], url: "https://localhost:{port}/verified" }}
  unverified: {{ type: http, inputs: [gen], url: "https://localhost:{port}/unverified", ssl_verify: false }}
  with_ca: {{ type: http, inputs: [gen], url: "https://localhost:{port}/with-ca", tls: {{ ca_file: "{ca}" }} }}
"#,
        port = tls.port,
        ca = ca.display()
    ));
    let mut p = p;
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["verified.dead_letter"], 10);
    let (_, options) = manual();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    let paths: Vec<String> = tls
        .receiver
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(paths.contains(&"/unverified".to_string()), "{paths:?}");
    assert!(paths.contains(&"/with-ca".to_string()), "{paths:?}");
    assert!(!paths.contains(&"/verified".to_string()), "{paths:?}");
    let values = dead.values();
    assert_eq!(values.len(), 1);
    let error = dead_letter_field(&values[0], "error")
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert_eq!(
        dead_letter_field(&values[0], "attempts"),
        Some(Value::from(1)),
        "a bad certificate is not retried: {error}"
    );
    assert!(
        error.to_lowercase().contains("certificate"),
        "a clear error: {error}"
    );
}

#[tokio::test]
async fn replacing_a_sink_whose_endpoint_fails_hands_its_events_over() {
    let rx = Receiver::new(0).start().await;
    rx.set_fallback(Reply::status(503));
    let pipeline = |header: &str| {
        parse(&format!(
            r#"
sources:
  gen: {{ type: generator, count: 20, batch_size: 20, format: '{{"n": {{{{seq}}}}}}' }}
sinks:
  out:
    type: http
    inputs: [gen]
    url: "http://127.0.0.1:{port}/"
    encoding: ndjson
    headers: {{ X-Version: "{header}" }}
    batch: {{ max_events: 5, timeout: 10ms }}
    request: {{ concurrency: 2 }}
    failure_handling: {{ max_retries: 100000, initial_backoff: 20ms, max_backoff: 50ms }}
"#,
            port = rx.port
        ))
    };
    let options = TopologyOptions {
        drain_timeout: Duration::from_secs(5),
        ..TopologyOptions::default()
    };
    let (mut topo, _) = start_with(pipeline("1"), options).await;
    eventually("the sink is retrying", || rx.requests().len() >= 4).await;

    let mut next = pipeline("2");
    next.validate().expect("valid");
    let started = std::time::Instant::now();
    let changes = topo.apply(next).await.expect("reload");
    assert_eq!(changes.changed, vec!["out".to_string()]);
    assert!(changes.aborted.is_empty(), "handed over, not aborted");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no wait for the drain deadline: {:?}",
        started.elapsed()
    );

    rx.set_fallback(Reply::status(200));
    assert_eq!(topo.stop(Duration::from_secs(10)).await, Drained::Complete);
    let delivered: Vec<common::Recorded> = rx
        .requests()
        .into_iter()
        .filter(|r| r.headers["x-version"] == "2" && r.status_ok())
        .collect();
    let ns = common::ndjson_ints(&delivered, "n");
    assert_eq!(
        ns,
        (0..20).collect::<Vec<_>>(),
        "every event delivered by the new sink once the endpoint recovered"
    );
}
