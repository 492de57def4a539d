use super::*;
use crate::event::raw_json::{Checked, check_object_by_serde};

/// The scan's answer for one object, checked against serde_json's check: when the scan
/// answers, serde_json's check gives the same size.
fn agree(text: &str, reserved: &[&str]) -> Option<usize> {
    let fast = one_line_object(text, reserved);
    if let Some(size) = fast {
        assert_eq!(
            check_object_by_serde(text, reserved).ok(),
            Some(Checked::Object { parsed_size: size }),
            "{text:?}"
        );
    }
    fast
}

#[test]
fn ordinary_objects_are_scanned_with_serde_jsons_sizes() {
    let cases = [
        "{}",
        r#"{"a":1}"#,
        r#" {"a" : 1 , "b":[1, 2.5,"x",null,true,false,{"c":{}}]} "#,
        r#"{"msg":"a \"quoted\" word\n\ttabbed \\ \/ \b\f\r","é":"ü€😀"}"#,
        r#"{"u":"\u00e9\u20ac\u0041\u0000\uFFFF"}"#,
        r#"{"n":[0,-0,1e2,1E+2,-1.5e-3,18446744073709551616,123456789012345678901234567890]}"#,
        r#"{"deep":[[[[[{"a":[[]]}]]]]]}"#,
        r#"{"s":"","t":[],"u":{}}"#,
        "{\"a\":1}\r\n",
        r#"{"big":1e299,"small":1e-299,"x":0.000001e-290}"#,
    ];
    for text in cases {
        assert!(agree(text, &[]).is_some(), "scanned: {text}");
    }
    let many: Vec<String> = (0..200).map(|i| format!("\"k{i}\":\"v{i}\"")).collect();
    assert!(agree(&format!("{{{}}}", many.join(",")), &[]).is_some());
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(60), "]".repeat(60));
    assert!(agree(&deep, &[]).is_some(), "60 levels");
}

#[test]
fn anything_unusual_is_left_to_serde_json() {
    let cases = [
        // Errors serde_json names.
        "",
        "{",
        r#"{"a":1,}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":.5}"#,
        r#"{"a":-}"#,
        r#"{"a":tru}"#,
        r#"{"a":truex}"#,
        r#"{"a" 1}"#,
        r#"{a:1}"#,
        "{\"a\":\"\u{1}\"}",
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12"}"#,
        r#"{"a":"unterminated}"#,
        r#"{"a":1} x"#,
        r#"{"a":1}{"b":2}"#,
        // Valid, but not ours to judge.
        r#"{"a":"\ud83d\ude00"}"#,
        r#"{"a":"\ud800"}"#,
        r#"{"\u0061":1}"#,
        r#"{"a":1,"a":2}"#,
        r#"{"x":[{"a":1,"a":2}]}"#,
        r#"{"a":1e400}"#,
        r#"{"a":1e301}"#,
        r#"{"a":1e-400}"#,
        r#"{"a":1e00001}"#,
        "{\"a\":\n1}",
        "{\"a\":1,\r\"b\":2}",
        "[{\"a\":1}]",
        "5",
        r#""s""#,
        r#"{"file":1}"#,
    ];
    for text in cases {
        assert_eq!(agree(text, &["file"]), None, "left to serde_json: {text:?}");
    }
    let long = format!("{{\"a\":1.{}}}", "0".repeat(120));
    assert_eq!(agree(&long, &[]), None);
    let long_integer = format!("{{\"a\":{}}}", "9".repeat(99));
    assert!(agree(&long_integer, &[]).is_some(), "99 digits: about 1e99");
    let huge = format!("{{\"a\":{}}}", "9".repeat(301));
    assert_eq!(agree(&huge, &[]), None, "301 digits");
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
    assert_eq!(agree(&deep, &[]), None);
}

#[test]
fn a_body_of_objects_is_found_object_by_object() {
    let body = " {\"a\":1}\n{\"b\":\"x\"}\r\n\n\t{}  \n";
    let found = one_line_objects(body, 10).expect("scanned");
    let texts: Vec<&str> = found.iter().map(|f| &body[f.start..f.end]).collect();
    assert_eq!(texts, ["{\"a\":1}", "{\"b\":\"x\"}", "{}"]);
    for f in &found {
        assert_eq!(
            check_object_by_serde(&body[f.start..f.end], &[]).ok(),
            Some(Checked::Object {
                parsed_size: f.parsed_size
            })
        );
    }
    assert_eq!(one_line_objects("", 10), Some(vec![]));
    assert_eq!(one_line_objects(body, 2), None, "past max");
    assert_eq!(one_line_objects(body, 3).map(|f| f.len()), Some(3));
    assert_eq!(one_line_objects("{\"a\":1}\n[1]", 10), None);
    assert_eq!(one_line_objects("{\"a\":1},{\"a\":1}", 10), None);
    assert_eq!(one_line_objects("{\"a\":1}\n{\"a\":", 10), None);
}

#[test]
fn escapes_count_as_their_decoded_bytes() {
    // Same decoded string, so the same size whichever way it is written.
    let plain = one_line_object("{\"k\":\"é€\\n\"}", &[]);
    let escaped = one_line_object(r#"{"k":"\u00e9\u20ac\n"}"#, &[]);
    assert!(plain.is_some());
    assert_eq!(plain, escaped);
}

#[test]
fn plain_runs_end_at_the_first_quote_backslash_or_control_character() {
    // Every stop byte at every offset of a 40-byte run (two 16-byte blocks and a word
    // and a tail after them), with stops after it too (which the word-at-a-time test
    // may flag falsely: only the first counts), and plain bytes of every kind before it.
    let stops = (0..0x20).chain([b'"', b'\\']);
    let plain = [b'x', 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xc3, 0xff];
    for stop in stops {
        for at in 0..40 {
            let mut s: Vec<u8> = (0..40).map(|i| plain[i % plain.len()]).collect();
            s[at] = stop;
            for later in at + 1..40 {
                s[later] = [0u8, 1, b'"', b'\\', 0x20, 0x21, 0x5b, 0x5d][later % 8];
            }
            // Both ways: the blocks (on x86-64) and the words they leave to the end.
            for len in [plain_len, plain_len_by_words] {
                assert_eq!(len(&s), at, "{stop:#x} at {at}: {s:?}");
                assert_eq!(len(&s[..at]), at, "no stop in {:?}", &s[..at]);
            }
        }
    }
    assert_eq!(plain_len(b""), 0);
    assert_eq!(
        plain_len("é€😀 !#[]~\x7f".as_bytes()),
        "é€😀 !#[]~\x7f".len()
    );
    assert_eq!(plain_len(b"\x20\x21\x5b\x5d\x7f\x80\xff!"), 8);
    let all_plain: Vec<u8> = (0x20..=0xff)
        .filter(|b| *b != b'"' && *b != b'\\')
        .collect();
    assert_eq!(plain_len(&all_plain), all_plain.len());
    assert_eq!(plain_len_by_words(&all_plain), all_plain.len());
}

#[test]
fn top_members_give_each_members_text_and_the_objects_size() {
    let cases = [
        "{}",
        r#" { "a" : 1 , "b":[1, 2.5,"x",null,{"c":{}}] ,"é":"ü\n"} "#,
        r#"{"deep":[[[[[{"a":[[]]}]]]]],"s":""}"#,
    ];
    let mut members = Vec::new();
    for text in cases {
        top_members(text.as_bytes(), &mut members).expect("scanned");
        let contents: usize = members.iter().map(|m| m.size).sum();
        assert_eq!(
            Some(object_size(members.len(), contents)),
            one_line_object(text, &[]),
            "{text}"
        );
    }
    let text = r#"{"a" : 1,"bb":"x y" , "c":{"d":[true]}}"#;
    top_members(text.as_bytes(), &mut members).expect("scanned");
    let parts: Vec<(&str, &str, &str)> = members
        .iter()
        .map(|m| {
            (
                &text[m.key.clone()],
                &text[m.value.clone()],
                &text[m.start..m.value.end],
            )
        })
        .collect();
    assert_eq!(
        parts,
        [
            ("a", "1", r#""a" : 1"#),
            ("bb", "\"x y\"", r#""bb":"x y""#),
            ("c", r#"{"d":[true]}"#, r#""c":{"d":[true]}"#)
        ]
    );
    for left in [r#"{"\u0061":1}"#, r#"{"a":1} x"#, "{\"a\":\n1}", "[1]"] {
        assert!(
            top_members(left.as_bytes(), &mut members).is_none(),
            "{left}"
        );
    }
    assert_eq!(
        member_value_size(br#"{"k":[null,true]}"#),
        one_line_object(r#"{"k":[null,true]}"#, &[])
    );
    assert_eq!(member_value_size(b"\"ab\""), Some(18));
    assert_eq!(member_value_size(b"1 2"), None);
}
