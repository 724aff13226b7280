//! The shared conformance suite, each test in its own schema.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mtasts_cache::PolicyCache;
use mtasts_cache::conformance::{self, CorruptInjector, TcpProxy};
use mtasts_cache_postgres::{PostgresCache, PostgresOptions};

use crate::util::Schema;

macro_rules! basic {
    ($($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            let Some(schema) = Schema::create().await else { return };
            let store = schema.store().await;
            conformance::$name(&store).await;
            store.close().await;
            schema.drop().await;
        }
    )*};
}

basic!(
    get_set,
    newer_wins,
    concurrent_writers,
    paging,
    remove_clear,
    proactive_ts
);

/// Writes undecodable rows with a raw connection (jsonb guarantees JSON, so the corruption is in meaning).
struct RawCorruptor<'a>(&'a Schema);

/// (ts, pol_id, pol_body) as SQL expressions.
const CORRUPTIONS: [(&str, &str, &str); 6] = [
    (
        "{ts}",
        "'abc'",
        r#"'{"version": "STSv1", "mode": "bogus", "max_age": 1, "mx": []}'"#,
    ),
    (
        "{ts}",
        "'bad id!'",
        r#"'{"version": "STSv1", "mode": "none", "max_age": 1, "mx": []}'"#,
    ),
    (
        "NULL",
        "'abc'",
        r#"'{"version": "STSv1", "mode": "none", "max_age": 1, "mx": []}'"#,
    ),
    (
        "-5",
        "'abc'",
        r#"'{"version": "STSv1", "mode": "none", "max_age": 1, "mx": []}'"#,
    ),
    ("{ts}", "'abc'", r#"'["abc", {"mode": "none"}]'"#),
    ("{ts}", "NULL", "NULL"),
];

#[async_trait]
impl CorruptInjector for RawCorruptor<'_> {
    fn variants(&self) -> usize {
        CORRUPTIONS.len()
    }

    async fn inject(&self, domain: &str, ts: u64, variant: usize) {
        let (t, id, body) = CORRUPTIONS[variant];
        let t = t.replace("{ts}", &ts.to_string());
        let sql = format!(
            "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES ('{domain}', {t}, {id}, {body})"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.0.raw)
            .await
            .expect("inject corrupt row");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_entries() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let store = schema.store().await;
    conformance::corrupt_entries(&store, &RawCorruptor(&schema)).await;
    store.close().await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_storage() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let (a, b) = (schema.store().await, schema.store().await);
    conformance::shared_storage(&a, &b).await;
    a.close().await;
    b.close().await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let timeout = Duration::from_secs(1);
    conformance::unreachable(timeout, |addr| {
        let options = PostgresOptions::new(schema.dsn(Some(addr))).timeout(timeout);
        async move {
            PostgresCache::connect(options)
                .await
                .map(|s| Arc::new(s) as Arc<dyn PolicyCache>)
        }
    })
    .await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_and_recovery() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let proxy = TcpProxy::start(schema.server_addr())
        .await
        .expect("start proxy");
    let timeout = Duration::from_secs(1);
    let options = PostgresOptions::new(schema.dsn(Some(proxy.addr())))
        .timeout(timeout)
        .max_connections(4);
    let store: Arc<dyn PolicyCache> = Arc::new(
        PostgresCache::connect(options)
            .await
            .expect("connect via proxy"),
    );
    conformance::outage_and_recovery(&store, &proxy, timeout).await;
    store.close().await;
    drop(proxy);
    schema.drop().await;
}
