//! The seeded pass of loading a pipeline file: every component is deserialized straight
//! from the YAML deserializer into its type's config struct, so serde's errors carry
//! the line and column of the offending key. The keys every component shares (`type`,
//! `inputs`, `buffer`) are taken out by [`Intercept`] before the type's struct sees the
//! mapping.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use indexmap::IndexMap;
use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, Visitor,
};
use serde_saphyr::Spanned;

use super::{Ctx, Declared, kind_index, label};
use crate::component::ComponentKind;
use crate::config::{BufferConfig, InputRef, Position};
use crate::{sinks, sources, transforms};

pub(super) enum Parsed {
    Source(Box<dyn crate::component::SourceConfig>),
    Transform(Box<dyn crate::component::TransformConfig>),
    Sink(Box<dyn crate::component::SinkConfig>),
}

pub(super) struct ParsedComponent {
    pub(super) kind: ComponentKind,
    pub(super) id: String,
    pub(super) config: Parsed,
    pub(super) inputs: Vec<InputRef>,
    pub(super) buffer: BufferConfig,
    pub(super) position: Position,
}

pub(super) struct FileSeed<'a> {
    pub(super) declared: &'a [IndexMap<String, Declared>; 3],
    pub(super) current: &'a RefCell<Option<String>>,
    /// Components (`sources.id`) already reported as invalid: read past, so the next
    /// pass finds the errors of the others.
    pub(super) skip: &'a HashSet<String>,
    pub(super) cx: &'a Ctx<'a>,
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = Vec<ParsedComponent>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = Vec<ParsedComponent>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a pipeline with `sources`, `transforms` and `sinks`")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let kind = match key.as_str() {
                "sources" => ComponentKind::Source,
                "transforms" => ComponentKind::Transform,
                "sinks" => ComponentKind::Sink,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            map.next_value_seed(SectionSeed {
                kind,
                declared: &self.declared[kind_index(kind)],
                current: self.current,
                skip: self.skip,
                cx: self.cx,
                out: &mut out,
            })?;
        }
        Ok(out)
    }
}

struct SectionSeed<'a> {
    kind: ComponentKind,
    declared: &'a IndexMap<String, Declared>,
    current: &'a RefCell<Option<String>>,
    skip: &'a HashSet<String>,
    cx: &'a Ctx<'a>,
    out: &'a mut Vec<ParsedComponent>,
}

impl<'de> DeserializeSeed<'de> for SectionSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for SectionSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of component ids to components")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(id) = map.next_key::<String>()? {
            if self.skip.contains(&label(self.kind, &id)) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let Some(declared) = self.declared.get(&id) else {
                return Err(de::Error::custom(format!(
                    "component `{id}` was not pre-scanned"
                )));
            };
            *self.current.borrow_mut() = Some(label(self.kind, &id));
            let mut common = Common::default();
            let config = map.next_value_seed(ComponentSeed {
                kind: self.kind,
                type_name: &declared.type_name,
                common: &mut common,
                cx: self.cx,
            })?;
            *self.current.borrow_mut() = None;
            self.out.push(ParsedComponent {
                kind: self.kind,
                id,
                config,
                inputs: common.inputs,
                buffer: common.buffer.unwrap_or_default(),
                position: declared.position.clone(),
            });
        }
        Ok(())
    }
}

#[derive(Default)]
struct Common {
    inputs: Vec<InputRef>,
    buffer: Option<BufferConfig>,
}

struct ComponentSeed<'a> {
    kind: ComponentKind,
    type_name: &'a str,
    common: &'a mut Common,
    cx: &'a Ctx<'a>,
}

impl<'de> DeserializeSeed<'de> for ComponentSeed<'_> {
    type Value = Parsed;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        let intercept = Intercept {
            inner: d,
            kind: self.kind,
            common: self.common,
            cx: self.cx,
        };
        Ok(match self.kind {
            ComponentKind::Source => {
                Parsed::Source(sources::deserialize(self.type_name, intercept)?)
            }
            ComponentKind::Transform => {
                Parsed::Transform(transforms::deserialize(self.type_name, intercept)?)
            }
            ComponentKind::Sink => Parsed::Sink(sinks::deserialize(self.type_name, intercept)?),
        })
    }
}

/// A deserializer for one component mapping that hides the shared keys from the type's
/// config struct and records them in [`Common`].
struct Intercept<'a, D> {
    inner: D,
    kind: ComponentKind,
    common: &'a mut Common,
    cx: &'a Ctx<'a>,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Intercept<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(InterceptVisitor {
            visitor,
            kind: self.kind,
            common: self.common,
            cx: self.cx,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct InterceptVisitor<'a, V> {
    visitor: V,
    kind: ComponentKind,
    common: &'a mut Common,
    cx: &'a Ctx<'a>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for InterceptVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a component: a mapping with `type` and its options")
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<V::Value, M::Error> {
        self.visitor.visit_map(InterceptMap {
            map,
            kind: self.kind,
            common: self.common,
            cx: self.cx,
        })
    }
}

struct InterceptMap<'a, M> {
    map: M,
    kind: ComponentKind,
    common: &'a mut Common,
    cx: &'a Ctx<'a>,
}

impl<'de, M: MapAccess<'de>> MapAccess<'de> for InterceptMap<'_, M> {
    type Error = M::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, M::Error> {
        loop {
            let Some(key) = self.map.next_key::<String>()? else {
                return Ok(None);
            };
            match (key.as_str(), self.kind) {
                ("type", _) => {
                    self.map.next_value::<IgnoredAny>()?;
                }
                ("inputs", ComponentKind::Transform | ComponentKind::Sink) => {
                    let inputs: Vec<Spanned<String>> = self.map.next_value()?;
                    self.common.inputs = inputs
                        .into_iter()
                        .map(|s| InputRef {
                            position: self.cx.position(s.referenced.line(), s.referenced.column()),
                            pattern: s.value,
                        })
                        .collect();
                }
                ("buffer", ComponentKind::Sink) => {
                    self.common.buffer = Some(self.map.next_value()?);
                }
                _ => return seed.deserialize(key.into_deserializer()).map(Some),
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, M::Error> {
        self.map.next_value_seed(seed)
    }
}
