//! Redis Sentinel: the conformance suite through a sentinel, and a real failover.

use std::net::SocketAddr;
use std::sync::Arc;

use deadpool_redis::redis::{self, Value};
use mtasts_cache::PolicyCache;
use mtasts_cache::conformance::{self, must_set, sample_entry as entry};
use mtasts_cache_redis::{RedisCache, SentinelOptions};

use crate::support::{
    Database, MASTER_NAME, SentinelSetup, TIMEOUT, cmd, sentinel_options, wait_for, wait_for_reply,
    writes_into,
};

async fn store(setup: &SentinelSetup, db: u8) -> Arc<dyn PolicyCache> {
    let store = RedisCache::sentinel(sentinel_options(setup.sentinel.port(), i64::from(db)))
        .await
        .expect("connect through the sentinel");
    Arc::new(store)
}

/// The whole store suite through one sentinel setup, each function on its own database of the master.
#[tokio::test(flavor = "multi_thread")]
async fn conformance_through_sentinel() {
    let Some(setup) = SentinelSetup::start(false).await else {
        return;
    };
    conformance::get_set(&store(&setup, 1).await).await;
    conformance::newer_wins(&store(&setup, 2).await).await;
    conformance::concurrent_writers(&store(&setup, 3).await).await;
    conformance::paging(&store(&setup, 4).await).await;
    conformance::remove_clear(&store(&setup, 5).await).await;
    conformance::proactive_ts(&store(&setup, 6).await).await;
    let injector = Database {
        url: setup.master.url(7),
    };
    conformance::corrupt_entries(&store(&setup, 7).await, &injector).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_sentinel() {
    conformance::unreachable(TIMEOUT, |addr: SocketAddr| async move {
        let options = SentinelOptions::new(MASTER_NAME, vec![(addr.ip().to_string(), addr.port())])
            .connect_timeout(TIMEOUT)
            .response_timeout(TIMEOUT);
        let store = RedisCache::sentinel(options).await?;
        Ok(Arc::new(store) as Arc<dyn PolicyCache>)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_master_name_is_an_error() {
    let Some(setup) = SentinelSetup::start(false).await else {
        return;
    };
    let mut options = sentinel_options(setup.sentinel.port(), 0);
    options.master_name = "no-such-master".to_owned();
    let err = RedisCache::sentinel(options)
        .await
        .expect_err("unknown master");
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_a_failover() {
    let Some(setup) = SentinelSetup::start(true).await else {
        return;
    };
    let replica = setup.replica.as_ref().expect("replica started");
    let store = store(&setup, 0).await;
    for i in 0..10 {
        must_set(&*store, &format!("f{i}.example"), &entry(1_700_000_000 + i)).await;
    }
    // Let the replica catch up before promoting it.
    wait_for_reply(
        "replication of the entries",
        &replica.url(0),
        &redis::cmd("DBSIZE"),
        |n: &u64| *n == 10,
    )
    .await;

    let mut sentinel = setup.sentinel.raw().await;
    cmd::<()>(
        &mut sentinel,
        redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER_NAME),
    )
    .await;
    wait_for("the sentinel to name the replica as master", || async {
        (setup.master_port().await == replica.port()).then_some(())
    })
    .await;
    // Parsed by hand: the replica's link state may still be "connect".
    let slave = Value::BulkString(b"slave".to_vec());
    wait_for_reply(
        "the old master to become a replica",
        &setup.master.url(0),
        &redis::cmd("ROLE"),
        |role: &Vec<Value>| role.first() == Some(&slave),
    )
    .await;

    // The same store, not restarted: reads and writes go to the new master.
    for i in 0..10 {
        let got = store
            .get(&format!("f{i}.example"))
            .await
            .expect("get after failover");
        assert_eq!(got, Some(entry(1_700_000_000 + i)));
    }
    must_set(&*store, "after.example", &entry(1_700_000_100)).await;
    must_set(&*store, "f0.example", &entry(1_700_000_200)).await;
    let mut new_master = replica.raw().await;
    let card: u64 = cmd(&mut new_master, redis::cmd("ZCARD").arg("after.example")).await;
    assert_eq!(card, 1, "written on the new master");
    let page = store.scan(None, 100).await.expect("scan after failover");
    assert_eq!(page.entries.len(), 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn master_password_and_database() {
    let Some(setup) = SentinelSetup::start_with_password("s3cret").await else {
        return;
    };
    let options = sentinel_options(setup.sentinel.port(), 5).password("s3cret");
    let store = RedisCache::sentinel(options)
        .await
        .expect("connect with the master's password");
    let url = format!("redis://:s3cret@127.0.0.1:{}/5", setup.master.port());
    writes_into(&store, "pw.example", &url).await;
    assert!(!format!("{store:?}").contains("s3cret"));

    let without = sentinel_options(setup.sentinel.port(), 5);
    let err = RedisCache::sentinel(without)
        .await
        .expect_err("master requires a password");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}
