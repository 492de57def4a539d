use chrono::TimeZone;
use rmpv::Value as V;

use super::*;

fn bounds() -> Bounds {
    Bounds {
        max_depth: 16,
        max_entries: 100,
        max_decompressed: 1 << 20,
        allowance: 1 << 20,
    }
}

fn pack(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("encode");
    out
}

fn record(msg: &str) -> V {
    V::Map(vec![(V::from("msg"), V::from(msg))])
}

fn event_time(secs: u32, nanos: u32) -> V {
    let mut b = secs.to_be_bytes().to_vec();
    b.extend_from_slice(&nanos.to_be_bytes());
    V::Ext(0, b)
}

fn events(frame: &[u8]) -> Events {
    match parse(frame, &bounds()) {
        Ok(Request::Events(e)) => e,
        other => panic!("{other:?}"),
    }
}

fn msgs(e: &Events) -> Vec<String> {
    e.entries
        .iter()
        .map(|(_, r)| r["msg"].to_string_lossy().into_owned())
        .collect()
}

#[test]
fn entries_are_counted_without_decoding_in_every_mode() {
    let entry = |m: &str| V::Array(vec![event_time(1, 0), record(m)]);
    let message = pack(&V::Array(vec![V::from("t"), event_time(1, 0), record("a")]));
    assert_eq!(entries_cost(&message, None, 100), ENTRY_COST);
    let forward = pack(&V::Array(vec![
        V::from("t"),
        V::Array((0..7).map(|_| entry("x")).collect()),
    ]));
    assert_eq!(entries_cost(&forward, None, 100), 7 * ENTRY_COST);
    // Past max_entries the count stops (decoding refuses the message).
    assert_eq!(entries_cost(&forward, None, 3), 4 * ENTRY_COST);
    let stream: Vec<u8> = (0..5).flat_map(|_| pack(&entry("y"))).collect();
    let packed = pack(&V::Array(vec![V::from("t"), V::Binary(stream.clone())]));
    assert_eq!(entries_cost(&packed, None, 100), 5 * ENTRY_COST);
    // Compressed entries are counted in their inflated stream.
    let gzipped = pack(&V::Array(vec![
        V::from("t"),
        V::Binary(vec![0x1f, 0x8b]),
        V::Map(vec![(V::from("compressed"), V::from("gzip"))]),
    ]));
    assert_eq!(entries_cost(&gzipped, Some(&stream), 100), 5 * ENTRY_COST);
    for other in [vec![0xc0], vec![0x92, 0x01, 0x02], vec![0xdd, 0xff], vec![]] {
        assert_eq!(entries_cost(&other, None, 100), 0);
    }
    // A TLS client's handshake record is not a request, with a reason.
    let hello = parse(&[0x16, 0x03, 0x01], &bounds())
        .unwrap_err()
        .to_string();
    assert!(hello.contains("TLS handshake"), "{hello}");
    // A truncated packed stream costs nothing here: decoding refuses it.
    let cut = pack(&V::Array(vec![
        V::from("t"),
        V::Binary(stream[..7].to_vec()),
    ]));
    assert_eq!(entries_cost(&cut, None, 100), 0);
}

#[test]
fn the_four_modes_decode_to_the_same_entries() {
    let entry = |m: &str, s| V::Array(vec![event_time(s, 5), record(m)]);
    let chunk = V::Map(vec![(V::from("chunk"), V::from("abc=="))]);
    let message = pack(&V::Array(vec![
        V::from("app.web"),
        event_time(1_700_000_000, 5),
        record("one"),
        chunk.clone(),
    ]));
    let e = events(&message);
    assert_eq!(e.tag, "app.web");
    assert_eq!(msgs(&e), ["one"]);
    assert_eq!(e.entries[0].0, Utc.timestamp_opt(1_700_000_000, 5).single());
    assert!(parse(&ack(e.chunk.as_deref().unwrap()), &bounds()).is_err());
    assert_eq!(
        ack(e.chunk.as_deref().unwrap()),
        pack(&V::Map(vec![(V::from("ack"), V::from("abc=="))]))
    );

    let forward = pack(&V::Array(vec![
        V::from("app.web"),
        V::Array(vec![entry("one", 1), entry("two", 2)]),
    ]));
    let e = events(&forward);
    assert_eq!(msgs(&e), ["one", "two"]);
    assert_eq!(e.chunk, None);

    let mut stream = pack(&entry("one", 1));
    stream.extend(pack(&entry("two", 2)));
    let packed = pack(&V::Array(vec![V::from("t"), V::Binary(stream.clone())]));
    assert_eq!(msgs(&events(&packed)), ["one", "two"]);

    // Two gzip members back to back, as a client may send.
    let gz = |b: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, b).unwrap();
        enc.finish().unwrap()
    };
    let mut members = gz(&pack(&entry("one", 1)));
    members.extend(gz(&pack(&entry("two", 2))));
    let compressed = pack(&V::Array(vec![
        V::from("t"),
        V::Binary(members),
        V::Map(vec![
            (V::from("compressed"), V::from("gzip")),
            (V::from("size"), V::from(2)),
            (V::from("fluent_signal"), V::from(0)),
            (V::from("chunk"), V::from("c1")),
        ]),
    ]));
    let e = events(&compressed);
    assert_eq!(msgs(&e), ["one", "two"]);
    assert!(e.chunk.is_some());
    assert!(compressed_entries(&compressed).is_some());
    assert!(compressed_entries(&packed).is_none() && compressed_entries(&forward).is_none());
    assert!(compressed_entries(&[0xc1]).is_none());

    // What the sink sends decodes here.
    let out = packed_forward("t.x", &stream, 2, Some("id1"), false);
    let e = events(&out);
    assert_eq!((e.tag.as_str(), msgs(&e).len()), ("t.x", 2));
    let out = packed_forward("t.x", &gz(&stream), 2, None, true);
    assert_eq!(msgs(&events(&out)), ["one", "two"]);
    assert_eq!(parse(&[0xc0], &bounds()), Ok(Request::Heartbeat));
    // Integer seconds, and a nil option (old Docker).
    let old = pack(&V::Array(vec![
        V::from("d"),
        V::from(1_600_000_000),
        record("x"),
        V::Nil,
    ]));
    assert_eq!(
        events(&old).entries[0].0.map(|t| t.timestamp()),
        Some(1_600_000_000)
    );
}

/// The time of a Message-mode request carrying `time`, or its decode error.
fn message_time(time: V) -> Result<Option<chrono::DateTime<Utc>>, MessageError> {
    let body = pack(&V::Array(vec![V::from("t"), time, record("x")]));
    match parse(&body, &bounds())? {
        Request::Events(e) => Ok(e.entries[0].0),
        Request::Heartbeat => panic!("not a heartbeat"),
    }
}

#[test]
fn times_are_read_as_fluentd_reads_them_and_impossible_ones_refused() {
    // Unset (nil or zero) means "now": the receiver stamps its own time.
    assert_eq!(message_time(V::Nil), Ok(None));
    assert_eq!(message_time(V::from(0)), Ok(None));
    assert_eq!(message_time(event_time(0, 0)), Ok(None));
    // Fractional seconds, as some clients send them.
    let t = message_time(V::F64(1_700_000_000.25)).unwrap().unwrap();
    assert_eq!(
        (t.timestamp(), t.timestamp_subsec_millis()),
        (1_700_000_000, 250)
    );
    // Before 1970 is a time like any other.
    assert_eq!(message_time(V::from(-5)).unwrap().unwrap().timestamp(), -5);
    // Nanoseconds past a second carry into the seconds.
    let t = message_time(event_time(10, 2_500_000_000))
        .unwrap()
        .unwrap();
    assert_eq!(
        (t.timestamp(), t.timestamp_subsec_nanos()),
        (12, 500_000_000)
    );
    // Seconds no timestamp can hold are an error, not 1970.
    let out_of_range = Err(MessageError::Decode(DecodeError::Unexpected {
        expected: "a time",
        found: "seconds out of range",
    }));
    assert_eq!(message_time(V::from(1_i64 << 62)), out_of_range);
    assert_eq!(message_time(V::from(u64::MAX)), out_of_range);
    assert_eq!(message_time(V::F64(f64::NAN)), out_of_range);
    assert_eq!(message_time(V::F64(1e300)), out_of_range);
    // The same rules hold for Forward-mode entries.
    let forward = pack(&V::Array(vec![
        V::from("t"),
        V::Array(vec![
            V::Array(vec![V::Nil, record("a")]),
            V::Array(vec![V::from(7), record("b")]),
        ]),
    ]));
    let e = events(&forward);
    assert_eq!(e.entries[0].0, None);
    assert_eq!(e.entries[1].0.map(|t| t.timestamp()), Some(7));
}

#[test]
fn chunks_are_echoed_as_they_came_and_bounded() {
    let request = |chunk: V| {
        pack(&V::Array(vec![
            V::from("t"),
            V::from(1),
            record("m"),
            V::Map(vec![(V::from("chunk"), chunk)]),
        ]))
    };
    let e = events(&request(V::Binary(vec![1, 2, 3])));
    assert_eq!(
        e.chunk,
        Some(vec![0xc4, 3, 1, 2, 3]),
        "a binary id stays binary"
    );
    let long = "c".repeat(MAX_CHUNK_BYTES + 1);
    let err = parse(&request(V::from(long.as_str())), &bounds()).unwrap_err();
    assert!(err.to_string().contains("longer than 256 bytes"), "{err}");
}

#[test]
fn empty_records_are_charged_what_their_events_take() {
    // 300 KB of `[1, {}]` would become 100,000 events of about a kilobyte each.
    let entries = V::Array(
        (0..100_000)
            .map(|_| V::Array(vec![V::from(1), V::Map(vec![])]))
            .collect(),
    );
    let frame = pack(&V::Array(vec![V::from("t"), entries]));
    let bounds = Bounds {
        max_entries: 1_000_000,
        allowance: crate::buffer::cost::decode_allowance(frame.len()),
        ..bounds()
    };
    assert_eq!(
        parse(&frame, &bounds),
        Err(MessageError::Decode(DecodeError::OverAllowance))
    );
}

#[test]
fn malformed_requests_name_the_problem() {
    let err = |v: V| parse(&pack(&v), &bounds()).unwrap_err().to_string();
    assert!(err(V::from("x")).contains("must be an array"));
    assert!(err(V::Array(vec![V::from(1), V::from(2)])).contains("tag"));
    assert!(err(V::Array(vec![V::from("t"), V::from(1), V::from(2)])).contains("record"));
    let many = V::Array(
        (0..101)
            .map(|_| V::Array(vec![V::from(1), record("m")]))
            .collect(),
    );
    assert!(err(V::Array(vec![V::from("t"), many])).contains("more than 100 entries"));
    let zstd = V::Array(vec![
        V::from("t"),
        V::Binary(vec![1, 2]),
        V::Map(vec![(V::from("compressed"), V::from("zstd"))]),
    ]);
    assert!(err(zstd).contains("unsupported compression `zstd`"));
    let bad_gzip = V::Array(vec![
        V::from("t"),
        V::Binary(vec![0x1f, 0x8b, 0, 0]),
        V::Map(vec![(V::from("compressed"), V::from("gzip"))]),
    ]);
    assert!(err(bad_gzip).contains("gzip"));
    // A gzip bomb: 2 MiB of zeros in a few KiB.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &vec![0u8; 2 << 20]).unwrap();
    let bomb = V::Array(vec![
        V::from("t"),
        V::Binary(enc.finish().unwrap()),
        V::Map(vec![(V::from("compressed"), V::from("gzip"))]),
    ]);
    assert!(err(bomb).contains("decompress to more than"));
}

#[test]
fn many_small_records_fit_the_allowance_and_empty_ones_are_charged_a_node() {
    // `[1, {"a": 1}]` is 7 bytes; its event takes a node shared with `tag` and `timestamp`.
    let entries: Vec<V> = (0..5000)
        .map(|_| V::Array(vec![V::from(1), V::Map(vec![(V::from("a"), V::from(1))])]))
        .collect();
    let frame = pack(&V::Array(vec![V::from("t"), V::Array(entries)]));
    let allowance =
        crate::buffer::cost::decode_allowance(frame.len()) + entries_cost(&frame, None, 10_000);
    let b = Bounds {
        max_entries: 10_000,
        allowance,
        ..bounds()
    };
    assert!(matches!(parse(&frame, &b), Ok(Request::Events(e)) if e.entries.len() == 5000));

    // Empty records: each is charged the node `tag` and `timestamp` take.
    let empty: Vec<V> = (0..1000)
        .map(|_| V::Array(vec![V::from(1), V::Map(vec![])]))
        .collect();
    let frame = pack(&V::Array(vec![V::from("t"), V::Array(empty)]));
    let tight = Bounds {
        max_entries: 10_000,
        allowance: 1000 * crate::buffer::cost::MAP_NODE,
        ..bounds()
    };
    assert_eq!(
        parse(&frame, &tight),
        Err(MessageError::Decode(DecodeError::OverAllowance))
    );
}

#[test]
fn a_tag_longer_than_a_kibibyte_is_refused() {
    let message = |tag: String| pack(&V::Array(vec![V::from(tag), V::from(1), record("x")]));
    let longest = "t".repeat(MAX_TAG_BYTES);
    assert_eq!(events(&message(longest.clone())).tag, longest);
    assert_eq!(
        parse(&message(format!("{longest}t")), &bounds()),
        Err(MessageError::TagTooLong { max: MAX_TAG_BYTES })
    );
}
