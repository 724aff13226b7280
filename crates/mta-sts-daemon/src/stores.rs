//! Opens the policy store named by `cache.type`: at once for the `cache` commands ([`open`]), in the background
//! for the daemon ([`supervised`]).

use std::sync::Arc;

use mtasts_cache::{CacheError, PolicyCache, ReconnectingCache};

use crate::StartError;
use crate::config::CacheConfig;

/// The daemon's store for `cache`, and how many entries the engine's memory front should hold: opened in the
/// background and watched ([`ReconnectingCache`]), so that a store that is down, hung or cannot be opened
/// does not stop the daemon, which answers from memory and discovery meanwhile; `on_status` hears whether it
/// is up. Only options that no retry can fix (a malformed URL or DSN, an unreadable TLS file) are refused,
/// at once ([`StartError::Store`] with a [`CacheError::Config`], exit 78).
pub(crate) fn supervised(
    cache: &CacheConfig,
    memory_cache_size: usize,
    on_status: impl Fn(bool) + Send + Sync + 'static,
) -> Result<(Option<Arc<dyn PolicyCache>>, usize), StartError> {
    let refused = |source| StartError::Store {
        kind: cache.type_name(),
        source,
    };
    match cache {
        CacheConfig::Internal { cache_size } => return Ok((None, *cache_size)),
        #[cfg(feature = "redis")]
        CacheConfig::Redis(r) => drop(redis(r).map_err(refused)?),
        #[cfg(feature = "redis")]
        CacheConfig::RedisSentinel(s) => drop(sentinel(s).map_err(refused)?),
        #[cfg(feature = "postgres")]
        CacheConfig::Postgres(pg) => crate::postgres::check(pg).map_err(refused)?,
        #[allow(unreachable_patterns)]
        // reason: the other stores have nothing to check without opening them
        _ => {}
    }
    let config = cache.clone();
    let store = ReconnectingCache::new(cache.type_name(), move || {
        let config = config.clone();
        Box::pin(async move {
            match open(&config, 0).await {
                Ok((Some(store), _)) => Ok(store),
                Ok((None, _)) => Err(CacheError::Config {
                    store: config.type_name(),
                    reason: "no store to open".into(),
                    source: None,
                }),
                Err(StartError::Store { source, .. }) => Err(source),
                Err(other) => Err(CacheError::Config {
                    store: config.type_name(),
                    reason: other.to_string(),
                    source: None,
                }),
            }
        })
    })
    .on_status(on_status);
    Ok((Some(Arc::new(store)), memory_cache_size))
}

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
        // Lazy: connections are made by the first command (an unreachable Redis is an error then).
        #[cfg(feature = "redis")]
        CacheConfig::Redis(r) => Ok((Some(Arc::new(redis(r).map_err(store)?)), memory_cache_size)),
        #[cfg(feature = "redis")]
        CacheConfig::RedisSentinel(s) => Ok((
            Some(Arc::new(sentinel(s).map_err(store)?)),
            memory_cache_size,
        )),
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

/// The `redis` store, not connected yet.
#[cfg(feature = "redis")]
fn redis(
    config: &crate::config::RedisConfig,
) -> Result<mtasts_cache_redis::RedisCache, CacheError> {
    let mut options = mtasts_cache_redis::RedisOptions::new(config.url.clone());
    let rediss = config.url.starts_with("rediss://");
    redis_server(&mut options.server, &config.server, rediss);
    mtasts_cache_redis::RedisCache::connect_lazy(options)
}

/// The `redis_sentinel` store, not connected yet.
#[cfg(feature = "redis")]
fn sentinel(
    config: &crate::config::SentinelConfig,
) -> Result<mtasts_cache_redis::RedisCache, CacheError> {
    let mut options = mtasts_cache_redis::SentinelOptions::new(
        config.master_name.clone(),
        config.sentinels.clone(),
    );
    redis_server(&mut options.server, &config.server, false);
    mtasts_cache_redis::RedisCache::sentinel_lazy(options)
}
