//! The in-memory store.

use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::bounded::BoundedCache;
use crate::{CacheEntry, CacheError, PolicyCache, ScanPage, ScanToken};

/// A bounded in-memory [`PolicyCache`]: a [`BoundedCache`] of [`CacheEntry`] keyed by domain, bounded by entries
/// and by bytes (each entry weighs its approximate size).
///
/// `get` and `set` are O(1) and lock one shard (a read lock for `get`; never held across an `.await`). When full,
/// a `set` of a new domain evicts the CLOCK victim (see [`crate::bounded`]): the entry not asked for longest
/// since the hand last passed; what a store is given is always kept. Nothing survives a restart.
///
/// `scan` pages through the domains in lexicographic order; the token is the last domain returned. Each page
/// costs one pass over the entries, which is fine for the sizes a memory cache holds.
///
/// ```
/// use mtasts_cache::{MemoryCache, PolicyCache};
/// let cache = MemoryCache::new(MemoryCache::DEFAULT_CAPACITY);
/// assert_eq!(cache.capacity(), 10_000);
/// assert_eq!(cache.max_bytes(), MemoryCache::DEFAULT_BYTES);
/// let small = MemoryCache::with_bytes(100, 1 << 20);
/// assert_eq!((small.capacity(), small.max_bytes()), (100, 1 << 20));
/// ```
pub struct MemoryCache {
    /// Values are behind an `Arc` so that the shard lock is held only for a reference-count increment; the
    /// deep copy the trait returns is made after the lock is released.
    entries: BoundedCache<String, Arc<CacheEntry>>,
    proactive_fetch_ts: Mutex<Option<u64>>,
}

impl MemoryCache {
    /// The default capacity (`cache_size` of the Python daemon's internal cache).
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// The default byte bound: 64 MiB (the daemon's `limits.memory_cache_bytes`).
    pub const DEFAULT_BYTES: u64 = 64 << 20;

    /// A cache holding at most `capacity` entries (at least 1) and [`MemoryCache::DEFAULT_BYTES`].
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self::with_bytes(capacity, Self::DEFAULT_BYTES)
    }

    /// A cache holding at most `capacity` entries (at least 1) weighing at most `max_bytes` (see
    /// [`crate::bounded`] for how entries are weighed).
    #[must_use]
    pub fn with_bytes(capacity: usize, max_bytes: u64) -> Self {
        Self {
            entries: BoundedCache::new(capacity, max_bytes),
            proactive_fetch_ts: Mutex::new(None),
        }
    }

    /// The maximum number of entries.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.entries.max_entries()
    }

    /// The maximum accounted weight of the entries, in bytes.
    #[must_use]
    pub fn max_bytes(&self) -> u64 {
        self.entries.max_bytes()
    }

    /// The accounted weight of the entries now, in bytes.
    #[must_use]
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }

    /// The current number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl PolicyCache for MemoryCache {
    async fn get(&self, domain: &str) -> Result<Option<CacheEntry>, CacheError> {
        Ok(self.entries.get(domain).map(|e| CacheEntry::clone(&e)))
    }

    async fn set(&self, domain: &str, entry: &CacheEntry) -> Result<bool, CacheError> {
        let new = Arc::new(entry.clone());
        let limit = crate::skew_limit();
        Ok(self.entries.insert_if(domain, new, |old| {
            old.checked_at < entry.checked_at || old.checked_at > limit
        }))
    }

    async fn scan(
        &self,
        token: Option<&ScanToken>,
        page_size: usize,
    ) -> Result<ScanPage, CacheError> {
        let page_size = page_size.max(1);
        let after = token.map(ScanToken::as_str);
        // Keep the `page_size` smallest domains greater than `after` in a max-heap.
        let mut heap: BinaryHeap<String> = BinaryHeap::with_capacity(page_size + 1);
        let mut candidates = 0usize;
        self.entries.for_each(|domain, _| {
            if after.is_some_and(|a| domain.as_str() <= a) {
                return;
            }
            candidates += 1;
            if heap.len() < page_size {
                heap.push(domain.clone());
            } else if heap.peek().is_some_and(|top| domain < top) {
                heap.pop();
                heap.push(domain.clone());
            }
        });
        let domains = heap.into_sorted_vec();
        let next = if candidates > domains.len() {
            domains.last().cloned().map(ScanToken::new)
        } else {
            None
        };
        let entries = domains
            .into_iter()
            .filter_map(|d| {
                let entry = self.entries.peek(d.as_str())?;
                Some((d, CacheEntry::clone(&entry)))
            })
            .collect();
        Ok(ScanPage {
            entries,
            corrupt: Vec::new(),
            next,
        })
    }

    async fn remove(&self, domain: &str) -> Result<bool, CacheError> {
        Ok(self.entries.remove(domain).is_some())
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        Ok(self.entries.clear() as u64)
    }

    async fn proactive_fetch_ts(&self) -> Result<Option<u64>, CacheError> {
        Ok(*self
            .proactive_fetch_ts
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    async fn set_proactive_fetch_ts(&self, ts: u64) -> Result<(), CacheError> {
        *self
            .proactive_fetch_ts
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(ts);
        Ok(())
    }

    async fn close(&self) {}
}
