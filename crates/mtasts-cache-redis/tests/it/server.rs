//! Behaviour against servers the tests control: closed ports, silent servers, restarts, passwords.

use std::time::Duration;

use deadpool_redis::redis;
use mtasts_cache::conformance::{must_set, sample_entry as entry};
use mtasts_cache::{CacheError, PolicyCache};
use mtasts_cache_redis::{RedisCache, RedisOptions};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::support::{RedisProcess, TIMEOUT, is_empty, options, wait_for_reply, writes_into};

/// Scheduling slack on top of a configured limit.
const SLACK: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread")]
async fn closed_port_fails_fast_with_unavailable() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("redis://127.0.0.1:{port}/0");
    let started = Instant::now();
    let err = RedisCache::connect(options(&url))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind(), "unavailable", "{err:?}");
    assert!(
        started.elapsed() < 2 * TIMEOUT,
        "within connect_timeout + response_timeout, took {:?}",
        started.elapsed()
    );

    let store = RedisCache::connect_lazy(options(&url)).expect("lazy store");
    let started = Instant::now();
    let err = store.get("example.com").await.expect_err("nothing listens");
    assert!(err.is_transient(), "{err:?}");
    assert!(
        started.elapsed() < 2 * TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_server_times_out_within_the_configured_limits() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let opts = RedisOptions::new(format!("redis://{addr}/0"))
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300));
    let bound = Duration::from_millis(600) + SLACK;
    let store = RedisCache::connect_lazy(opts).expect("lazy store");
    for _ in 0..2 {
        let started = Instant::now();
        let err = store.get("example.com").await.expect_err("no answer");
        assert_eq!(err.kind(), "timeout", "{err:?}");
        assert!(
            started.elapsed() <= bound,
            "took {:?}, limit {bound:?}",
            started.elapsed()
        );
    }
    accept.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn recovers_after_a_server_restart() {
    let Some(mut server) = RedisProcess::server(&[]).await else {
        return;
    };
    let store = RedisCache::connect(options(&server.url(2)))
        .await
        .expect("connect");
    must_set(&store, "kept.example", &entry(1_700_000_000)).await;

    server.shutdown().await;
    let started = Instant::now();
    let err = store.get("kept.example").await.expect_err("server is down");
    assert!(err.is_transient(), "{err:?}");
    assert!(
        started.elapsed() < 2 * TIMEOUT + SLACK,
        "took {:?}",
        started.elapsed()
    );

    server.restart().await;
    // Connections broken by the restart are replaced by the same call: no failed call after the restart.
    assert_eq!(
        store.get("kept.example").await.expect("get after restart"),
        Some(entry(1_700_000_000))
    );
    must_set(&store, "new.example", &entry(1_700_000_001)).await;
    let page = store.scan(None, 10).await.expect("scan after restart");
    assert_eq!(page.entries.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_and_database_come_from_the_url() {
    let requirepass = ["--requirepass".to_owned(), "s3cret".to_owned()];
    let Some(server) = RedisProcess::server(&requirepass).await else {
        return;
    };
    let port = server.port();

    let url = format!("redis://:s3cret@127.0.0.1:{port}/3");
    let store = RedisCache::connect(options(&url))
        .await
        .expect("connect with password");
    writes_into(&store, "db3.example", &url).await;
    is_empty(&format!("redis://:s3cret@127.0.0.1:{port}/0")).await;
    // The same through the options, over a URL without them.
    let plain = options(&format!("redis://127.0.0.1:{port}/0"))
        .password("s3cret")
        .db(4);
    let via_options = RedisCache::connect(plain)
        .await
        .expect("connect with the password option");
    writes_into(
        &via_options,
        "db4.example",
        &format!("redis://:s3cret@127.0.0.1:{port}/4"),
    )
    .await;

    for bad in [
        format!("redis://:wrong@127.0.0.1:{port}/0"),
        format!("redis://127.0.0.1:{port}/0"),
    ] {
        let err = RedisCache::connect(options(&bad))
            .await
            .expect_err("bad credentials");
        assert!(
            !err.to_string().contains("wrong"),
            "password not in the message: {err}"
        );
        assert!(
            matches!(err, CacheError::Query { .. }),
            "a refused login is no outage: {err:?}"
        );
    }
    let no_such_db = format!("redis://:s3cret@127.0.0.1:{port}/99");
    let err = RedisCache::connect(options(&no_such_db))
        .await
        .expect_err("no database 99");
    assert!(err.to_string().contains("redis"), "{err:?}");
    assert!(!format!("{store:?}").contains("s3cret"), "{store:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_options_are_config_errors() {
    for url in [
        "http://127.0.0.1/",
        "redis://127.0.0.1:6379/notanumber",
        "not a url",
    ] {
        let err = RedisCache::connect_lazy(RedisOptions::new(url)).expect_err(url);
        assert_eq!(err.kind(), "config", "{url}: {err:?}");
    }
    let err =
        RedisCache::connect_lazy(RedisOptions::default().pool_size(0)).expect_err("pool size 0");
    assert_eq!(err.kind(), "config");
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_store_says_so() {
    let store = RedisCache::connect_lazy(RedisOptions::default()).expect("lazy store");
    store.close().await;
    let err = store.get("example.com").await.expect_err("closed");
    assert!(matches!(err, CacheError::Closed { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_replica_serves_reads_and_refuses_writes() {
    let Some(master) = RedisProcess::server(&[]).await else {
        return;
    };
    let replica_of = [
        "--replicaof".to_owned(),
        "127.0.0.1".to_owned(),
        master.port().to_string(),
    ];
    let Some(replica) = RedisProcess::server(&replica_of).await else {
        return;
    };
    let on_master = RedisCache::connect(options(&master.url(0)))
        .await
        .expect("connect master");
    must_set(&on_master, "r.example", &entry(1_700_000_000)).await;
    let replica_url = replica.url(0);
    let card = redis::cmd("ZCARD").arg("r.example").clone();
    wait_for_reply(
        "replication to the replica",
        &replica_url,
        &card,
        |n: &u64| *n == 1,
    )
    .await;
    let on_replica = RedisCache::connect(options(&replica_url))
        .await
        .expect("connect replica");
    assert_eq!(
        on_replica.get("r.example").await.expect("get on replica"),
        Some(entry(1_700_000_000))
    );
    // READONLY: the connection is dropped and the write retried once on a new one, then reported.
    let err = on_replica
        .set("r.example", &entry(1_700_000_001))
        .await
        .expect_err("read-only replica");
    assert_eq!(err.kind(), "unavailable", "{err:?}");
    assert_eq!(
        on_replica
            .get("r.example")
            .await
            .expect("get after refused write"),
        Some(entry(1_700_000_000))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_url() {
    let sockets = tempfile::tempdir().expect("temp dir");
    let path = sockets.path().join("redis.sock");
    let unixsocket = ["--unixsocket".to_owned(), path.display().to_string()];
    let Some(_server) = RedisProcess::server(&unixsocket).await else {
        return;
    };
    let url = format!("redis+unix://{}?db=4", path.display());
    let store = RedisCache::connect(options(&url))
        .await
        .expect("connect over the UNIX socket");
    writes_into(&store, "unix.example", &url).await;
    is_empty(&format!("redis+unix://{}?db=0", path.display())).await;
}
