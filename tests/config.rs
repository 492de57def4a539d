//! The pipeline file: positions in errors, interpolation, merging, graph checks.

use std::path::PathBuf;

use sluice::config::{ConfigError, ConfigErrors, Pipeline, load_texts};

fn env(name: &str) -> Option<String> {
    match name {
        "HOOK_PORT" => Some("9999".into()),
        "LONG_NAME_FOR_A_VARIABLE" => Some("x".into()),
        _ => None,
    }
}

fn load(files: &[(&str, &str)]) -> Result<Pipeline, ConfigErrors> {
    let texts: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(n, t)| (PathBuf::from(n), (*t).to_owned()))
        .collect();
    load_texts(&texts, env)
}

fn errors(files: &[(&str, &str)]) -> Vec<ConfigError> {
    match load(files) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0,
    }
}

fn one_error(yaml: &str) -> String {
    let e = errors(&[("p.yaml", yaml)]);
    assert_eq!(e.len(), 1, "{e:?}");
    e[0].to_string()
}

const SINK: &str = "sinks:\n  out: { type: console, inputs: [src] }\n";

#[test]
fn misspelled_field_names_line_column_and_component() {
    let yaml = format!("sources:\n  src:\n    type: generator\n    cont: 5\n{SINK}");
    assert_eq!(
        one_error(&yaml),
        "p.yaml:4:5: component `sources.src`: unknown field `cont`, expected one of rate, count, format, batch_size; did you mean `count`?"
    );
}

/// Three typos in three components are three errors in one run, with an unknown type
/// and a bad VRL program beside them; and a graph error does not hide a bad program.
#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let yaml = "sources:\n  a: { type: generator, cont: 5 }\n  b: { type: generatr }\ntransforms:\n  t: { type: remap, inputs: [a], sorce: '.x = 1' }\n  u: { type: remap, inputs: [a], source: '.x = ' }\nsinks:\n  out: { type: console, inputs: [t], encodng: json }\n";
    let e: Vec<String> = errors(&[("p.yaml", yaml)])
        .iter()
        .map(ToString::to_string)
        .collect();
    let expect = [
        ("p.yaml:2:", "sources.a", "unknown field `cont`"),
        ("p.yaml:3:", "sources.b", "unknown source type `generatr`"),
        ("p.yaml:5:", "transforms.t", "unknown field `sorce`"),
        ("p.yaml:6:", "transforms.u", ""),
        ("p.yaml:8:", "sinks.out", "unknown field `encodng`"),
    ];
    assert_eq!(e.len(), expect.len(), "{e:#?}");
    for (at, component, message) in expect {
        assert!(
            e.iter()
                .any(|l| l.starts_with(at) && l.contains(component) && l.contains(message)),
            "no {at} {component} {message} in {e:#?}"
        );
    }

    let yaml = "sources:\n  a: { type: generator }\ntransforms:\n  u: { type: remap, inputs: [nope], source: '.x = ' }\nsinks:\n  out: { type: console, inputs: [u] }\n";
    let e: Vec<String> = errors(&[("p.yaml", yaml)])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e.iter().any(|l| l.contains("unknown input `nope`")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("transforms.u") && !l.contains("nope")),
        "{e:#?}"
    );
}

/// A file of hundreds of broken components is not read to its end (each costs a pass
/// over the file): twenty are reported, then a note.
#[test]
fn errors_stop_after_twenty_invalid_components() {
    let mut yaml = String::from("sources:\n");
    for i in 0..500 {
        yaml.push_str(&format!("  s{i}: {{ type: generator, rat: 5 }}\n"));
    }
    yaml.push_str("sinks:\n  out: { type: blackhole, inputs: [s0] }\n");
    let e: Vec<String> = errors(&[("p.yaml", &yaml)])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(e.len(), 21, "{e:#?}");
    assert!(e[19].contains("sources.s19"), "{}", e[19]);
    assert!(
        e[20].contains("stopped after 20 invalid components"),
        "{}",
        e[20]
    );
}

#[test]
fn a_listen_address_that_cannot_be_bound_is_an_error() {
    for bad in ["garbage", "0.0.0.0:99999", ":8080", "host:", "a b:80"] {
        let yaml = format!(
            "sources:\n  hook: {{ type: webhook, address: \"{bad}\" }}\nsinks:\n  out: {{ type: blackhole, inputs: [hook] }}\n"
        );
        let e = one_error(&yaml);
        assert!(
            e.contains("component `sources.hook`") && e.contains("is not an address to listen on"),
            "{bad}: {e}"
        );
    }
    for good in [
        "0.0.0.0:8080",
        "[::1]:8080",
        "localhost:8080",
        "127.0.0.1:0",
    ] {
        let yaml = format!(
            "sources:\n  hook: {{ type: webhook, address: \"{good}\" }}\nsinks:\n  out: {{ type: blackhole, inputs: [hook] }}\n"
        );
        assert!(load(&[("p.yaml", &yaml)]).is_ok(), "{good}");
    }
}

#[test]
fn unknown_input_names_the_entry() {
    let yaml = "sources:\n  src: { type: generator }\nsinks:\n  out:\n    type: console\n    inputs: [src, srcc, nothing_like_it]\n";
    let e = errors(&[("p.yaml", yaml)]);
    let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "p.yaml:6:19: component `sinks.out`: unknown input `srcc`; did you mean `src`?",
            "p.yaml:6:25: component `sinks.out`: unknown input `nothing_like_it`: no source or transform has this id",
        ]
    );
}

#[test]
fn cycles_are_errors() {
    let yaml = r#"
sources:
  src: { type: generator }
transforms:
  a: { type: remap, inputs: [src, c], source: ".a = 1" }
  b: { type: remap, inputs: [a], source: ".b = 1" }
  c: { type: remap, inputs: [b], source: ".c = 1" }
sinks:
  out: { type: console, inputs: [c] }
"#;
    let e = one_error(yaml);
    assert!(
        e.starts_with(
            "p.yaml:5:6: component `transforms.a`: cycle in the pipeline: a -> b -> c -> a"
        ),
        "{e}"
    );
}

#[test]
fn unknown_types_and_missing_type_are_located() {
    let yaml = "sources:\n  src:\n    type: generater\nsinks:\n  out: { inputs: [src] }\n";
    let e: Vec<String> = errors(&[("p.yaml", yaml)])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("p.yaml:3:11: component `sources.src`: unknown source type `generater`"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("p.yaml:5:8: component `sinks.out`: missing field `type`"),
        "{}",
        e[1]
    );
}

#[test]
fn sinks_need_inputs_and_sinks_are_not_inputs() {
    let yaml = r#"
sources:
  src: { type: generator }
sinks:
  a: { type: console, inputs: [src] }
  b: { type: console }
  c: { type: console, inputs: [a] }
"#;
    let e: Vec<String> = errors(&[("p.yaml", yaml)])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        e,
        [
            "p.yaml:6:6: component `sinks.b`: `inputs` is missing or empty; list the components it reads",
            "p.yaml:7:32: component `sinks.c`: input `a` is a sink; this sink has no outputs to read",
        ]
    );
}

#[test]
fn named_outputs_must_exist() {
    let yaml = r#"
sources:
  src: { type: generator }
transforms:
  r: { type: remap, inputs: [src], source: ".a = 1" }
sinks:
  ok: { type: console, inputs: [r, r.dropped] }
  bad: { type: console, inputs: [r.nope] }
"#;
    assert_eq!(
        one_error(yaml),
        "p.yaml:8:34: component `sinks.bad`: component `r` has no output named `nope` (its named outputs: `r.dropped`)"
    );
}

#[test]
fn wildcards_that_match_nothing_are_errors() {
    let yaml = "sources:\n  src: { type: generator }\nsinks:\n  out: { type: console, inputs: [src, \"hooks_*\"] }\n";
    assert_eq!(
        one_error(yaml),
        "p.yaml:4:39: component `sinks.out`: input pattern `hooks_*` matches no component output"
    );
}

#[test]
fn outputs_nobody_reads_are_warnings() {
    let yaml = r#"
sources:
  src: { type: generator }
  lonely: { type: generator }
transforms:
  unused: { type: remap, inputs: [src], source: ".a = 1" }
sinks:
  out: { type: console, inputs: [src] }
"#;
    let p = load(&[("p.yaml", yaml)]).expect("valid");
    let w: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "p.yaml:4:11: component `sources.lonely`: no component reads its output; its events are discarded",
            "p.yaml:6:11: component `transforms.unused`: no component reads its output; its events are discarded",
        ]
    );
}

#[test]
fn alertmanager_receivers_nobody_reads_are_warnings() {
    let yaml = r#"
sources:
  src: { type: generator }
transforms:
  router:
    type: alertmanager_route
    inputs: [src]
    route: { receiver: default, routes: [{ matchers: [team=db], receiver: db }] }
sinks:
  out: { type: console, inputs: [router.default] }
"#;
    let p = load(&[("p.yaml", yaml)]).expect("valid");
    let w: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "p.yaml:6:5: component `transforms.router`: no component reads output `router.db`; what is routed there is discarded"
        ]
    );
}

#[test]
fn interpolation_substitutes_and_keeps_error_columns_true() {
    let yaml = "sources:\n  src: { type: webhook, address: \"127.0.0.1:${HOOK_PORT}\", path: \"${HOOK_PATH:-/in}\" }\nsinks:\n  out: { type: console, inputs: [src] }\n";
    let p = load(&[("p.yaml", yaml)]).expect("valid");
    let debug = format!("{:?}", p.sources["src"].config);
    assert!(debug.contains("address: \"127.0.0.1:9999\""), "{debug}");
    assert!(debug.contains("path: Some(\"/in\")"), "{debug}");

    // The unknown field sits after a substitution that changed the line's length.
    let yaml = "sources:\n  src: { type: webhook, address: \"${LONG_NAME_FOR_A_VARIABLE}\", bogus: 1 }\nsinks:\n  out: { type: console, inputs: [src] }\n";
    let column = yaml
        .lines()
        .nth(1)
        .and_then(|l| l.find("bogus"))
        .expect("present")
        + 1;
    assert_eq!(
        one_error(yaml),
        format!(
            "p.yaml:2:{column}: component `sources.src`: unknown field `bogus`, expected one of address, path, decoder, auth, sns, default_severity, routes, max_body_bytes, max_events_per_request, decode_timeout, request_timeout, read_timeout, capture_headers, keep_raw, tls"
        )
    );
}

#[test]
fn missing_variables_are_errors_with_positions() {
    let yaml = "sources:\n  src: { type: webhook, address: \"${NOT_SET_ANYWHERE}\" }\n";
    assert_eq!(
        one_error(yaml),
        "p.yaml:2:35: environment variable `NOT_SET_ANYWHERE` is not set (write `${NOT_SET_ANYWHERE:-default}` to give a default)"
    );
}

#[test]
fn several_files_merge_into_one_pipeline() {
    let sources = "sources:\n  src: { type: generator }\n";
    let rest = "transforms:\n  r: { type: remap, inputs: [src], source: \".a = 1\" }\nsinks:\n  out: { type: console, inputs: [r] }\n";
    let p = load(&[("sources.yaml", sources), ("rest.yaml", rest)]).expect("merged");
    assert_eq!(p.sources.len() + p.transforms.len() + p.sinks.len(), 3);
    assert_eq!(p.graph.inputs["out"][0].to_string(), "r");

    let dup = "sources:\n  src: { type: stdin }\n";
    let e = errors(&[
        ("sources.yaml", sources),
        ("rest.yaml", rest),
        ("dup.yaml", dup),
    ]);
    assert_eq!(
        e[0].to_string(),
        "dup.yaml:2:8: component `sources.src`: component id `src` is already declared at sources.yaml:2:8"
    );
}

#[test]
fn vrl_errors_are_reported_at_validation() {
    let yaml = "sources:\n  src: { type: generator }\ntransforms:\n  r: { type: remap, inputs: [src], source: \".a = parse_json(.b)\" }\nsinks:\n  out: { type: console, inputs: [r] }\n";
    let e = one_error(yaml);
    assert!(
        e.starts_with("p.yaml:4:6: component `transforms.r`: VRL program does not compile"),
        "{e}"
    );
    assert!(e.contains("E103"), "{e}");

    let yaml = "sources:\n  src: { type: generator }\ntransforms:\n  f: { type: filter, inputs: [src], condition: \".a\" }\nsinks:\n  out: { type: console, inputs: [f] }\n";
    assert!(one_error(yaml).contains("a condition must return a boolean"));
}

#[test]
fn top_level_typos_and_empty_pipelines_are_errors() {
    let e = one_error("source:\n  src: { type: generator }\n");
    assert!(e.starts_with("p.yaml:1:1: unknown field `source`"), "{e}");
    let e: Vec<String> = errors(&[("p.yaml", "# nothing\n")])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        e,
        [
            "p.yaml:1:1: the pipeline has no sources",
            "p.yaml:1:1: the pipeline has no sinks"
        ]
    );
}

#[test]
fn buffer_settings_apply_to_sinks_only() {
    let yaml = "sources:\n  src: { type: generator }\nsinks:\n  out: { type: console, inputs: [src], buffer: { max_events: 42 } }\n";
    let p = load(&[("p.yaml", yaml)]).expect("valid");
    assert_eq!(p.sinks["out"].buffer.max_events(), 42);
    let yaml = "sources:\n  src: { type: generator, buffer: { max_events: 42 } }\nsinks:\n  out: { type: console, inputs: [src] }\n";
    assert!(one_error(yaml).contains("unknown field `buffer`"));
    let yaml = "sources:\n  src: { type: generator }\nsinks:\n  out: { type: console, inputs: [src], buffer: { type: disk, max_bytes: 64MiB, sync: interval, sync_interval: 50ms } }\n";
    let p = load(&[("p.yaml", yaml)]).expect("valid");
    let b = p.sinks["out"].buffer;
    assert_eq!(b.max_bytes(), Some(64 << 20));
    assert_eq!(
        b.max_events(),
        usize::MAX,
        "a disk buffer is bounded in bytes by default"
    );
    assert_eq!(b.sync_every(), Some(std::time::Duration::from_millis(50)));
    let yaml = "sources:\n  src: { type: generator }\nsinks:\n  out: { type: console, inputs: [src], buffer: { type: tape } }\n";
    assert!(one_error(yaml).contains("unknown variant `tape`"));
    let yaml = "sources:\n  src: { type: generator }\nsinks:\n  out: { type: console, inputs: [src], buffer: { sync: always } }\n";
    let e = one_error(yaml);
    assert!(
        e.contains("apply to `type: disk` only") && e.contains("out"),
        "{e}"
    );
    let yaml = "sources:\n  src: { type: generator }\nsinks:\n  out: { type: console, inputs: [src], buffer: { type: disk, max_bytes: 12 parsecs } }\n";
    assert!(one_error(yaml).contains("unknown size unit `parsecs`"));
}

#[test]
fn two_sources_cannot_listen_on_one_address() {
    let yaml = "sources:\n  a: { type: webhook, address: \"127.0.0.1:9000\" }\n  b: { type: webhook, address: \"127.0.0.1:9000\" }\nsinks:\n  out: { type: console, inputs: [a, b] }\n";
    assert_eq!(
        one_error(yaml),
        "p.yaml:3:6: component `sources.b`: source `a` already listens on 127.0.0.1:9000"
    );
}

#[test]
fn a_sink_with_a_dead_letter_output_is_read_by_its_name() {
    let yaml = r#"
sources:
  src: { type: generator }
sinks:
  hook: { type: http, inputs: [src], url: "http://127.0.0.1:9/x" }
  dead: { type: console, inputs: [hook.dead_letter] }
  wrong: { type: console, inputs: [hook] }
"#;
    assert_eq!(
        one_error(yaml),
        "p.yaml:7:36: component `sinks.wrong`: input `hook` is a sink; read one of its named outputs (`hook.dead_letter`)"
    );
    let ok = yaml.replace("  wrong: { type: console, inputs: [hook] }\n", "");
    let p = load(&[("p.yaml", &ok)]).expect("valid");
    assert_eq!(p.graph.inputs["dead"][0].to_string(), "hook.dead_letter");
}

#[test]
fn http_sink_oauth2_auth_is_checked() {
    let ok = "sources:\n  src: { type: generator }\nsinks:\n  out: { type: http, inputs: [src], url: \"http://127.0.0.1:9/\", auth: { strategy: oauth2, token_url: \"http://127.0.0.1:9/token\", client_id: a, client_secret: b } }\n";
    load(&[("p.yaml", ok)]).expect("valid");
    let both = ok.replace(
        "client_secret: b",
        "client_secret: b, client_secret_file: /x",
    );
    assert!(
        one_error(&both).contains("give exactly one of `client_secret` and `client_secret_file`")
    );
}
