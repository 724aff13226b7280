//! Time per memory hit, end to end over one socketmap connection: an in-process daemon answers a policy it
//! holds in memory (`cache_grace` of an hour), for a two-`mx` policy and for an enforce policy of 6000 `mx`
//! lines (about 60 KiB, near the fetch limit of 64 KiB; issue 11 rows 6 and 7), in a plain zone and in a
//! `tlsrpt: true` zone. The DNS and HTTPS servers are the in-process fixture of `mtasts-test-support`; only the
//! first request of each domain discovers.

#![allow(missing_docs, reason = "criterion generates the entry points")]

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mta_sts_daemon::{Config, LocalAddr, Running};
use mtasts_test_support::Fixture;
use socketmap_proto::{Reply, SocketmapClient};

/// An enforce policy with `count` distinct `mx` lines of five characters (`aaa.t`, `aab.t`, …).
fn many_mx_policy(count: usize) -> String {
    let mut text = String::from("version: STSv1\nmode: enforce\nmax_age: 86400\n");
    for i in 0..count {
        let label: String = [i / 676, (i / 26) % 26, i % 26]
            .iter()
            .map(|&d| char::from(b'a' + u8::try_from(d).unwrap_or(0)))
            .collect();
        let _ = writeln!(text, "mx: {label}.t");
    }
    text
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let (fixture, daemon, mut client) = rt.block_on(async {
        let fixture = Fixture::start().await;
        fixture.publish(
            "small.test",
            "id1",
            "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\nmx: *.mx.example.net\n",
        );
        fixture.publish("large.test", "id1", &many_mx_policy(6000));
        let yaml = format!(
            "host: 127.0.0.1\nport: 0\ncache_grace: 3600\nresolver:\n  nameservers: [\"{}\"]\n  extra_ca_file: \"{}\"\n  policy_port: {}\n  proxy: none\nzones:\n  rpt:\n    tlsrpt: true\n",
            fixture.dns().addr(),
            fixture.ca_pem_path().display(),
            fixture.https().port()
        );
        let (config, _) = Config::parse(&yaml).unwrap_or_else(|e| panic!("config: {e}"));
        let daemon = Running::start(config)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        let LocalAddr::Tcp(addr) = *daemon.local_addr() else {
            panic!("expected a TCP listener");
        };
        let mut client = SocketmapClient::connect_tcp(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        // The first lookup of each discovers; every later one is a memory hit.
        for zone in ["postfix", "rpt"] {
            for domain in ["small.test", "large.test"] {
                let reply = client
                    .query(zone, domain)
                    .await
                    .unwrap_or_else(|e| panic!("query {zone} {domain}: {e}"));
                assert!(matches!(reply, Reply::Ok(_)), "{zone} {domain}: {reply}");
            }
        }
        (fixture, daemon, client)
    });
    let fetches = fixture.https().request_count("mta-sts.large.test");

    let mut group = c.benchmark_group("memory_hit_reply");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for (zone, domain, name) in [
        ("postfix", "small.test", "2_mx"),
        ("postfix", "large.test", "6000_mx"),
        ("rpt", "small.test", "2_mx_tlsrpt"),
        ("rpt", "large.test", "6000_mx_tlsrpt"),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let reply = client.query(black_box(zone), black_box(domain)).await;
                        black_box(reply.unwrap_or_else(|e| panic!("query: {e}")));
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
    assert_eq!(
        fixture.https().request_count("mta-sts.large.test"),
        fetches,
        "every lookup in the benchmark must be a memory hit"
    );
    rt.block_on(async move {
        drop(client);
        daemon.shutdown().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
