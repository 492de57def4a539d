//! The mark each bench event carries: `"sluice_bench": "<id>-<sent unix ns>"`.
//!
//! A string survives every path through a pipeline unchanged (alert labels are
//! string maps, Postgres stores it as text, JSON inside JSON escapes only its quotes),
//! so receivers find it by scanning raw bytes rather than knowing each sink's format.

use std::time::{SystemTime, UNIX_EPOCH};

/// The field name the drivers add to each event.
pub(crate) const FIELD: &str = "sluice_bench";

/// One event's identity and send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) id: u64,
    /// Nanoseconds since the Unix epoch when the driver sent it.
    pub(crate) sent_ns: u64,
}

impl Mark {
    pub(crate) fn now(id: u64) -> Self {
        Self {
            id,
            sent_ns: unix_ns(),
        }
    }

    /// The field's value.
    pub(crate) fn value(&self) -> String {
        format!("{}-{}", self.id, self.sent_ns)
    }

    /// Parses a field value as written by [`Mark::value`].
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (id, sent) = text.split_once('-')?;
        Some(Self {
            id: id.parse().ok()?,
            sent_ns: sent.parse().ok()?,
        })
    }
}

/// Now, in nanoseconds since the Unix epoch (sender and receiver share the clock).
pub(crate) fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Every mark in a body of any format: after each `sluice_bench` key, skips the quotes,
/// backslashes, colon and blanks that any level of JSON escaping puts there, then reads
/// `<digits>-<digits>`.
pub(crate) fn scan(body: &[u8], mut found: impl FnMut(Mark)) {
    let finder = memchr::memmem::Finder::new(FIELD.as_bytes());
    let mut at = 0;
    while let Some(i) = finder.find(&body[at..]) {
        let mut p = at + i + FIELD.len();
        at = p;
        let start = p;
        while p < body.len() && p - start < 16 && matches!(body[p], b'"' | b'\\' | b':' | b' ') {
            p += 1;
        }
        let (id, next) = digits(body, p);
        if next == p || body.get(next) != Some(&b'-') {
            continue;
        }
        let (sent_ns, end) = digits(body, next + 1);
        if end == next + 1 {
            continue;
        }
        found(Mark { id, sent_ns });
        at = end;
    }
}

fn digits(body: &[u8], mut p: usize) -> (u64, usize) {
    let mut n: u64 = 0;
    while let Some(d) = body.get(p).filter(|b| b.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
        p += 1;
    }
    (n, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(body: &str) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        scan(body.as_bytes(), |m| v.push((m.id, m.sent_ns)));
        v
    }

    #[test]
    fn finds_marks_at_any_escaping_depth() {
        assert_eq!(all(r#"{"sluice_bench":"7-123"}"#), [(7, 123)]);
        assert_eq!(all(r#"{"sluice_bench": "7-123"}"#), [(7, 123)]);
        assert_eq!(
            all(r#"{"raw":"{\"sluice_bench\":\"8-9\"}","x":{"sluice_bench":"10-11"}}"#),
            [(8, 9), (10, 11)]
        );
        assert_eq!(
            all("a\n{\"sluice_bench\":\"1-2\"}\n{\"sluice_bench\":\"3-4\"}\n"),
            [(1, 2), (3, 4)]
        );
    }

    #[test]
    fn ignores_the_key_without_a_mark() {
        assert_eq!(all(r#"{"sluice_bench":"x-1","sluice_bench":"5-"}"#), []);
        assert_eq!(all("sluice_bench"), []);
    }

    #[test]
    fn value_round_trips() {
        let m = Mark {
            id: 42,
            sent_ns: 1_700_000_000_000_000_000,
        };
        assert_eq!(Mark::parse(&m.value()), Some(m));
        assert_eq!(
            all(&format!("{{\"{FIELD}\":\"{}\"}}", m.value())),
            [(m.id, m.sent_ns)]
        );
    }
}
