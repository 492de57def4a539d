//! `opsgenie`: alerts to Opsgenie's Alert API v2, created, closed and acknowledged by
//! alias.
//!
//! The alias is what ties an alert's notifications together: Opsgenie keeps one open
//! alert per alias (a second create with the same alias only raises its count), and a
//! close or an acknowledgement names the alert by it (`identifierType=alias`). It is the
//! `alias` template, by default `incident_id` (the `incident` transform's notifications),
//! else `fingerprint`.
//! - `status` firing → `POST /v2/alerts` with `message` (`summary`, cut to 130
//!   characters), `alias`, `description`, `priority` (critical | high | medium | low |
//!   info → P1 … P5), `entity` (`service`), `source`, `tags`, `details` (the `labels`,
//!   as strings), `responders`;
//! - resolved → `POST /v2/alerts/{alias}/close?identifierType=alias`;
//! - acknowledged → `POST /v2/alerts/{alias}/acknowledge?identifierType=alias`.
//!
//! The alias is a path segment, percent-encoded, so no value can change which alert or
//! endpoint a request names. Opsgenie answers 202 and processes asynchronously; 429 and
//! 5xx are retried, other errors (an invalid request, a wrong key) dead-lettered.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use vrl::value::Value;

use crate::alert::{Action, field};
use crate::component::{BoxFuture, BuildError, ComponentTask, SinkConfig, SinkContext};
use crate::delivery::{DEAD_LETTER, EncodedEvents, EncodedRequest, HttpEncoder, RequestConfig};
use crate::event::Event;
use crate::net::FailureHandling;
use crate::template::Template;
use crate::text::prefix_chars;

const MAX_MESSAGE: usize = 130;
const MAX_ALIAS: usize = 512;
const MAX_DESCRIPTION: usize = 15_000;
const MAX_ENTITY: usize = 512;
const MAX_SOURCE: usize = 100;
const MAX_TAGS: usize = 20;
const MAX_TAG: usize = 50;
/// Opsgenie's limit on the keys and values of `details` together.
const MAX_DETAILS: usize = 8_000;

/// Creates, closes and acknowledges Opsgenie alerts by alias (Alert API v2).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpsgenieConfig {
    /// The API key of an Opsgenie API integration (sent as `Authorization: GenieKey …`;
    /// keep it in `${…}`).
    pub(crate) api_key: String,
    /// `us` (default, api.opsgenie.com) or `eu` (api.eu.opsgenie.com).
    #[serde(default)]
    pub(crate) region: Region,
    /// The API's base URL, replacing the region's (a proxy, a test receiver).
    pub(crate) endpoint: Option<String>,
    /// The alert's alias, as a template. Default: `{{ incident_id }}` when the event has
    /// one, else `{{ fingerprint }}`. Cut to 512 characters.
    pub(crate) alias: Option<String>,
    /// The alert's message, as a template (default: the event's `summary`). Cut to 130
    /// characters; when the template's field is missing, the `summary`, else "Alert".
    pub(crate) message: Option<String>,
    /// The priority, as a template that renders to P1 … P5 (default: from `severity`,
    /// critical P1, high P2, medium P3, low P4, info P5). A rendering that is not P1 … P5,
    /// or a missing field, falls back to the severity's priority.
    pub(crate) priority: Option<String>,
    /// The alert's entity, as a template (default: the event's `service`); left out when
    /// the template's field is missing.
    pub(crate) entity: Option<String>,
    /// The alert's `source`, and the source of closes and acknowledgements.
    #[serde(default = "default_source")]
    pub(crate) source: String,
    /// The user named on creates, closes and acknowledgements.
    #[serde(default = "default_source")]
    pub(crate) user: String,
    /// Tags, each a template (at most 20 are sent, each cut to 50 characters); a tag
    /// whose field the event lacks is left out.
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    /// Teams, users, escalations or schedules notified of created alerts.
    #[serde(default)]
    pub(crate) responders: Vec<Responder>,
    /// Whether the server's TLS certificate is verified (default true).
    #[serde(default = "crate::units::yes")]
    pub(crate) ssl_verify: bool,
    /// Retries with backoff, then the `dead_letter` output.
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
    /// Timeouts, concurrency and rate limit. Keep `concurrency` at 1 (the default) so a
    /// close never overtakes its create.
    #[serde(default)]
    pub(crate) request: RequestConfig,
}

/// Which Opsgenie instance the account lives on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Region {
    /// api.opsgenie.com
    #[default]
    Us,
    /// api.eu.opsgenie.com
    Eu,
}

/// One responder of a created alert, by name (teams, escalations, schedules) or
/// username (users).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Responder {
    /// `team`, `user`, `escalation` or `schedule`.
    #[serde(rename = "type")]
    pub(crate) kind: ResponderKind,
    /// The team's, escalation's or schedule's name, or the user's username (email).
    pub(crate) name: String,
}

/// What kind of responder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ResponderKind {
    /// A team, by name.
    Team,
    /// A user, by username.
    User,
    /// An escalation, by name.
    Escalation,
    /// A schedule, by name.
    Schedule,
}

fn default_source() -> String {
    "sluice".into()
}

struct Templates {
    alias: Option<Template>,
    message: Option<Template>,
    priority: Option<Template>,
    entity: Option<Template>,
    tags: Vec<Template>,
}

impl OpsgenieConfig {
    fn base(&self) -> &str {
        match (&self.endpoint, self.region) {
            (Some(url), _) => url,
            (None, Region::Us) => "https://api.opsgenie.com",
            (None, Region::Eu) => "https://api.eu.opsgenie.com",
        }
    }

    fn encoder(&self) -> Result<OpsgenieEncoder, BuildError> {
        let key = self.api_key.trim();
        if key.is_empty() {
            return Err(BuildError(
                "`api_key` is empty (is its variable unset?): an empty secret is refused".into(),
            ));
        }
        let mut auth = HeaderValue::from_str(&format!("GenieKey {key}"))
            .map_err(|_| BuildError("`api_key` holds characters a header cannot".into()))?;
        auth.set_sensitive(true);
        let base =
            reqwest::Url::parse(self.base()).map_err(|e| BuildError(format!("`endpoint`: {e}")))?;
        if base.cannot_be_a_base() {
            return Err(BuildError("`endpoint` must be an http(s) base URL".into()));
        }
        self.failure_handling.check().map_err(BuildError)?;
        self.request.check().map_err(BuildError)?;
        let t = |name: &str, o: &Option<String>| {
            o.as_deref()
                .map(Template::parse)
                .transpose()
                .map_err(|e| BuildError(format!("`{name}`: {e}")))
        };
        let tags = self
            .tags
            .iter()
            .map(|s| Template::parse(s).map_err(|e| BuildError(format!("`tags`: {e}"))))
            .collect::<Result<_, _>>()?;
        if self.responders.iter().any(|r| r.name.trim().is_empty()) {
            return Err(BuildError("`responders`: a `name` is empty".into()));
        }
        let responders = self
            .responders
            .iter()
            .map(|r| {
                let kind = match r.kind {
                    ResponderKind::Team => "team",
                    ResponderKind::User => "user",
                    ResponderKind::Escalation => "escalation",
                    ResponderKind::Schedule => "schedule",
                };
                let id = if r.kind == ResponderKind::User {
                    "username"
                } else {
                    "name"
                };
                json!({ "type": kind, id: r.name })
            })
            .collect();
        Ok(OpsgenieEncoder {
            base,
            auth,
            source: prefix_chars(&self.source, MAX_SOURCE).to_owned(),
            user: prefix_chars(&self.user, 100).to_owned(),
            responders,
            templates: Templates {
                alias: t("alias", &self.alias)?,
                message: t("message", &self.message)?,
                priority: t("priority", &self.priority)?,
                entity: t("entity", &self.entity)?,
                tags,
            },
        })
    }
}

impl SinkConfig for OpsgenieConfig {
    fn type_name(&self) -> &'static str {
        "opsgenie"
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
            self.base(),
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

struct OpsgenieEncoder {
    base: reqwest::Url,
    auth: HeaderValue,
    source: String,
    user: String,
    responders: Vec<Json>,
    templates: Templates,
}

/// The priority of a normalized severity.
fn priority(severity: Option<&str>) -> &'static str {
    match severity.map(str::to_ascii_lowercase).as_deref() {
        Some("critical") => "P1",
        Some("high" | "error") => "P2",
        Some("low") => "P4",
        Some("info") => "P5",
        _ => "P3",
    }
}

impl OpsgenieEncoder {
    /// An optional field: the template's rendering, else `fallback`. A template whose
    /// field the event lacks falls back too: a missing decoration must not stop a page.
    fn optional(
        t: &Option<Template>,
        event: &Event,
        fallback: impl FnOnce() -> Option<String>,
    ) -> Option<String> {
        t.as_ref()
            .and_then(|t| t.render(event).ok())
            .or_else(fallback)
            .filter(|v| !v.trim().is_empty())
    }

    fn alias(&self, event: &Event) -> Result<String, String> {
        let nonblank = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let alias = match &self.templates.alias {
            Some(t) => t.render(event)?,
            None => nonblank(event.text("incident_id"))
                .or_else(|| nonblank(event.text(field::FINGERPRINT)))
                .unwrap_or_default(),
        };
        if alias.trim().is_empty() {
            return Err("no alias: the event has no `incident_id` or `fingerprint` (or set the `alias` template)".into());
        }
        // URL rules drop control characters from a path instead of encoding them, so a
        // close would name another alert than the create did: both use this form.
        let alias: String = alias
            .chars()
            .map(|c| if c.is_control() { '_' } else { c })
            .collect();
        let alias = prefix_chars(&alias, MAX_ALIAS).to_owned();
        // A path segment of its own; URL rules would drop these two instead of encoding
        // them, and the request would name another endpoint.
        if alias == "." || alias == ".." {
            return Err(format!("alias `{alias}` cannot name an alert in a URL"));
        }
        Ok(alias)
    }

    /// `/v2/alerts`, or `/v2/alerts/{alias}/{verb}` with the alias as one encoded segment.
    fn url(&self, alias: Option<&str>, verb: &str) -> Result<String, String> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| "the endpoint cannot be a base URL".to_string())?;
            path.pop_if_empty().extend(["v2", "alerts"]);
            if let Some(alias) = alias {
                path.extend([alias, verb]);
            }
        }
        if alias.is_some() {
            url.query_pairs_mut().append_pair("identifierType", "alias");
        }
        Ok(url.into())
    }

    fn create(&self, event: &Event, alias: String) -> Result<Json, String> {
        let message = Self::optional(&self.templates.message, event, || {
            event.text(field::SUMMARY).or_else(|| event.text("message"))
        })
        .unwrap_or_else(|| "Alert".into());
        // A `priority` template that renders no P1 … P5 falls back to the severity's.
        let priority = self
            .templates
            .priority
            .as_ref()
            .and_then(|t| t.render(event).ok())
            .map(|p| p.trim().to_ascii_uppercase())
            .filter(|p| ["P1", "P2", "P3", "P4", "P5"].contains(&p.as_str()))
            .unwrap_or_else(|| priority(event.text(field::SEVERITY).as_deref()).to_owned());
        let mut body = Map::new();
        body.insert("message".into(), json!(prefix_chars(&message, MAX_MESSAGE)));
        body.insert("alias".into(), json!(alias));
        body.insert("priority".into(), json!(priority));
        body.insert("source".into(), json!(self.source));
        body.insert("user".into(), json!(self.user));
        if let Some(d) = event.text(field::DESCRIPTION) {
            body.insert(
                "description".into(),
                json!(prefix_chars(&d, MAX_DESCRIPTION)),
            );
        }
        if let Some(entity) =
            Self::optional(&self.templates.entity, event, || event.text(field::SERVICE))
        {
            body.insert("entity".into(), json!(prefix_chars(&entity, MAX_ENTITY)));
        }
        let mut tags = Vec::new();
        // A tag whose field the event lacks is left out.
        for tag in self
            .templates
            .tags
            .iter()
            .filter_map(|t| t.render(event).ok())
        {
            if tags.len() < MAX_TAGS && !tag.trim().is_empty() {
                tags.push(json!(prefix_chars(&tag, MAX_TAG)));
            }
        }
        if !tags.is_empty() {
            body.insert("tags".into(), Json::Array(tags));
        }
        if let Some(details) = details(event) {
            body.insert("details".into(), Json::Object(details));
        }
        if !self.responders.is_empty() {
            body.insert("responders".into(), Json::Array(self.responders.clone()));
        }
        Ok(Json::Object(body))
    }
}

/// The event's `labels` as Opsgenie's string map, within its size limit (labels past
/// the limit are left out, whole).
fn details(event: &Event) -> Option<Map<String, Json>> {
    let Some(Value::Object(labels)) = event.get(field::LABELS) else {
        return None;
    };
    let mut out = Map::new();
    let mut size = 0;
    for (key, value) in labels {
        let value = match value {
            Value::Null => continue,
            Value::Object(_) | Value::Array(_) => serde_json::to_string(value).unwrap_or_default(),
            // Strings as they are, not quoted as JSON would.
            other => other.to_string_lossy().into_owned(),
        };
        size += key.len() + value.len();
        if size > MAX_DETAILS {
            break;
        }
        out.insert(key.to_string(), json!(value));
    }
    (!out.is_empty()).then_some(out)
}

impl HttpEncoder for OpsgenieEncoder {
    /// The request's URL: each event is its own request, to the endpoint its action
    /// names.
    fn partition(&self, event: &Event) -> Result<String, String> {
        let alias = self.alias(event)?;
        match Action::of_status(event.text(field::STATUS).as_deref())? {
            Action::Trigger => self.url(None, ""),
            Action::Resolve => self.url(Some(&alias), "close"),
            Action::Acknowledge => self.url(Some(&alias), "acknowledge"),
        }
    }

    fn encode_into(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        let alias = self.alias(event)?;
        let body = match Action::of_status(event.text(field::STATUS).as_deref())? {
            Action::Trigger => self.create(event, alias)?,
            Action::Resolve | Action::Acknowledge => json!({
                "user": self.user,
                "source": self.source,
                "note": format!("{} by {}", event.text(field::STATUS).unwrap_or_default(), self.source),
            }),
        };
        serde_json::to_writer(out, &body).map_err(|e| format!("cannot encode: {e}"))
    }

    fn build_request(&self, url: &str, events: EncodedEvents) -> Result<EncodedRequest, String> {
        // The partition is the alert's own URL (its alias is in the path).
        let url = reqwest::Url::parse(url).map_err(|e| format!("the alert's URL: {e}"))?;
        let mut request = EncodedRequest::single_event_post(&url, events);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(AUTHORIZATION, self.auth.clone());
        request.headers = headers;
        Ok(request)
    }

    fn max_events(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(extra: serde_json::Value) -> OpsgenieEncoder {
        let mut config = json!({"api_key": "eb243592-faa2-4ba2-a551q-1afdf565c889"});
        if let (Some(c), Json::Object(e)) = (config.as_object_mut(), extra) {
            c.extend(e);
        }
        serde_json::from_value::<OpsgenieConfig>(config)
            .expect("config")
            .encoder()
            .expect("encoder")
    }

    fn event(json: &str) -> Event {
        Event::new(
            serde_json::from_str(json).expect("json"),
            crate::event::SourceId::intern("t"),
            chrono::Utc::now(),
        )
    }

    #[test]
    fn an_alias_cannot_leave_its_path_segment() {
        let e = encoder(json!({"endpoint": "http://127.0.0.1:9/base"}));
        let url = e
            .partition(&event(
                r#"{"status":"resolved","fingerprint":"../../v1/x?identifierType=id#f"}"#,
            ))
            .expect("url");
        assert_eq!(
            url,
            "http://127.0.0.1:9/base/v2/alerts/..%2F..%2Fv1%2Fx%3FidentifierType=id%23f/close?identifierType=alias"
        );
        let dots = e.partition(&event(r#"{"status":"resolved","fingerprint":".."}"#));
        assert!(dots.expect_err("refused").contains("alias `..`"));
        let create = e
            .partition(&event(r#"{"status":"firing","fingerprint":"a"}"#))
            .expect("url");
        assert_eq!(create, "http://127.0.0.1:9/base/v2/alerts");
    }

    #[test]
    fn a_create_carries_the_documented_fields_within_their_limits() {
        let e = encoder(
            json!({"tags": ["{{ service }}", "sluice"], "responders": [{"type": "team", "name": "ops"}, {"type": "user", "name": "a@b.c"}]}),
        );
        let long = "m".repeat(300);
        let bytes = e
            .encode_event(&event(&format!(
                r#"{{"severity":"high","summary":"{long}","fingerprint":"f1","service":"db","labels":{{"team":"core","n":3}},"description":"d"}}"#
            )))
            .expect("encodes");
        let v: Json = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["message"].as_str().map(str::len), Some(130));
        assert_eq!(v["alias"], "f1");
        assert_eq!(v["priority"], "P2");
        assert_eq!(v["entity"], "db");
        assert_eq!(v["tags"], json!(["db", "sluice"]));
        assert_eq!(v["details"], json!({"team": "core", "n": "3"}));
        assert_eq!(
            v["responders"],
            json!([{"type": "team", "name": "ops"}, {"type": "user", "username": "a@b.c"}])
        );
    }

    #[test]
    fn an_empty_key_is_refused_and_bad_decorations_fall_back() {
        let empty: OpsgenieConfig = serde_json::from_value(json!({"api_key": " "})).expect("c");
        assert!(empty.check().expect_err("empty").0.contains("empty secret"));
        let e = encoder(json!({"priority": "{{ p }}", "tags": ["{{ team }}", "x"]}));
        for body in [
            r#"{"fingerprint":"f","p":"urgent","severity":"low"}"#,
            r#"{"fingerprint":"f","severity":"low"}"#,
        ] {
            let bytes = e.encode_event(&event(body)).expect("falls back");
            let v: Json = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(v["priority"], "P4", "{body}");
            assert_eq!(
                v["tags"],
                json!(["x"]),
                "a tag of a missing field is left out"
            );
        }
        let tab = e
            .partition(&event(
                r#"{"status":"resolved","fingerprint":"a\tb","incident_id":" "}"#,
            ))
            .expect("url");
        assert!(tab.contains("/v2/alerts/a_b/close"), "{tab}");
    }
}
