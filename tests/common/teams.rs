//! A loopback Microsoft Teams Workflows webhook that enforces what Teams documents for
//! posting an Adaptive Card: a `message` with `attachments` of content type
//! `application/vnd.microsoft.card.adaptive`, each an `AdaptiveCard` of version 1.5 or
//! below with a `body` of typed elements, at most 28 KB, answered 202; 429 with
//! `Retry-After` when throttled.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::Value;

pub const PATH: &str = "/workflows/1f2e3d/triggers/manual/paths/invoke";

/// Why Teams would not post this message; `Ok` the card.
pub fn validate(body: &[u8]) -> Result<Value, String> {
    if body.len() > 28 * 1024 {
        return Err("MessageSizeTooBig".into());
    }
    let message: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if message["type"] != "message" {
        return Err("`type` must be \"message\"".into());
    }
    let attachments = message["attachments"]
        .as_array()
        .ok_or("`attachments` missing")?;
    let [attachment] = attachments.as_slice() else {
        return Err("one attachment expected".into());
    };
    if attachment["contentType"] != "application/vnd.microsoft.card.adaptive" {
        return Err("contentType must be application/vnd.microsoft.card.adaptive".into());
    }
    let card = &attachment["content"];
    if card["type"] != "AdaptiveCard" {
        return Err("content is not an AdaptiveCard".into());
    }
    let version: f64 = card["version"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .ok_or("`version` missing")?;
    if version > 1.5 {
        return Err(format!(
            "Teams renders Adaptive Cards up to 1.5, not {version}"
        ));
    }
    let body = card["body"].as_array().ok_or("`body` missing")?;
    if body.iter().any(|e| e["type"].as_str().is_none()) {
        return Err("every body element needs a `type`".into());
    }
    Ok(card.clone())
}

#[derive(Clone, Default)]
pub struct Teams {
    pub cards: Arc<Mutex<Vec<Value>>>,
    pub throttle_next: Arc<Mutex<u32>>,
}

impl Teams {
    pub async fn start(&self) -> u16 {
        let me = self.clone();
        let app = axum::Router::new().route(
            PATH,
            axum::routing::post(move |body: bytes::Bytes| {
                let me = me.clone();
                async move {
                    {
                        let mut t = me.throttle_next.lock().expect("lock");
                        if *t > 0 {
                            *t -= 1;
                            return (
                                StatusCode::TOO_MANY_REQUESTS,
                                [("retry-after", "1")],
                                String::new(),
                            );
                        }
                    }
                    match validate(&body) {
                        Ok(card) => {
                            me.cards.lock().expect("lock").push(card);
                            (StatusCode::ACCEPTED, [("retry-after", "0")], String::new())
                        }
                        Err(e) => (StatusCode::BAD_REQUEST, [("retry-after", "0")], e),
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

    pub fn cards(&self) -> Vec<Value> {
        self.cards.lock().expect("lock").clone()
    }
}
