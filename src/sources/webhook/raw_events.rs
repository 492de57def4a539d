//! Generic JSON bodies into events that keep their text: each object of an NDJSON body
//! (or of a top-level array) is checked without being built, and its event carries a
//! copy of its text until a component reads a field. A pipeline that only moves events
//! never parses them into VRL values (see [`crate::event::Payload`]).
//!
//! Anything out of the ordinary (a syntax error, more events than allowed, the memory
//! allowance spent) returns `None`, and the caller reads the body the parsing way, which
//! names the failing JSON path and gives the same answers as before.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::bounded_json;
use crate::event::json_scan;
use crate::event::raw_json::{Scanned, is_one_line};
use crate::event::{Checked, Payload, RawObject, check_object};

/// The events of `body`, at most `max`; `None` to take the parsing path.
pub(crate) fn read_at_most(body: &[u8], max: usize) -> Option<Vec<Payload>> {
    // UTF-8 checked once for the whole body, not once per string (a body that is not
    // UTF-8 is not JSON: the parsing path names the error).
    let body = std::str::from_utf8(body).ok()?;
    let Some(found) = json_scan::one_line_objects(body, max) else {
        return read_by_serde(body, max);
    };
    let mut events = Vec::with_capacity(found.len());
    for f in found {
        events.push(kept(body.as_bytes().get(f.start..f.end)?, f.parsed_size)?);
    }
    Some(events)
}

/// [`read_at_most`] by serde_json's parser alone, for what the hand-written scan leaves
/// to it (top-level arrays, escaped keys, syntax errors, …) and as the reference the scan
/// agrees with. Each value is checked in the pass that finds where it ends.
pub(crate) fn read_by_serde(body: &str, max: usize) -> Option<Vec<Payload>> {
    let mut events = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(body).into_iter::<Scanned>();
    let mut end = 0;
    while let Some(scanned) = stream.next() {
        let scanned = scanned.ok()?;
        // The stream's offset is just past each value; what lies between it and the
        // next value's first byte is whitespace.
        let start = end;
        end = stream.byte_offset();
        let text = body.get(start..end)?.trim_ascii_start();
        match scanned {
            Scanned::Object { parsed_size } if is_one_line(text.as_bytes()) => {
                events.push(kept(text.as_bytes(), parsed_size)?);
            }
            Scanned::Array => {
                // Checked whole by the scan: its elements alone would each be allowed
                // one level more than the parser allows them inside it.
                let mut de = serde_json::Deserializer::from_str(text);
                de.deserialize_seq(Elements {
                    events: &mut events,
                    max,
                })
                .ok()?;
            }
            // Scalars, multi-line objects and objects that repeat a key are parsed.
            Scanned::Object { .. } | Scanned::Other => return None,
        }
        if events.len() > max {
            return None;
        }
    }
    Some(events)
}

/// One element of a top-level array: kept as text when it is a one-line object, else
/// parsed.
fn element(text: &str) -> Option<Payload> {
    match check_object(text, &[]).ok()? {
        Checked::Object { parsed_size } => kept(text.as_bytes(), parsed_size),
        // Scalars, nested arrays and multi-line objects gain nothing from being kept.
        Checked::Other => None,
    }
}

/// A checked one-line object's event, charged to the decode allowance.
fn kept(text: &[u8], parsed_size: usize) -> Option<Payload> {
    // Charged as parsing it would be, so what the body may become stays bounded by the
    // same allowance when a component parses it later; and its slot in a growing vector
    // (up to three while it moves to a larger allocation).
    bounded_json::charge_total(parsed_size + 3 * size_of::<Payload>())?;
    // A copy, not a slice of the body: one small event kept downstream (a retry, a
    // sampler's survivor) must not hold a whole body the budget charged it nothing for.
    Some(Payload::raw(RawObject::checked(
        Bytes::copy_from_slice(text),
        parsed_size,
    )))
}

/// The elements of a top-level array, each one event.
struct Elements<'a> {
    events: &'a mut Vec<Payload>,
    max: usize,
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<&RawValue>()? {
            let event =
                element(item.get()).ok_or_else(|| de::Error::custom("take the parsing path"))?;
            self.events.push(event);
            if self.events.len() > self.max {
                return Err(de::Error::custom("too many events"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::webhook::body::parse_json_stream;

    fn both(body: &str) -> (Option<Vec<Payload>>, Vec<vrl::value::Value>) {
        let bytes = Bytes::copy_from_slice(body.as_bytes());
        let lazy = read_at_most(&bytes, 100);
        let eager = parse_json_stream(body.as_bytes()).expect("parses");
        (lazy, eager)
    }

    #[test]
    fn events_read_as_the_parsing_path_reads_them() {
        let body = "{\"a\":1,\"b\":\"x\"}\n[{\"c\":[1,2]},{\"d\":null}]\r\n { \"e\" : {} } \n";
        let (lazy, eager) = both(body);
        let lazy = lazy.expect("read lazily");
        assert_eq!(lazy.len(), eager.len());
        for (l, e) in lazy.iter().zip(&eager) {
            assert_eq!(l.value(), e);
        }
        let texts: Vec<_> = lazy
            .iter()
            .map(|p| {
                p.raw_text()
                    .map(|t| String::from_utf8_lossy(t).into_owned())
            })
            .collect();
        let want = [
            "{\"a\":1,\"b\":\"x\"}",
            "{\"c\":[1,2]}",
            "{\"d\":null}",
            "{ \"e\" : {} }",
        ];
        assert_eq!(texts, want.map(|t| Some(t.to_owned())));
    }

    #[test]
    fn anything_unusual_takes_the_parsing_path() {
        let bytes = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        assert!(read_at_most(&bytes("{\"a\":1}\n{\"a\":"), 10).is_none());
        assert!(read_at_most(&bytes("{\"a\":\"\\ud800\"}"), 10).is_none());
        // Not UTF-8, inside a string or out of one: the parser names where.
        assert!(read_at_most(b"{\"a\":\"\xff\"}", 10).is_none());
        assert!(read_at_most(b"{\"a\":1}\n\xc3", 10).is_none());
        for other in ["\"text\"", "7", "[[1]]", "[1]", "{\"e\":\n{}}"] {
            assert!(read_at_most(&bytes(&format!("{{}}\n{other}")), 10).is_none());
        }
        assert!(read_at_most(&bytes(&"{\"a\":1}\n".repeat(11)), 10).is_none());
        assert!(read_at_most(&bytes(&format!("[{}{{}}]", "{},".repeat(10))), 10).is_none());
        assert_eq!(
            read_at_most(&bytes(&"{\"a\":1}\n".repeat(10)), 10).map(|v| v.len()),
            Some(10)
        );
    }

    #[test]
    fn kept_text_is_charged_to_the_allowance() {
        let body = Bytes::from("{\"a\":1}\n".repeat(1_000));
        let (lazy, limits) =
            bounded_json::with_allowance(100 * 720, usize::MAX, || read_at_most(&body, usize::MAX));
        assert!(
            lazy.is_none(),
            "a B-tree node per event is over the allowance"
        );
        assert!(limits.memory);
    }

    #[test]
    fn kept_text_is_a_copy_not_a_slice_of_the_body() {
        let body = format!("{{\"a\":1}}{}", " ".repeat(100_000));
        let events = read_at_most(body.as_bytes(), 10).expect("read lazily");
        let text = events[0].raw_text().expect("kept");
        let range = body.as_bytes().as_ptr_range();
        assert!(
            !range.contains(&text.as_ptr()),
            "the body must not stay alive"
        );
        assert_eq!(text, b"{\"a\":1}");
    }

    #[test]
    fn red_team_bodies_get_the_parsing_path_answers() {
        // Nested empty arrays cost what the decode allowance charges, not less.
        let nest = "[".repeat(20) + &"]".repeat(20) + ",";
        let body = format!("{{\"a\":[{}[]]}}", nest.repeat(20_000));
        let allowance = crate::buffer::cost::decode_allowance(body.len());
        let (lazy, _) = bounded_json::with_allowance(allowance, usize::MAX, || {
            read_at_most(body.as_bytes(), 10)
        });
        assert!(lazy.is_none());
        let (eager, limits) = bounded_json::with_allowance(allowance, usize::MAX, || {
            parse_json_stream(body.as_bytes())
        });
        assert!(eager.is_err() && limits.memory, "413 on both paths");
        // An element of a top-level array is one level deeper than it looks alone.
        let deep = format!("[{{\"a\":{}1{}}}]", "[".repeat(126), "]".repeat(126));
        assert!(read_at_most(deep.as_bytes(), 10).is_none());
        assert!(parse_json_stream(deep.as_bytes()).is_err());
        // A repeated key: components see the last, so the text must not be sent.
        let repeated = b"{\"id\":1,\"v\":\"a\",\"id\":2}";
        assert!(read_at_most(repeated, 10).is_none());
        assert_eq!(parse_json_stream(repeated).expect("parses").len(), 1);
    }
}
