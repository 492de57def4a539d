//! `${VAR}` and `${VAR:-default}` interpolation, applied to the file text before parsing
//! (so it works in keys, values and flow collections alike), with `$$` for a literal `$`.
//!
//! Substitution changes column numbers on the lines it touches (and line numbers when a
//! value holds newlines); [`PositionMap`] maps a position in the interpolated text back to
//! the file the user edited, so every error points at what they wrote. Comment lines are
//! left alone: a commented-out `${SECRET}` must not fail a pipeline.

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
    pub fn original(&self, line: u64, column: u64) -> (u64, u64) {
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
    pub name: String,
    pub line: u64,
    pub column: u64,
}

/// Interpolates `text`, reading variables through `lookup`.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(String, PositionMap), Vec<MissingVar>> {
    let mut out = String::with_capacity(text.len());
    let mut map = PositionMap::default();
    let mut missing = Vec::new();
    let mut out_line_subs: Vec<Substitution> = Vec::new();

    for (index, line) in text.split_inclusive('\n').enumerate() {
        let in_line = index as u64 + 1;
        let is_comment = line.trim_start().starts_with('#');
        let chars: Vec<char> = line.chars().collect();
        let mut out_col: u64 = 1;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !is_comment && c == '$' && chars.get(i + 1) == Some(&'$') {
                out.push('$');
                out_line_subs.push((out_col, 1, i as u64 + 1, 2));
                out_col += 1;
                i += 2;
                continue;
            }
            if !is_comment
                && c == '$'
                && chars.get(i + 1) == Some(&'{')
                && let Some(close) = chars[i + 2..].iter().position(|&c| c == '}')
            {
                let inner: String = chars[i + 2..i + 2 + close].iter().collect();
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (inner.as_str(), None),
                };
                if is_var_name(name) {
                    let in_len = close as u64 + 3;
                    let value = match lookup(name).filter(|v| !(v.is_empty() && default.is_some()))
                    {
                        Some(v) => v,
                        None => match default {
                            Some(d) => d.to_owned(),
                            None => {
                                missing.push(MissingVar {
                                    name: name.to_owned(),
                                    line: in_line,
                                    column: i as u64 + 1,
                                });
                                String::new()
                            }
                        },
                    };
                    // A value with newlines starts new output lines, each mapped back to
                    // this input line.
                    let mut parts = value.split('\n').peekable();
                    while let Some(part) = parts.next() {
                        let len = part.chars().count() as u64;
                        out.push_str(part);
                        out_line_subs.push((out_col, len.max(1), i as u64 + 1, in_len));
                        out_col += len;
                        if parts.peek().is_some() {
                            out.push('\n');
                            map.lines
                                .push((in_line, std::mem::take(&mut out_line_subs)));
                            out_col = 1;
                        }
                    }
                    i += close + 3;
                    continue;
                }
            }
            out.push(c);
            out_col += 1;
            i += 1;
        }
        map.lines
            .push((in_line, std::mem::take(&mut out_line_subs)));
    }
    if missing.is_empty() {
        Ok((out, map))
    } else {
        Err(missing)
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "LONG_VALUE" => Some("abcdefghijklmnop".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        let (out, _) = interpolate(
            "a: ${PORT}\nb: ${NOPE:-x}\nc: $${PORT}\nd: ${EMPTY:-fallback}\n# ${MISSING}\n",
            env,
        )
        .expect("all set");
        assert_eq!(
            out,
            "a: 8080\nb: x\nc: ${PORT}\nd: fallback\n# ${MISSING}\n"
        );
    }

    #[test]
    fn missing_variables_are_located() {
        let err = interpolate("a: 1\nb: x ${NOPE}\n", env).expect_err("NOPE is unset");
        assert_eq!(
            err,
            vec![MissingVar {
                name: "NOPE".into(),
                line: 2,
                column: 6
            }]
        );
    }

    #[test]
    fn maps_columns_back() {
        let (out, map) = interpolate("x: ${LONG_VALUE}, bad\n", env).expect("set");
        let bad = out.find("bad").expect("present") as u64 + 1;
        let orig = "x: ${LONG_VALUE}, bad".find("bad").expect("present") as u64 + 1;
        assert_eq!(map.original(1, bad), (1, orig));
        assert_eq!(map.original(1, 5), (1, 4));
    }
}
