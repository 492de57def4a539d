//! Resolving `inputs` into edges and checking the graph.
//!
//! Every source and transform has a default output named by its id; transforms and
//! sinks may have named outputs `id.name` (a sink's `dead_letter`, say). An `inputs` entry is an exact output name or a pattern with
//! `*`: without a dot it matches component ids (default outputs), with a dot it matches
//! named outputs. A pattern never matches the component that declares it.
//!
//! Errors: unknown inputs, patterns matching nothing, sinks or transforms without
//! inputs, cycles, a pipeline without sources or sinks. Warnings: a source or transform
//! none of whose outputs is read.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use indexmap::IndexMap;
use wildmatch::WildMatch;

use super::{ConfigError, ConfigErrors, Pipeline, Position};

/// One output of one component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutputRef {
    pub(crate) component: String,
    /// `None` for the default output.
    pub(crate) output: Option<String>,
}

impl fmt::Display for OutputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.output {
            Some(o) => write!(f, "{}.{}", self.component, o),
            None => f.write_str(&self.component),
        }
    }
}

/// The resolved DAG.
#[derive(Debug, Default, Clone)]
pub struct Graph {
    /// For each transform and sink: the outputs it reads, deduplicated, in order.
    pub inputs: IndexMap<String, Vec<OutputRef>>,
}

impl Graph {
    /// Components that read `output`.
    pub(crate) fn consumers_of<'a>(
        &'a self,
        output: &'a OutputRef,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.inputs
            .iter()
            .filter(move |(_, ins)| ins.contains(output))
            .map(|(id, _)| id.as_str())
    }
}

pub(super) fn validate(pipeline: &mut Pipeline, first_file: &Path) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    let whole_file = Position {
        file: first_file.to_path_buf(),
        line: 1,
        column: 1,
    };
    if pipeline.sources.is_empty() {
        errors.push(ConfigError {
            position: whole_file.clone(),
            component: None,
            message: "the pipeline has no sources".into(),
        });
    }
    if pipeline.sinks.is_empty() {
        errors.push(ConfigError {
            position: whole_file,
            component: None,
            message: "the pipeline has no sinks".into(),
        });
    }

    // Every output that exists.
    let mut outputs: Vec<OutputRef> = Vec::new();
    for id in pipeline.sources.keys() {
        outputs.push(OutputRef {
            component: id.clone(),
            output: None,
        });
    }
    for id in pipeline.transforms.keys() {
        outputs.push(OutputRef {
            component: id.clone(),
            output: None,
        });
    }
    for id in pipeline
        .sources
        .keys()
        .chain(pipeline.transforms.keys())
        .chain(pipeline.sinks.keys())
    {
        for name in pipeline.named_outputs(id) {
            outputs.push(OutputRef {
                component: id.clone(),
                output: Some(name),
            });
        }
    }
    let known: HashSet<String> = outputs.iter().map(ToString::to_string).collect();

    let consumers = pipeline
        .transforms
        .iter()
        .map(|(id, c)| ("transforms", id, &c.inputs, &c.position))
        .chain(
            pipeline
                .sinks
                .iter()
                .map(|(id, c)| ("sinks", id, &c.inputs, &c.position)),
        );
    let mut graph = Graph::default();
    for (section, id, inputs, position) in consumers {
        let label = Some(format!("{section}.{id}"));
        if inputs.is_empty() {
            errors.push(ConfigError {
                position: position.clone(),
                component: label.clone(),
                message: "`inputs` is missing or empty; list the components it reads".into(),
            });
        }
        let mut resolved: Vec<OutputRef> = Vec::new();
        for input in inputs {
            let pattern = input.pattern.as_str();
            if pattern.contains('*') {
                let glob = WildMatch::new(pattern);
                let wants_named = pattern.contains('.');
                let matched: Vec<&OutputRef> = outputs
                    .iter()
                    .filter(|o| o.component != *id && o.output.is_some() == wants_named)
                    .filter(|o| glob.matches(&o.to_string()))
                    .collect();
                if matched.is_empty() {
                    errors.push(ConfigError {
                        position: input.position.clone(),
                        component: label.clone(),
                        message: format!("input pattern `{pattern}` matches no component output"),
                    });
                }
                for m in matched {
                    if !resolved.contains(m) {
                        resolved.push(m.clone());
                    }
                }
            } else if known.contains(pattern) {
                let (component, output) = match pattern.split_once('.') {
                    Some((c, o)) => (c.to_owned(), Some(o.to_owned())),
                    None => (pattern.to_owned(), None),
                };
                let r = OutputRef { component, output };
                if r.component == *id {
                    errors.push(ConfigError {
                        position: input.position.clone(),
                        component: label.clone(),
                        message: "a component cannot read its own output".into(),
                    });
                } else if !resolved.contains(&r) {
                    resolved.push(r);
                }
            } else {
                errors.push(ConfigError {
                    position: input.position.clone(),
                    component: label.clone(),
                    message: unknown_input_message(pattern, pipeline, &known),
                });
            }
        }
        graph.inputs.insert(id.clone(), resolved);
    }

    if let Some(cycle) = find_cycle(&graph) {
        let first = &cycle[0];
        let (section, position) = match pipeline.transforms.get(first) {
            Some(c) => ("transforms", c.position.clone()),
            None => (
                "sinks",
                pipeline
                    .sinks
                    .get(first)
                    .map(|c| c.position.clone())
                    .unwrap_or_default(),
            ),
        };
        errors.push(ConfigError {
            position,
            component: Some(format!("{section}.{first}")),
            message: format!("cycle in the pipeline: {}", cycle.join(" -> ")),
        });
    }

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }

    let read: HashSet<&str> = graph
        .inputs
        .values()
        .flatten()
        .map(|o| o.component.as_str())
        .collect();
    let mut warnings = Vec::new();
    for (section, id, position) in pipeline
        .sources
        .iter()
        .map(|(id, c)| ("sources", id, &c.position))
        .chain(
            pipeline
                .transforms
                .iter()
                .map(|(id, c)| ("transforms", id, &c.position)),
        )
    {
        if !read.contains(id.as_str()) {
            warnings.push(ConfigError {
                position: position.clone(),
                component: Some(format!("{section}.{id}")),
                message: "no component reads its output; its events are discarded".into(),
            });
        }
    }
    let read_outputs: HashSet<(&str, &str)> = graph
        .inputs
        .values()
        .flatten()
        .filter_map(|o| Some((o.component.as_str(), o.output.as_deref()?)))
        .collect();
    // A transform nothing reads at all was warned about above.
    for (id, t) in pipeline
        .transforms
        .iter()
        .filter(|(id, _)| read.contains(id.as_str()))
    {
        for name in t.config.routed_outputs() {
            if !read_outputs.contains(&(id.as_str(), name.as_str())) {
                warnings.push(ConfigError {
                    position: t.position.clone(),
                    component: Some(format!("transforms.{id}")),
                    message: format!(
                        "no component reads output `{id}.{name}`; what is routed there is discarded"
                    ),
                });
            }
        }
    }
    pipeline.graph = graph;
    pipeline.warnings = warnings;
    Ok(())
}

fn unknown_input_message(pattern: &str, pipeline: &Pipeline, known: &HashSet<String>) -> String {
    if let Some(sink) = pipeline.sinks.get(pattern) {
        let named = sink.config.outputs();
        return if named.is_empty() {
            format!("input `{pattern}` is a sink; this sink has no outputs to read")
        } else {
            format!(
                "input `{pattern}` is a sink; read one of its named outputs ({})",
                named
                    .iter()
                    .map(|n| format!("`{pattern}.{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
    }
    if let Some((component, output)) = pattern.split_once('.')
        && pipeline.describe(component).is_some()
    {
        let prefix = format!("{component}.");
        let mut named: Vec<&str> = known
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .collect();
        named.sort_unstable();
        if named.is_empty() {
            return format!(
                "component `{component}` has no output named `{output}`: it has only its default output (read it as `{component}`)"
            );
        }
        return match crate::text::closest(output, named.iter().copied()) {
            Some(n) => format!(
                "component `{component}` has no output named `{output}`; did you mean `{component}.{n}`?"
            ),
            None => format!(
                "component `{component}` has no output named `{output}` (its named outputs: {})",
                named
                    .iter()
                    .map(|n| format!("`{component}.{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
    }
    match crate::text::closest(pattern, known.iter().map(String::as_str)) {
        Some(k) => format!("unknown input `{pattern}`; did you mean `{k}`?"),
        None => format!("unknown input `{pattern}`: no source or transform has this id"),
    }
}

/// A cycle as a list of component ids (first repeated at the end), if any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    // Edges from producer to consumer. Sources have no inputs, so only transforms and
    // sinks (through named outputs such as `dead_letter`) can close a loop.
    let mut next: HashMap<&str, Vec<&str>> = HashMap::new();
    for (consumer, inputs) in &graph.inputs {
        for i in inputs {
            next.entry(i.component.as_str())
                .or_default()
                .push(consumer.as_str());
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    let mut stack: Vec<&str> = Vec::new();

    fn visit<'a>(
        node: &'a str,
        next: &HashMap<&'a str, Vec<&'a str>>,
        marks: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node, Mark::Visiting);
        stack.push(node);
        for n in next.get(node).into_iter().flatten() {
            if let Some(c) = visit(n, next, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(node, Mark::Done);
        None
    }

    let mut nodes: Vec<&str> = graph.inputs.keys().map(String::as_str).collect();
    nodes.sort_unstable();
    for n in nodes {
        if let Some(c) = visit(n, &next, &mut marks, &mut stack) {
            return Some(c);
        }
    }
    None
}
