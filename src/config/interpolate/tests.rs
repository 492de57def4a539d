//! Interpolation's tests, apart so `interpolate.rs` reads as the rules alone.

use super::*;
use proptest::prelude::*;

fn env(name: &str) -> Option<String> {
    match name {
        "PORT" => Some("8080".into()),
        "LONG_VALUE" => Some("abcdefghijklmnop".into()),
        "EMPTY" => Some(String::new()),
        "HOOK_TOKEN" => Some("s3cr3t #tail".into()),
        _ => None,
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    bearer: String,
    next: u8,
}

fn parsed(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).expect("YAML")
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
        "a: 8080\nb: x\nc: \"${PORT}\"\nd: fallback\n# ${MISSING}\n"
    );
}

#[test]
fn trailing_comments_are_never_interpolated() {
    let (out, _) = interpolate("a: 1 # ${VAR} and ${VAR:-default} interpolation\n", env)
        .expect("comments are not read");
    assert_eq!(out, "a: 1 # ${VAR} and ${VAR:-default} interpolation\n");
}

#[test]
fn values_reach_the_option_whole() {
    let (out, _) = interpolate("bearer: ${HOOK_TOKEN}\nport: ${PORT}\n", env).expect("set");
    let v = parsed(&out);
    assert_eq!(v["bearer"], "s3cr3t #tail");
    assert_eq!(v["port"], 8080);
}

#[test]
fn references_in_flow_collections_and_block_scalars() {
    let text = "a: [${PORT}, x]\nb: {k: ${HOOK_TOKEN}}\nc: |\n  one ${PORT}\n  two\nd: after\n";
    let (out, map) = interpolate(text, env).expect("set");
    assert_eq!(out.lines().count(), text.lines().count(), "{out}");
    let v = parsed(&out);
    assert_eq!(v["a"][0], 8080);
    assert_eq!(v["b"]["k"], "s3cr3t #tail");
    assert_eq!(v["c"], "one 8080\ntwo\n");
    assert_eq!(v["d"], "after");
    assert_eq!(map.original(6, 1), (6, 1));
}

#[test]
fn missing_variables_are_located() {
    let err =
        interpolate("a: 1\nb: x ${NOPE}\nc: \"q ${ALSO}\"\n", env).expect_err("NOPE is unset");
    assert_eq!(
        err,
        vec![
            MissingVar {
                name: "NOPE".into(),
                line: 2,
                column: 6
            },
            MissingVar {
                name: "ALSO".into(),
                line: 3,
                column: 7
            }
        ]
    );
}

#[test]
fn maps_columns_back() {
    let (out, map) = interpolate("x: [${LONG_VALUE}, bad]\n", env).expect("set");
    let bad = out.find("bad").expect("present") as u64 + 1;
    let orig = "x: [${LONG_VALUE}, bad]".find("bad").expect("present") as u64 + 1;
    assert_eq!(map.original(1, bad), (1, orig));
    assert_eq!(map.original(1, 6), (1, 5));
}

#[test]
fn secret_options_are_registered_for_redaction() {
    let lookup = |name: &str| (name == "T").then(|| "zq-interp-secret-value".to_owned());
    interpolate("sinks:\n  s:\n    auth: { token: \"${T}\" }\n", lookup).expect("set");
    assert_eq!(
        crate::redact::redact("x zq-interp-secret-value y"),
        "x [redacted] y"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever a variable holds, the option receives exactly that, unquoted or quoted,
    /// alone or inside a flow mapping, and the lines after it stay where they were.
    #[test]
    fn any_value_reaches_the_option_byte_for_byte(
        value in any::<String>(),
        layout in 0usize..5,
    ) {
        let lookup = |name: &str| (name == "V").then(|| value.clone());
        let text = match layout {
            0 => "a:\n  bearer: ${V}\n  next: 1\n",
            1 => "a:\n  bearer: \"${V}\"\n  next: 1\n",
            2 => "a: { bearer: ${V}, next: 1 }\n",
            3 => "a:\n  bearer: '${V}' # ${COMMENTED}\n  next: 1\n",
            _ => "a:\n  - ${V}\n  - 1\n",
        };
        let (out, map) = interpolate(text, lookup).expect("V is set");
        if layout == 4 {
            let v: std::collections::BTreeMap<String, (String, u8)> =
                serde_saphyr::from_str(&out).expect("valid YAML");
            prop_assert_eq!(&v["a"].0, &value);
        } else {
            let v: std::collections::BTreeMap<String, Options> =
                serde_saphyr::from_str(&out).expect("valid YAML");
            prop_assert_eq!(&v["a"].bearer, &value);
            prop_assert_eq!(v["a"].next, 1);
        }
        prop_assert_eq!(out.lines().count(), text.lines().count());
        let last = text.lines().count() as u64;
        prop_assert_eq!(map.original(last, 3), (last, 3));
    }
}

#[test]
fn defaults_may_hold_references_of_their_own() {
    let (out, _) = interpolate(
        "a: ${NOPE:-x${PORT}}\nb: ${NOPE:-x${ALSO_NOPE:-y}z}\nc: ${PORT:-${NOPE}}\nd: \"${NOPE:-$${NOPE}}\"\n",
        env,
    )
    .expect("every reference resolves");
    let v = parsed(&out);
    assert_eq!(v["a"], "x8080");
    assert_eq!(v["b"], "xyz");
    assert_eq!(v["c"], 8080, "a set variable never reads its default");
    assert_eq!(v["d"], "${NOPE}", "`$$` stays a literal `$` in a default");

    let missing = interpolate("a: 1\nb: ${NOPE:-x${ALSO_NOPE}}\n", env).expect_err("missing");
    assert_eq!(
        missing
            .iter()
            .map(|m| (m.name.as_str(), m.line, m.column))
            .collect::<Vec<_>>(),
        [("ALSO_NOPE", 2, 4)],
        "named at the outer reference"
    );
}

#[test]
fn nesting_is_bounded() {
    // Deeper than the bound, the innermost text stays as written instead of recursing.
    let deep = format!("a: \"{}x{}\"\n", "${NOPE:-".repeat(40), "}".repeat(40));
    let (out, _) = interpolate(&deep, env).expect("bounded");
    let v = parsed(&out);
    assert!(
        v["a"].as_str().is_some_and(|s| s.contains("${NOPE:-")),
        "{out}"
    );
}
