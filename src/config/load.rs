//! Parsing one pipeline file into typed component configs with exact positions.
//!
//! Two passes over the YAML: a pre-scan reads only each component's `type` (keys may come
//! in any order), then a seeded pass deserializes every component straight into its
//! type's config struct from the YAML deserializer itself, so serde errors such as an
//! unknown field carry the line and column of the offending key. The keys every
//! component shares (`type`, `inputs`, `buffer`) are taken out of the mapping by
//! [`Intercept`] before the type's struct sees it; type structs deny unknown fields.

use std::cell::RefCell;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, Visitor,
};
use serde_saphyr::Spanned;

use super::{
    BufferConfig, ComponentDef, ConfigError, ConfigErrors, InputRef, Pipeline, Position,
    PositionMap,
};
use crate::component::ComponentKind;
use crate::{sinks, sources, transforms};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Prescan {
    #[serde(default)]
    sources: Option<IndexMap<String, Spanned<PrescanComponent>>>,
    #[serde(default)]
    transforms: Option<IndexMap<String, Spanned<PrescanComponent>>>,
    #[serde(default)]
    sinks: Option<IndexMap<String, Spanned<PrescanComponent>>>,
    /// Unit tests of the pipeline (`sluice test`).
    #[serde(default)]
    tests: Option<Vec<super::PipelineTest>>,
}

/// The components as plain values, for fingerprints.
#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    sources: Option<IndexMap<String, serde_json::Value>>,
    #[serde(default)]
    transforms: Option<IndexMap<String, serde_json::Value>>,
    #[serde(default)]
    sinks: Option<IndexMap<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct PrescanComponent {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
}

/// What the pre-scan learnt about one component.
struct Declared {
    type_name: String,
    position: Position,
}

struct Ctx<'a> {
    file: &'a Path,
    map: &'a PositionMap,
}

impl Ctx<'_> {
    fn position(&self, line: u64, column: u64) -> Position {
        let (line, column) = if line == 0 {
            (0, 0)
        } else {
            self.map.original(line, column)
        };
        Position {
            file: self.file.to_path_buf(),
            line,
            column,
        }
    }

    fn yaml_error(&self, e: &serde_saphyr::Error, component: Option<String>) -> ConfigError {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        ConfigError {
            position: self.position(line, column),
            component,
            message: bare_message(&e.without_snippet().to_string()),
        }
    }
}

/// serde-saphyr prefixes messages with "error: line L column C: "; we print positions
/// ourselves, mapped back through interpolation.
fn bare_message(rendered: &str) -> String {
    let s = rendered.trim_start_matches("error: ");
    let s = match s.strip_prefix("line ") {
        Some(rest) => match rest.find(": ") {
            Some(i) if rest[..i].contains("column") => &rest[i + 2..],
            _ => s,
        },
        None => s,
    };
    let s = s.lines().next().unwrap_or(s).trim();
    // Some messages also end with the (interpolated, unmapped) position.
    match s.rfind(" at line ") {
        Some(i) if s[i..].contains(", column ") => s[..i].to_owned(),
        _ => s.to_owned(),
    }
}

/// Parses `text` (the contents of `file`) and adds its components to `pipeline`.
pub(super) fn load_into(
    pipeline: &mut Pipeline,
    file: &Path,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigErrors> {
    let (text, map) = super::interpolate(text, lookup).map_err(|missing| {
        ConfigErrors(
            missing
                .into_iter()
                .map(|m| ConfigError {
                    position: Position {
                        file: file.to_path_buf(),
                        line: m.line,
                        column: m.column,
                    },
                    component: None,
                    message: format!(
                        "environment variable `{}` is not set (write `${{{}:-default}}` to give a default)",
                        m.name, m.name
                    ),
                })
                .collect(),
        )
    })?;
    let cx = Ctx { file, map: &map };
    pipeline.hash = {
        let mut h = DefaultHasher::new();
        pipeline.hash.hash(&mut h);
        text.hash(&mut h);
        h.finish()
    };
    if text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    }) {
        return Ok(());
    }

    let mut prescan: Prescan =
        serde_saphyr::from_str(&text).map_err(|e| cx.yaml_error(&e, None))?;
    pipeline
        .tests
        .extend(prescan.tests.take().unwrap_or_default());
    let mut declared: [IndexMap<String, Declared>; 3] = Default::default();
    let mut errors = Vec::new();
    let sections = [
        (ComponentKind::Source, prescan.sources, sources::TYPES),
        (
            ComponentKind::Transform,
            prescan.transforms,
            transforms::TYPES,
        ),
        (ComponentKind::Sink, prescan.sinks, sinks::TYPES),
    ];
    for (kind, components, known) in sections {
        for (id, spanned) in components.unwrap_or_default() {
            let at = cx.position(spanned.referenced.line(), spanned.referenced.column());
            let label = Some(label(kind, &id));
            if let Some(e) = check_id(&id) {
                errors.push(ConfigError {
                    position: at.clone(),
                    component: label.clone(),
                    message: e,
                });
            }
            match spanned.value.kind {
                None => errors.push(ConfigError {
                    position: at,
                    component: label,
                    message: format!("missing field `type` (one of: {})", known.join(", ")),
                }),
                Some(t) if !known.contains(&t.value.as_str()) => errors.push(ConfigError {
                    position: cx.position(t.referenced.line(), t.referenced.column()),
                    component: label,
                    message: format!(
                        "unknown {} type `{}` (one of: {})",
                        kind.as_str(),
                        t.value,
                        known.join(", ")
                    ),
                }),
                Some(t) => {
                    declared[kind_index(kind)].insert(
                        id,
                        Declared {
                            type_name: t.value,
                            position: at,
                        },
                    );
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }

    let current = RefCell::new(None::<String>);
    let parsed = serde_saphyr::with_deserializer_from_str(&text, |d| {
        FileSeed {
            declared: &declared,
            current: &current,
            cx: &cx,
        }
        .deserialize(d)
    })
    .map_err(|e| cx.yaml_error(&e, current.borrow().clone()))?;

    let raw: RawFile = serde_saphyr::from_str(&text).map_err(|e| cx.yaml_error(&e, None))?;
    let raw_of = |kind: ComponentKind, id: &str| -> Option<&serde_json::Value> {
        match kind {
            ComponentKind::Source => raw.sources.as_ref()?.get(id),
            ComponentKind::Transform => raw.transforms.as_ref()?.get(id),
            ComponentKind::Sink => raw.sinks.as_ref()?.get(id),
        }
    };

    for component in parsed {
        let (kind, id) = (component.kind, component.id);
        let (files, rebuild_key) = match &component.config {
            Parsed::Source(c) => (c.files(), None),
            Parsed::Transform(c) => (c.files(), c.rebuild_key()),
            Parsed::Sink(c) => (c.files(), None),
        };
        let fingerprint = fingerprint(kind, raw_of(kind, &id), &files, rebuild_key);
        let duplicate = pipeline.describe(&id).map(|_| ());
        if duplicate.is_some() {
            let previous = [
                pipeline.sources.get(&id).map(|c| c.position.clone()),
                pipeline.transforms.get(&id).map(|c| c.position.clone()),
                pipeline.sinks.get(&id).map(|c| c.position.clone()),
            ]
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_default();
            errors.push(ConfigError {
                position: component.position,
                component: Some(label(kind, &id)),
                message: format!("component id `{id}` is already declared at {previous}"),
            });
            continue;
        }
        let common = (
            component.inputs,
            component.buffer,
            component.position,
            fingerprint,
        );
        match component.config {
            Parsed::Source(config) => {
                pipeline.sources.insert(id, def(config, common));
            }
            Parsed::Transform(config) => {
                pipeline.transforms.insert(id, def(config, common));
            }
            Parsed::Sink(config) => {
                pipeline.sinks.insert(id, def(config, common));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

fn def<C: ?Sized>(
    config: Box<C>,
    (inputs, buffer, position, fingerprint): (Vec<InputRef>, BufferConfig, Position, u64),
) -> ComponentDef<C> {
    ComponentDef {
        config,
        inputs,
        buffer,
        position,
        fingerprint,
    }
}

/// What decides whether a reload must rebuild a component: its options as written
/// (wiring and buffer size are applied without a rebuild) and the contents of the
/// files it reads (or, for a transform that swaps its files in while running, its
/// [`crate::component::TransformConfig::rebuild_key`] instead of their contents).
fn fingerprint(
    kind: ComponentKind,
    raw: Option<&serde_json::Value>,
    files: &[std::path::PathBuf],
    rebuild_key: Option<u64>,
) -> u64 {
    let mut h = DefaultHasher::new();
    kind.as_str().hash(&mut h);
    if let Some(serde_json::Value::Object(map)) = raw {
        for (key, value) in map {
            if key != "inputs" && key != "buffer" {
                key.hash(&mut h);
                value.to_string().hash(&mut h);
            }
        }
    }
    if let Some(key) = rebuild_key {
        key.hash(&mut h);
        return h.finish();
    }
    for file in files {
        file.hash(&mut h);
        match std::fs::read(file) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.kind().to_string().hash(&mut h),
        }
    }
    h.finish()
}

fn label(kind: ComponentKind, id: &str) -> String {
    let section = match kind {
        ComponentKind::Source => "sources",
        ComponentKind::Transform => "transforms",
        ComponentKind::Sink => "sinks",
    };
    format!("{section}.{id}")
}

fn kind_index(kind: ComponentKind) -> usize {
    match kind {
        ComponentKind::Source => 0,
        ComponentKind::Transform => 1,
        ComponentKind::Sink => 2,
    }
}

/// Ids appear in `inputs` as `id` or `id.output` and may be matched by `*`: keep them
/// free of those characters.
fn check_id(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("component id is empty".into());
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Some(format!(
            "component id `{id}` contains `{bad}`; ids use letters, digits, `_` and `-`"
        ));
    }
    None
}

enum Parsed {
    Source(Box<dyn crate::component::SourceConfig>),
    Transform(Box<dyn crate::component::TransformConfig>),
    Sink(Box<dyn crate::component::SinkConfig>),
}

struct ParsedComponent {
    kind: ComponentKind,
    id: String,
    config: Parsed,
    inputs: Vec<InputRef>,
    buffer: BufferConfig,
    position: Position,
}

struct FileSeed<'a> {
    declared: &'a [IndexMap<String, Declared>; 3],
    current: &'a RefCell<Option<String>>,
    cx: &'a Ctx<'a>,
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

#[cfg(test)]
mod tests {
    use super::bare_message;

    #[test]
    fn strips_the_position_prefix() {
        assert_eq!(
            bare_message(
                "error: line 7 column 3: unknown field `formt`, expected one of rate\n --> x"
            ),
            "unknown field `formt`, expected one of rate"
        );
        assert_eq!(bare_message("plain"), "plain");
        assert_eq!(
            bare_message("error: line 6 column 47: unknown variant `yaml` at line 6, column 47"),
            "unknown variant `yaml`"
        );
    }
}
