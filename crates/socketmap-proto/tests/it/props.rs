//! Property tests: encode→decode round trips, chunking independence, no panics on arbitrary input.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use socketmap_proto::{ClientCodec, NetstringCodec, ProtoError, Reply, Request, ServerCodec};
use tokio_util::codec::{Decoder, Encoder};

/// Decodes `input` fed in the given chunk sizes (cycled), then at EOF. Returns frames and the error,
/// if any.
fn decode_chunked<D>(
    mut decoder: D,
    input: &[u8],
    chunks: &[usize],
) -> (Vec<D::Item>, Option<String>)
where
    D: Decoder<Error = ProtoError>,
{
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut sizes = chunks.iter().copied().cycle();
    while pos < input.len() {
        let n = sizes
            .next()
            .unwrap_or(input.len())
            .clamp(1, input.len() - pos);
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(err) => return (frames, Some(err.kind().to_owned())),
            }
        }
    }
    loop {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(err) => return (frames, Some(err.kind().to_owned())),
        }
    }
}

fn reply_strategy() -> impl Strategy<Value = Reply> {
    let payload = proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
    prop_oneof![
        payload.clone().prop_map(Reply::Ok),
        Just(Reply::NotFound),
        payload.clone().prop_map(Reply::Temp),
        payload.clone().prop_map(Reply::Timeout),
        payload.prop_map(Reply::Perm),
    ]
}

proptest! {
    #[test]
    fn netstring_round_trip(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
        let mut codec = NetstringCodec::new(300);
        let mut wire = BytesMut::new();
        for frame in &frames {
            prop_assert!(codec.encode(&frame[..], &mut wire).is_ok());
        }
        let (decoded, err) = decode_chunked(NetstringCodec::new(300), &wire, &[usize::MAX]);
        prop_assert_eq!(err, None);
        let decoded: Vec<Vec<u8>> = decoded.iter().map(|b| b.to_vec()).collect();
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn arbitrary_chunking_gives_the_same_frames(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 1..10),
        trailing in proptest::collection::vec(any::<u8>(), 0..20),
        chunks in proptest::collection::vec(1usize..17, 1..8),
    ) {
        // Valid frames followed by arbitrary (possibly malformed) bytes: frames and outcome must not
        // depend on how the input was split.
        let mut codec = NetstringCodec::new(100);
        let mut wire = BytesMut::new();
        for frame in &frames {
            prop_assert!(codec.encode(&frame[..], &mut wire).is_ok());
        }
        wire.extend_from_slice(&trailing);
        let whole = decode_chunked(NetstringCodec::new(100), &wire, &[usize::MAX]);
        let chunked = decode_chunked(NetstringCodec::new(100), &wire, &chunks);
        prop_assert_eq!(&whole, &chunked);
        prop_assert!(whole.0.len() >= frames.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512), max in 0usize..64,
                                   chunks in proptest::collection::vec(1usize..9, 1..4)) {
        let (frames, _) = decode_chunked(NetstringCodec::new(max), &input, &chunks);
        prop_assert!(frames.iter().all(|f| f.len() <= max));
        let (requests, _) = decode_chunked(ServerCodec::new().with_max_request_len(max), &input, &chunks);
        for request in &requests {
            let _ = (request.name(), request.key());
        }
        let _ = decode_chunked(ClientCodec::new().with_max_reply_len(max), &input, &chunks);
    }

    #[test]
    fn digit_heavy_input_never_panics(input in "[0-9:,]{0,200}") {
        let _ = decode_chunked(NetstringCodec::new(50), input.as_bytes(), &[3]);
    }

    #[test]
    fn request_round_trip(name in "[!-~]{1,20}", key in proptest::collection::vec(any::<u8>(), 0..100)) {
        let request = Request::new(&name, &key);
        prop_assert!(request.is_ok());
        let Ok(request) = request else { return Ok(()) };
        let mut wire = BytesMut::new();
        prop_assert!(ClientCodec::new().encode(&request, &mut wire).is_ok());
        let (decoded, err) = decode_chunked(ServerCodec::new(), &wire, &[5]);
        prop_assert_eq!(err, None);
        prop_assert_eq!(decoded.len(), 1);
        prop_assert_eq!(decoded[0].raw_name(), name.as_bytes());
        prop_assert_eq!(decoded[0].raw_key(), Some(&key[..]));
    }

    #[test]
    fn reply_round_trip(replies in proptest::collection::vec(reply_strategy(), 0..10)) {
        let mut server = ServerCodec::new();
        let mut wire = BytesMut::new();
        for reply in &replies {
            prop_assert!(server.encode(reply, &mut wire).is_ok());
        }
        let (decoded, err) = decode_chunked(ClientCodec::new(), &wire, &[usize::MAX]);
        prop_assert_eq!(err, None);
        prop_assert_eq!(decoded, replies);
    }
}
