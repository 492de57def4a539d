//! A blocking-free HTTP client for the management API: JSON in and out, the token on
//! every call, a refusal turned into an error carrying the API's own `error` text.

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::Value;

use super::ApiArgs;

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    pub(crate) json: bool,
}

impl Client {
    pub(super) fn new(args: &ApiArgs) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{}", args.api_address.trim_end_matches('/')),
            token: args.token.clone().filter(|t| !t.is_empty()),
            json: args.json,
        }
    }

    /// Calls `method path` (with `query` pairs and a JSON `body`) and returns the answer.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base), query)
            .context("invalid --api-address")?;
        let mut request = self.http.request(method.clone(), url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach sluice's API at {}", self.base))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let why = answer["error"]
                .as_str()
                .map_or_else(|| answer.to_string(), str::to_owned);
            bail!("{method} {path}: {status}: {why}");
        }
        Ok(answer)
    }

    pub(crate) async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.call(Method::GET, path, query, None).await
    }
}
