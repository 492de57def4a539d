//! What decoding a body allocates, per byte of body, on the worst shapes an attacker can
//! send and on real vendor payloads. The webhook source charges `request_charge(size)`
//! to `memory_limit` before it reads a body, and refuses a body whose parsed values
//! would take more than `decode_allowance(size)`: this test keeps the charge an upper
//! bound of what the allocator really takes, for every body accepted.
//!
//! Measured as the growth of the process's peak resident memory (`VmHWM`, reset through
//! `/proc/self/clear_refs` before each body) over its resident memory before: what the
//! allocator really takes, which is what `memory_limit` is about. One test, one body at a
//! time, so nothing else runs in the process meanwhile.

use serde_json::{Value as Json, json};
use sluice::alert::Severity;
use sluice::sources::webhook::{Decoder, Payload, Stamp, decode_allowance, request_charge};

fn status_kib(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Peak memory growth while `decoder` parses and decodes `body`, per byte of body;
/// `None` when the decoder refuses the body as too costly.
fn cost_per_byte(decoder: &Decoder, body: &[u8]) -> Option<f64> {
    let headers = axum::http::HeaderMap::new();
    let metadata = vrl::value::Value::Null;
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let base = status_kib("VmRSS:");
    let events = match decoder.parse(&headers, body, usize::MAX, decode_allowance(body.len())) {
        // Events kept as JSON text are parsed by the first component that reads them:
        // all of them parsed, and still held, is the most they can take.
        Ok(Payload::Events(payloads)) => {
            let parsed = payloads.iter().filter(|p| p.value().is_object()).count();
            assert!(parsed <= payloads.len());
            payloads.len()
        }
        Ok(Payload::Document(doc)) => {
            let stamp = Stamp {
                now: chrono::Utc::now(),
                request_id: "memory",
            };
            decoder
                .decode(doc, &metadata, &stamp)
                .map(|v| v.len())
                .unwrap_or_else(|e| panic!("{}: {}", decoder.name, e.message))
        }
        Err(e) if e.reason == "too_costly" => return None,
        Err(e) => panic!("{}: {}", decoder.name, e.message),
    };
    assert!(events > 0);
    let peak = status_kib("VmHWM:");
    Some((peak.saturating_sub(base) * 1024) as f64 / body.len() as f64)
}

fn alerts(n: usize) -> Vec<u8> {
    let alerts: Vec<Json> = (0..n)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": { "alertname": format!("A{i}"), "severity": "critical", "instance": "db1:9100" },
                "annotations": { "summary": "disk full" },
                "startsAt": "2026-11-21T12:00:00Z",
                "fingerprint": format!("{i:016x}")
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "version": "4", "status": "firing", "alerts": alerts }))
        .expect("JSON")
}

/// The bodies measured: the worst shapes for memory per body byte, and real payloads.
fn cases() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mib = 8 * 1024 * 1024;
    let ce_batch = serde_json::to_vec(
        &(0..30_000)
            .map(|i| json!({ "specversion": "1.0", "id": format!("e{i}"), "source": "s", "type": "t" }))
            .collect::<Vec<_>>(),
    )
    .expect("JSON");
    vec![
        (
            "json: [1,1,…]",
            "json",
            format!("[{}1]", "1,".repeat(mib / 2)).into_bytes(),
        ),
        ("json: 1\\n1\\n…", "json", "1\n".repeat(9_000).into_bytes()),
        (
            "json: [{},{},…]",
            "json",
            format!("[{}{{}}]", "{},".repeat(mib / 3)).into_bytes(),
        ),
        (
            "json: [{\"a\":1},…]",
            "json",
            format!("[{}{{\"a\":1}}]", "{\"a\":1},".repeat(mib / 8)).into_bytes(),
        ),
        (
            "json: [[[]],…]",
            "json",
            format!("[{}[[]]]", "[[]],".repeat(mib / 5)).into_bytes(),
        ),
        (
            "json: [\"\",…]",
            "json",
            format!("[{}\"\"]", "\"\",".repeat(mib / 3)).into_bytes(),
        ),
        (
            "alertmanager: 20,000 alerts",
            "alertmanager",
            alerts(20_000),
        ),
        ("cloudevents: 30,000 events", "cloudevents", ce_batch),
    ]
}

/// Set in the child process that measures one case.
const CASE: &str = "SLUICE_DECODE_MEMORY_CASE";

/// Each body is measured in a fresh process: memory an earlier body freed would
/// otherwise still be resident and hide what the next one takes.
#[test]
fn decoding_stays_within_the_charged_cost_per_byte() {
    if let Ok(index) = std::env::var(CASE) {
        let (what, decoder, body) = cases().swap_remove(index.parse().expect("index"));
        let decoder = Decoder::resolve(decoder, Severity::Medium, true).expect("decoder");
        let allowed =
            request_charge(body.len(), !decoder.is_passthrough()) as f64 / body.len() as f64;
        match cost_per_byte(&decoder, &body) {
            Some(cost) => {
                println!("RESULT {what}: {cost:.1} bytes per body byte (charged {allowed:.1})");
                assert!(
                    cost <= allowed,
                    "{what}: {cost:.1} bytes per body byte, over its allowance"
                );
            }
            None => println!("RESULT {what}: refused (413), over the allowance"),
        }
        return;
    }
    let mut report = Vec::new();
    for index in 0..cases().len() {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "decoding_stays_within_the_charged_cost_per_byte",
                "--nocapture",
            ])
            .env(CASE, index.to_string())
            .output()
            .expect("child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("no result: {stdout}"))
            .to_owned();
        report.push(line);
    }
    println!("{}", report.join("\n"));
    assert!(
        report.iter().any(|l| l.contains("refused")),
        "the amplifying shapes are refused: {report:?}"
    );
    assert!(
        report
            .iter()
            .filter(|l| l.starts_with("alertmanager") || l.starts_with("cloudevents"))
            .all(|l| !l.contains("refused")),
        "vendor payloads are accepted: {report:?}"
    );
}
