//! The open-files limit (`RLIMIT_NOFILE`): raised to the hard limit at start, and `limits.max_connections` and
//! `limits.max_discoveries` fitted under it.
//!
//! Every client connection is a descriptor, every discovery up to two (its DNS and HTTPS sockets), the store's
//! pool a few more. With the usual soft limit of 1024 and the default 10 000 connections, accept would fail
//! with EMFILE long before the connection limit, and discoveries with it (issue 11, row 5). So the daemon
//! raises its soft limit to the hard one, and when even that is below the budget it serves fewer connections
//! (not fewer than [`MIN_CONNECTIONS`]), then runs fewer discoveries at once, and says so.

use std::io;

use tracing::{info, warn};

use crate::config::{CacheConfig, LimitsConfig};

/// Descriptors kept free for everything else: the listeners, the log file, the metrics endpoint and its
/// clients, the runtime's own.
pub(crate) const SPARE: u64 = 32;

/// `max_connections` is not lowered below this to make room; `max_discoveries` is lowered instead.
pub(crate) const MIN_CONNECTIONS: usize = 64;

/// Descriptors a discovery may hold at once: a DNS socket and an HTTPS connection.
const PER_DISCOVERY: u64 = 2;

/// Descriptors each SQLite connection may hold: the database, its journal (or WAL) and shared-memory files.
const PER_SQLITE_CONNECTION: u64 = 3;

/// The descriptors the configured store may hold at most (its connection pool).
pub(crate) fn store_descriptors(cache: &CacheConfig) -> u64 {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    match cache {
        CacheConfig::Internal { .. } => 0,
        CacheConfig::Sqlite { threads, .. } => {
            let threads = threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            count(threads).saturating_mul(PER_SQLITE_CONNECTION)
        }
        // One more for the connection that watches the master (Sentinel) or probes the server.
        CacheConfig::Redis(r) => count(redis_pool(r.server.max_connections)).saturating_add(1),
        CacheConfig::RedisSentinel(s) => {
            count(redis_pool(s.server.max_connections)).saturating_add(count(s.sentinels.len()))
        }
        CacheConfig::Postgres(pg) => count(pg.max_size),
    }
}

/// The Redis pool size: configured, else the store's default.
fn redis_pool(configured: Option<usize>) -> usize {
    #[cfg(feature = "redis")]
    let default = mtasts_cache_redis::DEFAULT_POOL_SIZE;
    #[cfg(not(feature = "redis"))]
    let default = 0;
    configured.unwrap_or(default)
}

/// What the limits need: connections, two per discovery, the store's pool and [`SPARE`].
pub(crate) fn budget(limits: &LimitsConfig, store: u64) -> u64 {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    count(limits.max_connections)
        .saturating_add(count(limits.max_discoveries).saturating_mul(PER_DISCOVERY))
        .saturating_add(store)
        .saturating_add(SPARE)
}

/// `max_connections` and `max_discoveries` fitted under `limit` open files: unchanged when the budget fits;
/// otherwise fewer connections first (not below [`MIN_CONNECTIONS`], nor above the configured number), then
/// fewer discoveries (at least one).
pub(crate) fn fit(limits: &LimitsConfig, store: u64, limit: u64) -> (usize, usize) {
    let (connections, discoveries) = (limits.max_connections, limits.max_discoveries);
    if budget(limits, store) <= limit {
        return (connections, discoveries);
    }
    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let available = limit.saturating_sub(store).saturating_sub(SPARE);
    let for_discoveries = u64::try_from(discoveries)
        .unwrap_or(u64::MAX)
        .saturating_mul(PER_DISCOVERY);
    let connections = to_usize(available.saturating_sub(for_discoveries))
        .max(MIN_CONNECTIONS)
        .min(connections);
    let left = available.saturating_sub(u64::try_from(connections).unwrap_or(u64::MAX));
    let discoveries = to_usize(left / PER_DISCOVERY).clamp(1, discoveries);
    (connections, discoveries)
}

/// Raises the soft open-files limit to the hard one, then fits `limits` under the result (see [`fit`]); logs
/// both.
pub(crate) fn raise_and_fit(limits: &mut LimitsConfig, cache: &CacheConfig) {
    let limit = match raise_nofile() {
        Ok(Raised { before, after }) => {
            if after > before {
                info!(from = before, to = after, "open files limit raised");
            } else {
                info!(limit = after, "open files limit");
            }
            after
        }
        Err(e) => {
            warn!(error = %e, "cannot read or raise the open files limit; keeping the configured limits");
            return;
        }
    };
    let store = store_descriptors(cache);
    let needed = budget(limits, store);
    let (connections, discoveries) = fit(limits, store, limit);
    if (connections, discoveries) != (limits.max_connections, limits.max_discoveries) {
        warn!(
            limit,
            needed,
            max_connections = connections,
            max_discoveries = discoveries,
            configured_max_connections = limits.max_connections,
            configured_max_discoveries = limits.max_discoveries,
            "the open files limit is below what the limits need (max_connections + 2 × max_discoveries + the \
             store's pool + 32): serving with lower limits; raise the hard limit (LimitNOFILE=) to serve them all"
        );
        limits.max_connections = connections;
        limits.max_discoveries = discoveries;
    }
}

/// The soft open-files limit before and after raising it.
struct Raised {
    before: u64,
    after: u64,
}

/// Sets the soft `RLIMIT_NOFILE` to the hard limit. An unlimited hard limit is not a value the kernel takes
/// for open files: the soft limit is then left as it is.
fn raise_nofile() -> io::Result<Raised> {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if hard == RLIM_INFINITY || soft >= hard {
        return Ok(Raised {
            before: soft,
            after: soft,
        });
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(Raised {
        before: soft,
        after: hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_discoveries: usize) -> LimitsConfig {
        LimitsConfig {
            max_connections,
            max_discoveries,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn the_budget_counts_connections_two_per_discovery_the_store_and_spare() {
        assert_eq!(budget(&limits(10_000, 1_000), 16), 10_000 + 2_000 + 16 + 32);
    }

    #[test]
    fn limits_that_fit_are_kept() {
        assert_eq!(fit(&limits(10_000, 1_000), 16, 20_000), (10_000, 1_000));
        assert_eq!(fit(&limits(10_000, 1_000), 16, 12_048), (10_000, 1_000));
    }

    #[test]
    fn connections_are_lowered_first() {
        // 4096 - 16 - 32 - 2000 = 2048 connections.
        assert_eq!(fit(&limits(10_000, 1_000), 16, 4_096), (2_048, 1_000));
        assert_eq!(fit(&limits(10_000, 1_000), 16, 12_047), (9_999, 1_000));
    }

    #[test]
    fn then_discoveries_once_connections_reach_their_floor() {
        // 256 - 32 = 224: 64 connections, (224 - 64) / 2 = 80 discoveries.
        assert_eq!(fit(&limits(10_000, 1_000), 0, 256), (64, 80));
        // A configured number below the floor is not raised.
        assert_eq!(fit(&limits(10, 1_000), 0, 256), (10, 107));
        // Nothing left: one discovery still runs.
        assert_eq!(fit(&limits(10_000, 1_000), 0, 64), (64, 1));
    }

    #[test]
    fn the_store_pool_is_counted_by_type() {
        assert_eq!(
            store_descriptors(&CacheConfig::Internal { cache_size: 10 }),
            0
        );
        let sqlite = CacheConfig::Sqlite {
            filename: "x.db".into(),
            threads: Some(4),
            timeout: std::time::Duration::from_secs(5),
        };
        assert_eq!(store_descriptors(&sqlite), 12);
        let postgres = CacheConfig::Postgres(crate::config::PostgresConfig::default());
        assert_eq!(store_descriptors(&postgres), 10);
    }
}
