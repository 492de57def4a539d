//! `status_feed`: cloud status pages (RSS, Atom, Statuspage and GCP JSON) polled into
//! outage events.
//!
//! Each feed is polled on its own schedule (`poll.rs`): conditional GETs, jitter,
//! exponential backoff on errors. A body is parsed (`parse.rs`) and read with its
//! provider's conventions (`providers/`) into incidents; those are compared with what
//! the source announced before (`state.rs`), and only changes become events: an incident
//! that appears, changes stage or severity, or resolves. A record is committed to
//! `data_dir` only once its event was delivered, so nothing is lost to a failed delivery
//! and nothing is repeated after a restart. `run.rs` is the loop; it also serves
//! `POST /status_feeds/<id>/check`, `GET /status_feeds/<id>` and `/outages` through the
//! telemetry registry: feeds stopped and started, their interval and the providers
//! polled (`control.rs`) are kept in the state file with what each feed announced
//! (its history, for `/outages/history`).

mod control;
mod feed;
mod parse;
mod poll;
mod providers;
mod run;
mod state;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use wildmatch::WildMatch;

use crate::alert::Severity;
use crate::component::{BoxFuture, BuildError, ComponentTask, SourceConfig, SourceContext};
use crate::net::TlsOptions;

pub(crate) use parse::{Format, ParseError};
pub(crate) use providers::{Incident, Provider};
pub(crate) use state::Initial;

fn default_interval() -> Duration {
    Duration::from_secs(120)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_jitter() -> f64 {
    0.1
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(3600)
}
fn default_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_max_bytes() -> usize {
    16 * 1024 * 1024
}

/// Polls below this are refused: status pages ask for minutes, not seconds.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Source-wide options, after validation.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) initial: Initial,
    /// The source's `interval`, for the public feeds the API adds.
    pub(crate) interval: Duration,
    pub(crate) jitter: f64,
    pub(crate) max_backoff: Duration,
    pub(crate) retention: chrono::Duration,
    pub(crate) max_bytes: usize,
    pub(crate) keep_raw: bool,
}

/// Polls cloud status pages (RSS, Atom, JSON) and emits each outage change once.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusFeedConfig {
    /// The feeds to poll, at least one: each a unique `name` and a `provider`, and
    /// optionally `url`, `format`, `interval`, `services`, `regions`, `default_severity`
    /// and `resolve_missing`.
    pub(crate) feeds: Vec<FeedConfig>,
    /// How often each feed is polled (a feed's own `interval` wins).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub(crate) interval: Duration,
    /// Spread of each wait, as a fraction of it (0.1: ±10%).
    #[serde(default = "default_jitter")]
    pub(crate) jitter: f64,
    /// Timeout of one request, body included.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
    /// The longest wait between polls of a failing feed.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub(crate) max_backoff: Duration,
    /// What the first poll of a feed emits.
    #[serde(default)]
    pub(crate) initial: Initial,
    /// How long an incident that left its feed is remembered.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub(crate) retention: Duration,
    /// Larger bodies are an error.
    #[serde(default = "default_max_bytes")]
    pub(crate) max_bytes: usize,
    /// Keep the feed's entry (or JSON incident) in each event's `raw`.
    #[serde(default = "crate::units::yes")]
    pub(crate) keep_raw: bool,
    /// Verify the servers' TLS certificates (default true).
    #[serde(default = "crate::units::yes")]
    pub(crate) ssl_verify: bool,
    #[serde(default)]
    pub(crate) tls: TlsOptions,
}

/// One feed.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeedConfig {
    /// Names the feed in events (`labels.feed`), metrics, state and the API.
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) provider: Provider,
    /// Absent or empty: the provider's public feed.
    #[serde(default)]
    pub(crate) url: Option<String>,
    /// Absent: the preset's format with the preset URL, else `auto`.
    #[serde(default)]
    pub(crate) format: Option<Format>,
    /// How often this feed is polled (default: the source's `interval`).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default, with = "humantime_serde::option")]
    pub(crate) interval: Option<Duration>,
    /// Only incidents whose service matches one of these (`*` wildcards, any case).
    /// An incident that names no service passes.
    #[serde(default)]
    pub(crate) services: Vec<String>,
    /// Likewise for regions.
    #[serde(default)]
    pub(crate) regions: Vec<String>,
    /// For incidents whose provider gives no severity.
    #[serde(default)]
    pub(crate) default_severity: Severity,
    /// Whether an incident that left the feed has ended (default: only for `azure`,
    /// whose feed lists current incidents only).
    #[serde(default)]
    pub(crate) resolve_missing: Option<bool>,
}

/// A feed with its defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct FeedSpec {
    pub(crate) name: String,
    pub(crate) provider: Provider,
    pub(crate) url: String,
    pub(crate) format: Format,
    pub(crate) interval: Duration,
    pub(crate) services: Vec<WildMatch>,
    pub(crate) regions: Vec<WildMatch>,
    pub(crate) default_severity: Severity,
    pub(crate) resolve_missing: bool,
}

impl FeedSpec {
    /// Whether an incident passes `services` and `regions`. A field holding a list
    /// ("europe-west2, global") passes when any element matches.
    pub(crate) fn wants(&self, incident: &Incident) -> bool {
        fn passes(patterns: &[WildMatch], value: Option<&str>) -> bool {
            let Some(value) = value else { return true };
            patterns.is_empty()
                || value
                    .split(',')
                    .map(str::trim)
                    .any(|v| patterns.iter().any(|p| p.matches(v)))
        }
        passes(&self.services, incident.service.as_deref())
            && passes(&self.regions, incident.region.as_deref())
    }
}

impl StatusFeedConfig {
    fn specs(&self) -> Result<Vec<FeedSpec>, BuildError> {
        if self.feeds.is_empty() {
            return Err(BuildError("`feeds` is empty".into()));
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err(BuildError("`jitter` must be between 0 and 0.5".into()));
        }
        if self.max_bytes == 0 {
            return Err(BuildError("`max_bytes` must be at least 1".into()));
        }
        let mut names = HashSet::new();
        self.feeds
            .iter()
            .map(|f| {
                let name = f.name.trim();
                if name.is_empty() {
                    return Err(BuildError("a feed has an empty `name`".into()));
                }
                if !names.insert(name) {
                    return Err(BuildError(format!("feed name `{name}` is used twice")));
                }
                let given = f.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
                let (url, format) = match (given, f.provider.preset()) {
                    (Some(url), _) => (url.to_owned(), f.format.unwrap_or_default()),
                    (None, Some((url, format))) => (url.to_owned(), f.format.unwrap_or(format)),
                    (None, None) => {
                        return Err(BuildError(format!(
                            "feed `{name}`: provider `{}` has no public feed; set `url` (e.g. https://www.githubstatus.com/history.atom)",
                            f.provider.as_str()
                        )));
                    }
                };
                match url::Url::parse(&url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                    _ => {
                        return Err(BuildError(format!(
                            "feed `{name}`: `url` {url:?} is not an http(s) URL"
                        )));
                    }
                }
                let interval = f.interval.unwrap_or(self.interval);
                if interval < MIN_INTERVAL {
                    return Err(BuildError(format!(
                        "feed `{name}`: `interval` must be at least {}s",
                        MIN_INTERVAL.as_secs()
                    )));
                }
                let patterns = |list: &[String]| {
                    list.iter()
                        .map(|p| WildMatch::new_case_insensitive(p.trim()))
                        .collect()
                };
                Ok(FeedSpec {
                    name: name.to_owned(),
                    provider: f.provider,
                    url,
                    format,
                    interval,
                    services: patterns(&f.services),
                    regions: patterns(&f.regions),
                    default_severity: f.default_severity,
                    resolve_missing: f
                        .resolve_missing
                        .unwrap_or_else(|| f.provider.feed_lists_only_open()),
                })
            })
            .collect()
    }
}

impl SourceConfig for StatusFeedConfig {
    fn type_name(&self) -> &'static str {
        "status_feed"
    }

    fn check(&self) -> Result<(), BuildError> {
        self.specs().map(drop)
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            let feeds = self.specs()?;
            let client = crate::net::http_client(
                self.ssl_verify,
                self.tls.ca_file.as_deref(),
                self.timeout,
                crate::net::Redirects::Follow,
            )
            .map_err(BuildError)?;
            let state_path = cx.data_dir.join(format!("status_feed-{}.json", cx.id));
            let settings = Settings {
                initial: self.initial,
                interval: self.interval,
                jitter: self.jitter,
                max_backoff: self.max_backoff,
                retention: chrono::Duration::from_std(self.retention)
                    .unwrap_or(chrono::Duration::MAX),
                max_bytes: self.max_bytes,
                keep_raw: self.keep_raw,
            };
            Ok(
                Box::pin(run::run(Arc::new(settings), feeds, client, state_path, cx))
                    as ComponentTask,
            )
        })
    }
}

/// The parsers behind one feed, for the fuzz target and property tests: `body` as
/// `format` read the `provider`'s way, incidents filtered by nothing.
pub(crate) fn parse_incidents(
    provider: Provider,
    format: Format,
    body: &[u8],
) -> Result<Vec<Incident>, ParseError> {
    parse::parse(format, body).map(|doc| providers::incidents(provider, doc))
}

/// The events two successive polls of `body` emit, the first one with `initial`
/// (for the fuzz target: the second must be empty).
pub(crate) fn plan_twice(
    provider: Provider,
    incidents: Vec<Incident>,
    initial: Initial,
) -> (Vec<vrl::value::Value>, Vec<vrl::value::Value>) {
    let cx = state::PlanContext {
        feed: "fuzz".into(),
        provider,
        default_severity: Severity::Medium,
        initial,
        resolve_missing: provider.feed_lists_only_open(),
        retention: chrono::Duration::days(30),
        now: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
    };
    let mut feed = state::FeedState::default();
    let mut rounds = Vec::new();
    for _ in 0..2 {
        let plan = state::plan(&feed, incidents.clone(), &cx);
        feed = plan.state;
        let events = plan
            .emits
            .into_iter()
            .map(|e| {
                let event = e.event(&cx, true);
                feed.incidents.insert(e.key, e.seen);
                event
            })
            .collect();
        rounds.push(events);
    }
    let second = rounds.pop().unwrap_or_default();
    let first = rounds.pop().unwrap_or_default();
    (first, second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Status;

    fn config(yaml: &str) -> Result<StatusFeedConfig, String> {
        serde_saphyr::from_str::<StatusFeedConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn presets_fill_url_and_format() {
        let c = config(
            "feeds:\n  - { name: aws, provider: aws }\n  - { name: gcp, provider: gcp }\n  - { name: azure, provider: azure }\n  - { name: oci, provider: oci }\n  - { name: gh, provider: statuspage, url: 'https://www.githubstatus.com/history.atom' }\n  - { name: gcp-atom, provider: gcp, url: 'https://status.cloud.google.com/en/feed.atom', interval: 5m }\n  - { name: aws-empty, provider: aws, url: '' }\n",
        )
        .expect("valid");
        let specs = c.specs().expect("specs");
        let got: Vec<(&str, &str, Format, u64, bool)> = specs
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.url.as_str(),
                    s.format,
                    s.interval.as_secs(),
                    s.resolve_missing,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "aws",
                    "https://status.aws.amazon.com/rss/all.rss",
                    Format::Rss,
                    120,
                    false
                ),
                (
                    "gcp",
                    "https://status.cloud.google.com/incidents.json",
                    Format::GcpIncidentsJson,
                    120,
                    false
                ),
                (
                    "azure",
                    "https://azure.status.microsoft/en-us/status/feed/",
                    Format::Rss,
                    120,
                    true
                ),
                (
                    "oci",
                    "https://ocistatus.oraclecloud.com/api/v2/incidents.json",
                    Format::StatuspageJson,
                    120,
                    false
                ),
                (
                    "gh",
                    "https://www.githubstatus.com/history.atom",
                    Format::Auto,
                    120,
                    false
                ),
                (
                    "gcp-atom",
                    "https://status.cloud.google.com/en/feed.atom",
                    Format::Auto,
                    300,
                    false
                ),
                (
                    "aws-empty",
                    "https://status.aws.amazon.com/rss/all.rss",
                    Format::Rss,
                    120,
                    false
                ),
            ]
        );
    }

    #[test]
    fn bad_options_are_refused() {
        for (yaml, want) in [
            ("feeds: []\n", "`feeds` is empty"),
            (
                "feeds:\n  - { name: x, provider: statuspage }\n",
                "set `url`",
            ),
            (
                "feeds:\n  - { name: x, url: 'ftp://a/b' }\n",
                "not an http(s) URL",
            ),
            (
                "feeds:\n  - { name: x, provider: aws }\n  - { name: x, provider: gcp }\n",
                "used twice",
            ),
            (
                "feeds:\n  - { name: x, provider: aws, interval: 1s }\n",
                "at least 10s",
            ),
            (
                "jitter: 0.9\nfeeds:\n  - { name: x, provider: aws }\n",
                "between 0 and 0.5",
            ),
        ] {
            let c = config(yaml).expect("deserializes");
            let e = c.check().expect_err(yaml).to_string();
            assert!(e.contains(want), "{yaml}: {e}");
        }
        let e =
            config("feeds:\n  - { name: x, provider: aws, color: red }\n").expect_err("unknown");
        assert!(e.contains("unknown field"), "{e}");
        let e = config("feeds:\n  - { name: x, provider: ibm }\n").expect_err("unknown provider");
        assert!(e.contains("unknown variant"), "{e}");
        let e = config("initial: everything\nfeeds:\n  - { name: x, provider: aws }\n")
            .expect_err("initial");
        assert!(e.contains("unknown variant"), "{e}");
    }

    #[test]
    fn service_and_region_filters() {
        let c = config("feeds:\n  - { name: aws, provider: aws, services: [ec2, 'rds*'], regions: [us-east-1, 'EU-*'] }\n")
            .expect("valid");
        let spec = &c.specs().expect("specs")[0];
        let incident = |service: Option<&str>, region: Option<&str>| Incident {
            key: "k".into(),
            status: Status::Firing,
            phase: String::new(),
            severity: None,
            summary: String::new(),
            description: None,
            service: service.map(String::from),
            region: region.map(String::from),
            url: None,
            starts_at: None,
            updated: None,
            ends_at: None,
            labels: Default::default(),
            raw: serde_json::Value::Null,
        };
        assert!(spec.wants(&incident(Some("ec2"), Some("us-east-1"))));
        assert!(spec.wants(&incident(Some("RDS-aurora"), Some("eu-west-1"))));
        assert!(spec.wants(&incident(Some("ec2"), Some("ap-south-1, eu-west-3"))));
        assert!(spec.wants(&incident(None, None)), "unknown passes");
        assert!(!spec.wants(&incident(Some("s3"), Some("us-east-1"))));
        assert!(!spec.wants(&incident(Some("ec2"), Some("ap-south-1"))));
    }
}
