//! The memory caches compared: our sharded LRU (`lru::ShardedLru`), `bounded::BoundedCache` (CLOCK with TinyLFU
//! admission), quick_cache's S3-FIFO cache (what `BoundedCache` wrapped before) and moka's W-TinyLFU cache,
//! with `Arc<CacheEntry>` values as in `MemoryCache`, deep-copied after every `get` as `MemoryCache::get` does.
//! A miss of the scan inserts with `offer` into `BoundedCache` (as the engine does with what it read from its
//! store).
//!
//! - `memory_cache_contention`: T threads doing 90 % `get` / 10 % insert on 10 000 keys that all fit (the LRU
//!   also with a single lock).
//! - `memory_cache_scan`: 10 001 keys cycled over 10 000 entries (the daemon's default front), one thread, a
//!   miss inserting the key (what the engine does after reading its store); each implementation's hit ratio is
//!   printed once.

#![allow(missing_docs, reason = "criterion generates the entry points")]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mtasts_cache::CacheEntry;
use mtasts_cache::bounded::BoundedCache;
use mtasts_cache::lru::ShardedLru;

const KEYS: u64 = 10_000;
const OPS_PER_THREAD: u64 = 20_000;
const BYTES: u64 = 64 << 20;

type Value = Arc<CacheEntry>;

/// What the bench needs of a concurrent cache.
trait Map: Send + Sync + 'static {
    fn get(&self, key: &str) -> Option<Value>;
    fn insert(&self, key: &str, value: Value);
    /// What a miss of the scan does: the engine offers what it read from its store.
    fn fill(&self, key: &str, value: Value) {
        self.insert(key, value);
    }
}

impl Map for ShardedLru<String, Value> {
    fn get(&self, key: &str) -> Option<Value> {
        Self::get(self, key)
    }
    fn insert(&self, key: &str, value: Value) {
        Self::insert(self, key.to_owned(), value);
    }
}

impl Map for BoundedCache<String, Value> {
    fn get(&self, key: &str) -> Option<Value> {
        Self::get(self, key)
    }
    fn insert(&self, key: &str, value: Value) {
        Self::insert(self, key.to_owned(), value);
    }
    fn fill(&self, key: &str, value: Value) {
        Self::offer(self, key.to_owned(), value);
    }
}

impl Map for quick_cache::sync::Cache<String, Value> {
    fn get(&self, key: &str) -> Option<Value> {
        Self::get(self, key)
    }
    fn insert(&self, key: &str, value: Value) {
        Self::insert(self, key.to_owned(), value);
    }
}

impl Map for moka::sync::Cache<String, Value> {
    fn get(&self, key: &str) -> Option<Value> {
        Self::get(self, key)
    }
    fn insert(&self, key: &str, value: Value) {
        Self::insert(self, key.to_owned(), value);
    }
}

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

fn maps(capacity: u64) -> Vec<(&'static str, Arc<dyn Map>)> {
    let n = usize::try_from(capacity).unwrap_or(usize::MAX);
    vec![
        ("sharded_lru", Arc::new(ShardedLru::<String, Value>::new(n))),
        (
            "single_lock_lru",
            Arc::new(ShardedLru::<String, Value>::with_shards(n, 1)),
        ),
        (
            "bounded_clock_tinylfu",
            Arc::new(BoundedCache::<String, Value>::new(n, BYTES)),
        ),
        (
            "quick_cache_s3fifo",
            Arc::new(quick_cache::sync::Cache::<String, Value>::new(n)),
        ),
        (
            "moka_tinylfu",
            Arc::new(moka::sync::Cache::<String, Value>::new(capacity)),
        ),
    ]
}

fn run(map: &Arc<dyn Map>, keys: &Arc<Vec<String>>, threads: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(usize::try_from(threads).unwrap_or(1) + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (map, keys, barrier) = (Arc::clone(map), Arc::clone(keys), Arc::clone(&barrier));
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
                        map.insert(key, Arc::clone(&value));
                    } else {
                        black_box(map.get(key).map(|e| CacheEntry::clone(&e)));
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
        for (name, map) in maps(KEYS) {
            for (i, k) in keys.iter().enumerate() {
                map.insert(k, Arc::new(entry(i as u64)));
            }
            group.bench_function(format!("{name}/{threads}_threads"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| run(&map, &keys, threads)).sum());
            });
        }
    }
    group.finish();
}

/// One pass of the cyclic scan: (hits, lookups).
fn scan_pass(map: &dyn Map, keys: &[String], value: &Value) -> (u64, u64) {
    let mut hits = 0;
    for key in keys {
        match map.get(key) {
            Some(e) => {
                black_box(CacheEntry::clone(&e));
                hits += 1;
            }
            None => map.fill(key, Arc::clone(value)),
        }
    }
    (hits, keys.len() as u64)
}

fn scan(c: &mut Criterion) {
    let keys: Vec<String> = (0..=KEYS).map(|i| format!("d{i}.example.com")).collect();
    let value = Arc::new(entry(1_700_000_000));
    let mut group = c.benchmark_group("memory_cache_scan");
    group.sample_size(20);
    group.throughput(Throughput::Elements(keys.len() as u64));
    for (name, map) in maps(KEYS) {
        // Warm up, then report the steady hit ratio.
        for _ in 0..3 {
            scan_pass(&*map, &keys, &value);
        }
        let (hits, lookups) = scan_pass(&*map, &keys, &value);
        println!(
            "memory_cache_scan/{name}: hit ratio {:.4} ({hits}/{lookups})",
            hits as f64 / lookups as f64
        );
        group.bench_function(format!("{name}/10001_over_10000"), |b| {
            b.iter(|| scan_pass(&*map, &keys, &value));
        });
    }
    group.finish();
}

criterion_group!(benches, contention, scan);
criterion_main!(benches);
