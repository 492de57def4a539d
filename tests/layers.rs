//! The crate's layers only point down (docs/architecture.md).
//!
//! Reads every file under `src/`, collects the `crate::` paths it names (in `use`
//! lines, grouped imports and inline paths alike) and fails when a module names a
//! module of a higher layer, when two component modules (sources, transforms, sinks)
//! name each other, or when one component type reaches into another's folder.
//! A plain scan is enough: the crate's style is `use crate::…`, and a path the scan
//! missed would have to avoid the `crate::` prefix entirely.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, bottom first. A module may name modules of its own
/// layer (no cycle allowed) or of a lower one.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundations",
        &[
            "build_info",
            "clock",
            "error",
            "hashing",
            "redact",
            "state_file",
            "text",
            "units",
        ],
    ),
    ("event", &["event"]),
    ("telemetry", &["telemetry"]),
    ("buffers", &["buffer"]),
    (
        "shared vocabulary",
        &[
            "alert",
            "fluent",
            "kafka",
            "key_values",
            "matchers",
            "net",
            "otlp",
            "plugins",
            "postgres",
            "program",
            "silences",
            "tables",
            "template",
        ],
    ),
    ("component", &["component"]),
    ("delivery", &["delivery"]),
    ("components", &["sources", "transforms", "sinks"]),
    ("config", &["config", "settings"]),
    ("topology", &["topology"]),
    ("services", &["api", "reload", "testing", "fuzzing"]),
    ("tools", &["app", "cli"]),
];

/// Modules whose members are component types: one type must not reach into another.
const COMPONENT_KINDS: &[&str] = &["sources", "transforms", "sinks"];

/// Exported macros sit at the crate root; they belong to the module that defines them.
const MACROS: &[(&str, &str)] = &[("component_registry", "component")];

fn owner(name: &str) -> &str {
    MACROS
        .iter()
        .find(|(macro_name, _)| *macro_name == name)
        .map_or(name, |(_, module)| module)
}

fn layer_of(module: &str) -> Option<usize> {
    let module = owner(module);
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/sources/webhook/route.rs` → `["sources", "webhook", "route"]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every `crate::a::b` path in `text`, as its first two segments, expanding groups
/// like `crate::{a, b::c}`.
fn crate_paths(text: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top_level(&group[..end]) {
                let mut segments = item.split("::").map(str::trim);
                if let Some(first) = segments.next().filter(|s| is_ident(s)) {
                    let second = segments.next().filter(|s| is_ident(s)).map(str::to_owned);
                    found.push((first.to_owned(), second));
                }
            }
            continue;
        }
        let first: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after = &rest[first.len()..];
        let second = after.strip_prefix("::").map(|s| {
            s.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        });
        if !first.is_empty() {
            found.push((first, second.filter(|s| !s.is_empty())));
        }
    }
    found
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Comment lines are prose, not imports.
fn code_only(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct Import {
    from: Vec<String>,
    to: (String, Option<String>),
}

fn imports() -> Vec<Import> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 50,
        "expected the crate's sources under {src:?}"
    );
    let mut all = Vec::new();
    for file in files {
        let from = module_path(&src, &file);
        if from.len() == 1 && (from[0] == "lib" || from[0] == "main") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for to in crate_paths(&code_only(&text)) {
            all.push(Import {
                from: from.clone(),
                to,
            });
        }
    }
    all
}

#[test]
fn every_module_has_a_layer() {
    let mut unplaced = BTreeSet::new();
    for import in imports() {
        for module in [&import.from[0], &import.to.0] {
            if layer_of(module).is_none() {
                unplaced.insert(module.clone());
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules missing from LAYERS in tests/layers.rs: {unplaced:?}"
    );
}

#[test]
fn layers_only_point_down() {
    let mut upward = BTreeSet::new();
    for import in imports() {
        let (from, to) = (&import.from[0], &import.to.0);
        let (Some(a), Some(b)) = (layer_of(from), layer_of(to)) else {
            continue;
        };
        if b > a {
            upward.insert(format!(
                "{} ({}) imports crate::{} ({})",
                import.from.join("/"),
                LAYERS[a].0,
                to,
                LAYERS[b].0
            ));
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up:\n{}",
        lines(&upward)
    );
}

#[test]
fn no_import_cycle_between_modules() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for import in imports() {
        if import.from[0] != import.to.0 {
            graph
                .entry(import.from[0].clone())
                .or_default()
                .insert(owner(&import.to.0).to_owned());
        }
    }
    // Depth-first search; a back edge is a cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let (mut stack, mut done) = (Vec::new(), BTreeSet::new());
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut stack, &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

/// Every `crate::…` and `super::…` path in `text` (groups expanded), as segments.
fn full_paths(text: &str) -> Vec<(bool, Vec<String>)> {
    fn segments(rest: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        let mut rest = rest;
        loop {
            if let Some(group) = rest.strip_prefix('{') {
                let end = matching_brace(group);
                for item in split_top_level(&group[..end]) {
                    segments(item.trim(), &path, out);
                }
                return;
            }
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if word.is_empty() {
                break;
            }
            rest = &rest[word.len()..];
            path.push(word);
            match rest.strip_prefix("::") {
                Some(after) => rest = after,
                None => break,
            }
        }
        out.push(path);
    }
    let mut found = Vec::new();
    for (i, _) in text.match_indices("::") {
        let head = &text[..i];
        let is_crate = head.ends_with("crate");
        if !is_crate && !head.ends_with("super") {
            continue;
        }
        // `crate` and `super` are both five bytes long.
        let before = head[..head.len() - 5].chars().next_back();
        // Only the start of a path: `super::super::x` is read from its first `super`.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut out = Vec::new();
        segments(&text[i + 2..], &[], &mut out);
        found.extend(out.into_iter().map(|p| (is_crate, p)));
    }
    found
}

/// Files that import each other, directly or around a circle, cannot be read or
/// changed one at a time. A module and the modules inside it are one unit here (a
/// parent declares its children, and children use their parent's items).
#[test]
fn no_import_cycle_between_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(&src, f)).collect();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let from = module_path(&src, file);
        let text = code_only(&std::fs::read_to_string(file).expect("read source"));
        for (is_crate, path) in full_paths(&text) {
            let mut base: Vec<String> = if is_crate {
                Vec::new()
            } else {
                from[..from.len().saturating_sub(1)].to_vec()
            };
            let mut rest = path.as_slice();
            while let Some(("super", tail)) = rest.split_first().map(|(h, t)| (h.as_str(), t)) {
                base.pop();
                rest = tail;
            }
            let mut target = None;
            for segment in rest {
                base.push(segment.clone());
                if modules.contains(&base) {
                    target = Some(base.clone());
                }
            }
            let Some(to) = target else { continue };
            let related = to.starts_with(&from) || from.starts_with(&to);
            if !related {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    let mut cycles = BTreeSet::new();
    for (start, targets) in &graph {
        for next in targets {
            // A path back from `next` to `start` closes a circle.
            let mut seen = BTreeSet::new();
            let mut stack = vec![(next.clone(), vec![start.join("/"), next.join("/")])];
            while let Some((node, trail)) = stack.pop() {
                if &node == start {
                    let mut circle = trail.clone();
                    let min = (0..circle.len() - 1)
                        .min_by_key(|&i| circle[i].clone())
                        .unwrap_or(0);
                    circle.pop();
                    circle.rotate_left(min);
                    circle.push(circle[0].clone());
                    cycles.insert(circle.join(" -> "));
                    break;
                }
                if !seen.insert(node.clone()) {
                    continue;
                }
                for n in graph.get(&node).into_iter().flatten() {
                    let mut t = trail.clone();
                    t.push(n.join("/"));
                    stack.push((n.clone(), t));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles between files:\n{}",
        lines(&cycles)
    );
}

#[test]
fn component_types_do_not_reach_into_each_other() {
    let mut crossings = BTreeSet::new();
    for import in imports() {
        let from_kind = &import.from[0];
        let to_kind = &import.to.0;
        if !COMPONENT_KINDS.contains(&to_kind.as_str()) {
            continue;
        }
        if !COMPONENT_KINDS.contains(&from_kind.as_str()) {
            continue;
        }
        // The registry (`sources/mod.rs`) names every type; shared helpers live in `util`.
        let from_type = import.from.get(1);
        let to_type = import.to.1.as_ref();
        let shared = to_type.is_none_or(|t| t == "util" || t == "schemas" || t == "TYPES");
        if from_kind != to_kind || (!shared && from_type.is_some() && from_type != to_type) {
            crossings.insert(format!(
                "{} imports crate::{}::{}",
                import.from.join("/"),
                to_kind,
                to_type.map(String::as_str).unwrap_or("")
            ));
        }
    }
    assert!(
        crossings.is_empty(),
        "component types must share code through a lower layer, not each other:\n{}",
        lines(&crossings)
    );
}

fn lines(set: &BTreeSet<String>) -> String {
    set.iter()
        .map(|s| format!("  {s}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The layer order is written in three places; the two prose ones follow this test's:
/// `docs/architecture.md`'s diagram (top layer first) and `src/lib.rs`'s module list
/// (bottom first).
#[test]
fn the_documented_layer_orders_match() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("doc");
    let diagram: Vec<&str> = doc
        .split("```")
        .nth(1)
        .expect("the layer diagram")
        .lines()
        .collect();
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
    let declared: Vec<String> = lib
        .lines()
        .filter_map(|l| {
            l.trim()
                .rsplit_once("mod ")
                .map(|(_, m)| m.trim_end_matches(';').to_owned())
        })
        .collect();
    let mut last_doc_line = usize::MAX;
    let mut below = 0;
    for (layer, modules) in LAYERS {
        let mut lines = Vec::new();
        let mut highest = below;
        for m in *modules {
            let line = diagram
                .iter()
                .position(|l| {
                    l.split_whitespace()
                        .any(|w| w == format!("{m}.rs") || w.starts_with(&format!("{m}/")))
                })
                .unwrap_or_else(|| panic!("`{m}` ({layer}) is not in the diagram"));
            lines.push(line);
            let index = declared
                .iter()
                .position(|d| d == m)
                .unwrap_or_else(|| panic!("`{m}` is not declared in lib.rs"));
            assert!(
                index >= below,
                "lib.rs declares `{m}` ({layer}) before a module of a lower layer"
            );
            highest = highest.max(index);
        }
        below = highest;
        let (low, high) = (
            *lines.iter().min().expect("modules"),
            *lines.iter().max().expect("modules"),
        );
        assert!(
            high <= last_doc_line,
            "the diagram puts {layer} below a lower layer"
        );
        last_doc_line = low;
    }
}

/// A file over 600 lines does several jobs: split it (issue #27).
#[test]
fn no_source_file_is_over_600_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).expect("read").lines().count();
            (lines > 600).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    long.sort();
    assert!(long.is_empty(), "split these: {long:?}");
}

#[test]
fn the_scan_sees_grouped_and_inline_paths() {
    let found = crate_paths(
        "use crate::{a, b::c, d::{e, f}};\nlet x = crate::g::h(); let y = my_crate::z; $crate::m::n",
    );
    let names: Vec<_> = found
        .iter()
        .map(|(a, b)| format!("{a}:{}", b.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(names, ["a:", "b:c", "d:", "g:h", "m:n"]);
}
