//! Parsing one pipeline file into typed component configs with exact positions.
//!
//! Two passes over the YAML: a pre-scan reads only each component's `type` (keys may come
//! in any order), then a seeded pass deserializes every component straight into its
//! type's config struct from the YAML deserializer itself, so serde errors such as an
//! unknown field carry the line and column of the offending key. The keys every
//! component shares (`type`, `inputs`, `buffer`) are taken out of the mapping by
//! `Intercept` (in `load/seed.rs`) before the type's struct sees it; type structs deny
//! unknown fields.

mod seed;

use std::cell::RefCell;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::DeserializeSeed;
use serde_saphyr::Spanned;

use super::{
    BufferConfig, ComponentDef, ConfigError, ConfigErrors, InputRef, Pipeline, Position,
    PositionMap,
};
use crate::component::ComponentKind;
use crate::{sinks, sources, transforms};
use seed::{FileSeed, Parsed};

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
            message: super::hints::improve(&bare_message(&e.without_snippet().to_string())),
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

/// Each invalid component costs one more pass over the file: past this many, the
/// rest of the file is not read (a file of thousands of broken components would
/// otherwise take minutes, on a reload too).
const MAX_INVALID_COMPONENTS: usize = 20;

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
    let mut skip = std::collections::HashSet::new();
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
                None => {
                    skip.insert(self::label(kind, &id));
                    errors.push(ConfigError {
                        position: at,
                        component: label,
                        message: format!("missing field `type` (one of: {})", known.join(", ")),
                    });
                }
                Some(t) if !known.contains(&t.value.as_str()) => {
                    skip.insert(self::label(kind, &id));
                    errors.push(ConfigError {
                        position: cx.position(t.referenced.line(), t.referenced.column()),
                        component: label,
                        message: format!(
                            "unknown {} type `{}` (one of: {})",
                            kind.as_str(),
                            t.value,
                            known.join(", ")
                        ),
                    });
                }
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
    // One pass per invalid component: each pass reads past those already reported, so
    // every component's first error is reported, not only the file's first.
    let current = RefCell::new(None::<String>);
    let parsed = loop {
        *current.borrow_mut() = None;
        let pass = serde_saphyr::with_deserializer_from_str(&text, |d| {
            FileSeed {
                declared: &declared,
                current: &current,
                skip: &skip,
                cx: &cx,
            }
            .deserialize(d)
        });
        match pass {
            Ok(parsed) => break parsed,
            Err(e) => {
                let component = current.borrow().clone();
                errors.push(cx.yaml_error(&e, component.clone()));
                // Without a component to read past, or one already read past, another
                // pass would find the same error.
                match component {
                    Some(c) if !skip.contains(&c) => {
                        skip.insert(c);
                    }
                    _ => return Err(ConfigErrors(errors)),
                }
                if skip.len() >= MAX_INVALID_COMPONENTS {
                    errors.push(ConfigError {
                        position: cx.position(0, 0),
                        component: None,
                        message: format!(
                            "stopped after {MAX_INVALID_COMPONENTS} invalid components; fix these and validate again"
                        ),
                    });
                    return Err(ConfigErrors(errors));
                }
            }
        }
    };

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
