//! Rule expressions: a tokenizer and a recursive-descent parser into a small AST.
//!
//! Grammar (whitespace is free between tokens):
//! ```text
//! condition := "absent" "(" NAME "[" DURATION "]" ")"
//!            | sum CMP sum
//! sum       := product (("+" | "-") product)*
//! product   := factor (("*" | "/") factor)*
//! factor    := NUMBER | "(" sum ")" | "-" factor
//!            | AGG "(" NAME "[" DURATION "]" ")"          AGG: avg min max sum count rate
//!            | "count" "(" PATH CMP LITERAL ")" "[" DURATION "]"
//!            | NAME                                        the latest sample (instant)
//! CMP       := ">" | ">=" | "<" | "<=" | "==" | "!="
//! LITERAL   := NUMBER | "string" | 'string' | true | false
//! ```
//! Metric names and event paths are identifiers with dots (`labels.env`). Errors carry
//! the 1-based column of the offending token so the config error can point at it.

use std::time::Duration;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl CmpOp {
    pub(crate) fn apply(self, a: f64, b: f64) -> bool {
        match self {
            Self::Gt => a > b,
            Self::Ge => a >= b,
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Eq => a == b,
            Self::Ne => a != b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggFn {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A literal compared with an event field in `count(field == literal)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Number(f64),
    Text(String),
    Bool(bool),
}

/// A number-valued expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Number(f64),
    Neg(Box<Expr>),
    /// The latest sample of a metric.
    Instant(String),
    Agg {
        func: AggFn,
        metric: String,
        window: Duration,
    },
    /// Events (of any kind) whose `path` compares true with `literal`, in `window`.
    CountMatching {
        path: String,
        op: CmpOp,
        literal: Literal,
        window: Duration,
    },
    Binary(Box<Expr>, ArithOp, Box<Expr>),
}

/// What a rule tests.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Condition {
    Compare(Expr, CmpOp, Expr),
    Absent { metric: String, window: Duration },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Dur(Duration),
    Cmp(CmpOp),
    Arith(ArithOp),
    LParen,
    RParen,
    LBracket,
    RBracket,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num(n) => format!("number `{n}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Ident(i) => format!("`{i}`"),
            Tok::Dur(d) => format!("duration `{}`", humantime::format_duration(*d)),
            Tok::Cmp(_) => "a comparison".into(),
            Tok::Arith(_) => "an operator".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::End => "the end of the expression".into(),
        }
    }
}

fn err<T>(column: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        column,
        message: message.into(),
    })
}

/// Splits `src` into (token, 1-based column). A duration is only read right after `[`.
fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let after_bracket = matches!(out.last(), Some((Tok::LBracket, _)));
        if after_bracket && c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let d = humantime::parse_duration(&text).map_err(|e| ParseError {
                column: col,
                message: format!("invalid duration `{text}`: {e}"),
            })?;
            if d.is_zero() {
                return err(col, "a window must be longer than zero");
            }
            out.push((Tok::Dur(d), col));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.'
                    || chars[i] == 'e'
                    || chars[i] == 'E'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n: f64 = text.parse().map_err(|_| ParseError {
                column: col,
                message: format!("invalid number `{text}`"),
            })?;
            out.push((Tok::Num(n), col));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | ':'))
            {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), col));
            continue;
        }
        if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return err(col, "unterminated string"),
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(e) => s.push(*e),
                            None => return err(col, "unterminated string"),
                        }
                        i += 2;
                    }
                    Some(q) if *q == c => {
                        i += 1;
                        break;
                    }
                    Some(other) => {
                        s.push(*other);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Str(s), col));
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            ('>', Some('=')) => (Tok::Cmp(CmpOp::Ge), 2),
            ('<', Some('=')) => (Tok::Cmp(CmpOp::Le), 2),
            ('=', Some('=')) => (Tok::Cmp(CmpOp::Eq), 2),
            ('!', Some('=')) => (Tok::Cmp(CmpOp::Ne), 2),
            ('>', _) => (Tok::Cmp(CmpOp::Gt), 1),
            ('<', _) => (Tok::Cmp(CmpOp::Lt), 1),
            ('+', _) => (Tok::Arith(ArithOp::Add), 1),
            ('-', _) => (Tok::Arith(ArithOp::Sub), 1),
            ('*', _) => (Tok::Arith(ArithOp::Mul), 1),
            ('/', _) => (Tok::Arith(ArithOp::Div), 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('[', _) => (Tok::LBracket, 1),
            (']', _) => (Tok::RBracket, 1),
            ('=', _) => return err(col, "`=` is not an operator; use `==`"),
            _ => return err(col, format!("unexpected character `{c}`")),
        };
        out.push((tok, col));
        i += len;
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].0
    }
    fn next(&mut self) -> (Tok, usize) {
        let t = self.toks[self.pos.min(self.toks.len() - 1)].clone();
        self.pos += 1;
        t
    }
    fn expect(&mut self, want: Tok, what: &str) -> Result<(), ParseError> {
        let (t, col) = self.next();
        if t == want {
            Ok(())
        } else {
            err(col, format!("expected {what}, found {}", t.describe()))
        }
    }
    fn name(&mut self, what: &str) -> Result<String, ParseError> {
        match self.next() {
            (Tok::Ident(n), _) => Ok(n),
            (t, col) => err(col, format!("expected {what}, found {}", t.describe())),
        }
    }
    fn window(&mut self) -> Result<Duration, ParseError> {
        self.expect(Tok::LBracket, "`[` and a window such as `[5m]`")?;
        let d = match self.next() {
            (Tok::Dur(d), _) => d,
            (t, col) => {
                return err(
                    col,
                    format!(
                        "expected a window duration such as `5m`, found {}",
                        t.describe()
                    ),
                );
            }
        };
        self.expect(Tok::RBracket, "`]`")?;
        Ok(d)
    }

    fn condition(&mut self) -> Result<Condition, ParseError> {
        if matches!(self.peek(), Tok::Ident(n) if n == "absent") {
            self.next();
            self.expect(Tok::LParen, "`(` after `absent`")?;
            let metric = self.name("a metric name")?;
            let window = self.window()?;
            self.expect(Tok::RParen, "`)`")?;
            return Ok(Condition::Absent { metric, window });
        }
        let left = self.sum()?;
        let (op, col) = match self.next() {
            (Tok::Cmp(op), col) => (op, col),
            (t, col) => {
                return err(
                    col,
                    format!(
                        "expected a comparison (>, >=, <, <=, ==, !=), found {}",
                        t.describe()
                    ),
                );
            }
        };
        if self.peek() == &Tok::End {
            return err(col + 1, "expected a value after the comparison");
        }
        let right = self.sum()?;
        Ok(Condition::Compare(left, op, right))
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.product()?;
        while let Tok::Arith(op @ (ArithOp::Add | ArithOp::Sub)) = *self.peek() {
            self.next();
            let right = self.product()?;
            left = Expr::Binary(Box::new(left), op, Box::new(right));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.factor()?;
        while let Tok::Arith(op @ (ArithOp::Mul | ArithOp::Div)) = *self.peek() {
            self.next();
            let right = self.factor()?;
            left = Expr::Binary(Box::new(left), op, Box::new(right));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Expr, ParseError> {
        let (tok, col) = self.next();
        match tok {
            Tok::Num(n) => Ok(Expr::Number(n)),
            Tok::Arith(ArithOp::Sub) => Ok(Expr::Neg(Box::new(self.factor()?))),
            Tok::LParen => {
                let e = self.sum()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(e)
            }
            Tok::Ident(name) if self.peek() == &Tok::LParen => self.call(&name, col),
            Tok::Ident(name) if name == "absent" => err(
                col,
                "`absent(…)` is a whole condition and cannot be compared",
            ),
            Tok::Ident(name) => Ok(Expr::Instant(name)),
            t => err(col, format!("expected a value, found {}", t.describe())),
        }
    }

    fn call(&mut self, name: &str, col: usize) -> Result<Expr, ParseError> {
        let func = match name {
            "avg" => AggFn::Avg,
            "min" => AggFn::Min,
            "max" => AggFn::Max,
            "sum" => AggFn::Sum,
            "count" => AggFn::Count,
            "rate" => AggFn::Rate,
            "absent" => {
                return err(
                    col,
                    "`absent(…)` is a whole condition and cannot be compared",
                );
            }
            other => {
                return err(
                    col,
                    format!(
                        "unknown function `{other}` (expected avg, min, max, sum, count, rate or absent)"
                    ),
                );
            }
        };
        self.expect(Tok::LParen, "`(`")?;
        let inner = self.name("a metric name or an event field")?;
        if func == AggFn::Count
            && let Tok::Cmp(op) = *self.peek()
        {
            self.next();
            let literal = match self.next() {
                (Tok::Num(n), _) => Literal::Number(n),
                (Tok::Arith(ArithOp::Sub), _) => match self.next() {
                    (Tok::Num(n), _) => Literal::Number(-n),
                    (t, c) => return err(c, format!("expected a number, found {}", t.describe())),
                },
                (Tok::Str(s), _) => Literal::Text(s),
                (Tok::Ident(b), _) if b == "true" => Literal::Bool(true),
                (Tok::Ident(b), _) if b == "false" => Literal::Bool(false),
                (t, c) => {
                    return err(
                        c,
                        format!(
                            "expected a literal (number, \"string\", true, false), found {}",
                            t.describe()
                        ),
                    );
                }
            };
            self.expect(Tok::RParen, "`)`")?;
            let window = self.window()?;
            return Ok(Expr::CountMatching {
                path: inner,
                op,
                literal,
                window,
            });
        }
        let window = self.window()?;
        self.expect(Tok::RParen, "`)`")?;
        Ok(Expr::Agg {
            func,
            metric: inner,
            window,
        })
    }
}

/// Parses a rule expression.
pub(crate) fn parse(src: &str) -> Result<Condition, ParseError> {
    let mut p = Parser {
        toks: tokenize(src)?,
        pos: 0,
    };
    let c = p.condition()?;
    match p.next() {
        (Tok::End, _) => Ok(c),
        (t, col) => err(
            col,
            format!("unexpected {} after the condition", t.describe()),
        ),
    }
}

impl Expr {
    /// Calls `f` on every leaf that reads data.
    pub(crate) fn visit<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        match self {
            Expr::Neg(e) => e.visit(f),
            Expr::Binary(a, _, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::Number(_) => {}
            leaf => f(leaf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(n: u64) -> Duration {
        Duration::from_secs(60 * n)
    }

    #[test]
    fn parses_thresholds_windows_ratios_counts_and_absence() {
        assert_eq!(
            parse("cpu_usage > 80").expect("parses"),
            Condition::Compare(
                Expr::Instant("cpu_usage".into()),
                CmpOp::Gt,
                Expr::Number(80.0)
            )
        );
        for (src, op) in [
            ("x >= 1", CmpOp::Ge),
            ("x < 1", CmpOp::Lt),
            ("x <= 1", CmpOp::Le),
            ("x == 1", CmpOp::Eq),
            ("x != 1", CmpOp::Ne),
        ] {
            assert!(
                matches!(parse(src), Ok(Condition::Compare(_, o, _)) if o == op),
                "{src}"
            );
        }
        assert_eq!(
            parse("avg(cpu_usage[5m]) > 80").expect("parses"),
            Condition::Compare(
                Expr::Agg {
                    func: AggFn::Avg,
                    metric: "cpu_usage".into(),
                    window: m(5)
                },
                CmpOp::Gt,
                Expr::Number(80.0)
            )
        );
        let ratio =
            parse("sum(messages_failed[1m]) / sum(messages_sent[1m]) > 0.05").expect("parses");
        let Condition::Compare(Expr::Binary(a, ArithOp::Div, b), CmpOp::Gt, Expr::Number(t)) =
            ratio
        else {
            panic!("a ratio: {ratio:?}");
        };
        assert_eq!(t, 0.05);
        assert!(
            matches!(*a, Expr::Agg { func: AggFn::Sum, ref metric, .. } if metric == "messages_failed")
        );
        assert!(
            matches!(*b, Expr::Agg { func: AggFn::Sum, ref metric, .. } if metric == "messages_sent")
        );
        assert_eq!(
            parse(r#"count(severity == "critical")[10m] >= 3"#).expect("parses"),
            Condition::Compare(
                Expr::CountMatching {
                    path: "severity".into(),
                    op: CmpOp::Eq,
                    literal: Literal::Text("critical".into()),
                    window: m(10)
                },
                CmpOp::Ge,
                Expr::Number(3.0)
            )
        );
        assert_eq!(
            parse("absent(heartbeat[2m])").expect("parses"),
            Condition::Absent {
                metric: "heartbeat".into(),
                window: m(2)
            }
        );
        assert!(parse("rate(requests_total[30s]) * 60 - 1 > (2 + 3)").is_ok());
        assert!(parse("count(labels.env != 'prod')[1h] > 0").is_ok());
        assert!(parse("count(x[1m]) > 2").is_ok());
    }

    #[test]
    fn errors_name_the_column_and_what_was_expected() {
        let cases = [
            ("cpu_usage >", 12, "expected a value after the comparison"),
            ("cpu_usage = 80", 11, "use `==`"),
            ("avg(cpu_usage) > 1", 14, "expected `[` and a window"),
            ("avg(cpu_usage[5x]) > 1", 15, "invalid duration `5x`"),
            ("median(x[1m]) > 1", 1, "unknown function `median`"),
            ("cpu_usage 80", 11, "expected a comparison"),
            ("x > 1 )", 7, "unexpected `)` after the condition"),
            ("count(a == )[1m] > 1", 12, "expected a literal"),
            ("x > 'open", 5, "unterminated string"),
            ("absent(x[1m]) > 1", 15, "unexpected a comparison"),
            ("x > # 1", 5, "unexpected character `#`"),
            ("avg(x[0s]) > 1", 7, "longer than zero"),
        ];
        for (src, column, text) in cases {
            let e = parse(src).expect_err(src);
            assert_eq!(e.column, column, "{src}: {e}");
            assert!(e.to_string().contains(text), "{src}: {e}");
        }
    }
}
