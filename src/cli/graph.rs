//! `sluice graph`: the pipeline's components and the outputs that feed them, as
//! Graphviz DOT (`| dot -Tsvg`) or a Mermaid flowchart (renders in GitHub Markdown).

use clap::{Args, ValueEnum};

use super::validate::{ValidateArgs, load};
use crate::config::Pipeline;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Args)]
pub(crate) struct GraphArgs {
    #[command(flatten)]
    pub(crate) pipeline: ValidateArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "dot")]
    pub(crate) format: GraphFormat,
}

pub(crate) fn graph(args: &GraphArgs) -> u8 {
    match load(&args.pipeline) {
        Ok(pipeline) => {
            print!("{}", render(&pipeline, args.format));
            0
        }
        Err(code) => code,
    }
}

/// Nodes in file order (sources, transforms, sinks), each labelled with its type; an
/// edge per output read, labelled with the output's name unless it is the default one.
fn render(pipeline: &Pipeline, format: GraphFormat) -> String {
    let nodes = pipeline
        .sources
        .iter()
        .map(|(id, c)| (id, c.config.type_name(), "source"))
        .chain(
            pipeline
                .transforms
                .iter()
                .map(|(id, c)| (id, c.config.type_name(), "transform")),
        )
        .chain(
            pipeline
                .sinks
                .iter()
                .map(|(id, c)| (id, c.config.type_name(), "sink")),
        );
    let edges = pipeline.graph.inputs.iter().flat_map(|(to, inputs)| {
        inputs
            .iter()
            .map(move |o| (o.component.as_str(), o.output.as_deref(), to.as_str()))
    });
    let mut out = String::new();
    match format {
        GraphFormat::Dot => {
            out.push_str("digraph sluice {\n  rankdir=LR;\n");
            for (id, type_name, kind) in nodes {
                let shape = match kind {
                    "source" => "invhouse",
                    "sink" => "house",
                    _ => "box",
                };
                out.push_str(&format!(
                    "  {} [shape={shape}, label=\"{}\\n({type_name})\"];\n",
                    dot_id(id),
                    dot_escape(id)
                ));
            }
            for (from, output, to) in edges {
                let label =
                    output.map_or(String::new(), |o| format!(" [label=\"{}\"]", dot_escape(o)));
                out.push_str(&format!("  {} -> {}{label};\n", dot_id(from), dot_id(to)));
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            // Ids by position: `hook-in` and `hook_in` must not become one node.
            let nodes: Vec<_> = nodes.collect();
            let index: std::collections::HashMap<&str, usize> = nodes
                .iter()
                .enumerate()
                .map(|(i, (id, _, _))| (id.as_str(), i))
                .collect();
            let mermaid_id = |id: &str| index.get(id).map_or_else(String::new, |i| format!("n{i}"));
            for (id, type_name, kind) in &nodes {
                let (open, close) = match *kind {
                    "source" => ("([", "])"),
                    "sink" => ("[/", "/]"),
                    _ => ("[", "]"),
                };
                out.push_str(&format!(
                    "  {}{open}\"{} ({type_name})\"{close}\n",
                    mermaid_id(id),
                    mermaid_escape(id)
                ));
            }
            for (from, output, to) in edges {
                let arrow = output.map_or("-->".to_owned(), |o| {
                    format!("-->|\"{}\"|", mermaid_escape(o))
                });
                out.push_str(&format!(
                    "  {} {arrow} {}\n",
                    mermaid_id(from),
                    mermaid_id(to)
                ));
            }
        }
    }
    out
}

/// Component ids are letters, digits, `_` and `-`; quoted, any of them is a DOT id.
fn dot_id(id: &str) -> String {
    format!("\"{}\"", dot_escape(id))
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> Pipeline {
        crate::config::load_texts(
            &[(
                "p.yaml".into(),
                "sources:\n  hook-in: { type: generator }\ntransforms:\n  r: { type: remap, inputs: [hook-in], source: '.a = 1' }\nsinks:\n  out: { type: blackhole, inputs: [r] }\n  dead: { type: blackhole, inputs: [r.dropped] }\n"
                    .into(),
            )],
            |_| None,
        )
        .expect("valid")
    }

    #[test]
    fn dot_names_every_component_and_edge() {
        let dot = render(&pipeline(), GraphFormat::Dot);
        assert!(dot.starts_with("digraph sluice {"), "{dot}");
        assert!(dot.contains("\"hook-in\" [shape=invhouse, label=\"hook-in\\n(generator)\"];"));
        assert!(dot.contains("\"hook-in\" -> \"r\";"), "{dot}");
        assert!(
            dot.contains("\"r\" -> \"dead\" [label=\"dropped\"];"),
            "{dot}"
        );
        assert!(dot.contains("\"out\" [shape=house"), "{dot}");
    }

    #[test]
    fn mermaid_names_every_component_and_edge() {
        let m = render(&pipeline(), GraphFormat::Mermaid);
        assert!(m.starts_with("flowchart LR\n"), "{m}");
        assert!(m.contains("n0([\"hook-in (generator)\"])"), "{m}");
        assert!(m.contains("n0 --> n1"), "{m}");
        assert!(m.contains("n1 -->|\"dropped\"| n3"), "{m}");
    }
}
