use super::*;

fn render(src: &str, value: f64) -> String {
    let labels: BTreeMap<String, String> = [("instance", "web-1:9100"), ("job", "node")]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    GoTemplate::parse(src)
        .expect(src)
        .render(&Data {
            labels: &labels,
            value,
        })
        .expect(src)
}

#[test]
fn prometheus_annotations_render_as_prometheus_renders_them() {
    assert_eq!(
        render(
            "{{ $labels.instance }} of {{ .Labels.job }} is at {{ $value }}",
            0.5
        ),
        "web-1:9100 of node is at 0.5"
    );
    assert_eq!(render("{{ $value | humanize }}", 1_234_567.0), "1.235M");
    assert_eq!(render("{{ humanize $value }}", 0.001_234), "1.234m");
    assert_eq!(
        render("{{ $value | humanizePercentage }}", 0.1234),
        "12.34%"
    );
    assert_eq!(
        render("{{ $value | humanizeDuration }}", 3725.0),
        "1h 2m 5s"
    );
    assert_eq!(render("{{ $value | humanize1024 }}", 2048.0), "2ki");
    assert_eq!(render(r#"{{ printf "%.2f" $value }}"#, 1.23456), "1.23");
    assert_eq!(render("{{ $value }}", 1e6), "1e+06");
    assert_eq!(render("{{ $labels.missing }}|", 0.0), "|");
    assert_eq!(render("{{ $labels.job | toUpper }}", 0.0), "NODE");
    assert_eq!(render(r#"{{ index $labels "job" }}"#, 0.0), "node");
    assert_eq!(
        render(
            "{{ if gt $value 80.0 }}hot{{ else if gt $value 50.0 }}warm{{ else }}cold{{ end }}",
            60.0
        ),
        "warm"
    );
    assert_eq!(render("a  {{- \"b\" -}}  c", 0.0), "abc");
    assert_eq!(render("{{/* note */}}x", 0.0), "x");
}

#[test]
fn what_templates_cannot_do_here_is_a_parse_error() {
    for (src, says) in [
        ("{{ range $labels }}{{ end }}", "range"),
        ("{{ query \"up\" }}", "query"),
        ("{{ $x := 1 }}", "$x"),
        ("{{ if $value }}", "end"),
        ("{{ $labels.job", "unclosed"),
    ] {
        let e = GoTemplate::parse(src).expect_err(src);
        assert!(e.contains(says), "{src}: {e}");
    }
}

#[test]
fn eq_takes_several_values_and_nesting_is_bounded() {
    assert_eq!(
        render(
            r#"{{ if eq $labels.job "x" "node" }}yes{{ else }}no{{ end }}"#,
            0.0
        ),
        "yes"
    );
    let deep = format!("{{{{ {}$value{} }}}}", "(".repeat(3000), ")".repeat(3000));
    assert!(
        GoTemplate::parse(&deep)
            .expect_err("deep")
            .contains("nested")
    );
    let ifs = format!(
        "{}x{}",
        "{{ if true }}".repeat(3000),
        "{{ end }}".repeat(3000)
    );
    assert!(
        GoTemplate::parse(&ifs)
            .expect_err("deep ifs")
            .contains("nested")
    );
}

/// Each expected string is what promtool 2.42's `test rules` rendered for the same
/// template with `$value` 12.5.
#[test]
fn constants_are_ints_or_floats_as_go_reads_them() {
    assert_eq!(render("{{ 123456789 }}", 0.0), "123456789");
    assert_eq!(
        render("{{ 1e3 }} {{ 1.5 }} {{ 0x1F }} {{ 1.0 }} {{ -3 }}", 0.0),
        "1000 1.5 31 1 -3"
    );
    assert_eq!(
        render(r#"{{ printf "%d" $value }}"#, 12.5),
        "%!d(float64=12.5)"
    );
    assert_eq!(
        render(r#"{{ printf "%s" $value }}"#, 12.5),
        "%!s(float64=12.5)"
    );
    assert_eq!(
        render(r#"{{ eq 1 1 }} {{ lt "a" "b" }} {{ humanize 1234 }}"#, 0.0),
        "true true 1.234k"
    );
    // A float compared with an int is Go's error, so the annotation says so.
    let labels = BTreeMap::new();
    let error = GoTemplate::parse("{{ if gt $value 10 }}big{{ end }}")
        .expect("parses")
        .render(&Data {
            labels: &labels,
            value: 12.5,
        })
        .expect_err("float against int");
    assert!(
        error.contains("incompatible types for comparison"),
        "{error}"
    );
    assert_eq!(render("{{ if gt $value 10.0 }}big{{ end }}", 12.5), "big");
    assert!(GoTemplate::parse("{{ 99999999999999999999 }}").is_err());
    assert!(
        GoTemplate::parse("{{ .ExternalURL }}")
            .expect_err("unsupported")
            .contains("not supported")
    );
}

fn render_err(src: &str, value: f64) -> String {
    let labels = BTreeMap::new();
    GoTemplate::parse(src)
        .expect(src)
        .render(&Data {
            labels: &labels,
            value,
        })
        .expect_err(src)
}

/// What the red team found rendered differently from promtool 2.42 (Go 1.19); each
/// expected string is Go's.
#[test]
fn evaluation_follows_go() {
    assert_eq!(render(r#"{{ eq "a" "a" 3 }}"#, 0.0), "true");
    assert_eq!(render("{{ and false (gt 1 2.0) }}", 0.0), "false");
    assert_eq!(render("{{ or true (gt 1 2.0) }}", 0.0), "true");
    assert_eq!(
        render("{{ if gt $value 0.5 }}HIGH{{ else }}low{{ end }}", f64::NAN),
        "HIGH",
        "Go's gt is `not le`, true for NaN"
    );
    assert_eq!(render("{{ if lt $value 0.5 }}x{{ end }}", f64::NAN), "");
    assert!(render_err("{{ toUpper 1 }}", 0.0).contains("expected string; got int"));
    assert_eq!(render(r#"{{ index "abc" 1 }}"#, 0.0), "98");
    assert_eq!(
        render("{{ index $labels }}", 0.0),
        "map[instance:web-1:9100 job:node]"
    );
    assert_eq!(render(r#"{{ index $labels "job" }}"#, 0.0), "node");
    assert!(render_err("{{ printf 3 }}", 0.0).contains("expected string"));
}

#[test]
fn parsing_follows_go() {
    assert_eq!(render(r#"{{ "}}" }}"#, 0.0), "}}");
    assert_eq!(render("{{ `a}}b` }}", 0.0), "a}}b");
    assert_eq!(render("x{{/* a }} b */}}y", 0.0), "xy");
    assert_eq!(render(r#"{{ "\x41\101\a" }}"#, 0.0), "AA\u{7}");
    assert_eq!(
        render(
            "{{ 'a' }} {{ 0o17 }} {{ 0b101 }} {{ 1_000 }} {{ 017 }} {{ -0x8000000000000000 }}",
            0.0
        ),
        "97 15 5 1000 15 -9223372036854775808"
    );
    assert!(GoTemplate::parse("{{ 1e400 }}").is_err());
    // Go's lexer takes only ASCII space: a copied no-break space is an error, not a
    // panic (red team: `validate` crashed on it).
    let nbsp = GoTemplate::parse("{{ if true }}x{{ end\u{a0}-}}").expect_err("NBSP");
    assert!(nbsp.contains("U+00A0"), "{nbsp}");
    assert!(GoTemplate::parse("{{ if\u{a0}true }}x{{ end }}").is_err());
    // Trims take ASCII space only.
    assert_eq!(
        render("a\u{a0} {{- 1 -}} \u{3000}b", 0.0),
        "a\u{a0}1\u{3000}b"
    );
}
