//! A loopback Datadog API that enforces what Datadog documents for its intake
//! endpoints: the `DD-API-KEY` header (403 without the right key), gzip bodies, the
//! logs intake's limits (5 MB uncompressed, 1,000 entries per request: 413 above
//! them; logs over 1 MB are truncated, as Datadog does), the series API's 512,000-byte
//! payload (413) and its entries (`metric`, `type` 0–3, `points` of `timestamp` and
//! `value`), the events API's required `title` and `text` within 100 and 4,000
//! characters; 202 when accepted, 429 with `Retry-After` or 503 when told to.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

pub const API_KEY: &str = "dd0123456789abcdef0123456789abcd";

#[derive(Default)]
pub struct State {
    pub logs: Vec<Value>,
    pub events: Vec<Value>,
    pub series: Vec<Value>,
    /// Entries per accepted request, the body bytes as received and decompressed.
    pub requests: Vec<(usize, usize, usize)>,
    /// Requests still to answer 429.
    pub throttle: u32,
    /// Requests still to answer 503.
    pub unavailable: u32,
    /// Requests refused for the key.
    pub forbidden: u32,
    /// Logs the intake cut to 1 MB.
    pub truncated: u32,
}

#[derive(Clone, Default)]
pub struct Datadog {
    pub state: Arc<Mutex<State>>,
}

type Answer = (StatusCode, [(&'static str, &'static str); 1], String);

fn errors(status: StatusCode, detail: &str) -> Answer {
    (
        status,
        [("content-type", "application/json")],
        json!({"errors": [detail]}).to_string(),
    )
}

#[derive(Clone, Copy)]
enum Api {
    Logs,
    Events,
    Series,
}

impl Datadog {
    pub async fn start(&self) -> u16 {
        let route = |api: Api| {
            let me = self.clone();
            axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
                let me = me.clone();
                async move { me.intake(api, &headers, &body) }
            })
        };
        let me = self.clone();
        let app = axum::Router::new()
            .route("/api/v2/logs", route(Api::Logs))
            .route("/api/v1/events", route(Api::Events))
            .route("/api/v2/series", route(Api::Series))
            .route(
                "/api/v1/validate",
                axum::routing::get(move |headers: HeaderMap| {
                    let me = me.clone();
                    async move {
                        match me.authorized(&headers) {
                            Ok(()) => (StatusCode::OK, json!({"valid": true}).to_string()),
                            Err(a) => (a.0, a.2),
                        }
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        port
    }

    fn authorized(&self, headers: &HeaderMap) -> Result<(), Answer> {
        if headers.get("dd-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
            self.state.lock().expect("lock").forbidden += 1;
            return Err(errors(StatusCode::FORBIDDEN, "Forbidden"));
        }
        Ok(())
    }

    fn intake(&self, api: Api, headers: &HeaderMap, body: &[u8]) -> Answer {
        if let Err(refused) = self.authorized(headers) {
            return refused;
        }
        let mut st = self.state.lock().expect("lock");
        if st.throttle > 0 {
            st.throttle -= 1;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "2")],
                json!({"errors": ["Too many requests"]}).to_string(),
            );
        }
        if st.unavailable > 0 {
            st.unavailable -= 1;
            return errors(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
        }
        if matches!(api, Api::Series) && body.len() > 512_000 {
            return errors(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large");
        }
        let gzip = headers
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            == Some("gzip");
        let plain = if gzip {
            use std::io::Read;
            let mut out = Vec::new();
            // Read one byte past the limit to see whether it is passed.
            if flate2::read::GzDecoder::new(body)
                .take(5_242_881)
                .read_to_end(&mut out)
                .is_err()
            {
                return errors(StatusCode::BAD_REQUEST, "invalid gzip body");
            }
            out
        } else {
            body.to_vec()
        };
        if plain.len() > 5_000_000 && matches!(api, Api::Logs) || plain.len() > 5_242_880 {
            return errors(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large");
        }
        if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
            return errors(
                StatusCode::BAD_REQUEST,
                "Content-Type must be application/json",
            );
        }
        let Ok(value) = serde_json::from_slice::<Value>(&plain) else {
            return errors(StatusCode::BAD_REQUEST, "Invalid JSON");
        };
        let entries = match api {
            Api::Logs => {
                let logs = match value {
                    Value::Array(a) => a,
                    one @ Value::Object(_) => vec![one],
                    _ => return errors(StatusCode::BAD_REQUEST, "expected a log or an array"),
                };
                if logs.len() > 1000 {
                    return errors(StatusCode::PAYLOAD_TOO_LARGE, "Too many logs in the array");
                }
                let n = logs.len();
                for mut log in logs {
                    if log.to_string().len() > 1_000_000 {
                        st.truncated += 1;
                        log["message"] = Value::from("(truncated)");
                    }
                    st.logs.push(log);
                }
                n
            }
            Api::Events => {
                let title = value["title"].as_str().map(|t| t.chars().count());
                let text = value["text"].as_str().map(|t| t.chars().count());
                match (title, text) {
                    (Some(1..=100), Some(0..=4000)) => {}
                    _ => {
                        return errors(
                            StatusCode::BAD_REQUEST,
                            "`title` (1 to 100 characters) and `text` (up to 4000) are required",
                        );
                    }
                }
                st.events.push(value);
                1
            }
            Api::Series => {
                let Some(series) = value["series"].as_array() else {
                    return errors(StatusCode::BAD_REQUEST, "`series` is required");
                };
                let valid = |s: &Value| {
                    s["metric"].as_str().is_some_and(|m| !m.is_empty())
                        && s["type"].as_u64().is_some_and(|t| t <= 3)
                        && s["points"].as_array().is_some_and(|p| {
                            !p.is_empty()
                                && p.iter().all(|p| {
                                    p["timestamp"].as_i64().is_some() && p["value"].is_number()
                                })
                        })
                };
                if !series.iter().all(valid) {
                    return errors(StatusCode::BAD_REQUEST, "a series is malformed");
                }
                st.series.extend(series.iter().cloned());
                series.len()
            }
        };
        st.requests.push((entries, body.len(), plain.len()));
        let answer = match api {
            Api::Logs => json!({}),
            Api::Events => json!({"status": "ok"}),
            Api::Series => json!({"errors": []}),
        };
        (
            StatusCode::ACCEPTED,
            [("content-type", "application/json")],
            answer.to_string(),
        )
    }
}
