//! `${VAR}` and `${VAR:-default}` interpolation into the scalars of a YAML file, with `$$`
//! for a literal `$`.
//!
//! Substitution happens on parsed scalar values, never on raw text: the file is parsed
//! once (with each `${…}`'s braces swapped for private-use characters, so a reference
//! stays one plain scalar even inside a flow collection), every scalar holding a
//! reference is expanded, and its source text is replaced by the expanded value written
//! back as YAML: plain when it reads back unchanged, double-quoted and escaped otherwise.
//! So a value reaches its option whole whatever it contains (`#`, `: `, quotes,
//! newlines, `*`, `&`, `!`, `{`), and comments are never interpolated.
//!
//! Every replaced scalar keeps its line, and a multi-line one is padded with blank lines,
//! so only columns on the scalar's first line move; [`PositionMap`] maps them back, so
//! every error points at what the user wrote. While walking, the values of options that
//! hold secrets ([`crate::redact::is_secret_key`]) and of variables named like secrets
//! are registered for redaction.

use granit_parser::{Event, Parser, ScalarStyle, Span};

use nested::{closing_brace, resolve};

/// One substitution on an output line: (output column start, output length, input
/// column start, input length), columns 1-based in characters.
type Substitution = (u64, u64, u64, u64);

/// Maps positions in interpolated text back to the original text.
#[derive(Debug, Default, Clone)]
pub struct PositionMap {
    /// For each output line (0-based): the original line (1-based) and its substitutions.
    lines: Vec<(u64, Vec<Substitution>)>,
}

impl PositionMap {
    /// Original (line, column) of output position (line, column), both 1-based.
    pub(crate) fn original(&self, line: u64, column: u64) -> (u64, u64) {
        let Some((in_line, subs)) = usize::try_from(line)
            .ok()
            .and_then(|l| l.checked_sub(1))
            .and_then(|l| self.lines.get(l))
        else {
            return (line, column);
        };
        let mut shift: i64 = 0;
        for &(out_start, out_len, in_start, in_len) in subs {
            if column < out_start {
                break;
            }
            if column < out_start + out_len {
                return (*in_line, in_start);
            }
            shift = (in_start + in_len) as i64 - (out_start + out_len) as i64;
        }
        (*in_line, (column as i64 + shift).max(1) as u64)
    }
}

/// A reference to a variable that is not set and has no default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingVar {
    pub(crate) name: String,
    pub(crate) line: u64,
    pub(crate) column: u64,
}

/// A `${…}` found in the source text.
struct Reference {
    /// Char index of the `$`.
    start: usize,
    line: u64,
    column: u64,
    name: String,
    /// The default as written (taken from the text, so YAML never reads it as syntax).
    default: Option<String>,
}

/// A scalar whose source text is replaced.
struct Replacement {
    /// Char range in the original text.
    start: usize,
    end: usize,
    text: String,
}

/// What the walk knows about the node being read.
enum Frame {
    Map {
        /// The next node is a key.
        expects_key: bool,
        /// The key of the value being read.
        key: Option<String>,
    },
    Seq {
        /// The key the sequence is the value of.
        key: Option<String>,
    },
}

/// Interpolates `text`, reading variables through `lookup`.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(String, PositionMap), Vec<MissingVar>> {
    let chars: Vec<char> = text.chars().collect();
    let marks = sentinels(text);
    let (references, parse_copy) = scan_references(&chars, marks);
    let identity = || PositionMap {
        lines: (1..=chars.iter().filter(|&&c| c == '\n').count() as u64 + 1)
            .map(|l| (l, Vec::new()))
            .collect(),
    };

    let mut missing = Vec::new();
    let mut replacements = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut parser = Parser::new_from_str(&parse_copy);
    while let Some(next) = parser.next_event() {
        // A file that is not YAML is left as written: the real parse reports the error
        // at the same position.
        let Ok((event, span)) = next else {
            return Ok((text.to_owned(), identity()));
        };
        match event {
            Event::Scalar(value, style, _, _) => {
                let is_key = matches!(
                    stack.last(),
                    Some(Frame::Map {
                        expects_key: true,
                        ..
                    })
                );
                let expanded = if value.contains('$') {
                    let refs = references_in(&references, &span);
                    let expanded = expand(&value, refs, style, marks, &lookup, &mut missing);
                    if expanded != value.as_ref() {
                        let start = match style {
                            ScalarStyle::Literal | ScalarStyle::Folded => {
                                block_header_start(&chars, span.start.index())
                            }
                            _ => span.start.index(),
                        };
                        replacements.push(Replacement {
                            start,
                            end: span.end.index(),
                            text: emit(&expanded, style),
                        });
                    }
                    expanded
                } else {
                    value.into_owned()
                };
                if is_key {
                    if let Some(Frame::Map { expects_key, key }) = stack.last_mut() {
                        *expects_key = false;
                        *key = Some(expanded);
                    }
                } else {
                    if current_key(&stack).is_some_and(crate::redact::is_secret_key) {
                        crate::redact::register(&expanded);
                    }
                    node_done(&mut stack);
                }
            }
            Event::MappingStart(..) => {
                let key = owned_key(&stack);
                mark_key_taken(&mut stack);
                stack.push(Frame::Map {
                    expects_key: true,
                    key,
                });
            }
            Event::SequenceStart(..) => {
                let key = owned_key(&stack);
                mark_key_taken(&mut stack);
                stack.push(Frame::Seq { key });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                node_done(&mut stack);
            }
            Event::Alias(_) => {
                if matches!(
                    stack.last(),
                    Some(Frame::Map {
                        expects_key: true,
                        ..
                    })
                ) {
                    mark_key_taken(&mut stack);
                } else {
                    node_done(&mut stack);
                }
            }
            _ => {}
        }
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    Ok(rebuild(&chars, replacements))
}

/// Characters absent from `text` that stand in for a reference while parsing: its `{`,
/// its `}`, and everything between (so a default such as `x #y` or `a: b` stays inside
/// the reference instead of becoming a comment or a mapping).
#[derive(Clone, Copy)]
struct Marks {
    open: char,
    close: char,
    fill: char,
}

fn sentinels(text: &str) -> Marks {
    const SETS: [[char; 3]; 3] = [
        ['\u{E000}', '\u{E001}', '\u{E002}'],
        ['\u{F0000}', '\u{F0001}', '\u{F0002}'],
        ['\u{100000}', '\u{100001}', '\u{100002}'],
    ];
    let [open, close, fill] = SETS
        .into_iter()
        .find(|set| set.iter().all(|c| !text.contains(*c)))
        .unwrap_or(SETS[0]);
    Marks { open, close, fill }
}

/// Finds every `${NAME…}` (closed on its line, `$$` skipped) and returns them with a copy
/// of the text in which each reference is masked by [`Marks`], keeping its length.
fn scan_references(chars: &[char], marks: Marks) -> (Vec<Reference>, String) {
    let mut references = Vec::new();
    let mut copy: Vec<char> = chars.to_vec();
    let (mut line, mut column) = (1u64, 1u64);
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('\n', _) => {
                line += 1;
                column = 1;
                i += 1;
                continue;
            }
            ('$', Some('$')) => {
                column += 2;
                i += 2;
                continue;
            }
            ('$', Some('{')) => {
                if let Some(len) = closing_brace(&chars[i + 2..]) {
                    let inner: String = chars[i + 2..i + 2 + len].iter().collect();
                    if let Some((name, default)) = parse_reference(&inner) {
                        copy[i + 1] = marks.open;
                        for c in &mut copy[i + 2..i + 2 + len] {
                            *c = marks.fill;
                        }
                        copy[i + 2 + len] = marks.close;
                        references.push(Reference {
                            start: i,
                            line,
                            column,
                            name: name.to_owned(),
                            default: default.map(str::to_owned),
                        });
                        column += len as u64 + 3;
                        i += len + 3;
                        continue;
                    }
                }
            }
            _ => {}
        }
        column += 1;
        i += 1;
    }
    (references, copy.into_iter().collect())
}

/// `NAME` or `NAME:-default` → (name, default).
fn parse_reference(inner: &str) -> Option<(&str, Option<&str>)> {
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    is_var_name(name).then_some((name, default))
}

/// A default written inside a quoted scalar, with that style's escapes for quotes and
/// backslashes undone (the rest of the scalar was unescaped by the parser).
fn unescape_default(default: &str, style: ScalarStyle) -> String {
    match style {
        ScalarStyle::DoubleQuoted => default.replace("\\\"", "\"").replace("\\\\", "\\"),
        ScalarStyle::SingleQuoted => default.replace("''", "'"),
        _ => default.to_owned(),
    }
}

fn references_in<'a>(references: &'a [Reference], span: &Span) -> &'a [Reference] {
    let from = references.partition_point(|r| r.start < span.start.index());
    let to = references.partition_point(|r| r.start < span.end.index());
    &references[from..to.max(from)]
}

/// The scalar value with its references substituted and `$$` unescaped. The k-th masked
/// reference in the value is the k-th in the scalar's source text (YAML keeps order).
#[allow(clippy::too_many_arguments)]
fn expand(
    value: &str,
    refs: &[Reference],
    style: ScalarStyle,
    marks: Marks,
    lookup: &impl Fn(&str) -> Option<String>,
    missing: &mut Vec<MissingVar>,
) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut index = 0;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let masked = after
            .strip_prefix(marks.open)
            .and_then(|body| body.split_once(marks.close))
            .filter(|(inner, _)| inner.chars().all(|c| c == marks.fill));
        let (Some((_, tail)), Some(reference)) = (masked, refs.get(index)) else {
            out.push('$');
            rest = after;
            continue;
        };
        let default = reference
            .default
            .as_deref()
            .map(|d| unescape_default(d, style));
        let at = (reference.line, reference.column);
        out.push_str(&resolve(
            &reference.name,
            default.as_deref(),
            0,
            at,
            lookup,
            missing,
        ));
        index += 1;
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The expanded value as YAML source: plain when the original was plain and the value
/// reads back as the same plain scalar (so `port: ${PORT}` stays a number), otherwise a
/// double-quoted string that holds the value byte for byte.
fn emit(value: &str, style: ScalarStyle) -> String {
    if style == ScalarStyle::Plain && plain_is_safe(value) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(
                    c,
                    '\u{FEFF}' | '\u{2028}' | '\u{2029}' | '\u{FFFE}' | '\u{FFFF}'
                ) =>
            {
                out.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Words, numbers, booleans, paths: nothing YAML reads as syntax, and not null.
fn plain_is_safe(value: &str) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-' | '/'))
        && !matches!(value, "null" | "Null" | "NULL")
        && !value.starts_with("---")
        && !value.starts_with("...")
        && (first.is_ascii_alphanumeric()
            || matches!(first, '_' | '/')
            || (matches!(first, '-' | '+' | '.') && value.len() > 1))
}

/// Where a block scalar's `|` or `>` header is: its span starts at the content, but the
/// header must be replaced too. The header sits on the last line before the content
/// that is not blank; its indicator is the first `|` / `>` followed only by header
/// characters (`-`, `+`, digits) and then a space, a comment or the line's end.
fn block_header_start(chars: &[char], content: usize) -> usize {
    let content = content.min(chars.len());
    let mut line_end = chars[..content]
        .iter()
        .rposition(|&c| c == '\n')
        .unwrap_or(0);
    loop {
        let line_start = chars[..line_end]
            .iter()
            .rposition(|&c| c == '\n')
            .map_or(0, |i| i + 1);
        let line = &chars[line_start..line_end];
        if line.iter().all(|c| c.is_whitespace()) && line_start > 0 {
            line_end = line_start - 1;
            continue;
        }
        for (i, &c) in line.iter().enumerate() {
            if c != '|' && c != '>' {
                continue;
            }
            let rest = &line[i + 1..];
            let header_len = rest
                .iter()
                .take_while(|c| matches!(c, '-' | '+' | '0'..='9'))
                .count();
            if rest.get(header_len).is_none_or(|c| c.is_whitespace()) {
                return line_start + i;
            }
        }
        return content;
    }
}

/// The key whose value is being read (a sequence passes its key to its items).
fn current_key(stack: &[Frame]) -> Option<&str> {
    match stack.last()? {
        Frame::Map { key, .. } | Frame::Seq { key } => key.as_deref(),
    }
}

fn owned_key(stack: &[Frame]) -> Option<String> {
    match stack.last() {
        Some(Frame::Map {
            expects_key: true, ..
        }) => None,
        _ => current_key(stack).map(str::to_owned),
    }
}

/// A collection used as a mapping key: the mapping's next node is its value.
fn mark_key_taken(stack: &mut [Frame]) {
    if let Some(Frame::Map { expects_key, key }) = stack.last_mut()
        && *expects_key
    {
        *expects_key = false;
        *key = None;
    }
}

/// A value finished: its mapping expects a key next.
fn node_done(stack: &mut [Frame]) {
    if let Some(Frame::Map { expects_key, .. }) = stack.last_mut() {
        *expects_key = true;
    }
}

/// The original text with `replacements` applied, line for line.
fn rebuild(chars: &[char], mut replacements: Vec<Replacement>) -> (String, PositionMap) {
    replacements.sort_by_key(|r| r.start);
    let line_count = chars.iter().filter(|&&c| c == '\n').count() + 1;
    let mut lines: Vec<(u64, Vec<Substitution>)> =
        (1..=line_count as u64).map(|l| (l, Vec::new())).collect();
    let mut out = String::with_capacity(chars.len());
    let (mut line, mut out_col, mut in_col) = (0usize, 1u64, 1u64);
    let mut cursor = 0;
    for r in replacements {
        if r.start < cursor || r.end > chars.len() || r.end < r.start {
            continue;
        }
        for &c in &chars[cursor..r.start] {
            out.push(c);
            if c == '\n' {
                line += 1;
                out_col = 1;
                in_col = 1;
            } else {
                out_col += 1;
                in_col += 1;
            }
        }
        let source = &chars[r.start..r.end];
        let newlines = source.iter().filter(|&&c| c == '\n').count();
        let first_line_len = source.iter().take_while(|&&c| c != '\n').count() as u64;
        let emitted = r.text.chars().count() as u64;
        if let Some((_, subs)) = lines.get_mut(line) {
            subs.push((out_col, emitted.max(1), in_col, first_line_len.max(1)));
        }
        out.push_str(&r.text);
        if newlines == 0 {
            out_col += emitted;
            in_col += first_line_len;
        } else {
            // Blank lines keep every later line where it was; spaces keep the rest of the
            // scalar's last line in its column.
            let last_line_len = source.iter().rev().take_while(|&&c| c != '\n').count();
            for _ in 0..newlines {
                out.push('\n');
            }
            out.extend(std::iter::repeat_n(' ', last_line_len));
            line += newlines;
            out_col = last_line_len as u64 + 1;
            in_col = out_col;
        }
        cursor = r.end;
    }
    out.extend(&chars[cursor..]);
    (out, PositionMap { lines })
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

mod nested;
#[cfg(test)]
mod tests;
