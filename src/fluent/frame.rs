//! Finding where one MessagePack object ends in a TCP stream.
//!
//! The Forward protocol sends objects back to back, without length prefixes: the only
//! way to know an object is complete is to walk its structure. [`Scanner`] walks it
//! once, resuming where it stopped when more bytes arrive (so a large message read in
//! many small pieces costs linear time), and refuses an object before its bytes arrive
//! when its headers already break a bound: more than `max_bytes`, deeper than
//! `max_depth`, or a container claiming more items than bytes are left for them.

use thiserror::Error;

/// Why a stream cannot yield its next object. Each closes the connection.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("message larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("message nested deeper than {max} levels (max_depth)")]
    TooDeep { max: usize },
    #[error(
        "a container claims {claimed} items, more than a message of at most {max} bytes can hold"
    )]
    ImpossibleLength { claimed: u64, max: usize },
    #[error("byte 0xc1 is not MessagePack")]
    InvalidMarker,
}

/// The bounds every object must keep.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
}

/// Walks one object at a time; reusable across objects.
#[derive(Debug)]
pub struct Scanner {
    limits: Limits,
    /// Bytes of the current object walked so far.
    pos: usize,
    /// Items still expected by each open container, outermost first.
    open: Vec<u64>,
}

/// What a MessagePack header says follows it.
enum Token {
    /// A scalar or a string, binary or extension of this many payload bytes.
    Leaf { payload: u64 },
    /// An array or map holding this many values (a map's keys count).
    Container { items: u64 },
}

impl Scanner {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pos: 0,
            open: Vec::new(),
        }
    }

    /// The length of the object at the start of `buf` once it is complete (`Ok(None)`:
    /// more bytes are needed). `buf` must start with the same bytes as on the previous
    /// call; after `Ok(Some(_))` the scanner is ready for the next object.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        loop {
            let Some((header, token)) = header(&buf[self.pos.min(buf.len())..])? else {
                return self.need(buf.len());
            };
            match token {
                Token::Leaf { payload } => {
                    let end = (self.pos as u64)
                        .saturating_add(header as u64)
                        .saturating_add(payload);
                    if end > self.limits.max_bytes as u64 {
                        return Err(FrameError::TooLarge {
                            max: self.limits.max_bytes,
                        });
                    }
                    if end > buf.len() as u64 {
                        return self.need(buf.len());
                    }
                    self.pos = end as usize;
                    if self.item_done() {
                        return Ok(Some(self.finish()));
                    }
                }
                Token::Container { items } => {
                    self.pos += header;
                    // Each item takes a byte at least: a claim past the bound is refused
                    // before its bytes arrive.
                    if items > self.limits.max_bytes as u64 {
                        return Err(FrameError::ImpossibleLength {
                            claimed: items,
                            max: self.limits.max_bytes,
                        });
                    }
                    if items > self.limits.max_bytes.saturating_sub(self.pos) as u64 {
                        return Err(FrameError::TooLarge {
                            max: self.limits.max_bytes,
                        });
                    }
                    if items == 0 {
                        if self.item_done() {
                            return Ok(Some(self.finish()));
                        }
                    } else {
                        if self.open.len() >= self.limits.max_depth {
                            return Err(FrameError::TooDeep {
                                max: self.limits.max_depth,
                            });
                        }
                        self.open.push(items);
                    }
                }
            }
        }
    }

    fn need(&self, have: usize) -> Result<Option<usize>, FrameError> {
        if have >= self.limits.max_bytes {
            return Err(FrameError::TooLarge {
                max: self.limits.max_bytes,
            });
        }
        Ok(None)
    }

    /// One value ended: true when it was the whole object.
    fn item_done(&mut self) -> bool {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return false;
            }
            self.open.pop();
        }
        true
    }

    fn finish(&mut self) -> usize {
        std::mem::take(&mut self.pos)
    }
}

/// The header at the start of `bytes` and its length, or `None` if it is cut short.
fn header(bytes: &[u8]) -> Result<Option<(usize, Token)>, FrameError> {
    let Some(&marker) = bytes.first() else {
        return Ok(None);
    };
    let leaf = |header: usize, payload: u64| Ok(Some((header, Token::Leaf { payload })));
    let container = |header: usize, items: u64| Ok(Some((header, Token::Container { items })));
    // The big-endian length of `n` bytes after the marker (and `skip` more header bytes).
    let len = |n: usize| -> Option<u64> {
        let b = bytes.get(1..1 + n)?;
        Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    };
    match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => leaf(1, 0),
        0x80..=0x8f => container(1, u64::from(marker & 0x0f) * 2),
        0x90..=0x9f => container(1, u64::from(marker & 0x0f)),
        0xa0..=0xbf => leaf(1, u64::from(marker & 0x1f)),
        0xc1 => Err(FrameError::InvalidMarker),
        0xc4 | 0xd9 => Ok(len(1).map(|n| (2, Token::Leaf { payload: n }))),
        0xc5 | 0xda => Ok(len(2).map(|n| (3, Token::Leaf { payload: n }))),
        0xc6 | 0xdb => Ok(len(4).map(|n| (5, Token::Leaf { payload: n }))),
        // Extensions: the length, then a type byte.
        0xc7 => Ok(len(1).map(|n| (3, Token::Leaf { payload: n }))),
        0xc8 => Ok(len(2).map(|n| (4, Token::Leaf { payload: n }))),
        0xc9 => Ok(len(4).map(|n| (6, Token::Leaf { payload: n }))),
        0xca | 0xce | 0xd2 => leaf(1, 4),
        0xcb | 0xcf | 0xd3 => leaf(1, 8),
        0xcc | 0xd0 => leaf(1, 1),
        0xcd | 0xd1 => leaf(1, 2),
        0xd4 => leaf(2, 1),
        0xd5 => leaf(2, 2),
        0xd6 => leaf(2, 4),
        0xd7 => leaf(2, 8),
        0xd8 => leaf(2, 16),
        0xdc => Ok(len(2).map(|n| (3, Token::Container { items: n }))),
        0xdd => Ok(len(4).map(|n| (5, Token::Container { items: n }))),
        0xde => Ok(len(2).map(|n| (3, Token::Container { items: n * 2 }))),
        0xdf => Ok(len(4).map(|n| (5, Token::Container { items: n * 2 }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_bytes: 1024,
            max_depth: 8,
        }
    }

    fn pack(v: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).expect("encode");
        out
    }

    #[test]
    fn objects_are_found_byte_by_byte_and_whole() {
        use rmpv::Value as V;
        let values = [
            V::Nil,
            V::from(-5),
            V::from(u64::MAX),
            V::from(1.5),
            V::from("tag.name"),
            V::Binary(vec![7; 300]),
            V::Ext(0, vec![0, 0, 0, 1, 0, 0, 0, 2]),
            V::Array(vec![V::from("t"), V::Array(vec![]), V::Map(vec![])]),
            V::Map(vec![(V::from("k"), V::Array(vec![V::from(1), V::Nil]))]),
        ];
        let mut stream = Vec::new();
        let mut lens = Vec::new();
        for v in &values {
            let bytes = pack(v);
            lens.push(bytes.len());
            stream.extend_from_slice(&bytes);
        }
        // Whole: each object in turn.
        let mut scanner = Scanner::new(limits());
        let mut at = 0;
        for want in &lens {
            assert_eq!(scanner.scan(&stream[at..]), Ok(Some(*want)));
            at += want;
        }
        // Byte by byte: complete exactly when the last byte arrives.
        let mut scanner = Scanner::new(limits());
        let mut start = 0;
        let mut found = Vec::new();
        for end in start + 1..=stream.len() {
            if let Some(n) = scanner.scan(&stream[start..end]).expect("valid") {
                assert_eq!(start + n, end);
                found.push(n);
                start = end;
            }
        }
        assert_eq!(found, lens);
    }

    #[test]
    fn bounds_refuse_before_the_bytes_arrive() {
        let mut s = Scanner::new(limits());
        // array32 claiming four billion entries, with no entry sent.
        assert!(matches!(
            s.scan(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::ImpossibleLength { .. })
        ));
        let mut s = Scanner::new(limits());
        // bin32 of 1 GiB.
        assert_eq!(
            s.scan(&[0xc6, 0x40, 0, 0, 0]),
            Err(FrameError::TooLarge { max: 1024 })
        );
        let mut s = Scanner::new(limits());
        assert_eq!(s.scan(&[0x91; 100]), Err(FrameError::TooDeep { max: 8 }));
        let mut s = Scanner::new(limits());
        assert_eq!(s.scan(&[0xc1]), Err(FrameError::InvalidMarker));
        // Many small items that add up past the bound.
        let mut s = Scanner::new(limits());
        let mut big = vec![0xdc, 0x01, 0xf4];
        for _ in 0..500 {
            big.extend_from_slice(&[0xc4, 0x05, 1, 2, 3, 4, 5]);
        }
        assert!(matches!(s.scan(&big), Err(FrameError::TooLarge { .. })));
    }
}
