//! Nested objects to `a.b.c` keys and back, for the `flatten` transforms and the sinks
//! that send flat records.
//!
//! `max_depth` bounds the levels joined (deeper objects stay whole); `arrays: keep |
//! index` keeps arrays whole or flattens them to `a.0`, `a.1`. Empty objects and arrays
//! are kept as values so nothing disappears. Unflattening splits keys on the separator
//! and nests them again; objects whose keys are exactly `0..n` become arrays, so
//! `unflatten(flatten(x)) == x` for keys that contain no separator and are not all
//! numbers.

use serde::Deserialize;
use vrl::value::{KeyString, ObjectMap, Value};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Arrays {
    /// Arrays stay whole values.
    #[default]
    Keep,
    /// Arrays are flattened too, their items keyed by index (`a.0`, `a.1`).
    Index,
}

/// Flattens `map` into `out` (see the module docs).
pub(crate) fn flatten_object(
    map: &ObjectMap,
    separator: &str,
    max_depth: Option<usize>,
    arrays: Arrays,
) -> ObjectMap {
    let mut out = ObjectMap::new();
    for (k, v) in map {
        flatten_value(k, v, 1, separator, max_depth, arrays, &mut out);
    }
    out
}

fn flatten_value(
    key: &str,
    value: &Value,
    depth: usize,
    separator: &str,
    max_depth: Option<usize>,
    arrays: Arrays,
    out: &mut ObjectMap,
) {
    let deeper = max_depth.is_none_or(|max| depth < max);
    match value {
        Value::Object(inner) if deeper && !inner.is_empty() => {
            for (k, v) in inner {
                flatten_value(
                    &format!("{key}{separator}{k}"),
                    v,
                    depth + 1,
                    separator,
                    max_depth,
                    arrays,
                    out,
                );
            }
        }
        Value::Array(items) if deeper && arrays == Arrays::Index && !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten_value(
                    &format!("{key}{separator}{i}"),
                    v,
                    depth + 1,
                    separator,
                    max_depth,
                    arrays,
                    out,
                );
            }
        }
        other => {
            out.insert(KeyString::from(key), other.clone());
        }
    }
}

/// Nests `a.b` keys again (see the module docs).
pub(crate) fn unflatten_object(map: &ObjectMap, separator: &str) -> ObjectMap {
    let mut root = ObjectMap::new();
    for (key, value) in map {
        let parts: Vec<&str> = key.split(separator).collect();
        insert_path(&mut root, &parts, value.clone());
    }
    for v in root.values_mut() {
        arrays_back(v);
    }
    root
}

fn insert_path(map: &mut ObjectMap, parts: &[&str], value: Value) {
    match parts {
        [] => {}
        [last] => {
            map.insert(KeyString::from(*last), value);
        }
        [first, rest @ ..] => {
            let slot = map
                .entry(KeyString::from(*first))
                .or_insert_with(|| Value::Object(ObjectMap::new()));
            if !slot.is_object() {
                // `a` and `a.b` both present: keep the scalar under the joined key.
                map.insert(KeyString::from(parts.join(".")), value);
                return;
            }
            if let Value::Object(inner) = slot {
                insert_path(inner, rest, value);
            }
        }
    }
}

fn arrays_back(value: &mut Value) {
    if let Value::Object(map) = value {
        for v in map.values_mut() {
            arrays_back(v);
        }
        let n = map.len();
        let indexed = n > 0 && (0..n).all(|i| map.contains_key(i.to_string().as_str()));
        if indexed {
            let mut items = Vec::with_capacity(n);
            for i in 0..n {
                items.push(map.remove(i.to_string().as_str()).unwrap_or(Value::Null));
            }
            *value = Value::Array(items);
        }
    }
}
