//! The shared conformance suite against the shared Redis, one database per test.

use std::net::SocketAddr;
use std::sync::Arc;

use deadpool_redis::redis;
use mtasts_cache::conformance::{self, CorruptInjector, TcpProxy};
use mtasts_cache::{PolicyCache, async_trait};
use mtasts_cache_redis::RedisCache;

use crate::support::{SharedDb, TIMEOUT, cmd, options, raw};

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            let Some(db) = SharedDb::lease().await else { return };
            let store = db.store().await;
            conformance::$name(&store).await;
            store.close().await;
        }
    )*};
}

store_suite!(
    get_set,
    newer_wins,
    concurrent_writers,
    paging,
    remove_clear,
    proactive_ts
);

/// Writes undecodable members in the store's database, as a broken writer or a bug would.
pub(crate) struct Injector {
    pub(crate) url: String,
}

/// The 16 bytes a Python daemon would put first (a UUIDv4).
pub(crate) const UUID4: [u8; 16] =
    *b"\x12\x34\x56\x78\x9a\xbc\x4d\xef\x8f\xed\xcb\xa9\x87\x65\x43\x21";

#[async_trait]
impl CorruptInjector for Injector {
    fn variants(&self) -> usize {
        5
    }

    async fn inject(&self, domain: &str, ts: u64, variant: usize) {
        let with_prefix = |json: &str| [UUID4.as_slice(), json.as_bytes()].concat();
        let valid = r#"{"version": "STSv1", "mode": "none", "max_age": 86400}"#;
        let (member, score): (Vec<u8>, f64) = match variant {
            0 => (b"short".to_vec(), ts as f64),
            1 => (with_prefix("[\"id1\", {not json"), ts as f64),
            2 => (
                with_prefix(r#"["id1", {"version": "STSv1", "mode": "bogus", "max_age": 1}]"#),
                ts as f64,
            ),
            3 => (
                with_prefix(&format!(r#"["not valid!", {valid}]"#)),
                ts as f64,
            ),
            // A negative score is no timestamp.
            _ => (with_prefix(&format!(r#"["id1", {valid}]"#)), -5.0),
        };
        let mut conn = raw(&self.url).await.expect("connect injector");
        cmd::<()>(&mut conn, redis::cmd("DEL").arg(domain)).await;
        cmd::<()>(
            &mut conn,
            redis::cmd("ZADD").arg(domain).arg(score).arg(member),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_entries() {
    let Some(db) = SharedDb::lease().await else {
        return;
    };
    let store = db.store().await;
    conformance::corrupt_entries(
        &store,
        &Injector {
            url: db.url().to_owned(),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable() {
    conformance::unreachable(TIMEOUT, |addr: SocketAddr| async move {
        let store = RedisCache::connect(options(&format!("redis://{addr}/0"))).await?;
        Ok(Arc::new(store) as Arc<dyn PolicyCache>)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_and_recovery() {
    let Some(db) = SharedDb::lease().await else {
        return;
    };
    let upstream = db.socket_addr().await;
    let proxy = TcpProxy::start(upstream).await.expect("start proxy");
    let store: Arc<dyn PolicyCache> = Arc::new(
        RedisCache::connect(options(&db.url_via(proxy.addr())))
            .await
            .expect("connect through proxy"),
    );
    conformance::outage_and_recovery(&store, &proxy, TIMEOUT).await;
}
