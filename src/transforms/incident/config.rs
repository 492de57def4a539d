//! `incident` options.

use std::time::Duration;

use serde::Deserialize;

use super::state::Timing;
use crate::component::BuildError;

fn default_max_incidents() -> usize {
    100_000
}
fn default_keep_resolved() -> Duration {
    Duration::from_secs(3600)
}
fn default_confirm_timeout() -> Duration {
    Duration::from_secs(3600)
}
fn default_snapshot_interval() -> Duration {
    Duration::from_secs(30)
}

/// One incident per real problem. Alerts in the normalized schema (`status` firing or
/// resolved) with the same correlation key are one incident; only its changes leave,
/// as the latest alert with these fields laid over it: `incident_id`, `incident_key`,
/// `action` (opened, updated, acknowledged, resolved, reopened), `reason`, `status`,
/// `severity` (the highest seen while open), `count` (firings), `flaps`, `first_seen`,
/// `last_seen`, `resolved_at` and `vendors` (every `source` that reported it). A
/// repeated firing only updates the incident; a resolve for a key never opened is
/// dropped. Events that are not alerts go to the `unmatched` output. State survives
/// restarts and reloads.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncidentConfig {
    /// The correlation key, as a template: alerts with the same key are one incident.
    /// Default `{{ fingerprint }}`; `"{{ labels.alertname }}/{{ service }}"` joins the
    /// same outage reported by several vendors. An alert lacking a field of the key goes
    /// to the `unmatched` output.
    pub(crate) key: Option<String>,
    /// The correlation key as a VRL expression instead of a template (read-only; its
    /// result is taken as text; `null` sends the alert to `unmatched`).
    pub(crate) key_source: Option<String>,
    /// Fields whose values form a notification group (Alertmanager's `group_by`):
    /// the changes of a group's incidents go out together, timed by `group_wait` and
    /// `group_interval`. Empty (the default): each incident is its own group.
    #[serde(default)]
    pub(crate) group_by: Vec<String>,
    /// How long the first change of a new group waits for others to join it
    /// (default 0s: at once).
    #[serde(default, with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) group_wait: Duration,
    /// Least time between two notifications of one group (default 0s: at once).
    #[serde(default, with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) group_interval: Duration,
    /// A still-open incident is announced again (`action: updated`, `reason:
    /// repeat_interval`) after this long without a notification. Unset (the default):
    /// never.
    #[serde(default, with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) repeat_interval: Option<Duration>,
    /// A resolve is held this long; a firing within it cancels the resolve (a flap)
    /// and the incident stays open without a notification (default 0s: resolves go
    /// out at once).
    #[serde(default, with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) resolve_hold: Duration,
    /// A firing this soon after a resolve went out reopens the same incident (`action:
    /// reopened`, same `incident_id`); after it, a firing opens a new incident
    /// (default 0s: always a new one).
    #[serde(default, with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) flap_window: Duration,
    /// An open incident whose key has not fired for this long resolves by itself
    /// (`reason: resolve_after`). Unset (the default): only a resolved alert closes it.
    #[serde(default, with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) resolve_after: Option<Duration>,
    /// A resolved incident stays listed in the API this long (default 1h), so a root
    /// cause or a note can still be added; its key opens a new incident all the same
    /// (after `flap_window`).
    #[serde(default = "default_keep_resolved", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) keep_resolved: Duration,
    /// A notification the sinks have neither delivered nor given up on this long after
    /// it left is announced again (default 1h, longer than a sink's default 25 to 50
    /// minutes of retries). It matters when the process that sent it died before the
    /// sinks answered: after a restart without the store, such notifications go out
    /// again at once; with the store, any aggregator sends them after this time. A
    /// notification the sinks failed goes out again after 1, 2, 4, 8 and 16 s, then it
    /// is given up.
    #[serde(default = "default_confirm_timeout", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) confirm_timeout: Duration,
    /// Incidents held at most (open ones, and resolved ones for `keep_resolved`;
    /// default 100000). Firing alerts of new keys beyond it are dropped and counted.
    #[serde(default = "default_max_incidents")]
    pub(crate) max_incidents: usize,
    /// Repeats (`count`, `last_seen`) are written to `data_dir` at most this often
    /// (default 30s); a change (opened, resolved, ...) is written within a second, and
    /// everything when the component stops. The file holds every incident, so with
    /// many open ones a longer interval saves disk writes.
    #[serde(default = "default_snapshot_interval", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) snapshot_interval: Duration,
    /// Keep incidents in a shared store instead of `data_dir`, so several aggregators
    /// (one Kafka consumer group) share them: each batch locks its keys' rows.
    pub(crate) store: Option<StoreConfig>,
}

/// Where incidents are shared.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreConfig {
    /// PostgreSQL: tables `incidents` (one row per incident, with the monitoring
    /// system's columns) and `incident_events` (every alert and every change), created
    /// when missing.
    pub(crate) postgres: PostgresStoreConfig,
}

/// The PostgreSQL incident store.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresStoreConfig {
    /// `postgres://user@host:port/db` (or a key=value connection string).
    pub(crate) url: String,
    /// The schema of the `incidents` and `incident_events` tables (default `public`).
    #[serde(default = "crate::postgres::default_schema")]
    pub(crate) schema: String,
    /// The events table (as the `postgres` sink writes it) that incident timelines
    /// and `GET /stats` read: `table` (in `schema`) or `schema.table`. Unset: none.
    pub(crate) events_table: Option<String>,
}

pub(super) use crate::units::millis as ms;

impl IncidentConfig {
    pub(super) fn check(&self) -> Result<(), BuildError> {
        if self.key.is_some() && self.key_source.is_some() {
            return Err(BuildError(
                "give either `key` or `key_source`, not both".into(),
            ));
        }
        if self.max_incidents == 0 {
            return Err(BuildError("`max_incidents` must be at least 1".into()));
        }
        for (name, d) in [
            ("repeat_interval", self.repeat_interval),
            ("resolve_after", self.resolve_after),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(BuildError(format!(
                    "`{name}` must be longer than 0s (leave it out to turn it off)"
                )));
            }
        }
        if self.confirm_timeout.is_zero() {
            return Err(BuildError(
                "`confirm_timeout` must be longer than 0s".into(),
            ));
        }
        if let Some(store) = &self.store {
            let pg = &store.postgres;
            crate::postgres::parse_url(&pg.url, "store.postgres.url")?;
            crate::postgres::ident(&pg.schema)
                .map_err(|e| BuildError(format!("`store.postgres.schema`: {}", e.0)))?;
            // Index names are `<schema>_incident_events_incident` and must fit
            // PostgreSQL's 63 bytes; `pg_` schemas are the system's.
            if pg.schema.len() > 40 || pg.schema.to_ascii_lowercase().starts_with("pg_") {
                return Err(BuildError(format!(
                    "`store.postgres.schema` `{}`: at most 40 characters, not starting with pg_",
                    pg.schema
                )));
            }
            if let Some(t) = &pg.events_table {
                pg.events_table().map_err(|e| {
                    BuildError(format!("`store.postgres.events_table` `{t}`: {}", e.0))
                })?;
            }
        }
        Ok(())
    }

    pub(super) fn timing(&self) -> Timing {
        Timing {
            resolve_hold: ms(self.resolve_hold),
            flap_window: ms(self.flap_window),
            resolve_after: self.resolve_after.map_or(0, ms),
            repeat_interval: self.repeat_interval.map_or(0, ms),
            keep_resolved: ms(self.keep_resolved),
            confirm_timeout: ms(self.confirm_timeout),
        }
    }
}

impl PostgresStoreConfig {
    /// The events table, quoted and schema-qualified.
    pub(super) fn events_table(&self) -> Result<Option<String>, BuildError> {
        let Some(t) = &self.events_table else {
            return Ok(None);
        };
        let (schema, table) = t.split_once('.').unwrap_or((&self.schema, t));
        crate::postgres::qualified_table(schema, table).map(Some)
    }
}
