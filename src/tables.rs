//! Lookup tables: CSV or JSON files loaded by `enrich` and readable from any VRL program
//! with `lookup_table(table, key)`.
//!
//! The registry is process-wide: a VRL program is compiled before (or without) the
//! component that loads a table. Each table sits behind an `ArcSwap`, so reloading a
//! changed file is one pointer swap; programs already running see the new rows at
//! their next lookup and are not rebuilt.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, RwLock};

use arc_swap::ArcSwap;
use vrl::compiler::prelude::*;
use vrl::value::{KeyString, ObjectMap, Value};

/// Rows keyed by the key column's value.
pub(crate) type Table = HashMap<String, ObjectMap>;

static TABLES: LazyLock<RwLock<HashMap<String, Arc<ArcSwap<Table>>>>> =
    LazyLock::new(Default::default);

/// Loads `file` keyed by column `key` and publishes it as `name` (replacing the rows
/// of an existing table of that name).
pub(crate) fn load(name: &str, file: &Path, key: &str) -> Result<Arc<ArcSwap<Table>>, String> {
    let table = read(file, key)?;
    let mut tables = TABLES
        .write()
        .map_err(|_| "table registry is poisoned".to_string())?;
    let slot = tables
        .entry(name.to_owned())
        .or_insert_with(|| Arc::new(ArcSwap::from_pointee(Table::new())));
    slot.store(Arc::new(table));
    Ok(Arc::clone(slot))
}

/// The current rows of `name`.
pub(crate) fn get(name: &str) -> Option<Arc<Table>> {
    TABLES.read().ok()?.get(name).map(|t| t.load_full())
}

fn read(file: &Path, key: &str) -> Result<Table, String> {
    let is_csv = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let rows: Vec<ObjectMap> = if is_csv {
        let mut reader = csv::Reader::from_path(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let headers = reader
            .headers()
            .map_err(|e| format!("{}: {e}", file.display()))?
            .clone();
        let mut rows = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| format!("{} record {}: {e}", file.display(), i + 1))?;
            rows.push(
                headers
                    .iter()
                    .zip(record.iter())
                    .map(|(h, v)| (KeyString::from(h), Value::from(v)))
                    .collect(),
            );
        }
        rows
    } else {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        match serde_json::from_str::<Value>(&text)
            .map_err(|e| format!("{}: {e}", file.display()))?
        {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| match v {
                    Value::Object(m) => Some(m),
                    _ => None,
                })
                .collect(),
            // `{ "key value": { …row… } }`
            Value::Object(map) => map
                .into_iter()
                .filter_map(|(k, v)| match v {
                    Value::Object(mut m) => {
                        m.entry(KeyString::from(key))
                            .or_insert_with(|| Value::from(k.as_str()));
                        Some(m)
                    }
                    _ => None,
                })
                .collect(),
            _ => {
                return Err(format!(
                    "{}: expected an array of objects or an object of objects",
                    file.display()
                ));
            }
        }
    };
    let mut table = Table::with_capacity(rows.len());
    for row in rows {
        let Some(k) = row.get(key).and_then(Value::to_str_lossy) else {
            return Err(format!("{}: a row has no `{key}` column", file.display()));
        };
        table.insert(k.into_owned(), row);
    }
    Ok(table)
}

/// `lookup_table(table, key)`: the row of `table` whose key column equals `key`, or
/// `null`. Fails when the table is not loaded or `key` is not a string.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LookupTable;

impl Function for LookupTable {
    fn identifier(&self) -> &'static str {
        "lookup_table"
    }

    fn usage(&self) -> &'static str {
        "Returns the row of a lookup table (loaded by an `enrich` transform) whose key equals `key`, or null."
    }

    fn category(&self) -> &'static str {
        "Enrichment"
    }

    fn internal_failure_reasons(&self) -> &'static [&'static str] {
        &[
            "No table named `table` is loaded.",
            "`key` is not a string.",
        ]
    }

    fn return_kind(&self) -> u16 {
        kind::OBJECT | kind::NULL
    }

    fn parameters(&self) -> &'static [Parameter] {
        const PARAMETERS: &[Parameter] = &[
            Parameter::required("table", kind::BYTES, "The table's name."),
            Parameter::required("key", kind::BYTES, "The key to look up."),
        ];
        PARAMETERS
    }

    fn examples(&self) -> &'static [Example] {
        &[Example {
            title: "The team that owns an alert's service, from an `enrich` table `owners`",
            source: r#"lookup_table("owners", .service)"#,
            input: None,
            result: Ok(r#"{"service": "checkout", "team": "payments", "channel": "pay-oncall"}"#),
            file: file!(),
            line: line!(),
            deterministic: true,
            // It needs a table loaded by an `enrich` transform.
            skip: true,
        }]
    }

    fn compile(
        &self,
        _state: &TypeState,
        _ctx: &mut FunctionCompileContext,
        arguments: ArgumentList,
    ) -> Compiled {
        Ok(LookupTableFn {
            table: arguments.required("table"),
            key: arguments.required("key"),
        }
        .as_expr())
    }
}

#[derive(Debug, Clone)]
struct LookupTableFn {
    table: Box<dyn Expression>,
    key: Box<dyn Expression>,
}

impl FunctionExpression for LookupTableFn {
    fn resolve(&self, ctx: &mut Context) -> Resolved {
        let table = self.table.resolve(ctx)?;
        let key = self.key.resolve(ctx)?;
        let name = table.try_bytes_utf8_lossy()?;
        let key = key.try_bytes_utf8_lossy()?;
        let rows = get(&name).ok_or_else(|| format!("no lookup table named `{name}` is loaded"))?;
        Ok(rows
            .get(key.as_ref())
            .map_or(Value::Null, |row| Value::Object(row.clone())))
    }

    fn type_def(&self, _: &TypeState) -> TypeDef {
        TypeDef::object(Collection::any()).or_null().fallible()
    }
}
