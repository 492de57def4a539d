use super::*;
use std::time::Duration;

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
    assert!(err("1 + histogram_quantile(0.9, x)").starts_with("column 5:"));
    assert!(err("a * on(x) group_left b").contains("group_left"));
    assert!(err("rate(x[5m])[10m:1m]").contains("subqueries"));
    assert!(err("rate(x)").contains("range vector"));
    assert!(err("1 > 2").contains("bool"));
    assert!(err("x[5m] > 1").contains("range vector"));
    assert!(err(r#"{job=~".*"}"#).contains("metric name"));
    assert!(err("sum(x").contains("column"));
}

#[test]
fn what_promtool_refuses_is_refused() {
    assert!(err(r#"x{__name__="y"}"#).contains("metric name must not be set twice"));
    assert!(err(r#"x{__name__=~"x"}"#).contains("set twice"));
    assert!(err("sum by (a:b) (x)").contains("`a:b` is not a label name"));
    assert!(err(r#"x{a:b="1"}"#).contains("not a label name"));
    assert!(err("rate(x[5m],)").contains("trailing commas"));
    assert!(err("clamp_min(x, 1,)").contains("trailing commas"));
    // What promtool takes: trailing commas in braces and groupings, a name as a matcher.
    for ok in [
        r#"x{a="b",}"#,
        "sum by (a,) (x)",
        "sum(x) by (a,)",
        r#"{__name__="x"}"#,
        "job:requests:rate5m > 1",
    ] {
        parse(ok).expect(ok);
    }
}

#[test]
fn numbers_strings_and_keywords_read_as_prometheus_reads_them() {
    let number = |src: &str| match parse(src).expect(src) {
        Expr::Number(n) => n,
        other => panic!("{src}: {other:?}"),
    };
    assert_eq!(number("010"), 8.0, "octal, as Go reads it");
    assert_eq!(number("0X1F"), 31.0);
    assert_eq!(number("08"), 8.0);
    let value = |src: &str| match parse(src).expect(src) {
        Expr::Select(s) => s.matchers[0].value.clone(),
        other => panic!("{src}: {other:?}"),
    };
    assert_eq!(value(r#"x{a="\xc3\xa9"}"#), "é", "\\x escapes are bytes");
    assert_eq!(value(r#"x{a="\101"}"#), "A", "octal escapes");
    assert_eq!(value(r#"x{a="\u00e9"}"#), "é");
    // Keywords take any case.
    assert!(matches!(
        parse("100 * (count(up == 0) BY (job) / count(up) BY (job)) > 10").expect("BY"),
        Expr::Binary { .. }
    ));
    assert!(matches!(parse("SUM(x)").expect("SUM"), Expr::Aggregate(..)));
    assert!(matches!(
        parse("x AND y").expect("AND"),
        Expr::Binary { op: BinOp::And, .. }
    ));
}

#[test]
fn deep_or_huge_expressions_are_refused_not_overflowing_the_stack() {
    let parens = format!("{}x{}", "(".repeat(3000), ")".repeat(3000));
    assert!(err(&parens).contains("nested deeper"));
    let minus = format!("{}x", "-".repeat(20_000));
    assert!(err(&minus).contains("nested deeper"));
    let chain = vec!["x"; 20_000].join(" + ");
    let started = std::time::Instant::now();
    assert!(err(&chain).contains("operators"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "refused early"
    );
    assert!(err("rate((x)[5m])").contains("parentheses"));
    assert!(err("x atan2 y").contains("atan2"));
}
