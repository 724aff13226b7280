//! Redis and Redis Sentinel store for the MTA-STS policy cache, compatible with postfix-mta-sts-resolver.
//!
//! [`RedisCache`] implements [`mtasts_cache::PolicyCache`] over a connection pool (deadpool-redis). Build it
//! with [`RedisCache::connect`] from [`RedisOptions`] (one server: a URL, with database and login options over it) or
//! with [`RedisCache::sentinel`] from [`SentinelOptions`] (master found through Redis Sentinel, failovers
//! followed automatically). Several mail servers can share one Redis, and the Python daemon can share it too.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use mtasts_cache::{CacheEntry, PolicyCache};
//! use mtasts_cache_redis::{RedisCache, RedisOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cache: Arc<dyn PolicyCache> = Arc::new(RedisCache::connect(RedisOptions::new("redis://127.0.0.1/1")).await?);
//! let policy = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\n".parse()?;
//! cache.set("example.com", &CacheEntry::new(1_700_000_000, "20240101".parse()?, policy)).await?;
//! assert!(cache.get("example.com").await?.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! # Data layout (shared with the Python daemon)
//!
//! - One **sorted set per domain**, the key being the domain itself. Its single member scores
//!   [`CacheEntry::checked_at`](mtasts_cache::CacheEntry::checked_at) (the Python `ts`; a fractional score
//!   written by Python is rounded down) and holds 16 bytes followed by the JSON `[pol_id, pol_body]`, where
//!   `pol_body` is the policy as a JSON object (`{"version": "STSv1", "mode": ..., "max_age": ..., "mx": [...]}`).
//! - Newer wins atomically: a Lua script writes a member only if no member with an equal or higher score
//!   exists, and leaves it the only member (the Python daemon trims all but the highest after each write).
//!   A score more than
//!   [`MAX_CLOCK_SKEW`](mtasts_cache::MAX_CLOCK_SKEW) after this host's clock (written by a host whose clock
//!   runs ahead) counts as now: any write replaces it.
//! - Our [`CacheEntry::fetched_at`](mtasts_cache::CacheEntry::fetched_at) (RFC 8461 §5.1: `max_age` counts
//!   from the fetch) lives in those 16 bytes, which the Python daemon fills with a random UUID and never reads.
//!   It needs no extra key: the Python daemon's scan reads *every* key except `_metadata` as a sorted set and
//!   stops its whole proactive refresh on the first one it cannot read. A member the Python daemon wrote gets
//!   `fetched_at = checked_at`.
//! - The hash [`METADATA_KEY`] (`_metadata`) holds [`PROACTIVE_FETCH_FIELD`] (`proactive_fetch_ts`), Unix
//!   seconds as text (Python writes a float, which is read back rounded down).
//! - [`scan`](mtasts_cache::PolicyCache::scan) walks `SCAN` with the cursor as its resumable token and
//!   only looks at sorted sets (`SCAN ... TYPE zset`, Redis ≥ 6.0); [`clear`](mtasts_cache::PolicyCache::clear)
//!   deletes every sorted set in the database and keeps `_metadata`. Give the cache a database of its own.
//!
//! A member that cannot be decoded is a [`CacheError::Corrupt`](mtasts_cache::CacheError::Corrupt) from
//! `get` and is reported and skipped by `scan`.
//!
//! # Connections and failures
//!
//! - Connections are pooled (deadpool) and multiplexed. A pooled connection is checked before use (`PING`;
//!   through Sentinel, `ROLE` must still say master), so a restarted server or a failover costs no failed call.
//! - Every call returns within `connect_timeout + response_timeout`: [`CacheError::Timeout`](mtasts_cache::CacheError::Timeout) for a silent
//!   server, [`CacheError::Unavailable`](mtasts_cache::CacheError::Unavailable) for a refused or broken connection (a write refused with `READONLY`
//!   counts as this: the server was demoted). A command whose connection broke is retried once on a new one.
//! - Sentinel: the master is asked of the sentinels (in order) for each new connection. Between the sentinels
//!   switching to a new master and the old one, if it is still running, being turned into a replica (about
//!   10 s for `SENTINEL FAILOVER`), writes may still reach the old master and be lost with it; for a cache that
//!   only means a policy fetched again.
//! - TLS: `rediss://` URLs or [`TlsOptions`] (redis-py's `ssl*` options), with rustls; the server's chain and
//!   name are checked unless told otherwise. Not supported: Redis Cluster. Needs Redis 6.0 or later
//!   (`SCAN ... TYPE`).
//!
//! # Crate features
//!
//! None.

mod member;
mod options;
mod pool;
mod store;

pub use options::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_SIZE, DEFAULT_RESPONSE_TIMEOUT, RedisOptions,
    SentinelOptions, ServerOptions, TlsOptions,
};
pub use store::{KeyError, METADATA_KEY, PROACTIVE_FETCH_FIELD, RedisCache};
