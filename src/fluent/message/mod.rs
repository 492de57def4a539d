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

/// The longest tag taken. Tags are short dotted names (`app.web.access`); every event
/// of a message carries its tag, so a long one would be copied into each record a sink
/// writes out.
pub const MAX_TAG_BYTES: usize = 1024;

/// One record of a request and its time; `None` when the sender left the time unset
/// (`nil` or zero), which fluentd reads as "now", so the receiver stamps its own.
pub type Entry = (Option<DateTime<Utc>>, ObjectMap);

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
    #[error("a tag longer than {max} bytes")]
    TagTooLong { max: usize },
    #[error("the client started a TLS handshake, but this listener has no tls")]
    TlsHandshake,
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
/// the B-tree node its `tag` and `timestamp` go into (the record's own first node, or a
/// new one when the record is empty). The allowance gives each entry this much.
const ENTRY_COST: usize = MAP_NODE + 4 * SLOT;
/// What an entry is charged besides its record's nodes and fields.
const EVENT_COST: usize = 4 * SLOT;

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
        return Err(MessageError::TlsHandshake);
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
    let tag = r.raw_bytes()?;
    if tag.len() > MAX_TAG_BYTES {
        return Err(MessageError::TagTooLong { max: MAX_TAG_BYTES });
    }
    let tag = String::from_utf8_lossy(tag).into_owned();
    let mut entries = Vec::new();
    let options = match r.peek()? {
        Kind::Int | Kind::Ext | Kind::Float | Kind::Nil => {
            if n < 3 {
                return Err(MessageError::Shape(
                    "Message mode is [tag, time, record, option?]",
                ));
            }
            let time = entry_time(&mut r)?;
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
    r.charge(EVENT_COST)?;
    if r.array_len()? != 2 {
        return Err(MessageError::Shape("an entry is [time, record]"));
    }
    let time = entry_time(r)?;
    let record = r.record()?;
    if record.is_empty() {
        // A record's first node was charged with it; `tag` and `timestamp` take one
        // of their own when it has none.
        r.charge(MAP_NODE)?;
    }
    Ok((time, record))
}

/// An entry's time: `nil` and zero mean "unset", as they do to fluentd.
fn entry_time(r: &mut Reader<'_>) -> Result<Option<DateTime<Utc>>, MessageError> {
    if r.peek()? == Kind::Nil {
        r.skip()?;
        return Ok(None);
    }
    let time = r.time()?;
    Ok((time != DateTime::UNIX_EPOCH).then_some(time))
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
mod tests;
