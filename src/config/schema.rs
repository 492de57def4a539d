//! The pipeline file's JSON Schema, built from the component config structs.
//!
//! Each registry (`sources`, `transforms`, `sinks`) hands out its types' option schemas
//! (derived with `schemars` from the same structs serde reads, so the schema cannot drift
//! from what the loader accepts). Here they become one schema for the whole file: a
//! section maps component ids to entries that are `oneOf` the section's types, each
//! selected by its `type` constant and closed to unknown options like the loader.
//! `sluice list` and the reference pages read the same schema through [`catalog`].

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::buffer::BufferConfig;
use crate::component::ComponentKind;
use crate::config::PipelineTest;

/// One component type and the schema of its options.
#[derive(Debug, Clone)]
pub(crate) struct TypeSchema {
    pub(crate) kind: ComponentKind,
    pub(crate) type_name: &'static str,
    /// The options as an object schema; references point into [`Catalog::defs`].
    pub(crate) options: Value,
}

/// Every component type, with the definitions their schemas refer to.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    pub(crate) types: Vec<TypeSchema>,
    pub(crate) defs: Map<String, Value>,
}

/// The options of every registered component type.
pub(crate) fn catalog() -> Catalog {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let mut types = Vec::new();
    let sections = [
        (
            ComponentKind::Source,
            crate::sources::schemas(&mut generator),
        ),
        (
            ComponentKind::Transform,
            crate::transforms::schemas(&mut generator),
        ),
        (ComponentKind::Sink, crate::sinks::schemas(&mut generator)),
    ];
    for (kind, schemas) in sections {
        for (type_name, schema) in schemas {
            types.push(TypeSchema {
                kind,
                type_name,
                options: schema.to_value(),
            });
        }
    }
    // Referenced by every sink entry and by `tests:`.
    let _ = generator.subschema_for::<BufferConfig>();
    let _ = generator.subschema_for::<PipelineTest>();
    Catalog {
        types,
        defs: generator.take_definitions(true),
    }
}

pub(crate) fn section(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Source => "sources",
        ComponentKind::Transform => "transforms",
        ComponentKind::Sink => "sinks",
    }
}

fn def_name(kind: ComponentKind, type_name: &str) -> String {
    format!("{}.{type_name}", kind.as_str())
}

/// A component entry: the type's options plus the keys the loader takes out before the
/// type's struct sees the mapping (`type`, and `inputs` / `buffer` where they apply).
fn component_entry(t: &TypeSchema, buffer_ref: &str) -> Value {
    let mut entry = match &t.options {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    entry.insert("type".into(), json!("object"));
    entry.insert("additionalProperties".into(), json!(false));
    let properties = entry
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut shared = Map::new();
    shared.insert(
        "type".into(),
        json!({ "const": t.type_name, "description": format!("The {} type.", t.kind.as_str()) }),
    );
    if t.kind != ComponentKind::Source {
        shared.insert(
            "inputs".into(),
            json!({
                "type": "array",
                "items": { "type": "string" },
                "minItems": 1,
                "description": "Components this one reads: `id`, `id.output`, `*` wildcards.",
            }),
        );
    }
    if t.kind == ComponentKind::Sink {
        shared.insert(
            "buffer".into(),
            json!({ "$ref": buffer_ref, "description": "The sink's input buffer." }),
        );
    }
    shared.extend(properties);
    entry.insert("properties".into(), Value::Object(shared));
    let mut required: Vec<Value> = vec![json!("type")];
    if t.kind != ComponentKind::Source {
        required.push(json!("inputs"));
    }
    if let Some(Value::Array(r)) = entry.get("required") {
        required.extend(r.iter().cloned());
    }
    entry.insert("required".into(), Value::Array(required));
    entry.insert(
        "title".into(),
        json!(format!("{} `{}`", t.kind.as_str(), t.type_name)),
    );
    Value::Object(entry)
}

/// The JSON Schema (draft 2020-12) of a pipeline file.
pub(crate) fn pipeline_schema() -> Value {
    let Catalog { types, mut defs } = catalog();
    let buffer_ref = format!("#/$defs/{}", BufferConfig::schema_name());
    let mut sections: Map<String, Value> = Map::new();
    for kind in [
        ComponentKind::Source,
        ComponentKind::Transform,
        ComponentKind::Sink,
    ] {
        let mut one_of = Vec::new();
        for t in types.iter().filter(|t| t.kind == kind) {
            let name = def_name(kind, t.type_name);
            defs.insert(name.clone(), component_entry(t, &buffer_ref));
            one_of.push(json!({ "$ref": format!("#/$defs/{name}") }));
        }
        let type_names: Vec<&str> = types
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| t.type_name)
            .collect();
        sections.insert(
            section(kind).into(),
            json!({
                "type": "object",
                "description": format!("{} by id; `type` is one of: {}.", section(kind), type_names.join(", ")),
                "propertyNames": { "pattern": "^[A-Za-z0-9_-]+$" },
                "additionalProperties": {
                    "type": "object",
                    "required": ["type"],
                    "properties": { "type": { "enum": type_names } },
                    "oneOf": one_of,
                },
            }),
        );
    }
    sections.insert(
        "tests".into(),
        json!({
            "type": "array",
            "description": "Unit tests run by `sluice test`.",
            "items": { "$ref": format!("#/$defs/{}", PipelineTest::schema_name()) },
        }),
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sluice.dev/schema/pipeline.json",
        "title": "sluice pipeline",
        "description": "A sluice pipeline file: sources, transforms and sinks by id, and unit tests.",
        "type": "object",
        "additionalProperties": false,
        "properties": sections,
        "$defs": defs,
    })
}

/// One option of a component type, for `sluice list` and the reference pages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OptionDoc {
    /// Dotted for nested options (`batch.max_events`).
    pub(crate) name: String,
    pub(crate) type_label: String,
    /// As YAML would write it.
    pub(crate) default: Option<String>,
    pub(crate) required: bool,
    pub(crate) description: String,
}

impl OptionDoc {
    /// The first sentence of the description.
    pub(crate) fn summary(&self) -> &str {
        let d = self.description.as_str();
        match d.find(". ") {
            Some(i) => &d[..=i],
            None => d,
        }
    }
}

pub(crate) fn resolve<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .rsplit('/')
            .next()
            .and_then(|name| defs.get(name))
            .unwrap_or(schema),
        None => schema,
    }
}

fn is_struct(schema: &Value) -> bool {
    schema.get("properties").is_some_and(Value::is_object)
}

/// Short human label for a schema: `string`, `duration`, `list of string`, `a | b`.
pub(crate) fn type_label(schema: &Value, defs: &Map<String, Value>) -> String {
    let s = resolve(schema, defs);
    if s.get("pattern").and_then(Value::as_str) == Some(crate::units::DURATION_PATTERN) {
        return "duration".into();
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .filter(|v| !v.is_null())
            .map(render_scalar)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if let Some(c) = s.get("const") {
        return render_scalar(c);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            let mut labels: Vec<String> = Vec::new();
            for alt in alts {
                if alt.get("type").and_then(Value::as_str) == Some("null") {
                    continue;
                }
                let l = type_label(alt, defs);
                if !labels.contains(&l) {
                    labels.push(l);
                }
            }
            return labels.join(" | ");
        }
    }
    if is_struct(s) {
        return "object".into();
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let types: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
    match types.as_slice() {
        ["array"] => match s.get("items") {
            Some(items) => format!("list of {}", type_label(items, defs)),
            None => "list".into(),
        },
        ["object"] => match s.get("additionalProperties") {
            Some(v @ Value::Object(_)) => format!("map of {}", type_label(v, defs)),
            _ => "map".into(),
        },
        [] => "any".into(),
        ts => ts.join(" | "),
    }
}

fn render_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn description(schema: &Value, resolved: &Value) -> String {
    let text = schema
        .get("description")
        .or_else(|| resolved.get("description"))
        .and_then(Value::as_str)
        .unwrap_or("");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The options of a type, nested struct options flattened with dotted names.
pub(crate) fn options(t: &TypeSchema, defs: &Map<String, Value>) -> Vec<OptionDoc> {
    let mut out = Vec::new();
    collect_options(&t.options, defs, "", &mut out, 0);
    out
}

fn collect_options(
    schema: &Value,
    defs: &Map<String, Value>,
    prefix: &str,
    out: &mut Vec<OptionDoc>,
    depth: usize,
) {
    let schema = resolve(schema, defs);
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, prop) in props {
        let full = format!("{prefix}{name}");
        // `Option<Struct>` is `anyOf [ref, null]`; look through it for nested options.
        let inner = prop
            .get("anyOf")
            .and_then(Value::as_array)
            .and_then(|alts| alts.iter().find(|a| a.get("$ref").is_some()))
            .unwrap_or(prop);
        let resolved = resolve(inner, defs);
        let nested = is_struct(resolved) && depth < 3;
        let default = prop
            .get("default")
            .filter(|d| !d.is_null())
            .map(|d| match d {
                Value::Object(_) if nested => "see below".to_owned(),
                other => render_scalar(other),
            });
        out.push(OptionDoc {
            name: full.clone(),
            type_label: type_label(prop, defs),
            default,
            required: required.contains(&name.as_str()),
            description: description(prop, resolved),
        });
        if nested {
            collect_options(resolved, defs, &format!("{full}."), out, depth + 1);
        }
        // A list of objects (`users`, `routes`): their fields, as `name[].field`.
        if let Some(items) = resolved.get("items").map(|i| resolve(i, defs))
            && is_struct(items)
            && depth < 3
        {
            collect_options(items, defs, &format!("{full}[]."), out, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_type_has_a_closed_entry() {
        let schema = pipeline_schema();
        let defs = schema["$defs"].as_object().expect("defs");
        for (kind, types) in [
            ("source", crate::sources::TYPES),
            ("transform", crate::transforms::TYPES),
            ("sink", crate::sinks::TYPES),
        ] {
            for t in types {
                let entry = &defs[&format!("{kind}.{t}")];
                assert_eq!(entry["properties"]["type"]["const"], json!(t));
                assert_eq!(entry["additionalProperties"], json!(false), "{kind}.{t}");
            }
        }
        assert!(defs["sink.console"]["properties"]["buffer"]["$ref"].is_string());
        assert!(
            defs["transform.remap"]["required"]
                .as_array()
                .is_some_and(|r| r.contains(&json!("inputs")))
        );
    }

    #[test]
    fn options_list_defaults_and_durations() {
        let c = catalog();
        let dedupe = c
            .types
            .iter()
            .find(|t| t.type_name == "dedupe")
            .expect("dedupe");
        let opts = options(dedupe, &c.defs);
        let cache = opts
            .iter()
            .find(|o| o.name == "cache_size")
            .expect("cache_size");
        assert_eq!(cache.default.as_deref(), Some("5000"));
        assert!(!cache.required);
        let ttl = opts.iter().find(|o| o.name == "ttl").expect("ttl");
        assert_eq!(ttl.type_label, "duration");
    }
}
