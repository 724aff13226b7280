//! Persistent stores behind the memory front: read-through across hosts, write-through, proactive refresh.

use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::{MemoryCache, PolicyCache};
use mtasts_cache_sql::{SqliteCache, SqliteOptions};
use mtasts_engine::{ManualClock, Source};
use mtasts_test_support::{Fixture, init_tracing};

use crate::{T0, TIMEOUT, domain, engine, https_requests, policy_text, txt_queries};

async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn PolicyCache> {
    let options = SqliteOptions::new(dir.path().join("cache.db")).threads(2);
    match SqliteCache::open(options).await {
        Ok(cache) => Arc::new(cache),
        Err(error) => panic!("open sqlite cache: {error}"),
    }
}

/// Two hosts sharing `store`: the second never needs the network for what the first discovered.
async fn hosts_share_the_store(store: Arc<dyn PolicyCache>) {
    init_tracing();
    let fixture = Fixture::start().await;
    fixture.publish("example.com", "id1", &policy_text(86_400));
    let clock = Arc::new(ManualClock::new(T0));
    let host_a = engine(&fixture, &clock, Some(Arc::clone(&store)));
    let host_b = engine(&fixture, &clock, Some(Arc::clone(&store)));

    assert_eq!(
        host_a.resolve(&domain("example.com"), TIMEOUT).await.source,
        Source::Discovered
    );
    let from_store = host_b.resolve(&domain("example.com"), TIMEOUT).await;
    assert_eq!(from_store.source, Source::Store);
    assert_eq!(from_store.policy.map(|p| p.fetched_at()), Some(T0));
    assert_eq!(
        (
            txt_queries(&fixture, "example.com"),
            https_requests(&fixture, "example.com")
        ),
        (1, 1)
    );

    // After grace, A re-checks by DNS; B then reads A's check from the store instead of the network.
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        host_a.resolve(&domain("example.com"), TIMEOUT).await.source,
        Source::Discovered
    );
    assert_eq!(
        host_b.resolve(&domain("example.com"), TIMEOUT).await.source,
        Source::Store
    );
    assert_eq!(
        (
            txt_queries(&fixture, "example.com"),
            https_requests(&fixture, "example.com")
        ),
        (2, 1)
    );
    let stored = store
        .get("example.com")
        .await
        .ok()
        .flatten()
        .map(|e| (e.checked_at, e.fetched_at));
    assert_eq!(stored, Some((T0 + 61, T0)));
}

#[tokio::test]
async fn memory_store_is_shared_by_two_hosts() {
    hosts_share_the_store(Arc::new(MemoryCache::new(1_000))).await;
}

#[tokio::test]
async fn sqlite_store_is_shared_by_two_hosts() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    hosts_share_the_store(sqlite(&dir).await).await;
}

#[tokio::test]
async fn restart_answers_from_the_sqlite_store() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let fixture = Fixture::start().await;
    fixture.publish("example.com", "id1", &policy_text(86_400));
    let clock = Arc::new(ManualClock::new(T0));
    {
        let before = engine(&fixture, &clock, Some(sqlite(&dir).await));
        before.resolve(&domain("example.com"), TIMEOUT).await;
    }
    let after = engine(&fixture, &clock, Some(sqlite(&dir).await));
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        after.resolve(&domain("example.com"), TIMEOUT).await.source,
        Source::Store
    );
    assert_eq!(https_requests(&fixture, "example.com"), 1);
}

#[tokio::test]
async fn proactive_refresh_over_sqlite() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let store = sqlite(&dir).await;
    let fixture = Fixture::start().await;
    let clock = Arc::new(ManualClock::new(T0));
    let engine = engine(&fixture, &clock, Some(Arc::clone(&store)));
    let names: Vec<String> = (0..20).map(|i| format!("d{i}.example")).collect();
    for name in &names {
        fixture.publish(name, "id1", &policy_text(31_557_600));
        engine.resolve(&domain(name), TIMEOUT).await;
    }
    // Half of them change their policy.
    for name in &names[..10] {
        fixture.publish(name, "id2", &policy_text(31_557_600));
    }
    clock.advance(Duration::from_secs(43_201));

    let report = engine
        .refresh_proactively(Duration::from_secs(86_400), 2.0, 4)
        .await;
    assert_eq!(
        (report.scanned, report.due, report.completed),
        (20, 20, true)
    );
    assert_eq!(
        (report.fetched, report.unchanged, report.failed),
        (10, 10, 0)
    );
    assert_eq!(
        store.proactive_fetch_ts().await.ok().flatten(),
        Some(T0 + 43_201)
    );
    for name in &names[..10] {
        let stored = store
            .get(name)
            .await
            .ok()
            .flatten()
            .map(|e| e.policy_id.as_str().to_owned());
        assert_eq!(stored.as_deref(), Some("id2"));
        assert_eq!(https_requests(&fixture, name), 2);
    }
    for name in &names[10..] {
        assert_eq!(https_requests(&fixture, name), 1);
    }
    // Refreshed entries answer from memory without the network.
    assert_eq!(
        engine.resolve(&domain("d0.example"), TIMEOUT).await.source,
        Source::Memory
    );
}
