//! Property tests over the fuzzing entry points: arbitrary bytes and near-valid inputs
//! never panic, and their invariants hold. Case counts follow `PROPTEST_CASES`.

use proptest::prelude::*;
use sluice::fuzzing;

fn near_json() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"a\"",
        "\"\\u00e9\"",
        "1",
        "-1.5e300",
        "null",
        "true",
        "\n",
        " ",
        "\"x",
        "1e999",
        "\"\\ud800\"",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|p| p.concat().into_bytes())
}

/// NDJSON and arrays of small objects, with repeated keys, deep or odd values and
/// separators the kept-text path must treat as parsing does.
fn near_ndjson() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec!["\"a\"", "\"b\"", "\"\\u0061\"", "\"\"", "a"]);
    let value = prop::sample::select(vec![
        "1",
        "-0",
        "1E2",
        "1e999",
        "2.5",
        "18446744073709551616",
        "\"s\"",
        "\"\\ud800\"",
        "\"\\n\"",
        "null",
        "true",
        "[]",
        "[1,{}]",
        "{\"c\":[[]]}",
        "{}",
        "\n",
        "[[[[1]]]]",
    ]);
    let object = prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        let fields: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("{{{}}}", fields.join(","))
    });
    let separator = prop::sample::select(vec!["\n", "\r\n", " ", "", "\n\n", ","]);
    let line = (object, separator, any::<bool>()).prop_map(|(o, sep, wrap)| {
        if wrap {
            format!("[{o},{o}]{sep}")
        } else {
            format!("{o}{sep}")
        }
    });
    prop::collection::vec(line, 0..6).prop_map(|l| l.concat().into_bytes())
}

/// NDJSON the hand-written JSON scan takes (distinct keys, escapes in values, numbers
/// near its limits), then a few bytes changed anywhere: where the scan and serde_json
/// could part ways.
fn mutated_ndjson() -> impl Strategy<Value = Vec<u8>> {
    let value = prop::sample::select(vec![
        "1",
        "-0.5",
        "1e300",
        "1e-300",
        "9.9e299",
        "-12345678901234567890",
        "\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\"",
        "\"\\u00e9\\u20AC\\u0000\\uffff\"",
        "\"é€😀\"",
        "\"\"",
        "null",
        "false",
        "[1,[],{}]",
        "{\"k\":{\"l\":[\"m\"]}}",
    ]);
    let object = prop::collection::vec(value, 0..5).prop_map(|values| {
        let fields: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("\"f{i}\": {v}"))
            .collect();
        format!("{{{}}}", fields.join(","))
    });
    let body = prop::collection::vec(object, 1..5).prop_map(|o| o.join("\n"));
    let edits = prop::collection::vec((any::<usize>(), any::<u8>()), 0..3);
    (any::<u8>(), body, edits).prop_map(|(bound, body, edits)| {
        let mut bytes = body.into_bytes();
        for (at, byte) in edits {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        [&[bound][..], &bytes].concat()
    })
}

fn near_yaml() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        "sources:\n",
        "transforms:\n",
        "sinks:\n",
        "  a:\n",
        "  b: { type: remap, inputs: [a], source: \".x = 1\" }\n",
        "    type: generator\n",
        "    type: console\n",
        "    inputs: [a, \"b*\", c.dropped]\n",
        "    count: 5\n",
        "  - x\n",
        "${X}",
        "${Y:-d}",
        "$$",
        "&anchor ",
        "*anchor",
        "<<: *anchor\n",
        "? ",
        "'",
        "\"",
        "\t",
        "#c\n",
        "    buffer: { max_events: 0 }\n",
        "    condition: .a == 1\n",
    ]);
    prop::collection::vec(pieces, 0..30).prop_map(|p| p.concat().into_bytes())
}

/// Bytes that are mostly MessagePack requests: valid messages in every mode, cut,
/// spliced and flipped.
fn near_forward() -> impl Strategy<Value = Vec<u8>> {
    let message = prop_oneof![
        Just(vec![0x93, 0xa1, b't', 0x01, 0x81, 0xa1, b'k', 0xa1, b'v']),
        Just(vec![
            0x92, 0xa1, b't', 0x91, 0x92, 0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 2, 0x80
        ]),
        Just(vec![
            0x93, 0xa1, b't', 0xc4, 0x03, 0x92, 0x01, 0x80, 0x81, 0xa5, b'c', b'h', b'u', b'n',
            b'k', 0xa1, b'x'
        ]),
        Just(vec![0xc0]),
        prop::collection::vec(any::<u8>(), 0..16),
    ];
    (
        any::<u8>(),
        prop::collection::vec(message, 1..6),
        any::<u16>(),
        any::<u8>(),
    )
        .prop_map(|(step, parts, at, byte)| {
            let mut out = vec![step];
            out.extend(parts.into_iter().flatten());
            if out.len() > 1 {
                let i = 1 + usize::from(at) % (out.len() - 1);
                out[i] ^= byte;
            }
            out
        })
}

/// Text near label matchers and Go regexes: their operators, escapes and classes.
fn near_matcher() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                '\\', '[', ']', '-', '{', '}', ',', '^', '(', ')', '|', '*', '+', '?', ':', '=',
                '~', '!', '"', '\n', 'd', 'w', 's', 'p', 'Q', 'E', 'x', '0', '7', '.', '$', '&',
            ]),
            prop::char::range('a', 'z'),
            any::<char>(),
        ],
        0..48,
    )
    .prop_map(|c| c.into_iter().collect())
}

proptest! {
    #[test]
    fn label_matchers_and_go_regexes_never_panic(text in near_matcher()) {
        fuzzing::label_matchers(text.as_bytes());
    }

    #[test]
    fn forward_streams_never_panic(data in near_forward()) {
        fuzzing::fluent_stream(&data);
    }

    #[test]
    fn syslog_streams_frame_the_same_under_any_read_sizes(data in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b' '), Just(b'1'), Just(b'9'), Just(b'<'), any::<u8>()], 0..512)) {
        fuzzing::syslog_stream(&data);
    }

    #[test]
    fn arbitrary_otlp_bodies_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::otlp_body(&data);
    }

    #[test]
    fn mutated_otlp_requests_never_panic(at in any::<usize>(), byte in any::<u8>(), signal in 0u8..3) {
        let mut body = vec![signal];
        body.extend(otlp_sample());
        let i = 1 + at % (body.len() - 1);
        body[i] = byte;
        fuzzing::otlp_body(&body);
    }

    #[test]
    fn arbitrary_forward_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::fluent_stream(&data);
    }

    #[test]
    fn arbitrary_remote_write_bodies_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::remote_write(&data);
        // The same bytes as a valid snappy block: the protobuf decoding sees them.
        let packed = snap::raw::Encoder::new().compress_vec(&data).expect("compress");
        fuzzing::remote_write(&packed);
    }
}

proptest! {
    #[test]
    fn webhook_bodies_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::webhook_body(&data);
    }

    #[test]
    fn near_json_webhook_bodies_never_panic(data in near_json()) {
        fuzzing::webhook_body(&data);
    }

    #[test]
    fn kept_json_text_reads_as_parsing_reads(bound in any::<u8>(), data in near_ndjson()) {
        fuzzing::json_events(&[&[bound][..], &data].concat());
    }

    #[test]
    fn kept_json_text_of_any_bytes_reads_as_parsing_reads(data in near_json()) {
        fuzzing::json_events(&data);
    }

    #[test]
    fn the_json_scan_agrees_with_serde_json_on_ndjson(bound in any::<u8>(), data in near_ndjson()) {
        fuzzing::json_scan(&[&[bound][..], &data].concat());
    }

    #[test]
    fn the_json_scan_agrees_with_serde_json_on_any_json(data in near_json()) {
        fuzzing::json_scan(&data);
    }

    #[test]
    fn the_json_scan_agrees_with_serde_json_on_damaged_ndjson(data in mutated_ndjson()) {
        fuzzing::json_scan(&data);
    }

    #[test]
    fn pipeline_files_never_panic(data in near_yaml()) {
        fuzzing::pipeline_file(&data);
    }

    #[test]
    fn arbitrary_pipeline_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzzing::pipeline_file(&data);
    }

    #[test]
    fn interpolation_positions_map_back(data in "([a-z: \\n{}$]|\\$\\{[A-Z_]{1,6}(:-[a-z]{0,3})?\\})*") {
        fuzzing::interpolation(data.as_bytes());
    }
}

/// Vendor payloads with one value replaced by a value of another type or shape: every
/// decoder answers with events or a 400 naming itself, never a panic. (The cargo-fuzz
/// targets `decode_*` explore raw bytes; this explores types inside valid documents.)
mod decoders {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const DIRS: &[(&str, &[&str])] = &[
        ("grafana", &["grafana", "alertmanager"]),
        ("aws", &["aws_sns", "aws_eventbridge"]),
        ("gcp", &["gcp_monitoring"]),
        ("azure", &["azure_monitor"]),
        ("oci", &["oci"]),
        ("cloudevents", &["cloudevents"]),
    ];

    fn documents() -> Vec<(&'static str, Value)> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webhooks");
        let mut docs = Vec::new();
        for (dir, decoders) in DIRS {
            let mut names: Vec<_> = std::fs::read_dir(format!("{root}/{dir}"))
                .expect("fixture dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            names.sort();
            for path in names {
                let doc: Value = serde_json::from_slice(&std::fs::read(&path).expect("read"))
                    .expect("fixture JSON");
                for d in *decoders {
                    docs.push((*d, doc.clone()));
                }
            }
        }
        docs
    }

    fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(p.clone());
                    pointers(child, p, out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    pointers(child, p, out);
                }
            }
            _ => {}
        }
    }

    fn replacement(kind: u8) -> Value {
        match kind % 12 {
            0 => Value::Null,
            1 => json!(0),
            2 => json!(-1.5e300),
            3 => json!(""),
            4 => json!("x"),
            5 => json!(true),
            6 => json!([]),
            7 => json!({}),
            8 => json!("0001-01-01T00:00:00Z"),
            9 => json!("{\"AlarmName\": 1}"),
            10 => json!([null, {"status": 7}]),
            _ => json!(18446744073709551615u64),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn mutated_vendor_payloads_never_panic(
            pick in any::<usize>(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let docs = documents();
            let (decoder, mut doc) = docs[pick % docs.len()].clone();
            for (at, kind) in edits {
                let mut all = Vec::new();
                pointers(&doc, String::new(), &mut all);
                if all.is_empty() {
                    break;
                }
                let pointer = &all[at % all.len()];
                if let Some(slot) = doc.pointer_mut(pointer) {
                    *slot = replacement(kind);
                }
            }
            let body = serde_json::to_vec(&doc).expect("JSON");
            sluice::fuzzing::decoder(decoder, &body);
        }
    }
}

/// Pieces of RSS, Atom, Statuspage HTML and status JSON, shuffled: mostly broken
/// documents that get far into the parsers.
fn near_feed() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        "<?xml version=\"1.0\"?>",
        "<rss version=\"2.0\"><channel><title>t</title>",
        "</channel></rss>",
        "<feed xmlns=\"http://www.w3.org/2005/Atom\"><id>f</id><title>t</title>",
        "</feed>",
        "<item>",
        "</item>",
        "<entry>",
        "</entry>",
        "<title>Service is operating normally: [RESOLVED] Delays</title>",
        "<title>Service disruption: Errors</title>",
        "<title>RESOLVED: Global: x</title>",
        "<title>VM - East US 2</title>",
        "<guid>http://status.aws.amazon.com/#ec2-us-east-1_1566553182</guid>",
        "<guid>http://status.aws.amazon.com/#_</guid>",
        "<id>tag:status.cloud.google.com,2022:feed:A.B</id>",
        "<id>tag:www.githubstatus.com,2005:Incident/1</id>",
        "<pubDate>Fri, 23 Aug 2019 02:39:42 PDT</pubDate>",
        "<updated>2026-07-09T06:01:43Z</updated>",
        "<updated>not a date</updated>",
        "<link href=\"https://x/incidents/1\"/>",
        "<content type=\"html\">&lt;p&gt;&lt;strong&gt;Resolved&lt;/strong&gt; - ok&lt;/p&gt;</content>",
        "<description>&lt;strong&gt;Update&lt;/strong&gt;&lt;strong&gt;</description>",
        "&#x110000;&#0;&amp",
        "[{\"id\": \"a\", \"end\": \"2022-07-10T15:47:00+00:00\"}",
        "{\"id\": \"b\", \"most_recent_update\": {\"status\": \"SERVICE_OUTAGE\"}, \"status_impact\": 3}",
        "{\"page\": {\"url\": 1}, \"incidents\": [",
        "{\"id\": \"c\", \"status\": \"postmortem\", \"impact\": \"critical\", \"components\": [{\"name\": null}]}",
        "]",
        "}",
        ",",
        "\u{FEFF}",
        " ",
    ]);
    (any::<u8>(), prop::collection::vec(pieces, 0..24)).prop_map(|(selector, p)| {
        let mut data = vec![selector];
        data.extend_from_slice(p.concat().as_bytes());
        data
    })
}

/// The real feeds of `tests/fixtures/statuspages`, cut short and with a byte changed.
fn mutated_fixture() -> impl Strategy<Value = Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/statuspages");
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x == "xml" || x == "json")
        })
        .map(|e| std::fs::read(e.path()).expect("fixture"))
        .collect();
    files.sort();
    (
        prop::sample::select(files),
        any::<u8>(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<u8>(),
    )
        .prop_map(|(file, selector, cut, at, byte)| {
            let mut body = file[..cut.index(file.len() + 1)].to_vec();
            if !body.is_empty() {
                let i = at.index(body.len());
                body[i] = byte;
            }
            let mut data = vec![selector];
            data.extend(body);
            data
        })
}

proptest! {
    #[test]
    fn status_feed_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::status_feed(&data);
    }

    #[test]
    fn near_status_feeds_never_panic(data in near_feed()) {
        fuzzing::status_feed(&data);
    }

    #[test]
    fn mutated_status_feeds_never_panic(data in mutated_fixture()) {
        fuzzing::status_feed(&data);
    }
}

/// Every real feed, read by every provider and format: the invariants hold on the
/// documents the integration tests serve, not only on noise.
#[test]
fn every_status_feed_fixture_under_every_selector() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/statuspages");
    for entry in std::fs::read_dir(dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        if !path.extension().is_some_and(|x| x == "xml" || x == "json") {
            continue;
        }
        let body = std::fs::read(path).expect("fixture");
        for selector in 0..=u8::MAX {
            let mut data = vec![selector];
            data.extend_from_slice(&body);
            fuzzing::status_feed(&data);
        }
    }
}

proptest! {
    #[test]
    fn file_framing_is_independent_of_read_sizes(
        data in prop::collection::vec(prop::sample::select(vec![b'a', b'b', b' ', b'\n', b'\r', b'\\', 0xff]), 0..400),
        control in any::<u8>(),
    ) {
        let mut input = vec![control];
        input.extend(data);
        fuzzing::file_lines(&input);
    }
}

proptest! {
    #[test]
    fn damaged_disk_buffer_segments_never_panic(
        records in 1usize..12,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut seg = fuzzing::disk_segment_sample(records);
        for (at, mask) in flips {
            let i = at.index(seg.len());
            seg[i] ^= mask;
        }
        if truncate {
            seg.truncate(cut.index(seg.len() + 1));
        }
        fuzzing::disk_segment(&seg);
    }

    #[test]
    fn disk_buffer_records_decode_or_fail_cleanly(data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzzing::disk_record(&data);
        let mut versioned = vec![1u8];
        versioned.extend(&data);
        fuzzing::disk_record(&versioned);
    }
}

/// A valid OTLP logs request with every kind of value, as protobuf.
fn otlp_sample() -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as V,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let kv = |k: &str, v: V| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let record = LogRecord {
        time_unix_nano: 1_765_000_000_000_000_000,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(V::KvlistValue(KeyValueList {
                values: vec![kv("b", V::BytesValue(vec![0xff, 1]))],
            })),
        }),
        attributes: vec![
            kv("s", V::StringValue("x".into())),
            kv("d", V::DoubleValue(1.5)),
            kv(
                "a",
                V::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(V::IntValue(-1)),
                    }],
                }),
            ),
        ],
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    prost::Message::encode_to_vec(&request)
}
