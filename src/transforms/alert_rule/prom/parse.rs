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

pub(crate) use super::ast::{AggOp, BinOp, Expr, Func, Grouping, Kind, Matching, Selector};
use super::lex::{Tok, tokenize};
use crate::matchers::{Matcher, Op};
pub(crate) use crate::units::prometheus_duration as duration;

pub(crate) use super::super::expr::ParseError;

/// Nesting (parentheses, unary signs, arguments) an expression may have.
const MAX_DEPTH: usize = 64;
/// Operators, calls and aggregations an expression may have: real rules have tens, and
/// evaluation recurses once per level.
const MAX_NODES: usize = 256;

/// Parses an expression.
pub(crate) fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        depth: 0,
        nodes: 0,
    };
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
    /// Current nesting, and operators and calls so far (see `MAX_DEPTH`, `MAX_NODES`).
    depth: usize,
    nodes: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!(
                "the expression is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn node(&mut self) -> Result<(), ParseError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.error(format!(
                "the expression has more than {MAX_NODES} operators and calls"
            )));
        }
        Ok(())
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        self.error_at(self.pos, message)
    }

    /// An error at token `index` (the word an unsupported name starts at).
    fn error_at(&self, index: usize, message: impl Into<String>) -> ParseError {
        let at = self.toks[index].1;
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

    /// Whether the next token is the keyword `word` (keywords take any case).
    fn is_ident(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w.eq_ignore_ascii_case(word))
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
            Tok::Ident(w) => match w.to_ascii_lowercase().as_str() {
                "and" => BinOp::And,
                "or" => BinOp::Or,
                "unless" => BinOp::Unless,
                _ => return None,
            },
            _ => return None,
        })
    }

    /// Precedence climbing: operators binding tighter than `min` are taken here.
    fn expr(&mut self, min: u8) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut lhs = self.unary()?;
        if self.is_ident("atan2") {
            return Err(self.error("the operator `atan2` is not supported"));
        }
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
            self.node()?;
            lhs = self.binary(op, lhs, rhs, bool_, matching)?;
        }
        self.depth -= 1;
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
                Tok::Ident(l) if is_label_name(&l) => labels.push(l),
                Tok::Ident(l) => {
                    return Err(self.error(format!(
                        "`{l}` is not a label name (letters, digits and `_`, not `:`)"
                    )));
                }
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
                e => {
                    self.node()?;
                    Expr::Negate(Box::new(e))
                }
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
        let start = self.pos;
        match self.next() {
            Tok::Number(n) => Ok(Expr::Number(n)),
            Tok::Duration(_) => Err(self.error("a duration is only valid inside [ ]")),
            Tok::Str(_) => Ok(Expr::Text),
            Tok::Punct("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                if matches!(self.peek(), Tok::Punct("[")) {
                    return Err(self.error(
                        "a range applies to a selector, not to an expression in parentheses",
                    ));
                }
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
            Tok::Ident(word) => self.word(word, start),
            Tok::End => Err(self.error("unexpected end of the expression")),
            Tok::Punct(p) => Err(self.error(format!("unexpected `{p}`"))),
        }
    }

    fn word(&mut self, word: String, start: usize) -> Result<Expr, ParseError> {
        match word.to_ascii_lowercase().as_str() {
            "inf" => return Ok(Expr::Number(f64::INFINITY)),
            "nan" => return Ok(Expr::Number(f64::NAN)),
            _ => {}
        }
        let agg = match word.to_ascii_lowercase().as_str() {
            "sum" => Some(AggOp::Sum),
            "avg" => Some(AggOp::Avg),
            "min" => Some(AggOp::Min),
            "max" => Some(AggOp::Max),
            "count" => Some(AggOp::Count),
            "topk" | "bottomk" | "quantile" | "count_values" | "stddev" | "stdvar" | "group" => {
                return Err(
                    self.error_at(start, format!("the aggregation `{word}` is not supported"))
                );
            }
            _ => None,
        };
        if let Some(op) = agg {
            return self.aggregate(op);
        }
        if matches!(self.peek(), Tok::Punct("(")) {
            let Some(func) = Func::named(&word) else {
                return Err(self.error_at(start, format!("the function `{word}` is not supported")));
            };
            return self.call(func, &word);
        }
        let matchers = if self.eat("{") {
            self.matchers()?
        } else {
            Vec::new()
        };
        if let Some(m) = matchers.iter().find(|m| m.label == "__name__") {
            return Err(self.error_at(
                start,
                format!(
                    "metric name must not be set twice: \"{word}\" or \"{}\"",
                    m.value
                ),
            ));
        }
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
                if matches!(self.peek(), Tok::Punct(")")) {
                    return Err(
                        self.error("trailing commas are not allowed in function call arguments")
                    );
                }
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
        self.node()?;
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
        self.node()?;
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
                Tok::Ident(l) if is_label_name(&l) => l,
                Tok::Ident(l) => {
                    return Err(self.error(format!(
                        "`{l}` is not a label name (letters, digits and `_`, not `:`)"
                    )));
                }
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

/// Label names are `[a-zA-Z_][a-zA-Z0-9_]*`; the tokenizer also takes `:`, which only
/// metric names may hold.
fn is_label_name(word: &str) -> bool {
    !word.contains(':')
}

#[cfg(test)]
#[path = "tests/parse.rs"]
mod tests;
