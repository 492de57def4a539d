//! The documentation's examples work as written. Every fenced block of the README and of
//! `docs/*.md` is read:
//! - a `yaml` block that declares `sources`, `transforms` or `sinks` is a pipeline: it
//!   must pass `sluice validate` (completed with a generator for each input it reads but
//!   does not declare, and a blackhole when it has no sink), and its `tests:` must pass
//!   `sluice test`;
//! - a `yaml` block that is a settings file (`api:`, `data_dir:`, …) must load as one;
//! - every `sluice …` command of a `sh` block must parse, and `validate` and `test`
//!   commands are run from the repository root as a reader would.
//!
//! A block that is deliberately a fragment says so in its first line (`# fragment: …`)
//! and is only parsed as YAML.

mod common;

use std::path::{Path, PathBuf};

use common::sluice;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Block {
    file: String,
    line: usize,
    lang: String,
    text: String,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

fn documents() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    for path in documents() {
        let text = std::fs::read_to_string(&path).expect("read");
        let file = path
            .strip_prefix(repo())
            .expect("in repo")
            .display()
            .to_string();
        let mut open: Option<Block> = None;
        for (i, line) in text.lines().enumerate() {
            match (&mut open, line.strip_prefix("```")) {
                (None, Some(lang)) => {
                    open = Some(Block {
                        file: file.clone(),
                        line: i + 2,
                        lang: lang.trim().to_owned(),
                        text: String::new(),
                    });
                }
                (Some(_), Some(_)) => out.extend(open.take()),
                (Some(b), None) => {
                    b.text.push_str(line);
                    b.text.push('\n');
                }
                (None, None) => {}
            }
        }
        assert!(open.is_none(), "{file}: a code block is never closed");
    }
    out
}

/// `${NAME}` references without a default: the example expects them set.
fn required_variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find('}') else { break };
        let inner = &rest[..end];
        if !inner.contains(":-") && !inner.contains('-') {
            names.push(inner.to_owned());
        }
        rest = &rest[end..];
    }
    names
}

/// Runs the binary on `args` from the repository root with the block's variables set
/// to values of the shape their names ask for.
fn run(args: &[&str], vars: &[String]) -> std::process::Output {
    let mut cmd = sluice();
    cmd.current_dir(repo()).args(args);
    for name in vars {
        let value = if name.contains("URL") {
            "https://hooks.example.com/services/T000/B000/XXXX"
        } else {
            "0123456789abcdef0123456789abcdef"
        };
        cmd.env(name, value);
    }
    cmd.output().expect("runs")
}

/// A block that shows one part of a pipeline (sinks without their sources, a source
/// alone) is completed so it can be validated: a `generator` for each input it reads
/// but does not declare, and a `blackhole` reading everything when it has no sink.
fn completion(value: &serde_json::Value) -> Option<String> {
    let declared = |section: &str| -> Vec<String> {
        value
            .get(section)
            .and_then(|s| s.as_object())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let ids: Vec<String> = ["sources", "transforms", "sinks"]
        .iter()
        .flat_map(|s| declared(s))
        .collect();
    let mut missing: Vec<String> = ["transforms", "sinks"]
        .iter()
        .filter_map(|s| value.get(*s).and_then(|s| s.as_object()))
        .flat_map(|m| m.values())
        .filter_map(|c| c.get("inputs").and_then(|i| i.as_array()))
        .flatten()
        .filter_map(|i| i.as_str())
        .map(|i| i.split('.').next().unwrap_or(i).to_owned())
        .filter(|i| !i.contains('*') && !ids.contains(i))
        .collect();
    missing.sort();
    missing.dedup();
    let needs_sink = declared("sinks").is_empty();
    if missing.is_empty() && !needs_sink {
        return None;
    }
    let mut text = String::new();
    if !missing.is_empty() {
        text.push_str("sources:\n");
        for id in &missing {
            text.push_str(&format!("  {id}: {{ type: generator }}\n"));
        }
    }
    if needs_sink {
        text.push_str("sinks:\n  readme_completion: { type: blackhole, inputs: [\"*\"] }\n");
    }
    Some(text)
}

/// `# fragment of <pipeline file>: …` on a block's first line: the block is validated
/// together with that file. `Some(None)`: a fragment of nothing in particular, only
/// parsed as YAML.
fn fragment_of(block: &Block) -> Option<Option<String>> {
    let first = block.text.lines().next()?.trim();
    let rest = first.strip_prefix("# fragment")?;
    Some(
        rest.strip_prefix(" of ")
            .and_then(|r| r.split([':', ' ']).next())
            .map(str::to_owned),
    )
}

#[test]
fn every_pipeline_in_the_docs_validates_and_passes_its_tests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pipelines = 0;
    let mut failures = Vec::new();
    for (n, block) in blocks().iter().enumerate() {
        if block.lang != "yaml" {
            continue;
        }
        let parsed: Result<serde_json::Value, _> = serde_saphyr::from_str(&block.text);
        let Ok(value) = parsed else {
            failures.push(format!("{}: not YAML: {:?}", block.at(), parsed.err()));
            continue;
        };
        let base = match fragment_of(block) {
            Some(None) => continue,
            Some(Some(base)) => Some(base),
            None => None,
        };
        let is_pipeline = ["sources", "transforms", "sinks"]
            .iter()
            .any(|k| value.get(k).is_some());
        if !is_pipeline {
            continue;
        }
        pipelines += 1;
        let file = dir.path().join(format!("block-{n}.yaml"));
        std::fs::write(&file, &block.text).expect("write");
        let path = file.display().to_string();
        let vars = required_variables(&block.text);
        let mut args = vec!["validate"];
        if let Some(base) = &base {
            args.extend(["--config", base]);
        }
        args.extend(["--config", &path]);
        let completed = dir.path().join(format!("block-{n}-completion.yaml"));
        let completed = completed.display().to_string();
        if base.is_none()
            && let Some(text) = completion(&value)
        {
            std::fs::write(&completed, text).expect("write");
            args.extend(["--config", &completed]);
        }
        let out = run(&args, &vars);
        if !out.status.success() {
            failures.push(format!(
                "{}: `sluice validate` fails:\n{}",
                block.at(),
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        if value.get("tests").is_some() {
            let out = run(&["test", "--config", &path], &vars);
            if !out.status.success() {
                failures.push(format!(
                    "{}: `sluice test` fails:\n{}{}",
                    block.at(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        pipelines >= 5,
        "only {pipelines} pipelines found in the docs"
    );
}

/// The `sluice` commands of the shell blocks: `validate` and `test` run for real, the
/// others must at least parse (their arguments followed by `--help`).
#[test]
fn every_sluice_command_in_the_docs_parses_and_validate_and_test_pass() {
    let mut commands = 0;
    let mut failures = Vec::new();
    for block in blocks() {
        if !matches!(block.lang.as_str(), "sh" | "bash" | "console") {
            continue;
        }
        for (i, raw) in block.text.lines().enumerate() {
            let line = raw.trim().trim_start_matches("$ ");
            let line = match line.find(" # ") {
                Some(at) => &line[..at],
                None => line,
            };
            let Some(rest) = line
                .strip_prefix("sluice ")
                .or_else(|| line.strip_prefix("target/release/sluice "))
                .or_else(|| line.strip_prefix("cargo run --release -- "))
            else {
                continue;
            };
            // Pipes and redirections belong to the shell, not to sluice.
            let rest = rest.split(['|', '>']).next().unwrap_or(rest);
            let Some(args) = shlex::split(rest) else {
                failures.push(format!(
                    "{}:{}: unbalanced quotes",
                    block.file,
                    block.line + i
                ));
                continue;
            };
            commands += 1;
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            let runs = matches!(args.first(), Some(&"validate") | Some(&"test"));
            if !runs {
                args.push("--help");
            }
            let out = run(&args, &[]);
            if !out.status.success() {
                failures.push(format!(
                    "{}:{}: `sluice {}` fails:\n{}",
                    block.file,
                    block.line + i,
                    rest.trim(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(commands >= 4, "only {commands} commands found in the docs");
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every relative link of the README and docs/ reaches a file, and every `#anchor` a
/// heading of its page (so moving a section cannot leave links behind).
#[test]
fn every_link_in_the_docs_reaches_its_file_and_heading() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("read");
        let base = doc.parent().expect("in a folder");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            rest = &rest[end..];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            checked += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                doc.clone()
            } else {
                base.join(file)
            };
            if !path.exists() {
                failures.push(format!("{}: `{target}`: no such file", doc.display()));
                continue;
            }
            if !fragment.is_empty() {
                let page = std::fs::read_to_string(&path).unwrap_or_default();
                if !anchors(&page).iter().any(|a| a == fragment) {
                    failures.push(format!("{}: `{target}`: no such heading", doc.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} links checked");
}
