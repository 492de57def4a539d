//! A loopback Opsgenie Alert API v2 that enforces the documented contract: the
//! `GenieKey` authorization, the create request's fields and limits (422 with the
//! field's error otherwise), alias de-duplication (one open alert per alias; a second
//! create raises its count), close and acknowledge by `identifierType=alias`, and the
//! 202 answer with a `requestId`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

pub const KEY: &str = "eb243592-faa2-4ba2-a551-1afdf565c889";

/// One alert as Opsgenie keeps it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub alias: String,
    pub open: bool,
    pub acknowledged: bool,
    pub count: u32,
    pub create: Value,
}

#[derive(Clone, Default)]
pub struct Opsgenie {
    pub alerts: Arc<Mutex<Vec<Alert>>>,
    /// Closes and acknowledgements naming no open alert (Opsgenie accepts them and the
    /// request fails later).
    pub failed_requests: Arc<Mutex<Vec<String>>>,
    /// Requests still to answer with 429, before any other rule.
    pub throttle_next: Arc<Mutex<u32>>,
    /// Every request as (method path?query, body).
    pub requests: Arc<Mutex<Vec<(String, Value)>>>,
}

fn answer(status: StatusCode, body: Value) -> (StatusCode, String) {
    (status, body.to_string())
}

fn accepted() -> (StatusCode, String) {
    answer(
        StatusCode::ACCEPTED,
        json!({"result": "Request will be processed", "took": 0.011, "requestId": uuid::Uuid::new_v4().to_string()}),
    )
}

fn unprocessable(field: &str, error: &str) -> (StatusCode, String) {
    answer(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"message": "Request body is not processable. Please check the errors.", "errors": {field: error}, "took": 0.002, "requestId": uuid::Uuid::new_v4().to_string()}),
    )
}

fn too_long(body: &Value, field: &str, max: usize) -> bool {
    body[field]
        .as_str()
        .is_some_and(|s| s.chars().count() > max)
}

/// The documented rules of a create; `Err` is the 422 a real API would answer.
pub fn validate_create(body: &Value) -> Result<(), (StatusCode, String)> {
    let Some(message) = body["message"].as_str().filter(|m| !m.trim().is_empty()) else {
        return Err(unprocessable("message", "Message can not be empty."));
    };
    if message.chars().count() > 130 {
        return Err(unprocessable(
            "message",
            "Message can not be longer than 130 characters.",
        ));
    }
    for (field, max) in [
        ("alias", 512),
        ("description", 15_000),
        ("entity", 512),
        ("source", 100),
        ("user", 100),
    ] {
        if too_long(body, field, max) {
            return Err(unprocessable(
                field,
                &format!("{field} can not be longer than {max} characters."),
            ));
        }
    }
    if let Some(p) = body.get("priority")
        && !["P1", "P2", "P3", "P4", "P5"].contains(&p.as_str().unwrap_or(""))
    {
        return Err(unprocessable(
            "priority",
            "Priority should be one of [P1, P2, P3, P4, P5]",
        ));
    }
    if let Some(tags) = body.get("tags") {
        let tags = tags
            .as_array()
            .ok_or_else(|| unprocessable("tags", "must be an array"))?;
        if tags.len() > 20
            || tags
                .iter()
                .any(|t| t.as_str().is_none_or(|t| t.chars().count() > 50))
        {
            return Err(unprocessable(
                "tags",
                "at most 20 tags of at most 50 characters",
            ));
        }
    }
    if let Some(details) = body.get("details") {
        let map = details
            .as_object()
            .ok_or_else(|| unprocessable("details", "must be a map"))?;
        if map.values().any(|v| !v.is_string()) {
            return Err(unprocessable("details", "values must be strings"));
        }
    }
    if let Some(responders) = body.get("responders") {
        for r in responders
            .as_array()
            .ok_or_else(|| unprocessable("responders", "must be an array"))?
        {
            let kind = r["type"].as_str().unwrap_or("");
            let named = match kind {
                "user" => r.get("username").or(r.get("id")),
                "team" | "escalation" | "schedule" => r.get("name").or(r.get("id")),
                _ => {
                    return Err(unprocessable(
                        "responders",
                        "type must be team, user, escalation or schedule",
                    ));
                }
            };
            if named.is_none() {
                return Err(unprocessable(
                    "responders",
                    "a responder needs an id, a name or a username",
                ));
            }
        }
    }
    Ok(())
}

impl Opsgenie {
    pub async fn start(&self) -> u16 {
        let (create, action) = (self.clone(), self.clone());
        let app = axum::Router::new()
            .route(
                "/v2/alerts",
                axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
                    let me = create.clone();
                    async move { me.create(&headers, &body) }
                }),
            )
            .route(
                "/v2/alerts/{identifier}/{verb}",
                axum::routing::post(
                    move |Path((identifier, verb)): Path<(String, String)>,
                          Query(query): Query<HashMap<String, String>>,
                          headers: HeaderMap,
                          body: bytes::Bytes| {
                        let me = action.clone();
                        async move { me.act(&identifier, &verb, &query, &headers, &body) }
                    },
                ),
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

    /// The checks every request passes first: throttling, then the key, then JSON.
    fn admit(
        &self,
        what: String,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Value, (StatusCode, String)> {
        {
            let mut t = self.throttle_next.lock().expect("lock");
            if *t > 0 {
                *t -= 1;
                return Err(answer(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"message": "You are making too many requests! To avoid errors, we recommend you limit requests.", "took": 0.0}),
                ));
            }
        }
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(&format!("GenieKey {KEY}")) {
            return Err(answer(
                StatusCode::UNAUTHORIZED,
                json!({"message": "Could not authenticate", "took": 0.0}),
            ));
        }
        if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
            return Err(answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"message": "Content-Type must be application/json"}),
            ));
        }
        let body: Value = serde_json::from_slice(body).map_err(|_| {
            answer(
                StatusCode::BAD_REQUEST,
                json!({"message": "Could not parse the request body"}),
            )
        })?;
        self.requests
            .lock()
            .expect("lock")
            .push((what, body.clone()));
        Ok(body)
    }

    fn create(&self, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String) {
        let body = match self.admit("POST /v2/alerts".into(), headers, body) {
            Ok(b) => b,
            Err(e) => return e,
        };
        if let Err(e) = validate_create(&body) {
            return e;
        }
        let alias = body["alias"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut alerts = self.alerts.lock().expect("lock");
        match alerts.iter_mut().find(|a| a.open && a.alias == alias) {
            Some(open) => open.count += 1,
            None => alerts.push(Alert {
                alias,
                open: true,
                acknowledged: false,
                count: 1,
                create: body,
            }),
        }
        accepted()
    }

    fn act(
        &self,
        identifier: &str,
        verb: &str,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (StatusCode, String) {
        let what = format!("POST /v2/alerts/{identifier}/{verb}");
        if let Err(e) = self.admit(what.clone(), headers, body) {
            return e;
        }
        if !["close", "acknowledge"].contains(&verb) {
            return answer(
                StatusCode::NOT_FOUND,
                json!({"message": "No such endpoint"}),
            );
        }
        if query.get("identifierType").map(String::as_str) != Some("alias") {
            // An id this receiver never issued.
            self.failed_requests
                .lock()
                .expect("lock")
                .push(format!("{what}: no alert with id {identifier}"));
            return accepted();
        }
        let mut alerts = self.alerts.lock().expect("lock");
        match alerts.iter_mut().find(|a| a.open && a.alias == identifier) {
            Some(alert) if verb == "close" => alert.open = false,
            Some(alert) => alert.acknowledged = true,
            None => self
                .failed_requests
                .lock()
                .expect("lock")
                .push(format!("{what}: no open alert with alias {identifier}")),
        }
        accepted()
    }

    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts.lock().expect("lock").clone()
    }

    pub fn failed(&self) -> Vec<String> {
        self.failed_requests.lock().expect("lock").clone()
    }
}
