//! Failure behaviour: bad options, a missing directory, and a database locked by another process.

use std::time::{Duration, Instant};

use mtasts_cache::PolicyCache;
use mtasts_cache::conformance::{failure_bound, sample_entry};
use mtasts_cache_sqlite::{SqliteCache, SqliteOptions};
use sqlx::Connection;

use crate::util::TempDb;

#[tokio::test]
async fn zero_threads_is_a_config_error() {
    let db = TempDb::new();
    let err = SqliteCache::open(SqliteOptions::new(&db.path).threads(0))
        .await
        .expect_err("zero threads");
    assert_eq!(err.kind(), "config");
}

#[tokio::test]
async fn missing_directory_fails_promptly() {
    let db = TempDb::new();
    let path = db.path.with_file_name("no-such-dir").join("cache.db");
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = SqliteCache::open(SqliteOptions::new(path).timeout(timeout))
        .await
        .expect_err("cannot create file");
    assert!(started.elapsed() < failure_bound(timeout));
    assert_eq!(err.kind(), "unavailable", "{err:?}");
}

#[tokio::test]
async fn creates_the_file_in_wal_mode() {
    let db = TempDb::new();
    assert!(!db.path.exists());
    let store = db.open(Duration::from_secs(5)).await;
    assert!(db.path.exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut db.raw().await)
        .await
        .expect("mode");
    assert_eq!(mode, "wal");
    store.close().await;
    assert_eq!(
        store.get("example.com").await.expect_err("closed").kind(),
        "closed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_time_out_while_another_process_holds_the_lock_then_recover() {
    let db = TempDb::new();
    let timeout = Duration::from_millis(300);
    let store = db.open(timeout).await;
    assert!(
        store
            .set("example.com", &sample_entry(1_700_000_000))
            .await
            .expect("set")
    );

    let mut locker = db.raw().await;
    let mut tx = locker
        .begin_with("BEGIN IMMEDIATE")
        .await
        .expect("take the write lock");
    sqlx::query("UPDATE sts_policy_cache SET ts = ts")
        .execute(&mut *tx)
        .await
        .expect("write inside lock");

    let started = Instant::now();
    let err = store
        .set("example.com", &sample_entry(1_700_000_001))
        .await
        .expect_err("locked");
    assert!(
        started.elapsed() < failure_bound(timeout),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), "timeout", "{err:?}");
    // WAL: readers are not blocked by the writer.
    assert!(
        store
            .get("example.com")
            .await
            .expect("read while locked")
            .is_some()
    );

    tx.rollback().await.expect("release the lock");
    assert!(
        store
            .set("example.com", &sample_entry(1_700_000_001))
            .await
            .expect("set after release")
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_config_error() {
    let db = TempDb::new();
    std::fs::write(&db.path, vec![b'x'; 4096]).expect("write garbage");
    let err = SqliteCache::open(SqliteOptions::new(&db.path).timeout(Duration::from_secs(1)))
        .await
        .expect_err("not a database");
    assert_eq!(err.kind(), "config", "{err:?}");
}
