//! File identity: `(device, inode)` plus a checksum of the file's first line.
//!
//! The inode follows a file across renames (rename rotation keeps it); the head checksum
//! tells a reused inode from the file that had it, notices a file rewritten in place
//! (copytruncate), and recognizes a copy of a known file under a new inode. The checksum
//! is FNV-1a, written out here because it is persisted in checkpoints and must not
//! change between Rust releases (std's `DefaultHasher` may).

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};

/// How many leading bytes at most the head checksum covers.
pub(crate) const HEAD_BYTES: usize = 256;

/// Bytes before an offset whose checksum vouches for a copy continuing there.
pub(super) const TAIL: usize = 256;

/// Where a file lives on disk; stable across renames on one filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl FileId {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

use crate::hashing::fnv1a;

/// The checksum of the first line (newline included), or of the first [`HEAD_BYTES`]
/// when the first line is longer. `None` while the file holds less than that and no
/// newline yet: its identity is not settled, and the inode alone stands for it.
pub(crate) fn head_checksum(file: &File) -> std::io::Result<Option<u64>> {
    let mut buf = [0u8; HEAD_BYTES];
    let mut filled = 0;
    while filled < HEAD_BYTES {
        let n = file.read_at(&mut buf[filled..], filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let head = &buf[..filled];
    Ok(match memchr::memchr(b'\n', head) {
        Some(i) => Some(fnv1a(&head[..=i])),
        None if filled == HEAD_BYTES => Some(fnv1a(head)),
        None => None,
    })
}

/// The checksum of the bytes before `at` in `file`.
pub(super) fn tail_at(file: &File, at: u64) -> Option<u64> {
    let want = TAIL.min(at as usize);
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..], at - want as u64 + filled as u64) {
            Ok(0) | Err(_) => return None,
            Ok(n) => filled += n,
        }
    }
    Some(fnv1a(&buf))
}

/// Whether `copy` holds the same bytes as `original` over `[0, len)`, judged from the
/// first 64 KiB and the last 4 KiB of that range. Two files that merely share a first
/// line (a common CSV header, say) differ there; a copy made by copytruncate does not.
pub(crate) fn same_content(original: &File, copy: &File, len: u64) -> std::io::Result<bool> {
    const HEAD: u64 = 64 * 1024;
    const TAIL: u64 = 4 * 1024;
    let head = len.min(HEAD);
    if !same_range(original, copy, 0, head)? {
        return Ok(false);
    }
    let tail_start = len.saturating_sub(TAIL).max(head);
    same_range(original, copy, tail_start, len - tail_start)
}

fn same_range(a: &File, b: &File, start: u64, len: u64) -> std::io::Result<bool> {
    let (mut x, mut y) = (vec![0u8; len as usize], vec![0u8; len as usize]);
    read_full(a, &mut x, start)?;
    read_full(b, &mut y, start)?;
    Ok(x == y)
}

fn read_full(file: &File, buf: &mut [u8], start: u64) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read_at(&mut buf[filled..], start + filled as u64)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn head_checksum_settles_at_the_first_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let mut f = File::create(&path).expect("create");
        let r = File::open(&path).expect("open");
        assert_eq!(head_checksum(&r).expect("read"), None);
        f.write_all(b"first").expect("write");
        assert_eq!(head_checksum(&r).expect("read"), None);
        f.write_all(b" line\nsecond\n").expect("write");
        let c = head_checksum(&r).expect("read");
        assert_eq!(c, Some(fnv1a(b"first line\n")));
        f.write_all(b"more\n").expect("write");
        assert_eq!(
            head_checksum(&r).expect("read"),
            c,
            "growth keeps the identity"
        );
    }

    #[test]
    fn a_long_first_line_is_cut_at_head_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        std::fs::write(&path, vec![b'x'; 1000]).expect("write");
        let r = File::open(&path).expect("open");
        assert_eq!(
            head_checksum(&r).expect("read"),
            Some(fnv1a(&[b'x'; HEAD_BYTES]))
        );
    }

    #[test]
    fn same_content_tells_a_copy_from_a_shared_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let c = dir.path().join("c");
        let body: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        std::fs::write(&a, &body).expect("write");
        std::fs::write(&b, &body).expect("write");
        let mut other = body.clone();
        let n = other.len();
        other[n - 3] = b'#';
        std::fs::write(&c, &other).expect("write");
        let (fa, fb, fc) = (
            File::open(&a).expect("a"),
            File::open(&b).expect("b"),
            File::open(&c).expect("c"),
        );
        assert!(same_content(&fa, &fb, body.len() as u64).expect("compare"));
        assert!(!same_content(&fa, &fc, body.len() as u64).expect("compare"));
    }
}
