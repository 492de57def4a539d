//! Forward protocol requests: the four event modes in, PackedForward out, and the ack.
//!
//! A request is `[tag, time, record, option?]` (Message), `[tag, [[time, record], …],
//! option?]` (Forward), or `[tag, entries, option?]` with the entries packed back to back
//! in a string or binary (PackedForward), gzip-compressed when the option says
//! `compressed: "gzip"` (CompressedPackedForward, possibly several gzip members). A
//! `chunk` option asks for `{"ack": chunk}` once the events are safe. A lone `nil` is a
//! heartbeat.

use std::io::Read;

use chrono::{DateTime, Utc};
use thiserror::Error;
use vrl::value::ObjectMap;

use super::value::{DecodeError, Kind, Reader, write_str};
use crate::buffer::cost::{MAP_NODE, SLOT};

/// One record of a request and its time.
pub type Entry = (DateTime<Utc>, ObjectMap);

/// A decoded request.
#[derive(Debug, PartialEq)]
pub enum Request {
    Heartbeat,
    Events(Events),
}

#[derive(Debug, PartialEq)]
pub struct Events {
    pub tag: String,
    pub entries: Vec<Entry>,
    /// The `chunk` option as it was encoded, echoed in the ack.
    pub chunk: Option<Vec<u8>>,
}

/// What a request may hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_depth: usize,
    pub max_entries: usize,
    /// The largest packed entries once decompressed.
    pub max_decompressed: usize,
    /// The memory its values may take.
    pub allowance: usize,
}

#[derive(Debug, Error, PartialEq)]
pub enum MessageError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Shape(&'static str),
    #[error("more than {max} entries in one message (max_entries_per_message)")]
    TooManyEntries { max: usize },
    #[error("unsupported compression `{0}`: only gzip is defined")]
    Compression(String),
    #[error("the compressed entries are not valid gzip: {0}")]
    Gzip(String),
    #[error("the entries decompress to more than {max} bytes (max_message_bytes)")]
    Inflated { max: usize },
}

/// Longest `chunk` option accepted (Fluent Bit sends 32 characters, the spec's Base64
/// of 128 bits is 24): the ack echoes it, and a client need not read its acks.
pub const MAX_CHUNK_BYTES: usize = 256;

/// What a decoded entry takes besides its record's fields: the event around it, and
/// the B-tree node its `tag` and `timestamp` go into even when the record is empty.
const ENTRY_COST: usize = MAP_NODE + 4 * SLOT;

/// Decodes one complete request.
pub fn parse(frame: &[u8], bounds: &Bounds) -> Result<Request, MessageError> {
    parse_inflated(frame, None, bounds)
}

/// Decodes one complete request whose compressed entries (if any) were inflated
/// already: the caller charges the inflated size to its budget before decoding.
pub fn parse_inflated(
    frame: &[u8],
    inflated: Option<&[u8]>,
    bounds: &Bounds,
) -> Result<Request, MessageError> {
    let mut r = Reader::new(frame, bounds.max_depth, bounds.allowance);
    if r.peek()? == Kind::Nil {
        return Ok(Request::Heartbeat);
    }
    if frame.first() == Some(&0x16) {
        // Also MessagePack's 22, but no request starts with it: a TLS handshake does.
        return Err(MessageError::Shape(
            "the client started a TLS handshake, but this listener has no tls",
        ));
    }
    if r.peek()? != Kind::Array {
        return Err(MessageError::Shape(
            "a request must be an array: [tag, time, record] or [tag, entries]",
        ));
    }
    let n = r.array_len()?;
    if !(2..=4).contains(&n) {
        return Err(MessageError::Shape("a request has 2 to 4 elements"));
    }
    if r.peek()? != Kind::Str {
        return Err(MessageError::Shape(
            "a request starts with its tag, a string",
        ));
    }
    let tag = String::from_utf8_lossy(r.raw_bytes()?).into_owned();
    let mut entries = Vec::new();
    let options = match r.peek()? {
        Kind::Int | Kind::Ext => {
            if n < 3 {
                return Err(MessageError::Shape(
                    "Message mode is [tag, time, record, option?]",
                ));
            }
            let time = r.time()?;
            entries.push((time, r.record()?));
            (n == 4).then(|| options(&mut r)).transpose()?
        }
        Kind::Array => {
            let count = r.array_len()?;
            if count > bounds.max_entries {
                return Err(MessageError::TooManyEntries {
                    max: bounds.max_entries,
                });
            }
            for _ in 0..count {
                entries.push(entry(&mut r)?);
            }
            too_many(n, 3)?;
            (n == 3).then(|| options(&mut r)).transpose()?
        }
        Kind::Str | Kind::Bin => {
            let packed = r.raw_bytes()?;
            too_many(n, 3)?;
            let options = (n == 3).then(|| options(&mut r)).transpose()?;
            let owned;
            let stream = match options.as_ref().and_then(|o| o.compressed.as_deref()) {
                None | Some("text") => packed,
                Some("gzip") => match inflated {
                    Some(stream) => stream,
                    None => {
                        owned = gunzip(packed, bounds.max_decompressed)?;
                        &owned[..]
                    }
                },
                Some(other) => return Err(MessageError::Compression(other.to_owned())),
            };
            let mut packed = Reader::new(stream, bounds.max_depth, r.allowance());
            while !packed.is_empty() {
                if entries.len() == bounds.max_entries {
                    return Err(MessageError::TooManyEntries {
                        max: bounds.max_entries,
                    });
                }
                entries.push(entry(&mut packed)?);
            }
            options
        }
        _ => {
            return Err(MessageError::Shape(
                "the second element is a time (Message), an array (Forward) or packed entries",
            ));
        }
    };
    Ok(Request::Events(Events {
        tag,
        entries,
        chunk: options.and_then(|o| o.chunk),
    }))
}

/// The still-compressed entries of a CompressedPackedForward request (read from its
/// headers and option, without decoding the entries), so the caller can charge the
/// inflation before it happens.
pub fn compressed_entries(frame: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(frame, 4, 0);
    let packed = (|| -> Result<Option<&[u8]>, DecodeError> {
        if r.peek()? != Kind::Array || r.array_len()? != 3 || r.peek()? != Kind::Str {
            return Ok(None);
        }
        r.raw_bytes()?;
        if !matches!(r.peek()?, Kind::Str | Kind::Bin) {
            return Ok(None);
        }
        Ok(Some(r.raw_bytes()?))
    })()
    .ok()
    .flatten()?;
    options(&mut r)
        .is_ok_and(|o| o.compressed.as_deref() == Some("gzip"))
        .then_some(packed)
}

/// What a request's entries take besides what their bytes allow for
/// (`buffer::cost::decode_allowance`): each entry's event, counted without decoding
/// (a Forward array says how many, packed entries are skipped over), so the caller can
/// charge it before decoding. Many small records cost more than their bytes suggest.
/// Counting stops past `max_entries`; a request that is not events costs nothing here
/// (decoding refuses a malformed one).
pub fn entries_cost(frame: &[u8], inflated: Option<&[u8]>, max_entries: usize) -> usize {
    let mut r = Reader::new(frame, 4, 0);
    let count = (|| -> Result<usize, DecodeError> {
        if r.peek()? != Kind::Array || r.array_len()? < 2 || r.peek()? != Kind::Str {
            return Ok(0);
        }
        r.raw_bytes()?;
        Ok(match r.peek()? {
            Kind::Int | Kind::Ext => 1,
            Kind::Array => r.array_len()?.min(max_entries.saturating_add(1)),
            Kind::Str | Kind::Bin => {
                let packed = r.raw_bytes()?;
                let mut entries = Reader::new(inflated.unwrap_or(packed), 0, 0);
                let mut n = 0;
                while !entries.is_empty() && n <= max_entries {
                    entries.skip()?;
                    n += 1;
                }
                n
            }
            _ => 0,
        })
    })()
    .unwrap_or(0);
    count.saturating_mul(ENTRY_COST)
}

fn too_many(n: usize, max: usize) -> Result<(), MessageError> {
    if n > max {
        return Err(MessageError::Shape(
            "Forward modes are [tag, entries, option?]",
        ));
    }
    Ok(())
}

fn entry(r: &mut Reader<'_>) -> Result<Entry, MessageError> {
    r.charge(ENTRY_COST)?;
    if r.array_len()? != 2 {
        return Err(MessageError::Shape("an entry is [time, record]"));
    }
    let time = r.time()?;
    Ok((time, r.record()?))
}

#[derive(Default)]
struct Options {
    chunk: Option<Vec<u8>>,
    compressed: Option<String>,
}

/// The option map: `chunk` and `compressed` are read, the rest (`size`,
/// `fluent_signal`, …) is skipped. A `nil` option (old Docker versions) is no option.
fn options(r: &mut Reader<'_>) -> Result<Options, MessageError> {
    let mut o = Options::default();
    if r.peek()? == Kind::Nil {
        r.skip()?;
        return Ok(o);
    }
    let n = r.map_len()?;
    for _ in 0..n {
        let key = match r.peek()? {
            Kind::Str => r.raw_bytes()?,
            _ => {
                r.skip()?;
                r.skip()?;
                continue;
            }
        };
        match key {
            b"chunk" => {
                if !matches!(r.peek()?, Kind::Str | Kind::Bin) {
                    return Err(MessageError::Shape("the chunk option is a string"));
                }
                let binary = r.peek()? == Kind::Bin;
                let id = r.raw_bytes()?;
                if id.len() > MAX_CHUNK_BYTES {
                    return Err(MessageError::Shape(
                        "the chunk option is longer than 256 bytes",
                    ));
                }
                // Echoed as it came: a binary id stays binary.
                let mut encoded = Vec::with_capacity(id.len() + 5);
                if binary {
                    let _ = rmp::encode::write_bin_len(&mut encoded, id.len() as u32);
                    encoded.extend_from_slice(id);
                } else {
                    write_str(&mut encoded, id);
                }
                o.chunk = Some(encoded);
            }
            b"compressed" => {
                if r.peek()? != Kind::Str {
                    return Err(MessageError::Shape("the compressed option is a string"));
                }
                o.compressed = Some(String::from_utf8_lossy(r.raw_bytes()?).into_owned());
            }
            _ => r.skip()?,
        }
    }
    Ok(o)
}

/// Inflates gzip members back to back, refusing more than `max` bytes.
pub fn gunzip(bytes: &[u8], max: usize) -> Result<Vec<u8>, MessageError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| MessageError::Gzip(e.to_string()))?;
    if out.len() > max {
        return Err(MessageError::Inflated { max });
    }
    Ok(out)
}

/// The answer to a request with a `chunk` option: `{"ack": chunk}`.
pub fn ack(chunk: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len() + 5);
    out.push(0x81);
    write_str(&mut out, b"ack");
    out.extend_from_slice(chunk);
    out
}

/// The chunk id of an `{"ack": id}` answer.
pub fn acked(reply: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(reply, 4, 0);
    let n = r.map_len().ok()?;
    for _ in 0..n {
        let key = r.raw_bytes().ok()?;
        if key == b"ack" && matches!(r.peek().ok()?, Kind::Str | Kind::Bin) {
            return r.raw_bytes().ok();
        }
        r.skip().ok()?;
    }
    None
}

/// Encodes a PackedForward request: `[tag, entries, {size, chunk?, compressed?}]`.
/// `entries` are `[time, record]` arrays back to back, gzip-compressed when `gzip`.
pub fn packed_forward(
    tag: &str,
    entries: &[u8],
    count: usize,
    chunk: Option<&str>,
    gzip: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() + tag.len() + 64);
    let _ = rmp::encode::write_array_len(&mut out, 3);
    write_str(&mut out, tag.as_bytes());
    let _ = rmp::encode::write_bin_len(&mut out, entries.len() as u32);
    out.extend_from_slice(entries);
    let keys = 1 + u32::from(chunk.is_some()) + u32::from(gzip);
    let _ = rmp::encode::write_map_len(&mut out, keys);
    write_str(&mut out, b"size");
    let _ = rmp::encode::write_uint(&mut out, count as u64);
    if let Some(chunk) = chunk {
        write_str(&mut out, b"chunk");
        write_str(&mut out, chunk.as_bytes());
    }
    if gzip {
        write_str(&mut out, b"compressed");
        write_str(&mut out, b"gzip");
    }
    out
}

#[cfg(test)]
mod tests {
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
        assert_eq!(e.entries[0].0, Utc.timestamp_opt(1_700_000_000, 5).unwrap());
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
        assert_eq!(events(&old).entries[0].0.timestamp(), 1_600_000_000);
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
}
