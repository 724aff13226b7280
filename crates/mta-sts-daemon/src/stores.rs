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
    if let CacheConfig::Internal { cache_size } = cache {
        return Ok((None, *cache_size));
    }
    check(cache)?;
    let config = cache.clone();
    let store = ReconnectingCache::with_target(cache.type_name(), target(cache), move || {
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

/// Why a SQLite file could not be opened: its path, what its directory tells (the errno), and SQLite's error.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {}{}", path.display(), problem.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
struct SqliteOpen {
    path: std::path::PathBuf,
    problem: Option<String>,
    #[source]
    source: CacheError,
}

/// Where the store of `cache` is, for log lines and errors: the SQLite file, the Redis URL or Sentinel
/// addresses, the PostgreSQL hosts and database; passwords are left out. `None` for `internal`.
pub(crate) fn target(cache: &CacheConfig) -> Option<String> {
    match cache {
        CacheConfig::Internal { .. } => None,
        CacheConfig::Sqlite { filename, .. } => Some(filename.display().to_string()),
        CacheConfig::Redis(r) => Some(redact(&r.url)),
        CacheConfig::RedisSentinel(s) => Some(format!(
            "master {} via sentinels {}",
            s.master_name,
            s.sentinels
                .iter()
                .map(|(host, port)| format!("{host}:{port}"))
                .collect::<Vec<_>>()
                .join(",")
        )),
        CacheConfig::Postgres(pg) => Some(match &pg.dsn {
            Some(dsn) => redact(dsn),
            None => format!(
                "{}:{}/{}",
                if pg.host.is_empty() {
                    "localhost".to_owned()
                } else {
                    pg.host.join(",")
                },
                pg.port.unwrap_or(5432),
                pg.database.as_deref().unwrap_or("(default database)")
            ),
        }),
    }
}

/// `url` (or a `key=value` DSN) without its password.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            return format!("{scheme}://{user}{hidden}@{host}{path}");
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks the store options without connecting (`--check-config`, and the daemon at start): the errors that no
/// retry can fix ([`StartError::Store`] with a [`CacheError::Config`]). Returns warnings: what would keep the
/// store from opening but may be fixed by the time it runs (a SQLite file whose directory does not exist yet).
/// Needs a tokio runtime (the Redis client is built, not connected).
pub(crate) fn check(cache: &CacheConfig) -> Result<Vec<String>, StartError> {
    let refused = |source| StartError::Store {
        kind: cache.type_name(),
        source,
    };
    let mut warnings = Vec::new();
    match cache {
        CacheConfig::Internal { .. } => {}
        CacheConfig::Sqlite { filename, .. } => {
            if let Some(cause) = sqlite_directory_problem(filename) {
                warnings.push(format!("cache.options.filename: {cause}"));
            }
        }
        #[cfg(feature = "redis")]
        CacheConfig::Redis(r) => drop(redis(r).map_err(refused)?),
        #[cfg(feature = "redis")]
        CacheConfig::RedisSentinel(s) => drop(sentinel(s).map_err(refused)?),
        #[cfg(feature = "postgres")]
        CacheConfig::Postgres(pg) => crate::postgres::check(pg).map_err(refused)?,
        #[allow(unreachable_patterns)]
        // reason: reachable only in builds without some store feature
        other => {
            return Err(StartError::StoreNotBuilt {
                kind: other.type_name(),
            });
        }
    }
    Ok(warnings)
}

/// Why SQLite could not create or open `filename`, as far as its directory tells (the path and the errno),
/// or `None` when the directory is there and writable. SQLite's own error ("unable to open database file",
/// code 14) names neither.
pub(crate) fn sqlite_directory_problem(filename: &std::path::Path) -> Option<String> {
    let dir = match filename.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    match std::fs::metadata(dir) {
        Err(e) => Some(format!("directory {}: {e}", dir.display())),
        Ok(meta) if !meta.is_dir() => Some(format!("{} is not a directory", dir.display())),
        Ok(_) => {
            // The file itself, when it exists, must be readable and writable; else the directory writable.
            let (path, what) = if filename.exists() {
                (filename, "file")
            } else {
                (dir, "directory")
            };
            nix::unistd::access(
                path,
                nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
            )
            .err()
            .map(|errno| {
                format!(
                    "{what} {}: {}",
                    path.display(),
                    std::io::Error::from_raw_os_error(errno as i32)
                )
            })
        }
    }
}

/// The store for `cache`, and how many entries the engine's memory front should hold.
///
/// `internal` is memory only: the engine's own memory front of `cache_size` entries is the cache, no separate
/// store. The persistent stores are fronted by a memory front of `memory_cache_size` entries. Both are bounded by
/// `limits.memory_cache_bytes` too.
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
                .map_err(|source| {
                    store(CacheError::unavailable(
                        "sqlite",
                        SqliteOpen {
                            problem: sqlite_directory_problem(filename),
                            path: filename.clone(),
                            source,
                        },
                    ))
                })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_leave_passwords_out() {
        for (url, want) in [
            (
                "redis://:secret@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            (
                "rediss://user:secret@cache.example:6380",
                "rediss://user:***@cache.example:6380",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("postgres://me:p%40ss@db/test", "postgres://me:***@db/test"),
            (
                "host=db password=secret dbname=x",
                "host=db password=*** dbname=x",
            ),
        ] {
            assert_eq!(redact(url), want, "{url}");
        }
    }

    #[test]
    fn a_missing_sqlite_directory_is_named_with_its_errno() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("absent").join("cache.db");
        let problem = sqlite_directory_problem(&file).expect("a problem");
        assert!(
            problem.contains("absent") && problem.contains("os error 2"),
            "{problem}"
        );
        assert_eq!(sqlite_directory_problem(&dir.path().join("cache.db")), None);
    }
}
