//! Multiline: consecutive lines joined into one message (stack traces, wrapped logs),
//! with Vector's four modes.
//!
//! A group begins at a line matching `start_pattern` (any line when there is none). How
//! the following lines join it depends on whether they match `condition_pattern`:
//! - `continue_through`: matching lines join; the first line that does not ends the group
//!   and is looked at afresh.
//! - `continue_past`: matching lines join; the first line that does not joins too and
//!   ends the group.
//! - `halt_before`: lines join until one matches; it ends the group and begins the next.
//! - `halt_with`: lines join until one matches; it joins and ends the group.
//!
//! With only `start_pattern` given, the mode is `halt_before` on that pattern (each
//! matching line begins a new message). A group nothing was added to for `timeout` is
//! emitted as it is. Lines are joined with `\n`.

use std::time::{Duration, Instant};

use regex::Regex;
use serde::Deserialize;

pub(crate) use super::message::Message;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// Matching lines join; the first line that does not ends the group and is looked
    /// at afresh.
    ContinueThrough,
    /// Matching lines join; the first line that does not joins too and ends the group.
    ContinuePast,
    /// Lines join until one matches; it ends the group and begins the next.
    HaltBefore,
    /// Lines join until one matches; it joins and ends the group.
    HaltWith,
}

/// `multiline:` consecutive lines joined into one message (stack traces, wrapped logs),
/// with `\n` between them.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MultilineConfig {
    /// A regular expression: a group begins at a line matching it (any line when unset).
    /// Given alone, each matching line begins a new message.
    #[serde(default)]
    pub(crate) start_pattern: Option<String>,
    /// A regular expression deciding, with `mode`, whether the following lines join the
    /// group. Needs `mode`.
    #[serde(default)]
    pub(crate) condition_pattern: Option<String>,
    /// How the following lines join the group, by whether they match
    /// `condition_pattern`. Needed with `condition_pattern`; with only `start_pattern`
    /// it can only be `halt_before`, the default then.
    #[serde(default)]
    pub(crate) mode: Option<Mode>,
    /// A pending group is emitted after this long without a new line.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

/// The compiled rules, shared by every file of a source.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    start: Option<Regex>,
    condition: Regex,
    mode: Mode,
    pub(crate) timeout: Duration,
}

impl MultilineConfig {
    pub(crate) fn compile(&self) -> Result<Rules, String> {
        let re = |name: &str, p: &str| {
            Regex::new(p).map_err(|e| {
                format!(
                    "`multiline.{name}`: invalid regex: {}",
                    crate::text::regex_error(&e)
                )
            })
        };
        let start = self
            .start_pattern
            .as_deref()
            .map(|p| re("start_pattern", p))
            .transpose()?;
        match (&self.condition_pattern, self.mode) {
            (Some(c), Some(mode)) => Ok(Rules {
                start,
                condition: re("condition_pattern", c)?,
                mode,
                timeout: self.timeout,
            }),
            (Some(_), None) => Err("`multiline.condition_pattern` needs a `mode`".into()),
            (None, mode) => match (start, mode) {
                (Some(start), None | Some(Mode::HaltBefore)) => Ok(Rules {
                    start: None,
                    condition: start,
                    mode: Mode::HaltBefore,
                    timeout: self.timeout,
                }),
                (Some(_), Some(_)) => Err(
                    "`multiline.mode` other than halt_before needs a `condition_pattern`".into(),
                ),
                (None, _) => Err(
                    "`multiline` needs a `start_pattern` or a `condition_pattern` with a `mode`"
                        .into(),
                ),
            },
        }
    }
}

/// Multiline groups of one file: one group for plain lines, one per stream for a
/// container runtime's lines (a stderr stack trace must not take in stdout lines
/// written between its frames).
#[derive(Debug)]
pub(crate) struct Groups {
    rules: Rules,
    by_stream: Vec<(Option<String>, Aggregator)>,
}

/// Streams with a group of their own; runtimes have two.
const MAX_STREAMS: usize = 4;

impl Groups {
    pub(crate) fn new(rules: Rules) -> Self {
        Self {
            rules,
            by_stream: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_stream.iter().all(|(_, a)| a.is_empty())
    }

    /// Where the earliest pending group begins.
    pub(crate) fn pending_offset(&self) -> Option<u64> {
        self.by_stream
            .iter()
            .filter_map(|(_, a)| a.pending_offset())
            .min()
    }

    pub(crate) fn clear(&mut self) {
        self.by_stream.clear();
    }

    /// Takes one line into its stream's group; completed messages go to `out`.
    pub(crate) fn push(&mut self, line: Message, now: Instant, out: &mut Vec<Message>) {
        let stream = line.meta.as_ref().map(|m| m.stream.as_str());
        let at = match self
            .by_stream
            .iter()
            .position(|(s, _)| s.as_deref() == stream)
        {
            Some(i) => i,
            None => {
                if self.by_stream.len() >= MAX_STREAMS {
                    let (_, mut oldest) = self.by_stream.remove(0);
                    oldest.flush(now, true, out);
                }
                let key = stream.map(str::to_owned);
                self.by_stream
                    .push((key, Aggregator::new(self.rules.clone())));
                self.by_stream.len() - 1
            }
        };
        self.by_stream[at].1.push(line, now, out);
    }

    /// Emits the groups nothing joined for `timeout` (all of them with `force`).
    pub(crate) fn flush(&mut self, now: Instant, force: bool, out: &mut Vec<Message>) {
        for (_, a) in &mut self.by_stream {
            a.flush(now, force, out);
        }
    }
}

/// The group pending in one file (or one stream of it).
#[derive(Debug)]
pub(crate) struct Aggregator {
    rules: Rules,
    group: Option<(Message, Instant)>,
}

impl Aggregator {
    pub(crate) fn new(rules: Rules) -> Self {
        Self { rules, group: None }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.group.is_none()
    }

    /// Where the pending group begins: lines from there on are read but not emitted.
    pub(crate) fn pending_offset(&self) -> Option<u64> {
        self.group.as_ref().map(|(m, _)| m.offset)
    }

    /// Takes one line; completed messages go to `out`.
    pub(crate) fn push(&mut self, line: Message, now: Instant, out: &mut Vec<Message>) {
        let Some((mut group, _)) = self.group.take() else {
            self.begin(line, now, out);
            return;
        };
        let matched = self.rules.condition.is_match(&line.text);
        match (self.rules.mode, matched) {
            (Mode::ContinueThrough | Mode::ContinuePast, true)
            | (Mode::HaltBefore | Mode::HaltWith, false) => {
                join(&mut group, line);
                self.group = Some((group, now));
            }
            (Mode::ContinueThrough, false) => {
                out.push(group);
                self.begin(line, now, out);
            }
            (Mode::ContinuePast | Mode::HaltWith, _) => {
                join(&mut group, line);
                out.push(group);
            }
            (Mode::HaltBefore, true) => {
                out.push(group);
                self.group = Some((line, now));
            }
        }
    }

    fn begin(&mut self, line: Message, now: Instant, out: &mut Vec<Message>) {
        if self
            .rules
            .start
            .as_ref()
            .is_some_and(|s| !s.is_match(&line.text))
        {
            out.push(line);
        } else if self.rules.mode == Mode::HaltWith && self.rules.condition.is_match(&line.text) {
            // The line both begins and ends its group.
            out.push(line);
        } else {
            self.group = Some((line, now));
        }
    }

    /// Emits the pending group if nothing joined it for `timeout` (or at once with
    /// `force`).
    pub(crate) fn flush(&mut self, now: Instant, force: bool, out: &mut Vec<Message>) {
        if let Some((_, last)) = &self.group
            && (force || now.saturating_duration_since(*last) >= self.rules.timeout)
            && let Some((group, _)) = self.group.take()
        {
            out.push(group);
        }
    }
}

fn join(group: &mut Message, line: Message) {
    group.text.push('\n');
    group.text.push_str(&line.text);
    group.end = line.end;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: MultilineConfig, lines: &[&str]) -> Vec<String> {
        let mut agg = Aggregator::new(config.compile().expect("valid"));
        let now = Instant::now();
        let mut out = Vec::new();
        let mut at = 0;
        for l in lines {
            let end = at + l.len() as u64 + 1;
            agg.push(
                Message {
                    text: (*l).into(),
                    offset: at,
                    end,
                    meta: None,
                },
                now,
                &mut out,
            );
            at = end;
        }
        agg.flush(now, true, &mut out);
        out.into_iter().map(|m| m.text).collect()
    }

    fn cfg(start: Option<&str>, cond: Option<&str>, mode: Option<Mode>) -> MultilineConfig {
        MultilineConfig {
            start_pattern: start.map(Into::into),
            condition_pattern: cond.map(Into::into),
            mode,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn start_pattern_alone_begins_a_message_at_each_match() {
        let out = run(
            cfg(Some(r"^\d"), None, None),
            &["1 boom", "  at a", "  at b", "2 ok", "3 again", "  at c"],
        );
        assert_eq!(
            out,
            vec!["1 boom\n  at a\n  at b", "2 ok", "3 again\n  at c"]
        );
    }

    #[test]
    fn continue_through_joins_matching_lines() {
        let out = run(
            cfg(None, Some(r"^\s"), Some(Mode::ContinueThrough)),
            &["Exception", "  at a", "  at b", "next", "last"],
        );
        assert_eq!(out, vec!["Exception\n  at a\n  at b", "next", "last"]);
    }

    #[test]
    fn continue_past_takes_the_first_non_matching_line_too() {
        let out = run(
            cfg(None, Some(r"\\$"), Some(Mode::ContinuePast)),
            &["a \\", "b \\", "c", "d"],
        );
        assert_eq!(out, vec!["a \\\nb \\\nc", "d"]);
    }

    #[test]
    fn halt_with_ends_the_group_on_the_matching_line() {
        let out = run(
            cfg(Some("^BEGIN"), Some(";$"), Some(Mode::HaltWith)),
            &["noise", "BEGIN x", "y", "z;", "BEGIN w;", "tail"],
        );
        assert_eq!(out, vec!["noise", "BEGIN x\ny\nz;", "BEGIN w;", "tail"]);
    }

    #[test]
    fn offsets_span_the_whole_group() {
        let mut agg = Aggregator::new(cfg(Some("^S"), None, None).compile().expect("valid"));
        let now = Instant::now();
        let mut out = Vec::new();
        for (text, offset, end) in [("S1", 0, 3), ("x", 3, 5), ("S2", 5, 8)] {
            agg.push(
                Message {
                    text: text.into(),
                    offset,
                    end,
                    meta: None,
                },
                now,
                &mut out,
            );
        }
        assert_eq!(
            out,
            vec![Message {
                text: "S1\nx".into(),
                offset: 0,
                end: 5,
                meta: None,
            }]
        );
        out.clear();
        agg.flush(now, false, &mut out);
        assert!(out.is_empty(), "not timed out yet");
        agg.flush(now + Duration::from_secs(2), false, &mut out);
        assert_eq!(
            out,
            vec![Message {
                text: "S2".into(),
                offset: 5,
                end: 8,
                meta: None,
            }]
        );
    }

    #[test]
    fn bad_combinations_are_refused() {
        assert!(cfg(None, Some("x"), None).compile().is_err());
        assert!(cfg(None, None, None).compile().is_err());
        assert!(
            cfg(Some("x"), None, Some(Mode::HaltWith))
                .compile()
                .is_err()
        );
        assert!(cfg(Some("("), None, None).compile().is_err());
    }
}
