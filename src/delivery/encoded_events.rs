//! The encoded events of one batch, back to back in one buffer.
//!
//! Each event used to be encoded into a `Vec` of its own (for text kept as it came, a
//! copy of it: an allocation and a free per event), and the request body was then
//! built by copying those. Encoding into the batch's buffer writes each event once, and
//! a body that is the events as they lie (NDJSON's lines, one event) takes the buffer
//! without another copy.

/// See the module docs. Invariant: `ends` rises and its last entry is `bytes.len()`.
#[derive(Debug, Default)]
pub struct EncodedEvents {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl EncodedEvents {
    /// Appends one event by `encode`, which writes it at the end of the buffer. On `Err`
    /// whatever it wrote is taken back, so a failed event leaves no trace. `Ok`: the
    /// event's length.
    pub fn push_with<E>(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let start = self.bytes.len();
        if let Err(e) = encode(&mut self.bytes) {
            self.bytes.truncate(start);
            return Err(e);
        }
        self.ends.push(self.bytes.len());
        Ok(self.bytes.len() - start)
    }

    /// Takes the last event out (its bytes, as a `Vec` of their own).
    pub(crate) fn pop(&mut self) -> Option<Vec<u8>> {
        self.ends.pop()?;
        let start = self.ends.last().copied().unwrap_or(0);
        Some(self.bytes.split_off(start))
    }

    /// Reserves room for `additional` more bytes.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.bytes.reserve(additional);
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// All events' bytes together.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Each event's bytes, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.ends.iter().enumerate().map(|(i, &end)| {
            let start = i
                .checked_sub(1)
                .and_then(|before| self.ends.get(before))
                .copied()
                .unwrap_or(0);
            self.bytes.get(start..end).unwrap_or_default()
        })
    }

    /// The events' bytes back to back, with nothing between them.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The first event's bytes (a request that carries one); empty if there is none.
    pub fn into_first(mut self) -> Vec<u8> {
        let first = self.ends.first().copied().unwrap_or(0);
        self.bytes.truncate(first);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_lie_back_to_back_and_a_failed_one_leaves_nothing() {
        fn put(all: &mut EncodedEvents, bytes: &[u8]) -> Result<usize, ()> {
            all.push_with(|o| {
                o.extend_from_slice(bytes);
                Ok(())
            })
        }
        let mut all = EncodedEvents::default();
        assert_eq!(put(&mut all, b"ab"), Ok(2));
        assert_eq!(
            all.push_with(|o| {
                o.extend(b"half");
                Err("no")
            }),
            Err("no")
        );
        assert_eq!(put(&mut all, b""), Ok(0));
        assert_eq!(put(&mut all, b"cde"), Ok(3));
        assert_eq!(all.iter().collect::<Vec<_>>(), [&b"ab"[..], b"", b"cde"]);
        assert_eq!((all.len(), all.byte_len()), (3, 5));
        assert_eq!(all.pop(), Some(b"cde".to_vec()));
        assert_eq!(all.iter().collect::<Vec<_>>(), [&b"ab"[..], b""]);
        let two = || {
            let mut two = EncodedEvents::default();
            put(&mut two, b"xy")
                .and_then(|_| put(&mut two, b"z"))
                .expect("puts");
            two
        };
        assert_eq!(two().into_first(), b"xy");
        assert_eq!(two().into_bytes(), b"xyz");
        assert!(EncodedEvents::default().into_first().is_empty());
    }
}
