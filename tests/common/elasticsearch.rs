//! A loopback Elasticsearch `_bulk` endpoint that enforces the documented contract: NDJSON
//! ending in a newline, action and document lines, index-name rules, dynamic mapping
//! (a field's first type sticks; a conflicting document is refused with
//! `document_parsing_exception`), `_id` semantics (`index` overwrites, `create` conflicts
//! with 409), data streams (only `create`, `@timestamp` required), per-item 429s when
//! busy, gzip bodies and basic authentication; answered as Elasticsearch answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

pub const USER: &str = "elastic";
pub const PASSWORD: &str = "es-Secret-pw1";

#[derive(Default)]
pub struct State {
    /// Documents by index, then `_id`.
    pub indices: BTreeMap<String, BTreeMap<String, Value>>,
    /// A field's type per index, fixed by its first document.
    mappings: HashMap<(String, String), &'static str>,
    next_id: u64,
    /// Items still to refuse with 429 (the cluster's write queue is full).
    pub busy_items: u32,
    /// Requests still to answer 503 as a whole.
    pub unavailable: u32,
    pub requests: u32,
    pub require_auth: bool,
}

#[derive(Clone, Default)]
pub struct Elasticsearch {
    pub state: Arc<Mutex<State>>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Number(_) => "number",
        Value::String(_) => "text",
        Value::Bool(_) => "boolean",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Null => "null",
    }
}

fn error(status: u16, kind: &str, reason: &str) -> Value {
    json!({"status": status, "error": {"type": kind, "reason": reason}})
}

fn valid_index(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.starts_with(['-', '_', '+'])
        && !name
            .chars()
            .any(|c| c.is_uppercase() || "\\/*?\"<>| ,#:".contains(c))
}

impl Elasticsearch {
    pub async fn start(&self) -> u16 {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/_bulk",
            axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
                let me = me.clone();
                async move { me.bulk(&headers, &body) }
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

    fn bulk(&self, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String) {
        let mut st = self.state.lock().expect("lock");
        st.requests += 1;
        if st.require_auth {
            use base64::Engine;
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
            );
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&want) {
                return (StatusCode::UNAUTHORIZED, json!({"error": {"type": "security_exception", "reason": "unable to authenticate user [elastic] for REST request [/_bulk]"}, "status": 401}).to_string());
            }
        }
        if st.unavailable > 0 {
            st.unavailable -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, json!({"error": {"type": "cluster_block_exception", "reason": "blocked by: [SERVICE_UNAVAILABLE/2/no master]"}, "status": 503}).to_string());
        }
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/x-ndjson") && !ct.starts_with("application/json") {
            return (
                StatusCode::NOT_ACCEPTABLE,
                json!({"error": format!("Content-Type header [{ct}] is not supported"), "status": 406})
                    .to_string(),
            );
        }
        let body = if headers
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            == Some("gzip")
        {
            use std::io::Read;
            let mut out = Vec::new();
            if flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .is_err()
            {
                return (StatusCode::BAD_REQUEST, "bad gzip".into());
            }
            out
        } else {
            body.to_vec()
        };
        if !body.ends_with(b"\n") {
            return (
                StatusCode::BAD_REQUEST,
                error(
                    400,
                    "illegal_argument_exception",
                    "The bulk request must be terminated by a newline [\\n]",
                )
                .to_string(),
            );
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        let mut lines = text.lines();
        let mut items = Vec::new();
        let mut errors = false;
        while let Some(action_line) = lines.next() {
            let Ok(action) = serde_json::from_str::<Value>(action_line) else {
                return (
                    StatusCode::BAD_REQUEST,
                    error(400, "x_content_parse_exception", "malformed action line").to_string(),
                );
            };
            let Some((op, meta)) = action.as_object().and_then(|m| m.iter().next()) else {
                return (
                    StatusCode::BAD_REQUEST,
                    error(400, "illegal_argument_exception", "empty action").to_string(),
                );
            };
            let op = op.clone();
            if !["index", "create"].contains(&op.as_str()) {
                return (
                    StatusCode::BAD_REQUEST,
                    error(400, "illegal_argument_exception", "unsupported action").to_string(),
                );
            }
            let Some(doc) = lines
                .next()
                .and_then(|l| serde_json::from_str::<Value>(l).ok())
            else {
                return (
                    StatusCode::BAD_REQUEST,
                    error(
                        400,
                        "illegal_argument_exception",
                        "the source line is missing or malformed",
                    )
                    .to_string(),
                );
            };
            let index = meta["_index"].as_str().unwrap_or("").to_owned();
            let outcome = st.write(&op, &index, meta.get("_id").and_then(Value::as_str), doc);
            if outcome.get("error").is_some() {
                errors = true;
            }
            let mut result = json!({"_index": index});
            if let (Some(r), Some(o)) = (result.as_object_mut(), outcome.as_object()) {
                r.extend(o.clone());
            }
            items.push(json!({ op: result }));
        }
        (
            StatusCode::OK,
            json!({"took": 1, "errors": errors, "items": items}).to_string(),
        )
    }

    pub fn docs(&self, index: &str) -> Vec<Value> {
        self.state
            .lock()
            .expect("lock")
            .indices
            .get(index)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn indices(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("lock")
            .indices
            .keys()
            .cloned()
            .collect()
    }
}

impl State {
    fn write(&mut self, op: &str, index: &str, id: Option<&str>, doc: Value) -> Value {
        if !valid_index(index) {
            return error(
                400,
                "invalid_index_name_exception",
                &format!("Invalid index name [{index}]"),
            );
        }
        if self.busy_items > 0 {
            self.busy_items -= 1;
            return error(
                429,
                "es_rejected_execution_exception",
                "rejected execution of coordinating operation",
            );
        }
        // Indices named like the `logs-*-*` template are data streams.
        if index.starts_with("logs-") && index.matches('-').count() >= 2 {
            if op != "create" {
                return error(
                    400,
                    "illegal_argument_exception",
                    "only write ops with an op_type of create are allowed in data streams",
                );
            }
            if doc.get("@timestamp").is_none() {
                return error(
                    400,
                    "document_parsing_exception",
                    "data stream timestamp field [@timestamp] is missing",
                );
            }
        }
        if let Some(fields) = doc.as_object() {
            for (field, value) in fields {
                let k = kind(value);
                if k == "null" {
                    continue;
                }
                match self.mappings.get(&(index.to_owned(), field.clone())) {
                    Some(existing) if *existing != k => {
                        return error(
                            400,
                            "document_parsing_exception",
                            &format!("[1:2] failed to parse field [{field}] of type [{existing}]"),
                        );
                    }
                    _ => {}
                }
            }
            for (field, value) in fields {
                if !value.is_null() {
                    self.mappings
                        .entry((index.to_owned(), field.clone()))
                        .or_insert(kind(value));
                }
            }
        }
        let id = match id {
            Some(id) => id.to_owned(),
            None => {
                self.next_id += 1;
                format!("auto-{}", self.next_id)
            }
        };
        let docs = self.indices.entry(index.to_owned()).or_default();
        if docs.contains_key(&id) {
            if op == "create" {
                return error(
                    409,
                    "version_conflict_engine_exception",
                    &format!("[{id}]: version conflict, document already exists"),
                );
            }
            docs.insert(id.clone(), doc);
            return json!({"_id": id, "result": "updated", "status": 200});
        }
        docs.insert(id.clone(), doc);
        json!({"_id": id, "result": "created", "status": 201})
    }
}
