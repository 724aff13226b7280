//! The crate's error type.

use std::{io, str::Utf8Error};

use bytes::Bytes;

/// Everything that can go wrong while framing, parsing or exchanging socketmap messages.
///
/// Errors fall in two groups, told apart by [`ProtoError::is_fatal`]:
///
/// * **Fatal** errors — malformed netstrings, oversized frames, a stream that ends inside a frame, I/O
///   failures. The byte stream can no longer be trusted to be in sync; the connection must be closed.
/// * **Per-message** errors — a request without a space, a non-UTF-8 name or key, a reply with an
///   unknown status word, a payload the encoder refuses. The frame boundaries are intact, so the
///   connection can go on (a server answers such a request with an error reply and reads the next one).
///
/// # Example
///
/// ```
/// use socketmap_proto::{NetstringCodec, ProtoError};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = NetstringCodec::new(100);
/// let mut buf = bytes::BytesMut::from(&b"5:hello;"[..]);
/// let err = codec.decode(&mut buf).unwrap_err();
/// assert!(matches!(err, ProtoError::MissingComma { found: b';' }));
/// assert!(err.is_fatal());
/// assert_eq!(err.kind(), "missing_comma");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A netstring started with `:`: the length has no digits.
    #[error("netstring length is empty: ':' before any digit")]
    EmptyLength,

    /// A netstring started with a byte that is not a decimal digit.
    #[error("netstring must start with a decimal digit, found byte {}", escape(*.byte))]
    NonDigit {
        /// The offending byte.
        byte: u8,
    },

    /// A netstring length had a leading zero (`"05:hello,"`). Only the empty netstring `"0:,"` may start
    /// with `0`; anything else is ambiguous and rejected, as the netstring definition requires.
    #[error("netstring length has a leading zero")]
    LeadingZero,

    /// The length digits were followed by something other than a digit or `:`.
    #[error("netstring length must end with ':', found byte {}", escape(*.found))]
    MissingColon {
        /// The byte found after the digits.
        found: u8,
    },

    /// The data was not followed by `,`.
    #[error("netstring data must end with ',', found byte {}", escape(*.found))]
    MissingComma {
        /// The byte found where the comma belongs.
        found: u8,
    },

    /// An incoming netstring announced more data than the decoder's maximum. Detected while the length
    /// digits arrive, so a huge announced length is never buffered.
    #[error("netstring length exceeds the maximum of {max} bytes (announced at least {at_least})")]
    FrameTooLong {
        /// A lower bound of the announced length (the digits read so far).
        at_least: usize,
        /// The decoder's maximum data length.
        max: usize,
    },

    /// The encoder was asked to send more than its maximum (for replies, Postfix's
    /// `socketmap_max_reply_size`, 100 000 bytes by default). Nothing was written.
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes; nothing was sent")]
    PayloadTooLong {
        /// The length of the refused netstring payload.
        len: usize,
        /// The encoder's maximum.
        max: usize,
    },

    /// The stream ended in the middle of a netstring.
    #[error("stream ended inside a netstring ({buffered} bytes of the frame buffered)")]
    UnexpectedEof {
        /// Bytes of the incomplete frame still in the buffer (length digits already consumed excluded).
        buffered: usize,
    },

    /// The peer closed the connection cleanly (between frames) while replies were still expected.
    #[error("connection closed by the peer with {pending} replies outstanding")]
    ConnectionClosed {
        /// How many replies were still expected.
        pending: usize,
    },

    /// A socketmap request has no space separating the map name from the key
    /// (socketmap_table(5): the request is `name <space> key`).
    #[error("socketmap request has no space between map name and key")]
    MissingSpace,

    /// The map name of a request is not valid UTF-8.
    #[error("socketmap map name is not valid UTF-8")]
    NameNotUtf8 {
        /// Where decoding failed.
        #[source]
        source: Utf8Error,
    },

    /// The key of a request is not valid UTF-8. Postfix sends keys as bytes; a daemon that works on
    /// domain names should answer such a request with `NOTFOUND ` or `PERM`, not guess.
    #[error("socketmap key is not valid UTF-8")]
    KeyNotUtf8 {
        /// Where decoding failed.
        #[source]
        source: Utf8Error,
    },

    /// A map name given to [`Request::new`](crate::Request::new) was empty or contained a space, so the
    /// server could not split the request where it was meant to be split.
    #[error("invalid socketmap map name {}: must be non-empty and contain no space", .name.escape_ascii())]
    InvalidMapName {
        /// The rejected name.
        name: Bytes,
    },

    /// A reply started with a status word other than `OK`, `NOTFOUND`, `TEMP`, `TIMEOUT` or `PERM`
    /// (socketmap_table(5) "PROTOCOL"; the comparison is exact and case-sensitive, as in Postfix).
    #[error("unknown socketmap reply status {}", .status.escape_ascii())]
    UnknownStatus {
        /// The status word received (everything before the first space).
        status: Bytes,
    },

    /// Reading from or writing to the connection failed.
    #[error("socketmap I/O error")]
    Io(#[from] io::Error),
}

impl ProtoError {
    /// True when the stream can no longer be trusted and the connection must be closed; false for
    /// errors about one well-framed message, after which the next frame can be read.
    ///
    /// ```
    /// use socketmap_proto::ProtoError;
    ///
    /// assert!(ProtoError::LeadingZero.is_fatal());
    /// assert!(!ProtoError::MissingSpace.is_fatal());
    /// ```
    #[must_use]
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::EmptyLength
            | Self::NonDigit { .. }
            | Self::LeadingZero
            | Self::MissingColon { .. }
            | Self::MissingComma { .. }
            | Self::FrameTooLong { .. }
            | Self::UnexpectedEof { .. }
            | Self::ConnectionClosed { .. }
            | Self::Io(_) => true,
            Self::PayloadTooLong { .. }
            | Self::MissingSpace
            | Self::NameNotUtf8 { .. }
            | Self::KeyNotUtf8 { .. }
            | Self::InvalidMapName { .. }
            | Self::UnknownStatus { .. } => false,
        }
    }

    /// A stable short label for logs and metrics, e.g. `"frame_too_long"`.
    ///
    /// ```
    /// use socketmap_proto::ProtoError;
    ///
    /// assert_eq!(ProtoError::MissingSpace.kind(), "missing_space");
    /// ```
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EmptyLength => "empty_length",
            Self::NonDigit { .. } => "non_digit",
            Self::LeadingZero => "leading_zero",
            Self::MissingColon { .. } => "missing_colon",
            Self::MissingComma { .. } => "missing_comma",
            Self::FrameTooLong { .. } => "frame_too_long",
            Self::PayloadTooLong { .. } => "payload_too_long",
            Self::UnexpectedEof { .. } => "unexpected_eof",
            Self::ConnectionClosed { .. } => "connection_closed",
            Self::MissingSpace => "missing_space",
            Self::NameNotUtf8 { .. } => "name_not_utf8",
            Self::KeyNotUtf8 { .. } => "key_not_utf8",
            Self::InvalidMapName { .. } => "invalid_map_name",
            Self::UnknownStatus { .. } => "unknown_status",
            Self::Io(_) => "io",
        }
    }
}

/// Renders one byte for an error message: `'x'` for printable ASCII, `0x00` otherwise.
fn escape(byte: u8) -> String {
    if byte.is_ascii_graphic() || byte == b' ' {
        format!("'{}'", char::from(byte))
    } else {
        format!("{byte:#04x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_escapes_bytes() {
        assert_eq!(
            ProtoError::NonDigit { byte: b'x' }.to_string(),
            "netstring must start with a decimal digit, found byte 'x'"
        );
        assert_eq!(
            ProtoError::MissingColon { found: 0 }.to_string(),
            "netstring length must end with ':', found byte 0x00"
        );
        assert_eq!(
            ProtoError::UnknownStatus {
                status: Bytes::from_static(b"ok\xff")
            }
            .to_string(),
            "unknown socketmap reply status ok\\xff"
        );
    }

    #[test]
    fn io_error_converts_and_keeps_source() {
        let err = ProtoError::from(io::Error::other("boom"));
        assert!(err.is_fatal());
        assert_eq!(err.kind(), "io");
        assert_eq!(
            std::error::Error::source(&err)
                .map(ToString::to_string)
                .as_deref(),
            Some("boom")
        );
    }
}
