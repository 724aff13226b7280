//! [`MemoryCache`] runs the conformance suite, plus memory-specific behaviour (bounded size, LRU eviction).

use std::sync::Arc;

use mtasts_cache::{MemoryCache, PolicyCache, conformance};

fn store() -> Arc<dyn PolicyCache> {
    Arc::new(MemoryCache::new(20_000))
}

#[tokio::test(flavor = "multi_thread")]
async fn get_set() {
    conformance::get_set(&store()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn newer_wins() {
    conformance::newer_wins(&store()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers() {
    conformance::concurrent_writers(&store()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paging() {
    conformance::paging(&store()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_clear() {
    conformance::remove_clear(&store()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn proactive_ts() {
    conformance::proactive_ts(&store()).await;
}

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
