//! Redis Sentinel: the conformance suite through a sentinel, and a real failover.

use std::net::SocketAddr;
use std::sync::Arc;

use deadpool_redis::redis;
use mtasts_cache::conformance;
use mtasts_cache::{CacheEntry, PolicyCache};
use mtasts_cache_redis::{RedisCache, SentinelOptions};

use crate::conformance::Injector;
use crate::support::{MASTER_NAME, SentinelSetup, TIMEOUT, cmd, raw, sentinel_options, wait_for};

async fn store(setup: &SentinelSetup, db: u8) -> Arc<dyn PolicyCache> {
    let store = RedisCache::sentinel(sentinel_options(setup.sentinel.port(), i64::from(db)))
        .await
        .expect("connect through the sentinel");
    Arc::new(store)
}

fn entry(checked_at: u64) -> CacheEntry {
    let policy = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\n"
        .parse()
        .expect("policy");
    CacheEntry::new(checked_at, "id1".parse().expect("id"), policy)
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
    let injector = Injector {
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
        assert!(
            store
                .set(&format!("f{i}.example"), &entry(1_700_000_000 + i))
                .await
                .expect("set before failover")
        );
    }
    // Let the replica catch up before promoting it.
    let replica_url = replica.url(0);
    wait_for("replication of the entries", || {
        let url = replica_url.clone();
        async move {
            // A new connection each time: a server changing role drops its clients.
            let conn = &mut raw(&url).await.ok()?;
            let n: u64 = redis::cmd("DBSIZE").query_async(conn).await.ok()?;
            (n == 10).then_some(())
        }
    })
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
    let old_master_url = setup.master.url(0);
    wait_for("the old master to become a replica", || {
        let url = old_master_url.clone();
        async move {
            // A new connection each time: a server changing role drops its clients.
            let conn = &mut raw(&url).await.ok()?;
            // Parsed by hand: the replica's link state may still be "connect".
            let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(conn).await.ok()?;
            (role.first()? == &redis::Value::BulkString(b"slave".to_vec())).then_some(())
        }
    })
    .await;

    // The same store, not restarted: reads and writes go to the new master.
    for i in 0..10 {
        let got = store
            .get(&format!("f{i}.example"))
            .await
            .expect("get after failover");
        assert_eq!(got, Some(entry(1_700_000_000 + i)));
    }
    assert!(
        store
            .set("after.example", &entry(1_700_000_100))
            .await
            .expect("set after failover")
    );
    assert!(
        store
            .set("f0.example", &entry(1_700_000_200))
            .await
            .expect("newer set after failover")
    );
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
    assert!(
        store
            .set("pw.example", &entry(1_700_000_000))
            .await
            .expect("set")
    );
    assert_eq!(
        store.get("pw.example").await.expect("get"),
        Some(entry(1_700_000_000))
    );
    let url = format!("redis://:s3cret@127.0.0.1:{}/5", setup.master.port());
    let mut conn = raw(&url).await.expect("raw connect");
    let card: u64 = cmd(&mut conn, redis::cmd("ZCARD").arg("pw.example")).await;
    assert_eq!(card, 1, "written to database 5 of the master");
    assert!(!format!("{store:?}").contains("s3cret"));

    let without = sentinel_options(setup.sentinel.port(), 5);
    let err = RedisCache::sentinel(without)
        .await
        .expect_err("master requires a password");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}
