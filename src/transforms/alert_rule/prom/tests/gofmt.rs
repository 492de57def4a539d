use super::*;

#[test]
fn floats_print_as_go_prints_them() {
    for (v, p, go) in [
        (1e6, None, "1e+06"),
        (123_456.0, None, "123456"),
        (1_234_567.0, None, "1.234567e+06"),
        (0.5, None, "0.5"),
        (0.000_01, None, "1e-05"),
        (0.0001, None, "0.0001"),
        (3.0, None, "3"),
        (-2.5, None, "-2.5"),
        (1000.0, Some(4), "1000"),
        (12345.0, Some(4), "1.234e+04"),
        (1.5, Some(4), "1.5"),
        (123.456, Some(4), "123.5"),
        (0.0, Some(4), "0"),
        (f64::NAN, None, "NaN"),
        (f64::INFINITY, Some(4), "+Inf"),
    ] {
        assert_eq!(float_g(v, p), go, "{v} {p:?}");
    }
}

#[test]
fn printf_takes_the_common_verbs() {
    let n = |v: f64| Val::Num(v);
    assert_eq!(printf("%.1f%%", &[n(12.345)]), "12.3%");
    assert_eq!(printf("%d items", &[Val::Int(3)]), "3 items");
    assert_eq!(
        printf("%5.1f|%-4s|", &[n(2.25), Val::Str("ab".into())]),
        "  2.2|ab  |"
    );
    assert_eq!(printf("%s=%v", &[Val::Str("a".into()), n(0.5)]), "a=0.5");
    assert_eq!(printf("%e", &[n(1234.5)]), "1.234500e+03");
    assert_eq!(printf("%s", &[]), "%!s(MISSING)");
}

/// Each expected string is what promtool 2.42's `test rules` rendered for the same
/// template (`{{ printf … }}` with `$value` 12.5 and integer constants).
#[test]
fn printf_refuses_and_formats_as_go_does() {
    let (n, i) = (Val::Num, Val::Int);
    let s = |v: &str| Val::Str(v.into());
    assert_eq!(printf("%d", &[n(12.5)]), "%!d(float64=12.5)");
    assert_eq!(printf("%d", &[n(2.0)]), "%!d(float64=2)");
    assert_eq!(printf("%s", &[n(12.5)]), "%!s(float64=12.5)");
    assert_eq!(
        printf("%f %s %d", &[i(3), Val::Bool(true), s("x")]),
        "%!f(int=3) %!s(bool=true) %!d(string=x)"
    );
    assert_eq!(
        printf(
            "%d|%s|%x|%q|%5.2f|%+d|%t",
            &[
                i(42),
                s("s"),
                s("hi"),
                i(65),
                n(12.5),
                i(3),
                Val::Bool(true)
            ]
        ),
        "42|s|6869|'A'|12.50|+3|true"
    );
    assert_eq!(
        printf(
            "%x %X %o %b %c %e",
            &[i(255), i(255), i(8), i(5), i(65), i(3)]
        ),
        "ff FF 10 101 A %!e(int=3)"
    );
    assert_eq!(
        printf(
            "%08.3f|%-6d|%6s|%.2s",
            &[n(12.5), i(7), s("ab"), s("abcdef")]
        ),
        "0012.500|7     |    ab|ab"
    );
    let mut labels = BTreeMap::new();
    labels.insert("__name__".to_owned(), "x".to_owned());
    labels.insert("job".to_owned(), "j".to_owned());
    assert_eq!(
        printf("%v %v", &[Val::Map(labels), n(2.5)]),
        "map[__name__:x job:j] 2.5"
    );
    assert_eq!(
        printf("%#x %+.1f %d", &[i(255), n(2.0), i(-4)]),
        "0xff +2.0 -4"
    );
}

#[test]
fn humanize_family_matches_prometheus() {
    assert_eq!(humanize(1_234_567.0), "1.235M");
    assert_eq!(humanize(999.0), "999");
    assert_eq!(humanize(0.0), "0");
    assert_eq!(humanize(0.25), "250m");
    assert_eq!(humanize1024(1_048_576.0), "1Mi");
    assert_eq!(humanize_duration(90_061.0), "1d 1h 1m 1s");
    assert_eq!(humanize_duration(1.5), "1.5s");
    assert_eq!(humanize_duration(0.002), "2ms");
}

/// The rest of the red team's printf table, each expected string Go's.
#[test]
fn printf_follows_go_in_the_corners() {
    let (n, i) = (Val::Num, Val::Int);
    let s = |v: &str| Val::Str(v.into());
    assert_eq!(printf("%E|%G", &[n(12.5), n(12.5)]), "1.250000E+01|12.5");
    assert_eq!(printf("%U|%#U", &[i(65), i(65)]), "U+0041|U+0041 'A'");
    assert_eq!(printf("%O|%#b", &[i(8), i(5)]), "0o10|0b101");
    assert_eq!(printf("%d", &[i(1), i(2)]), "1%!(EXTRA int=2)");
    assert_eq!(printf("%05s|%.3d", &[s("ab"), i(7)]), "000ab|007");
    assert_eq!(printf("%#v|%.2v", &[s("ab"), s("abcdef")]), "\"ab\"|ab");
    assert_eq!(printf("%+v|%+f", &[n(12.5), n(-0.0)]), "12.5|-0.000000");
    assert_eq!(
        printf("%05.1f|%+v", &[n(f64::INFINITY), n(f64::INFINITY)]),
        " +Inf|+Inf"
    );
    assert_eq!(
        printf("%q", &[s("\u{7}e\u{301}\u{a0}")]),
        "\"\\ae\u{301}\\u00a0\""
    );
    assert_eq!(
        printf("% x|%#x|% #x", &[s("hi"), s("hi"), s("hi")]),
        "68 69|0x6869|0x68 0x69"
    );
    // Go prints what precision asks for (Rust's formatter stops at 65535).
    let wide = printf("%.70000f", &[n(1.0)]);
    assert_eq!(wide.len(), 70_002);
    assert!(printf("%.70000e", &[n(2.5)]).ends_with("0e+00"));
    assert_eq!(printf("%.70000g", &[n(2.5)]), "2.5");
    assert_eq!(printf("%1000001d", &[i(1)]), "%!(BADWIDTH)1");
}
