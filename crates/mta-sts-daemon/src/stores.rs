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
            let mut options = RedisOptions::new(redis_url(
                &r.url,
                r.username.as_deref(),
                r.password.as_deref(),
                r.db,
            ));
            if let Some(t) = r.socket_connect_timeout {
                options = options.connect_timeout(t);
            }
            if let Some(t) = r.socket_timeout {
                options = options.response_timeout(t);
            }
            if let Some(n) = r.max_connections {
                options = options.pool_size(n);
            }
            // Lazy: a Redis that is down at start must not keep the daemon from answering (cache errors count
            // as misses).
            let cache = RedisCache::connect_lazy(options).map_err(store)?;
            Ok((Some(Arc::new(cache)), memory_cache_size))
        }
        #[cfg(feature = "redis")]
        CacheConfig::RedisSentinel(s) => {
            use mtasts_cache_redis::{RedisCache, SentinelOptions};
            let mut options = SentinelOptions::new(s.master_name.clone(), s.sentinels.clone());
            if let Some(db) = s.db {
                options = options.db(db);
            }
            if let Some(u) = &s.username {
                options = options.username(u.clone());
            }
            if let Some(p) = &s.password {
                options = options.password(p.clone());
            }
            if let Some(t) = s.socket_connect_timeout {
                options = options.connect_timeout(t);
            }
            if let Some(t) = s.socket_timeout {
                options = options.response_timeout(t);
            }
            if let Some(n) = s.max_connections {
                options = options.pool_size(n);
            }
            let cache = RedisCache::sentinel_lazy(options).map_err(store)?;
            Ok((Some(Arc::new(cache)), memory_cache_size))
        }
        #[cfg(feature = "postgres")]
        CacheConfig::Postgres {
            dsn,
            timeout,
            max_size,
        } => {
            let cache = crate::postgres::open(dsn, *timeout, *max_size)
                .await
                .map_err(store)?;
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

/// Puts `username`, `password` and `db` options into a Redis URL (redis-py's `from_url(url, **opts)` lets
/// options override the URL's parts).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn redis_url(
    url: &str,
    username: Option<&str>,
    password: Option<&str>,
    db: Option<i64>,
) -> String {
    if username.is_none() && password.is_none() && db.is_none() {
        return url.to_owned();
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    if matches!(scheme, "unix" | "redis+unix") {
        return unix_redis_url(scheme, rest, username, password, db);
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (url_user, url_pass) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u, None),
        },
        None => ("", None),
    };
    let user = username.map(encode).unwrap_or_else(|| url_user.to_owned());
    let pass = password.map(encode).or_else(|| url_pass.map(str::to_owned));
    let mut out = format!("{scheme}://");
    match pass {
        Some(p) => out.push_str(&format!("{user}:{p}@")),
        None if !user.is_empty() => out.push_str(&format!("{user}@")),
        None => {}
    }
    out.push_str(host);
    match db {
        Some(db) if scheme != "unix" => out.push_str(&format!("/{db}")),
        _ => out.push_str(path),
    }
    out
}

/// A UNIX-socket Redis URL carries its options as query parameters (`unix:///run/redis.sock?db=1&pass=…`,
/// the redis crate's form): the socket path stays, the given options replace the URL's own.
fn unix_redis_url(
    scheme: &str,
    rest: &str,
    username: Option<&str>,
    password: Option<&str>,
    db: Option<i64>,
) -> String {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let overridden = |key: &str| match key {
        "db" => db.is_some(),
        "user" => username.is_some(),
        "pass" => password.is_some(),
        _ => false,
    };
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !overridden(p.split_once('=').map_or(*p, |(k, _)| k)))
        .map(str::to_owned)
        .collect();
    if let Some(db) = db {
        params.push(format!("db={db}"));
    }
    if let Some(user) = username {
        params.push(format!("user={}", encode(user)));
    }
    if let Some(pass) = password {
        params.push(format!("pass={}", encode(pass)));
    }
    if params.is_empty() {
        format!("{scheme}://{path}")
    } else {
        format!("{scheme}://{path}?{}", params.join("&"))
    }
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redis_url;

    #[test]
    fn redis_url_options_override_url_parts() {
        let cases = [
            (
                "redis://127.0.0.1/0",
                None,
                None,
                None,
                "redis://127.0.0.1/0",
            ),
            (
                "redis://127.0.0.1/0",
                None,
                Some("pw"),
                None,
                "redis://:pw@127.0.0.1/0",
            ),
            (
                "redis://127.0.0.1/0",
                Some("u"),
                Some("p@ss"),
                Some(3),
                "redis://u:p%40ss@127.0.0.1/3",
            ),
            (
                "redis://old:x@h:6380/1",
                None,
                Some("new"),
                None,
                "redis://old:new@h:6380/1",
            ),
            ("redis://h", None, None, Some(2), "redis://h/2"),
            // UNIX sockets keep their path; options become query parameters.
            (
                "unix:///run/redis.sock",
                None,
                None,
                Some(2),
                "unix:///run/redis.sock?db=2",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&timeout=3",
                Some("u"),
                Some("p&w"),
                Some(4),
                "redis+unix:///run/redis.sock?timeout=3&db=4&user=u&pass=p%26w",
            ),
            (
                "unix:///run/redis.sock?pass=old",
                None,
                None,
                Some(0),
                "unix:///run/redis.sock?pass=old&db=0",
            ),
        ];
        for (url, user, pass, db, want) in cases {
            assert_eq!(
                redis_url(url, user, pass, db),
                want,
                "{url} {user:?} {pass:?} {db:?}"
            );
        }
    }
}
