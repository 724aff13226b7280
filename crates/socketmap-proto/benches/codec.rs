//! Criterion benchmarks of codec throughput: netstring decode/encode, server-side request decoding
//! and reply encoding, at typical Postfix sizes.
//!
//! Run briefly with `cargo bench -p socketmap-proto -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use socketmap_proto::{NetstringCodec, Reply, ServerCodec};
use tokio_util::codec::{Decoder, Encoder};

/// Frames per batch: enough that per-batch overhead vanishes.
const FRAMES: usize = 1_000;

fn wire_of(frame: &[u8], count: usize) -> BytesMut {
    let mut codec = NetstringCodec::new(usize::MAX);
    let mut wire = BytesMut::new();
    for _ in 0..count {
        if codec.encode(frame, &mut wire).is_err() {
            unreachable!("usize::MAX limit");
        }
    }
    wire
}

fn netstring_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("netstring_decode");
    for size in [32usize, 1_000, 10_000] {
        let wire = wire_of(&vec![b'x'; size], FRAMES);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(format!("{FRAMES}x{size}B"), |b| {
            b.iter_batched_ref(
                || wire.clone(),
                |buf| {
                    let mut codec = NetstringCodec::new(10_000);
                    let mut n = 0;
                    while let Ok(Some(frame)) = codec.decode(buf) {
                        n += frame.len();
                    }
                    black_box(n)
                },
                BatchSize::SmallInput,
            );
        });
    }
    // The worst case for a rescanning decoder: a large frame arriving one byte at a time.
    let wire = wire_of(&vec![b'x'; 10_000], 1);
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("1x10000B_byte_by_byte", |b| {
        b.iter(|| {
            let mut codec = NetstringCodec::new(10_000);
            let mut buf = BytesMut::with_capacity(wire.len());
            let mut frames = 0;
            for &byte in &wire[..] {
                buf.extend_from_slice(&[byte]);
                if let Ok(Some(_)) = codec.decode(&mut buf) {
                    frames += 1;
                }
            }
            black_box(frames)
        });
    });
    group.finish();
}

fn netstring_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("netstring_encode");
    for size in [32usize, 1_000] {
        let frame = vec![b'x'; size];
        group.throughput(Throughput::Bytes(wire_of(&frame, FRAMES).len() as u64));
        group.bench_function(format!("{FRAMES}x{size}B"), |b| {
            let mut codec = NetstringCodec::new(10_000);
            let mut dst = BytesMut::with_capacity(FRAMES * (size + 8));
            b.iter(|| {
                dst.clear();
                for _ in 0..FRAMES {
                    let _ = codec.encode(black_box(&frame[..]), &mut dst);
                }
                black_box(dst.len())
            });
        });
    }
    group.finish();
}

fn socketmap(c: &mut Criterion) {
    let mut group = c.benchmark_group("socketmap");
    group.throughput(Throughput::Elements(FRAMES as u64));

    let wire = wire_of(b"mta-sts mail.example.com", FRAMES);
    group.bench_function("decode_requests", |b| {
        b.iter_batched_ref(
            || wire.clone(),
            |buf| {
                let mut codec = ServerCodec::new();
                let mut keys = 0;
                while let Ok(Some(request)) = codec.decode(buf) {
                    keys += request.key().map_or(0, str::len);
                }
                black_box(keys)
            },
            BatchSize::SmallInput,
        );
    });

    let reply = Reply::ok(
        "secure match=mx1.example.com:mx2.example.com servername=hostname policy_type=sts \
         policy_domain=example.com policy_ttl=86400",
    );
    group.bench_function("encode_replies", |b| {
        let mut codec = ServerCodec::new();
        let mut dst = BytesMut::with_capacity(FRAMES * 200);
        b.iter(|| {
            dst.clear();
            for _ in 0..FRAMES {
                let _ = codec.encode(black_box(&reply), &mut dst);
            }
            black_box(dst.len())
        });
    });
    group.finish();
}

criterion_group!(benches, netstring_decode, netstring_encode, socketmap);
criterion_main!(benches);
