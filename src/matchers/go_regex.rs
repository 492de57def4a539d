//! Go's regular-expression syntax (RE2, as Alertmanager, Prometheus and their
//! templates read it) rewritten for Rust's `regex` crate, so that a pattern matches
//! the same strings in sluice as in those tools.
//!
//! Where the two differ:
//! - `\d`, `\w`, `\s` and `\b` are ASCII in Go and Unicode in Rust;
//! - `\Q…\E` quotes literal text in Go;
//! - an escaped ASCII punctuation character is itself in Go, while Rust gives
//!   `\<` and `\>` a meaning (word starts and ends);
//! - inside a class, Go takes `[`, `&&`, `--` and `~~` literally, where Rust nests
//!   classes and combines them;
//! - octal escapes (`\101`) are Go's, and off by default in Rust.
//!
//! Everything else is passed through, and Rust's parser reports what neither takes.

use std::fmt::Write as _;

const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";
const SPACE: &str = r"\t\n\f\r ";

/// The Rust form of Go pattern `go`.
pub(crate) fn translate(go: &str) -> String {
    let chars: Vec<char> = go.chars().collect();
    let mut out = String::with_capacity(go.len() + 8);
    let mut i = 0;
    // Inside a class: where it started (after `[` and `^`), for a leading `]`.
    let mut class_start: Option<usize> = None;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            i = escape(&chars, i + 1, class_start.is_some(), &mut out);
            continue;
        }
        match class_start {
            None => {
                if c == '[' {
                    out.push('[');
                    i += 1;
                    if chars.get(i) == Some(&'^') {
                        out.push('^');
                        i += 1;
                    }
                    class_start = Some(i);
                    continue;
                }
                out.push(c);
            }
            Some(start) => match c {
                ']' if i == start => out.push_str(r"\]"),
                ']' => {
                    out.push(']');
                    class_start = None;
                }
                '[' if chars.get(i + 1) == Some(&':') => {
                    // A POSIX class `[:alpha:]` is the same in both.
                    let end = (i + 2..chars.len().saturating_sub(1))
                        .find(|&j| chars[j] == ':' && chars[j + 1] == ']');
                    match end {
                        Some(end) => {
                            out.extend(&chars[i..end + 2]);
                            i = end + 2;
                            continue;
                        }
                        None => out.push_str(r"\["),
                    }
                }
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                // `--` is set difference in Rust; in Go a `-` after a range or
                // another `-` is a literal.
                '-' if out.ends_with('-') => out.push_str(r"\-"),
                c => out.push(c),
            },
        }
        i += 1;
    }
    out
}

/// Writes the escape that starts at `chars[i]` (just after the backslash), and
/// returns where the pattern goes on.
fn escape(chars: &[char], i: usize, in_class: bool, out: &mut String) -> usize {
    let Some(&c) = chars.get(i) else {
        // A trailing backslash: Rust refuses it, as Go does.
        out.push('\\');
        return i;
    };
    let class = |set: &str, negated: bool, out: &mut String| match (in_class, negated) {
        (true, false) => out.push_str(set),
        (true, true) => {
            let _ = write!(out, "[^{set}]");
        }
        (false, false) => {
            let _ = write!(out, "[{set}]");
        }
        (false, true) => {
            let _ = write!(out, "[^{set}]");
        }
    };
    match c {
        'd' => class(DIGIT, false, out),
        'D' => class(DIGIT, true, out),
        'w' => class(WORD, false, out),
        'W' => class(WORD, true, out),
        's' => class(SPACE, false, out),
        'S' => class(SPACE, true, out),
        'b' | 'B' if !in_class => {
            let _ = write!(out, r"(?-u:\{c})");
        }
        'Q' if !in_class => {
            let mut j = i + 1;
            while j < chars.len() && !(chars[j] == '\\' && chars.get(j + 1) == Some(&'E')) {
                literal(chars[j], out);
                j += 1;
            }
            return if j < chars.len() { j + 2 } else { j };
        }
        // A stray `\E` ends nothing in Go and is ignored.
        'E' if !in_class => {}
        '0'..='7' => {
            let mut j = i;
            let mut code = 0u32;
            while j < chars.len() && j < i + 3 {
                match chars[j].to_digit(8) {
                    Some(d) => code = code * 8 + d,
                    None => break,
                }
                j += 1;
            }
            let _ = write!(out, r"\x{{{code:X}}}");
            return j;
        }
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => literal(c, out),
        c => {
            out.push('\\');
            out.push(c);
        }
    }
    i + 1
}

/// `c` as a literal, inside or outside a class.
fn literal(c: char, out: &mut String) {
    if c.is_ascii_alphanumeric() || !c.is_ascii() {
        out.push(c);
    } else {
        let _ = write!(out, r"\x{{{:X}}}", u32::from(c));
    }
}

#[cfg(test)]
mod tests {
    use super::translate;

    fn matches(go: &str, text: &str) -> bool {
        regex::Regex::new(&format!("^(?:{})$", translate(go)))
            .unwrap_or_else(|e| panic!("{go:?} → {:?}: {e}", translate(go)))
            .is_match(text)
    }

    #[test]
    fn perl_classes_and_word_boundaries_are_ascii_as_in_go() {
        assert!(matches(r"\d+", "123"));
        assert!(
            !matches(r"\d+", "١٢٣"),
            "Arabic-Indic digits are not \\d in Go"
        );
        assert!(matches(r"\D", "١"));
        assert!(!matches(r"\w+", "héllo"));
        assert!(matches(r"\W", "é"));
        assert!(!matches(r"\s", "\u{a0}"));
        assert!(!matches(r"\s", "\u{b}"), "Go's \\s has no vertical tab");
        assert!(matches(r"[\d.]+", "1.5"));
        assert!(matches(r"[\D]", "x"));
        assert!(!matches(r"[^\w]", "a"));
        // é is not a word character in Go: a boundary lies after `a`, none after ` `.
        assert!(matches(r"a\bé", "aé"));
        assert!(!matches(r".*\bé", "a é"));
    }

    #[test]
    fn go_literals_stay_literal() {
        assert!(matches(r"\Qa.b*\E", "a.b*"));
        assert!(!matches(r"\Qa.b\E", "axb"));
        assert!(matches(r"\Q[x", "[x"));
        assert!(matches(r"a\<b\>", "a<b>"));
        assert!(matches(r"[[]", "["));
        assert!(matches(r"[]a]", "]"));
        assert!(matches(r"[^]a]", "b"));
        assert!(matches(r"[a&&b]", "&"));
        assert!(matches(r"[a~~b]", "~"));
        assert!(matches(r"[+--]+", "+,-"));
        assert!(matches(r"[[:alpha:]]+", "abc"));
        assert!(matches(r"\101", "A"));
        assert!(matches(r"a\.b\-c", "a.b-c"));
        assert!(matches(r"\pL+", "héllo"));
        assert!(matches(r"(?i)web-\d", "WEB-1"));
    }
}
