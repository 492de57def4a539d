//! Confinement: a rendered path stays under its template's static directory.
//!
//! `path` is trusted (the operator wrote it); the values filled into it come from events
//! and are not. The *root* is the directory part of `path` before its first placeholder
//! (`{{ … }}` or a strftime code): `/var/log/x/` for `/var/log/x/{{ service }}.log`.
//! Everything a rendering adds below the root must be plain names: no `..` or `.`
//! segment, no empty segment (a leading `/` in a value), no NUL or control character, no
//! name over `NAME_MAX`. On disk, no directory below the root and not the file itself may
//! be a symbolic link, and the file must be a regular file; directories below the root
//! are created one at a time, never through a link. Any violation rejects the event with
//! the reason ([`OpenError::Reject`]); only I/O errors that another attempt may not meet
//! again are [`OpenError::Io`].

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Longest file name (one segment) Linux file systems take.
pub(crate) const NAME_MAX: usize = 255;
/// Longest path the kernel takes, less its NUL.
pub(crate) const PATH_MAX: usize = 4095;

/// The directory part of `pattern` before its first placeholder, with its trailing `/`
/// (empty when the first placeholder is in the first segment: the working directory).
pub(crate) fn root_of(pattern: &str) -> &str {
    let first = [pattern.find("{{"), pattern.find('%')]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(pattern.len());
    match pattern[..first].rfind('/') {
        Some(slash) => &pattern[..=slash],
        None => "",
    }
}

/// Checks that `rendered` lies under `root` (as [`root_of`] gives it) and returns the
/// part below it.
pub(crate) fn confine<'a>(root: &str, rendered: &'a str) -> Result<&'a str, String> {
    let show = || shown(rendered);
    if rendered.len() > PATH_MAX {
        return Err(format!(
            "the rendered path `{}` is longer than {PATH_MAX} bytes",
            show()
        ));
    }
    let below = rendered
        .strip_prefix(root)
        .ok_or_else(|| format!("the rendered path `{}` is not under `{root}`", show()))?;
    for segment in below.split('/') {
        let why = if segment.is_empty() {
            "has an empty segment (`//`, or a value that starts or ends with `/`)"
        } else if segment == "." || segment == ".." {
            "has a `.` or `..` segment"
        } else if segment.contains('\0') {
            "contains a NUL byte"
        } else if segment.chars().any(char::is_control) {
            "contains a control character"
        } else if segment.len() > NAME_MAX {
            "has a file name longer than 255 bytes"
        } else {
            continue;
        };
        return Err(format!(
            "the rendered path `{}` {why}; it must stay under `{root}`",
            show()
        ));
    }
    Ok(below)
}

/// A path as it may appear in a reason or a log line: escaped, at most 200 characters.
fn shown(path: &str) -> String {
    let mut s: String = path.chars().take(200).collect::<String>();
    if s.len() < path.len() {
        s.push('…');
    }
    s.escape_debug().to_string()
}

/// Why a file could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The event's path is not acceptable: it goes to the dead letter, never retried.
    #[error("{0}")]
    Reject(String),
    /// The file system failed (no space, no permission on the root…): retried.
    #[error("cannot open `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// I/O errors caused by the name itself, which no retry would change.
pub(crate) fn classify(path: &Path, source: std::io::Error) -> OpenError {
    let by_name = matches!(
        source.raw_os_error(),
        Some(libc::ENAMETOOLONG | libc::EISDIR | libc::ENOTDIR | libc::ELOOP | libc::EILSEQ)
    );
    if by_name {
        OpenError::Reject(format!(
            "cannot open `{}`: {source}",
            shown(&path.to_string_lossy())
        ))
    } else {
        OpenError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Checks each directory of `below` under `root` is a real directory (not a symbolic
/// link); missing ones are created when `create`, else `Ok(false)` says one is missing.
pub(crate) fn walk_dirs(root: &Path, below: &str, create: bool) -> Result<bool, OpenError> {
    let mut dir = root.to_path_buf();
    let mut segments: Vec<&str> = below.split('/').collect();
    segments.pop();
    for segment in segments {
        dir.push(segment);
        let mut created = false;
        loop {
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(OpenError::Reject(format!(
                        "`{}` is a symbolic link; paths may not leave `{}` through one",
                        shown(&dir.to_string_lossy()),
                        root.display()
                    )));
                }
                Ok(m) if m.is_dir() => break,
                Ok(_) => {
                    return Err(OpenError::Reject(format!(
                        "`{}` is not a directory",
                        shown(&dir.to_string_lossy())
                    )));
                }
                Err(e) if e.kind() == ErrorKind::NotFound && !create => return Ok(false),
                // Created by another writer between the two calls: look again, once.
                Err(e) if e.kind() == ErrorKind::NotFound && !created => {
                    created = true;
                    match std::fs::create_dir(&dir) {
                        Ok(()) => break,
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(classify(&dir, e)),
                    }
                }
                Err(e) => return Err(classify(&dir, e)),
            }
        }
    }
    Ok(true)
}

/// Opens `root/below` for appending, creating it and the directories on the way (see
/// the module doc). Returns whether this call created the file.
pub(crate) fn open_confined(root: &Path, below: &str) -> Result<(File, bool), OpenError> {
    if !root.as_os_str().is_empty() {
        // The root is the operator's: links in it are theirs to make.
        std::fs::create_dir_all(root).map_err(|source| OpenError::Io {
            path: root.to_path_buf(),
            source,
        })?;
    }
    walk_dirs(root, below, true)?;
    let path = root.join(below);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if !m.is_file() => {
            return Err(OpenError::Reject(format!(
                "`{}` exists and is not a regular file",
                shown(&path.to_string_lossy())
            )));
        }
        _ => {}
    }
    let mut options = OpenOptions::new();
    // O_NOFOLLOW: a link put in place after the check above fails with ELOOP instead of
    // being followed. O_NONBLOCK: a FIFO put there does not block the sink (it has no
    // effect on regular files).
    options
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let (file, created) = match options.clone().create_new(true).open(&path) {
        Ok(f) => (f, true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            (options.open(&path).map_err(|e| classify(&path, e))?, false)
        }
        Err(e) => return Err(classify(&path, e)),
    };
    let meta = file.metadata().map_err(|source| OpenError::Io {
        path: path.clone(),
        source,
    })?;
    if !meta.is_file() {
        return Err(OpenError::Reject(format!(
            "`{}` is not a regular file",
            shown(&path.to_string_lossy())
        )));
    }
    Ok((file, created))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_directory_before_the_first_placeholder() {
        assert_eq!(root_of("/var/log/x/{{ service }}.log"), "/var/log/x/");
        assert_eq!(root_of("/var/log/x/app-{{ service }}.log"), "/var/log/x/");
        assert_eq!(root_of("/data/%Y/{{ s }}/a.log"), "/data/");
        assert_eq!(root_of("{{ s }}.log"), "");
        assert_eq!(root_of("out/plain.log"), "out/");
    }

    #[test]
    fn renderings_that_leave_the_root_are_refused() {
        let root = "/data/x/";
        assert_eq!(confine(root, "/data/x/db.log"), Ok("db.log"));
        assert_eq!(confine(root, "/data/x/a/b.log"), Ok("a/b.log"));
        assert_eq!(
            confine(root, "/data/x/%2e%2e.log"),
            Ok("%2e%2e.log"),
            "an encoded dot is a plain name on disk"
        );
        for (bad, why) in [
            ("/data/x/../../ESCAPED.log", "`..`"),
            ("/data/x/a/../../b.log", "`..`"),
            ("/data/x/./a.log", "`..`"),
            ("/data/x//etc/passwd.log", "empty segment"),
            ("/data/x/a/", "empty segment"),
            ("/data/x/nul\0.log", "NUL"),
            ("/data/x/new\nline.log", "control character"),
            ("/data/y/a.log", "not under"),
        ] {
            let e = confine(root, bad).expect_err(bad);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let long = format!("/data/x/{}.log", "a".repeat(300));
        assert!(
            confine(root, &long)
                .expect_err("long")
                .contains("255 bytes")
        );
        let deep = format!("/data/x/{}", "a/".repeat(2100));
        assert!(confine(root, &deep).expect_err("deep").contains("4095"));
        // A relative root: the working directory.
        assert!(confine("", "/etc/passwd").is_err());
        assert_eq!(confine("", "db.log"), Ok("db.log"));
    }

    #[test]
    fn links_and_special_files_below_the_root_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("x");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");
        std::os::unix::fs::symlink(outside.join("target.log"), root.join("file.log"))
            .expect("symlink");
        std::fs::create_dir(root.join("dir.log")).expect("mkdir");

        for (below, why) in [
            ("link/pwn.log", "symbolic link"),
            ("link/deeper/pwn.log", "symbolic link"),
            ("file.log", "not a regular file"),
            ("dir.log", "not a regular file"),
        ] {
            match open_confined(&root, below) {
                Err(OpenError::Reject(e)) => assert!(e.contains(why), "{below}: {e}"),
                other => panic!("{below}: {other:?}"),
            }
        }
        assert_eq!(
            std::fs::read_dir(&outside).expect("outside").count(),
            0,
            "nothing was created through the links"
        );

        let (_, created) = open_confined(&root, "a/b/c.log").expect("opens");
        assert!(created);
        let (_, created) = open_confined(&root, "a/b/c.log").expect("opens again");
        assert!(!created, "an existing file is appended to, not created");
        assert!(root.join("a/b/c.log").is_file());
    }
}
