//! Kafka over TLS: sluice's librdkafka is built with TLS, so `security.protocol: ssl`
//! reaches a real broker (tansu behind stunnel, which `.ci/run` installs). The sink
//! writes and the source reads back through TLS only; `validate --check-sinks` reports
//! the broker with the right CA and names the certificate failure without it.

mod common;

use std::time::Duration;

use common::{eventually, metric, parse, start};
use sluice::testing::CaptureSink;
use sluice::testing::kafka::TlsTansu;

/// A certificate for 127.0.0.1 (librdkafka checks the host name) and its key.
fn certificate() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("cert");
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

fn tls_options(ca: &std::path::Path) -> String {
    format!(r#"tls: {{ ca_file: "{}" }}"#, ca.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_and_source_carry_events_over_tls() {
    let (cert, key) = certificate();
    let Some(broker) = TlsTansu::start(&cert, &key) else {
        return;
    };
    broker.plain.create_topic("secure", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).expect("write");
    let tls = tls_options(&ca);
    let bootstrap = &broker.bootstrap;
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 20, format: '{{"n": {{{{seq}}}}}}' }}
  k:
    type: kafka
    bootstrap_servers: "{bootstrap}"
    topics: [secure]
    group_id: g-tls
    auto_offset_reset: earliest
    commit_interval: 100ms
    {tls}
sinks:
  out:
    type: kafka
    inputs: [gen]
    bootstrap_servers: "{bootstrap}"
    topic: secure
    {tls}
"#
    ));
    let got = CaptureSink::default();
    got.attach(&mut p, "got", &["k"], 1000);
    let (topo, telemetry) = start(p).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got.values().len() < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "read back {} of 20 over TLS",
            got.values().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut numbers = got.ints("n");
    numbers.sort_unstable();
    assert_eq!(numbers, (0..20).collect::<Vec<_>>());
    let body = telemetry.render_prometheus();
    assert_eq!(
        metric(&body, "sluice_component_sent_events_total", "out"),
        Some(20.0)
    );
    // 20 payloads of `{"n":…}`: at least 7 bytes each went out and came back.
    for (name, id) in [
        ("sluice_component_sent_bytes_total", "out"),
        ("sluice_component_received_bytes_total", "k"),
    ] {
        let bytes = metric(&body, name, id).expect(name);
        assert!(bytes >= 140.0, "{name} of {id}: {bytes}");
    }
    topo.stop(Duration::from_secs(20)).await;
    eventually("nothing more arrives", || got.values().len() == 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_sinks_names_the_certificate_failure() {
    let (cert, key) = certificate();
    let Some(broker) = TlsTansu::start(&cert, &key) else {
        return;
    };
    broker.plain.create_topic("secure", 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).expect("write");
    let bootstrap = &broker.bootstrap;
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
sources:
  in: {{ type: generator }}
sinks:
  trusted:
    type: kafka
    inputs: [in]
    bootstrap_servers: "{bootstrap}"
    topic: secure
    {tls}
  untrusted:
    type: kafka
    inputs: [in]
    bootstrap_servers: "{bootstrap}"
    topic: secure
    tls: {{ verify_hostname: true }}
  plaintext:
    type: kafka
    inputs: [in]
    bootstrap_servers: "{bootstrap}"
    topic: secure
"#,
            tls = tls_options(&ca)
        ),
    )
    .expect("write");
    let out = common::sluice()
        .args(["validate", "--check-sinks", "--check-timeout", "2s", "-c"])
        .arg(&path)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stdout}{stderr}");
    assert!(
        stdout.contains("sink `trusted` (kafka): reachable: 1 broker(s) answered, topic `secure` has 2 partition(s)"),
        "{stdout}{stderr}"
    );
    let untrusted = stderr
        .lines()
        .find(|l| l.contains("sink `untrusted`"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        untrusted.contains("certificate verify failed"),
        "{untrusted}"
    );
    assert!(stderr.contains("sink `plaintext`"), "{stderr}");
}

#[test]
fn sasl_and_tls_options_become_librdkafka_settings_and_their_secrets_stay_hidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = certificate();
    let (ca, crt, key_file) = (
        dir.path().join("ca.pem"),
        dir.path().join("c.pem"),
        dir.path().join("k.pem"),
    );
    std::fs::write(&ca, &cert).expect("write");
    std::fs::write(&crt, &cert).expect("write");
    std::fs::write(&key_file, &key).expect("write");
    let path = dir.path().join("pipeline.yaml");
    let write = |extra: &str| {
        std::fs::write(
            &path,
            format!(
                r#"
sources:
  k:
    type: kafka
    bootstrap_servers: "127.0.0.1:9"
    topics: [t]
    group_id: g
    tls: {{ ca_file: "{ca}", crt_file: "{crt}", key_file: "{key}", key_password: "k3y-pass-Secret" }}
    sasl: {{ mechanism: scram_sha_512, username: alice, password: "Hunter2-Secret-Pw" {extra} }}
sinks:
  out:
    type: kafka
    inputs: [k]
    bootstrap_servers: "127.0.0.1:9"
    topic: t
    sasl: {{ mechanism: plain, username: bob, password: "Plain-Secret-Pw" }}
"#,
                ca = ca.display(),
                crt = crt.display(),
                key = key_file.display(),
            ),
        )
        .expect("write");
    };
    write("");
    for command in ["validate", "config"] {
        let out = common::sluice()
            .args([command, "-c"])
            .arg(&path)
            .output()
            .expect("runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{command}: {text}");
        for secret in ["Hunter2-Secret-Pw", "Plain-Secret-Pw", "k3y-pass-Secret"] {
            assert!(!text.contains(secret), "{command} printed {secret}: {text}");
        }
    }
    std::fs::write(
        &path,
        "sources:\n  k: { type: kafka, bootstrap_servers: 'h:9', topics: [t], group_id: g, sasl: { mechanism: plain, username: a, password: '' } }\nsinks:\n  o: { type: console, inputs: [k] }\n",
    )
    .expect("write");
    let out = common::sluice()
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sources.k") && stderr.contains("empty secret"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_tokens_come_from_the_client_credentials_grant() {
    use std::sync::{Arc, Mutex};
    // A token endpoint recording each grant; no broker is needed: librdkafka asks for a
    // token as soon as an OAUTHBEARER client is created.
    let grants: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&grants);
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |body: String| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().expect("lock").push(body);
                axum::Json(serde_json::json!({"access_token": "tok-123", "token_type": "Bearer", "expires_in": 300}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let bootstrap = format!("127.0.0.1:{}", common::free_port());
    let sasl = format!(
        r#"sasl: {{ mechanism: oauthbearer, principal: svc-sluice, oauth2: {{ token_url: "http://127.0.0.1:{port}/token", client_id: sluice-client, client_secret: "Oauth-Secret-1", scope: kafka }} }}"#
    );
    let p = parse(&format!(
        r#"
sources:
  k: {{ type: kafka, bootstrap_servers: "{bootstrap}", topics: [t], group_id: g, {sasl} }}
sinks:
  out: {{ type: kafka, inputs: [k], bootstrap_servers: "{bootstrap}", topic: t2, {sasl} }}
"#
    ));
    let (topo, _) = start(p).await;
    eventually(
        "a token request from the sink and one from the source",
        || grants.lock().expect("lock").len() >= 2,
    )
    .await;
    topo.stop(Duration::from_secs(5)).await;
    for grant in grants.lock().expect("lock").iter() {
        for part in [
            "grant_type=client_credentials",
            "client_id=sluice-client",
            "client_secret=Oauth-Secret-1",
            "scope=kafka",
        ] {
            assert!(grant.contains(part), "{grant}");
        }
    }
}
