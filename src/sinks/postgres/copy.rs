//! The fast path for a batch: `COPY` (text format), in one transaction, straight into
//! the table; or, for a batch with a row already there (`COPY` has no `ON CONFLICT`),
//! into a temporary staging table with the target's column types, then one
//! `INSERT … SELECT … ON CONFLICT DO NOTHING` into the target. Rows arrive twice only
//! when they are redelivered, so the direct `COPY` is tried first ([`DirectTries`]).
//! Views and tables with rules (which `COPY` ignores) always take the staging table.
//! Rows are encoded from the events as they are, with no JSON row in between.
//!
//! The server still parses every value with its column type's own input function, as
//! `jsonb_populate_recordset` does on the JSONB path, so user tables keep working
//! without declaring types here. What it saves is building, sending and taking apart
//! one JSONB array per batch.
//!
//! It gives every column what `jsonb_populate_recordset` would: `jsonb` gets the value
//! as JSON; other scalar types (text, numbers, booleans, timestamps, uuid, enums, …) get
//! a string as it is and a number or boolean as its text; `null` is SQL `NULL`. What
//! that function converts its own way keeps the JSONB path: tables with `json`, array,
//! composite, range or domain columns, and batches with an object, an array or an
//! exponent-form number or a negative zero bound for a non-`jsonb` column. So does a
//! batch this path fails on (the caller isolates its rows).
//!
//! The staging table is declared from the catalog's column types (no privilege on the
//! target beyond `INSERT` is needed), named after the table and those types, and created
//! inside each batch's transaction when missing, so a pooler that hands each
//! transaction to another server session (PgBouncer's transaction mode) still finds it.
//! `ON COMMIT DELETE ROWS` empties it at commit. Each transaction first locks the table
//! (`ROW EXCLUSIVE`, which an `ALTER TABLE` waits for; the table only, not each of its
//! partitions) and checks its columns against
//! the plan's, so a migration that changed a type is seen before a row goes through the
//! old one.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::SinkExt;
use serde_json::Value as Json;

use vrl::value::Value;

use super::plan::{Cell, Plan, Whole};
use crate::event::Event;

pub(super) struct CopyPlan {
    /// The table as the catalog gave it: checked again inside every batch's transaction.
    shape: Shape,
    /// Locks the table against changes to its columns.
    begin_direct: String,
    copy_direct: String,
    /// Locks the table against changes to its columns and creates the staging table
    /// when missing, quietly.
    begin: String,
    copy: String,
    /// Moves the staged rows and commits.
    insert: String,
    staging: String,
}

/// Rows encoded ahead of their write (while the batch before them was written), with
/// the plan they were encoded for.
pub(super) struct Encoded {
    plan: Arc<CopyPlan>,
    /// The batch's first rows that `body` holds.
    rows: usize,
    /// `None`: some row needs the JSONB path.
    body: Option<Vec<u8>>,
}

impl Encoded {
    pub(super) fn new(plan: &Arc<CopyPlan>) -> Self {
        Self {
            plan: Arc::clone(plan),
            rows: 0,
            body: Some(Vec::new()),
        }
    }

    pub(super) fn add(&mut self, plan: &Plan, events: &[Event]) {
        self.rows += events.len();
        if let Some(body) = &mut self.body
            && self.plan.encode_into(plan, events, body).is_none()
        {
            self.body = None;
        }
    }

    /// Whether these rows were encoded for `plan`, as the start of `events`.
    pub(super) fn fits(&self, plan: &Arc<CopyPlan>, events: &[Event]) -> bool {
        Arc::ptr_eq(&self.plan, plan) && self.rows <= events.len()
    }

    /// The whole batch's body: the rest of `events` encoded after these rows.
    pub(super) fn finish(self, plan: &Plan, events: &[Event]) -> Option<Bytes> {
        let mut body = self.body?;
        self.plan
            .encode_into(plan, events.get(self.rows..)?, &mut body)?;
        Some(Bytes::from(body))
    }
}

/// What a batch's write came to.
pub(super) enum Written {
    Committed,
    /// The table's columns are not those the plan was made for (a migration): nothing
    /// was written; read the plan again.
    Stale,
}

/// What the COPY path needs to know of the table.
#[derive(PartialEq)]
struct Shape {
    /// Each column as the staging table declares it (`"name" type`).
    columns: Vec<String>,
    /// Whether each column takes JSON text.
    json: Vec<bool>,
    /// Whether a batch may be copied straight into the table: a plain or partitioned
    /// table without rules (`COPY` ignores them), without deferrable unique or exclusion
    /// constraints (`ON CONFLICT` refuses those, so whether a row is stored would depend
    /// on the path its batch took), and with no `GENERATED ALWAYS` identity column
    /// written.
    direct: bool,
}

/// The table's shape; `None` when some column needs the JSONB path. A missing table or
/// column is `Ok(None)` as well: that path reports it row by row.
async fn describe(
    client: &tokio_postgres::Client,
    plan: &Plan,
) -> Result<Option<Shape>, tokio_postgres::Error> {
    let types = client
        .query(
            "SELECT a.attname::text, t.typname::text, t.typtype::text, t.typcategory::text,
                    format_type(a.atttypid, a.atttypmod),
                    c.relkind IN ('r', 'p') AND NOT c.relhasrules AND NOT EXISTS (
                      SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid
                        AND k.condeferrable AND k.contype IN ('p', 'u', 'x')),
                    a.attidentity = 'a'
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                  JOIN pg_class c ON c.oid = a.attrelid
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&plan.table],
        )
        .await?;
    let mut json = Vec::new();
    let mut columns = Vec::new();
    let mut always_identity = false;
    for name in plan.column_names() {
        let Some(row) = types.iter().find(|r| r.get::<_, &str>(0) == name) else {
            return Ok(None);
        };
        let (typname, typtype, category) = (
            row.get::<_, &str>(1),
            row.get::<_, &str>(2),
            row.get::<_, &str>(3),
        );
        // Base types and enums only; arrays are base types of category `A`.
        if !matches!(typtype, "b" | "e") || category == "A" {
            return Ok(None);
        }
        // `json` keeps its input's text, and the JSONB path gives it jsonb's
        // normalized text (keys reordered, spaced): only that path matches itself.
        if typname == "json" {
            return Ok(None);
        }
        // `COPY` writes an identity column `GENERATED ALWAYS`, which `INSERT` refuses.
        always_identity |= row.get::<_, bool>(6);
        json.push(typname == "jsonb");
        columns.push(format!("\"{name}\" {}", row.get::<_, &str>(4)));
    }
    let direct = !always_identity && types.iter().all(|r| r.get::<_, bool>(5));
    Ok(Some(Shape {
        columns,
        json,
        direct,
    }))
}

impl CopyPlan {
    /// Reads the target's column types: `None` when the table needs the JSONB path.
    pub(super) async fn read(
        client: &tokio_postgres::Client,
        plan: &Plan,
    ) -> Result<Option<Self>, tokio_postgres::Error> {
        let Some(shape) = describe(client, plan).await? else {
            return Ok(None);
        };
        let list = plan
            .column_names()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let table = &plan.table;
        // One staging table per table and shape: a session that another sink or an
        // older shape of this table used (a pooler shares sessions) never hands its
        // staging table's types to this one.
        let declared = shape.columns.join(", ");
        let hash = crate::hashing::fnv1a(format!("{table} ({declared})").as_bytes());
        let name = format!("sluice_staging_{hash:016x}");
        let staging = format!("pg_temp.{name}");
        Ok(Some(Self {
            copy_direct: format!("COPY {table} ({list}) FROM STDIN"),
            begin_direct: format!("BEGIN; LOCK TABLE ONLY {table} IN ROW EXCLUSIVE MODE"),
            begin: format!(
                "BEGIN; LOCK TABLE ONLY {table} IN ROW EXCLUSIVE MODE; \
                 SET LOCAL client_min_messages = warning; \
                 CREATE TEMP TABLE IF NOT EXISTS {name} ({declared}) ON COMMIT DELETE ROWS"
            ),
            shape,
            copy: format!("COPY {staging} ({list}) FROM STDIN"),
            insert: format!(
                "INSERT INTO {table} ({list}) SELECT {list} FROM {staging} ON CONFLICT DO NOTHING; COMMIT"
            ),
            staging,
        }))
    }

    /// The batch as `COPY` text: one line per row, tab between columns, written straight
    /// from the events. `None` when a value would read differently than through the
    /// JSONB path (see [`field`]): the batch takes that path.
    pub(super) fn encode(&self, plan: &Plan, events: &[Event]) -> Option<Bytes> {
        let mut out = Vec::with_capacity(events.len() * 256);
        self.encode_into(plan, events, &mut out)?;
        Some(Bytes::from(out))
    }

    fn encode_into(&self, plan: &Plan, events: &[Event], out: &mut Vec<u8>) -> Option<()> {
        for event in events {
            let whole = Whole::new(event);
            for (i, (value, json)) in plan.cells(&whole).zip(&self.shape.json).enumerate() {
                if i > 0 {
                    out.push(b'\t');
                }
                cell(out, value, *json)?;
            }
            out.push(b'\n');
        }
        Some(())
    }

    /// Whether batches may be copied straight into the table.
    pub(super) fn direct(&self) -> bool {
        self.shape.direct
    }

    /// Writes an encoded batch in one transaction: straight into the table (`direct`; a
    /// row already there fails the batch), or through the staging table. The table is
    /// locked against changes to its columns first, then its columns are checked against
    /// the plan's: a table changed since the plan was made is [`Written::Stale`], with
    /// nothing written. On failure the transaction is rolled back (and the staging table
    /// dropped).
    pub(super) async fn write(
        &self,
        client: &tokio_postgres::Client,
        plan: &Plan,
        body: Bytes,
        direct: bool,
    ) -> Result<Written, tokio_postgres::Error> {
        let (begin, copy) = match direct {
            true => (&self.begin_direct, &self.copy_direct),
            false => (&self.begin, &self.copy),
        };
        let result = async {
            client.batch_execute(begin).await?;
            if describe(client, plan).await?.as_ref() != Some(&self.shape) {
                client.batch_execute("ROLLBACK").await?;
                return Ok(Written::Stale);
            }
            let sink = client.copy_in(copy).await?;
            futures_util::pin_mut!(sink);
            sink.send(body).await?;
            sink.finish().await?;
            client
                .batch_execute(if direct { "COMMIT" } else { &self.insert })
                .await?;
            Ok(Written::Committed)
        }
        .await;
        if result.is_err() {
            // Best effort: on a broken connection the pool discards the client anyway.
            let cleanup = match direct {
                true => "ROLLBACK".to_owned(),
                false => format!("ROLLBACK; DROP TABLE IF EXISTS {}", self.staging),
            };
            let _ = client.batch_execute(&cleanup).await;
        }
        result
    }
}

/// When to copy a batch straight into the table. Redelivered events are rows already
/// there, which fail a direct `COPY`; those batches go through the staging table's
/// `ON CONFLICT DO NOTHING`. After such a batch the next ones go there too, twice as
/// many after each conflict in a row (at most 64), so a replayed backlog does not pay
/// for a failed `COPY` per batch.
#[derive(Default)]
pub(super) struct DirectTries {
    skip: u32,
    penalty: u32,
    /// The table refused a direct `COPY` as such (row security, a privilege): until the
    /// plan is read again.
    off: bool,
}

impl DirectTries {
    /// Whether this batch tries the direct `COPY`.
    pub(super) fn turn(&mut self) -> bool {
        if self.off {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        true
    }

    pub(super) fn committed(&mut self) {
        self.penalty = 0;
    }

    /// A direct `COPY` failed for `error` (not connection trouble).
    pub(super) fn failed(&mut self, error: &tokio_postgres::Error) {
        let code = error.code().map_or("", |c| c.code());
        if matches!(code, "23505" | "23P01") {
            self.penalty = (self.penalty * 2).clamp(1, 64);
            self.skip = self.penalty;
        } else if code.starts_with("0A") || code.starts_with("42") {
            // Not supported here (row security) or not allowed (a privilege).
            self.off = true;
        }
    }
}

/// One cell in `COPY` text format, as [`field`] would write its JSON: values bound for
/// a `jsonb` column are serialized straight into the batch.
fn cell(out: &mut Vec<u8>, value: Cell<'_>, json: bool) -> Option<()> {
    if !json {
        match value {
            Cell::Null => out.extend_from_slice(b"\\N"),
            Cell::Text(s) => escape_into(out, s.as_bytes()),
            Cell::Value(v) => field(out, &serde_json::to_value(v).ok()?, false)?,
            Cell::Json(j) => field(out, &j, false)?,
            // An object.
            Cell::Whole(..) | Cell::Tagged(_) => return None,
        }
        return Some(());
    }
    match value {
        Cell::Null | Cell::Value(Value::Null) => out.extend_from_slice(b"\\N"),
        // JSON has no infinity: serde makes it `null`, which the JSONB path stores as NULL.
        Cell::Value(Value::Float(f)) if !f.is_finite() => out.extend_from_slice(b"\\N"),
        Cell::Text(s) => to_copy_json(out, &s),
        Cell::Value(v) => to_copy_json(out, v),
        Cell::Whole(bytes, _) => escape_into(out, bytes),
        Cell::Tagged(map) => to_copy_json(out, &Tagged(map)),
        Cell::Json(j) => field(out, &j, true)?,
    }
    Some(())
}

fn to_copy_json(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    // Writing into a Vec cannot fail, and a VRL value always serializes.
    let _ = serde_json::to_writer(Escaping(out), value);
}

/// An event's fields with `"event_type": "log"` added (jsonb orders keys its own way).
struct Tagged<'a>(&'a vrl::value::ObjectMap);

impl serde::Serialize for Tagged<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len() + 1))?;
        for (k, v) in self.0 {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.serialize_entry("event_type", "log")?;
        map.end()
    }
}

/// One value in `COPY` text format (`\N` is NULL; backslash, tab, newline and carriage
/// return escaped). `None` for what a non-`jsonb` column would read differently from
/// the JSONB path, which gives it jsonb's own text: an object or an array (jsonb
/// reorders keys and adds spaces), and a number in exponent form (jsonb writes it out
/// in full).
fn field(out: &mut Vec<u8>, value: &Json, json: bool) -> Option<()> {
    match value {
        Json::Null => out.extend_from_slice(b"\\N"),
        Json::String(s) if !json => escape_into(out, s.as_bytes()),
        Json::Object(_) | Json::Array(_) if !json => return None,
        Json::Number(n) if !json => {
            let start = out.len();
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{n}");
            // jsonb's numeric has no negative zero: `-0.0` reads as `0.0` there.
            let negative_zero = n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative());
            if negative_zero || out[start..].iter().any(|b| matches!(b, b'e' | b'E')) {
                return None;
            }
        }
        other => {
            // Writing into a Vec cannot fail, and a `Value` always serializes.
            let _ = serde_json::to_writer(Escaping(out), other);
        }
    }
    Some(())
}

fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Escapes what is written through it for `COPY` text format.
struct Escaping<'a>(&'a mut Vec<u8>);

impl Write for Escaping<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        escape_into(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: Json, json: bool) -> String {
        let mut out = Vec::new();
        field(&mut out, &value, json).expect("written");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn what_jsonb_would_rewrite_keeps_the_jsonb_path() {
        for value in [
            serde_json::json!({"k": 1}),
            serde_json::json!([1]),
            serde_json::json!(1e300),
            serde_json::json!(1.5e-7),
            serde_json::json!(-0.0),
        ] {
            assert_eq!(field(&mut Vec::new(), &value, false), None, "{value}");
            assert!(field(&mut Vec::new(), &value, true).is_some(), "{value}");
        }
    }

    #[test]
    fn values_are_written_as_copy_text() {
        assert_eq!(text(Json::Null, false), "\\N");
        assert_eq!(text(Json::Null, true), "\\N");
        assert_eq!(text("a\tb\nc\\d\re".into(), false), "a\\tb\\nc\\\\d\\re");
        assert_eq!(
            text("\\N".into(), false),
            "\\\\N",
            "the text \\N is not NULL"
        );
        assert_eq!(text("s".into(), true), "\"s\"");
        assert_eq!(
            text(serde_json::json!({"k": "a\tb\\"}), true),
            "{\"k\":\"a\\\\tb\\\\\\\\\"}"
        );
        assert_eq!(text(serde_json::json!(1.5), false), "1.5");
        assert_eq!(text(serde_json::json!(-42), false), "-42");
        assert_eq!(text(serde_json::json!(0.0), false), "0.0");
        assert_eq!(text(serde_json::json!(true), false), "true");
    }
}
