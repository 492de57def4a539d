//! What a reference resolves to: the variable, or its default, whose own references
//! (`${A:-x${B:-y}}`, as in bash) are resolved in turn, to a bounded depth.

use super::{MissingVar, parse_reference};

/// Where the `}` that closes a reference is, counted from just after its `${`: nested
/// references in a default (`${A:-x${B:-y}}`) close their own braces first. A reference
/// ends on its line.
pub(super) fn closing_brace(chars: &[char]) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match (c, chars.get(i + 1)) {
            ('\n', _) => return None,
            ('$', Some('$')) => i += 1,
            ('$', Some('{')) => {
                depth += 1;
                i += 1;
            }
            ('}', _) => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// How deep defaults may nest references (`${A:-${B:-${C}}}` is 3): a bound on the work
/// a hostile file can ask for.
const MAX_DEFAULT_DEPTH: usize = 8;

/// A default's text with its own references expanded (bash's `${A:-${B}}`), and `$$`
/// unescaped. A variable it needs and cannot find is reported at `at` (line, column of
/// the outer reference).
fn expand_default(
    text: &str,
    depth: usize,
    at: (u64, u64),
    lookup: &impl Fn(&str) -> Option<String>,
    missing: &mut Vec<MissingVar>,
) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match (c, chars.get(i + 1)) {
            ('$', Some('$')) => {
                out.push('$');
                i += 2;
                continue;
            }
            ('$', Some('{')) if depth < MAX_DEFAULT_DEPTH => {
                if let Some(len) = closing_brace(&chars[i + 2..]) {
                    let inner: String = chars[i + 2..i + 2 + len].iter().collect();
                    if let Some((name, default)) = parse_reference(&inner) {
                        out.push_str(&resolve(name, default, depth + 1, at, lookup, missing));
                        i += len + 3;
                        continue;
                    }
                }
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The value of `name`, else its default expanded; an empty value counts as unset when
/// there is a default, as in bash's `:-`. Secrets found on the way are registered.
pub(super) fn resolve(
    name: &str,
    default: Option<&str>,
    depth: usize,
    at: (u64, u64),
    lookup: &impl Fn(&str) -> Option<String>,
    missing: &mut Vec<MissingVar>,
) -> String {
    match lookup(name).filter(|v| !(v.is_empty() && default.is_some())) {
        Some(v) => {
            if crate::redact::is_secret_key(name) {
                crate::redact::register(&v);
            }
            v
        }
        None => match default {
            Some(d) => expand_default(d, depth, at, lookup, missing),
            None => {
                missing.push(MissingVar {
                    name: name.to_owned(),
                    line: at.0,
                    column: at.1,
                });
                String::new()
            }
        },
    }
}
