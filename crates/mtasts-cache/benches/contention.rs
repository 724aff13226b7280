//! Contention on the memory cache's sharded LRU: T threads doing 90 % `get` / 10 % `insert_if` on 10 000 keys,
//! with the default shard count versus a single lock. Values are `Arc<CacheEntry>` as in `MemoryCache`, deep-copied
//! after every `get` as `MemoryCache::get` does.

#![allow(missing_docs, reason = "criterion generates the entry points")]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mtasts_cache::CacheEntry;
use mtasts_cache::lru::ShardedLru;

const KEYS: u64 = 10_000;
const OPS_PER_THREAD: u64 = 20_000;

fn entry(ts: u64) -> CacheEntry {
    let policy = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\n"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    CacheEntry::new(
        ts,
        "20240101".parse().unwrap_or_else(|e| panic!("{e}")),
        policy,
    )
}

fn run(
    lru: &Arc<ShardedLru<String, Arc<CacheEntry>>>,
    keys: &Arc<Vec<String>>,
    threads: u64,
) -> Duration {
    let barrier = Arc::new(Barrier::new(usize::try_from(threads).unwrap_or(1) + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (lru, keys, barrier) = (Arc::clone(lru), Arc::clone(keys), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let value = Arc::new(entry(1_700_000_000 + t));
                let mut x = 0x2545_F491_4F6C_DD1D_u64 ^ (t + 1);
                barrier.wait();
                for _ in 0..OPS_PER_THREAD {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = &keys[usize::try_from(x % KEYS).unwrap_or(0)];
                    if x.is_multiple_of(10) {
                        black_box(lru.insert_if(key.clone(), Arc::clone(&value), |old| {
                            old.checked_at < value.checked_at
                        }));
                    } else {
                        black_box(lru.get(key.as_str()).map(|e| CacheEntry::clone(&e)));
                    }
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().unwrap_or_else(|_| panic!("bench thread panicked"));
    }
    start.elapsed()
}

fn contention(c: &mut Criterion) {
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("d{i}.example.com")).collect());
    let mut group = c.benchmark_group("memory_cache_contention");
    group.sample_size(20);
    for threads in [1u64, 2, 4] {
        group.throughput(Throughput::Elements(threads * OPS_PER_THREAD));
        for (name, shards) in [("sharded", None), ("single_lock", Some(1))] {
            let lru = Arc::new(match shards {
                None => ShardedLru::new(KEYS as usize),
                Some(n) => ShardedLru::with_shards(KEYS as usize, n),
            });
            for (i, k) in keys.iter().enumerate() {
                lru.insert(k.clone(), Arc::new(entry(i as u64)));
            }
            group.bench_function(format!("{name}/{threads}_threads"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| run(&lru, &keys, threads)).sum());
            });
        }
    }
    group.finish();
}

criterion_group!(benches, contention);
criterion_main!(benches);
