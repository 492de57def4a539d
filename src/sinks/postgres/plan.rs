//! How an event becomes a row: the columns (the events table's, or `columns:`), the
//! statement, and the default mapping of the normalized schema.

use serde_json::{Map, Value as Json, json};
use vrl::path::OwnedValuePath;
use vrl::value::{ObjectMap, Value};

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

/// One column's value for one event, before it becomes JSON (the JSONB path) or `COPY`
/// text: the COPY path writes it straight into the batch, with no JSON row in between.
pub(super) enum Cell<'a> {
    Null,
    Text(String),
    /// A field of the event, as serde gives it.
    Value(&'a Value),
    /// The whole event, serialized once (it also derives the id), and the event.
    Whole(&'a [u8], &'a Value),
    /// The whole event with `"event_type": "log"` added.
    Tagged(&'a ObjectMap),
    Json(Json),
}

impl Cell<'_> {
    pub(super) fn into_json(self) -> Json {
        match self {
            Cell::Null => Json::Null,
            Cell::Text(s) => Json::String(s),
            Cell::Value(v) => serde_json::to_value(v).unwrap_or(Json::Null),
            // From the value, not the bytes: reading them back would stop at serde_json's
            // nesting limit, which serializing has not.
            Cell::Whole(_, value) => serde_json::to_value(value).unwrap_or(Json::Null),
            Cell::Tagged(map) => {
                let mut whole = serde_json::to_value(map).unwrap_or(Json::Null);
                if let Json::Object(o) = &mut whole {
                    o.insert("event_type".into(), json!("log"));
                }
                whole
            }
            Cell::Json(j) => j,
        }
    }
}

/// The event serialized once, on first need: the id derived from it and the payload
/// that is the whole event share it.
pub(super) struct Whole<'a> {
    event: &'a Event,
    bytes: std::cell::OnceCell<Vec<u8>>,
}

impl<'a> Whole<'a> {
    pub(super) fn new(event: &'a Event) -> Self {
        Self {
            event,
            bytes: std::cell::OnceCell::new(),
        }
    }

    fn bytes(&self) -> &[u8] {
        // A VRL value always serializes (its floats are never NaN).
        self.bytes
            .get_or_init(|| serde_json::to_vec(self.event.value()).unwrap_or_default())
    }
}

impl Plan {
    /// The columns written, in order.
    pub(super) fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(Column::name)
    }

    /// The event as one JSON row (the JSONB path).
    pub(super) fn row(&self, event: &Event) -> Json {
        let whole = Whole::new(event);
        let mut row = Map::new();
        for column in &self.columns {
            row.insert(
                column.name().to_owned(),
                self.cell(column, &whole).into_json(),
            );
        }
        Json::Object(row)
    }

    /// Each column's cell for one event, in the columns' order.
    pub(super) fn cells<'a>(&'a self, whole: &'a Whole<'a>) -> impl Iterator<Item = Cell<'a>> {
        self.columns.iter().map(move |c| self.cell(c, whole))
    }

    fn cell<'a>(&self, column: &Column, whole: &'a Whole<'a>) -> Cell<'a> {
        let event = whole.event;
        match column {
            Column::Mapped(_, Source::Whole) => match event.value() {
                value @ Value::Object(_) => Cell::Whole(whole.bytes(), value),
                other => Cell::Value(other),
            },
            Column::Mapped(_, Source::Field(p)) => {
                event.value().get(p).map_or(Cell::Null, Cell::Value)
            }
            Column::Default(name) => default_column(name, whole),
        }
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
fn payload<'a>(whole: &'a Whole<'a>) -> Cell<'a> {
    let event = whole.event;
    if let Some(p) = event.get("payload") {
        return Cell::Value(p);
    }
    match event.value() {
        Value::Object(map) if !map.contains_key("event_type") => Cell::Tagged(map),
        value @ Value::Object(_) => Cell::Whole(whole.bytes(), value),
        other => Cell::Value(other),
    }
}

/// When the event happened: its `timestamp` (the monitoring system's field) or `time`
/// (the normalized schema's), as a timestamp, text (PostgreSQL parses it; text it
/// cannot parse dead-letters the event) or Unix seconds or milliseconds; else when
/// sluice received it.
fn event_time(event: &Event) -> String {
    let time = |v: &Value| match v {
        Value::Timestamp(t) => Some(t.to_rfc3339()),
        Value::Integer(n) if n.unsigned_abs() < 100_000_000_000 => {
            chrono::DateTime::from_timestamp(*n, 0).map(|t| t.to_rfc3339())
        }
        Value::Integer(n) => chrono::DateTime::from_timestamp_millis(*n).map(|t| t.to_rfc3339()),
        // Text (VRL has two kinds of it).
        other => other.to_str_lossy().map(|t| t.into_owned()),
    };
    ["timestamp", "time"]
        .iter()
        .find_map(|f| event.get(f).and_then(time))
        .unwrap_or_else(|| event.meta.received_at.to_rfc3339())
}

fn default_column<'a>(name: &str, whole: &'a Whole<'a>) -> Cell<'a> {
    let event = whole.event;
    match name {
        "id" => {
            let id = text(event, &["id"])
                .and_then(|s| uuid::Uuid::parse_str(&s).ok())
                .unwrap_or_else(|| {
                    // Stable across redeliveries of the same event.
                    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, whole.bytes())
                });
            Cell::Text(id.to_string())
        }
        "event_type" => Cell::Text(text(event, &["event_type"]).unwrap_or_else(|| "log".into())),
        "source" => {
            Cell::Text(text(event, &["source"]).unwrap_or_else(|| event.meta.source_id.to_string()))
        }
        "message" => text(event, &["summary", "message"]).map_or(Cell::Null, Cell::Text),
        "level" => text(event, &["severity", "level"]).map_or(Cell::Null, Cell::Text),
        "tags" => match event.get("tags").or_else(|| event.get("labels")) {
            Some(v @ Value::Object(_)) => Cell::Value(v),
            _ => Cell::Json(json!({})),
        },
        "payload" => payload(whole),
        "timestamp" => Cell::Text(event_time(event)),
        _ => Cell::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default mapping onto the events table.
    fn events_table() -> PostgresConfig {
        PostgresConfig {
            url: "postgres://u@h/db".into(),
            schema: "public".into(),
            table: "events".into(),
            create_table: true,
            columns: None,
            retention_days: None,
            max_batch_rows: 1,
            failure_handling: Default::default(),
        }
    }

    #[test]
    fn the_derived_id_is_the_one_earlier_releases_derived() {
        // Earlier releases hashed `serde_json::to_value(&event.value).to_string()`; a
        // redelivery after an upgrade must land on the same id.
        let value: Value = serde_json::from_str(
            r#"{"summary": "disk ✓ \"full\"\n", "n": 1.5, "big": 12345678901234, "neg": -0.0,
                "labels": {"z": [1, null, {"b": true}], "a": "x"}, "e": 1e300}"#,
        )
        .expect("json");
        let mut event = Event::new(
            value,
            crate::event::SourceId::intern("src"),
            chrono::Utc::now(),
        );
        event.insert("at", Value::Timestamp(chrono::Utc::now()));
        event.insert("raw", Value::Bytes(bytes::Bytes::from_static(b"\xff\xfe")));
        let earlier = serde_json::to_value(event.value())
            .expect("json")
            .to_string();
        let expected = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, earlier.as_bytes());
        let plan = events_table().plan().expect("plan");
        assert_eq!(plan.row(&event)["id"], json!(expected.to_string()));
    }

    #[test]
    fn a_deeply_nested_event_keeps_its_whole_value_on_the_jsonb_path() {
        // Deeper than serde_json reads back (128 levels): a transform can nest an event
        // past what the webhook accepts.
        let mut value = Value::from("leaf");
        for _ in 0..200 {
            let mut map = ObjectMap::new();
            map.insert("d".into(), value);
            value = Value::Object(map);
        }
        let mut event = Event::new(
            value,
            crate::event::SourceId::intern("src"),
            chrono::Utc::now(),
        );
        event.insert("k", "deep");
        let mut config = events_table();
        let whole = serde_json::to_value(event.value()).expect("json");
        let row = config.plan().expect("plan").row(&event);
        let mut payload = whole.clone();
        payload["event_type"] = json!("log");
        assert_eq!(row["payload"], payload);
        config.columns = Some([("doc".to_owned(), ".".to_owned())].into_iter().collect());
        assert_eq!(config.plan().expect("plan").row(&event)["doc"], whole);
    }
}
