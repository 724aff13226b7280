//! MTA-STS policy cache: the [`PolicyCache`] trait, its value types, and a bounded in-memory store.
//!
//! The daemon keeps each domain's policy (RFC 8461 §3.3, §5.1) in a cache so that most lookups need no network.
//! This crate defines what a cache store is — [`PolicyCache`], an object-safe async trait used as
//! `Arc<dyn PolicyCache>` — and ships [`MemoryCache`], a bounded, sharded LRU. Persistent stores live in their own
//! crates (`mtasts-cache-sql` for SQLite and PostgreSQL, `mtasts-cache-redis`) over the same trait.
//!
//! - [`CacheEntry`]: what is stored per domain (two timestamps, policy id, policy).
//! - [`CacheError`]: the typed error every store returns, with a stable [`CacheError::kind`] label.
//! - [`ScanToken`] / [`ScanPage`]: resumable paging over all entries (used by the proactive refresher).
//! - [`MAX_CLOCK_SKEW`], [`clamp_skewed`], [`skew_limit`]: how stored times from a host whose clock runs ahead
//!   are counted.
//! - [`ReconnectingCache`] (feature `reconnect`): any store, opened in the background and watched, so that a store
//!   that is down, hung or cannot be opened costs its user nothing but misses.
//! - [`bounded::BoundedCache`]: the concurrent map bounded by entries and bytes, scan resistant (CLOCK
//!   eviction, TinyLFU admission), behind [`MemoryCache`] and the engine's memory front.
//! - [`lru::ShardedLru`]: a small concurrent LRU map.
//! - [`compat`]: helpers to read and write the Python `postfix-mta-sts-resolver` representation.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use mtasts_cache::{CacheEntry, MemoryCache, PolicyCache};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cache: Arc<dyn PolicyCache> = Arc::new(MemoryCache::new(10_000));
//! let policy = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\n".parse()?;
//! let entry = CacheEntry::new(1_700_000_000, "20240101".parse()?, policy);
//!
//! assert!(cache.set("example.com", &entry).await?);
//! // An older write never replaces a newer one.
//! let older = CacheEntry { checked_at: 1_600_000_000, fetched_at: 1_600_000_000, ..entry.clone() };
//! assert!(!cache.set("example.com", &older).await?);
//! assert_eq!(cache.get("example.com").await?, Some(entry));
//! # Ok(())
//! # }
//! ```
//!
//! # Crate features
//!
//! - `conformance`: the [`conformance`] module, the test suite every store's integration tests run.
//! - `reconnect`: [`ReconnectingCache`], a store opened in the background and watched (tokio).

mod entry;
mod error;
mod memory;
#[cfg(feature = "reconnect")]
mod reconnect;
mod scan;
mod skew;

pub mod bounded;
pub mod compat;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod lru;

pub use async_trait::async_trait;
pub use entry::CacheEntry;
pub use error::{BoxError, CacheError};
pub use memory::MemoryCache;
pub use mtasts_core;
#[cfg(feature = "reconnect")]
pub use reconnect::{FIRST_RETRY, MAX_RETRY, OpenFuture, ReconnectingCache};
pub use scan::{CorruptEntry, ScanPage, ScanToken};
pub use skew::{MAX_CLOCK_SKEW, clamp_skewed, is_skewed, skew_limit};

/// A store of MTA-STS policies keyed by policy domain.
///
/// Object safe: pass it around as `Arc<dyn PolicyCache>`. Keys are policy domains as the engine normalises them
/// (lowercase A-labels, no trailing dot); stores do not normalise them again.
///
/// Implementations must be safe under many concurrent callers, must never lose a newer entry to an older one
/// (see [`PolicyCache::set`]), must never hold a blocking lock across an `.await`, and must bound every operation
/// by their configured timeout (returning [`CacheError::Timeout`] or [`CacheError::Unavailable`] rather than
/// hanging). A store whose server goes away must recover by itself once it is back.
#[async_trait]
pub trait PolicyCache: Send + Sync + std::fmt::Debug {
    /// The entry stored for `domain`, if any.
    ///
    /// An entry that cannot be decoded is an error ([`CacheError::Corrupt`]), never a panic.
    async fn get(&self, domain: &str) -> Result<Option<CacheEntry>, CacheError>;

    /// Stores `entry` for `domain` unless the stored entry has `checked_at >= entry.checked_at` (newer wins,
    /// atomically, also against concurrent writers and other processes sharing the store).
    ///
    /// A stored `checked_at` later than [`skew_limit`] (this host's clock plus [`MAX_CLOCK_SKEW`]) was written
    /// by a host whose clock runs ahead; it counts as now, so the write replaces it.
    ///
    /// Returns `Ok(true)` if the entry was written.
    async fn set(&self, domain: &str, entry: &CacheEntry) -> Result<bool, CacheError>;

    /// One page of at most about `page_size` entries, starting after `token` (`None` = from the beginning).
    ///
    /// Following [`ScanPage::next`] until it is `None` visits every entry that exists for the whole scan exactly
    /// once; entries added or removed meanwhile may or may not be seen. Entries that cannot be decoded are
    /// reported in [`ScanPage::corrupt`] and skipped. A page may be empty while `next` is `Some`.
    async fn scan(
        &self,
        token: Option<&ScanToken>,
        page_size: usize,
    ) -> Result<ScanPage, CacheError>;

    /// Removes the entry for `domain` (cache administration, "purge"). `Ok(true)` if there was one.
    async fn remove(&self, domain: &str) -> Result<bool, CacheError>;

    /// Removes all policy entries ("purge --all"); returns how many were removed. The proactive refresh
    /// timestamp is kept.
    async fn clear(&self) -> Result<u64, CacheError>;

    /// When the last proactive refresh pass finished (Unix seconds), if one was recorded.
    async fn proactive_fetch_ts(&self) -> Result<Option<u64>, CacheError>;

    /// Records when the last proactive refresh pass finished (Unix seconds).
    async fn set_proactive_fetch_ts(&self, ts: u64) -> Result<(), CacheError>;

    /// Releases connections and files. Stores with connections fail later calls (usually with
    /// [`CacheError::Closed`]); the memory store keeps working.
    async fn close(&self);
}
