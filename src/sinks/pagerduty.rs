//! `pagerduty`: alerts to PagerDuty's Events API v2.
//!
//! One event per request. The normalized alert schema maps onto the API:
//! - `status` firing → `trigger`, resolved → `resolve`, acknowledged → `acknowledge`;
//! - `dedup_key` (required to resolve or acknowledge): the `dedup_key` template, else
//!   `incident_id` (the `incident` transform's notifications), else `fingerprint`. One
//!   key per incident is what makes a resolve or an acknowledgement close the page its
//!   trigger opened;
//! - `summary` → `payload.summary`, cut to the API's 1024 characters;
//! - `severity` critical | high | medium | low | info → critical | error | warning |
//!   info | info;
//! - `source`, `service` → `payload.source`, `payload.component` (overridable by
//!   templates), `project` → `group`, `kind` → `class`, `labels` and `description` →
//!   `custom_details`, `url` → `links`, `starts_at`/`time` → `timestamp`.
//!
//! 202 is success; 400 (an invalid event) goes to the dead letter; 429 and 5xx are
//! retried. The Events API allows about 120 calls a minute per routing key: that is
//! the default rate limit.

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use vrl::value::Value;

use crate::alert::{Action, field};
use crate::component::{BoxFuture, BuildError, ComponentTask, SinkConfig, SinkContext};
use crate::delivery::{
    DEAD_LETTER, EncodedEvents, EncodedRequest, HttpEncoder, RateLimitConfig, RequestConfig,
};
use crate::event::Event;
use crate::net::FailureHandling;
use crate::template::Template;

const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
const MAX_SUMMARY: usize = 1024;

/// Triggers, acknowledges and resolves PagerDuty alerts (Events API v2).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PagerDutyConfig {
    /// The integration's routing key (32 characters).
    pub(crate) routing_key: String,
    /// The Events API endpoint (default PagerDuty's; EU accounts use
    /// `https://events.eu.pagerduty.com/v2/enqueue`).
    #[serde(default = "default_url")]
    pub(crate) url: String,
    /// PagerDuty's `dedup_key`, as a template: events with the same key are one
    /// PagerDuty alert, and a resolve or an acknowledgement must carry its trigger's key.
    /// Default: `{{ incident_id }}` when the event has one (from the `incident`
    /// transform), else `{{ fingerprint }}`. Cut to 255 characters.
    pub(crate) dedup_key: Option<String>,
    /// `payload.source`, as a template (default: the event's `source`, else "sluice").
    pub(crate) source: Option<String>,
    /// `payload.component`, as a template (default: the event's `service`).
    pub(crate) component: Option<String>,
    /// `payload.group`, as a template (default: the event's `project`).
    pub(crate) group: Option<String>,
    /// `payload.class`, as a template (default: the event's `kind`).
    pub(crate) class: Option<String>,
    /// `client` shown in PagerDuty.
    #[serde(default = "default_client")]
    pub(crate) client: String,
    /// Whether the server's TLS certificate is verified (default true).
    #[serde(default = "default_verify")]
    pub(crate) ssl_verify: bool,
    /// Retries with backoff, then the `dead_letter` output.
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
    /// Timeouts, concurrency and rate limit (default: 2 requests a second, bursts of
    /// 120, PagerDuty's documented limit per routing key).
    #[serde(default = "default_request")]
    pub(crate) request: RequestConfig,
}

fn default_url() -> String {
    DEFAULT_URL.into()
}
fn default_client() -> String {
    "sluice".into()
}
fn default_verify() -> bool {
    true
}
fn default_request() -> RequestConfig {
    RequestConfig {
        rate_limit: Some(RateLimitConfig {
            per_second: 2.0,
            burst: Some(120),
        }),
        ..RequestConfig::default()
    }
}

struct Templates {
    dedup_key: Option<Template>,
    source: Option<Template>,
    component: Option<Template>,
    group: Option<Template>,
    class: Option<Template>,
}

impl PagerDutyConfig {
    fn encoder(&self) -> Result<PagerDutyEncoder, BuildError> {
        if self.routing_key.chars().count() != 32 {
            return Err(BuildError(format!(
                "`routing_key` must be the 32-character integration key (got {} characters)",
                self.routing_key.chars().count()
            )));
        }
        self.failure_handling.check().map_err(BuildError)?;
        self.request.check().map_err(BuildError)?;
        let url = reqwest::Url::parse(&self.url).map_err(|e| BuildError(format!("`url`: {e}")))?;
        let t = |o: &Option<String>| {
            o.as_deref()
                .map(Template::parse)
                .transpose()
                .map_err(BuildError)
        };
        Ok(PagerDutyEncoder {
            routing_key: self.routing_key.clone(),
            url,
            client: self.client.clone(),
            templates: Templates {
                dedup_key: t(&self.dedup_key)?,
                source: t(&self.source)?,
                component: t(&self.component)?,
                group: t(&self.group)?,
                class: t(&self.class)?,
            },
        })
    }
}

impl SinkConfig for PagerDutyConfig {
    fn type_name(&self) -> &'static str {
        "pagerduty"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn check(&self) -> Result<(), BuildError> {
        self.encoder().map(drop)
    }

    fn healthcheck(
        &self,
        _timeout: std::time::Duration,
    ) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(crate::net::probe::without_credentials(
            &self.url,
            self.ssl_verify,
            self.request.timeout,
        )))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            crate::delivery::single_event_task(
                self.encoder()?,
                self.ssl_verify,
                self.failure_handling,
                self.request,
                cx,
            )
        })
    }
}

struct PagerDutyEncoder {
    routing_key: String,
    url: reqwest::Url,
    client: String,
    templates: Templates,
}

fn truncate_chars(s: &str, max: usize) -> String {
    crate::text::prefix_chars(s, max).to_owned()
}

/// The Events API v2 severity for a normalized one.
pub(crate) fn pd_severity(severity: Option<&str>) -> &'static str {
    match severity.map(str::to_ascii_lowercase).as_deref() {
        Some("critical") => "critical",
        Some("high" | "error") => "error",
        Some("medium" | "warning" | "warn") => "warning",
        _ => "info",
    }
}

impl PagerDutyEncoder {
    fn render(
        &self,
        t: &Option<Template>,
        event: &Event,
        fallback: Option<String>,
    ) -> Result<Option<String>, String> {
        match t {
            Some(t) => t.render(event).map(Some),
            None => Ok(fallback),
        }
    }
}

impl HttpEncoder for PagerDutyEncoder {
    fn encode_into(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        let action = match Action::of_status(event.text(field::STATUS).as_deref())
            .map_err(|e| format!("{e}: it has no PagerDuty event action"))?
        {
            Action::Trigger => "trigger",
            Action::Resolve => "resolve",
            Action::Acknowledge => "acknowledge",
        };
        let dedup_key = match &self.templates.dedup_key {
            Some(t) => Some(t.render(event)?),
            None => event
                .text("incident_id")
                .or_else(|| event.text(field::FINGERPRINT)),
        };
        let mut body = Map::new();
        body.insert("routing_key".into(), json!(self.routing_key));
        body.insert("event_action".into(), json!(action));
        match (&dedup_key, action) {
            (Some(key), _) => {
                body.insert("dedup_key".into(), json!(truncate_chars(key, 255)));
            }
            (None, "trigger") => {}
            (None, _) => {
                return Err(format!(
                    "cannot {action} without a `fingerprint` or `incident_id` (PagerDuty's dedup_key; or set the `dedup_key` template)"
                ));
            }
        }
        if action == "trigger" {
            let summary = event
                .text(field::SUMMARY)
                .or_else(|| event.text("message"))
                .unwrap_or_else(|| "alert".into());
            let source = self
                .render(&self.templates.source, event, event.text("source"))?
                .unwrap_or_else(|| "sluice".into());
            let mut payload = Map::new();
            payload.insert(
                "summary".into(),
                json!(truncate_chars(&summary, MAX_SUMMARY)),
            );
            payload.insert("source".into(), json!(source));
            payload.insert(
                "severity".into(),
                json!(pd_severity(event.text(field::SEVERITY).as_deref())),
            );
            if let Some(ts) = event.text(field::STARTS_AT).or_else(|| event.text("time")) {
                payload.insert("timestamp".into(), json!(ts));
            }
            for (key, template, fallback) in [
                ("component", &self.templates.component, "service"),
                ("group", &self.templates.group, "project"),
                ("class", &self.templates.class, "kind"),
            ] {
                if let Some(v) = self.render(template, event, event.text(fallback))? {
                    payload.insert(key.into(), json!(v));
                }
            }
            let mut details = match event.get("labels") {
                Some(v @ Value::Object(_)) => match serde_json::to_value(v) {
                    Ok(Json::Object(m)) => m,
                    _ => Map::new(),
                },
                _ => Map::new(),
            };
            if let Some(d) = event.text("description") {
                details.insert("description".into(), json!(d));
            }
            if !details.is_empty() {
                payload.insert("custom_details".into(), Json::Object(details));
            }
            body.insert("payload".into(), Json::Object(payload));
            body.insert("client".into(), json!(self.client));
            if let Some(url) = event.text("url") {
                body.insert("client_url".into(), json!(url));
                body.insert("links".into(), json!([{ "href": url, "text": "Source" }]));
            }
            if let Some(images @ Value::Array(_)) = event.get("images") {
                body.insert(
                    "images".into(),
                    serde_json::to_value(images).unwrap_or(Json::Null),
                );
            }
        }
        serde_json::to_writer(out, &Json::Object(body)).map_err(|e| format!("cannot encode: {e}"))
    }

    fn build_request(
        &self,
        _partition: &str,
        events: EncodedEvents,
    ) -> Result<EncodedRequest, String> {
        Ok(EncodedRequest::single_event_post(&self.url, events))
    }

    fn max_events(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_map_to_the_api_set() {
        assert_eq!(pd_severity(Some("critical")), "critical");
        assert_eq!(pd_severity(Some("HIGH")), "error");
        assert_eq!(pd_severity(Some("medium")), "warning");
        assert_eq!(pd_severity(Some("low")), "info");
        assert_eq!(pd_severity(None), "info");
    }

    #[test]
    fn summaries_are_cut_to_1024_characters() {
        let long = "é".repeat(2000);
        assert_eq!(truncate_chars(&long, MAX_SUMMARY).chars().count(), 1024);
    }
}
