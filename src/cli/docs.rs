//! `sluice docs`: the component reference pages (Markdown), rendered from the same
//! schema the loader enforces ([`crate::config::schema`]), with examples taken from the
//! shipped pipelines.

use std::path::PathBuf;

use clap::Args;
use serde_json::{Map, Value, json};

use crate::component::ComponentKind;
use crate::config::schema::{
    OptionDoc, TypeSchema, catalog, options, resolve, section, type_label,
};

#[derive(Args)]
pub(crate) struct DocsArgs {
    /// Folder to write into (`docs/reference` in the repository).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Example pipelines: a type used in one of them shows that entry as its example
    /// (default: the example pipelines built into sluice, those of `pipelines/`).
    #[arg(long, value_name = "DIR")]
    pub(crate) examples: Option<PathBuf>,
}

pub(crate) fn docs(args: &DocsArgs) -> u8 {
    let shipped = match &args.examples {
        None => super::embedded::PIPELINES
            .iter()
            .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
            .collect(),
        Some(dir) => match examples_in(dir) {
            Ok(shipped) => shipped,
            Err(e) => {
                eprintln!("error: cannot read the examples in {}: {e}", dir.display());
                return 1;
            }
        },
    };
    let pages = reference_pages(&shipped);
    let progress = super::progress::Progress::new(pages.len() as u64, "pages");
    for (path, text) in &pages {
        let path = args.out.join(path);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text));
        if let Err(e) = written {
            eprintln!("error: cannot write {}: {e}", path.display());
            return 1;
        }
        progress.step(&path.display().to_string());
    }
    progress.finish();
    println!("wrote {} pages to {}", pages.len(), args.out.display());
    0
}

/// The pipelines in `dir`, as (`folder/name.yaml`, text), sorted so the pages do not
/// depend on directory order.
fn examples_in(dir: &std::path::Path) -> std::io::Result<Vec<(String, String)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    files
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            Ok((format!("{folder}/{name}"), std::fs::read_to_string(p)?))
        })
        .collect()
}

/// A minimal entry of this type: its required options with placeholder values.
pub(crate) fn example(t: &TypeSchema, defs: &Map<String, Value>) -> String {
    let mut yaml = format!("{}:\n  my_{}:\n", section(t.kind), t.type_name);
    yaml.push_str(&format!("    type: {}\n", t.type_name));
    if t.kind != ComponentKind::Source {
        yaml.push_str("    inputs: [upstream]\n");
    }
    for o in options(t, defs)
        .iter()
        .filter(|o| o.required && !o.name.contains('.'))
    {
        let schema = &t.options["properties"][&o.name];
        let value = schema
            .get("examples")
            .and_then(|e| e.get(0))
            .cloned()
            .unwrap_or_else(|| placeholder(schema, defs));
        yaml.push_str(&format!("    {}: {}\n", o.name, value));
    }
    yaml
}

fn placeholder(schema: &Value, defs: &Map<String, Value>) -> Value {
    let s = resolve(schema, defs);
    if let Some(v) = s.get("enum").and_then(|e| e.get(0)) {
        return v.clone();
    }
    match s.get("type").and_then(Value::as_str) {
        Some("integer" | "number") => json!(1),
        Some("boolean") => json!(true),
        Some("array") => json!([]),
        Some("object") => json!({}),
        _ => json!(format!(
            "<{}>",
            type_label(schema, defs).replace(" | ", " or ")
        )),
    }
}

/// The entry `id` of `section` as written in `text` (comments and layout kept), under
/// its section key.
fn entry_text(text: &str, section: &str, id: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == format!("{section}:"))?;
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let mut child_indent = None;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = indent_of(line);
        if indent == 0 {
            return None;
        }
        if *child_indent.get_or_insert(indent) != indent {
            continue;
        }
        if trimmed.starts_with(&format!("{id}:")) {
            let mut out = vec![format!("{section}:"), (*line).to_owned()];
            for next in &lines[i + 1..] {
                let t = next.trim_start();
                if !t.is_empty() && indent_of(next) <= indent {
                    break;
                }
                out.push((*next).to_owned());
            }
            while out.last().is_some_and(|l| l.trim().is_empty()) {
                out.pop();
            }
            return Some(out.join("\n") + "\n");
        }
    }
    None
}

/// For each `(kind, type)`, the first component of that type in `files` (`(name, text)`,
/// searched in order): the file name and the entry as written.
fn shipped_examples(
    files: &[(String, String)],
) -> std::collections::HashMap<(ComponentKind, String), (String, String)> {
    let mut found = std::collections::HashMap::new();
    for (name, text) in files {
        let Ok(doc) = serde_saphyr::from_str::<Value>(text) else {
            continue;
        };
        for kind in [
            ComponentKind::Source,
            ComponentKind::Transform,
            ComponentKind::Sink,
        ] {
            let Some(entries) = doc.get(section(kind)).and_then(Value::as_object) else {
                continue;
            };
            for (id, entry) in entries {
                let Some(type_name) = entry.get("type").and_then(Value::as_str) else {
                    continue;
                };
                let key = (kind, type_name.to_owned());
                if found.contains_key(&key) {
                    continue;
                }
                if let Some(snippet) = entry_text(text, section(kind), id) {
                    found.insert(key, (name.clone(), snippet));
                }
            }
        }
    }
    found
}

/// Markdown pages, one per component type plus an index, as `(relative path, text)`.
/// A type used in one of the example pipelines `shipped` (`(name, text)`) shows that
/// entry as its example; the others show their required options with placeholders.
pub(crate) fn reference_pages(shipped: &[(String, String)]) -> Vec<(String, String)> {
    let c = catalog();
    let examples = shipped_examples(shipped);
    let mut pages = Vec::new();
    let mut index = String::from(GENERATED);
    index.push_str("# Component reference\n\nOne page per component type, generated from the config structs.\n");
    for kind in [
        ComponentKind::Source,
        ComponentKind::Transform,
        ComponentKind::Sink,
    ] {
        index.push_str(&format!("\n## {}\n\n", capitalized(section(kind))));
        for t in c.types.iter().filter(|t| t.kind == kind) {
            let path = format!("{}/{}.md", section(kind), t.type_name);
            let summary = t
                .options
                .get("description")
                .and_then(Value::as_str)
                .map(first_sentence)
                .unwrap_or_default();
            let entry = format!("- [`{}`]({path}) {summary}", t.type_name);
            index.push_str(entry.trim_end());
            index.push('\n');
            let shipped = examples.get(&(kind, t.type_name.to_owned()));
            pages.push((path, page(t, &c.defs, shipped)));
        }
    }
    index.push_str(
        "\n## Beyond components\n\n- [Settings](settings.md): the global settings, their defaults and their environment variables\n- [API](api.md): every endpoint, the role it needs, and the OpenAPI document ([`openapi.json`](openapi.json))\n- [Metrics](metrics.md): every metric on `/metrics`, its labels, and what it counts\n- [VRL functions](vrl-functions.md): the functions sluice adds to VRL's standard library\n- [Plugins](plugins.md): the contract of decoder and formatter plugins, and the built-ins\n",
    );
    pages.insert(0, ("README.md".to_owned(), index));
    pages.push(("settings.md".to_owned(), settings_page()));
    pages.push(("api.md".to_owned(), api_page()));
    pages.push((
        "metrics.md".to_owned(),
        super::docs_pages::metrics_page(GENERATED),
    ));
    pages.push((
        "vrl-functions.md".to_owned(),
        super::docs_pages::vrl_page(GENERATED),
    ));
    pages.push((
        "plugins.md".to_owned(),
        super::docs_pages::plugins_page(GENERATED),
    ));
    pages.push((
        "openapi.json".to_owned(),
        format!("{}\n", crate::api::openapi_document()),
    ));
    pages
}

/// The global settings: the embedded defaults file, whose comments document each one.
fn settings_page() -> String {
    format!(
        "{GENERATED}# Settings\n\nGlobal settings (not the pipeline): where state lives, the API, logging and the memory budget. Each layer overrides the one before it: the embedded defaults below, the file given with `--settings`, `SLUICE_*` environment variables (`SLUICE_` then the path with `__` between levels: `SLUICE_API__ADDRESS`, `SLUICE_LOG__LEVEL`), then `--data-dir` and `--api-address`. An unknown key in the file, or a value that cannot be used, stops sluice with the setting's name.\n\n```yaml\n{}```\n",
        crate::settings::DEFAULT_SETTINGS
    )
}

/// Every API operation from the OpenAPI document: method, path, the role it needs and
/// what it does.
fn api_page() -> String {
    let mut out = format!(
        "{GENERATED}# API\n\nsluice's HTTP API (`api.address`, default `127.0.0.1:8686`). Its OpenAPI 3.1 document is served at `GET /openapi.json` and committed as [`openapi.json`](openapi.json). Roles (`viewer` < `operator` < `admin`) come from `api.tokens`; without any token configured the API stays on loopback and needs none.\n\n| method | path | what it does |\n|---|---|---|\n"
    );
    let doc: Value = serde_json::from_str(crate::api::openapi_document()).unwrap_or_default();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            let Some(ops) = item.as_object() else {
                continue;
            };
            for (method, op) in ops {
                let description = op
                    .get("description")
                    .or_else(|| op.get("summary"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push_str(&format!(
                    "| {} | `{}` | {} |\n",
                    method.to_uppercase(),
                    path,
                    cell(&description)
                ));
            }
        }
    }
    out
}

const GENERATED: &str =
    "<!-- Generated by `cargo run -- docs --out docs/reference`; do not edit. -->\n";

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|f| f.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn page(t: &TypeSchema, defs: &Map<String, Value>, shipped: Option<&(String, String)>) -> String {
    let mut md = String::from(GENERATED);
    md.push_str(&format!("# `{}` {}\n\n", t.type_name, t.kind.as_str()));
    if let Some(d) = t.options.get("description").and_then(Value::as_str) {
        md.push_str(d.trim());
        md.push_str("\n\n");
    }
    md.push_str("## Options\n\n| Option | Type | Default | Required | Description |\n|---|---|---|---|---|\n");
    let mut rows = vec![OptionDoc {
        name: "type".into(),
        type_label: format!("`{}`", t.type_name),
        default: None,
        required: true,
        description: format!("Selects this {} type.", t.kind.as_str()),
    }];
    if t.kind != ComponentKind::Source {
        rows.push(OptionDoc {
            name: "inputs".into(),
            type_label: "list of string".into(),
            default: None,
            required: true,
            description: "Components this one reads: `id`, `id.output`, `*` wildcards.".into(),
        });
    }
    if t.kind == ComponentKind::Sink {
        let buffer_rows: [(&str, &str, Option<&str>, &str); 6] = [
            (
                "buffer.type",
                "`memory` or `disk`",
                Some("memory"),
                "Where the sink's input buffer keeps events. `disk`: checksummed segments under `data_dir/buffers/<id>/`, acknowledged to the source once durable, replayed after a restart.",
            ),
            (
                "buffer.max_events",
                "integer",
                Some("1000 (memory), unlimited (disk)"),
                "Events the buffer holds before `when_full` applies.",
            ),
            (
                "buffer.max_bytes",
                "size (`256MiB` or bytes)",
                Some("unlimited (memory), 256MiB (disk)"),
                "Bytes the buffer holds before `when_full` applies (estimated in memory, encoded on disk).",
            ),
            (
                "buffer.when_full",
                "`block` or `drop_newest`",
                Some("block"),
                "`block`: upstream waits. `drop_newest`: what does not fit is dropped and counted as discarded.",
            ),
            (
                "buffer.sync",
                "`always` or `interval`",
                Some("always"),
                "Disk only: fsync before every acknowledgement (grouped), or every `sync_interval`.",
            ),
            (
                "buffer.sync_interval",
                "duration",
                Some("500ms"),
                "Disk only, with `sync: interval`.",
            ),
        ];
        for (name, type_label, default, description) in buffer_rows {
            rows.push(OptionDoc {
                name: name.into(),
                type_label: type_label.into(),
                default: default.map(str::to_owned),
                required: false,
                description: description.into(),
            });
        }
    }
    rows.extend(options(t, defs));
    for o in rows {
        md.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            o.name,
            cell(&o.type_label),
            o.default
                .as_deref()
                .map(|d| format!("`{}`", cell(d)))
                .unwrap_or_default(),
            if o.required { "yes" } else { "no" },
            cell(&o.description),
        ));
    }
    match shipped {
        Some((file, snippet)) => md.push_str(&format!(
            "\n## Example\n\nFrom `{file}`:\n\n```yaml\n{snippet}```\n"
        )),
        None => md.push_str(&format!(
            "\n## Example\n\nThe required options, with placeholder values:\n\n```yaml\n{}```\n",
            example(t, defs)
        )),
    }
    md
}

/// The first sentence of a description's first paragraph, on one line: the index's
/// one-line purpose of a type.
fn first_sentence(description: &str) -> String {
    let paragraph = description
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match paragraph.find(". ") {
        Some(at) => paragraph[..=at].to_owned(),
        None => paragraph,
    }
}
