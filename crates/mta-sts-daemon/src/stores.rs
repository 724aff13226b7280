//! Opens the policy store named by `cache.type`.

use std::sync::Arc;

use mtasts_cache::PolicyCache;

use crate::StartError;
use crate::config::CacheConfig;

/// The store for `cache`, and how many entries the engine's memory front should hold.
///
/// `internal` is memory only: the engine's own memory front of `cache_size` entries is the cache, no separate
/// store. The persistent stores are fronted by a memory LRU of `memory_cache_size` entries.
// reason: without some store features, the arguments only the missing stores use are unused.
#[cfg_attr(
    not(all(feature = "sqlite", feature = "redis", feature = "postgres")),
    allow(unused_variables)
)]
pub(crate) async fn open(
    cache: &CacheConfig,
    memory_cache_size: usize,
) -> Result<(Option<Arc<dyn PolicyCache>>, usize), StartError> {
    let store = |e| StartError::Store {
        kind: cache.type_name(),
        source: e,
    };
    match cache {
        // Memory only: the engine's memory front of `cache_size` entries is the whole cache.
        CacheConfig::Internal { cache_size } => Ok((None, *cache_size)),
        #[cfg(feature = "sqlite")]
        CacheConfig::Sqlite {
            filename,
            threads,
            timeout,
        } => {
            let mut options =
                mtasts_cache_sql::SqliteOptions::new(filename.clone()).timeout(*timeout);
            if let Some(t) = threads {
                options = options.threads(u32::try_from(*t).unwrap_or(u32::MAX));
            }
            let cache = mtasts_cache_sql::SqliteCache::open(options)
                .await
                .map_err(store)?;
            Ok((Some(Arc::new(cache)), memory_cache_size))
        }
        #[cfg(feature = "redis")]
        CacheConfig::Redis(r) => {
            use mtasts_cache_redis::{RedisCache, RedisOptions};
            let mut options = RedisOptions::new(r.url.clone());
            let rediss = r.url.starts_with("rediss://");
            redis_server(&mut options.server, &r.server, rediss);
            // Lazy: a Redis that is down at start must not keep the daemon from answering (cache errors count
            // as misses).
            let cache = RedisCache::connect_lazy(options).map_err(store)?;
            Ok((Some(probe_at_start(cache, "redis")), memory_cache_size))
        }
        #[cfg(feature = "redis")]
        CacheConfig::RedisSentinel(s) => {
            use mtasts_cache_redis::{RedisCache, SentinelOptions};
            let mut options = SentinelOptions::new(s.master_name.clone(), s.sentinels.clone());
            redis_server(&mut options.server, &s.server, false);
            let cache = RedisCache::sentinel_lazy(options).map_err(store)?;
            Ok((
                Some(probe_at_start(cache, "redis_sentinel")),
                memory_cache_size,
            ))
        }
        #[cfg(feature = "postgres")]
        CacheConfig::Postgres(pg) => {
            let cache = crate::postgres::open(pg).await.map_err(store)?;
            Ok((Some(cache), memory_cache_size))
        }
        // Only reachable for types whose feature is off; the configuration already refuses those.
        #[allow(unreachable_patterns)]
        // reason: reachable only in builds without some store feature
        other => Err(StartError::StoreNotBuilt {
            kind: other.type_name(),
        }),
    }
}

/// Puts the `redis`/`redis_sentinel` server options over the store's defaults; TLS when `ssl` is on or the
/// URL asked for it (`tls_url`).
#[cfg(feature = "redis")]
fn redis_server(
    server: &mut mtasts_cache_redis::ServerOptions,
    config: &crate::config::RedisServerConfig,
    tls_url: bool,
) {
    server.db = config.db.or(server.db);
    server.username = config.username.clone().or(server.username.take());
    server.password = config.password.clone().or(server.password.take());
    server.connect_timeout = config
        .socket_connect_timeout
        .unwrap_or(server.connect_timeout);
    server.response_timeout = config.socket_timeout.unwrap_or(server.response_timeout);
    server.pool_size = config.max_connections.unwrap_or(server.pool_size);
    if config.ssl || tls_url {
        let mut tls = mtasts_cache_redis::TlsOptions::default();
        tls.ca_certs.clone_from(&config.ssl_ca_certs);
        tls.client_cert = config.ssl_certfile.clone().zip(config.ssl_keyfile.clone());
        tls.verify = !config.ssl_cert_reqs_none;
        tls.check_hostname = config.ssl_check_hostname;
        server.tls = Some(tls);
    }
}

/// Says at start, without waiting for it, whether a lazily connected store can be used: a wrong CA, name,
/// password or address is a warning with its cause right away, not only a miss at the first lookup.
#[cfg(feature = "redis")]
fn probe_at_start(
    cache: mtasts_cache_redis::RedisCache,
    kind: &'static str,
) -> Arc<dyn PolicyCache> {
    let cache = Arc::new(cache);
    let probed = Arc::clone(&cache);
    tokio::spawn(async move {
        if let Err(e) = probed.ping().await {
            tracing::warn!(
                store = kind,
                error = %e.with_causes(),
                "the cache store cannot be used; answering from the network until it can"
            );
        }
    });
    cache
}
