//! The PromQL that `alert_rule` evaluates: a tokenizer and a precedence-climbing parser
//! into [`Expr`].
//!
//! What it takes: numbers, strings, vector selectors with `=`, `!=`, `=~`, `!~`
//! matchers, range selectors, the functions of [`Func`], `sum`/`avg`/`min`/`max`/
//! `count` with `by` or `without`, unary minus, and the binary operators with
//! Prometheus's precedence (`^`; `*` `/` `%`; `+` `-`; comparisons with optional
//! `bool`; `and` `unless`; `or`), vector matching with `on` or `ignoring`. What it does
//! not take (`offset`, `@`, subqueries, `group_left`, `topk`, unknown functions) is an
//! error naming the construct, so a rule sluice cannot evaluate fails `validate`.

use std::time::Duration;

use crate::matchers::{Matcher, Op};

/// A parse error at a 1-based column of the expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParseError {
    pub(crate) column: usize,
    pub(crate) message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

/// A selector: a metric name (or none) and label matchers.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    pub(crate) name: Option<String>,
    pub(crate) matchers: Vec<Matcher>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Rate,
    Increase,
    Delta,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    SumOverTime,
    CountOverTime,
    LastOverTime,
    PresentOverTime,
    Absent,
    Abs,
    Ceil,
    Floor,
    ClampMin,
    ClampMax,
    Time,
    Vector,
    Scalar,
}

/// What an argument or an expression evaluates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Scalar,
    Instant,
    Range,
}

impl Func {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "rate" => Self::Rate,
            "increase" => Self::Increase,
            "delta" => Self::Delta,
            "avg_over_time" => Self::AvgOverTime,
            "min_over_time" => Self::MinOverTime,
            "max_over_time" => Self::MaxOverTime,
            "sum_over_time" => Self::SumOverTime,
            "count_over_time" => Self::CountOverTime,
            "last_over_time" => Self::LastOverTime,
            "present_over_time" => Self::PresentOverTime,
            "absent" => Self::Absent,
            "abs" => Self::Abs,
            "ceil" => Self::Ceil,
            "floor" => Self::Floor,
            "clamp_min" => Self::ClampMin,
            "clamp_max" => Self::ClampMax,
            "time" => Self::Time,
            "vector" => Self::Vector,
            "scalar" => Self::Scalar,
            _ => return None,
        })
    }

    /// The kinds of its arguments, and of its result.
    fn signature(self) -> (&'static [Kind], Kind) {
        use Kind::{Instant, Range, Scalar};
        match self {
            Self::Rate
            | Self::Increase
            | Self::Delta
            | Self::AvgOverTime
            | Self::MinOverTime
            | Self::MaxOverTime
            | Self::SumOverTime
            | Self::CountOverTime
            | Self::LastOverTime
            | Self::PresentOverTime => (&[Range], Instant),
            Self::Absent | Self::Abs | Self::Ceil | Self::Floor => (&[Instant], Instant),
            Self::ClampMin | Self::ClampMax => (&[Instant, Scalar], Instant),
            Self::Time => (&[], Scalar),
            Self::Vector => (&[Scalar], Instant),
            Self::Scalar => (&[Instant], Scalar),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub(crate) fn is_comparison(self) -> bool {
        matches!(
            self,
            Self::Eq | Self::Ne | Self::Gt | Self::Lt | Self::Ge | Self::Le
        )
    }

    pub(crate) fn is_set(self) -> bool {
        matches!(self, Self::And | Self::Or | Self::Unless)
    }

    fn precedence(self) -> u8 {
        match self {
            Self::Or => 1,
            Self::And | Self::Unless => 2,
            Self::Eq | Self::Ne | Self::Gt | Self::Lt | Self::Ge | Self::Le => 3,
            Self::Add | Self::Sub => 4,
            Self::Mul | Self::Div | Self::Mod => 5,
            Self::Pow => 6,
        }
    }
}

/// Which labels decide that two samples match (`on`), or do not (`ignoring`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Matching {
    On(Vec<String>),
    Ignoring(Vec<String>),
}

/// Which labels an aggregation keeps (`by`) or drops (`without`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Number(f64),
    /// A string literal: no function sluice evaluates takes one.
    Text,
    Select(Selector),
    Range(Selector, Duration),
    Call(Func, Vec<Expr>),
    Aggregate(AggOp, Grouping, Box<Expr>),
    Negate(Box<Expr>),
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        bool_: bool,
        matching: Matching,
    },
}

impl Expr {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Self::Number(_) | Self::Text => Kind::Scalar,
            Self::Select(_) | Self::Aggregate(..) => Kind::Instant,
            Self::Range(..) => Kind::Range,
            Self::Call(f, _) => f.signature().1,
            Self::Negate(e) => e.kind(),
            Self::Binary { lhs, rhs, .. } => {
                if lhs.kind() == Kind::Scalar && rhs.kind() == Kind::Scalar {
                    Kind::Scalar
                } else {
                    Kind::Instant
                }
            }
        }
    }

    /// The longest range any selector of the expression reads, and whether an instant
    /// selector reads the lookback.
    pub(crate) fn reach(&self) -> Duration {
        match self {
            Self::Number(_) | Self::Text => Duration::ZERO,
            Self::Select(_) => super::eval::LOOKBACK,
            Self::Range(_, d) => *d,
            Self::Call(_, args) => args.iter().map(Self::reach).max().unwrap_or_default(),
            Self::Aggregate(_, _, e) | Self::Negate(e) => e.reach(),
            Self::Binary { lhs, rhs, .. } => lhs.reach().max(rhs.reach()),
        }
    }

    /// Every selector of the expression.
    pub(crate) fn selectors(&self) -> Vec<&Selector> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Self::Select(s) | Self::Range(s, _) = e {
                out.push(s);
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Self)) {
        f(self);
        match self {
            Self::Call(_, args) => args.iter().for_each(|a| a.walk(f)),
            Self::Aggregate(_, _, e) | Self::Negate(e) => e.walk(f),
            Self::Binary { lhs, rhs, .. } => {
                lhs.walk(f);
                rhs.walk(f);
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
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

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
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
                {
                    i += 1;
                }
                i += 1;
            }
            let text = &src[start..i];
            let tok = if let Ok(n) = text.parse::<f64>() {
                Tok::Number(n)
            } else if let Some(hex) = text.strip_prefix("0x") {
                let n = i64::from_str_radix(hex, 16)
                    .map_err(|_| err(start, format!("bad number {text:?}")))?;
                Tok::Number(n as f64)
            } else {
                Tok::Duration(
                    duration(text).ok_or_else(|| err(start, format!("bad number {text:?}")))?,
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
/// Double and single quotes take Go's escapes; backquotes are raw.
fn string(src: &str, at: usize) -> Result<(String, usize), String> {
    let quote = src.as_bytes()[at] as char;
    let mut out = String::new();
    let mut chars = src[at + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Ok((out, at + 1 + i + 1));
        }
        if c == '\\' && quote != '`' {
            let (_, e) = chars.next().ok_or("unterminated string")?;
            out.push(match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '\\' | '"' | '\'' => e,
                'a' => '\u{7}',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'v' => '\u{b}',
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = (0..n)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    u32::from_str_radix(&hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("bad escape \\{e}{hex}"))?
                }
                other => return Err(format!("unknown escape \\{other}")),
            });
            continue;
        }
        out.push(c);
    }
    Err("unterminated string".into())
}

/// A Prometheus duration: one or more `<n><unit>` with units y w d h m s ms, largest
/// first (`1h30m`).
pub(crate) fn duration(text: &str) -> Option<Duration> {
    const UNITS: [(&str, u64); 7] = [
        ("ms", 1),
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ];
    let mut rest = text;
    let mut total: u64 = 0;
    let mut last_rank = usize::MAX;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, ms) = UNITS.iter().find(|(u, _)| rest.starts_with(u))?;
        // Units must come largest first, each at most once.
        let size_rank = ["y", "w", "d", "h", "m", "s", "ms"]
            .iter()
            .position(|u| u == unit)?;
        if last_rank != usize::MAX && size_rank <= last_rank {
            return None;
        }
        last_rank = size_rank;
        total = total.checked_add(n.checked_mul(*ms)?)?;
        rest = &rest[unit.len()..];
    }
    Some(Duration::from_millis(total))
}

/// Parses an expression.
pub(crate) fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = tokenize(src)?;
    let mut p = Parser { src, toks, pos: 0 };
    let e = p.expr(0)?;
    if p.peek() != &Tok::End {
        return Err(p.error("unexpected input after the expression"));
    }
    Ok(e)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        let at = self.toks[self.pos].1;
        ParseError {
            column: self.src[..at].chars().count() + 1,
            message: message.into(),
        }
    }

    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Tok::Punct(q) if *q == p) {
            self.next();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), ParseError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(self.error(format!("expected `{p}`")))
        }
    }

    fn is_ident(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w == word)
    }

    fn binop(&self) -> Option<BinOp> {
        Some(match self.peek() {
            Tok::Punct(p) => match *p {
                "+" => BinOp::Add,
                "-" => BinOp::Sub,
                "*" => BinOp::Mul,
                "/" => BinOp::Div,
                "%" => BinOp::Mod,
                "^" => BinOp::Pow,
                "==" => BinOp::Eq,
                "!=" => BinOp::Ne,
                ">" => BinOp::Gt,
                "<" => BinOp::Lt,
                ">=" => BinOp::Ge,
                "<=" => BinOp::Le,
                _ => return None,
            },
            Tok::Ident(w) => match w.as_str() {
                "and" => BinOp::And,
                "or" => BinOp::Or,
                "unless" => BinOp::Unless,
                "atan2" => return None,
                _ => return None,
            },
            _ => return None,
        })
    }

    /// Precedence climbing: operators binding tighter than `min` are taken here.
    fn expr(&mut self, min: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.binop() {
            let prec = op.precedence();
            if prec < min {
                break;
            }
            self.next();
            let bool_ = if self.is_ident("bool") {
                if !op.is_comparison() {
                    return Err(self.error("`bool` only follows a comparison"));
                }
                self.next();
                true
            } else {
                false
            };
            let matching = self.matching()?;
            if self.is_ident("group_left") || self.is_ident("group_right") {
                return Err(self
                    .error("group_left and group_right (many-to-one matching) are not supported"));
            }
            // `^` is right-associative; the others associate to the left.
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = self.binary(op, lhs, rhs, bool_, matching)?;
        }
        Ok(lhs)
    }

    fn binary(
        &self,
        op: BinOp,
        lhs: Expr,
        rhs: Expr,
        bool_: bool,
        matching: Option<Matching>,
    ) -> Result<Expr, ParseError> {
        for side in [&lhs, &rhs] {
            match side.kind() {
                Kind::Range => {
                    return Err(self.error(
                        "a range vector cannot be an operand: apply a function such as rate() to it",
                    ));
                }
                Kind::Scalar if matches!(side, Expr::Text) => {
                    return Err(self.error("a string cannot be an operand"));
                }
                _ => {}
            }
        }
        let scalars = lhs.kind() == Kind::Scalar && rhs.kind() == Kind::Scalar;
        if op.is_comparison() && scalars && !bool_ {
            return Err(self.error("comparisons between scalars must use the `bool` modifier"));
        }
        if op.is_set() && (lhs.kind() == Kind::Scalar || rhs.kind() == Kind::Scalar) {
            return Err(self.error("and, or and unless are only defined between vectors"));
        }
        if matching.is_some() && (lhs.kind() == Kind::Scalar || rhs.kind() == Kind::Scalar) {
            return Err(self.error("vector matching only applies between two vectors"));
        }
        Ok(Expr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
            bool_,
            matching: matching.unwrap_or(Matching::Ignoring(Vec::new())),
        })
    }

    fn matching(&mut self) -> Result<Option<Matching>, ParseError> {
        let on = if self.is_ident("on") {
            true
        } else if self.is_ident("ignoring") {
            false
        } else {
            return Ok(None);
        };
        self.next();
        let labels = self.label_list()?;
        Ok(Some(if on {
            Matching::On(labels)
        } else {
            Matching::Ignoring(labels)
        }))
    }

    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect("(")?;
        let mut labels = Vec::new();
        while !self.eat(")") {
            match self.next() {
                Tok::Ident(l) => labels.push(l),
                _ => return Err(self.error("expected a label name")),
            }
            if !self.eat(",") {
                self.expect(")")?;
                break;
            }
        }
        Ok(labels)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat("-") {
            // `-a ^ b` is `-(a ^ b)`: only `^` binds tighter than unary minus.
            let e = self.expr(BinOp::Pow.precedence())?;
            return Ok(match e {
                Expr::Number(n) => Expr::Number(-n),
                e => Expr::Negate(Box::new(e)),
            });
        }
        if self.eat("+") {
            return self.expr(BinOp::Pow.precedence());
        }
        let e = self.primary()?;
        self.postfix(e)
    }

    fn postfix(&mut self, e: Expr) -> Result<Expr, ParseError> {
        if self.is_ident("offset") {
            return Err(self.error("the offset modifier is not supported"));
        }
        if !self.eat("[") {
            return Ok(e);
        }
        let Expr::Select(sel) = e else {
            return Err(
                self.error("subqueries are not supported: a range applies to a selector only")
            );
        };
        let range = match self.next() {
            Tok::Duration(d) => d,
            _ => return Err(self.error("expected a duration such as 5m")),
        };
        if matches!(self.peek(), Tok::Ident(w) if w.starts_with(':')) {
            return Err(self.error("subqueries are not supported"));
        }
        self.expect("]")?;
        if range.is_zero() {
            return Err(self.error("a range must be longer than zero"));
        }
        if self.is_ident("offset") {
            return Err(self.error("the offset modifier is not supported"));
        }
        Ok(Expr::Range(sel, range))
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.next() {
            Tok::Number(n) => Ok(Expr::Number(n)),
            Tok::Duration(_) => Err(self.error("a duration is only valid inside [ ]")),
            Tok::Str(_) => Ok(Expr::Text),
            Tok::Punct("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("{") => {
                let matchers = self.matchers()?;
                if !matchers.iter().any(|m| !m.matches(Some(""))) {
                    return Err(self.error(
                        "a selector needs a metric name or a matcher that does not match the empty label",
                    ));
                }
                Ok(Expr::Select(Selector {
                    name: None,
                    matchers,
                }))
            }
            Tok::Ident(word) => self.word(word),
            Tok::End => Err(self.error("unexpected end of the expression")),
            Tok::Punct(p) => Err(self.error(format!("unexpected `{p}`"))),
        }
    }

    fn word(&mut self, word: String) -> Result<Expr, ParseError> {
        match word.to_ascii_lowercase().as_str() {
            "inf" => return Ok(Expr::Number(f64::INFINITY)),
            "nan" => return Ok(Expr::Number(f64::NAN)),
            _ => {}
        }
        let agg = match word.as_str() {
            "sum" => Some(AggOp::Sum),
            "avg" => Some(AggOp::Avg),
            "min" => Some(AggOp::Min),
            "max" => Some(AggOp::Max),
            "count" => Some(AggOp::Count),
            "topk" | "bottomk" | "quantile" | "count_values" | "stddev" | "stdvar" | "group" => {
                return Err(self.error(format!("the aggregation `{word}` is not supported")));
            }
            _ => None,
        };
        if let Some(op) = agg {
            return self.aggregate(op);
        }
        if matches!(self.peek(), Tok::Punct("(")) {
            let Some(func) = Func::named(&word) else {
                return Err(self.error(format!("the function `{word}` is not supported")));
            };
            return self.call(func, &word);
        }
        let matchers = if self.eat("{") {
            self.matchers()?
        } else {
            Vec::new()
        };
        Ok(Expr::Select(Selector {
            name: Some(word),
            matchers,
        }))
    }

    fn call(&mut self, func: Func, name: &str) -> Result<Expr, ParseError> {
        self.expect("(")?;
        let mut args = Vec::new();
        if !self.eat(")") {
            loop {
                args.push(self.expr(0)?);
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        let (kinds, _) = func.signature();
        if args.len() != kinds.len() {
            return Err(self.error(format!(
                "{name}() takes {} argument(s), not {}",
                kinds.len(),
                args.len()
            )));
        }
        for (arg, want) in args.iter().zip(kinds) {
            if arg.kind() != *want {
                let what = match want {
                    Kind::Scalar => "a scalar",
                    Kind::Instant => "an instant vector",
                    Kind::Range => "a range vector such as x[5m]",
                };
                return Err(self.error(format!("{name}() takes {what}")));
            }
        }
        Ok(Expr::Call(func, args))
    }

    fn aggregate(&mut self, op: AggOp) -> Result<Expr, ParseError> {
        let mut grouping = self.grouping()?;
        self.expect("(")?;
        let inner = self.expr(0)?;
        if self.eat(",") {
            return Err(self.error("this aggregation takes one argument"));
        }
        self.expect(")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        if inner.kind() != Kind::Instant {
            return Err(self.error("an aggregation takes an instant vector"));
        }
        Ok(Expr::Aggregate(
            op,
            grouping.unwrap_or(Grouping::By(Vec::new())),
            Box::new(inner),
        ))
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        if self.is_ident("by") {
            self.next();
            Ok(Some(Grouping::By(self.label_list()?)))
        } else if self.is_ident("without") {
            self.next();
            Ok(Some(Grouping::Without(self.label_list()?)))
        } else {
            Ok(None)
        }
    }

    fn matchers(&mut self) -> Result<Vec<Matcher>, ParseError> {
        let mut out = Vec::new();
        while !self.eat("}") {
            let label = match self.next() {
                Tok::Ident(l) => l,
                _ => return Err(self.error("expected a label name")),
            };
            let op = match self.next() {
                Tok::Punct("=") => Op::Equal,
                Tok::Punct("!=") => Op::NotEqual,
                Tok::Punct("=~") => Op::Regex,
                Tok::Punct("!~") => Op::NotRegex,
                _ => return Err(self.error("expected =, !=, =~ or !~")),
            };
            let value = match self.next() {
                Tok::Str(s) => s,
                _ => return Err(self.error("expected a quoted label value")),
            };
            out.push(Matcher::new(&label, op, &value).map_err(|e| self.error(e))?);
            if !self.eat(",") {
                self.expect("}")?;
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        parse(src).expect_err(src).to_string()
    }

    #[test]
    fn precedence_and_associativity_follow_prometheus() {
        // 2 ^ 3 ^ 2 = 2 ^ 9; -2 ^ 2 = -(2 ^ 2); 1 + 2 * 3 = 7.
        let Expr::Binary { op, rhs, .. } = parse("2 ^ 3 ^ 2").expect("parse") else {
            panic!("binary")
        };
        assert_eq!(op, BinOp::Pow);
        assert!(matches!(*rhs, Expr::Binary { op: BinOp::Pow, .. }));
        assert!(matches!(parse("-2 ^ 2").expect("parse"), Expr::Negate(_)));
        let Expr::Binary { op, .. } = parse("a > 1 and b or c").expect("parse") else {
            panic!("binary")
        };
        assert_eq!(op, BinOp::Or);
    }

    #[test]
    fn selectors_ranges_functions_and_aggregations_parse() {
        let e = parse(
            r#"sum by (job) (rate(http_requests_total{code=~"5..", job!="x"}[5m])) / ignoring(code) sum by (job) (rate(http_requests_total[5m])) > 0.05"#,
        )
        .expect("parse");
        assert_eq!(e.kind(), Kind::Instant);
        assert_eq!(e.reach(), Duration::from_secs(300));
        assert_eq!(e.selectors().len(), 2);
        let e = parse("avg(up) without (instance)").expect("trailing grouping");
        assert!(matches!(
            e,
            Expr::Aggregate(AggOp::Avg, Grouping::Without(_), _)
        ));
        assert_eq!(parse("1 > bool 0").expect("bool").kind(), Kind::Scalar);
        assert_eq!(duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(duration("30m1h"), None);
        assert_eq!(duration("90s"), Some(Duration::from_secs(90)));
    }

    #[test]
    fn what_sluice_cannot_evaluate_is_named() {
        assert!(err("rate(x[5m] offset 1m)").contains("offset"));
        assert!(err("x @ 100").contains("@"));
        assert!(err("topk(3, x)").contains("topk"));
        assert!(err("histogram_quantile(0.9, x)").contains("histogram_quantile"));
        assert!(err("a * on(x) group_left b").contains("group_left"));
        assert!(err("rate(x[5m])[10m:1m]").contains("subqueries"));
        assert!(err("rate(x)").contains("range vector"));
        assert!(err("1 > 2").contains("bool"));
        assert!(err("x[5m] > 1").contains("range vector"));
        assert!(err(r#"{job=~".*"}"#).contains("metric name"));
        assert!(err("sum(x").contains("column"));
    }
}
