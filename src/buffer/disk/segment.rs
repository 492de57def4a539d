//! Segment files: append-only sequences of checksummed records.
//!
//! A record is `magic (4) | id (u64 LE) | length (u32 LE) | crc32 (u32 LE) | payload`,
//! the checksum covering id, length and payload. Ids grow by one per record across
//! segments. The magic lets a reader find the next intact record after a damaged one:
//! it scans forward for the magic and accepts a candidate only if its checksum holds.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub(crate) const MAGIC: [u8; 4] = *b"SLR1";
pub(crate) const HEADER: usize = 20;
/// Larger lengths are damage, not data: the writer refuses events this big.
pub(crate) const MAX_PAYLOAD: usize = 64 << 20;

const READ_CHUNK: usize = 256 << 10;

/// Appends one framed record to `out`.
pub(crate) fn frame(id: u64, payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u32;
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(id, len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn checksum(id: u64, len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&id.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

pub(crate) fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

/// Sequence numbers of the segments in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_suffix(".seg")
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// What is at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// An intact record; the next one starts at `end`.
    Record { id: u64, payload: Vec<u8>, end: u64 },
    /// Damaged bytes; the next intact record starts at `resume`, or none does before
    /// the limit (`None`).
    Damaged { resume: Option<u64> },
    /// Nothing more below the limit.
    End,
}

/// Reads records of one segment through a window of its bytes.
pub(crate) struct SegmentReader {
    file: File,
    /// File bytes starting at offset `base`.
    window: Vec<u8>,
    base: u64,
}

impl SegmentReader {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: File::open(path)?,
            window: Vec::new(),
            base: 0,
        })
    }

    /// Makes the window cover `[offset, offset + n)` as far as the file and `limit`
    /// allow; returns the bytes available from `offset`.
    fn fill(&mut self, offset: u64, n: usize, limit: u64) -> io::Result<&[u8]> {
        if offset < self.base || offset > self.base + self.window.len() as u64 {
            self.window.clear();
            self.base = offset;
        } else if offset - self.base > (1 << 20) {
            // Drop what was consumed so the window stays small.
            let consumed = (offset - self.base) as usize;
            self.window.drain(..consumed);
            self.base = offset;
        }
        let want_end = offset.saturating_add(n as u64).min(limit);
        while self.base + (self.window.len() as u64) < want_end {
            let at = self.base + self.window.len() as u64;
            let room = (want_end - at).max(READ_CHUNK as u64).min(limit - at) as usize;
            let old = self.window.len();
            self.window.resize(old + room, 0);
            let got = self.file.read_at(&mut self.window[old..], at)?;
            self.window.truncate(old + got);
            if got == 0 {
                break;
            }
        }
        let start = (offset - self.base) as usize;
        let end = ((want_end - self.base) as usize).min(self.window.len());
        Ok(&self.window[start.min(end)..end])
    }

    /// The record at `offset`, reading no further than `limit` (the committed length of
    /// the segment being written, or `u64::MAX` for a finished one).
    pub(crate) fn step(&mut self, offset: u64, limit: u64) -> io::Result<Step> {
        match self.record_at(offset, limit)? {
            Some(Ok(step)) => Ok(step),
            None => Ok(Step::End),
            Some(Err(())) => Ok(Step::Damaged {
                resume: self.resync(offset + 1, limit)?,
            }),
        }
    }

    /// `None`: nothing at all at `offset`; `Some(Err)`: something, but not an intact
    /// record.
    fn record_at(&mut self, offset: u64, limit: u64) -> io::Result<Option<Result<Step, ()>>> {
        let header = self.fill(offset, HEADER, limit)?;
        if header.is_empty() {
            return Ok(None);
        }
        if header.len() < HEADER || header[..4] != MAGIC {
            return Ok(Some(Err(())));
        }
        let id = u64::from_le_bytes(header[4..12].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(header[12..16].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(header[16..20].try_into().unwrap_or_default());
        if len as usize > MAX_PAYLOAD {
            return Ok(Some(Err(())));
        }
        let whole = self.fill(offset, HEADER + len as usize, limit)?;
        if whole.len() < HEADER + len as usize {
            return Ok(Some(Err(())));
        }
        let payload = &whole[HEADER..];
        if checksum(id, len, payload) != crc {
            return Ok(Some(Err(())));
        }
        Ok(Some(Ok(Step::Record {
            id,
            payload: payload.to_vec(),
            end: offset + (HEADER + len as usize) as u64,
        })))
    }

    /// The offset of the next intact record at or after `from`.
    fn resync(&mut self, mut from: u64, limit: u64) -> io::Result<Option<u64>> {
        loop {
            let chunk = self.fill(from, READ_CHUNK, limit)?;
            if chunk.len() < MAGIC.len() {
                return Ok(None);
            }
            let Some(at) = memchr::memmem::find(chunk, &MAGIC) else {
                // The magic may straddle the chunk's end.
                from += (chunk.len() - (MAGIC.len() - 1)) as u64;
                continue;
            };
            let candidate = from + at as u64;
            if let Some(Ok(_)) = self.record_at(candidate, limit)? {
                return Ok(Some(candidate));
            }
            from = candidate + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(records: &[(u64, &[u8])]) -> (tempfile::TempDir, PathBuf, Vec<u64>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = path(dir.path(), 1);
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for (id, payload) in records {
            offsets.push(bytes.len() as u64);
            frame(*id, payload, &mut bytes);
        }
        File::create(&p)
            .and_then(|mut f| f.write_all(&bytes))
            .expect("write");
        (dir, p, offsets)
    }

    fn read_all(p: &Path) -> (Vec<u64>, usize) {
        let mut r = SegmentReader::open(p).expect("open");
        let (mut ids, mut damaged, mut at) = (Vec::new(), 0, 0);
        loop {
            match r.step(at, u64::MAX).expect("read") {
                Step::Record { id, end, .. } => {
                    ids.push(id);
                    at = end;
                }
                Step::Damaged { resume } => {
                    damaged += 1;
                    match resume {
                        Some(next) => at = next,
                        None => break,
                    }
                }
                Step::End => break,
            }
        }
        (ids, damaged)
    }

    #[test]
    fn reads_back_records_in_order() {
        let (_d, p, _) = write(&[(1, b"a"), (2, b""), (3, &[7u8; 300_000])]);
        assert_eq!(read_all(&p), (vec![1, 2, 3], 0));
    }

    #[test]
    fn a_flipped_byte_loses_only_its_record() {
        let (_d, p, offsets) = write(&[(1, b"first"), (2, b"second"), (3, b"third")]);
        let mut bytes = std::fs::read(&p).expect("read");
        // One byte of record 2's payload, then one of record 3's length field.
        bytes[offsets[1] as usize + HEADER + 1] ^= 0x40;
        std::fs::write(&p, &bytes).expect("write");
        assert_eq!(read_all(&p), (vec![1, 3], 1));
        bytes[offsets[2] as usize + 13] ^= 0x01;
        std::fs::write(&p, &bytes).expect("write");
        assert_eq!(read_all(&p), (vec![1], 1));
    }

    #[test]
    fn a_torn_tail_is_damage_with_nothing_after_it() {
        let (_d, p, _) = write(&[(1, b"first"), (2, b"second")]);
        let bytes = std::fs::read(&p).expect("read");
        std::fs::write(&p, &bytes[..bytes.len() - 3]).expect("write");
        assert_eq!(read_all(&p), (vec![1], 1));
    }

    #[test]
    fn the_limit_hides_what_is_not_committed() {
        let (_d, p, offsets) = write(&[(1, b"first"), (2, b"second")]);
        let mut r = SegmentReader::open(&p).expect("open");
        assert!(matches!(
            r.step(0, offsets[1]).expect("read"),
            Step::Record { id: 1, .. }
        ));
        assert_eq!(r.step(offsets[1], offsets[1]).expect("read"), Step::End);
    }
}
