//! How an event becomes a row: the columns (the events table's, or `columns:`), the
//! statement, and the default mapping of the normalized schema.

use serde_json::{Map, Value as Json, json};
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use crate::component::BuildError;
use crate::event::Event;
use crate::postgres::{ident, qualified_table};

enum Source {
    Whole,
    Field(OwnedValuePath),
}

/// How each column is filled.
enum Column {
    Mapped(String, Source),
    /// The default mapping of the normalized schema.
    Default(&'static str),
}

impl Column {
    fn name(&self) -> &str {
        match self {
            Self::Mapped(n, _) => n,
            Self::Default(n) => n,
        }
    }
}

const DEFAULT_COLUMNS: [&str; 8] = [
    "id",
    "event_type",
    "source",
    "message",
    "level",
    "tags",
    "payload",
    "timestamp",
];

use super::PostgresConfig;

impl PostgresConfig {
    pub(super) fn plan(&self) -> Result<Plan, BuildError> {
        crate::postgres::parse_url(&self.url, "url")?;
        self.failure_handling.check().map_err(BuildError)?;
        let table = qualified_table(&self.schema, &self.table)?;
        let columns: Vec<Column> = match &self.columns {
            None => DEFAULT_COLUMNS.iter().map(|c| Column::Default(c)).collect(),
            Some(map) => map
                .iter()
                .map(|(col, field)| {
                    ident(col)?;
                    let source = if field == "." {
                        Source::Whole
                    } else {
                        Source::Field(
                            vrl::path::parse_value_path(field)
                                .map_err(|e| BuildError(format!("`columns.{col}`: {e}")))?,
                        )
                    };
                    Ok(Column::Mapped(col.clone(), source))
                })
                .collect::<Result<_, BuildError>>()?,
        };
        if columns.is_empty() {
            return Err(BuildError("`columns` is empty".into()));
        }
        let list = columns
            .iter()
            .map(|c| format!("\"{}\"", c.name()))
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!(
            "INSERT INTO {table} ({list}) SELECT {list} FROM jsonb_populate_recordset(NULL::{table}, $1) ON CONFLICT DO NOTHING"
        );
        let timestamp_column = match &self.columns {
            None => Some("timestamp".to_owned()),
            Some(map) => map
                .contains_key("timestamp")
                .then(|| "timestamp".to_owned()),
        };
        if self.retention_days.is_some() && timestamp_column.is_none() {
            return Err(BuildError(
                "`retention_days` needs a `timestamp` column".into(),
            ));
        }
        Ok(Plan {
            table,
            schema: ident(&self.schema)?,
            columns,
            insert,
            timestamp_column,
        })
    }
}

pub(super) struct Plan {
    pub(super) table: String,
    pub(super) schema: String,
    columns: Vec<Column>,
    pub(super) insert: String,
    pub(super) timestamp_column: Option<String>,
}

impl Plan {
    /// The columns written, in order.
    pub(super) fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(Column::name)
    }

    pub(super) fn row(&self, event: &Event) -> Json {
        let whole = serde_json::to_value(&event.value).unwrap_or(Json::Null);
        let mut row = Map::new();
        for column in &self.columns {
            let value = match column {
                Column::Mapped(_, Source::Whole) => whole.clone(),
                Column::Mapped(_, Source::Field(p)) => event.value.get(p).map_or(Json::Null, |v| {
                    serde_json::to_value(v).unwrap_or(Json::Null)
                }),
                Column::Default(name) => default_column(name, event, &whole),
            };
            row.insert(column.name().to_owned(), value);
        }
        Json::Object(row)
    }
}

fn text(event: &Event, fields: &[&str]) -> Option<String> {
    fields.iter().find_map(|f| {
        event
            .get(f)
            .filter(|v| !matches!(v, Value::Null))
            .map(|v| v.to_string_lossy().into_owned())
    })
}

/// An event in the monitoring system's own shape (it has a `payload`) keeps its payload
/// as it is; any other event is its own payload, with its `event_type` (as the column
/// has it) so the `postgres` source reads it back whole.
fn payload(event: &Event, whole: &Json) -> Json {
    if let Some(p) = event.get("payload") {
        return serde_json::to_value(p).unwrap_or(Json::Null);
    }
    let mut whole = whole.clone();
    if let Json::Object(o) = &mut whole {
        o.entry("event_type").or_insert_with(|| json!("log"));
    }
    whole
}

/// When the event happened: its `timestamp` (the monitoring system's field) or `time`
/// (the normalized schema's), as a timestamp, text (PostgreSQL parses it; text it
/// cannot parse dead-letters the event) or Unix seconds or milliseconds; else when
/// sluice received it.
fn event_time(event: &Event) -> Json {
    let time = |v: &Value| match v {
        Value::Timestamp(t) => Some(json!(t.to_rfc3339())),
        Value::Integer(n) if n.unsigned_abs() < 100_000_000_000 => {
            chrono::DateTime::from_timestamp(*n, 0).map(|t| json!(t.to_rfc3339()))
        }
        Value::Integer(n) => {
            chrono::DateTime::from_timestamp_millis(*n).map(|t| json!(t.to_rfc3339()))
        }
        // Text (VRL has two kinds of it).
        other => other.to_str_lossy().map(|t| json!(t)),
    };
    ["timestamp", "time"]
        .iter()
        .find_map(|f| event.get(f).and_then(time))
        .unwrap_or_else(|| json!(event.meta.received_at.to_rfc3339()))
}

fn default_column(name: &str, event: &Event, whole: &Json) -> Json {
    match name {
        "id" => {
            let id = text(event, &["id"])
                .and_then(|s| uuid::Uuid::parse_str(&s).ok())
                .unwrap_or_else(|| {
                    // Stable across redeliveries of the same event.
                    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, whole.to_string().as_bytes())
                });
            json!(id.to_string())
        }
        "event_type" => json!(text(event, &["event_type"]).unwrap_or_else(|| "log".into())),
        "source" => {
            json!(text(event, &["source"]).unwrap_or_else(|| event.meta.source_id.to_string()))
        }
        "message" => text(event, &["summary", "message"]).map_or(Json::Null, Json::from),
        "level" => text(event, &["severity", "level"]).map_or(Json::Null, Json::from),
        "tags" => match event.get("tags").or_else(|| event.get("labels")) {
            Some(v @ Value::Object(_)) => serde_json::to_value(v).unwrap_or_else(|_| json!({})),
            _ => json!({}),
        },
        "payload" => payload(event, whole),
        "timestamp" => event_time(event),
        _ => Json::Null,
    }
}
