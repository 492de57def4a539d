//! The PromQL syntax tree: what [`super::parse`] builds and [`super::eval`] runs.

use std::time::Duration;

use crate::matchers::Matcher;

/// How far back an instant selector looks for a series' latest sample.
pub(crate) const LOOKBACK: Duration = Duration::from_secs(300);

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
    pub(super) fn named(name: &str) -> Option<Self> {
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
    pub(super) fn signature(self) -> (&'static [Kind], Kind) {
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

    pub(super) fn precedence(self) -> u8 {
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
            Self::Select(_) => LOOKBACK,
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
