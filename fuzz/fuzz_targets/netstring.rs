//! Fuzzes the netstring and socketmap decoders: arbitrary bytes, split at fuzzer-chosen points, must
//! never panic, must give the same frames however they are split, and every decoded frame must
//! survive an encode → decode round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use socketmap_proto::{
    Bytes, BytesMut, ClientCodec, Decoder, Encoder, NetstringCodec, ProtoError, ServerCodec,
};

/// Decodes `input` fed `chunk` bytes at a time, then at EOF; stops at the first error.
fn decode_all<D: Decoder<Error = ProtoError>>(
    mut decoder: D,
    input: &[u8],
    chunk: usize,
) -> (Vec<D::Item>, Option<&'static str>) {
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(err) => return (items, Some(err.kind())),
            }
        }
    }
    loop {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, None),
            Err(err) => return (items, Some(err.kind())),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control % 16) + 1;
    let max = usize::from(control) * 4;

    // Chunking never changes the outcome.
    let whole: (Vec<Bytes>, _) = decode_all(NetstringCodec::new(max), input, input.len());
    let split = decode_all(NetstringCodec::new(max), input, chunk);
    assert_eq!(whole, split);

    // Frames respect the limit and round-trip.
    let mut encoder = NetstringCodec::new(max);
    let mut wire = BytesMut::new();
    for frame in &whole.0 {
        assert!(frame.len() <= max);
        assert!(encoder.encode(frame, &mut wire).is_ok());
    }
    let again = decode_all(NetstringCodec::new(max), &wire, chunk);
    assert_eq!(again, (whole.0, None));

    // The socketmap layers never panic, and per-request accessors are total.
    let (requests, _) = decode_all(ServerCodec::new(), input, chunk);
    for request in &requests {
        let _ = (request.name(), request.key(), request.raw_key());
    }
    let (replies, _) = decode_all(ClientCodec::new(), input, chunk);
    let mut server = ServerCodec::new();
    let mut out = BytesMut::new();
    for reply in &replies {
        assert!(server.encode(reply, &mut out).is_ok());
    }
    let (decoded, err) = decode_all(ClientCodec::new(), &out, out.len());
    assert_eq!((decoded, err), (replies, None));
});
