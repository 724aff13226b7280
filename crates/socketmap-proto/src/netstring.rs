//! Netstring framing as a `tokio_util` codec: see [`NetstringCodec`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::ProtoError;

/// The default maximum data length: 10 000 bytes, Postfix's socketmap query limit.
pub const DEFAULT_MAX_LEN: usize = 10_000;

/// Longest decimal rendering of a `usize` (`u64::MAX` has 20 digits).
const MAX_DIGITS: usize = 20;

/// Netstring codec: decodes frames into [`Bytes`], encodes `&[u8]` or [`Bytes`] as netstrings.
///
/// A netstring is a decimal length, a colon, that many bytes of data and a comma:
///
/// ```text
/// +----------------+-----+------------------------+-----+
/// | length (ASCII) | ':' | data (length bytes)    | ',' |
/// +----------------+-----+------------------------+-----+
///   "11"                   "postfix x.y"
///
/// "11:postfix x.y,"     "0:,"  (the empty netstring)
/// ```
///
/// # Decoder rules
///
/// * The length is one or more ASCII digits. `":"` (no digits) is [`ProtoError::EmptyLength`], a first
///   byte that is not a digit is [`ProtoError::NonDigit`], digits followed by anything but `:` is
///   [`ProtoError::MissingColon`].
/// * Leading zeros are rejected ([`ProtoError::LeadingZero`]): `"05:hello,"` has two spellings of one length;
///   the netstring definition (cr.yp.to/proto/netstrings.txt) forbids it, and Postfix never sends one.
///   `"0:,"`, the empty netstring, is accepted.
/// * The maximum data length is enforced **while the digits arrive**: the digit that makes the
///   announced length exceed the maximum fails with [`ProtoError::FrameTooLong`], so a peer cannot make
///   the decoder wait for (or buffer) a frame it will refuse anyway.
/// * The byte after the data must be `,` ([`ProtoError::MissingComma`]); the frame is only yielded once
///   the comma has been checked.
/// * At end of stream, a partial frame is [`ProtoError::UnexpectedEof`] (see `decode_eof`).
///
/// Decoding is linear in the input: length digits are consumed as they arrive and never rescanned,
/// and the data is split off the buffer as a [`Bytes`] without copying. All errors are fatal to the
/// stream; after one, drop the codec with its connection.
///
/// # Limits
///
/// The same maximum applies to both directions: the decoder refuses longer incoming frames, the
/// encoder refuses longer payloads (writing nothing). The default is [`DEFAULT_MAX_LEN`].
///
/// # Example
///
/// ```
/// use bytes::BytesMut;
/// use socketmap_proto::NetstringCodec;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = NetstringCodec::new(1_000);
///
/// let mut wire = BytesMut::new();
/// codec.encode(&b"hello"[..], &mut wire)?;
/// codec.encode(&b""[..], &mut wire)?;
/// assert_eq!(&wire[..], b"5:hello,0:,");
///
/// assert_eq!(codec.decode(&mut wire)?.as_deref(), Some(&b"hello"[..]));
/// assert_eq!(codec.decode(&mut wire)?.as_deref(), Some(&b""[..]));
/// assert_eq!(codec.decode(&mut wire)?, None); // needs more input
/// # Ok::<(), socketmap_proto::ProtoError>(())
/// ```
#[derive(Debug, Clone)]
pub struct NetstringCodec {
    max_len: usize,
    state: State,
}

/// Where the decoder is inside the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading length digits; `value` is the length so far, `digits` how many digits were consumed.
    Length { value: usize, digits: usize },
    /// The length and colon are consumed; waiting for `len` data bytes plus the comma.
    Data(usize),
}

impl State {
    const START: Self = Self::Length {
        value: 0,
        digits: 0,
    };
}

impl NetstringCodec {
    /// A codec whose frames carry at most `max_len` bytes of data.
    ///
    /// ```
    /// let codec = socketmap_proto::NetstringCodec::new(100_000);
    /// assert_eq!(codec.max_len(), 100_000);
    /// ```
    #[must_use]
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            state: State::START,
        }
    }

    /// The maximum data length of a frame, in either direction.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Writes `data` as a netstring, refusing payloads over `max_len` before writing anything.
    fn encode_slice(&self, data: &[u8], dst: &mut BytesMut) -> Result<(), ProtoError> {
        if data.len() > self.max_len {
            return Err(ProtoError::PayloadTooLong {
                len: data.len(),
                max: self.max_len,
            });
        }
        encode_parts(&[data], dst);
        Ok(())
    }
}

impl Default for NetstringCodec {
    /// A codec with the [`DEFAULT_MAX_LEN`] of 10 000 bytes.
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LEN)
    }
}

impl Decoder for NetstringCodec {
    type Item = Bytes;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, ProtoError> {
        loop {
            match self.state {
                State::Length { value, digits } => {
                    let Some(&byte) = src.first() else {
                        return Ok(None);
                    };
                    src.advance(1);
                    self.state = self.length_byte(value, digits, byte)?;
                }
                State::Data(len) => {
                    // Data plus the trailing comma; `len <= max_len`, so this cannot overflow
                    // unless max_len == usize::MAX, which saturates into "never complete".
                    let needed = len.saturating_add(1);
                    if src.len() < needed {
                        src.reserve(needed - src.len());
                        return Ok(None);
                    }
                    let found = src[len];
                    if found != b',' {
                        return Err(ProtoError::MissingComma { found });
                    }
                    let frame = src.split_to(len).freeze();
                    src.advance(1);
                    self.state = State::START;
                    return Ok(Some(frame));
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ProtoError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        match self.state {
            State::Length { digits: 0, .. } => Ok(None),
            State::Length { .. } | State::Data(_) => Err(ProtoError::UnexpectedEof {
                buffered: buf.len(),
            }),
        }
    }
}

impl NetstringCodec {
    /// One step of the length state machine: the state after `byte`.
    fn length_byte(&self, value: usize, digits: usize, byte: u8) -> Result<State, ProtoError> {
        match byte {
            b'0'..=b'9' => {
                if digits == 1 && value == 0 {
                    return Err(ProtoError::LeadingZero);
                }
                let next = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(usize::from(byte - b'0')))
                    .filter(|&v| v <= self.max_len);
                match next {
                    Some(value) => Ok(State::Length {
                        value,
                        digits: digits + 1,
                    }),
                    None => Err(ProtoError::FrameTooLong {
                        at_least: value
                            .saturating_mul(10)
                            .saturating_add(usize::from(byte - b'0')),
                        max: self.max_len,
                    }),
                }
            }
            b':' if digits == 0 => Err(ProtoError::EmptyLength),
            b':' => Ok(State::Data(value)),
            byte if digits == 0 => Err(ProtoError::NonDigit { byte }),
            found => Err(ProtoError::MissingColon { found }),
        }
    }
}

impl Encoder<&[u8]> for NetstringCodec {
    type Error = ProtoError;

    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.encode_slice(item, dst)
    }
}

impl Encoder<Bytes> for NetstringCodec {
    type Error = ProtoError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.encode_slice(&item, dst)
    }
}

impl Encoder<&Bytes> for NetstringCodec {
    type Error = ProtoError;

    fn encode(&mut self, item: &Bytes, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.encode_slice(item, dst)
    }
}

/// Writes one netstring whose data is the concatenation of `parts`, with one reservation.
/// The caller has checked the length against its maximum.
pub(crate) fn encode_parts(parts: &[&[u8]], dst: &mut BytesMut) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut digits = [0u8; MAX_DIGITS];
    let digits = format_decimal(len, &mut digits);
    dst.reserve(digits.len() + 1 + len + 1);
    dst.put_slice(digits);
    dst.put_u8(b':');
    for part in parts {
        dst.put_slice(part);
    }
    dst.put_u8(b',');
}

/// Formats `n` in decimal into the end of `buf`, returning the digits.
fn format_decimal(mut n: usize, buf: &mut [u8; MAX_DIGITS]) -> &[u8] {
    let mut start = MAX_DIGITS;
    loop {
        start -= 1;
        // `n % 10 < 10`, so the cast is lossless.
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut NetstringCodec, input: &[u8]) -> Result<Vec<Bytes>, ProtoError> {
        let mut buf = BytesMut::from(input);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode_eof(&mut buf)? {
            frames.push(frame);
        }
        Ok(frames)
    }

    #[test]
    fn format_decimal_renders_edges() {
        let mut buf = [0; MAX_DIGITS];
        assert_eq!(format_decimal(0, &mut buf), b"0");
        assert_eq!(format_decimal(9, &mut buf), b"9");
        assert_eq!(format_decimal(10, &mut buf), b"10");
        assert_eq!(format_decimal(100_000, &mut buf), b"100000");
        assert_eq!(
            format_decimal(usize::MAX, &mut buf),
            usize::MAX.to_string().as_bytes()
        );
    }

    /// Table of whole inputs: name, input, max, expected frames or error kind.
    #[test]
    fn decode_table() {
        type Expect = Result<&'static [&'static [u8]], &'static str>;
        let cases: &[(&str, &[u8], usize, Expect)] = &[
            ("empty_input_yields_nothing", b"", 10, Ok(&[])),
            ("empty_netstring_is_a_frame", b"0:,", 10, Ok(&[b""])),
            ("single_frame", b"5:hello,", 10, Ok(&[b"hello"])),
            (
                "two_frames_in_one_buffer",
                b"1:a,2:bc,",
                10,
                Ok(&[b"a", b"bc"]),
            ),
            ("frame_at_exact_max", b"3:abc,", 3, Ok(&[b"abc"])),
            (
                "data_may_contain_colons_and_commas",
                b"3:,:,,",
                10,
                Ok(&[b",:,"]),
            ),
            (
                "binary_data_passes_through",
                b"2:\x00\xff,",
                10,
                Ok(&[b"\x00\xff"]),
            ),
            (
                "colon_without_digits_is_empty_length",
                b":,",
                10,
                Err("empty_length"),
            ),
            ("letter_first_is_non_digit", b"a:,", 10, Err("non_digit")),
            ("space_first_is_non_digit", b" 1:a,", 10, Err("non_digit")),
            ("minus_sign_is_non_digit", b"-1:a,", 10, Err("non_digit")),
            (
                "leading_zero_rejected",
                b"05:hello,",
                10,
                Err("leading_zero"),
            ),
            ("double_zero_rejected", b"00:,", 10, Err("leading_zero")),
            (
                "letter_after_digits_is_missing_colon",
                b"5x",
                10,
                Err("missing_colon"),
            ),
            (
                "comma_after_digits_is_missing_colon",
                b"5,",
                10,
                Err("missing_colon"),
            ),
            (
                "wrong_terminator_is_missing_comma",
                b"5:hello;",
                10,
                Err("missing_comma"),
            ),
            (
                "data_longer_than_announced",
                b"3:hello,",
                10,
                Err("missing_comma"),
            ),
            (
                "one_over_max_is_too_long",
                b"4:abcd,",
                3,
                Err("frame_too_long"),
            ),
            (
                "huge_length_is_too_long",
                b"99999999999999999999999999:",
                10,
                Err("frame_too_long"),
            ),
            ("eof_in_length", b"5", 10, Err("unexpected_eof")),
            ("eof_after_colon", b"5:", 10, Err("unexpected_eof")),
            ("eof_in_data", b"5:hel", 10, Err("unexpected_eof")),
            ("eof_before_comma", b"5:hello", 10, Err("unexpected_eof")),
            (
                "eof_after_good_frame_in_next",
                b"1:a,2",
                10,
                Err("unexpected_eof"),
            ),
        ];
        for (name, input, max, expected) in cases {
            let got = decode_all(&mut NetstringCodec::new(*max), input);
            match (expected, got) {
                (Ok(want), Ok(got)) => {
                    let got: Vec<&[u8]> = got.iter().map(|b| &b[..]).collect();
                    assert_eq!(&got, want, "{name}");
                }
                (Err(kind), Err(err)) => assert_eq!(err.kind(), *kind, "{name}: {err}"),
                (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn too_long_is_detected_at_the_crossing_digit() {
        let mut codec = NetstringCodec::new(100);
        let mut buf = BytesMut::from(&b"10"[..]);
        assert_eq!(codec.decode(&mut buf).ok().flatten(), None);
        buf.extend_from_slice(b"0");
        assert_eq!(
            codec.decode(&mut buf).ok().flatten(),
            None,
            "100 is still allowed"
        );
        buf.extend_from_slice(b"0");
        match codec.decode(&mut buf) {
            Err(ProtoError::FrameTooLong {
                at_least: 1000,
                max: 100,
            }) => {}
            other => panic!("expected FrameTooLong, got {other:?}"),
        }
    }

    #[test]
    fn hundred_digit_length_fails_without_buffering() {
        let mut codec = NetstringCodec::new(DEFAULT_MAX_LEN);
        let mut buf = BytesMut::from(&[b'9'; 100][..]);
        let err = codec.decode(&mut buf).err().map(|e| e.kind());
        assert_eq!(err, Some("frame_too_long"));
        // The fifth digit (99999 > 10000) failed; the rest was never looked at.
        assert_eq!(buf.len(), 95);
    }

    #[test]
    fn length_digits_are_consumed_as_they_arrive() {
        let mut codec = NetstringCodec::new(DEFAULT_MAX_LEN);
        let mut buf = BytesMut::from(&b"12"[..]);
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
        assert!(buf.is_empty(), "digits must not be rescanned later");
        assert_eq!(
            codec.state,
            State::Length {
                value: 12,
                digits: 2
            }
        );
        buf.extend_from_slice(b":hello world!,");
        assert_eq!(
            codec.decode(&mut buf).ok().flatten().as_deref(),
            Some(&b"hello world!"[..])
        );
        assert_eq!(codec.state, State::START);
    }

    #[test]
    fn decoder_reserves_room_for_the_announced_frame() {
        let mut codec = NetstringCodec::new(DEFAULT_MAX_LEN);
        let mut buf = BytesMut::from(&b"5000:"[..]);
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
        assert!(buf.capacity() >= 5001);
    }

    #[test]
    fn max_usize_limit_does_not_overflow() {
        let mut codec = NetstringCodec::new(usize::MAX);
        let mut buf = BytesMut::from(&b"99999999999999999999999:"[..]);
        assert_eq!(
            codec.decode(&mut buf).err().map(|e| e.kind()),
            Some("frame_too_long")
        );
    }

    #[test]
    fn encoder_writes_netstrings() {
        let mut codec = NetstringCodec::new(20);
        let mut dst = BytesMut::new();
        codec.encode(&b"hello world"[..], &mut dst).ok();
        codec.encode(Bytes::from_static(b""), &mut dst).ok();
        codec.encode(&Bytes::from_static(b"x"), &mut dst).ok();
        assert_eq!(&dst[..], b"11:hello world,0:,1:x,");
    }

    #[test]
    fn encoder_refuses_oversized_payload_and_writes_nothing() {
        let mut codec = NetstringCodec::new(3);
        let mut dst = BytesMut::from(&b"keep"[..]);
        match codec.encode(&b"abcd"[..], &mut dst) {
            Err(ProtoError::PayloadTooLong { len: 4, max: 3 }) => {}
            other => panic!("expected PayloadTooLong, got {other:?}"),
        }
        assert_eq!(&dst[..], b"keep");
    }

    #[test]
    fn default_max_is_postfix_query_limit() {
        assert_eq!(NetstringCodec::default().max_len(), 10_000);
    }
}
