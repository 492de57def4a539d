//! Container runtime log files for the `file` source: the CRI format (containerd,
//! CRI-O: `/var/log/containers/*.log` on Kubernetes) and Docker's `json-file`.
//!
//! Runtimes split long lines: CRI writes fragments tagged `P` (partial) until one
//! tagged `F` (full), Docker writes `log` values without their trailing newline (every
//! 16 KiB). The [`Joiner`] puts a line back together per stream (stdout and stderr
//! fragments may interleave in one file) within `max_line_bytes`, and keeps the
//! runtime's `stream` and timestamp. It joins bytes, not text: a runtime splits at a
//! byte count, so a character may straddle two fragments. A line in neither shape is
//! passed on whole and counted, never dropped.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::message::LineMeta;

/// A pending fragment not continued for this long is emitted as it is (its writer died
/// mid-line); a rotated file's pending fragments are emitted when it is released.
const PARTIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer stream names are no runtime's: the line is not in the format.
const MAX_STREAM_NAME: usize = 16;
/// Streams with a pending fragment; CRI and Docker have two.
const MAX_PENDING_STREAMS: usize = 4;
/// The size of the pieces runtimes split lines into (containerd's and Docker's
/// default): a raw line must be readable whole even when `max_line_bytes` is smaller.
const RUNTIME_PIECE: usize = 16 * 1024;

/// Which runtime format the lines are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runtime {
    Cri,
    Docker,
}

impl Runtime {
    /// How long a raw line of the file may be before framing cuts it: room for a whole
    /// runtime piece (Docker's JSON escaping may make one six times longer) plus the
    /// runtime's own fields, so that `max_line_bytes` bounds the joined line, not the
    /// runtime's wrapping of each piece.
    pub(crate) fn raw_line_limit(self, max_line_bytes: usize) -> usize {
        let piece = max_line_bytes.max(RUNTIME_PIECE);
        match self {
            Self::Cri => piece + 256,
            Self::Docker => piece.saturating_mul(6).saturating_add(1024),
        }
    }
}

/// One framed line of the file.
pub(crate) struct RawLine<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) offset: u64,
    pub(crate) end: u64,
    /// Framing cut it at the raw line limit.
    pub(crate) truncated: bool,
}

/// A line put back together (or a line in neither format, passed on whole).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Joined {
    pub(crate) bytes: Vec<u8>,
    pub(crate) offset: u64,
    pub(crate) end: u64,
    /// `None` for a line in neither format.
    pub(crate) meta: Option<LineMeta>,
    /// Cut at `max_line_bytes` (or by framing).
    pub(crate) cut: bool,
}

/// One line of the file, parsed.
struct Fragment<'a> {
    stream: std::borrow::Cow<'a, str>,
    time: Option<std::borrow::Cow<'a, str>>,
    content: std::borrow::Cow<'a, [u8]>,
    partial: bool,
}

fn parse_cri(line: &[u8]) -> Option<Fragment<'_>> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let stream = std::str::from_utf8(fields.next()?).ok()?;
    // An empty full line is written as `<time> <stream> F` by some runtimes.
    let tag = fields.next()?;
    let content = fields.next().unwrap_or_default();
    let partial = match tag.split(|&b| b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return None,
    };
    let plausible_time = time.len() >= 20 && time.as_bytes()[..4].iter().all(u8::is_ascii_digit);
    let plausible_stream = !stream.is_empty()
        && stream.len() <= MAX_STREAM_NAME
        && stream.bytes().all(|b| b.is_ascii_alphanumeric());
    if !plausible_time || !plausible_stream {
        return None;
    }
    Some(Fragment {
        stream: stream.into(),
        time: Some(time.into()),
        content: content.into(),
        partial,
    })
}

#[derive(Deserialize)]
struct DockerLine<'a> {
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    stream: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    time: Option<std::borrow::Cow<'a, str>>,
}

fn parse_docker(line: &[u8]) -> Option<Fragment<'_>> {
    let d: DockerLine<'_> = serde_json::from_slice(line).ok()?;
    let stream = d.stream.unwrap_or(std::borrow::Cow::Borrowed("stdout"));
    if stream.len() > MAX_STREAM_NAME {
        return None;
    }
    let (content, partial) = match d.log {
        std::borrow::Cow::Borrowed(log) => match log.strip_suffix('\n') {
            Some(c) => (std::borrow::Cow::Borrowed(c.as_bytes()), false),
            None => (std::borrow::Cow::Borrowed(log.as_bytes()), true),
        },
        std::borrow::Cow::Owned(mut log) => {
            let partial = !log.ends_with('\n');
            if !partial {
                log.pop();
            }
            (std::borrow::Cow::Owned(log.into_bytes()), partial)
        }
    };
    Some(Fragment {
        stream,
        time: d.time,
        content,
        partial,
    })
}

/// A pending line: the fragments so far, and when the last one came.
struct Pending {
    line: Joined,
    last: Instant,
}

/// Joins one file's fragments into lines.
pub(crate) struct Joiner {
    runtime: Runtime,
    max_bytes: usize,
    pending: Vec<Pending>,
}

/// What [`Joiner::push`] saw that the caller counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Noted {
    /// The line was in neither format; it was passed on whole.
    pub(crate) malformed: bool,
}

impl Joiner {
    pub(crate) fn new(runtime: Runtime, max_bytes: usize) -> Self {
        Self {
            runtime,
            max_bytes: max_bytes.max(1),
            pending: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Where the earliest pending line begins: the file from there on is read but not
    /// all emitted, so no checkpoint may pass it.
    pub(crate) fn pending_offset(&self) -> Option<u64> {
        self.pending.iter().map(|p| p.line.offset).min()
    }

    pub(crate) fn clear(&mut self) {
        self.pending.clear();
    }

    /// Takes one framed line; completed lines go to `out`.
    pub(crate) fn push(&mut self, raw: RawLine<'_>, now: Instant, out: &mut Vec<Joined>) -> Noted {
        let fragment = match self.runtime {
            Runtime::Cri => parse_cri(raw.bytes),
            Runtime::Docker => parse_docker(raw.bytes),
        };
        let Some(fragment) = fragment else {
            out.push(Joined {
                bytes: raw.bytes.to_vec(),
                offset: raw.offset,
                end: raw.end,
                meta: None,
                cut: raw.truncated,
            });
            return Noted { malformed: true };
        };
        let at = self.pending.iter().position(|p| {
            p.line
                .meta
                .as_ref()
                .is_some_and(|m| m.stream == fragment.stream)
        });
        let mut line = match at {
            Some(i) => self.pending.remove(i).line,
            None => Joined {
                bytes: Vec::new(),
                offset: raw.offset,
                end: raw.end,
                meta: Some(LineMeta {
                    stream: fragment.stream.into_owned(),
                    time: fragment.time.map(std::borrow::Cow::into_owned),
                }),
                cut: false,
            },
        };
        line.end = raw.end;
        if !line.cut {
            let room = self.max_bytes.saturating_sub(line.bytes.len());
            let take = fragment.content.len().min(room);
            line.bytes.extend_from_slice(&fragment.content[..take]);
            // A fragment framing cut lost its tail: what follows would not continue it.
            line.cut = take < fragment.content.len() || raw.truncated;
        }
        if fragment.partial {
            if self.pending.len() >= MAX_PENDING_STREAMS {
                // Not a runtime's file: make room rather than grow.
                out.push(self.pending.remove(0).line);
            }
            self.pending.push(Pending { line, last: now });
        } else {
            out.push(line);
        }
        Noted::default()
    }

    /// Emits pending lines not continued for a while (all of them with `force`), in the
    /// order they began.
    pub(crate) fn flush(&mut self, now: Instant, force: bool, out: &mut Vec<Joined>) {
        let (due, kept): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| force || now.saturating_duration_since(p.last) >= PARTIAL_TIMEOUT);
        self.pending = kept;
        let mut due: Vec<Joined> = due.into_iter().map(|p| p.line).collect();
        due.sort_by_key(|l| l.offset);
        out.extend(due);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(runtime: Runtime, max: usize, lines: &[&[u8]]) -> (Vec<Joined>, Joiner, bool) {
        let mut joiner = Joiner::new(runtime, max);
        let mut out = Vec::new();
        let mut offset = 0u64;
        let mut malformed = false;
        let now = Instant::now();
        for l in lines {
            let end = offset + l.len() as u64 + 1;
            let raw = RawLine {
                bytes: l,
                offset,
                end,
                truncated: false,
            };
            malformed |= joiner.push(raw, now, &mut out).malformed;
            offset = end;
        }
        (out, joiner, malformed)
    }

    fn text(j: &Joined) -> &str {
        std::str::from_utf8(&j.bytes).expect("utf-8")
    }

    fn meta(stream: &str, time: &str) -> Option<LineMeta> {
        Some(LineMeta {
            stream: stream.into(),
            time: Some(time.into()),
        })
    }

    #[test]
    fn cri_partial_fragments_join_into_one_line_per_stream() {
        let lines: [&[u8]; 5] = [
            b"2026-12-05T10:00:00.000000001Z stdout P hello ",
            b"2026-12-05T10:00:00.000000002Z stderr F oops",
            b"2026-12-05T10:00:00.000000003Z stdout P big ",
            b"2026-12-05T10:00:00.000000004Z stdout F world",
            b"2026-12-05T10:00:00.000000005Z stdout F",
        ];
        let (out, joiner, malformed) = run(Runtime::Cri, 1000, &lines);
        assert!(!malformed);
        assert!(joiner.is_empty());
        let texts: Vec<_> = out.iter().map(text).collect();
        assert_eq!(texts, ["oops", "hello big world", ""]);
        assert_eq!(
            out[1].meta,
            meta("stdout", "2026-12-05T10:00:00.000000001Z")
        );
        assert_eq!(
            out[0].meta,
            meta("stderr", "2026-12-05T10:00:00.000000002Z")
        );
        // The joined line spans its fragments: from the first's start to the last's end.
        assert_eq!(out[1].offset, 0);
        let four: u64 = lines[..4].iter().map(|l| l.len() as u64 + 1).sum();
        assert_eq!(out[1].end, four);
    }

    #[test]
    fn a_character_split_between_fragments_is_joined_whole() {
        let lines: [&[u8]; 2] = [
            b"2026-12-05T10:00:00Z stdout P caf\xc3",
            b"2026-12-05T10:00:00Z stdout F \xa9 ok",
        ];
        let (out, _, _) = run(Runtime::Cri, 1000, &lines);
        assert_eq!(text(&out[0]), "café ok");
    }

    #[test]
    fn a_pending_fragment_holds_back_the_checkpoint_until_it_is_complete() {
        let lines: [&[u8]; 3] = [
            b"2026-12-05T10:00:00Z stderr F before",
            b"2026-12-05T10:00:01Z stdout P part",
            b"2026-12-05T10:00:02Z stderr F after",
        ];
        let (out, joiner, _) = run(Runtime::Cri, 1000, &lines);
        assert_eq!(out.len(), 2);
        assert_eq!(joiner.pending_offset(), Some(lines[0].len() as u64 + 1));
    }

    #[test]
    fn docker_lines_without_their_newline_are_joined() {
        let lines: [&[u8]; 3] = [
            br#"{"log":"first half ","stream":"stdout","time":"2026-12-05T10:00:00.1Z"}"#,
            br#"{"log":"second half\n","stream":"stdout","time":"2026-12-05T10:00:00.2Z"}"#,
            br#"{"log":"to stderr \u00e9\n","stream":"stderr","time":"2026-12-05T10:00:00.3Z"}"#,
        ];
        let (out, joiner, malformed) = run(Runtime::Docker, 1000, &lines);
        assert!(!malformed);
        assert!(joiner.is_empty());
        let texts: Vec<_> = out.iter().map(text).collect();
        assert_eq!(texts, ["first half second half", "to stderr é"]);
        assert_eq!(out[0].meta, meta("stdout", "2026-12-05T10:00:00.1Z"));
        assert_eq!(out[1].meta, meta("stderr", "2026-12-05T10:00:00.3Z"));
    }

    #[test]
    fn lines_in_neither_format_are_kept_whole_and_noted() {
        for (runtime, line) in [
            (Runtime::Cri, &b"just some text"[..]),
            (Runtime::Cri, b"2026-12-05T10:00:00Z stdout X tagged wrong"),
            (
                Runtime::Cri,
                b"2026-12-05T10:00:00Z std\xffout F odd stream",
            ),
            (Runtime::Docker, b"{\"log\": 5}"),
            (Runtime::Docker, b"not json"),
        ] {
            let (out, joiner, malformed) = run(runtime, 1000, &[line]);
            assert!(malformed, "{line:?}");
            assert!(joiner.is_empty());
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].bytes, line);
            assert_eq!(out[0].meta, None);
        }
    }

    #[test]
    fn a_joined_line_is_a_prefix_of_the_line_within_max_line_bytes() {
        let lines: [&[u8]; 2] = [
            b"2026-12-05T10:00:00Z stdout P AAAAAAAAAABBBBBBBBBBCCCCCCCCCC",
            b"2026-12-05T10:00:00Z stdout F DDDDDDDDDDEEEEEEEEEE",
        ];
        let (out, _, _) = run(Runtime::Cri, 45, &lines);
        assert_eq!(out.len(), 1);
        assert_eq!(
            text(&out[0]),
            "AAAAAAAAAABBBBBBBBBBCCCCCCCCCCDDDDDDDDDDEEEEE"
        );
        assert!(out[0].cut);
        let (out, _, _) = run(Runtime::Cri, 12, &lines);
        assert_eq!(text(&out[0]), "AAAAAAAAAABB", "later fragments add nothing");
        // Framing needs room for the runtime's pieces whatever max_line_bytes is.
        assert!(Runtime::Cri.raw_line_limit(12) > 16 * 1024);
        assert!(Runtime::Docker.raw_line_limit(12) >= 6 * 16 * 1024);
    }

    #[test]
    fn a_fragment_never_continued_is_emitted_after_the_timeout_or_on_release() {
        let (mut out, mut joiner, _) = run(
            Runtime::Cri,
            1000,
            &[b"2026-12-05T10:00:00Z stdout P dangling"],
        );
        assert!(out.is_empty());
        let now = Instant::now();
        joiner.flush(now, false, &mut out);
        assert!(out.is_empty(), "not yet due");
        joiner.flush(now + PARTIAL_TIMEOUT, false, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(text(&out[0]), "dangling");
        assert!(joiner.is_empty());

        let (mut out, mut joiner, _) = run(
            Runtime::Cri,
            1000,
            &[b"2026-12-05T10:00:00Z stdout P released"],
        );
        joiner.flush(Instant::now(), true, &mut out);
        assert_eq!(out.len(), 1);
    }
}
