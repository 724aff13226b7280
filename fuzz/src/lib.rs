//! The checks of the fuzz targets, as plain functions over bytes.
//!
//! Each libFuzzer binary in `fuzz_targets/` is one line that calls the function of the same name, so the
//! same checks also run on stable Rust: `cargo test -p xtask` replays every seed corpus
//! (`fuzz/seeds/<target>/`) through [`TARGETS`]. A check panics when it finds a bug; otherwise it returns.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use mta_sts_daemon::Config;
use mtasts_core::{MxPattern, Policy, PolicyDomain, TxtRecord, select_record};
use socketmap_proto::{
    Bytes, BytesMut, ClientCodec, Decoder, Encoder, NetstringCodec, ProtoError, ServerCodec,
};

/// A fuzz target: its name (the binary and the seed directory) and its check.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target, by name.
pub const TARGETS: &[Target] = &[
    ("config", config),
    ("netstring", netstring),
    ("policy", policy),
    ("round_trip", round_trip),
    ("txt_record", txt_record),
];

/// The daemon's YAML configuration loader (`Config::parse`, the Python daemon's file read as PyYAML
/// reads it) never panics, whatever the text: bad YAML, aliases, tags, deep nesting, huge numbers.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text);
    }
}

/// The policy file parser (RFC 8461 §3.2) never panics, and whatever parses matches the hosts of its own
/// `mx` patterns.
pub fn policy(data: &[u8]) {
    if let Ok(policy) = Policy::parse(data) {
        for pattern in policy.mx() {
            let host = pattern.as_str().replacen("*.", "fuzz.", 1);
            assert!(policy.matches_mx(&host), "{pattern} does not match {host}");
        }
    }
}

/// The TXT record parser and record selection (RFC 8461 §3.1, records separated by NUL bytes) never
/// panic, and the selected record is one of the input records.
pub fn txt_record(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text.parse::<TxtRecord>();
    if let Ok(record) = select_record(text.split('\0')) {
        assert!(
            text.split('\0')
                .any(|r| r.parse::<TxtRecord>().as_ref() == Ok(&record))
        );
    }
}

/// Whatever parses prints back to text (and JSON) that parses to the same value, and the printed form
/// needs no leniency.
pub fn round_trip(data: &[u8]) {
    if let Ok(policy) = Policy::parse(data) {
        let text = policy.to_string();
        let again = text.parse::<Policy>();
        assert_eq!(again.as_ref(), Ok(&policy), "{text:?}");
        assert_eq!(again.map(|p| p.leniencies().len()), Ok(0), "{text:?}");
        let json = serde_json::to_string(&policy).expect("a policy always serializes");
        let back: Policy = serde_json::from_str(&json).expect("serialized JSON deserializes");
        assert_eq!(back, policy, "{json}");
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(record) = text.parse::<TxtRecord>() {
        let again = record.to_string().parse::<TxtRecord>();
        assert_eq!(again.as_ref(), Ok(&record));
        assert_eq!(again.map(|r| r.leniencies().len()), Ok(0), "{record}");
    }
    if let Ok(pattern) = text.parse::<MxPattern>() {
        assert_eq!(
            pattern.to_string().parse::<MxPattern>().as_ref(),
            Ok(&pattern)
        );
    }
    if let Ok(domain) = PolicyDomain::parse(text) {
        assert_eq!(PolicyDomain::parse(domain.as_str()).as_ref(), Ok(&domain));
    }
}

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

/// The netstring and socketmap decoders never panic, give the same frames however the input is split
/// (the first byte chooses the chunk size and the frame limit), and every decoded frame survives an
/// encode → decode round trip.
pub fn netstring(data: &[u8]) {
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
}
