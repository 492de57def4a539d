//! The pipeline file: loading (interpolation, YAML with positions), merging several files,
//! and validating the graph.
//!
//! Loading is all-or-nothing: [`load_files`] returns a [`Pipeline`] only when every file
//! parsed and the graph is valid; otherwise it returns every error it found, each with
//! file:line:column and the component id. Nothing here starts anything, so a reload can
//! load and validate a new pipeline before touching the running one.

mod error;
mod graph;
mod hints;
mod interpolate;
mod load;
pub mod paths;
pub(crate) mod schema;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

pub use error::{ConfigError, ConfigErrors, Position};
pub(crate) use graph::{Graph, OutputRef};
pub use interpolate::{MissingVar, PositionMap, interpolate};

use crate::buffer::BufferConfig;
use crate::component::ComponentKind;
use crate::component::{SinkConfig, SourceConfig, TransformConfig};

/// One configured component with what the engine needs besides its type's options.
#[derive(Debug)]
pub struct ComponentDef<C: ?Sized> {
    pub config: Box<C>,
    /// As written, with positions, before wildcard expansion (empty for sources).
    pub inputs: Vec<InputRef>,
    pub buffer: BufferConfig,
    /// Where the component is declared.
    pub position: Position,
    /// Hash of the component's options as written (after interpolation, without
    /// `inputs` and `buffer`) and of the files it reads: a reload rebuilds the component
    /// only when this changes.
    pub fingerprint: u64,
}

/// One entry of an `inputs` list.
#[derive(Debug, Clone)]
pub struct InputRef {
    pub pattern: String,
    pub position: Position,
}

/// The pipeline `sluice` runs when given no `--config`.
pub const DEFAULT_PIPELINE: &str = include_str!("../../config/default-pipeline.yaml");

/// The name used for the embedded pipeline in error messages.
pub const DEFAULT_PIPELINE_NAME: &str = "<embedded>/config/default-pipeline.yaml";

/// A loaded, validated pipeline.
#[derive(Debug, Default)]
pub struct Pipeline {
    pub sources: IndexMap<String, ComponentDef<dyn SourceConfig>>,
    pub transforms: IndexMap<String, ComponentDef<dyn TransformConfig>>,
    pub sinks: IndexMap<String, ComponentDef<dyn SinkConfig>>,
    /// The resolved graph: which outputs feed which components.
    pub graph: Graph,
    /// Problems that do not stop the pipeline (outputs nobody reads).
    pub warnings: Vec<ConfigError>,
    /// The files it came from.
    pub(crate) files: Vec<PathBuf>,
    /// Hash of the interpolated texts of those files, shown on `/health`.
    pub(crate) hash: u64,
    /// Unit tests declared under `tests:` (run by `sluice test`; ignored by `run`).
    pub(crate) tests: Vec<PipelineTest>,
}

/// One `tests:` entry: events injected at transforms, assertions on what comes out.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PipelineTest {
    pub(crate) name: String,
    pub(crate) inputs: Vec<TestInput>,
    #[serde(default)]
    pub(crate) outputs: Vec<TestOutput>,
    /// Outputs that must receive nothing.
    #[serde(default)]
    pub(crate) no_outputs_from: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestInput {
    /// A transform id.
    pub(crate) insert_at: String,
    /// One event…
    pub(crate) value: Option<serde_json::Value>,
    /// …or several.
    #[serde(default)]
    pub(crate) values: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestOutput {
    /// A transform id, or `id.output`.
    pub(crate) extract_from: String,
    /// VRL conditions every extracted event must satisfy.
    pub(crate) conditions: Vec<String>,
}

impl Pipeline {
    /// Every file the pipeline depends on: its own files and those its components read.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = self.files.clone();
        files.extend(self.sources.values().flat_map(|c| c.config.files()));
        files.extend(self.transforms.values().flat_map(|c| c.config.files()));
        files.extend(self.sinks.values().flat_map(|c| c.config.files()));
        files.sort();
        files.dedup();
        files
    }

    /// What each transform and sink reads, as (`component`, `output`) pairs.
    pub(crate) fn wiring(&self) -> crate::telemetry::Wiring {
        self.graph
            .inputs
            .iter()
            .map(|(id, read)| {
                let read = read
                    .iter()
                    .map(|o| (o.component.clone(), o.output.clone()))
                    .collect();
                (id.clone(), read)
            })
            .collect()
    }

    /// Named outputs of a component (empty for unknown ids).
    pub(crate) fn named_outputs(&self, id: &str) -> Vec<String> {
        if let Some(s) = self.sources.get(id) {
            return s.config.outputs();
        }
        if let Some(t) = self.transforms.get(id) {
            return t.config.outputs();
        }
        self.sinks
            .get(id)
            .map(|s| s.config.outputs())
            .unwrap_or_default()
    }

    /// Kind and type name of a component id.
    pub(crate) fn describe(&self, id: &str) -> Option<(ComponentKind, &'static str)> {
        if let Some(c) = self.sources.get(id) {
            return Some((ComponentKind::Source, c.config.type_name()));
        }
        if let Some(c) = self.transforms.get(id) {
            return Some((ComponentKind::Transform, c.config.type_name()));
        }
        self.sinks
            .get(id)
            .map(|c| (ComponentKind::Sink, c.config.type_name()))
    }
}

/// Loads, merges and validates pipeline files (folders and glob patterns name the
/// files they hold, see [`paths`]), reading variables from the environment.
pub fn load_files(specs: &[PathBuf]) -> Result<Pipeline, ConfigErrors> {
    let paths = paths::resolve(specs)?;
    let mut texts = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for path in &paths {
        match std::fs::read_to_string(path) {
            Ok(text) => texts.push((path.clone(), text)),
            Err(e) => errors.push(ConfigError {
                position: Position {
                    file: path.clone(),
                    ..Position::default()
                },
                component: None,
                message: format!("cannot read pipeline file: {e}"),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    load_texts(&texts, lookup_env)
}

/// A variable for a pipeline file, from the environment; the value of one whose name
/// says it is a secret is registered for redaction.
pub(crate) fn lookup_env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    if crate::redact::is_secret_variable(name) {
        crate::redact::register(&value);
    }
    Some(value)
}

/// Loads, merges and validates pipeline texts (`(file name, text)`).
pub fn load_texts(
    texts: &[(PathBuf, String)],
    lookup: impl Fn(&str) -> Option<String> + Copy,
) -> Result<Pipeline, ConfigErrors> {
    let (mut pipeline, mut errors) = parse_all(texts, lookup);
    if !errors.is_empty() {
        // The components that did parse are checked too, so one run reports them all.
        errors.extend(pipeline.check_components());
        return Err(ConfigErrors(errors));
    }
    pipeline.validate()?;
    Ok(pipeline)
}

/// Parses and merges pipeline texts without validating the graph, so a caller (tests,
/// `sluice test`) can add components before [`Pipeline::validate`].
pub fn parse_texts(
    texts: &[(PathBuf, String)],
    lookup: impl Fn(&str) -> Option<String> + Copy,
) -> Result<Pipeline, ConfigErrors> {
    let (pipeline, errors) = parse_all(texts, lookup);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(pipeline)
}

/// Every file parsed: the components that parsed, and the errors of the others.
fn parse_all(
    texts: &[(PathBuf, String)],
    lookup: impl Fn(&str) -> Option<String> + Copy,
) -> (Pipeline, Vec<ConfigError>) {
    let mut pipeline = Pipeline::default();
    let mut errors = Vec::new();
    for (path, text) in texts {
        pipeline.files.push(path.clone());
        if let Err(mut e) = load::load_into(&mut pipeline, path, text, lookup) {
            errors.append(&mut e.0);
        }
    }
    (pipeline, errors)
}

impl Pipeline {
    /// Resolves and checks the graph, then checks every component's options (VRL
    /// programs are compiled here). Starts nothing.
    pub fn validate(&mut self) -> Result<(), ConfigErrors> {
        let file = self
            .files
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from("<none>"));
        let mut errors = match graph::validate(self, Path::new(&file)) {
            Ok(()) => Vec::new(),
            Err(e) => e.0,
        };
        errors.extend(self.check_components());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Every component's own checks (VRL programs are compiled here), whatever the graph.
    fn check_components(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let telemetry = crate::telemetry::Telemetry::new();
        let mut report =
            |section: &str, id: &str, position: &Position, e: crate::component::BuildError| {
                errors.push(ConfigError {
                    position: position.clone(),
                    component: Some(format!("{section}.{id}")),
                    message: e.0,
                });
            };
        let mut listening: Vec<(&str, &str)> = Vec::new();
        let mut listens = |address, id| {
            let other = listening
                .iter()
                .find(|(a, _)| same_socket(a, address))
                .map(|(_, other)| *other);
            listening.push((address, id));
            other
        };
        let mut udp: Vec<(&str, &str)> = Vec::new();
        for (id, c) in &self.sources {
            if let Err(e) = c.config.check() {
                report("sources", id, &c.position, e);
            }
            if let Some(address) = c.config.udp_address() {
                if let Err(e) = check_listen_address(address) {
                    report("sources", id, &c.position, e);
                } else if let Some((_, other)) = udp.iter().find(|(a, _)| same_socket(a, address)) {
                    let e = format!("source `{other}` already receives UDP on {address}");
                    report("sources", id, &c.position, crate::component::BuildError(e));
                }
                udp.push((address, id));
            }
            if let Some(address) = c.config.listen_address()
                && let Err(e) = check_listen_address(address)
            {
                report("sources", id, &c.position, e);
            }
            if let Some(address) = c.config.listen_address()
                && let Some(other) = listens(address, id)
            {
                report(
                    "sources",
                    id,
                    &c.position,
                    crate::component::BuildError(format!(
                        "source `{other}` already listens on {address}"
                    )),
                );
            }
        }
        for (id, c) in &self.transforms {
            let cx = crate::component::TransformContext {
                file_notices: Default::default(),
                id: std::sync::Arc::from(id.as_str()),
                metrics: telemetry.component(id, ComponentKind::Transform, c.config.type_name()),
                clock: std::sync::Arc::new(crate::clock::TokioClock),
                data_dir: None,
            };
            if let Err(e) = c.config.build(&cx) {
                report("transforms", id, &c.position, e);
            }
        }
        for (id, c) in &self.sinks {
            if let Some(address) = c.config.listen_address()
                && let Err(e) = check_listen_address(address)
            {
                report("sinks", id, &c.position, e);
            }
            if let Some(address) = c.config.listen_address()
                && let Some(other) = listens(address, id)
            {
                report(
                    "sinks",
                    id,
                    &c.position,
                    crate::component::BuildError(format!("`{other}` already listens on {address}")),
                );
            }
            if let Err(e) = c.config.check() {
                report("sinks", id, &c.position, e);
            }
            if let Err(e) = c.buffer.check() {
                report("sinks", id, &c.position, crate::component::BuildError(e));
            }
        }
        errors
    }
}

/// A listen address must be `host:port` (an IP, `[v6]` or a name, and a port), so
/// `validate` refuses what `run` could not bind.
fn check_listen_address(address: &str) -> Result<(), crate::component::BuildError> {
    if address.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
        let host_ok = !host.is_empty()
            && !host.contains(['/', ' ', '@'])
            && (host.starts_with('[') == host.ends_with(']'));
        host_ok && port.parse::<u16>().is_ok()
    });
    if valid {
        Ok(())
    } else {
        Err(crate::component::BuildError(format!(
            "`{address}` is not an address to listen on: write host:port, e.g. 0.0.0.0:8080 or 127.0.0.1:8080"
        )))
    }
}

/// Whether two listen addresses take the same socket: the same port on the same IP, or
/// on any IP when one of them is unspecified (`0.0.0.0`, `[::]`). Names compare as
/// written.
fn same_socket(a: &str, b: &str) -> bool {
    match (
        a.parse::<std::net::SocketAddr>(),
        b.parse::<std::net::SocketAddr>(),
    ) {
        (Ok(a), Ok(b)) => {
            a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod socket_tests {
    use super::same_socket;

    #[test]
    fn any_ip_takes_the_port_of_every_ip() {
        assert!(same_socket("127.0.0.1:9598", "127.0.0.1:9598"));
        assert!(same_socket("0.0.0.0:9598", "127.0.0.1:9598"));
        assert!(same_socket("127.0.0.1:9598", "[::]:9598"));
        assert!(!same_socket("127.0.0.1:9598", "127.0.0.2:9598"));
        assert!(!same_socket("0.0.0.0:9598", "0.0.0.0:9599"));
        assert!(same_socket("localhost:80", "localhost:80"));
    }
}
