//! The hot path: `Engine::resolve` answered by the memory front (a policy checked less than `cache_grace` ago),
//! on a current-thread runtime, for one domain and for 10 000 domains.

#![allow(missing_docs, reason = "criterion generates the entry points")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mtasts_core::PolicyDomain;
use mtasts_engine::{Discover, Discovery, DiscoveryRequest, Engine, async_trait};

const TIMEOUT: Duration = Duration::from_secs(4);

/// Every domain publishes the same policy.
struct Static;

#[async_trait]
impl Discover for Static {
    async fn discover(&self, _: &DiscoveryRequest<'_>) -> Discovery {
        let policy = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mx1.example.com\nmx: *.example.net\n"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        Discovery::Fetched {
            id: "20250101".parse().unwrap_or_else(|e| panic!("{e}")),
            policy,
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    // Room to spare: the LRU evicts per shard, and every lookup measured here must be a memory hit.
    let engine = Engine::builder(Static)
        .cache_grace(Duration::from_secs(3_600))
        .memory_capacity(40_000)
        .build();
    let domains: Vec<PolicyDomain> = (0..10_000)
        .map(|i| {
            PolicyDomain::parse(&format!("d{i}.example.com")).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    rt.block_on(async {
        for domain in &domains {
            engine.resolve(domain, TIMEOUT).await;
        }
    });

    let mut group = c.benchmark_group("resolve_memory_hit");
    group.bench_function("one_domain", |b| {
        let domain = &domains[0];
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(engine.resolve(black_box(domain), TIMEOUT).await);
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("10k_domains", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let domain = &domains[usize::try_from(i % 10_000).unwrap_or(0)];
                    black_box(engine.resolve(black_box(domain), TIMEOUT).await);
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    assert_eq!(
        engine.stats().fetched.get(),
        10_000,
        "every lookup in the benchmark must be a memory hit"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
