//! Codecs driven through `FramedRead` over readers that deliver the input whole, in chunks, or one byte
//! at a time.

use bytes::Bytes;
use futures_util::StreamExt;
use socketmap_proto::{NetstringCodec, ProtoError, Reply, Request, ServerCodec};
use tokio_util::codec::{Decoder, FramedRead};

use crate::ChunkedReader;

/// Reads all frames (or the first error) from `input` delivered `chunk` bytes at a time.
async fn read_frames<D>(decoder: D, input: &[u8], chunk: usize) -> Result<Vec<D::Item>, ProtoError>
where
    D: Decoder<Error = ProtoError>,
{
    let mut framed = FramedRead::new(ChunkedReader::new(input, chunk), decoder);
    let mut frames = Vec::new();
    while let Some(frame) = framed.next().await {
        frames.push(frame?);
    }
    Ok(frames)
}

/// Chunk sizes every case is run with: one byte at a time, small odd chunks, and all at once.
const CHUNKS: [usize; 5] = [1, 2, 3, 7, usize::MAX];

#[tokio::test]
async fn netstring_frames_survive_any_chunking() {
    /// Case name, input, expected frames.
    type Case = (&'static str, &'static [u8], &'static [&'static [u8]]);
    let cases: &[Case] = &[
        ("single_frame", b"5:hello,", &[b"hello"]),
        ("empty_frame", b"0:,", &[b""]),
        (
            "many_frames_in_one_read",
            b"1:a,0:,3:a:b,2:,,,",
            &[b"a", b"", b"a:b", b",,"],
        ),
        (
            "multi_digit_length",
            b"12:hello world!,",
            &[b"hello world!"],
        ),
        ("no_input_no_frames", b"", &[]),
    ];
    for (name, input, want) in cases {
        for chunk in CHUNKS {
            let got = read_frames(NetstringCodec::new(100), input, chunk).await;
            let got: Option<Vec<Bytes>> = got.ok();
            let want: Vec<Bytes> = want.iter().map(|w| Bytes::copy_from_slice(w)).collect();
            assert_eq!(got, Some(want), "{name}, chunk {chunk}");
        }
    }
}

#[tokio::test]
async fn netstring_errors_are_the_same_at_any_chunking() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("read_incomplete_length", b"12", "unexpected_eof"),
        ("read_incomplete_data", b"5:hel", "unexpected_eof"),
        ("read_missing_comma_at_eof", b"5:hello", "unexpected_eof"),
        ("read_wrong_terminator", b"5:hello!", "missing_comma"),
        ("read_leading_zero", b"01:a,", "leading_zero"),
        ("read_empty_length", b":", "empty_length"),
        ("read_letter_in_length", b"1a:", "missing_colon"),
        ("read_garbage_start", b"GET / HTTP/1.1\r\n", "non_digit"),
        ("read_oversized_frame", b"101:", "frame_too_long"),
        ("read_hundred_digit_length", &[b'7'; 100], "frame_too_long"),
        ("read_good_then_truncated", b"1:a,1:", "unexpected_eof"),
    ];
    for (name, input, kind) in cases {
        for chunk in CHUNKS {
            let got = read_frames(NetstringCodec::new(100), input, chunk).await;
            assert_eq!(
                got.err().map(|e| e.kind()),
                Some(*kind),
                "{name}, chunk {chunk}"
            );
        }
    }
}

#[tokio::test]
async fn oversized_frame_is_refused_even_when_fully_present() {
    let mut input = b"10001:".to_vec();
    input.extend(std::iter::repeat_n(b'x', 10_001));
    input.push(b',');
    let got = read_frames(ServerCodec::new(), &input, usize::MAX).await;
    assert!(
        matches!(got, Err(ProtoError::FrameTooLong { max: 10_000, .. })),
        "{got:?}"
    );
}

#[tokio::test]
async fn request_at_postfix_limit_is_accepted() {
    let key = "k".repeat(10_000 - 4);
    let mut input = b"10000:map ".to_vec();
    input.extend_from_slice(key.as_bytes());
    input.push(b',');
    let got = read_frames(ServerCodec::new(), &input, 1000).await.ok();
    let key = got
        .as_ref()
        .and_then(|reqs| reqs.first())
        .map(|r| r.key().map(str::len).ok());
    assert_eq!(key, Some(Some(9_996)));
}

#[tokio::test]
async fn server_stream_continues_after_semantic_errors() {
    let input = b"7:nospace,5:map \xff,15:map example.com,";
    for chunk in CHUNKS {
        let requests = read_frames(ServerCodec::new(), input, chunk)
            .await
            .unwrap_or_default();
        let keys: Vec<Result<&str, &str>> = requests
            .iter()
            .map(|r| r.key().map_err(|e| e.kind()))
            .collect();
        assert_eq!(
            keys,
            [Err("missing_space"), Err("key_not_utf8"), Ok("example.com")],
            "chunk {chunk}"
        );
    }
}

#[tokio::test]
async fn client_codec_reads_every_reply_kind() {
    let input = b"6:OK a b,9:NOTFOUND ,6:TEMP x,9:TIMEOUT y,6:PERM z,";
    for chunk in CHUNKS {
        let replies = read_frames(socketmap_proto::ClientCodec::new(), input, chunk)
            .await
            .ok();
        assert_eq!(
            replies,
            Some(vec![
                Reply::ok("a b"),
                Reply::NotFound,
                Reply::temp("x"),
                Reply::timeout("y"),
                Reply::perm("z"),
            ]),
            "chunk {chunk}"
        );
    }
}

#[test]
fn request_new_matches_decoded_request() {
    let built = Request::new("mta-sts", "b\u{fc}cher.example").ok();
    let decoded = Request::from_frame(Bytes::from("mta-sts b\u{fc}cher.example"));
    assert_eq!(built, Some(decoded));
}
