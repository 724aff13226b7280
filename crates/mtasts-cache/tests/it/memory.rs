//! [`MemoryCache`] runs the conformance suite, plus memory-specific behaviour (bounded size, LRU eviction).

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
async fn bounded_by_capacity_evicting_least_recently_used() {
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
async fn default_capacity_is_ten_thousand() {
    assert_eq!(MemoryCache::default().capacity(), 10_000);
}
