use chrono::Utc;

use super::*;

fn kept(text: &str) -> Event {
    Event::kept_json(text)
}

fn answer(outcome: Outcome) -> Option<Value> {
    match outcome {
        Outcome::Done(v) => Some(v),
        Outcome::Aborted(_) | Outcome::Failed(_) => None,
    }
}

/// Conditions on kept text read only the fields they name, and answer what they
/// answer on the parsed event; the text stays.
#[test]
fn conditions_on_kept_text_answer_as_on_the_parsed_event() {
    let text = r#"{"a":1,"b":{"c":"x"},"sev\u0065rity":"high","n":null,"t":[1,2]}"#;
    let conditions = [
        ".a == 1",
        ".b.c == \"x\"",
        "exists(.missing)",
        "exists(.n) && .n == null",
        ".severity == \"high\" && .a != 2",
        "%headers == null",
        "get!(., [\"a\"]) == 1",
        "length(keys(.)) == 5",
        // `unnest` reads `.` without VRL listing it, so it reads the whole event.
        "length(unnest!(.t)) == 2",
        "is_object(.) && .b.c != null",
        "to_string!(.b.c) == \"x\"",
    ];
    for condition in conditions {
        let program =
            compile(&ProgramSource::Inline(condition.into()), Mode::Condition).expect("compiles");
        let mut runner = Runner::new(program);
        let mut event = kept(text);
        let on_text = answer(runner.run_event(&mut event));
        assert_eq!(
            event.raw_json(),
            Some(text.as_bytes()),
            "{condition}: text kept"
        );
        let whole = runner.reads() == Some(&Reads::Whole);
        assert_eq!(
            event.unparsed_json().is_none(),
            whole,
            "{condition}: parsed"
        );
        let mut parsed = Event::new(
            event.value().clone(),
            crate::event::SourceId::intern("t"),
            Utc::now(),
        );
        let on_value = answer(runner.run_event(&mut parsed));
        assert_eq!(on_text, on_value, "{condition}");
        assert!(on_text.is_some(), "{condition} ran");
    }
}

#[test]
fn a_condition_runs_on_the_picked_fields_alone() {
    let program =
        compile(&ProgramSource::Inline(".a == 2".into()), Mode::Condition).expect("compiles");
    let mut runner = Runner::new(program);
    let event = kept(r#"{"a":1}"#);
    // Picked values that differ from the text show which of the two was read.
    let names = [vrl::value::KeyString::from("a")];
    let picked = Picked {
        names: &names,
        value: Value::Object([("a".into(), Value::from(2))].into()),
    };
    let outcome = runner.run_read(&event, Some(&picked));
    assert_eq!(answer(outcome), Some(Value::Boolean(true)));
    assert!(event.unparsed_json().is_some(), "the text was not parsed");
}

/// What a program compiled in `mode` reads.
fn reads_of(src: &str, mode: Mode) -> Reads {
    compile(&ProgramSource::Inline(src.into()), mode)
        .expect("compiles")
        .reads
        .clone()
}

/// `Reads::Fields` of these names.
fn named(names: &[&str]) -> Reads {
    Reads::Fields(names.iter().map(|k| (*k).into()).collect())
}

#[test]
fn what_a_condition_reads_comes_from_its_queries_and_unnest_reads_all() {
    let reads = |src: &str| reads_of(src, Mode::Condition);
    assert_eq!(reads(".a.b == 1 || .c == 2"), named(&["a", "c"]));
    assert_eq!(reads("%headers.x == \"y\""), named(&[]));
    assert_eq!(reads("length(keys(.)) > 1"), Reads::Whole);
    assert_eq!(reads("length(unnest!(.t)) > 1"), Reads::Whole);
}

#[test]
fn the_second_condition_on_an_event_parses_it_whole_once() {
    let compiled = |src: &str| {
        Runner::new(compile(&ProgramSource::Inline(src.into()), Mode::Condition).expect("compiles"))
    };
    let (mut first, mut second) = (compiled(".a == 1"), compiled(".a == 1"));
    let mut event = kept(r#"{"a":1,"b":2}"#);
    assert_eq!(
        answer(first.run_event(&mut event)),
        Some(Value::Boolean(true))
    );
    assert!(event.unparsed_json().is_some(), "the first picks");
    assert_eq!(
        answer(second.run_event(&mut event)),
        Some(Value::Boolean(true))
    );
    assert!(event.unparsed_json().is_none(), "the second parses");
    assert_eq!(
        event.raw_json(),
        Some(&br#"{"a":1,"b":2}"#[..]),
        "text kept"
    );
}

#[test]
fn a_read_outside_the_picked_fields_runs_again_on_the_whole_event() {
    let program = compile(
        &ProgramSource::Inline(".a == 1 && .b == 2".into()),
        Mode::Condition,
    )
    .expect("compiles");
    let mut runner = Runner::new(program);
    let event = kept(r#"{"a":1,"b":2}"#);
    let names = [vrl::value::KeyString::from("a")];
    let picked = fields::pick(event.raw_json().expect("text"), &names).expect("picked");
    // `b` was not picked, as if VRL had not listed it: the answer must still be true.
    let outcome = runner.run_read(&event, Some(&picked));
    assert_eq!(answer(outcome), Some(Value::Boolean(true)));
    assert_eq!(
        runner.reads(),
        Some(&Reads::Whole),
        "and reads it whole from now on"
    );
    // Even when a route still hands it a pick: one that gives `.a` another value is
    // ignored.
    let wrong = Picked {
        names: &names,
        value: Value::Object([("a".into(), Value::from(5))].into()),
    };
    let outcome = runner.run_read(&event, Some(&wrong));
    assert_eq!(answer(outcome), Some(Value::Boolean(true)));
}

fn outcome_kind(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Done(_) => "done".into(),
        Outcome::Aborted(m) => format!("aborted: {m}"),
        Outcome::Failed(m) => format!("failed: {m}"),
    }
}

/// A program that changes events, run on the fields it names out of kept text,
/// leaves the event (and `%`) as a run on the parsed event does, and keeps the text
/// where every written value reads back from JSON.
#[test]
fn programs_on_kept_text_change_events_as_on_parsed_ones() {
    let texts = [
        r#"{"level":"error","host":"web-01","message":"hello","n":3,"labels":{"tenant":"acme"},"arr":[0,1],"z":true}"#,
        r#"{"level":"info","n":"x","message":"m","b":[{"c":1}]}"#,
        "{}",
        r#"{"a":1,"b":{"c":[1,{"d":null}]},"labels":{}}"#,
    ];
    // Each program, and whether its event stays text (when it is done).
    let programs = [
        (
            ".severity = if .level == \"error\" { \"high\" } else { \"low\" }\n.host = \"bench\"",
            true,
        ),
        ("del(.message)", true),
        (".labels.team = \"core\"", true),
        (".n = to_int!(.n) + 1", true),
        ("if .level == \"info\" { abort }\n.x = 1", true),
        (".message = upcase(string!(.message))", true),
        (".nested.a.b = [1, 2]\ndel(.z)", true),
        (".b2 = .b\n.b = null", true),
        (".x = .missing", true),
        (".arr[1] = \"x\"", true),
        ("del(.labels.tenant, compact: true)", true),
        (
            "%runs = push(array(%runs) ?? [], 1)\n.k = length(keys(.))",
            false,
        ),
        (".e = encode_json(.)", false),
        (". = merge(., {\"a\": 2})", false),
        (".ts = t'2026-01-01T00:00:00Z'", false),
        (".r = r'a+'", false),
        ("%seen = .level\n.level = \"x\"", true),
    ];
    for (source, stays_text) in programs {
        let compiled = compile(&ProgramSource::Inline(source.into()), Mode::ReadWrite)
            .unwrap_or_else(|e| panic!("{source}: {e}"));
        for text in texts {
            let (mut on_text, mut on_value) =
                (Runner::new(compiled.clone()), Runner::new(compiled.clone()));
            let mut kept = kept(text);
            let mut parsed = Event::json(text, false);
            let a = on_text.run_event(&mut kept);
            let b = on_value.run_event(&mut parsed);
            let what = format!("{source} on {text}");
            assert_eq!(outcome_kind(&a), outcome_kind(&b), "{what}");
            assert_eq!(kept.value(), parsed.value(), "{what}");
            assert_eq!(kept.vrl_metadata(), parsed.vrl_metadata(), "{what}: %");
            if stays_text {
                assert!(kept.raw_json().is_some(), "{what}: kept as text");
            }
        }
    }
}

/// `%` outlives the run: a string the program puts there is a copy, not a slice of
/// the text the splice replaces.
#[test]
fn what_a_program_keeps_in_metadata_does_not_hold_the_old_text() {
    let program =
        |src: &str| compile(&ProgramSource::Inline(src.into()), Mode::ReadWrite).expect("compiles");
    assert!(!program(".a = .level").writes_metadata);
    let compiled = program("%seen = .level\n.level = \"x\"");
    assert!(compiled.writes_metadata);
    let mut event = kept(r#"{"level":"error","n":1}"#);
    let old = event.unparsed_json_bytes().expect("text").clone();
    let outcome = Runner::new(compiled).run_event(&mut event);
    assert!(answer(outcome).is_some());
    assert_eq!(event.raw_json(), Some(&br#"{"level":"x","n":1}"#[..]));
    let seen = event
        .vrl_metadata()
        .get()
        .as_object()
        .and_then(|m| m.get("seen"));
    let Some(Value::String(seen)) = seen else {
        panic!("a string: {seen:?}");
    };
    assert_eq!(seen.as_ref() as &str, "error");
    assert!(!old.as_ptr_range().contains(&seen.as_bytes().as_ptr()));
}

#[test]
fn a_program_that_changes_events_names_the_fields_it_reads_and_writes() {
    let reads = |src: &str| reads_of(src, Mode::ReadWrite);
    assert_eq!(
        reads(".severity = if .level == \"error\" { \"high\" } else { \"low\" }"),
        named(&["level", "severity"])
    );
    assert_eq!(reads("del(.a.b)\n%x = 1"), named(&["a"]));
    assert_eq!(reads(". = {}"), Reads::Whole);
    assert_eq!(reads(".t = unnest!(.a)"), Reads::Whole);
    let many: Vec<String> = (0..65).map(|i| format!(".f{i} = 1")).collect();
    assert_eq!(reads(&many.join("\n")), Reads::Whole, "65 fields");
}

#[test]
fn a_program_that_reached_outside_its_fields_runs_on_whole_events_from_then_on() {
    let program = compile(
        &ProgramSource::Inline("%runs = push(array(%runs) ?? [], 1)\n.k = length(keys(.))".into()),
        Mode::ReadWrite,
    )
    .expect("compiles");
    // As if VRL had not listed `.` among the program's queries.
    let mut program = Arc::into_inner(program).expect("one reference");
    assert_eq!(program.reads, Reads::Whole);
    program.reads = Reads::Fields(vec!["k".into()]);
    let mut runner = Runner::new(Arc::new(program));
    let mut first = kept(r#"{"a":1,"b":2}"#);
    assert!(matches!(runner.run_event(&mut first), Outcome::Done(_)));
    assert_eq!(
        first.get("k"),
        Some(&Value::from(2)),
        "counted on the whole event"
    );
    let runs = first
        .vrl_metadata()
        .get()
        .as_object()
        .and_then(|m| m.get("runs"))
        .cloned();
    assert_eq!(runs, Some(Value::Array(vec![1.into()])), "`%` written once");
    assert!(runner.reads_whole, "and whole events from now on");
}
