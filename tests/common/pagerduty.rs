//! A loopback PagerDuty Events API v2 endpoint that enforces the documented request
//! schema (tests/fixtures/pagerduty) and answers with the documented bodies.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::{Value, json};

pub const KEY: &str = "e93facc04764012d7bfb002500d5d1a6";

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/pagerduty/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// The documented rules of POST /v2/enqueue; `Err` is the reason a real endpoint
/// would answer 400.
pub fn validate(body: &Value) -> Result<(), String> {
    let key = body["routing_key"].as_str().ok_or("routing_key missing")?;
    if key.len() != 32 {
        return Err("Length of 'routing_key' is incorrect (should be 32 characters)".into());
    }
    let action = body["event_action"]
        .as_str()
        .ok_or("event_action missing")?;
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        return Err(format!("event_action '{action}' is invalid"));
    }
    if let Some(d) = body.get("dedup_key") {
        let d = d.as_str().ok_or("dedup_key must be a string")?;
        if d.len() > 255 {
            return Err("dedup_key too long".into());
        }
    } else if action != "trigger" {
        return Err("dedup_key is required for acknowledge and resolve".into());
    }
    if action == "trigger" {
        let p = body["payload"].as_object().ok_or("payload missing")?;
        let summary = p
            .get("summary")
            .and_then(Value::as_str)
            .ok_or("summary missing")?;
        if summary.chars().count() > 1024 {
            return Err("summary longer than 1024".into());
        }
        p.get("source")
            .and_then(Value::as_str)
            .ok_or("source missing")?;
        let sev = p
            .get("severity")
            .and_then(Value::as_str)
            .ok_or("severity missing")?;
        if !["critical", "error", "warning", "info"].contains(&sev) {
            return Err(format!("severity '{sev}' is invalid"));
        }
    }
    Ok(())
}

#[derive(Clone, Default)]
pub struct PagerDuty {
    pub events: Arc<Mutex<Vec<Value>>>,
    pub throttle_next: Arc<Mutex<u32>>,
    /// Requests still to answer with 503 (an outage), before the throttling.
    pub unavailable_next: Arc<Mutex<u32>>,
}

impl PagerDuty {
    pub async fn start(&self, port: u16) {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/v2/enqueue",
            axum::routing::post(move |body: bytes::Bytes| {
                let me = me.clone();
                async move {
                    {
                        let mut u = me.unavailable_next.lock().expect("lock");
                        if *u > 0 {
                            *u -= 1;
                            return (StatusCode::SERVICE_UNAVAILABLE, String::new());
                        }
                    }
                    {
                        let mut t = me.throttle_next.lock().expect("lock");
                        if *t > 0 {
                            *t -= 1;
                            return (StatusCode::TOO_MANY_REQUESTS, String::new());
                        }
                    }
                    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
                        return (
                            StatusCode::BAD_REQUEST,
                            fixture("response_400_invalid_event_alertmanager-test.json"),
                        );
                    };
                    if let Err(reason) = validate(&event) {
                        let mut bad: Value = serde_json::from_str(&fixture(
                            "response_400_invalid_event_alertmanager-test.json",
                        ))
                        .expect("json");
                        bad["errors"] = json!([reason]);
                        return (StatusCode::BAD_REQUEST, bad.to_string());
                    }
                    let mut ok: Value =
                        serde_json::from_str(&fixture("response_202_success_openapi.json"))
                            .expect("json");
                    ok["dedup_key"] = event
                        .get("dedup_key")
                        .cloned()
                        .unwrap_or(json!("generated"));
                    me.events.lock().expect("lock").push(event);
                    (StatusCode::ACCEPTED, ok.to_string())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().expect("lock").clone()
    }
}
