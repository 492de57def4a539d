//! Container runtime log files for the `file` source: the CRI format (containerd,
//! CRI-O: `/var/log/containers/*.log` on Kubernetes) and Docker's `json-file`.
//!
//! Runtimes split long lines: CRI writes fragments tagged `P` (partial) until one
//! tagged `F` (full), Docker writes `log` values without their trailing newline (every
//! 16 KiB). The [`Joiner`] puts a line back together per stream (stdout and stderr
//! fragments may interleave in one file) within `max_line_bytes`, and keeps the
//! runtime's `stream` and timestamp. A line in neither shape is kept whole as the
//! message and counted, never dropped.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::message::{LineMeta, Message};

/// A pending fragment not continued for this long is emitted as it is (its writer died
/// mid-line); a rotated file's pending fragments are emitted when it is released.
const PARTIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer stream names are no runtime's: the line is not in the format.
const MAX_STREAM_NAME: usize = 16;
/// Streams with a pending fragment; CRI and Docker have two.
const MAX_PENDING_STREAMS: usize = 4;

/// Which runtime format the lines are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runtime {
    Cri,
    Docker,
}

/// One line of the file, parsed.
struct Fragment<'a> {
    stream: &'a str,
    time: Option<&'a str>,
    content: &'a str,
    partial: bool,
}

fn parse_cri(line: &str) -> Option<Fragment<'_>> {
    let (time, rest) = line.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ')?;
    // An empty full line is written as `<time> <stream> F` by some runtimes.
    let (tag, content) = rest.split_once(' ').unwrap_or((rest, ""));
    let partial = match tag.split(':').next() {
        Some("P") => true,
        Some("F") => false,
        _ => return None,
    };
    let plausible_time = time.len() >= 20 && time.as_bytes()[..4].iter().all(u8::is_ascii_digit);
    if !plausible_time || stream.is_empty() || stream.len() > MAX_STREAM_NAME {
        return None;
    }
    Some(Fragment {
        stream,
        time: Some(time),
        content,
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

/// A pending line: the fragments so far, and when the last one came.
struct Pending {
    message: Message,
    last: Instant,
    /// It reached `max_line_bytes`: later fragments add nothing.
    full: bool,
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
    /// The line was in neither format; it was kept whole.
    pub(crate) malformed: bool,
    /// A joined line outgrew `max_line_bytes` and was cut.
    pub(crate) truncated: bool,
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
        self.pending.iter().map(|p| p.message.offset).min()
    }

    pub(crate) fn clear(&mut self) {
        self.pending.clear();
    }

    /// Takes one framed line; completed lines go to `out`.
    pub(crate) fn push(&mut self, line: Message, now: Instant, out: &mut Vec<Message>) -> Noted {
        let mut noted = Noted::default();
        let docker;
        let fragment = match self.runtime {
            Runtime::Cri => parse_cri(&line.text),
            Runtime::Docker => {
                docker = serde_json::from_str::<DockerLine<'_>>(&line.text).ok();
                docker.as_ref().and_then(|d| {
                    let stream = d.stream.as_deref().unwrap_or("stdout");
                    if stream.len() > MAX_STREAM_NAME {
                        return None;
                    }
                    let (content, partial) = match d.log.strip_suffix('\n') {
                        Some(c) => (c, false),
                        None => (d.log.as_ref(), true),
                    };
                    Some(Fragment {
                        stream,
                        time: d.time.as_deref(),
                        content,
                        partial,
                    })
                })
            }
        };
        let Some(fragment) = fragment else {
            noted.malformed = true;
            out.push(line);
            return noted;
        };
        let at = self.pending.iter().position(|p| {
            p.message
                .meta
                .as_ref()
                .is_some_and(|m| m.stream == fragment.stream)
        });
        let (mut message, mut full) = match at {
            Some(i) => {
                let p = self.pending.remove(i);
                (p.message, p.full)
            }
            None => {
                let meta = LineMeta {
                    stream: fragment.stream.to_owned(),
                    time: fragment.time.map(str::to_owned),
                };
                let message = Message {
                    text: String::new(),
                    offset: line.offset,
                    end: line.end,
                    meta: Some(Box::new(meta)),
                };
                (message, false)
            }
        };
        message.end = line.end;
        if full {
            noted.truncated = !fragment.content.is_empty();
        } else {
            let room = self.max_bytes.saturating_sub(message.text.len());
            let kept = crate::text::prefix_bytes(fragment.content, room);
            message.text.push_str(kept);
            full = kept.len() < fragment.content.len();
            noted.truncated = full;
        }
        if fragment.partial {
            if self.pending.len() >= MAX_PENDING_STREAMS {
                // Not a runtime's file: make room rather than grow.
                let oldest = self.pending.remove(0);
                out.push(oldest.message);
            }
            self.pending.push(Pending {
                message,
                last: now,
                full,
            });
        } else {
            out.push(message);
        }
        noted
    }

    /// Emits pending lines not continued for a while (all of them with `force`), in the
    /// order they began.
    pub(crate) fn flush(&mut self, now: Instant, force: bool, out: &mut Vec<Message>) {
        let mut due = Vec::new();
        self.pending.retain_mut(|p| {
            let stale = force || now.saturating_duration_since(p.last) >= PARTIAL_TIMEOUT;
            if stale {
                due.push(std::mem::replace(
                    &mut p.message,
                    Message {
                        text: String::new(),
                        offset: 0,
                        end: 0,
                        meta: None,
                    },
                ));
            }
            !stale
        });
        due.sort_by_key(|m| m.offset);
        out.extend(due);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(runtime: Runtime, max: usize, lines: &[&str]) -> (Vec<Message>, Joiner, Noted) {
        let mut joiner = Joiner::new(runtime, max);
        let mut out = Vec::new();
        let mut offset = 0u64;
        let mut noted = Noted::default();
        let now = Instant::now();
        for l in lines {
            let end = offset + l.len() as u64 + 1;
            let n = joiner.push(
                Message {
                    text: (*l).to_owned(),
                    offset,
                    end,
                    meta: None,
                },
                now,
                &mut out,
            );
            noted.malformed |= n.malformed;
            noted.truncated |= n.truncated;
            offset = end;
        }
        (out, joiner, noted)
    }

    fn meta(stream: &str, time: &str) -> Option<Box<LineMeta>> {
        Some(Box::new(LineMeta {
            stream: stream.into(),
            time: Some(time.into()),
        }))
    }

    #[test]
    fn cri_partial_fragments_join_into_one_line_per_stream() {
        let lines = [
            "2026-12-05T10:00:00.000000001Z stdout P hello ",
            "2026-12-05T10:00:00.000000002Z stderr F oops",
            "2026-12-05T10:00:00.000000003Z stdout P big ",
            "2026-12-05T10:00:00.000000004Z stdout F world",
            "2026-12-05T10:00:00.000000005Z stdout F",
        ];
        let (out, joiner, noted) = run(Runtime::Cri, 1000, &lines);
        assert_eq!(noted, Noted::default());
        assert!(joiner.is_empty());
        let texts: Vec<_> = out.iter().map(|m| m.text.as_str()).collect();
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
    fn a_pending_fragment_holds_back_the_checkpoint_until_it_is_complete() {
        let lines = [
            "2026-12-05T10:00:00Z stderr F before",
            "2026-12-05T10:00:01Z stdout P part",
            "2026-12-05T10:00:02Z stderr F after",
        ];
        let (out, joiner, _) = run(Runtime::Cri, 1000, &lines);
        assert_eq!(out.len(), 2);
        assert_eq!(joiner.pending_offset(), Some(lines[0].len() as u64 + 1));
    }

    #[test]
    fn docker_lines_without_their_newline_are_joined() {
        let lines = [
            r#"{"log":"first half ","stream":"stdout","time":"2026-12-05T10:00:00.1Z"}"#,
            r#"{"log":"second half\n","stream":"stdout","time":"2026-12-05T10:00:00.2Z"}"#,
            r#"{"log":"to stderr\n","stream":"stderr","time":"2026-12-05T10:00:00.3Z"}"#,
        ];
        let (out, joiner, noted) = run(Runtime::Docker, 1000, &lines);
        assert_eq!(noted, Noted::default());
        assert!(joiner.is_empty());
        let texts: Vec<_> = out.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["first half second half", "to stderr"]);
        assert_eq!(out[0].meta, meta("stdout", "2026-12-05T10:00:00.1Z"));
        assert_eq!(out[1].meta, meta("stderr", "2026-12-05T10:00:00.3Z"));
    }

    #[test]
    fn lines_in_neither_format_are_kept_whole_and_noted() {
        for (runtime, line) in [
            (Runtime::Cri, "just some text"),
            (Runtime::Cri, "2026-12-05T10:00:00Z stdout X tagged wrong"),
            (Runtime::Docker, "{\"log\": 5}"),
            (Runtime::Docker, "not json"),
        ] {
            let (out, joiner, noted) = run(runtime, 1000, &[line]);
            assert!(noted.malformed, "{line}");
            assert!(joiner.is_empty());
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].text, line);
            assert_eq!(out[0].meta, None);
        }
    }

    #[test]
    fn a_joined_line_stays_within_max_line_bytes() {
        let fragment = format!("2026-12-05T10:00:00Z stdout P {}", "é".repeat(10));
        let lines = [
            fragment.as_str(),
            fragment.as_str(),
            "2026-12-05T10:00:00Z stdout F end",
        ];
        let (out, _, noted) = run(Runtime::Cri, 25, &lines);
        assert!(noted.truncated);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, "é".repeat(12), "cut at a character boundary");
    }

    #[test]
    fn a_fragment_never_continued_is_emitted_after_the_timeout_or_on_release() {
        let (mut out, mut joiner, _) = run(
            Runtime::Cri,
            1000,
            &["2026-12-05T10:00:00Z stdout P dangling"],
        );
        assert!(out.is_empty());
        let now = Instant::now();
        joiner.flush(now, false, &mut out);
        assert!(out.is_empty(), "not yet due");
        joiner.flush(now + PARTIAL_TIMEOUT, false, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, "dangling");
        assert!(joiner.is_empty());

        let (mut out, mut joiner, _) = run(
            Runtime::Cri,
            1000,
            &["2026-12-05T10:00:00Z stdout P released"],
        );
        joiner.flush(Instant::now(), true, &mut out);
        assert_eq!(out.len(), 1);
    }
}
