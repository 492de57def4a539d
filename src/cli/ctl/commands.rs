//! The control commands: their arguments, the API call each makes, and its table.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::table::{cell, print, say};
use super::{ApiArgs, Client, run};

#[derive(Args)]
pub(crate) struct SubscriptionsArgs {
    #[command(subcommand)]
    command: Subscriptions,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Subcommand)]
enum Subscriptions {
    /// List every subscription: the pipeline file's and those made through the API.
    List {
        /// Only this `subscription` transform's.
        #[arg(long)]
        component: Option<String>,
    },
    /// Show one subscription.
    Show { id: String },
    /// Make a subscription (it routes from the next batch and survives restarts).
    Add(Box<NewSubscription>),
    /// Delete a subscription made through the API.
    Delete { id: String },
    /// Which recent events a subscription matches, and whether a sample event does.
    Test { id: String },
    /// A subscription's recent matches, newest first.
    Events {
        id: String,
        /// At most this many (up to 50).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Args)]
struct NewSubscription {
    /// Its name (unique in the transform).
    name: String,
    /// One of the transform's `api_outputs` (optional when it has one).
    #[arg(long)]
    output: Option<String>,
    /// The `subscription` transform, when several take subscriptions.
    #[arg(long)]
    component: Option<String>,
    /// Matches the event's `project`.
    #[arg(long)]
    project_id: Option<String>,
    /// Event types matched (repeat, or comma-separate); none: any.
    #[arg(long = "event-type", value_delimiter = ',')]
    event_types: Vec<String>,
    /// Services matched; none: any.
    #[arg(long = "service", value_delimiter = ',')]
    services: Vec<String>,
    /// Regions matched; none: any.
    #[arg(long = "region", value_delimiter = ',')]
    regions: Vec<String>,
    /// Severities matched; none: any.
    #[arg(long = "severity", value_delimiter = ',')]
    severity_levels: Vec<String>,
    /// A label matcher such as `env=prod` or `host=~"web-.*"` (repeat for several).
    #[arg(long = "filter")]
    custom_filters: Vec<String>,
    /// A VRL boolean expression the event must also satisfy.
    #[arg(long)]
    condition: Option<String>,
    /// Emit a resolved event for a firing alert not resolved within
    /// `--resolve-after-hours`.
    #[arg(long)]
    auto_resolve: bool,
    /// Hours after the first firing before the resolve is emitted (default 24).
    #[arg(long)]
    resolve_after_hours: Option<f64>,
    /// Made disabled: it matches nothing until changed.
    #[arg(long)]
    disabled: bool,
}

impl NewSubscription {
    fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        let mut put = |k: &str, v: Value| {
            if !v.is_null() && v != json!([]) {
                m.insert(k.into(), v);
            }
        };
        put("output", json!(self.output));
        put("component", json!(self.component));
        put("project_id", json!(self.project_id));
        put("event_types", json!(self.event_types));
        put("services", json!(self.services));
        put("regions", json!(self.regions));
        put("severity_levels", json!(self.severity_levels));
        put("custom_filters", json!(self.custom_filters));
        put("condition", json!(self.condition));
        put("resolve_after_hours", json!(self.resolve_after_hours));
        if self.auto_resolve {
            m.insert("auto_resolve".into(), json!(true));
        }
        if self.disabled {
            m.insert("enabled".into(), json!(false));
        }
        Value::Object(m)
    }
}

fn subscription_rows(list: &[Value]) -> Vec<Vec<String>> {
    list.iter()
        .map(|s| {
            [
                "id",
                "name",
                "managed_by",
                "output",
                "active",
                "event_types",
                "services",
                "severity_levels",
            ]
            .iter()
            .map(|k| cell(&s[*k]))
            .collect()
        })
        .collect()
}

const SUBSCRIPTION_HEADER: [&str; 8] = [
    "ID",
    "NAME",
    "FROM",
    "OUTPUT",
    "ACTIVE",
    "TYPES",
    "SERVICES",
    "SEVERITIES",
];

fn event_rows(seen: &[Value]) -> Vec<Vec<String>> {
    seen.iter()
        .map(|s| {
            let e = &s["event"];
            vec![
                cell(&s["seen_at"]),
                cell(&e["service"]),
                cell(&e["severity"]),
                cell(&e["status"]),
                cell(&e["summary"]),
            ]
        })
        .collect()
}

const EVENT_HEADER: [&str; 5] = ["SEEN", "SERVICE", "SEVERITY", "STATUS", "SUMMARY"];

pub(crate) fn subscriptions(args: &SubscriptionsArgs) -> u8 {
    run(&args.api, async |c: &Client| {
        let path = |id: &str, rest: &str| format!("/subscriptions/{}{rest}", encode(id));
        match &args.command {
            Subscriptions::List { component } => {
                let query: Vec<(&str, String)> =
                    component.iter().map(|c| ("component", c.clone())).collect();
                let answer = c.get("/subscriptions", &query).await?;
                if !c.json {
                    let list = answer["subscriptions"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    print(&SUBSCRIPTION_HEADER, &subscription_rows(&list));
                }
                Ok(answer)
            }
            Subscriptions::Show { id } => {
                let answer = c.get(&path(id, ""), &[]).await?;
                if !c.json {
                    print(
                        &SUBSCRIPTION_HEADER,
                        &subscription_rows(std::slice::from_ref(&answer)),
                    );
                }
                Ok(answer)
            }
            Subscriptions::Add(new) => {
                let answer = c
                    .call(Method::POST, "/subscriptions", &[], Some(&new.body()))
                    .await?;
                if !c.json {
                    say(format!(
                        "made subscription {} ({}), delivering to {}",
                        cell(&answer["id"]),
                        cell(&answer["name"]),
                        cell(&answer["output"])
                    ));
                }
                Ok(answer)
            }
            Subscriptions::Delete { id } => {
                let answer = c.call(Method::DELETE, &path(id, ""), &[], None).await?;
                if !c.json {
                    say(format!("deleted subscription {id}"));
                }
                Ok(answer)
            }
            Subscriptions::Test { id } => {
                let answer = c.get(&path(id, "/test"), &[]).await?;
                if !c.json {
                    let recent = &answer["recent"];
                    say(format!(
                        "matches {} of the {} recent events; a sample event made from its criteria {}",
                        cell(&recent["matched"]),
                        cell(&recent["checked"]),
                        if answer["sample"]["matched"] == true {
                            "matches"
                        } else {
                            "does NOT match"
                        }
                    ));
                    let events = recent["events"].as_array().cloned().unwrap_or_default();
                    if !events.is_empty() {
                        print(&EVENT_HEADER, &event_rows(&events));
                    }
                }
                Ok(answer)
            }
            Subscriptions::Events { id, limit } => {
                let answer = c
                    .get(&path(id, "/events"), &[("limit", limit.to_string())])
                    .await?;
                if !c.json {
                    let events = answer["events"].as_array().cloned().unwrap_or_default();
                    print(&EVENT_HEADER, &event_rows(&events));
                }
                Ok(answer)
            }
        }
    })
}

/// A path segment, percent-encoded.
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[derive(Args)]
pub(crate) struct OutagesArgs {
    #[command(subcommand)]
    command: Outages,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args, Clone)]
struct Scope {
    /// Only this provider's feeds.
    #[arg(long)]
    provider: Option<String>,
    /// Only this feed.
    #[arg(long)]
    feed: Option<String>,
    /// Only this `status_feed` source.
    #[arg(long)]
    source: Option<String>,
}

impl Scope {
    fn body(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in [
            ("provider", &self.provider),
            ("feed", &self.feed),
            ("source", &self.source),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
        Value::Object(m)
    }
}

#[derive(Subcommand)]
enum Outages {
    /// Every feed's last poll, result and interval, and the open incidents.
    Status,
    /// Poll now: one provider's feeds, or `all`.
    Check {
        #[arg(default_value = "all")]
        provider: String,
    },
    /// Stop polling (all feeds, or those selected).
    Stop(Scope),
    /// Resume polling (all feeds, or those selected).
    Start(Scope),
    /// Past outages with their start, updates and end.
    History {
        #[arg(long)]
        provider: Option<String>,
        /// RFC 3339: only those open or ended since.
        #[arg(long)]
        since: Option<String>,
    },
}

fn feed_rows(sources: &[Value]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for s in sources {
        for f in s["feeds"].as_array().into_iter().flatten() {
            rows.push(vec![
                cell(&s["source"]),
                cell(&f["name"]),
                cell(&f["provider"]),
                cell(&f["state"]),
                cell(&f["last_poll"]),
                cell(&f["open_incidents"]),
                cell(&f["interval_seconds"]),
            ]);
        }
    }
    rows
}

const FEED_HEADER: [&str; 7] = [
    "SOURCE",
    "FEED",
    "PROVIDER",
    "STATE",
    "LAST POLL",
    "OPEN",
    "INTERVAL(S)",
];

pub(crate) fn outages(args: &OutagesArgs) -> u8 {
    run(&args.api, async |c: &Client| {
        let answer = match &args.command {
            Outages::Status => c.get("/outages/status", &[]).await?,
            Outages::Check { provider } => {
                c.call(
                    Method::POST,
                    &format!("/outages/check/{}", encode(provider)),
                    &[],
                    None,
                )
                .await?
            }
            Outages::Stop(scope) => {
                c.call(Method::POST, "/outages/stop", &[], Some(&scope.body()))
                    .await?
            }
            Outages::Start(scope) => {
                c.call(Method::POST, "/outages/start", &[], Some(&scope.body()))
                    .await?
            }
            Outages::History { provider, since } => {
                let mut query = Vec::new();
                if let Some(p) = provider {
                    query.push(("provider", p.clone()));
                }
                if let Some(s) = since {
                    query.push(("since", s.clone()));
                }
                let answer = c.get("/outages/history", &query).await?;
                if !c.json {
                    let rows: Vec<Vec<String>> = answer["incidents"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|i| {
                            vec![
                                cell(&i["provider"]),
                                cell(&i["feed"]),
                                cell(&i["started_at"]),
                                cell(&i["ended_at"]),
                                i["updates"].as_array().map_or(0, Vec::len).to_string(),
                                cell(&i["summary"]),
                            ]
                        })
                        .collect();
                    print(
                        &["PROVIDER", "FEED", "STARTED", "ENDED", "UPDATES", "SUMMARY"],
                        &rows,
                    );
                }
                return Ok(answer);
            }
        };
        if !c.json {
            let sources = answer["sources"].as_array().cloned().unwrap_or_default();
            print(&FEED_HEADER, &feed_rows(&sources));
        }
        Ok(answer)
    })
}

#[derive(Args)]
pub(crate) struct EventsArgs {
    #[command(subcommand)]
    command: Events,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Subcommand)]
enum Events {
    /// Events stored by a `postgres` sink, newest first.
    Query {
        #[arg(long)]
        event_type: Option<String>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        level: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        start_time: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        end_time: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// The `postgres` sink, when several write.
        #[arg(long)]
        sink: Option<String>,
    },
}

pub(crate) fn events(args: &EventsArgs) -> u8 {
    run(&args.api, async |c: &Client| {
        let Events::Query {
            event_type,
            source,
            level,
            start_time,
            end_time,
            limit,
            offset,
            sink,
        } = &args.command;
        let mut query = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
        for (k, v) in [
            ("event_type", event_type),
            ("source", source),
            ("level", level),
            ("start_time", start_time),
            ("end_time", end_time),
            ("sink", sink),
        ] {
            if let Some(v) = v {
                query.push((k, v.clone()));
            }
        }
        let answer = c.get("/events", &query).await?;
        if !c.json {
            let rows: Vec<Vec<String>> = answer["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    vec![
                        cell(&e["timestamp"]),
                        cell(&e["event_type"]),
                        cell(&e["source"]),
                        cell(&e["level"]),
                        cell(&e["message"]),
                    ]
                })
                .collect();
            print(&["TIMESTAMP", "TYPE", "SOURCE", "LEVEL", "MESSAGE"], &rows);
        }
        Ok(answer)
    })
}

#[derive(Args)]
pub(crate) struct SilencesArgs {
    #[command(subcommand)]
    command: Silences,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Subcommand)]
enum Silences {
    /// Every silence with its status.
    List,
    /// Silence the alerts whose labels match every matcher.
    Add {
        /// A matcher such as `alertname=DiskFull` or `env=~"prod|stage"` (repeat for
        /// several).
        #[arg(long = "matcher", required = true)]
        matchers: Vec<String>,
        /// How long from now (`2h`, `30m`).
        #[arg(long, conflicts_with = "ends_at")]
        duration: Option<humantime::Duration>,
        /// When it ends (RFC 3339); neither this nor --duration: never.
        #[arg(long)]
        ends_at: Option<String>,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long, default_value = "")]
        created_by: String,
    },
    /// Expire a silence: it ends now and stays listed (as `expired`) for five days.
    #[command(alias = "expire")]
    Delete { id: String },
}

pub(crate) fn silences(args: &SilencesArgs) -> u8 {
    run(&args.api, async |c: &Client| match &args.command {
        Silences::List => {
            let answer = c.get("/silences", &[]).await?;
            if !c.json {
                let rows: Vec<Vec<String>> = answer["silences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        vec![
                            cell(&s["id"]),
                            cell(&s["status"]),
                            cell(&s["matchers"]),
                            cell(&s["ends_at"]),
                            cell(&s["created_by"]),
                            cell(&s["comment"]),
                        ]
                    })
                    .collect();
                print(
                    &["ID", "STATUS", "MATCHERS", "ENDS", "BY", "COMMENT"],
                    &rows,
                );
            }
            Ok(answer)
        }
        Silences::Add {
            matchers,
            duration,
            ends_at,
            comment,
            created_by,
        } => {
            let ends_at = match (duration, ends_at) {
                (Some(d), _) => {
                    let end = chrono::Duration::from_std((*d).into())
                        .ok()
                        .and_then(|d| chrono::Utc::now().checked_add_signed(d))
                        .ok_or_else(|| anyhow::anyhow!("--duration {d} is too long"))?;
                    Some(end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                }
                (None, e) => e.clone(),
            };
            let mut body = json!({
                "matchers": matchers, "comment": comment, "created_by": created_by,
            });
            if let Some(e) = ends_at {
                body["ends_at"] = json!(e);
            }
            let answer = c.call(Method::POST, "/silences", &[], Some(&body)).await?;
            if !c.json {
                say(format!("added silence {}", cell(&answer["id"])));
            }
            Ok(answer)
        }
        Silences::Delete { id } => {
            let answer = c
                .call(
                    Method::DELETE,
                    &format!("/silences/{}", encode(id)),
                    &[],
                    None,
                )
                .await?;
            if !c.json {
                say(format!("expired silence {id}"));
            }
            Ok(answer)
        }
    })
}
