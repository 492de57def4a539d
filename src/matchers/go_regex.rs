//! Go's regular-expression syntax (RE2, as Alertmanager, Prometheus and their
//! templates read it) rewritten for Rust's `regex` crate, so that a pattern matches
//! the same strings in sluice as in those tools.
//!
//! Where the two differ:
//! - `\d`, `\w`, `\s` and `\b` are ASCII in Go and Unicode in Rust;
//! - `\Q…\E` quotes literal text in Go;
//! - an escaped ASCII punctuation character is itself in Go, while Rust gives
//!   `\<` and `\>` a meaning (word starts and ends);
//! - a `{` that does not start a repetition (`{x}`, `a{`, `a{,2}`) is a literal in Go;
//! - inside a class Go has no nesting or set operations (`[`, `&&`, `--`, `~~` are
//!   literal) and a `-` after a class escape (`[\w-.]`) is a literal: classes are
//!   therefore read item by item as Go reads them and written out in a form Rust
//!   cannot read differently;
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
    while i < chars.len() {
        match chars[i] {
            '\\' => i = escape(&chars, i + 1, &mut out),
            '[' => i = class(&chars, i + 1, &mut out),
            '{' => match repetition(&chars, i) {
                Some(end) => {
                    out.extend(&chars[i..end]);
                    i = end;
                }
                None => {
                    out.push_str(r"\{");
                    i += 1;
                }
            },
            '}' => {
                out.push_str(r"\}");
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Where a Go repetition `{n}`, `{n,}` or `{n,m}` starting at `chars[i]` ends, if one
/// does (Go reads any other `{` as itself).
fn repetition(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    let digits = |j: &mut usize| {
        let start = *j;
        while chars.get(*j).is_some_and(char::is_ascii_digit) {
            *j += 1;
        }
        *j > start
    };
    if !digits(&mut j) {
        return None;
    }
    if chars.get(j) == Some(&',') {
        j += 1;
        digits(&mut j);
    }
    (chars.get(j) == Some(&'}')).then_some(j + 1)
}

/// Writes the escape that starts at `chars[i]` (just after the backslash), outside a
/// class, and returns where the pattern goes on.
fn escape(chars: &[char], i: usize, out: &mut String) -> usize {
    let Some(&c) = chars.get(i) else {
        // A trailing backslash: Rust refuses it, as Go does.
        out.push('\\');
        return i;
    };
    if let Some(set) = perl_class(c) {
        let _ = write!(out, "[{set}]");
        return i + 1;
    }
    match c {
        'b' | 'B' => {
            let _ = write!(out, r"(?-u:\{c})");
            i + 1
        }
        'p' | 'P' => unicode_class(chars, i, out),
        'Q' => {
            let mut j = i + 1;
            while j < chars.len() && !(chars[j] == '\\' && chars.get(j + 1) == Some(&'E')) {
                literal(chars[j], out);
                j += 1;
            }
            if j < chars.len() { j + 2 } else { j }
        }
        _ => match class_char_escape(chars, i) {
            Some((ch, next)) => {
                literal(ch, out);
                next
            }
            None => {
                // What Go does not take either (`\E` alone, `\1`, `\q`): Rust says no.
                out.push('\\');
                out.push(c);
                i + 1
            }
        },
    }
}

/// `\pL` or `\p{Greek}` (the `p` or `P` at `chars[i]`), the same syntax in Rust;
/// returns where the pattern goes on.
fn unicode_class(chars: &[char], i: usize, out: &mut String) -> usize {
    let end = if chars.get(i + 1) == Some(&'{') {
        (i + 2..chars.len())
            .find(|&j| chars[j] == '}')
            .map_or(chars.len(), |j| j + 1)
    } else {
        (i + 2).min(chars.len())
    };
    out.push('\\');
    out.extend(&chars[i..end]);
    end
}

/// `\d`, `\D`, `\w`, `\W`, `\s`, `\S` as the class Go means (a leading `^` negates).
fn perl_class(c: char) -> Option<String> {
    let (set, negated) = match c {
        'd' => (DIGIT, false),
        'D' => (DIGIT, true),
        'w' => (WORD, false),
        'W' => (WORD, true),
        's' => (SPACE, false),
        'S' => (SPACE, true),
        _ => return None,
    };
    Some(if negated {
        format!("^{set}")
    } else {
        set.to_owned()
    })
}

/// The character an escape names, as Go reads it: escaped punctuation, `\a \f \n \r
/// \t \v`, octal (`\0`, or `\1`–`\7` followed by another octal digit) and `\x` forms.
fn class_char_escape(chars: &[char], i: usize) -> Option<(char, usize)> {
    let c = *chars.get(i)?;
    let simple = match c {
        'a' => Some('\u{7}'),
        'f' => Some('\u{c}'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\u{b}'),
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Some(c),
        _ => None,
    };
    if let Some(ch) = simple {
        return Some((ch, i + 1));
    }
    let octal = |j: usize| chars.get(j).and_then(|d| d.to_digit(8));
    match c {
        '0'..='7' if c == '0' || octal(i + 1).is_some() => {
            let (mut code, mut j) = (0u32, i);
            while j < i + 3
                && let Some(d) = octal(j)
            {
                code = code * 8 + d;
                j += 1;
            }
            Some((char::from_u32(code)?, j))
        }
        'x' => {
            let (digits, next) = if chars.get(i + 1) == Some(&'{') {
                let end = (i + 2..chars.len()).find(|&j| chars[j] == '}')?;
                (&chars[i + 2..end], end + 1)
            } else {
                (chars.get(i + 1..i + 3)?, i + 3)
            };
            let text: String = digits.iter().collect();
            let code = u32::from_str_radix(&text, 16).ok()?;
            Some((char::from_u32(code)?, next))
        }
        _ => None,
    }
}

/// Reads a Go class whose `[` came just before `chars[i]` and writes it as a Rust
/// class of escaped characters, ranges and sets; returns where the pattern goes on.
fn class(chars: &[char], mut i: usize, out: &mut String) -> usize {
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            // Unclosed: `[` alone makes Rust refuse it, as Go does.
            return i;
        };
        if c == ']' && !first {
            out.push(']');
            return i + 1;
        }
        first = false;
        if c == '[' && chars.get(i + 1) == Some(&':') {
            // A POSIX class `[:alpha:]` is the same in both.
            if let Some(end) = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == ':' && chars[j + 1] == ']')
            {
                out.extend(&chars[i..end + 2]);
                i = end + 2;
                continue;
            }
        }
        if c == '\\' {
            let next = chars.get(i + 1).copied();
            if let Some(set) = next.and_then(perl_class) {
                if let Some(negated) = set.strip_prefix('^') {
                    let _ = write!(out, "[^{negated}]");
                } else {
                    out.push_str(&set);
                }
                i += 2;
                continue;
            }
            if matches!(next, Some('p' | 'P')) {
                i = unicode_class(chars, i + 1, out);
                continue;
            }
        }
        let Some((lo, next)) = class_char(chars, i) else {
            // A bad escape: written as it is, so Rust refuses it as Go does.
            out.push('\\');
            i += 1;
            continue;
        };
        i = next;
        // `lo-hi` is a range unless the `-` closes the class.
        if chars.get(i) == Some(&'-')
            && chars.get(i + 1).is_some_and(|&n| n != ']')
            && let Some((hi, after)) = class_char(chars, i + 1)
        {
            literal(lo, out);
            out.push('-');
            literal(hi, out);
            i = after;
            continue;
        }
        literal(lo, out);
    }
}

/// One character of a class at `chars[i]`, itself or escaped.
fn class_char(chars: &[char], i: usize) -> Option<(char, usize)> {
    match chars.get(i)? {
        '\\' => class_char_escape(chars, i + 1),
        &c => Some((c, i + 1)),
    }
}

/// `c` as a literal, inside or outside a class: ASCII punctuation is written as a hex
/// escape, which neither side can read as an operator (`[ ] - ^ & ~ { }`).
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

    fn refused(go: &str) -> bool {
        regex::Regex::new(&format!("^(?:{})$", translate(go))).is_err()
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
        assert!(matches(r"[\pL\d]+", "é1"));
        assert!(matches(r"(?i)web-\d", "WEB-1"));
        assert!(matches(r"[\x41-\x{43}]+", "ABC"));
    }

    /// Each case as Go 1.19's regexp reads it (checked by the red team with amtool
    /// and promtool).
    #[test]
    fn dashes_and_braces_read_as_go_reads_them() {
        // A `-` after a class escape is a literal.
        assert!(matches(r"[\w-.]+:9100", "web-1.example:9100"));
        assert!(matches(r"[\s-x]", "-"));
        assert!(!matches(r"[\s-x]", "a"));
        assert!(!matches(r"[\w-a]", "`"));
        assert!(matches(r"[^\s-x]", "a"));
        assert!(!matches(r"[^\s-x]", "x"));
        // `--a` is the range from `-` to `a`.
        assert!(matches(r"[--a]", "Q"));
        assert!(matches(r"[\w--]", "-"));
        // Braces that are not a repetition are themselves.
        assert!(matches(r"web-{x}", "web-{x}"));
        assert!(matches(r"a{", "a{"));
        assert!(matches(r"a{,2}", "a{,2}"));
        assert!(matches(r"a{2}", "aa"));
        assert!(matches(r"a{1,}b{0,1}", "aaab"));
        // What Go refuses stays refused: a back-reference, a stray `\E`.
        assert!(refused(r"(a)\1"));
        assert!(refused(r"x\E"));
    }
}
