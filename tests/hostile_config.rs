//! Issue 21, "Secrets and the admin API" and "Settings from the environment", on the
//! configuration side: `${VAR}` values that reach their option whole, comments that are
//! never interpolated, errors that still point at the right place and never quote a
//! secret, empty secrets refused, and `SLUICE_*` variables that are not settings.
//! Everything runs the real binary.

mod common;

use std::process::Output;

use common::{Process, Receiver, free_port, run_pipeline, sluice, wait_for_port};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn validate(text: &str, env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "p.yaml", text);
    let mut cmd = sluice();
    cmd.args(["validate", "-c"]).arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `bearer: ${HOOK_TOKEN}` unquoted, with `HOOK_TOKEN='s3cr3t #tail'`, used to send
/// `Bearer s3cr3t`. What the receiver gets is the whole value, and so is every other
/// substituted option, whatever YAML would make of the text.
#[tokio::test]
async fn substituted_values_reach_the_wire_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let receiver = Receiver::new(port);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let router = receiver.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let tricky = "a: b #c 'd' \"e\" {f} [g] *h &i !j %k @l `m` |n >o ,p";
    let pipeline = write(
        &dir,
        "p.yaml",
        &format!(
            "sources:\n  src: {{ type: generator, count: 1 }}\n\
             sinks:\n  out:\n    type: http\n    inputs: [src]\n    url: http://127.0.0.1:{port}/in\n    \
             auth: {{ strategy: bearer, token: ${{HOOK_TOKEN}} }}\n    \
             headers:\n      X-Tricky: ${{TRICKY}}\n      X-Star: ${{STAR}}\n      X-Default: ${{UNSET_HEADER:-x #y}}\n"
        ),
    );
    let mut cmd = run_pipeline(&pipeline, dir.path(), None);
    cmd.env("HOOK_TOKEN", "s3cr3t #tail")
        .env("TRICKY", tricky)
        .env("STAR", "*anchor")
        .env_remove("UNSET_HEADER");
    let _p = Process::spawn(cmd);
    common::eventually("the request", || !receiver.requests().is_empty()).await;
    let request = &receiver.requests()[0];
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("authorization"), "Bearer s3cr3t #tail");
    assert_eq!(header("x-tricky"), tricky);
    assert_eq!(header("x-star"), "*anchor");
    assert_eq!(header("x-default"), "x #y");
}

/// The README's first pipeline ends a line with `# ${VAR} and ${VAR:-default}
/// interpolation`: a comment, never interpolated, so `VAR` need not be set.
#[test]
fn trailing_comments_are_never_interpolated() {
    let out = validate(
        "sources:\n  src: { type: generator }  # ${VAR} and ${VAR:-default} interpolation\n\
         sinks:\n  # ${ALSO_UNSET}\n  out: { type: console, inputs: [src] } # ${VAR}\n",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Errors still point where the user wrote the mistake, after a substitution that
/// changed the line's length or brought newlines.
#[test]
fn errors_after_substitutions_point_at_the_original_position() {
    let env = [
        (
            "LONG",
            "a value much longer than the reference: with # and :",
        ),
        ("LINES", "one\ntwo\nthree\nfour"),
    ];
    let text = "sources:\n  src: { type: generator, format: ${LONG}, bogus: 1 }\nsinks:\n  out: { type: console, inputs: [src] }\n";
    let out = validate(text, &env);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    let bogus = text
        .lines()
        .nth(1)
        .and_then(|l| l.find("bogus"))
        .expect("bogus")
        + 1;
    assert!(
        err.contains(&format!(
            "p.yaml:2:{bogus}: component `sources.src`: unknown field `bogus`"
        )),
        "{err}"
    );
    // A value with newlines does not move the lines after it.
    let text = "sources:\n  src:\n    type: generator\n    format: ${LINES}\n    rat: 5\nsinks:\n  out: { type: console, inputs: [src] }\n";
    let out = validate(text, &env);
    let err = stderr(&out);
    assert!(
        err.contains("p.yaml:5:5: component `sources.src`: unknown field `rat`"),
        "{err}"
    );
}

/// A missing variable is located in the file, in quoted and unquoted values alike.
#[test]
fn missing_variables_name_their_position() {
    let text = "sources:\n  src: { type: generator, format: \"x ${NOT_SET_1}\" }\nsinks:\n  out: { type: console, inputs: [src], encoding: ${NOT_SET_2} }\n";
    let out = validate(text, &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    let column = |line: usize, name: &str| {
        text.lines()
            .nth(line - 1)
            .and_then(|l| l.find(&format!("${{{name}}}")))
            .expect("present")
            + 1
    };
    for (line, name) in [(2, "NOT_SET_1"), (4, "NOT_SET_2")] {
        let at = format!(
            "p.yaml:{line}:{}: environment variable `{name}`",
            column(line, name)
        );
        assert!(err.contains(&at), "{at}: {err}");
    }
}

/// `sluice validate` on options whose values hold secrets: each error names the
/// component, and no secret reaches standard error.
#[test]
fn validate_does_not_echo_secrets() {
    let out = validate(
        "sources:\n  src: { type: generator }\nsinks:\n  \
         a: { type: http, inputs: [src], url: \"https://alice:${HOOK_PASSWORD}@bad host/x\" }\n  \
         b: { type: http, inputs: [src], url: \"https://h.example:99999/x?api_key=Qu3ryKey77&sig=S1gnature\" }\n  \
         c: { type: http, inputs: [src], url: \"https://hooks.slack.com:77777/services/T9/B9/SlackHookS3cret\" }\n",
        &[("HOOK_PASSWORD", "pa55w0rd-from-env")],
    );
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    for component in ["sinks.a", "sinks.b", "sinks.c"] {
        assert!(err.contains(component), "{component}: {err}");
    }
    for secret in [
        "pa55w0rd-from-env",
        "Qu3ryKey77",
        "S1gnature",
        "SlackHookS3cret",
    ] {
        assert!(!err.contains(secret), "{secret} in: {err}");
    }
}

/// An empty `${VAR}` in an auth option is a validate error naming the component and the
/// option, not a request sent with no credentials.
#[test]
fn empty_secrets_are_errors() {
    let cases = [
        (
            "auth: { strategy: bearer, token: \"${EMPTY}\" }",
            "`auth.token` is empty",
        ),
        (
            "auth: { strategy: basic, user: alice, password: \"${EMPTY}\" }",
            "`auth.password` is empty",
        ),
        (
            "auth: { strategy: oauth2, token_url: \"http://127.0.0.1:1/token\", client_id: me, client_secret: \"${EMPTY}\" }",
            "`client_secret` is empty",
        ),
    ];
    for (auth, expected) in cases {
        let out = validate(
            &format!(
                "sources:\n  src: {{ type: generator }}\nsinks:\n  out: {{ type: http, inputs: [src], url: \"http://127.0.0.1:1/\", {auth} }}\n"
            ),
            &[("EMPTY", "")],
        );
        assert_eq!(out.status.code(), Some(78), "{auth}");
        let err = stderr(&out);
        assert!(
            err.contains("component `sinks.out`") && err.contains(expected),
            "{auth}: {err}"
        );
    }
    let out = validate(
        "sources:\n  src: { type: generator }\nsinks:\n  ce:\n    type: cloudevents\n    inputs: [src]\n    sink: { endpoint: \"http://127.0.0.1:1/\" }\n    metadata: {}\n    oidc: { token_url: \"http://127.0.0.1:1/t\", client_id: me, client_secret: \"${EMPTY}\" }\n",
        &[("EMPTY", "")],
    );
    let err = stderr(&out);
    assert!(
        err.contains("component `sinks.ce`") && err.contains("`client_secret` is empty"),
        "{err}"
    );
    let out = validate(
        "sources:\n  src: { type: generator }\nsinks:\n  k:\n    type: kafka\n    inputs: [src]\n    bootstrap_servers: 127.0.0.1:1\n    topic: t\n    librdkafka_options:\n      security.protocol: sasl_plaintext\n      sasl.mechanism: PLAIN\n      sasl.username: me\n      sasl.password: \"${EMPTY}\"\n",
        &[("EMPTY", "")],
    );
    let err = stderr(&out);
    assert!(
        err.contains("component `sinks.k`")
            && err.contains("`librdkafka_options.sasl.password` is empty"),
        "{err}"
    );
}

const RUNNING_PIPELINE: &str = "sources:\n  src: { type: generator, rate: 1 }\nsinks:\n  out: { type: blackhole, inputs: [src] }\n";

/// Kubernetes sets `SLUICE_PORT` and `SLUICE_SERVICE_HOST` in every pod of a namespace
/// with a Service named `sluice`; sluice used to exit 78 on them. They are ignored, with
/// a debug line that names the variable and never shows its value.
#[tokio::test]
async fn kubernetes_service_variables_do_not_stop_sluice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write(&dir, "p.yaml", RUNNING_PIPELINE);
    let api = free_port();
    let mut cmd = run_pipeline(&pipeline, dir.path(), Some(&format!("127.0.0.1:{api}")));
    cmd.env("SLUICE_PORT", "tcp://10.96.7.7:8686")
        .env("SLUICE_PORT_8686_TCP_ADDR", "10.96.7.7")
        .env("SLUICE_SERVICE_HOST", "10.96.7.7")
        .env("SLUICE_SERVICE_PORT", "8686")
        // A typo of SLUICE_API__AUTH_TOKEN, holding a secret: ignored, never printed.
        .env("SLUICE_API_AUTH_TOKEN", "Typo3dS3cretValue")
        .env("SLUICE_LOG__LEVEL", "debug");
    let mut p = Process::spawn(cmd);
    wait_for_port(api).await;
    let live = reqwest::get(format!("http://127.0.0.1:{api}/health/live"))
        .await
        .expect("GET");
    assert_eq!(live.status(), 200);
    p.signal("TERM");
    let out =
        p.0.take()
            .expect("running")
            .wait_with_output()
            .expect("exits");
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    for name in [
        "SLUICE_PORT",
        "SLUICE_SERVICE_HOST",
        "SLUICE_API_AUTH_TOKEN",
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains("DEBUG") && l.contains(name) && l.contains("names no setting")),
            "{name}: {err}"
        );
    }
    assert!(!err.contains("10.96.7.7"), "{err}");
    assert!(!err.contains("Typo3dS3cretValue"), "{err}");
}

/// `SLUICE_LOG__LEVEL=bogus` used to turn every log off silently.
#[test]
fn a_bogus_log_level_is_an_error_naming_where_it_came_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write(&dir, "p.yaml", RUNNING_PIPELINE);
    let out = sluice()
        .args(["run", "-c"])
        .arg(&pipeline)
        .env("SLUICE_API__ENABLED", "false")
        .env("SLUICE_LOG__LEVEL", "bogus")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("SLUICE_LOG__LEVEL"), "{err}");
    assert!(
        err.contains("error, warn, info, debug, trace, off"),
        "{err}"
    );

    let settings = write(&dir, "settings.yaml", "log:\n  level: verbose\n");
    let out = sluice()
        .args(["run", "-c"])
        .arg(&pipeline)
        .arg("--settings")
        .arg(&settings)
        .env("SLUICE_API__ENABLED", "false")
        .env_remove("SLUICE_LOG__LEVEL")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(
        err.contains("log.level") && err.contains("`verbose`"),
        "{err}"
    );
}

/// A secret put in the wrong variable (one that takes a boolean) is not quoted back.
#[test]
fn settings_errors_do_not_quote_values_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write(&dir, "p.yaml", RUNNING_PIPELINE);
    let out = sluice()
        .args(["run", "-c"])
        .arg(&pipeline)
        .env("SLUICE_API__ENABLED", "Hunter2-S3cret")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("api.enabled"), "{err}");
    assert!(!err.to_lowercase().contains("hunter2-s3cret"), "{err}");
}

/// `validate` reads the settings `run` would read: an invalid `SLUICE_*` value fails it
/// (naming the variable, not its value), and `plugin_dirs` from a settings file count.
#[test]
fn validate_checks_the_settings_run_would_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = "sources:\n  gen: { type: generator, count: 1 }\nsinks:\n  out: { type: blackhole, inputs: [gen] }\n";
    let out = validate(good, &[("SLUICE_API__ENABLED", "nope-Secret42")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("api.enabled") && err.contains("SLUICE_API__ENABLED"),
        "{err}"
    );
    assert!(!err.to_lowercase().contains("nope-secret42"), "{err}");

    std::fs::create_dir_all(dir.path().join("plugins/decoders")).expect("mkdir");
    write(
        &dir,
        "plugins/decoders/acme.vrl",
        r#". = [{"status": "firing", "summary": "x", "source": "acme"}]"#,
    );
    let settings = write(
        &dir,
        "settings.yaml",
        &format!(
            "plugin_dirs: [\"{}\"]\n",
            dir.path().join("plugins").display()
        ),
    );
    let pipeline = write(
        &dir,
        "p.yaml",
        "sources:\n  hooks: { type: webhook, address: \"127.0.0.1:0\", decoder: acme }\nsinks:\n  out: { type: blackhole, inputs: [hooks] }\n",
    );
    let check = |with_settings: bool| {
        let mut cmd = sluice();
        cmd.args(["validate", "-c"]).arg(&pipeline);
        if with_settings {
            cmd.arg("--settings").arg(&settings);
        }
        cmd.output().expect("runs")
    };
    let without = check(false);
    assert_eq!(without.status.code(), Some(78));
    assert!(
        stderr(&without).contains("unknown decoder `acme`"),
        "{}",
        stderr(&without)
    );
    let with = check(true);
    assert_eq!(with.status.code(), Some(0), "{}", stderr(&with));
}
