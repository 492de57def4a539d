use vrl::value::Value;

use super::*;
use crate::event::json_scan::one_line_object;

fn names(list: &[&str]) -> Vec<KeyString> {
    list.iter().map(|n| (*n).into()).collect()
}

fn text_of(event: &Event) -> &str {
    std::str::from_utf8(event.raw_json().expect("still text")).expect("UTF-8")
}

/// Opens `text` on `names`, lets `change` change the fields (returning what it wrote),
/// splices, and checks the result against the same change made to the parsed payload.
fn rewrite(text: &str, list: &[&str], change: impl Fn(&mut ObjectMap) -> u64) -> Event {
    let names = names(list);
    let mut event = Event::kept_json(text);
    let mut members = Members::default();
    let mut fields = open(&mut event, &names, &mut members, true).expect("opened");
    let written = change(&mut fields);
    splice(&mut event, &members, &names, written, fields);

    let mut parsed: ObjectMap = serde_json::from_str(text).expect("JSON");
    let mut mine: ObjectMap = names
        .iter()
        .filter_map(|n| parsed.get(n).map(|v| (n.clone(), v.clone())))
        .collect();
    let written = change(&mut mine);
    for (i, name) in names.iter().enumerate() {
        if written & (1 << i) != 0 {
            match mine.remove(name) {
                Some(v) => parsed.insert(name.clone(), v),
                None => parsed.remove(name),
            };
        }
    }
    assert_eq!(event.value(), &Value::Object(parsed), "{text}");
    event
}

#[test]
fn written_fields_replace_their_members_or_are_appended_and_the_rest_stays() {
    let text = r#"{"z":1,"level":"error","host":"web-01","message":"a \"b\" c","n":[1,{"x":2}]}"#;
    let event = rewrite(text, &["level", "severity", "host"], |f| {
        let high = f.get("level") == Some(&Value::from("error"));
        f.insert(
            "severity".into(),
            Value::from(if high { "high" } else { "low" }),
        );
        f.insert("host".into(), Value::from("bench"));
        0b110
    });
    let out = text_of(&event);
    assert_eq!(
        out,
        r#"{"z":1,"level":"error","host":"bench","message":"a \"b\" c","n":[1,{"x":2}],"severity":"high"}"#
    );
    assert_eq!(
        event.raw_json_size(),
        Some(out.len() + one_line_object(out, &[]).expect("scans")),
        "the size is what a check of the new text gives"
    );
}

#[test]
fn deleted_fields_are_left_out_and_unwritten_ones_untouched() {
    let text = r#" { "a" : 1 , "b" : { "c" : [ 1 , 2 ] } , "d" : "x" } "#;
    let event = rewrite(text, &["a", "b", "d"], |f| {
        f.remove("a");
        f.remove("d");
        0b101
    });
    assert_eq!(text_of(&event), r#"{"b" : { "c" : [ 1 , 2 ] }}"#);
    let event = rewrite(text, &["a", "b", "d"], |f| {
        f.remove("a");
        f.remove("b");
        f.remove("d");
        0b111
    });
    assert_eq!(text_of(&event), "{}");
    assert_eq!(
        event.raw_json_size(),
        Some(2 + one_line_object("{}", &[]).expect("scans"))
    );
}

#[test]
fn nothing_written_keeps_the_very_text() {
    let text = r#"{"a" : 1}"#;
    let event = rewrite(text, &["a"], |_| 0);
    assert_eq!(text_of(&event), text);
}

#[test]
fn new_keys_are_escaped_and_nested_values_sized() {
    let text = r#"{"a":1}"#;
    let event = rewrite(text, &["q\"uote", "é", "nested"], |f| {
        f.insert("q\"uote".into(), Value::from("line\nbreak"));
        f.insert("é".into(), Value::from_f64_or_zero(1.5));
        let inner: ObjectMap = [("k".into(), Value::Array(vec![Value::Null, true.into()]))].into();
        f.insert("nested".into(), Value::Object(inner));
        0b111
    });
    let out = text_of(&event);
    assert_eq!(
        out,
        r#"{"a":1,"q\"uote":"line\nbreak","é":1.5,"nested":{"k":[null,true]}}"#
    );
    // The scan gives up on the escaped key, so serde_json's check has the size.
    let checked = crate::event::check_object(out, &[]).expect("valid");
    assert_eq!(
        checked,
        crate::event::Checked::Object {
            parsed_size: event.raw_json_size().expect("text") - out.len()
        }
    );
}

/// Strings read without escapes are slices of the text, and written back between
/// quotes as they are; those with something to escape take serde_json's way both ways.
#[test]
fn strings_read_and_written_plainly_or_escaped_keep_their_values() {
    let text = "{\"host\":\"web-é\u{7f}\",\"msg\":\"a \\\"b\\\" \\t\",\"n\":1}";
    let event = rewrite(text, &["host", "msg", "copy", "tab"], |f| {
        let host = f.get("host").cloned().expect("host");
        let msg = f.get("msg").cloned().expect("msg");
        f.insert("copy".into(), host);
        f.insert("host".into(), msg);
        f.insert("tab".into(), Value::from("x\ty"));
        0b1101
    });
    let out = text_of(&event);
    assert_eq!(
        out,
        "{\"host\":\"a \\\"b\\\" \\t\",\"msg\":\"a \\\"b\\\" \\t\",\"n\":1,\"copy\":\"web-é\u{7f}\",\"tab\":\"x\\ty\"}"
    );
    assert_eq!(
        event.raw_json_size(),
        Some(out.len() + one_line_object(out, &[]).expect("scans")),
        "the size is what a check of the new text gives"
    );
}

/// Whether `value` is a string whose bytes lie in `text`.
fn inside(value: Option<&Value>, text: &bytes::Bytes) -> bool {
    let bytes = match value {
        Some(Value::String(s)) => s.as_bytes().clone(),
        Some(Value::Bytes(b)) => b.clone(),
        other => panic!("a string: {other:?}"),
    };
    text.as_ptr_range().contains(&bytes.as_ptr())
}

/// A string read from the text is a slice of it only while nothing keeps it past the
/// run: not when asked for copies (a program that writes `%`), and not in the payload
/// that a value which does not read back as JSON makes parsed.
#[test]
fn strings_kept_past_the_run_do_not_hold_the_old_text() {
    let names = names(&["a", "b", "t"]);
    for share in [true, false] {
        let mut event = Event::kept_json(r#"{"a":"alpha","n":1}"#);
        let text = event.unparsed_json_bytes().expect("text").clone();
        let mut members = Members::default();
        let fields = open(&mut event, &names, &mut members, share).expect("opened");
        assert_eq!(inside(fields.get("a"), &text), share);
    }
    let mut event = Event::kept_json(r#"{"a":"alpha","n":1}"#);
    let text = event.unparsed_json_bytes().expect("text").clone();
    let mut members = Members::default();
    let mut fields = open(&mut event, &names, &mut members, true).expect("opened");
    let a = fields.get("a").cloned();
    assert!(inside(a.as_ref(), &text));
    fields.insert("b".into(), Value::Array(vec![a.clone().expect("a")]));
    fields.insert("t".into(), Value::Timestamp(chrono::Utc::now()));
    splice(&mut event, &members, &names, 0b110, fields);
    assert!(event.unparsed_json().is_none(), "parsed");
    let Some(Value::Array(b)) = event.value().as_object().and_then(|m| m.get("b")) else {
        panic!("b is an array");
    };
    assert_eq!(b.first(), a.as_ref());
    assert!(!inside(b.first(), &text), "copied into the parsed payload");
}

#[test]
fn values_that_do_not_read_back_as_themselves_make_the_event_parsed() {
    let now = chrono::Utc::now();
    let cases: Vec<Value> = vec![
        Value::Timestamp(now),
        Value::Array(vec![Value::Timestamp(now)]),
        Value::Bytes(bytes::Bytes::from_static(b"\xff\xfe")),
        Value::from_f64_or_zero(f64::INFINITY),
        Value::Regex(regex::Regex::new("a+").expect("regex").into()),
    ];
    for value in cases {
        let event = rewrite(r#"{"a":1,"b":2}"#, &["a"], |f| {
            f.insert("a".into(), value.clone());
            1
        });
        assert!(event.unparsed_json().is_none(), "{value:?} parsed");
        assert!(event.raw_json().is_none(), "and the text dropped");
        assert_eq!(event.get("a"), Some(&value));
        assert_eq!(event.get("b"), Some(&Value::from(2)));
    }
}

#[test]
fn text_the_scan_leaves_to_the_parser_is_not_opened() {
    let names = names(&["a"]);
    let mut members = Members::default();
    for text in [r#"{"\u0061":1}"#, r#"{"b":{"\u0063":1},"a":2}"#] {
        let mut event = Event::kept_json(text);
        assert!(
            open(&mut event, &names, &mut members, true).is_none(),
            "{text}"
        );
    }
    let mut parsed = Event::json(r#"{"a":1}"#, false);
    assert!(
        open(&mut parsed, &names, &mut members, true).is_none(),
        "parsed"
    );
}

#[test]
fn an_event_is_rewritten_three_times_then_parsed() {
    let names = names(&["n"]);
    let mut members = Members::default();
    let mut event = Event::kept_json(r#"{"n":0,"big":"xxxxxxxx"}"#);
    for round in 1..=REWRITES {
        let mut fields = open(&mut event, &names, &mut members, true).expect("opened");
        fields.insert("n".into(), Value::from(i64::from(round)));
        splice(&mut event, &members, &names, 1, fields);
        assert_eq!(
            text_of(&event),
            format!(r#"{{"n":{round},"big":"xxxxxxxx"}}"#)
        );
    }
    assert!(open(&mut event, &names, &mut members, true).is_none());
}
