//! [`MemoryCache`] runs the conformance suite, plus memory-specific behaviour (bounded by entries and bytes).

use std::sync::Arc;

use mtasts_cache::conformance::{self, Harness};
use mtasts_cache::{MemoryCache, PolicyCache, async_trait};

/// One memory store; "two stores over the same storage" are two handles of it.
struct Memory(Arc<dyn PolicyCache>);

#[async_trait]
impl Harness for Memory {
    async fn create() -> Option<Self> {
        Some(Self(Arc::new(MemoryCache::new(20_000))))
    }

    async fn store(&self) -> Arc<dyn PolicyCache> {
        Arc::clone(&self.0)
    }
}

mtasts_cache::conformance_tests!(Memory: basic, shared_storage);

#[tokio::test]
async fn bounded_by_capacity() {
    let cache = MemoryCache::new(100);
    for i in 0..100 {
        assert!(
            cache
                .set(&format!("d{i}"), &conformance::sample_entry(i))
                .await
                .unwrap()
        );
    }
    for i in 100..1_000 {
        cache
            .set(&format!("d{i}"), &conformance::sample_entry(i))
            .await
            .unwrap();
        assert!(cache.len() <= 100);
    }
    assert_eq!(cache.len(), 100);
    let mut scanned = 0;
    let mut token = None;
    loop {
        let page = cache.scan(token.as_ref(), 7).await.unwrap();
        scanned += page.entries.len();
        token = page.next;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(scanned, 100);
}

#[tokio::test]
async fn bounded_by_bytes() {
    // 64 KiB testing policies (the largest the fetcher takes) in 1 MiB.
    let mx: String = (0..2_900)
        .map(|i| format!("mx: mx{i:05}.example.net\n"))
        .collect();
    let policy = format!("version: STSv1\nmode: testing\nmax_age: 86400\n{mx}");
    assert!(policy.len() > 60 << 10, "{}", policy.len());
    let entry = mtasts_cache::CacheEntry::new(
        1_700_000_000,
        "big".parse().unwrap(),
        policy.parse().unwrap(),
    );
    let cache = MemoryCache::with_bytes(10_000, 1 << 20);
    for i in 0..100 {
        assert!(cache.set(&format!("d{i}"), &entry).await.unwrap());
        assert!(cache.weight() <= 1 << 20, "{}", cache.weight());
    }
    assert!((5..=16).contains(&cache.len()), "{}", cache.len());
}

#[tokio::test]
async fn default_capacity_is_ten_thousand() {
    assert_eq!(MemoryCache::default().capacity(), 10_000);
}
