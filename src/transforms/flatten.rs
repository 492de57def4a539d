//! `flatten` and `unflatten`: nested objects to `a.b.c` keys and back.
//!
//! `flatten` options: `separator` (default `.`), `max_depth` (levels joined; deeper
//! objects stay whole), `arrays: keep | index` (keep arrays whole, or flatten them to
//! `a.0`, `a.1`). Empty objects and arrays are kept as values so nothing disappears.
//! `unflatten` splits keys on `separator` and nests them again; objects whose keys are
//! exactly `0..n` become arrays, so `unflatten(flatten(x)) == x` for keys that contain
//! no separator and are not all numbers.

use serde::Deserialize;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::EventBatch;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Arrays {
    #[default]
    Keep,
    Index,
}

fn dot() -> String {
    ".".into()
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlattenConfig {
    #[serde(default = "dot")]
    pub separator: String,
    pub max_depth: Option<usize>,
    #[serde(default)]
    pub arrays: Arrays,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnflattenConfig {
    #[serde(default = "dot")]
    pub separator: String,
}

fn check_separator(separator: &str) -> Result<(), BuildError> {
    if separator.is_empty() {
        return Err(BuildError("`separator` must not be empty".into()));
    }
    Ok(())
}

/// Flattens `map` into `out` (see the module docs).
pub fn flatten_object(
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
pub fn unflatten_object(map: &ObjectMap, separator: &str) -> ObjectMap {
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

impl TransformConfig for FlattenConfig {
    fn type_name(&self) -> &'static str {
        "flatten"
    }

    fn build(&self, _cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        check_separator(&self.separator)?;
        Ok(Box::new(self.clone()))
    }
}

impl Transform for FlattenConfig {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        for mut event in batch {
            if let Value::Object(map) = &event.value {
                event.value = Value::Object(flatten_object(
                    map,
                    &self.separator,
                    self.max_depth,
                    self.arrays,
                ));
            }
            out.default.push(event);
        }
    }
}

impl TransformConfig for UnflattenConfig {
    fn type_name(&self) -> &'static str {
        "unflatten"
    }

    fn build(&self, _cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        check_separator(&self.separator)?;
        Ok(Box::new(self.clone()))
    }
}

impl Transform for UnflattenConfig {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        for mut event in batch {
            if let Value::Object(map) = &event.value {
                event.value = Value::Object(unflatten_object(map, &self.separator));
            }
            out.default.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obj(json: &str) -> ObjectMap {
        match serde_json::from_str::<Value>(json).expect("json") {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn json(m: ObjectMap) -> String {
        serde_json::to_string(&Value::Object(m)).expect("json")
    }

    #[test]
    fn flatten_options() {
        let m = obj(r#"{"a":{"b":{"c":1}},"l":[1,{"x":2}],"e":{},"z":[]}"#);
        assert_eq!(
            json(flatten_object(&m, ".", None, Arrays::Keep)),
            r#"{"a.b.c":1,"e":{},"l":[1,{"x":2}],"z":[]}"#
        );
        assert_eq!(
            json(flatten_object(&m, "_", None, Arrays::Index)),
            r#"{"a_b_c":1,"e":{},"l_0":1,"l_1_x":2,"z":[]}"#
        );
        assert_eq!(
            json(flatten_object(&m, ".", Some(2), Arrays::Keep)),
            r#"{"a.b":{"c":1},"e":{},"l":[1,{"x":2}],"z":[]}"#
        );
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::from),
            "[a-z ]{0,5}".prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,3}", inner, 0..4).prop_map(|m| Value::Object(
                    m.into_iter()
                        .map(|(k, v)| (KeyString::from(k), v))
                        .collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn unflatten_inverts_flatten(
            m in prop::collection::btree_map("[a-z]{1,3}", value(), 0..5),
            index in any::<bool>(),
            depth in prop::option::of(1usize..4),
        ) {
            let m: ObjectMap = m.into_iter().map(|(k, v)| (KeyString::from(k), v)).collect();
            let arrays = if index { Arrays::Index } else { Arrays::Keep };
            let flat = flatten_object(&m, ".", depth, arrays);
            prop_assert_eq!(unflatten_object(&flat, "."), m);
        }
    }
}
