//! Which files `--config` names: a file as given, every `*.yaml` and `*.yml` of a
//! folder, or the files a glob pattern matches, each sorted by name so the merge order
//! is stable. Resolved again at each reload, so a file added to a folder is picked up.

use std::path::{Path, PathBuf};

use super::{ConfigError, ConfigErrors, Position};

fn is_pattern(spec: &Path) -> bool {
    spec.to_string_lossy().contains(['*', '?', '['])
}

fn is_pipeline_file(path: &Path) -> bool {
    let visible = path
        .file_name()
        .is_some_and(|n| !n.to_string_lossy().starts_with('.'));
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    visible && yaml && path.is_file()
}

/// The pipeline files `specs` name, in order, each once.
pub fn resolve(specs: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let error = |spec: &Path, message: String| ConfigError {
        position: Position {
            file: spec.to_path_buf(),
            ..Position::default()
        },
        component: None,
        message,
    };
    for spec in specs {
        if spec.is_dir() {
            let found = listing(spec);
            if found.is_empty() {
                errors.push(error(spec, "no .yaml or .yml file in this folder".into()));
            }
            files.extend(found);
        } else if is_pattern(spec) && !spec.exists() {
            let pattern = spec.to_string_lossy();
            // As a shell does: `*` does not match a leading dot.
            let options = glob::MatchOptions {
                require_literal_leading_dot: true,
                ..glob::MatchOptions::new()
            };
            match glob::glob_with(&pattern, options) {
                Ok(paths) => {
                    let mut found: Vec<PathBuf> = paths
                        .filter_map(Result::ok)
                        .filter(|p| p.is_file())
                        .collect();
                    found.sort();
                    if found.is_empty() {
                        errors.push(error(spec, "the pattern matches no file".into()));
                    }
                    files.extend(found);
                }
                Err(e) => errors.push(error(spec, format!("not a valid pattern: {e}"))),
            }
        } else {
            files.push(spec.clone());
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    // One file named twice (`-c . -c p.yaml`, a symlink beside its target) is read once.
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    Ok(files)
}

/// The `.yaml` and `.yml` files of a folder, by name (also what the watcher compares
/// to see files added or removed).
pub(crate) fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| is_pipeline_file(p))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The folders among `specs`: watched for files added or removed.
pub(crate) fn folders(specs: &[PathBuf]) -> Vec<PathBuf> {
    specs.iter().filter(|s| s.is_dir()).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_patterns_name_their_yaml_files_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["b.yaml", "a.yml", "c.txt", ".hidden.yaml"] {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        std::fs::create_dir(dir.path().join("sub.yaml")).expect("a folder named like a file");
        let files = resolve(&[dir.path().to_path_buf()]).expect("resolves");
        assert_eq!(files, [dir.path().join("a.yml"), dir.path().join("b.yaml")]);

        let pattern = dir.path().join("*.yaml");
        let files = resolve(&[pattern, dir.path().join("b.yaml")]).expect("resolves");
        assert_eq!(files, [dir.path().join("b.yaml")], "each file once");
        std::os::unix::fs::symlink(dir.path().join("b.yaml"), dir.path().join("link.yaml"))
            .expect("symlink");
        let files = resolve(&[dir.path().to_path_buf()]).expect("resolves");
        assert_eq!(
            files.len(),
            2,
            "a symlink to a file read already: {files:?}"
        );
        let literal = dir.path().join("src[prod].yaml");
        std::fs::write(&literal, "").expect("write");
        assert_eq!(
            resolve(std::slice::from_ref(&literal)).expect("resolves"),
            [literal],
            "an existing file is a file, brackets or not"
        );

        let empty = tempfile::tempdir().expect("tempdir");
        let e = resolve(&[empty.path().to_path_buf(), dir.path().join("*.json")])
            .expect_err("nothing found");
        assert_eq!(e.0.len(), 2);
        assert!(e.0[0].message.contains("no .yaml or .yml file"));
        assert!(e.0[1].message.contains("matches no file"));
    }
}
