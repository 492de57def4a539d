//! The part of Go's `text/template` that Prometheus rule annotations and labels use:
//! `{{ $labels.name }}`, `{{ $value }}`, `{{ .Labels.name }}`, pipelines
//! (`{{ $value | humanize }}`), `if`/`else if`/`else`/`end`, comments, `{{-`/`-}}`
//! trimming, and the functions Prometheus gives templates that need no query:
//! `humanize`, `humanize1024`, `humanizeDuration`, `humanizePercentage`, `printf`,
//! `toUpper`, `toLower`, `title`, `index`, `reReplaceAll`, `eq`, `ne`, `lt`, `le`,
//! `gt`, `ge`, `and`, `or`, `not`. A missing label is the empty string, as in
//! Prometheus (`missingkey=zero`). Anything else (`range`, `with`, `query`, variables)
//! is a parse error naming it, so the rule fails `validate`.

use std::collections::BTreeMap;

pub(crate) use super::gofmt::Val;

/// What a template sees.
pub(crate) struct Data<'a> {
    pub(crate) labels: &'a BTreeMap<String, String>,
    pub(crate) value: f64,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Vec<(Pipeline, Vec<Node>)>, Vec<Node>),
}

type Pipeline = Vec<Command>;

#[derive(Debug, Clone)]
struct Command {
    /// A function name, or `None` for a lone operand.
    func: Option<String>,
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
enum Arg {
    Labels(Option<String>),
    Value,
    External(Option<String>),
    Str(String),
    Int(i64),
    Num(f64),
    Bool(bool),
    Sub(Pipeline),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub(crate) struct GoTemplate {
    nodes: Vec<Node>,
}

impl GoTemplate {
    pub(crate) fn parse(src: &str) -> Result<Self, String> {
        let pieces = split(src)?;
        let mut at = 0;
        let nodes = block(&pieces, &mut at, &[], 0)?;
        if at < pieces.len() {
            return Err(format!("unexpected {{{{{}}}}}", describe(&pieces[at])));
        }
        Ok(Self { nodes })
    }

    pub(crate) fn render(&self, data: &Data<'_>) -> Result<String, String> {
        let mut out = String::new();
        render(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

fn render(nodes: &[Node], data: &Data<'_>, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&run(p, data)?.text()),
            Node::If(branches, otherwise) => {
                let mut taken = false;
                for (cond, body) in branches {
                    if run(cond, data)?.truthy() {
                        render(body, data, out)?;
                        taken = true;
                        break;
                    }
                }
                if !taken {
                    render(otherwise, data, out)?;
                }
            }
        }
    }
    Ok(())
}

/// Text and actions, with trimming applied.
#[derive(Debug)]
enum Piece {
    Text(String),
    Action(String),
}

fn describe(p: &Piece) -> String {
    match p {
        Piece::Text(t) => t.clone(),
        Piece::Action(a) => a.clone(),
    }
}

fn split(src: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start_matches(GO_SPACE);
        }
        let after = &rest[open + 2..];
        let trim_before =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_before {
            text = text.trim_end_matches(GO_SPACE);
        }
        if !text.is_empty() {
            out.push(Piece::Text(text.to_owned()));
        }
        let close = find_close(after).ok_or("unclosed action: `{{` without `}}`")?;
        let mut inner = &after[..close];
        if trim_before {
            inner = &inner[1..];
        }
        trim_next = inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        let inner = inner.trim_matches(GO_SPACE);
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            out.push(Piece::Action(inner.to_owned()));
        }
        rest = &after[close + 2..];
    }
    let text = if trim_next {
        rest.trim_start_matches(GO_SPACE)
    } else {
        rest
    };
    if !text.is_empty() {
        out.push(Piece::Text(text.to_owned()));
    }
    Ok(out)
}

/// Where an action's `}}` is: not inside a quoted string (`{{ "}}" }}`) or a comment.
fn find_close(after: &str) -> Option<usize> {
    let body = after.trim_start_matches('-').trim_start_matches(GO_SPACE);
    if let Some(comment) = body.strip_prefix("/*") {
        let end = after.len() - comment.len() + comment.find("*/")? + 2;
        return after[end..].find("}}").map(|j| end + j);
    }
    let bytes = after.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == b'\\' && q != b'`' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if matches!(b, b'"' | b'`' | b'\'') => quote = Some(b),
            None if b == b'}' && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

/// Nodes until one of `ends` (`end`, `else`), which is left for the caller.
fn block(
    pieces: &[Piece],
    at: &mut usize,
    ends: &[&str],
    depth: usize,
) -> Result<Vec<Node>, String> {
    if depth > MAX_DEPTH {
        return Err(format!("`if` nested deeper than {MAX_DEPTH}"));
    }
    let mut nodes = Vec::new();
    while *at < pieces.len() {
        match &pieces[*at] {
            Piece::Text(t) => {
                nodes.push(Node::Text(t.clone()));
                *at += 1;
            }
            Piece::Action(a) => {
                let word = a.split(GO_SPACE).next().unwrap_or("");
                if ends.contains(&word) {
                    return Ok(nodes);
                }
                *at += 1;
                match word {
                    "if" => nodes.push(if_node(pieces, at, &a[2..], depth)?),
                    "end" | "else" => return Err(format!("unexpected {{{{{a}}}}}")),
                    "range" | "with" | "define" | "template" | "block" | "break" | "continue" => {
                        return Err(format!("`{word}` is not supported in rule templates"));
                    }
                    _ => nodes.push(Node::Action(pipeline(a)?)),
                }
            }
        }
    }
    if ends.is_empty() {
        Ok(nodes)
    } else {
        Err("missing {{end}}".into())
    }
}

fn if_node(pieces: &[Piece], at: &mut usize, cond: &str, depth: usize) -> Result<Node, String> {
    let mut branches = vec![(
        pipeline(cond)?,
        block(pieces, at, &["else", "end"], depth + 1)?,
    )];
    loop {
        let Some(Piece::Action(a)) = pieces.get(*at) else {
            return Err("missing {{end}}".into());
        };
        *at += 1;
        if a == "end" {
            return Ok(Node::If(branches, Vec::new()));
        }
        let rest = a.strip_prefix("else").unwrap_or(a).trim_matches(GO_SPACE);
        if let Some(cond) = rest.strip_prefix("if ") {
            branches.push((
                pipeline(cond)?,
                block(pieces, at, &["else", "end"], depth + 1)?,
            ));
            continue;
        }
        if !rest.is_empty() {
            return Err(format!("unexpected {{{{{a}}}}}"));
        }
        let otherwise = block(pieces, at, &["end"], depth + 1)?;
        *at += 1;
        return Ok(Node::If(branches, otherwise));
    }
}

/// What Go's template lexer takes as space (in actions and for `{{-` / `-}}` trims):
/// ASCII only, so a copied no-break space is "bad character U+00A0", as in Go.
const GO_SPACE: &[char] = &[' ', '\t', '\r', '\n'];

/// Tokens of an action: words, quoted strings, `|`, `(` and `)`.
fn tokens(src: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if GO_SPACE.contains(&c) {
            chars.next();
        } else if c.is_whitespace() || c.is_control() {
            return Err(format!("bad character U+{:04X}", u32::from(c)));
        } else if matches!(c, '|' | '(' | ')') {
            out.push(c.to_string());
            chars.next();
        } else if c == '"' || c == '`' {
            chars.next();
            let mut end = None;
            let mut escaped = false;
            for (j, d) in chars.by_ref() {
                if c == '"' && escaped {
                    escaped = false;
                } else if c == '"' && d == '\\' {
                    escaped = true;
                } else if d == c {
                    end = Some(j);
                    break;
                }
            }
            let end = end.ok_or("unterminated string")?;
            out.push(src[i..=end].to_owned());
        } else {
            let mut end = src.len();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_whitespace() || d.is_control() || matches!(d, '|' | '(' | ')') {
                    end = j;
                    break;
                }
                chars.next();
            }
            out.push(src[i..end].to_owned());
        }
    }
    Ok(out)
}

/// Parentheses a pipeline may nest.
const MAX_DEPTH: usize = 32;

fn pipeline(src: &str) -> Result<Pipeline, String> {
    let toks = tokens(src)?;
    let mut at = 0;
    let p = pipe(&toks, &mut at, 0)?;
    if at < toks.len() {
        return Err(format!("unexpected `{}` in {{{{{src}}}}}", toks[at]));
    }
    Ok(p)
}

fn pipe(toks: &[String], at: &mut usize, depth: usize) -> Result<Pipeline, String> {
    if depth > MAX_DEPTH {
        return Err(format!("parentheses nested deeper than {MAX_DEPTH}"));
    }
    let mut commands = Vec::new();
    loop {
        let mut args = Vec::new();
        let mut func = None;
        while *at < toks.len() && toks[*at] != "|" && toks[*at] != ")" {
            let t = &toks[*at];
            *at += 1;
            if t == "(" {
                let inner = pipe(toks, at, depth + 1)?;
                if toks.get(*at).map(String::as_str) != Some(")") {
                    return Err("unclosed `(`".into());
                }
                *at += 1;
                args.push(Arg::Sub(inner));
                continue;
            }
            if func.is_none() && args.is_empty() && FUNCS.contains(&t.as_str()) {
                func = Some(t.clone());
                continue;
            }
            args.push(arg(t)?);
        }
        if func.is_none() && args.is_empty() {
            return Err("empty command".into());
        }
        if func.is_none() && args.len() > 1 {
            return Err("a value cannot take arguments".into());
        }
        commands.push(Command { func, args });
        if toks.get(*at).map(String::as_str) == Some("|") {
            *at += 1;
            continue;
        }
        return Ok(commands);
    }
}

const FUNCS: [&str; 19] = [
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "printf",
    "toUpper",
    "toLower",
    "title",
    "index",
    "reReplaceAll",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
];

fn arg(t: &str) -> Result<Arg, String> {
    let field = |rest: &str| -> Result<Option<String>, String> {
        match rest {
            "" => Ok(None),
            r => match r.strip_prefix('.') {
                Some(name) if !name.is_empty() && !name.contains('.') => Ok(Some(name.to_owned())),
                _ => Err(format!("cannot read `{t}`")),
            },
        }
    };
    if let Some(rest) = t.strip_prefix("$labels") {
        return Ok(Arg::Labels(field(rest)?));
    }
    if let Some(rest) = t.strip_prefix(".Labels") {
        return Ok(Arg::Labels(field(rest)?));
    }
    if let Some(rest) = t.strip_prefix("$externalLabels") {
        return Ok(Arg::External(field(rest)?));
    }
    if let Some(rest) = t.strip_prefix(".ExternalLabels") {
        return Ok(Arg::External(field(rest)?));
    }
    if t == "$value" || t == ".Value" {
        return Ok(Arg::Value);
    }
    if t == "true" || t == "false" {
        return Ok(Arg::Bool(t == "true"));
    }
    // A character constant is an int (`'a'` is 97).
    if let Some(inner) = t.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        let mut chars = inner.chars();
        return match (chars.next(), chars.next()) {
            (Some(c), None) if c != '\\' => Ok(Arg::Int(i64::from(u32::from(c)))),
            _ => Err(format!(
                "`{t}`: only plain character constants are supported"
            )),
        };
    }
    if let Some(s) = t.strip_prefix('`').and_then(|s| s.strip_suffix('`')) {
        return Ok(Arg::Str(s.to_owned()));
    }
    if t.starts_with('"') {
        // Go's escapes (`\x41`, `\101`, `\a`), as PromQL strings take them.
        return match super::lex::string(t, 0) {
            Ok((text, end)) if end == t.len() => Ok(Arg::Str(text)),
            _ => Err(format!("bad string {t}")),
        };
    }
    let digit_at = |i: usize| t.as_bytes().get(i).is_some_and(u8::is_ascii_digit);
    if digit_at(0) || (t.starts_with(['-', '+', '.']) && (digit_at(1) || t[1..].starts_with('.'))) {
        return number(t);
    }
    if t.starts_with('$') || t.contains(":=") || t == "=" {
        return Err(format!(
            "`{t}`: only $labels, $value and $externalLabels are available in rule templates"
        ));
    }
    Err(format!("`{t}` is not supported in rule templates"))
}

/// A number constant as Go's templates read it: an integer unless it is written with
/// a point or an exponent (`{{ 3 }}` is an int, `{{ 1e3 }}` and `{{ 3.0 }}` floats).
fn number(t: &str) -> Result<Arg, String> {
    let bad = || format!("bad number syntax: {t}");
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    // Go allows `_` between digits (`1_000`).
    let digits = rest.replace('_', "");
    let lower = digits.to_ascii_lowercase();
    let radix = [("0x", 16), ("0o", 8), ("0b", 2)]
        .into_iter()
        .find_map(|(p, r)| lower.strip_prefix(p).map(|d| (d.to_owned(), r)));
    let (body, radix) = match radix {
        Some((d, 16)) if d.contains(['.', 'p']) => return Err(bad()),
        Some(found) => found,
        // `017` is octal in Go, as in C.
        None if digits.len() > 1
            && digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (digits[1..].to_owned(), 8)
        }
        None if !digits.contains(['.', 'e', 'E']) => (digits.clone(), 10),
        None => {
            let v: f64 = digits.parse().map_err(|_| bad())?;
            if v.is_infinite() {
                return Err(format!("number out of range: {t}"));
            }
            return Ok(Arg::Num(if negative { -v } else { v }));
        }
    };
    // Through i128, so that -0x8000000000000000 still fits.
    let n = i128::from_str_radix(&body, radix).map_err(|_| bad())?;
    let n = if negative { -n } else { n };
    i64::try_from(n)
        .map(Arg::Int)
        .map_err(|_| format!("{t} overflows int"))
}

fn run(p: &Pipeline, data: &Data<'_>) -> Result<Val, String> {
    let mut piped: Option<Val> = None;
    for c in p {
        // `and` and `or` stop at the first argument that decides (Go 1.18+), so what
        // comes after it is never evaluated.
        if let Some(f @ ("and" | "or")) = c.func.as_deref()
            && piped.is_none()
            && !c.args.is_empty()
        {
            let mut last = Val::Bool(false);
            for a in &c.args {
                last = value(a, data)?;
                if last.truthy() == (f == "or") {
                    break;
                }
            }
            piped = Some(last);
            continue;
        }
        let mut args = c
            .args
            .iter()
            .map(|a| value(a, data))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(v) = piped.take() {
            args.push(v);
        }
        piped = Some(match &c.func {
            None => args.pop().ok_or("empty command")?,
            Some(f) => super::gofuncs::call(f, args)?,
        });
    }
    piped.ok_or_else(|| "empty pipeline".into())
}

fn value(a: &Arg, data: &Data<'_>) -> Result<Val, String> {
    Ok(match a {
        Arg::Labels(None) => Val::Map(data.labels.clone()),
        Arg::Labels(Some(name)) => Val::Str(data.labels.get(name).cloned().unwrap_or_default()),
        Arg::External(None) => Val::Map(BTreeMap::new()),
        Arg::External(Some(_)) => Val::Str(String::new()),
        Arg::Value => Val::Num(data.value),
        Arg::Str(s) => Val::Str(s.clone()),
        Arg::Int(n) => Val::Int(*n),
        Arg::Num(n) => Val::Num(*n),
        Arg::Bool(b) => Val::Bool(*b),
        Arg::Sub(p) => run(p, data)?,
    })
}

#[cfg(test)]
#[path = "tests/gotmpl.rs"]
mod tests;
