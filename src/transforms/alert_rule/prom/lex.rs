//! The PromQL tokenizer: numbers, durations, quoted strings, identifiers (metric
//! names may hold `:`) and punctuation, each with its byte offset.

use std::time::Duration;

use super::super::expr::ParseError;
use crate::units::prometheus_duration;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Number(f64),
    Duration(Duration),
    Str(String),
    Punct(&'static str),
    End,
}

const PUNCTS: [&str; 22] = [
    "=~", "!~", "!=", "==", ">=", "<=", "(", ")", "{", "}", "[", "]", ",", "=", ">", "<", "+", "-",
    "*", "/", "%", "^",
];

pub(super) fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let err = |at: usize, message: String| ParseError {
        column: src[..at].chars().count() + 1,
        message,
    };
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                // An exponent's sign belongs to the number: `1e-3`.
                if matches!(bytes[i], b'e' | b'E')
                    && matches!(bytes.get(i + 1), Some(b'+' | b'-'))
                    && !src[start..i].starts_with("0x")
                    && !src[start..i].starts_with("0X")
                {
                    i += 1;
                }
                i += 1;
            }
            let text = &src[start..i];
            // As Go reads integers first: `010` is octal (8), `0x1f` hex.
            let octal = text.len() > 1
                && text.starts_with('0')
                && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
            let tok = if octal {
                let n = i64::from_str_radix(&text[1..], 8)
                    .map_err(|_| err(start, format!("bad number {text:?}")))?;
                Tok::Number(n as f64)
            } else if let Ok(n) = text.parse::<f64>() {
                Tok::Number(n)
            } else if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
                let n = i64::from_str_radix(hex, 16)
                    .map_err(|_| err(start, format!("bad number {text:?}")))?;
                Tok::Number(n as f64)
            } else {
                Tok::Duration(
                    prometheus_duration(text)
                        .ok_or_else(|| err(start, format!("bad number {text:?}")))?,
                )
            };
            out.push((tok, start));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
            {
                i += 1;
            }
            out.push((Tok::Ident(src[start..i].to_owned()), start));
            continue;
        }
        if matches!(c, b'"' | b'\'' | b'`') {
            let (text, end) = string(src, i).map_err(|m| err(start, m))?;
            out.push((Tok::Str(text), start));
            i = end;
            continue;
        }
        if c == b'@' {
            return Err(err(i, "the @ modifier is not supported".into()));
        }
        let Some(p) = PUNCTS.iter().find(|p| src[i..].starts_with(**p)) else {
            let ch = src[i..].chars().next().unwrap_or(' ');
            return Err(err(i, format!("unexpected character {ch:?}")));
        };
        out.push((Tok::Punct(p), start));
        i += p.len();
    }
    out.push((Tok::End, src.len()));
    Ok(out)
}

/// A quoted string starting at `at`: its text and the index past its closing quote.
/// Double and single quotes take Go's escapes, where `\xNN` and octal `\NNN` are bytes
/// (`"\xc3\xa9"` is `é`); backquotes are raw.
pub(super) fn string(src: &str, at: usize) -> Result<(String, usize), String> {
    let quote = src.as_bytes()[at] as char;
    let mut out: Vec<u8> = Vec::new();
    let mut chars = src[at + 1..].char_indices();
    let push = |out: &mut Vec<u8>, c: char| {
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    };
    while let Some((i, c)) = chars.next() {
        if c == quote {
            let text = String::from_utf8(out).map_err(|_| "the string is not valid UTF-8")?;
            return Ok((text, at + 1 + i + 1));
        }
        if c != '\\' || quote == '`' {
            push(&mut out, c);
            continue;
        }
        let (_, e) = chars.next().ok_or("unterminated string")?;
        let mut digits = |n: usize, radix: u32, first: Option<char>| -> Result<u32, String> {
            let text: String = first
                .into_iter()
                .chain(
                    (0..n - usize::from(first.is_some()))
                        .filter_map(|_| chars.next().map(|(_, c)| c)),
                )
                .collect();
            u32::from_str_radix(&text, radix).map_err(|_| format!("bad escape \\{text}"))
        };
        match e {
            'n' => out.push(b'\n'),
            't' => out.push(b'\t'),
            'r' => out.push(b'\r'),
            'a' => out.push(7),
            'b' => out.push(8),
            'f' => out.push(12),
            'v' => out.push(11),
            // As Go's `strconv.Unquote`: each quote is escaped only in its own kind.
            '\\' => push(&mut out, e),
            '"' | '\'' if e == quote => push(&mut out, e),
            'x' => out.push(u8::try_from(digits(2, 16, None)?).map_err(|_| "bad escape")?),
            '0'..='7' => {
                let byte = digits(3, 8, Some(e))?;
                out.push(u8::try_from(byte).map_err(|_| format!("bad octal escape {byte:o}"))?);
            }
            'u' | 'U' => {
                let code = digits(if e == 'u' { 4 } else { 8 }, 16, None)?;
                push(&mut out, char::from_u32(code).ok_or("bad unicode escape")?);
            }
            other => return Err(format!("unknown escape \\{other}")),
        }
    }
    Err("unterminated string".into())
}
