//! The Postfix socketmap protocol (socketmap_table(5)): [`Request`], [`Reply`], [`ServerCodec`],
//! [`ClientCodec`].

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::{
    ProtoError,
    netstring::{self, NetstringCodec},
};

/// Default maximum request size: 10 000 bytes (Postfix's socketmap query limit).
pub const DEFAULT_MAX_REQUEST_LEN: usize = 10_000;

/// Default maximum reply size: 100 000 bytes (Postfix's `socketmap_max_reply_size`), counting the
/// whole netstring payload (`STATUS`, space and data).
pub const DEFAULT_MAX_REPLY_LEN: usize = 100_000;

/// A socketmap request: `name SP key`, kept as the received bytes.
///
/// The frame is split at the **first** space (socketmap_table(5)): the map name cannot contain a
/// space, the key can. Accessors borrow from the frame; nothing is copied. A frame without a space is
/// still a `Request` (so a server can answer it and read on), but [`key`](Self::key) reports
/// [`ProtoError::MissingSpace`].
///
/// ```
/// use socketmap_proto::{ProtoError, Request};
///
/// let req = Request::new("mta-sts", "example.com")?;
/// assert_eq!(req.name()?, "mta-sts");
/// assert_eq!(req.key()?, "example.com");
/// assert_eq!(req.as_bytes(), b"mta-sts example.com");
///
/// let bad = Request::from_frame("no-space-here".into());
/// assert!(matches!(bad.key(), Err(ProtoError::MissingSpace)));
/// # Ok::<(), ProtoError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    frame: Bytes,
    /// Index of the first space, if any.
    space: Option<usize>,
}

impl Request {
    /// Builds a request from a map name and a key.
    ///
    /// # Errors
    ///
    /// [`ProtoError::InvalidMapName`] if `name` is empty or contains a space (the server would split
    /// the request elsewhere).
    pub fn new(name: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Result<Self, ProtoError> {
        let (name, key) = (name.as_ref(), key.as_ref());
        if name.is_empty() || name.contains(&b' ') {
            return Err(ProtoError::InvalidMapName {
                name: Bytes::copy_from_slice(name),
            });
        }
        let mut frame = BytesMut::with_capacity(name.len() + 1 + key.len());
        frame.extend_from_slice(name);
        frame.extend_from_slice(b" ");
        frame.extend_from_slice(key);
        Ok(Self {
            frame: frame.freeze(),
            space: Some(name.len()),
        })
    }

    /// Wraps a received netstring payload without copying. Never fails: problems surface from
    /// [`name`](Self::name) and [`key`](Self::key).
    #[must_use]
    pub fn from_frame(frame: Bytes) -> Self {
        let space = frame.iter().position(|&b| b == b' ');
        Self { frame, space }
    }

    /// The map name as bytes: everything before the first space (the whole frame if there is none).
    #[must_use]
    pub fn raw_name(&self) -> &[u8] {
        &self.frame[..self.space.unwrap_or(self.frame.len())]
    }

    /// The map name as UTF-8.
    ///
    /// # Errors
    ///
    /// [`ProtoError::NameNotUtf8`] if the name is not valid UTF-8.
    pub fn name(&self) -> Result<&str, ProtoError> {
        std::str::from_utf8(self.raw_name()).map_err(|source| ProtoError::NameNotUtf8 { source })
    }

    /// The key as bytes: everything after the first space, or `None` if the request has no space.
    #[must_use]
    pub fn raw_key(&self) -> Option<&[u8]> {
        self.space.map(|i| &self.frame[i + 1..])
    }

    /// The key as UTF-8. Postfix sends keys as bytes (case-folded, possibly with UTF-8 U-labels); this
    /// crate does not guess at other encodings.
    ///
    /// # Errors
    ///
    /// [`ProtoError::MissingSpace`] if the request has no space, [`ProtoError::KeyNotUtf8`] if the key
    /// is not valid UTF-8. Both concern this request only: the stream stays usable.
    pub fn key(&self) -> Result<&str, ProtoError> {
        let key = self.raw_key().ok_or(ProtoError::MissingSpace)?;
        std::str::from_utf8(key).map_err(|source| ProtoError::KeyNotUtf8 { source })
    }

    /// The whole request payload (`name SP key`) as sent on the wire, without netstring framing.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.frame
    }

    /// The whole request payload as a cheap [`Bytes`] handle.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.frame
    }
}

/// A socketmap reply (socketmap_table(5) "PROTOCOL").
///
/// Payloads are bytes; build them from `&'static str`, `String` or `Vec<u8>` with the helper
/// constructors. [`ServerCodec`] encodes a reply to exactly the bytes Postfix compares:
///
/// ```
/// use bytes::BytesMut;
/// use socketmap_proto::{Reply, ServerCodec};
/// use tokio_util::codec::Encoder;
///
/// let mut codec = ServerCodec::new();
/// let mut wire = BytesMut::new();
/// codec.encode(Reply::ok("secure match=mx.example.com"), &mut wire)?;
/// codec.encode(Reply::NotFound, &mut wire)?;
/// codec.encode(Reply::temp("lookup failed"), &mut wire)?;
/// assert_eq!(&wire[..], &b"30:OK secure match=mx.example.com,9:NOTFOUND ,18:TEMP lookup failed,"[..]);
/// # Ok::<(), socketmap_proto::ProtoError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reply {
    /// `OK data`: the lookup succeeded with result `data`.
    Ok(Bytes),
    /// `NOTFOUND `: no result. Encoded with the trailing space Postfix expects; when decoding, any
    /// payload after `NOTFOUND` is ignored, and a bare `OK` (no space, no result) is not-found too, as
    /// in Postfix (see [`Reply::parse`]).
    NotFound,
    /// `TEMP reason`: temporary failure; Postfix retries.
    Temp(Bytes),
    /// `TIMEOUT reason`: the lookup timed out; Postfix retries.
    Timeout(Bytes),
    /// `PERM reason`: permanent failure (a configuration error in Postfix's eyes).
    Perm(Bytes),
}

impl Reply {
    /// `OK data`.
    pub fn ok(data: impl Into<Bytes>) -> Self {
        Self::Ok(data.into())
    }

    /// `TEMP reason`.
    pub fn temp(reason: impl Into<Bytes>) -> Self {
        Self::Temp(reason.into())
    }

    /// `TIMEOUT reason`.
    pub fn timeout(reason: impl Into<Bytes>) -> Self {
        Self::Timeout(reason.into())
    }

    /// `PERM reason`.
    pub fn perm(reason: impl Into<Bytes>) -> Self {
        Self::Perm(reason.into())
    }

    /// The status word: `"OK"`, `"NOTFOUND"`, `"TEMP"`, `"TIMEOUT"` or `"PERM"`.
    ///
    /// ```
    /// assert_eq!(socketmap_proto::Reply::NotFound.status(), "NOTFOUND");
    /// ```
    #[must_use]
    pub fn status(&self) -> &'static str {
        match self {
            Self::Ok(_) => "OK",
            Self::NotFound => "NOTFOUND",
            Self::Temp(_) => "TEMP",
            Self::Timeout(_) => "TIMEOUT",
            Self::Perm(_) => "PERM",
        }
    }

    /// The data (for `OK`) or reason (for errors); empty for `NOTFOUND`.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        match self {
            Self::Ok(b) | Self::Temp(b) | Self::Timeout(b) | Self::Perm(b) => b,
            Self::NotFound => b"",
        }
    }

    /// Length of the netstring payload this reply encodes to (`STATUS SP payload`).
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        self.status().len() + 1 + self.payload().len()
    }

    /// Parses a reply's netstring payload the way Postfix does (`dict_sockmap.c`): the status word
    /// is everything before the first space (the whole payload if there is none), compared exactly.
    /// A bare `"NOTFOUND"` is therefore not-found; a bare `"OK"` has no result, which Postfix also
    /// treats as not-found, so it decodes as [`Reply::NotFound`]; bare `TEMP`/`TIMEOUT`/`PERM` get an
    /// empty reason.
    ///
    /// ```
    /// use socketmap_proto::Reply;
    ///
    /// assert_eq!(Reply::parse("OK a b".into())?, Reply::ok("a b"));
    /// assert_eq!(Reply::parse("OK ".into())?, Reply::ok(""));
    /// assert_eq!(Reply::parse("OK".into())?, Reply::NotFound);
    /// assert_eq!(Reply::parse("NOTFOUND ".into())?, Reply::NotFound);
    /// assert_eq!(Reply::parse("ok x".into()).unwrap_err().kind(), "unknown_status");
    /// # Ok::<(), socketmap_proto::ProtoError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ProtoError::UnknownStatus`] for any other status word.
    pub fn parse(frame: Bytes) -> Result<Self, ProtoError> {
        let (status, payload) = match frame.iter().position(|&b| b == b' ') {
            Some(i) => {
                let mut status = frame;
                let payload = status.split_off(i + 1);
                status.truncate(i);
                (status, Some(payload))
            }
            None => (frame, None),
        };
        match (&status[..], payload) {
            (b"OK", Some(data)) => Ok(Self::Ok(data)),
            (b"OK" | b"NOTFOUND", _) => Ok(Self::NotFound),
            (b"TEMP", reason) => Ok(Self::Temp(reason.unwrap_or_default())),
            (b"TIMEOUT", reason) => Ok(Self::Timeout(reason.unwrap_or_default())),
            (b"PERM", reason) => Ok(Self::Perm(reason.unwrap_or_default())),
            _ => Err(ProtoError::UnknownStatus { status }),
        }
    }

    /// Writes the reply as a netstring, refusing payloads over `max`.
    fn encode_to(&self, max: usize, dst: &mut BytesMut) -> Result<(), ProtoError> {
        let len = self.encoded_len();
        if len > max {
            return Err(ProtoError::PayloadTooLong { len, max });
        }
        netstring::encode_parts(&[self.status().as_bytes(), b" ", self.payload()], dst);
        Ok(())
    }
}

impl std::fmt::Display for Reply {
    /// The reply payload as Postfix sees it, non-printable bytes escaped: `OK data`, `NOTFOUND `.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status(), self.payload().escape_ascii())
    }
}

/// Server side of the protocol: decodes [`Request`]s, encodes [`Reply`]s.
///
/// Defaults: requests up to [`DEFAULT_MAX_REQUEST_LEN`] (10 000) bytes, replies up to
/// [`DEFAULT_MAX_REPLY_LEN`] (100 000) bytes. Decoding errors are framing errors and fatal;
/// per-request problems (no space, non-UTF-8) come from [`Request::key`] and leave the stream usable.
///
/// ```
/// use bytes::BytesMut;
/// use socketmap_proto::{Reply, ServerCodec};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = ServerCodec::new();
/// let mut input = BytesMut::from(&b"19:mta-sts example.com,7:nospace,"[..]);
///
/// let req = codec.decode(&mut input)?.expect("a whole frame");
/// assert_eq!((req.name()?, req.key()?), ("mta-sts", "example.com"));
///
/// let bad = codec.decode(&mut input)?.expect("a whole frame");
/// assert_eq!(bad.key().unwrap_err().kind(), "missing_space");
///
/// let mut out = BytesMut::new();
/// codec.encode(Reply::NotFound, &mut out)?;
/// assert_eq!(&out[..], b"9:NOTFOUND ,");
/// # Ok::<(), socketmap_proto::ProtoError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServerCodec {
    requests: NetstringCodec,
    max_reply_len: usize,
}

impl ServerCodec {
    /// A codec with Postfix's default limits.
    #[must_use]
    pub fn new() -> Self {
        Self {
            requests: NetstringCodec::new(DEFAULT_MAX_REQUEST_LEN),
            max_reply_len: DEFAULT_MAX_REPLY_LEN,
        }
    }

    /// Changes the maximum request size the decoder accepts.
    #[must_use]
    pub fn with_max_request_len(self, max: usize) -> Self {
        Self {
            requests: NetstringCodec::new(max),
            ..self
        }
    }

    /// Changes the maximum reply size the encoder sends (status word, space and data).
    #[must_use]
    pub fn with_max_reply_len(self, max: usize) -> Self {
        Self {
            max_reply_len: max,
            ..self
        }
    }

    /// The maximum request size.
    #[must_use]
    pub fn max_request_len(&self) -> usize {
        self.requests.max_len()
    }

    /// The maximum reply size.
    #[must_use]
    pub fn max_reply_len(&self) -> usize {
        self.max_reply_len
    }
}

impl Default for ServerCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for ServerCodec {
    type Item = Request;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, ProtoError> {
        Ok(self.requests.decode(src)?.map(Request::from_frame))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Request>, ProtoError> {
        Ok(self.requests.decode_eof(src)?.map(Request::from_frame))
    }
}

impl Encoder<Reply> for ServerCodec {
    type Error = ProtoError;

    fn encode(&mut self, item: Reply, dst: &mut BytesMut) -> Result<(), ProtoError> {
        item.encode_to(self.max_reply_len, dst)
    }
}

impl Encoder<&Reply> for ServerCodec {
    type Error = ProtoError;

    fn encode(&mut self, item: &Reply, dst: &mut BytesMut) -> Result<(), ProtoError> {
        item.encode_to(self.max_reply_len, dst)
    }
}

/// Client side of the protocol: encodes [`Request`]s, decodes [`Reply`]s.
///
/// Defaults: requests up to [`DEFAULT_MAX_REQUEST_LEN`] bytes, replies up to
/// [`DEFAULT_MAX_REPLY_LEN`] bytes. A reply with an unknown status word decodes to
/// [`ProtoError::UnknownStatus`]; the frame has been consumed, so the codec itself stays in sync (but
/// note that `tokio_util`'s `Framed` ends the stream after any decoder error).
///
/// ```
/// use bytes::BytesMut;
/// use socketmap_proto::{ClientCodec, Reply, Request};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = ClientCodec::new();
/// let mut out = BytesMut::new();
/// codec.encode(Request::new("mta-sts", "example.com")?, &mut out)?;
/// assert_eq!(&out[..], b"19:mta-sts example.com,");
///
/// let mut input = BytesMut::from(&b"9:NOTFOUND ,"[..]);
/// assert_eq!(codec.decode(&mut input)?, Some(Reply::NotFound));
/// # Ok::<(), socketmap_proto::ProtoError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientCodec {
    replies: NetstringCodec,
    max_request_len: usize,
}

impl ClientCodec {
    /// A codec with Postfix's default limits.
    #[must_use]
    pub fn new() -> Self {
        Self {
            replies: NetstringCodec::new(DEFAULT_MAX_REPLY_LEN),
            max_request_len: DEFAULT_MAX_REQUEST_LEN,
        }
    }

    /// Changes the maximum request size the encoder sends.
    #[must_use]
    pub fn with_max_request_len(self, max: usize) -> Self {
        Self {
            max_request_len: max,
            ..self
        }
    }

    /// Changes the maximum reply size the decoder accepts.
    #[must_use]
    pub fn with_max_reply_len(self, max: usize) -> Self {
        Self {
            replies: NetstringCodec::new(max),
            ..self
        }
    }

    /// The maximum request size.
    #[must_use]
    pub fn max_request_len(&self) -> usize {
        self.max_request_len
    }

    /// The maximum reply size.
    #[must_use]
    pub fn max_reply_len(&self) -> usize {
        self.replies.max_len()
    }

    fn encode_request(&self, item: &Request, dst: &mut BytesMut) -> Result<(), ProtoError> {
        let len = item.as_bytes().len();
        if len > self.max_request_len {
            return Err(ProtoError::PayloadTooLong {
                len,
                max: self.max_request_len,
            });
        }
        netstring::encode_parts(&[item.as_bytes()], dst);
        Ok(())
    }
}

impl Default for ClientCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for ClientCodec {
    type Item = Reply;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, ProtoError> {
        self.replies.decode(src)?.map(Reply::parse).transpose()
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, ProtoError> {
        self.replies.decode_eof(src)?.map(Reply::parse).transpose()
    }
}

impl Encoder<Request> for ClientCodec {
    type Error = ProtoError;

    fn encode(&mut self, item: Request, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.encode_request(&item, dst)
    }
}

impl Encoder<&Request> for ClientCodec {
    type Error = ProtoError;

    fn encode(&mut self, item: &Request, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.encode_request(item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_reply(reply: &Reply) -> Result<BytesMut, ProtoError> {
        let mut dst = BytesMut::new();
        ServerCodec::new().encode(reply, &mut dst)?;
        Ok(dst)
    }

    #[test]
    fn reply_encodes_to_exact_postfix_bytes() {
        let cases: &[(&str, Reply, &[u8])] = &[
            (
                "ok_with_data",
                Reply::ok("secure match=a:b"),
                b"19:OK secure match=a:b,",
            ),
            ("ok_with_empty_data", Reply::ok(""), b"3:OK ,"),
            (
                "notfound_has_trailing_space",
                Reply::NotFound,
                b"9:NOTFOUND ,",
            ),
            (
                "temp_with_reason",
                Reply::temp("dns failure"),
                b"16:TEMP dns failure,",
            ),
            (
                "timeout_with_reason",
                Reply::timeout("slow"),
                b"12:TIMEOUT slow,",
            ),
            (
                "perm_with_reason",
                Reply::perm("bad map"),
                b"12:PERM bad map,",
            ),
        ];
        for (name, reply, want) in cases {
            let got = encode_reply(reply).map(|b| b.to_vec());
            assert_eq!(got.ok().as_deref(), Some(*want), "{name}");
        }
    }

    #[test]
    fn reply_at_limit_is_sent_and_one_over_is_refused() {
        let at_limit = Reply::ok(vec![b'x'; DEFAULT_MAX_REPLY_LEN - 3]);
        let encoded = encode_reply(&at_limit).map(|b| b.len()).ok();
        assert_eq!(encoded, Some("100000:".len() + DEFAULT_MAX_REPLY_LEN + 1));

        let over = Reply::ok(vec![b'x'; DEFAULT_MAX_REPLY_LEN - 2]);
        let mut dst = BytesMut::from(&b"prefix"[..]);
        match ServerCodec::new().encode(over, &mut dst) {
            Err(ProtoError::PayloadTooLong {
                len: 100_001,
                max: 100_000,
            }) => {}
            other => panic!("expected PayloadTooLong, got {other:?}"),
        }
        assert_eq!(&dst[..], b"prefix", "nothing written");
    }

    #[test]
    fn reply_parse_table() {
        let cases: &[(&str, &[u8], Result<Reply, &str>)] = &[
            ("ok_data_keeps_spaces", b"OK a b c", Ok(Reply::ok("a b c"))),
            ("ok_with_space_only_is_empty_ok", b"OK ", Ok(Reply::ok(""))),
            (
                "ok_without_space_is_notfound_as_in_postfix",
                b"OK",
                Ok(Reply::NotFound),
            ),
            (
                "temp_without_space_has_empty_reason",
                b"TEMP",
                Ok(Reply::temp("")),
            ),
            ("notfound_with_space", b"NOTFOUND ", Ok(Reply::NotFound)),
            ("notfound_without_space", b"NOTFOUND", Ok(Reply::NotFound)),
            (
                "notfound_payload_ignored",
                b"NOTFOUND junk",
                Ok(Reply::NotFound),
            ),
            ("temp", b"TEMP try later", Ok(Reply::temp("try later"))),
            ("timeout", b"TIMEOUT x", Ok(Reply::timeout("x"))),
            ("perm", b"PERM y", Ok(Reply::perm("y"))),
            (
                "lowercase_status_unknown",
                b"ok data",
                Err("unknown_status"),
            ),
            ("empty_frame_unknown", b"", Err("unknown_status")),
            ("leading_space_unknown", b" OK x", Err("unknown_status")),
            (
                "prefix_of_status_unknown",
                b"NOTFOUNDX ",
                Err("unknown_status"),
            ),
        ];
        for (name, input, want) in cases {
            let got = Reply::parse(Bytes::copy_from_slice(input));
            match (want, got) {
                (Ok(want), Ok(got)) => assert_eq!(&got, want, "{name}"),
                (Err(kind), Err(err)) => assert_eq!(err.kind(), *kind, "{name}"),
                (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn request_split_table() {
        /// Case name, frame, raw_name, raw_key, and key() as a value or an error kind.
        type Case = (
            &'static str,
            &'static [u8],
            &'static [u8],
            Option<&'static [u8]>,
            Result<&'static str, &'static str>,
        );
        let cases: &[Case] = &[
            (
                "plain",
                b"map example.com",
                b"map",
                Some(b"example.com"),
                Ok("example.com"),
            ),
            (
                "splits_at_first_space",
                b"map a b",
                b"map",
                Some(b"a b"),
                Ok("a b"),
            ),
            ("empty_key", b"map ", b"map", Some(b""), Ok("")),
            ("empty_name", b" key", b"", Some(b"key"), Ok("key")),
            ("no_space", b"mapkey", b"mapkey", None, Err("missing_space")),
            ("empty_frame", b"", b"", None, Err("missing_space")),
            (
                "utf8_key",
                "map b\u{fc}cher.de".as_bytes(),
                b"map",
                Some("b\u{fc}cher.de".as_bytes()),
                Ok("b\u{fc}cher.de"),
            ),
            (
                "latin1_key",
                b"map b\xfccher.de",
                b"map",
                Some(b"b\xfccher.de"),
                Err("key_not_utf8"),
            ),
        ];
        for (name, frame, raw_name, raw_key, key) in cases {
            let req = Request::from_frame(Bytes::copy_from_slice(frame));
            assert_eq!(req.raw_name(), *raw_name, "{name}");
            assert_eq!(req.raw_key(), *raw_key, "{name}");
            assert_eq!(req.key().map_err(|e| e.kind()), *key, "{name}");
            assert_eq!(req.as_bytes(), *frame, "{name}");
        }
    }

    #[test]
    fn request_name_not_utf8_is_typed() {
        let req = Request::from_frame(Bytes::from_static(b"\xff key"));
        assert_eq!(req.name().map_err(|e| e.kind()), Err("name_not_utf8"));
        assert_eq!(req.key().ok(), Some("key"));
    }

    #[test]
    fn request_new_rejects_bad_names() {
        for name in ["", "two words", " lead"] {
            assert_eq!(
                Request::new(name, "k").map_err(|e| e.kind()),
                Err("invalid_map_name"),
                "{name:?}"
            );
        }
    }

    #[test]
    fn request_frames_are_not_copied() {
        let mut codec = ServerCodec::new();
        let mut buf = BytesMut::from(&b"5:m key,"[..]);
        let base = buf.as_ptr();
        let req = codec.decode(&mut buf).ok().flatten();
        assert_eq!(
            req.as_ref().map(|r| r.as_bytes().as_ptr()),
            Some(base.wrapping_add(2))
        );
    }

    #[test]
    fn server_keeps_reading_after_a_bad_request() {
        let mut codec = ServerCodec::new();
        let mut buf = BytesMut::from(&b"5:nokey,7:map key,"[..]);
        let first = codec.decode(&mut buf).ok().flatten();
        assert_eq!(
            first.map(|r| r.key().map_err(|e| e.kind()).map(str::to_owned)),
            Some(Err("missing_space"))
        );
        let second = codec.decode(&mut buf).ok().flatten();
        assert_eq!(
            second.map(|r| r.key().map(str::to_owned).ok()),
            Some(Some("key".to_owned()))
        );
    }

    #[test]
    fn server_request_limits() {
        let mut codec = ServerCodec::new();
        assert_eq!(codec.max_request_len(), 10_000);
        let mut buf = BytesMut::from(&b"10001:"[..]);
        assert_eq!(
            codec.decode(&mut buf).err().map(|e| e.kind()),
            Some("frame_too_long")
        );

        let mut small = ServerCodec::new()
            .with_max_request_len(4)
            .with_max_reply_len(5);
        assert_eq!((small.max_request_len(), small.max_reply_len()), (4, 5));
        let mut dst = BytesMut::new();
        assert_eq!(
            small
                .encode(Reply::ok("abc"), &mut dst)
                .err()
                .map(|e| e.kind()),
            Some("payload_too_long")
        );
    }

    #[test]
    fn client_codec_round_trip_with_server_codec() {
        let mut client = ClientCodec::new();
        let mut server = ServerCodec::new();
        let mut wire = BytesMut::new();
        let req = Request::new("map", "k e y").ok();
        assert!(
            req.as_ref()
                .is_some_and(|r| client.encode(r, &mut wire).is_ok())
        );
        assert_eq!(server.decode(&mut wire).ok().flatten(), req);

        for reply in [
            Reply::ok("x y"),
            Reply::NotFound,
            Reply::temp(""),
            Reply::perm("p"),
        ] {
            assert!(server.encode(&reply, &mut wire).is_ok());
            assert_eq!(client.decode(&mut wire).ok().flatten(), Some(reply));
        }
    }

    #[test]
    fn client_refuses_oversized_request() {
        let mut client = ClientCodec::new().with_max_request_len(5);
        assert_eq!(
            (client.max_request_len(), client.max_reply_len()),
            (5, 100_000)
        );
        let mut dst = BytesMut::new();
        let req = Request::from_frame(Bytes::from_static(b"map key"));
        assert_eq!(
            client.encode(req, &mut dst).err().map(|e| e.kind()),
            Some("payload_too_long")
        );
        assert!(dst.is_empty());
    }

    #[test]
    fn client_unknown_status_consumes_the_frame() {
        let mut client = ClientCodec::new();
        let mut buf = BytesMut::from(&b"5:HUH x,3:OK ,"[..]);
        assert_eq!(
            client.decode(&mut buf).err().map(|e| e.kind()),
            Some("unknown_status")
        );
        assert_eq!(client.decode(&mut buf).ok().flatten(), Some(Reply::ok("")));
    }

    #[test]
    fn reply_display_escapes() {
        assert_eq!(Reply::NotFound.to_string(), "NOTFOUND ");
        assert_eq!(Reply::ok(&b"a\xff"[..]).to_string(), "OK a\\xff");
    }
}
