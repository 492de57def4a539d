//! Line framing: bytes read from a file in, complete lines with their offsets out.
//!
//! A line is emitted only once its newline has been read, so every emitted line has an
//! end offset on a line boundary and a checkpoint never lands mid-line. A line longer than
//! `max_line_bytes` keeps its first `max_line_bytes` bytes (the rest is discarded as it
//! arrives, so memory stays bounded) and is emitted, marked truncated, at its newline.
//! One trailing `\r` is removed. Empty lines are skipped (their bytes still count).

/// A complete line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    pub(crate) bytes: &'a [u8],
    /// Offset of the line's first byte in the file.
    pub(crate) offset: u64,
    /// Offset just past its newline.
    pub(crate) end: u64,
    pub(crate) truncated: bool,
}

#[derive(Debug)]
pub(crate) struct Framer {
    max: usize,
    /// The partial line (at most `max` bytes of it).
    buf: Vec<u8>,
    /// Offset of the current line's first byte: everything before it has been framed.
    start: u64,
    /// Offset just past the last byte fed.
    pos: u64,
    truncated: bool,
}

impl Framer {
    pub(crate) fn new(max: usize, at: u64) -> Self {
        Self {
            max: max.max(1),
            buf: Vec::new(),
            start: at,
            pos: at,
            truncated: false,
        }
    }

    /// Forgets any partial line and continues at `at`.
    pub(crate) fn reset(&mut self, at: u64) {
        self.buf.clear();
        self.start = at;
        self.pos = at;
        self.truncated = false;
    }

    /// Where the current (incomplete) line begins: all bytes before it were framed.
    pub(crate) fn line_start(&self) -> u64 {
        self.start
    }

    /// Where the next byte to feed sits in the file.
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// Whether a partial line is held.
    pub(crate) fn has_partial(&self) -> bool {
        self.pos > self.start
    }

    /// Frames `chunk`, the bytes at [`Framer::pos`], calling `emit` for each complete line.
    pub(crate) fn feed(&mut self, chunk: &[u8], mut emit: impl FnMut(Line<'_>)) {
        let mut rest = chunk;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let end = self.pos + i as u64 + 1;
            let part = &rest[..i];
            if self.buf.is_empty() && !self.truncated {
                // The common case: the whole line is inside this chunk, no copy.
                let truncated = part.len() > self.max;
                let bytes = strip_cr(&part[..part.len().min(self.max)], truncated);
                if !bytes.is_empty() {
                    emit(Line {
                        bytes,
                        offset: self.start,
                        end,
                        truncated,
                    });
                }
            } else {
                self.append(part);
                let bytes = strip_cr(&self.buf, self.truncated);
                if !bytes.is_empty() {
                    emit(Line {
                        bytes,
                        offset: self.start,
                        end,
                        truncated: self.truncated,
                    });
                }
                self.buf.clear();
                self.truncated = false;
            }
            self.pos = end;
            self.start = end;
            rest = &rest[i + 1..];
        }
        self.append(rest);
        self.pos += rest.len() as u64;
    }

    /// Emits the partial line as if it had ended (a file released without a final
    /// newline), then starts afresh after it.
    pub(crate) fn flush_partial(&mut self, mut emit: impl FnMut(Line<'_>)) {
        if self.has_partial() && !self.buf.is_empty() {
            emit(Line {
                bytes: &self.buf,
                offset: self.start,
                end: self.pos,
                truncated: self.truncated,
            });
        }
        self.reset(self.pos);
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = self.max.saturating_sub(self.buf.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// A `\r` before the newline belongs to the line ending, unless the line was cut (then
/// the byte before the newline is not in the kept part).
fn strip_cr(bytes: &[u8], truncated: bool) -> &[u8] {
    match bytes.split_last() {
        Some((b'\r', rest)) if !truncated => rest,
        _ => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(max: usize, chunks: &[&[u8]]) -> Vec<(String, u64, u64, bool)> {
        let mut f = Framer::new(max, 0);
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, |l| {
                out.push((
                    String::from_utf8_lossy(l.bytes).into_owned(),
                    l.offset,
                    l.end,
                    l.truncated,
                ))
            });
        }
        out
    }

    #[test]
    fn lines_split_across_chunks_keep_their_offsets() {
        let out = frame(100, &[b"ab", b"c\nde", b"f\r\n\n", b"g\nhh"]);
        assert_eq!(
            out,
            vec![
                ("abc".into(), 0, 4, false),
                ("def".into(), 4, 9, false),
                ("g".into(), 10, 12, false),
            ]
        );
    }

    #[test]
    fn long_lines_are_truncated_at_max_line_bytes_and_marked() {
        let out = frame(4, &[b"0123456789\nabcd\nxy", b"zzzzzz", b"zz\nok\n"]);
        assert_eq!(
            out,
            vec![
                ("0123".into(), 0, 11, true),
                ("abcd".into(), 11, 16, false),
                ("xyzz".into(), 16, 27, true),
                ("ok".into(), 27, 30, false),
            ]
        );
    }

    #[test]
    fn partial_lines_wait_for_their_newline_or_a_flush() {
        let mut f = Framer::new(100, 7);
        let mut out = Vec::new();
        f.feed(b"half", |l| out.push(l.offset));
        assert!(out.is_empty());
        assert!(f.has_partial());
        assert_eq!((f.line_start(), f.pos()), (7, 11));
        f.flush_partial(|l| out.push(l.offset));
        assert_eq!(out, vec![7]);
        assert_eq!((f.line_start(), f.pos()), (11, 11));
    }
}
