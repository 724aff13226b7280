//! Redis over TLS, against a TLS-only redis-server the test starts with a certificate from a test CA.

use std::sync::Arc;

use mtasts_cache::PolicyCache;
use mtasts_cache::conformance::{self, must_set, sample_entry};
use mtasts_cache_redis::{RedisCache, TlsOptions};
use mtasts_test_support::TestCa;

use deadpool_redis::redis;

use crate::support::{RedisProcess, cmd, options};

/// The options for database `db` of `server`, trusting `ca`.
fn tls_options(url: &str, ca: std::path::PathBuf) -> mtasts_cache_redis::RedisOptions {
    let mut tls = TlsOptions::default();
    tls.ca_certs = Some(ca);
    options(url).tls(tls)
}

/// The conformance suite over `rediss://`, each function on its own database of one server.
#[tokio::test(flavor = "multi_thread")]
async fn conformance_over_tls() {
    let Some(server) = RedisProcess::tls_server().await else {
        return;
    };
    let store = |db: u8| {
        let options = tls_options(&server.url(db), server.ca_file());
        async move {
            let store = RedisCache::connect(options)
                .await
                .expect("connect over TLS");
            Arc::new(store) as Arc<dyn PolicyCache>
        }
    };
    // Written over TLS, seen by another TLS client.
    must_set(
        &*store(0).await,
        "tls.example",
        &sample_entry(1_700_000_000),
    )
    .await;
    let card: u64 = cmd(
        &mut server.raw().await,
        redis::cmd("ZCARD").arg("tls.example"),
    )
    .await;
    assert_eq!(card, 1);
    conformance::get_set(&store(1).await).await;
    conformance::newer_wins(&store(2).await).await;
    conformance::concurrent_writers(&store(3).await).await;
    conformance::paging(&store(4).await).await;
    conformance::remove_clear(&store(5).await).await;
    conformance::proactive_ts(&store(6).await).await;
    conformance::shared_storage(&store(7).await, &store(7).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_ca_or_name_fails_clearly() {
    let Some(server) = RedisProcess::tls_server().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let other_ca = dir.path().join("other.pem");
    TestCa::with_name("another CA").write_pem(&other_ca);
    let err = RedisCache::connect(tls_options(&server.url(0), other_ca))
        .await
        .expect_err("untrusted certificate");
    assert_eq!(err.kind(), "unavailable", "{err:?}");
    assert!(
        err.with_causes().contains("certificate"),
        "{}",
        err.with_causes()
    );

    // The certificate names localhost, not 127.0.0.1: refused unless ssl_check_hostname is off.
    let by_address = server.url(0).replace("localhost", "127.0.0.1");
    let err = RedisCache::connect(tls_options(&by_address, server.ca_file()))
        .await
        .expect_err("name not in the certificate");
    assert_eq!(err.kind(), "unavailable", "{err:?}");
    let mut tls = TlsOptions::default();
    tls.ca_certs = Some(server.ca_file());
    tls.check_hostname = false;
    let store = RedisCache::connect(options(&by_address).tls(tls))
        .await
        .expect("chain checked, name not");
    must_set(&store, "example.com", &sample_entry(1_700_000_000)).await;

    // A plain connection to the TLS port gets nowhere.
    let plain = server.url(0).replace("rediss://", "redis://");
    let err = RedisCache::connect(options(&plain))
        .await
        .expect_err("plain text to a TLS port");
    assert!(err.is_transient(), "{err:?}");
}
