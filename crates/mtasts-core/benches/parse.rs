//! Policy parsing speed: a typical policy and a large one (1 000 `mx` lines).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mtasts_core::{Policy, select_record};

const TYPICAL: &str = "version: STSv1\r\n\
                       mode: enforce\r\n\
                       mx: mail.example.com\r\n\
                       mx: *.example.net\r\n\
                       mx: backupmx.example.com\r\n\
                       max_age: 604800\r\n";

fn large_policy() -> String {
    let mut text = String::from("version: STSv1\nmode: testing\nmax_age: 86400\n");
    for i in 0..1_000 {
        text.push_str(&format!("mx: mx{i}.mail-cluster-{}.example.com\n", i % 17));
    }
    text.push_str("comment: generated for the benchmark\n");
    text
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_parse");
    group.throughput(Throughput::Bytes(TYPICAL.len() as u64));
    group.bench_function("typical", |b| {
        b.iter(|| Policy::parse(black_box(TYPICAL.as_bytes())));
    });
    let large = large_policy();
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_function("large_1000_mx", |b| {
        b.iter(|| Policy::parse(black_box(large.as_bytes())));
    });
    group.finish();

    let records = ["v=spf1 -all", "v=STSv1; id=20160831085700Z;"];
    c.bench_function("txt_select_record", |b| {
        b.iter(|| select_record(black_box(records)));
    });
}

criterion_group!(benches, parse);
criterion_main!(benches);
