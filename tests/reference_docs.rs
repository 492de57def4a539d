//! The committed component reference (docs/reference) matches what the config structs
//! generate, so the pages cannot go stale.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

fn read_tree(root: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .into_owned();
                files.insert(rel, std::fs::read_to_string(&path).expect("read"));
            }
        }
    }
    files
}

#[test]
fn committed_reference_pages_are_current() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    // Run from outside the checkout: the examples are built into the binary.
    let out = common::sluice()
        .current_dir(out_dir.path())
        .args(["docs", "--out", "reference"])
        .output()
        .expect("runs");
    let out_dir = out_dir.path().join("reference");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = read_tree(&out_dir);
    let committed = read_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference"));
    let count =
        sluice::sources::TYPES.len() + sluice::transforms::TYPES.len() + sluice::sinks::TYPES.len();
    assert_eq!(
        generated.len(),
        count + 7,
        "a page per type, an index, settings, the API and its OpenAPI document, metrics, VRL functions and plugins"
    );
    assert!(generated["metrics.md"].contains(
        "| `sluice_component_errors_total` | counter | every component | `error_type`, `stage` |"
    ));
    assert!(generated["metrics.md"].contains("| `delivery_failed` |"));
    assert!(generated["vrl-functions.md"].contains("## `lookup_table`"));
    let plugins = &generated["plugins.md"];
    assert!(
        plugins.contains("| decoder | `alertmanager` | `plugins/decoders/alertmanager.vrl` |")
            && plugins.contains("### Contract")
            && plugins.contains("### `slack`"),
        "{plugins}"
    );
    assert!(generated["settings.md"].contains("auth_token"));
    let api = &generated["api.md"];
    assert!(
        api.contains("| POST | `/reload` |") && api.contains("| GET | `/tap` |"),
        "{api}"
    );
    let openapi: serde_json::Value =
        serde_json::from_str(&generated["openapi.json"]).expect("the OpenAPI document");
    assert_eq!(openapi["openapi"].as_str().map(|v| &v[..2]), Some("3."));

    let mut stale = Vec::new();
    for (path, text) in &generated {
        if committed.get(path) != Some(text) {
            stale.push(path.clone());
        }
    }
    stale.extend(
        committed
            .keys()
            .filter(|p| !generated.contains_key(*p))
            .map(|p| format!("{p} (no such component type any more)")),
    );
    assert!(
        stale.is_empty(),
        "docs/reference is out of date ({}); run `cargo run -- docs --out docs/reference` and commit the result",
        stale.join(", ")
    );

    // Every option says what it does: a row whose description cell is empty, or only
    // repeats a key (`` `auth:` ``), fails.
    let key_only = regex::Regex::new(r"^`[a-z_.]+:?`[.:]?( where to send\.)?$").expect("regex");
    let undescribed: Vec<String> = generated
        .iter()
        .filter(|(path, _)| path.contains('/'))
        .flat_map(|(path, text)| {
            let key_only = &key_only;
            text.lines()
                .filter(|l| l.starts_with("| `"))
                .filter(move |l| {
                    let description = l.trim_end().trim_end_matches('|').rsplit(" | ").next();
                    l.trim_end().ends_with("|  |")
                        || description.is_some_and(|d| key_only.is_match(d.trim()))
                })
                .map(move |l| format!("{path}: {}", l.split('|').nth(1).unwrap_or("").trim()))
        })
        .collect();
    assert!(
        undescribed.is_empty(),
        "options without a description (add a `///` doc comment to the field): {undescribed:?}"
    );

    // The index gives every type a one-sentence purpose.
    let index = &generated["README.md"];
    let entries: Vec<&str> = index.lines().filter(|l| l.starts_with("- [`")).collect();
    assert!(
        index.contains("(settings.md)") && index.contains("(api.md)"),
        "{index}"
    );
    assert_eq!(entries.len(), count, "{index}");
    let vague: Vec<&&str> = entries
        .iter()
        .filter(|l| {
            let purpose = l.split_once(") ").map_or("", |(_, p)| p);
            purpose.len() < 20 || !purpose.ends_with('.') || purpose.contains("options")
        })
        .collect();
    assert!(
        vague.is_empty(),
        "types without a one-line purpose: {vague:#?}"
    );

    let dedupe = &generated["transforms/dedupe.md"];
    assert!(
        dedupe.contains("| `cache_size` | integer | `5000` | no |"),
        "{dedupe}"
    );
    // A type no example pipeline uses gets an example made from its required options.
    let postgres = &generated["sources/postgres.md"];
    assert!(
        postgres.contains("```yaml\nsources:\n  my_postgres:\n    type: postgres\n"),
        "{postgres}"
    );
    let http = &generated["sinks/http.md"];
    assert!(
        http.contains("| `batch.max_events` |"),
        "nested options are listed: {http}"
    );
}
