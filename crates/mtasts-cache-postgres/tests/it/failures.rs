//! Failure behaviour: bad options, an unknown database, backends terminated by the server.

use std::time::Duration;

use mtasts_cache::PolicyCache;
use mtasts_cache::conformance::sample_entry;
use mtasts_cache_postgres::{PostgresCache, PostgresOptions};

use crate::util::Schema;

#[tokio::test]
async fn malformed_dsn_and_zero_pool_are_config_errors() {
    let err = PostgresCache::connect(PostgresOptions::new("not a url"))
        .await
        .expect_err("malformed");
    assert_eq!(err.kind(), "config", "{err:?}");
    let err =
        PostgresCache::connect(PostgresOptions::new("postgres://127.0.0.1/x").max_connections(0))
            .await
            .expect_err("zero pool");
    assert_eq!(err.kind(), "config", "{err:?}");
}

#[tokio::test]
async fn unknown_database_is_a_config_error() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let dsn = schema.dsn(None);
    // Swap the database name in the path for one that does not exist.
    let (head, query) = dsn.split_once('?').expect("dsn has a query");
    let base = &head[..head.rfind('/').expect("dsn has a path")];
    let options = PostgresOptions::new(format!("{base}/mtasts_no_such_database?{query}"))
        .timeout(Duration::from_secs(2));
    let err = PostgresCache::connect(options)
        .await
        .expect_err("no such database");
    assert_eq!(err.kind(), "config", "{err:?}");
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recovers_after_backends_are_terminated() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let app = format!("mtasts_term_{}", std::process::id());
    let options = PostgresOptions::new(format!("{}&application_name={app}", schema.dsn(None)))
        .timeout(Duration::from_secs(2))
        .max_connections(4);
    let store = PostgresCache::connect(options).await.expect("connect");
    assert!(
        store
            .set("example.com", &sample_entry(1_700_000_000))
            .await
            .expect("set")
    );

    let terminated: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&app)
    .fetch_one(&schema.raw)
    .await
    .expect("terminate");
    assert!(terminated >= 1, "the store had a connection to terminate");

    // The pool notices dead connections (tested before use) and reconnects; allow one failed attempt per
    // pooled connection.
    let mut last = None;
    for _ in 0..5 {
        match store.get("example.com").await {
            Ok(got) => {
                assert_eq!(got, Some(sample_entry(1_700_000_000)));
                last = None;
                break;
            }
            Err(e) => {
                assert!(e.is_transient(), "{e:?}");
                last = Some(e);
            }
        }
    }
    assert!(
        last.is_none(),
        "no recovery after pg_terminate_backend: {last:?}"
    );
    assert!(
        store
            .set("example.com", &sample_entry(1_700_000_001))
            .await
            .expect("set after recovery")
    );
    store.close().await;
    schema.drop().await;
}

/// With the `tls` feature, `sslmode=require` connects over TLS (skipped if the server has TLS turned off).
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread")]
async fn tls_with_sslmode_require() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&schema.raw)
        .await
        .expect("show ssl");
    if ssl != "on" {
        eprintln!("skipped: the PostgreSQL server has ssl = {ssl}");
        schema.drop().await;
        return;
    }
    let app = format!("mtasts_tls_{}", std::process::id());
    let dsn = format!(
        "{}&sslmode=require&application_name={app}",
        schema.dsn(None)
    );
    let store = PostgresCache::connect(PostgresOptions::new(dsn).timeout(Duration::from_secs(5)))
        .await
        .expect("connect with TLS");
    assert!(
        store
            .set("example.com", &sample_entry(1_700_000_000))
            .await
            .expect("set")
    );
    let encrypted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE application_name = $1 AND ssl",
    )
    .bind(&app)
    .fetch_one(&schema.raw)
    .await
    .expect("pg_stat_ssl");
    assert!(encrypted >= 1, "the store's connection uses TLS");
    store.close().await;
    schema.drop().await;
}
