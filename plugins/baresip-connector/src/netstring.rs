//! Netstring framing (`<decimal length>:<bytes>,`), as ctrl_tcp speaks it in
//! both directions.
//!
//! The decoder takes whatever `read` returned — half a frame, several frames,
//! a frame split anywhere — and hands back whole payloads. A malformed
//! header (not a decimal length, a length above the limit) or a frame that
//! does not end with `,` is an error: the stream cannot be resynchronised
//! after that, so the caller drops the connection.

use std::fmt;

/// The largest payload accepted (baresip's own replies are a few kB; a
/// `listcalls` with hundreds of calls stays far below this).
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// Digits a length may have (`MAX_FRAME` needs 7).
const MAX_DIGITS: usize = 10;

/// A framing error; the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix holds something other than decimal digits.
    BadLength(String),
    /// The announced length is above [`MAX_FRAME`].
    TooLong(usize),
    /// The byte after the payload is not `,`.
    MissingComma(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLength(h) => write!(f, "bad netstring length prefix {h:?}"),
            Self::TooLong(n) => write!(
                f,
                "netstring of {n} bytes announced (the limit is {MAX_FRAME})"
            ),
            Self::MissingComma(b) => write!(
                f,
                "netstring payload not followed by ',' (found byte 0x{b:02x})"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes one payload as a netstring.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 12);
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(b',');
    out
}

/// Reassembles netstrings from a byte stream.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out (compacted lazily).
    start: usize,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole payload, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// A malformed frame; the decoder is then unusable (drop the connection).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let data = &self.buf[self.start..];
        let Some(colon) = data.iter().take(MAX_DIGITS + 1).position(|&b| b == b':') else {
            if data.len() > MAX_DIGITS || !data.iter().all(u8::is_ascii_digit) {
                return Err(FrameError::BadLength(show(&data[..data.len().min(16)])));
            }
            return Ok(None);
        };
        let head = &data[..colon];
        if head.is_empty() || !head.iter().all(u8::is_ascii_digit) {
            return Err(FrameError::BadLength(show(head)));
        }
        let len: usize = std::str::from_utf8(head)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| FrameError::BadLength(show(head)))?;
        if len > MAX_FRAME {
            return Err(FrameError::TooLong(len));
        }
        let body = colon + 1;
        let end = body + len;
        if data.len() <= end {
            return Ok(None);
        }
        if data[end] != b',' {
            return Err(FrameError::MissingComma(data[end]));
        }
        let payload = data[body..end].to_vec();
        self.start += end + 1;
        Ok(Some(payload))
    }
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(d: &mut Decoder) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(f) = d.next_frame().expect("valid") {
            out.push(String::from_utf8(f).expect("utf8"));
        }
        out
    }

    #[test]
    fn encodes_and_decodes_one_frame() {
        let wire = encode(br#"{"command":"listcalls"}"#);
        assert_eq!(wire, br#"23:{"command":"listcalls"},"#);
        let mut d = Decoder::new();
        d.push(&wire);
        assert_eq!(frames(&mut d), [r#"{"command":"listcalls"}"#]);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_frame_split_anywhere_is_reassembled() {
        let wire = [encode(b"hello"), encode(b""), encode(b"world!")].concat();
        for cut in 0..wire.len() {
            let mut d = Decoder::new();
            d.push(&wire[..cut]);
            let mut got = frames(&mut d);
            d.push(&wire[cut..]);
            got.extend(frames(&mut d));
            assert_eq!(got, ["hello", "", "world!"], "cut at {cut}");
        }
        // Byte by byte.
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            got.extend(frames(&mut d));
        }
        assert_eq!(got, ["hello", "", "world!"]);
    }

    #[test]
    fn coalesced_frames_come_out_in_order() {
        let mut d = Decoder::new();
        let mut wire = Vec::new();
        for i in 0..100 {
            wire.extend(encode(format!("frame {i}").as_bytes()));
        }
        d.push(&wire);
        let got = frames(&mut d);
        assert_eq!(got.len(), 100);
        assert_eq!(got[99], "frame 99");
    }

    #[test]
    fn bad_lengths_are_errors() {
        for bad in [&b"x5:hello,"[..], b":hello,", b"-1:a,", b"1 2:ab,", b"abc"] {
            let mut d = Decoder::new();
            d.push(bad);
            assert!(
                matches!(d.next_frame(), Err(FrameError::BadLength(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut d = Decoder::new();
        d.push(b"99999999999");
        assert!(matches!(d.next_frame(), Err(FrameError::BadLength(_))));
        let mut d = Decoder::new();
        d.push(b"999999999:");
        assert_eq!(d.next_frame(), Err(FrameError::TooLong(999_999_999)));
        let mut d = Decoder::new();
        d.push(b"3:abcd");
        assert_eq!(d.next_frame(), Err(FrameError::MissingComma(b'd')));
        // An incomplete but valid prefix just waits.
        let mut d = Decoder::new();
        d.push(b"12");
        assert_eq!(d.next_frame(), Ok(None));
        d.push(b":");
        assert_eq!(d.next_frame(), Ok(None));
    }

    #[test]
    fn a_long_stream_keeps_the_buffer_small() {
        let mut d = Decoder::new();
        let frame = encode(&[b'x'; 1000]);
        for _ in 0..1000 {
            d.push(&frame);
            assert_eq!(frames(&mut d).len(), 1);
        }
        assert!(d.buf.capacity() < 200 * 1024, "{}", d.buf.capacity());
    }
}
