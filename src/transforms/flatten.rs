//! `flatten` and `unflatten`: nested objects to `a.b.c` keys and back.
//!
//! `flatten` options: `separator` (default `.`), `max_depth` (levels joined; deeper
//! objects stay whole), `arrays: keep | index` (keep arrays whole, or flatten them to
//! `a.0`, `a.1`). Empty objects and arrays are kept as values so nothing disappears.
//! `unflatten` splits keys on `separator` and nests them again; objects whose keys are
//! exactly `0..n` become arrays, so `unflatten(flatten(x)) == x` for keys that contain
//! no separator and are not all numbers.

use serde::Deserialize;
use vrl::value::Value;

use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::EventBatch;
use crate::event::flatten::{Arrays, flatten_object, unflatten_object};

fn dot() -> String {
    ".".into()
}

/// Flattens nested objects into dotted keys.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlattenConfig {
    /// Joins the keys of nested objects (default `.`: `a.b.c`); must not be empty.
    #[serde(default = "dot")]
    pub(crate) separator: String,
    /// Most levels joined into one key (`2`: `a.b`); deeper objects stay whole. Unset:
    /// no limit.
    pub(crate) max_depth: Option<usize>,
    /// `keep` (default): arrays stay whole; `index`: they are flattened to `a.0`, `a.1`.
    #[serde(default)]
    pub(crate) arrays: Arrays,
}

/// Turns dotted keys back into nested objects.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnflattenConfig {
    /// Keys are split on it and nested again (default `.`); must not be empty.
    #[serde(default = "dot")]
    pub(crate) separator: String,
}

fn check_separator(separator: &str) -> Result<(), BuildError> {
    if separator.is_empty() {
        return Err(BuildError("`separator` must not be empty".into()));
    }
    Ok(())
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
            if let Value::Object(map) = event.value() {
                let flat = Value::Object(flatten_object(
                    map,
                    &self.separator,
                    self.max_depth,
                    self.arrays,
                ));
                event.set_value(flat);
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
            if let Value::Object(map) = event.value() {
                event.set_value(Value::Object(unflatten_object(map, &self.separator)));
            }
            out.default.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vrl::value::{KeyString, ObjectMap};

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
