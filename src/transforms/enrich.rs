//! `enrich`: adds context to every event.
//!
//! - `fields`: static fields (values as written);
//! - `extra_args`: a `k=v,k2=v2` string or a map, added as fields;
//! - `metadata`: `cluster`, `environment`, `region`, `datacenter`, `tenant` (the event
//!   exporter's metadata) under `metadata`;
//! - `host: true`: `host` from the machine's hostname;
//! - `kubernetes: true`: `kubernetes.{pod, namespace, node, pod_ip}` from the downward-API
//!   environment variables `POD_NAME`, `POD_NAMESPACE`, `NODE_NAME`, `POD_IP`;
//! - `tables: { name: { file, key, field, target } }`: a CSV or JSON file keyed by
//!   column `key`; the row whose key equals the event's `field` (default: `key`) is
//!   added under `target` (default: the table's name). Tables are also readable from
//!   any VRL program with `lookup_table(name, key)` (see [`crate::tables`]); a changed
//!   file is reloaded by the reload watcher and swapped in place.
//!
//! Existing fields are overwritten: enrichment states facts about where the event was
//! seen.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use indexmap::IndexMap;
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::EventBatch;
use crate::key_values::KeyValues;
use crate::tables::{self, Table};

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Metadata {
    /// Set as `metadata.cluster`; left out when unset.
    pub(crate) cluster: Option<String>,
    /// Set as `metadata.environment`; left out when unset.
    pub(crate) environment: Option<String>,
    /// Set as `metadata.region`; left out when unset.
    pub(crate) region: Option<String>,
    /// Set as `metadata.datacenter`; left out when unset.
    pub(crate) datacenter: Option<String>,
    /// Set as `metadata.tenant`; left out when unset.
    pub(crate) tenant: Option<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableConfig {
    pub(crate) file: PathBuf,
    pub(crate) key: String,
    /// The event field matched against `key` (default: `key`).
    pub(crate) field: Option<String>,
    /// Where the row goes (default: the table's name).
    pub(crate) target: Option<String>,
}

/// Adds context to every event: static fields, metadata, host and Kubernetes details, lookup tables.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrichConfig {
    /// Static top-level fields added to every event, values as written; existing
    /// fields are overwritten.
    #[serde(default)]
    pub(crate) fields: IndexMap<String, serde_json::Value>,
    #[serde(default)]
    pub(crate) extra_args: KeyValues,
    /// The event exporter's metadata, set as the event's `metadata` object (replacing
    /// one it had).
    pub(crate) metadata: Option<Metadata>,
    /// Set `host` to the machine's hostname (default false).
    #[serde(default)]
    pub(crate) host: bool,
    /// Set `kubernetes.{pod, namespace, node, pod_ip}` from the downward-API variables
    /// `POD_NAME`, `POD_NAMESPACE`, `NODE_NAME` and `POD_IP` (default false).
    #[serde(default)]
    pub(crate) kubernetes: bool,
    /// Lookup tables by name: a CSV or JSON `file` keyed by its column `key`; the row
    /// whose key equals the event's `field` (default: `key`) is added under `target`
    /// (default: the table's name). Also readable in VRL with `lookup_table(name, key)`.
    #[serde(default)]
    pub(crate) tables: IndexMap<String, TableConfig>,
}

struct Lookup {
    table: Arc<ArcSwap<Table>>,
    field: OwnedValuePath,
    target: OwnedValuePath,
}

fn path(p: &str, what: &str) -> Result<OwnedValuePath, BuildError> {
    vrl::path::parse_value_path(p).map_err(|e| BuildError(format!("`{what}`: `{p}`: {e}")))
}

impl TransformConfig for EnrichConfig {
    fn type_name(&self) -> &'static str {
        "enrich"
    }

    fn files(&self) -> Vec<PathBuf> {
        self.tables.values().map(|t| t.file.clone()).collect()
    }

    fn build(&self, _cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        let mut add = ObjectMap::new();
        for (k, v) in &self.fields {
            add.insert(KeyString::from(k.as_str()), Value::from(v.clone()));
        }
        for (k, v) in self.extra_args.pairs("extra_args")? {
            add.insert(KeyString::from(k), Value::from(v));
        }
        if let Some(m) = &self.metadata {
            let mut meta = ObjectMap::new();
            for (k, v) in [
                ("cluster", &m.cluster),
                ("environment", &m.environment),
                ("region", &m.region),
                ("datacenter", &m.datacenter),
                ("tenant", &m.tenant),
            ] {
                if let Some(v) = v {
                    meta.insert(k.into(), Value::from(v.as_str()));
                }
            }
            add.insert("metadata".into(), Value::Object(meta));
        }
        if self.host {
            let host = hostname::get()
                .map_err(|e| BuildError(format!("cannot read the hostname: {e}")))?
                .to_string_lossy()
                .into_owned();
            add.insert("host".into(), Value::from(host));
        }
        if self.kubernetes {
            let mut k8s = ObjectMap::new();
            for (k, var) in [
                ("pod", "POD_NAME"),
                ("namespace", "POD_NAMESPACE"),
                ("node", "NODE_NAME"),
                ("pod_ip", "POD_IP"),
            ] {
                if let Ok(v) = std::env::var(var) {
                    k8s.insert(k.into(), Value::from(v));
                }
            }
            if !k8s.is_empty() {
                add.insert("kubernetes".into(), Value::Object(k8s));
            }
        }
        let mut lookups = Vec::with_capacity(self.tables.len());
        for (name, t) in &self.tables {
            let table = tables::load(name, &t.file, &t.key)
                .map_err(|e| BuildError(format!("table `{name}`: {e}")))?;
            lookups.push(Lookup {
                table,
                field: path(t.field.as_deref().unwrap_or(&t.key), "tables.field")?,
                target: path(t.target.as_deref().unwrap_or(name), "tables.target")?,
            });
        }
        Ok(Box::new(Enrich { add, lookups }))
    }
}

struct Enrich {
    add: ObjectMap,
    lookups: Vec<Lookup>,
}

impl Transform for Enrich {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        let tables: Vec<Arc<Table>> = self.lookups.iter().map(|l| l.table.load_full()).collect();
        for mut event in batch {
            if let Value::Object(map) = event.value_mut() {
                for (k, v) in &self.add {
                    map.insert(k.clone(), v.clone());
                }
            }
            for (lookup, table) in self.lookups.iter().zip(&tables) {
                let row = event
                    .value()
                    .get(&lookup.field)
                    .and_then(Value::to_str_lossy)
                    .and_then(|k| table.get(k.as_ref()).cloned());
                if let Some(row) = row {
                    event.value_mut().insert(&lookup.target, Value::Object(row));
                }
            }
            out.default.push(event);
        }
    }
}
