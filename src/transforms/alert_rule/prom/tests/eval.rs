use super::super::parse::parse;
use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn run(store: &Store, expr: &str, t: i64) -> Vec<(Labels, f64)> {
    let Value::Vector(mut v) = eval(&parse(expr).expect(expr), store, t).expect("eval") else {
        panic!("{expr}: not a vector")
    };
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    v.into_iter().map(|s| (s.labels, s.value)).collect()
}

/// A counter rising 1 per 15 s and a gauge, for two instances, over 10 minutes.
fn store() -> Store {
    let mut s = Store::default();
    for i in 0..=40 {
        let t = i * 15_000;
        for (instance, slope) in [("a", 1.0), ("b", 2.0)] {
            let mut l = labels(&[
                (NAME, "requests_total"),
                ("instance", instance),
                ("job", "api"),
            ]);
            s.push(l.clone(), t, slope * i as f64, 100);
            l.insert(NAME.into(), "temp".into());
            s.push(l, t, 50.0 + slope * 10.0, 100);
        }
    }
    s
}

#[test]
fn rate_and_increase_extrapolate_as_prometheus_does() {
    let s = store();
    let t = 600_000;
    // Samples cover the whole 5m range: 1 per 15 s is 1/15 per second exactly.
    let r = run(&s, "rate(requests_total[5m])", t);
    assert_eq!(r.len(), 2);
    assert!((r[0].1 - 1.0 / 15.0).abs() < 1e-9, "{r:?}");
    assert!(!r[0].0.contains_key(NAME));
    let inc = run(&s, r#"increase(requests_total{instance="b"}[5m])"#, t);
    assert!((inc[0].1 - 40.0).abs() < 1e-9, "{inc:?}");
}

#[test]
fn aggregations_comparisons_and_matching() {
    let s = store();
    let t = 600_000;
    assert_eq!(
        run(&s, "sum by (job) (temp)", t),
        vec![(labels(&[("job", "api")]), 130.0)]
    );
    assert_eq!(run(&s, "max(temp) without (instance)", t)[0].1, 70.0);
    // A filter keeps the name and the value; `bool` drops the name and gives 0/1.
    assert_eq!(
        run(&s, "temp > 65", t),
        vec![(
            labels(&[(NAME, "temp"), ("instance", "b"), ("job", "api")]),
            70.0
        )]
    );
    assert_eq!(run(&s, "temp > bool 65", t).len(), 2);
    let ratio = run(&s, "requests_total / ignoring(x) temp", t);
    assert_eq!(ratio.len(), 2);
    assert!((ratio[0].1 - 40.0 / 60.0).abs() < 1e-9);
    assert_eq!(
        run(
            &s,
            r#"temp and on(instance) requests_total{instance="a"}"#,
            t
        )
        .len(),
        1
    );
    assert_eq!(run(&s, r#"temp unless temp{instance="a"}"#, t).len(), 1);
    assert_eq!(
        run(&s, "absent(nothing{job=\"x\"})", t),
        vec![(labels(&[("job", "x")]), 1.0)]
    );
    assert!(run(&s, "absent(temp)", t).is_empty());
    // As promtool 2.42's `absent`: a label named by a second `=` or `=~` matcher is
    // left out; `!=` and `!~` do not count.
    assert_eq!(
        run(
            &s,
            r#"absent(nothing{job="x",job="x",env="p",zone!="a",team="t",team=~"t",dc="1",dc!~"2"})"#,
            t
        ),
        vec![(labels(&[("dc", "1"), ("env", "p")]), 1.0)]
    );
    assert!(
        run(&s, r#"absent(nothing{job=~"x",job="a"})"#, t)[0]
            .0
            .is_empty()
    );
    // Past the lookback nothing is current.
    assert!(run(&s, "temp", t + 301_000).is_empty());
    assert_eq!(run(&s, "temp", t + 300_000).len(), 2);
}

#[test]
fn one_to_one_matching_refuses_duplicates_as_prometheus_does() {
    let s = store();
    let e = parse("temp / on(job) requests_total").expect("parse");
    assert!(matches!(
        eval(&e, &s, 600_000),
        Err(EvalError::ManyToMany(_))
    ));
}

#[test]
fn the_store_bounds_series_and_prunes() {
    let mut s = Store::default();
    assert!(s.push(labels(&[(NAME, "a")]), 0, 1.0, 1));
    assert!(
        !s.push(labels(&[(NAME, "b")]), 0, 1.0, 1),
        "over max_series"
    );
    assert!(
        s.push(labels(&[(NAME, "a")]), 10, 2.0, 1),
        "an existing series"
    );
    s.prune(5);
    assert_eq!(s.series(), 1);
    s.prune(11);
    assert_eq!(s.series(), 0);
}
