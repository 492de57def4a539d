//! A hand-written scan of one-line JSON objects: the fast path of [`super::raw_json`]'s
//! check, which runs serde_json's parser with visitors that keep nothing and took a third
//! of the CPU of NDJSON → http (a fifth with this scan, for 19% less CPU per event).
//!
//! The scan answers only when it is sure serde_json's check answers the same: the same
//! objects, the same text, the same size estimate. Anything out of the ordinary makes
//! it give up (`None`), and the caller runs serde_json's check, which has the last word
//! and names the error:
//! - an escape in a key (its decoded form would have to be compared), or a `\u` escape
//!   of a surrogate (serde_json pairs or refuses them);
//! - a number that might not fit an `f64` (serde_json refuses infinities): more than
//!   100 characters, or an exponent beyond ±300 of its magnitude;
//! - nesting deeper than [`MAX_DEPTH`] (serde_json stops at 128);
//! - a key repeated in one object (or two keys of the same hash);
//! - a line break inside an object, a reserved top-level key, anything but whitespace
//!   between objects, and every syntax error.
//!
//! The body is UTF-8 already (a `&str`), so strings are only scanned for their end, their
//! escapes and control characters.

use std::ops::ControlFlow;

use super::json_size::{ARRAY, SLOT, SeenKeys, key_hash, object_size};

/// Deeper than this gives up: far inside serde_json's own limit, so the two never
/// disagree about where it lies.
const MAX_DEPTH: u32 = 64;
/// A number longer than this gives up (its digits could shift the magnitude past what
/// the exponent check sees).
const MAX_NUMBER_LEN: usize = 100;
/// Numbers whose decimal magnitude stays within ±this are finite `f64`s for certain.
const MAX_MAGNITUDE: i64 = 300;

/// What a string value takes once parsed beyond its bytes (charged as the decode
/// allowance charges one).
pub(crate) const STRING: usize = 16;

/// One object found: its text is `body[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Its parsed heap estimate, as [`super::raw_json::check_object`] computes it.
    pub(crate) parsed_size: usize,
}

/// The objects of a body of whitespace-separated one-line objects (NDJSON), at most
/// `max`; `None` to check the body with serde_json instead.
pub(crate) fn one_line_objects(body: &str, max: usize) -> Option<Vec<Found>> {
    let mut scan = Scan::new(body.as_bytes());
    let mut found = Vec::new();
    loop {
        scan.skip_whitespace();
        if scan.at_end() {
            return Some(found);
        }
        let start = scan.i;
        let parsed_size = scan.top_object(&[])?;
        // serde_json's stream reads `{}{}` as two values; giving up keeps this simple.
        if !scan.at_end() && !is_whitespace(scan.peek()?) {
            return None;
        }
        found.push(Found {
            start,
            end: scan.i,
            parsed_size,
        });
        if found.len() > max {
            return None;
        }
    }
}

/// The parsed size of `text` when it is one one-line object with none of the `reserved`
/// top-level keys (whitespace around it allowed); `None` to check it with serde_json.
pub(crate) fn one_line_object(text: &str, reserved: &[&str]) -> Option<usize> {
    let mut scan = Scan::new(text.as_bytes());
    scan.skip_whitespace();
    let size = scan.top_object(reserved)?;
    scan.skip_whitespace();
    scan.at_end().then_some(size)
}

/// One member of a top-level object, as [`top_members`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The key's text between its quotes (it holds no escape).
    pub(crate) key: std::ops::Range<usize>,
    /// Where the member starts: its key's opening quote.
    pub(crate) start: usize,
    /// The value's text.
    pub(crate) value: std::ops::Range<usize>,
    /// What the key and the value take once parsed (the object's share of them).
    pub(crate) size: usize,
}

/// The members of `text`, one one-line object (whitespace around it allowed) already
/// checked (UTF-8, no key twice), in their order, into `members`; `None` to leave it to
/// the parser: a top-level key with an escape (it would have to be decoded to be
/// named), or anything [`one_line_object`] gives up on. The object's parsed size is
/// [`object_size`]`(members.len(), Σ size)`.
pub(crate) fn top_members(text: &[u8], members: &mut Vec<Member>) -> Option<()> {
    members.clear();
    each_top_member(text, |member| {
        members.push(member);
        ControlFlow::Continue(())
    })
}

/// Hands the members of `text` (as [`top_members`] finds them) to `visit` in their
/// order, until it breaks; the text after that member is not read. `None` as
/// [`top_members`] gives it, for what the scan met before stopping.
pub(crate) fn each_top_member(
    text: &[u8],
    mut visit: impl FnMut(Member) -> ControlFlow<()>,
) -> Option<()> {
    let mut scan = Scan::new(text);
    scan.skip_whitespace();
    if scan.next()? != b'{' {
        return None;
    }
    scan.skip_inline_whitespace()?;
    if scan.peek()? == b'}' {
        scan.i += 1;
    } else {
        loop {
            if scan.peek()? != b'"' {
                return None;
            }
            let member_start = scan.i;
            let key = scan.string()?;
            if key.escaped {
                return None;
            }
            scan.skip_inline_whitespace()?;
            if scan.next()? != b':' {
                return None;
            }
            scan.skip_inline_whitespace()?;
            let start = scan.i;
            let size = scan.value(1)?;
            let member = Member {
                key: key.start..key.end,
                start: member_start,
                value: start..scan.i,
                size: size.saturating_add(key.decoded_len),
            };
            if visit(member).is_break() {
                return Some(());
            }
            scan.skip_inline_whitespace()?;
            match scan.next()? {
                b',' => scan.skip_inline_whitespace()?,
                b'}' => break,
                _ => return None,
            }
        }
    }
    scan.skip_whitespace();
    scan.at_end().then_some(())
}

/// What one JSON value (a member's, as written into an object) takes once parsed;
/// `None` to leave it to the parser, as [`one_line_object`] would.
pub(crate) fn member_value_size(text: &[u8]) -> Option<usize> {
    let mut scan = Scan::new(text);
    let size = scan.value(1)?;
    scan.at_end().then_some(size)
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// How many bytes of `s` come before the first that ends a run of a string's plain
/// bytes: a quote, a backslash, or a control character (which JSON strings may not
/// hold raw); `s.len()` if none does.
///
/// Sixteen bytes at a time with SSE2, which every x86-64 processor has: three byte-wise
/// compares and one mask per block. The rest, and other processors, go eight at a time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub(crate) fn plain_len(s: &[u8]) -> usize {
    // SAFETY: this build targets x86-64 with SSE2 enabled (the cfg above), so the
    // processor it runs on has SSE2; the function reads only through safe slices.
    unsafe { plain_len_sse2(s) }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn plain_len_sse2(s: &[u8]) -> usize {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
        _mm_set1_epi8,
    };
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let last_control = _mm_set1_epi8(0x1f);
    let mut blocks = s.chunks_exact(16);
    let mut len = 0;
    for block in &mut blocks {
        let (lo, hi) = block.split_at(8);
        let half = |b: &[u8]| {
            let mut word = [0u8; 8];
            word.copy_from_slice(b);
            i64::from_le_bytes(word)
        };
        let x = _mm_set_epi64x(half(hi), half(lo));
        // `min(x, 0x1f) == x` exactly when x ≤ 0x1f, compared as unsigned bytes.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(x, last_control), x);
        let stops = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
            control,
        );
        let mask = _mm_movemask_epi8(stops);
        if mask != 0 {
            return len + mask.trailing_zeros() as usize;
        }
        len += 16;
    }
    len + plain_len_by_words(blocks.remainder())
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
pub(crate) fn plain_len(s: &[u8]) -> usize {
    plain_len_by_words(s)
}

/// [`plain_len`], eight bytes at a time: a byte `b` is flagged by
/// `(w - k·ONES) & !w & HIGHS` when `b < k` (with `k = 1` after XOR with the byte
/// sought, when it equals it). Borrows only flag bytes above one truly flagged, so the
/// lowest flag is always the first stop.
fn plain_len_by_words(s: &[u8]) -> usize {
    let mut chunks = s.chunks_exact(8);
    let mut len = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let stops = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let stops = stops & HIGHS;
        if stops != 0 {
            return len + (stops.trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    len + chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(chunks.remainder().len())
}

/// A scan over text known to be UTF-8 (a `&str`, or text made from one), read as bytes.
struct Scan<'a> {
    bytes: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, i: 0 }
    }

    fn at_end(&self) -> bool {
        self.i >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(is_whitespace) {
            self.i += 1;
        }
    }

    /// Whitespace inside an object: a line break gives up (the object is not one line).
    fn skip_inline_whitespace(&mut self) -> Option<()> {
        loop {
            match self.peek()? {
                b' ' | b'\t' => self.i += 1,
                b'\n' | b'\r' => return None,
                _ => return Some(()),
            }
        }
    }

    fn top_object(&mut self, reserved: &[&str]) -> Option<usize> {
        if self.peek()? != b'{' {
            return None;
        }
        self.object(1, reserved)
    }

    /// At `{`: the object's size.
    fn object(&mut self, depth: u32, reserved: &[&str]) -> Option<usize> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.skip_inline_whitespace()?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(object_size(0, 0));
        }
        let mut seen = SeenKeys::default();
        let (mut entries, mut size) = (0usize, 0usize);
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            if key.escaped {
                return None;
            }
            let key_text = self.bytes.get(key.start..key.end)?;
            if reserved.iter().any(|r| r.as_bytes() == key_text) || !seen.insert(key_hash(key_text))
            {
                return None;
            }
            self.skip_inline_whitespace()?;
            if self.next()? != b':' {
                return None;
            }
            self.skip_inline_whitespace()?;
            let value = self.value(depth)?;
            entries += 1;
            size = size.saturating_add(key.decoded_len + value);
            self.skip_inline_whitespace()?;
            match self.next()? {
                b',' => self.skip_inline_whitespace()?,
                b'}' => return Some(object_size(entries, size)),
                _ => return None,
            }
        }
    }

    /// At `[`: the array's size, charged as the decode allowance charges one.
    fn array(&mut self, depth: u32) -> Option<usize> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.skip_inline_whitespace()?;
        let mut size = ARRAY;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(size);
        }
        loop {
            let item = self.value(depth)?;
            size = size.saturating_add(2 * SLOT + item);
            self.skip_inline_whitespace()?;
            match self.next()? {
                b',' => self.skip_inline_whitespace()?,
                b']' => return Some(size),
                _ => return None,
            }
        }
    }

    /// A value inside an object or array at `depth`: its size.
    fn value(&mut self, depth: u32) -> Option<usize> {
        match self.peek()? {
            b'"' => self.string().map(|s| STRING + s.decoded_len),
            b'{' => self.object(depth + 1, &[]),
            b'[' => self.array(depth + 1),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<usize> {
        let end = self.i.checked_add(word.len())?;
        if self.bytes.get(self.i..end)? != word {
            return None;
        }
        self.i = end;
        Some(0)
    }

    /// A number as JSON writes it, when it is surely a finite `f64` (or an integer).
    fn number(&mut self) -> Option<usize> {
        let start = self.i;
        if self.peek()? == b'-' {
            self.i += 1;
        }
        let int_digits = match self.next()? {
            b'0' => 1,
            b'1'..=b'9' => 1 + self.digits(),
            _ => return None,
        };
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        let mut exponent: i64 = 0;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            let negative = match self.peek()? {
                b'-' => {
                    self.i += 1;
                    true
                }
                b'+' => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let digits_start = self.i;
            let digits = self.digits();
            if digits == 0 || digits > 4 {
                return None;
            }
            exponent = self
                .bytes
                .get(digits_start..self.i)?
                .iter()
                .fold(0, |n, d| n * 10 + i64::from(d - b'0'));
            if negative {
                exponent = -exponent;
            }
        }
        let magnitude = i64::try_from(int_digits).ok()? + exponent;
        if self.i - start > MAX_NUMBER_LEN || !(-MAX_MAGNITUDE..=MAX_MAGNITUDE).contains(&magnitude)
        {
            return None;
        }
        Some(0)
    }

    /// Skips ASCII digits; how many.
    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// At `"`: the string's extent and decoded length.
    fn string(&mut self) -> Option<Str> {
        self.i += 1;
        let start = self.i;
        let mut decoded_len = 0;
        let mut escaped = false;
        loop {
            let plain = plain_len(self.bytes.get(self.i..)?);
            decoded_len += plain;
            self.i += plain;
            match self.next()? {
                // A raw control character: serde_json refuses it.
                0..0x20 => return None,
                b'"' => {
                    return Some(Str {
                        start,
                        end: self.i - 1,
                        decoded_len,
                        escaped,
                    });
                }
                b'\\' => {
                    escaped = true;
                    decoded_len += match self.next()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 1,
                        b'u' => utf8_len_of_escape(self.hex4()?)?,
                        _ => return None,
                    };
                }
                _ => return None,
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let end = self.i.checked_add(4)?;
        let digits = self.bytes.get(self.i..end)?;
        let mut code = 0u32;
        for &d in digits {
            code = code * 16 + char::from(d).to_digit(16)?;
        }
        self.i = end;
        Some(code)
    }
}

/// The UTF-8 length of a `\u` escape's code point; `None` for a surrogate, which
/// serde_json pairs with the next escape or refuses.
fn utf8_len_of_escape(code: u32) -> Option<usize> {
    match code {
        0..0x80 => Some(1),
        0x80..0x800 => Some(2),
        0xD800..=0xDFFF => None,
        _ => Some(3),
    }
}

/// A string's raw text (`start..end`, between its quotes) and its length once decoded.
struct Str {
    start: usize,
    end: usize,
    decoded_len: usize,
    escaped: bool,
}

#[cfg(test)]
mod tests;
