//! Persistent stores behind the memory front: read-through across hosts, write-through, proactive refresh.

use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::{MemoryCache, PolicyCache};
use mtasts_cache_sql::{SqliteCache, SqliteOptions};

use crate::{EXAMPLE, T0, World, answer, resolve, said};

async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn PolicyCache> {
    let options = SqliteOptions::new(dir.path().join("cache.db")).threads(2);
    match SqliteCache::open(options).await {
        Ok(cache) => Arc::new(cache),
        Err(error) => panic!("open sqlite cache: {error}"),
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"))
}

/// Two hosts sharing `store`: the second never needs the network for what the first discovered.
async fn hosts_share_the_store(store: Arc<dyn PolicyCache>) {
    let world = World::start().await;
    world.publish(EXAMPLE, "id1", 86_400);
    let host_a = world.engine(Some(&store));
    let host_b = world.engine(Some(&store));

    assert_eq!(answer(&host_a, EXAMPLE).await, "discovered id1");
    let from_store = resolve(&host_b, EXAMPLE).await;
    assert_eq!(said(&from_store), "store id1");
    assert_eq!(from_store.policy.map(|p| p.fetched_at()), Some(T0));
    assert_eq!(world.traffic(EXAMPLE), (1, 1));

    // After grace, A re-checks by DNS; B then reads A's check from the store instead of the network.
    world.advance(61);
    assert_eq!(answer(&host_a, EXAMPLE).await, "discovered id1");
    assert_eq!(answer(&host_b, EXAMPLE).await, "store id1");
    assert_eq!(world.traffic(EXAMPLE), (2, 1));
    let stored = store.get(EXAMPLE).await.ok().flatten();
    assert_eq!(
        stored.map(|e| (e.checked_at, e.fetched_at)),
        Some((T0 + 61, T0))
    );
}

#[tokio::test]
async fn memory_store_is_shared_by_two_hosts() {
    hosts_share_the_store(Arc::new(MemoryCache::new(1_000))).await;
}

#[tokio::test]
async fn sqlite_store_is_shared_by_two_hosts() {
    let dir = temp_dir();
    hosts_share_the_store(sqlite(&dir).await).await;
}

#[tokio::test]
async fn restart_answers_from_the_sqlite_store() {
    let dir = temp_dir();
    let world = World::start().await;
    world.publish(EXAMPLE, "id1", 86_400);
    {
        let before = world.engine(Some(&sqlite(&dir).await));
        resolve(&before, EXAMPLE).await;
    }
    let after = world.engine(Some(&sqlite(&dir).await));
    world.advance(30);
    assert_eq!(answer(&after, EXAMPLE).await, "store id1");
    assert_eq!(world.traffic(EXAMPLE).1, 1);
}

#[tokio::test]
async fn proactive_refresh_over_sqlite() {
    let dir = temp_dir();
    let store = sqlite(&dir).await;
    let world = World::start().await;
    let engine = world.engine(Some(&store));
    let names: Vec<String> = (0..20).map(|i| format!("d{i}.example")).collect();
    for name in &names {
        world.publish(name, "id1", 31_557_600);
        resolve(&engine, name).await;
    }
    // Half of them change their policy.
    for name in &names[..10] {
        world.publish(name, "id2", 31_557_600);
    }
    world.advance(43_201);

    let report = engine
        .refresh_proactively(Duration::from_secs(86_400), 2.0, 4)
        .await;
    assert_eq!(
        (report.scanned, report.due, report.completed),
        (20, 20, true)
    );
    // The pass's store writes are queued: let them land before looking at the store.
    engine.flush_store_writes().await;
    assert_eq!(
        (report.fetched, report.unchanged, report.failed),
        (10, 10, 0)
    );
    assert_eq!(report.finished_at, T0 + 43_201);
    assert_eq!(
        store.proactive_fetch_ts().await.ok().flatten(),
        Some(T0 + 43_201)
    );
    for (i, name) in names.iter().enumerate() {
        let changed = i < 10;
        let stored = store.get(name).await.ok().flatten();
        let want = if changed { "id2" } else { "id1" };
        assert_eq!(
            stored.map(|e| e.policy_id.as_str().to_owned()).as_deref(),
            Some(want)
        );
        assert_eq!(world.traffic(name).1, if changed { 2 } else { 1 }, "{name}");
    }
    // Refreshed entries answer from memory without the network.
    assert_eq!(answer(&engine, "d0.example").await, "memory id2");
}

/// Row 1 of issue 11: a SQLite row checked and fetched a day in the future (a host whose clock runs ahead wrote
/// it) counts as checked now: answered for `cache_grace`, then its id re-checked by DNS, and that check
/// replaces the row (whose fetch time now counts from the first read).
#[tokio::test]
async fn a_sqlite_row_from_the_future_is_rechecked_and_replaced() {
    let dir = temp_dir();
    let store = sqlite(&dir).await;
    let world = World::start().await;
    world.publish(EXAMPLE, "id1", 86_400);
    // The store compares with the system clock: the engine's wall clock shows the same.
    let now = mtasts_cache::skew_limit() - mtasts_cache::MAX_CLOCK_SKEW.as_secs();
    world.clock.set(now);
    let policy = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mx.example.com\n";
    let ahead = mtasts_cache::CacheEntry::new(
        now + 86_400,
        "id1".parse().unwrap_or_else(|e| panic!("id: {e}")),
        policy.parse().unwrap_or_else(|e| panic!("policy: {e}")),
    );
    assert!(matches!(store.set(EXAMPLE, &ahead).await, Ok(true)));
    let engine = world.engine(Some(&store));

    assert_eq!(answer(&engine, EXAMPLE).await, "store id1");
    world.advance(61);
    assert_eq!(answer(&engine, EXAMPLE).await, "discovered id1");
    assert_eq!(world.traffic(EXAMPLE), (1, 0), "one TXT query, no HTTPS");
    let stored = store.get(EXAMPLE).await.ok().flatten();
    assert_eq!(
        stored.map(|e| (e.checked_at, e.fetched_at)),
        Some((now + 61, now))
    );
    // Counted at each of the two reads (warned about once).
    assert_eq!(engine.stats().store_skewed.get(), 2);
}
