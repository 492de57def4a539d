//! Splitting a syslog TCP stream into messages (RFC 6587): octet counting
//! (`<length> <message>`, RFC 5425's framing, which TLS senders use) or one message per
//! line, decided per message by its first byte, as rsyslog and syslog-ng do.
//!
//! Every byte is untrusted: a message longer than `max_length` is skipped whole (its
//! length is known with octet counting; with newlines, up to the next newline) and
//! reported, and the stream goes on with the next message.

use bytes::{Buf, Bytes, BytesMut};

/// Most digits of an octet count (a length of 10 digits is already over any limit).
const MAX_COUNT_DIGITS: usize = 10;

/// What the decoder found besides complete messages.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A message over `max_length` bytes; it is skipped.
    TooLong { length: usize },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLong { length } => {
                write!(
                    f,
                    "a message of at least {length} bytes is over `max_length`"
                )
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Decoder {
    max_length: usize,
    /// Bytes of an over-long octet-counted message still to drop.
    skip: usize,
    /// Dropping an over-long line up to its newline.
    skip_line: bool,
}

impl Decoder {
    pub(crate) fn new(max_length: usize) -> Self {
        Self {
            max_length,
            skip: 0,
            skip_line: false,
        }
    }

    /// The next message in `buf`, removing it; `Ok(None)` when more bytes are needed.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len());
                buf.advance(n);
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            if self.skip_line {
                match memchr::memchr(b'\n', buf) {
                    Some(at) => {
                        buf.advance(at + 1);
                        self.skip_line = false;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            // Blank lines between messages are not messages.
            let blank = buf
                .iter()
                .take_while(|b| matches!(b, b'\n' | b'\r' | b' ' | b'\0'))
                .count();
            buf.advance(blank);
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first.is_ascii_digit() && first != b'0' {
                match self.octet_counted(buf)? {
                    Counted::Message(m) => return Ok(Some(m)),
                    Counted::NeedMore => return Ok(None),
                    Counted::Skipped => continue,
                    Counted::Newline => {}
                }
            }
            return self.line(buf);
        }
    }

    fn octet_counted(&mut self, buf: &mut BytesMut) -> Result<Counted, FrameError> {
        let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > MAX_COUNT_DIGITS {
            return Ok(Counted::Newline);
        }
        match buf.get(digits) {
            None => return Ok(Counted::NeedMore),
            Some(b' ') => {}
            Some(_) => return Ok(Counted::Newline),
        }
        let length: usize = std::str::from_utf8(&buf[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        // A count over the limit is more likely a line that starts with a number (an
        // epoch timestamp) than a message to skip gigabytes for: read it as a line, as
        // rsyslog does.
        if length > self.max_length {
            return Ok(Counted::Newline);
        }
        if buf.len() < digits + 1 + length {
            return Ok(Counted::NeedMore);
        }
        buf.advance(digits + 1);
        let message = buf.split_to(length).freeze();
        if message.is_empty() {
            return Ok(Counted::Skipped);
        }
        Ok(Counted::Message(message))
    }

    fn line(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let window = &buf[..buf.len().min(self.max_length + 1)];
        match memchr::memchr(b'\n', window) {
            Some(at) => {
                let mut line = buf.split_to(at + 1);
                line.truncate(at);
                if line.last() == Some(&b'\r') {
                    line.truncate(at - 1);
                }
                Ok(Some(line.freeze()))
            }
            None if buf.len() > self.max_length => {
                // Messages after this line's end may be in the buffer already.
                match memchr::memchr(b'\n', &buf[self.max_length + 1..]) {
                    Some(at) => {
                        let length = self.max_length + 1 + at;
                        buf.advance(length + 1);
                        Err(FrameError::TooLong { length })
                    }
                    None => {
                        let length = buf.len();
                        buf.clear();
                        self.skip_line = true;
                        Err(FrameError::TooLong { length })
                    }
                }
            }
            None => Ok(None),
        }
    }

    /// What is left when the stream ends: a last line without its newline. An
    /// octet-counted message cut short is dropped, not made an event of its fragment.
    pub(crate) fn finish(&mut self, buf: &mut BytesMut) -> Option<Bytes> {
        let counted = matches!(self.octet_counted(&mut buf.clone()), Ok(Counted::NeedMore));
        if counted
            || self.skip > 0
            || self.skip_line
            || buf.is_empty()
            || buf.len() > self.max_length
        {
            buf.clear();
            return None;
        }
        let rest = buf.split().freeze();
        let trimmed = rest.len()
            - rest
                .iter()
                .rev()
                .take_while(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\0'))
                .count();
        (trimmed > 0).then(|| rest.slice(..trimmed))
    }
}

/// What an octet-counted reading found.
enum Counted {
    Message(Bytes),
    NeedMore,
    /// An empty message (`0 `-like counts are not counts; this is `N ` with nothing).
    Skipped,
    /// Not a count after all: the message is newline-framed.
    Newline,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(decoder: &mut Decoder, input: &[u8]) -> (Vec<String>, usize) {
        let mut buf = BytesMut::from(input);
        let (mut out, mut errors) = (Vec::new(), 0);
        loop {
            match decoder.next(&mut buf) {
                Ok(Some(m)) => out.push(String::from_utf8_lossy(&m).into_owned()),
                Ok(None) => break,
                Err(_) => errors += 1,
            }
        }
        if let Some(m) = decoder.finish(&mut buf) {
            out.push(String::from_utf8_lossy(&m).into_owned());
        }
        (out, errors)
    }

    #[test]
    fn octet_counting_and_lines_mix_per_message() {
        let mut d = Decoder::new(1024);
        let (out, errors) = all(
            &mut d,
            b"11 <13>1 - a b\n<13>plain line\r\n\n5 hello<14>last",
        );
        assert_eq!(out, ["<13>1 - a b", "<13>plain line", "hello", "<14>last"]);
        assert_eq!(errors, 0);
    }

    #[test]
    fn a_message_split_across_reads_waits_for_its_end() {
        let mut d = Decoder::new(1024);
        let mut buf = BytesMut::from(&b"12 <13>1 - ab"[..]);
        assert_eq!(d.next(&mut buf), Ok(None));
        buf.extend_from_slice(b"cd");
        assert_eq!(
            d.next(&mut buf),
            Ok(Some(Bytes::from_static(b"<13>1 - abcd")))
        );
    }

    #[test]
    fn over_long_messages_are_skipped_and_the_stream_goes_on() {
        let mut d = Decoder::new(8);
        let (out, errors) = all(
            &mut d,
            b"3 abcbbbbbbbbbbbbbbbbbbbb\nok\n1701234567 epoch\nafter\n5 cut",
        );
        assert_eq!(
            out,
            ["abc", "ok", "after"],
            "a count over the limit is a line, skipped as too long"
        );
        assert_eq!(errors, 2);
        let mut huge = Decoder::new(64);
        let (out, errors) = all(&mut huge, b"99999999999999999999 x\nok\n");
        assert_eq!(out, ["99999999999999999999 x", "ok"], "not a count: a line");
        assert_eq!(errors, 0);
    }
}
