//! A concurrent map bounded by entries **and** bytes, scan resistant.
//!
//! [`BoundedCache`] is the memory of the engine (its front of resolved policies) and of [`MemoryCache`]
//! (`cache.type: internal`). It wraps [`quick_cache::sync::Cache`], an S3-FIFO-like cache: a new key enters a
//! small probationary queue and reaches the main queue only when it is asked for again (or comes back soon after
//! it was evicted, remembered by its hash in a "ghost" list). So a scan of more keys than fit, even a cyclic
//! one, does not flush the keys that are asked for again and again, where an LRU misses on every request. Hits
//! take a shard's lock for reading only (the "referenced" mark is an atomic counter).
//!
//! Both bounds are kept with one weight: each entry weighs its approximate size in bytes ([`HeapSize`] of key
//! and value plus a fixed per-entry overhead), but at least `max_bytes / max_entries`. The weights add up to at
//! most `max_bytes`, so the accounted bytes never exceed `max_bytes` and the entries never exceed
//! `max_entries`. The capacity is split over shards (a power of two, at least 32 entries each); each shard holds
//! the same whole number of entries of the minimum weight, so up to a few entries fewer than `max_entries` fit.
//! An entry heavier than most of a shard's share is not kept at all (the shard count is chosen so that a share
//! is at least 256 KiB when `max_bytes` allows).
//!
//! [`MemoryCache`]: crate::MemoryCache
//!
//! ```
//! use std::sync::Arc;
//! use mtasts_cache::bounded::BoundedCache;
//!
//! // At most 100 entries and 64 KiB.
//! let cache: BoundedCache<Arc<str>, Arc<str>> = BoundedCache::new(100, 64 << 10);
//! cache.insert(Arc::from("example.com"), Arc::from("enforce"));
//! assert_eq!(cache.get("example.com").as_deref(), Some("enforce"));
//! // A large value counts with its size.
//! cache.insert(Arc::from("big.example"), Arc::from("x".repeat(16 << 10)));
//! assert!(cache.weight() > 16 << 10);
//! assert!(cache.weight() <= cache.max_bytes());
//! ```

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::mem::{size_of, size_of_val};
use std::sync::Arc;

use mtasts_core::{Policy, PolicyId};
use quick_cache::sync::{Cache, DefaultLifecycle, EntryAction, EntryResult};
use quick_cache::{OptionsBuilder, Weighter};

use crate::CacheEntry;

pub use quick_cache::Equivalent;

/// What an entry costs a [`BoundedCache`] besides its key's and value's own sizes: the slab slot's links and
/// state, the hash table slot and the ghost list share (approximate; measured against RSS in
/// docs/performance.md).
pub const ENTRY_OVERHEAD: usize = 48;

/// The least a shard's byte share is, when the byte bound allows: an MTA-STS policy body is at most 64 KiB (the
/// fetcher's limit), and a shard admits no entry heavier than most of its share.
const MIN_SHARD_BYTES: u64 = 256 << 10;

/// The fewest entries of the minimum weight a shard holds (as quick_cache does by default).
const MIN_SHARD_ENTRIES: usize = 32;

/// The approximate number of heap bytes a value owns (not counting `size_of::<Self>()` itself), for the byte
/// bound of a [`BoundedCache`]. It must not change while the value is in a cache.
///
/// ```
/// use std::sync::Arc;
/// use mtasts_cache::bounded::HeapSize;
/// assert_eq!(String::from("abc").heap_size(), 3);
/// assert!(Arc::<str>::from("abc").heap_size() >= 3);
/// ```
pub trait HeapSize {
    /// Heap bytes owned by `self`.
    fn heap_size(&self) -> usize;
}

impl HeapSize for () {
    fn heap_size(&self) -> usize {
        0
    }
}

impl HeapSize for String {
    fn heap_size(&self) -> usize {
        self.capacity()
    }
}

impl HeapSize for Box<str> {
    fn heap_size(&self) -> usize {
        self.len()
    }
}

impl HeapSize for Arc<str> {
    fn heap_size(&self) -> usize {
        // The two reference counts live with the string.
        2 * size_of::<usize>() + self.len()
    }
}

impl<T: HeapSize> HeapSize for Arc<T> {
    fn heap_size(&self) -> usize {
        // Counted in full for every holder: the bound is on what the cache may keep alive.
        2 * size_of::<usize>() + size_of::<T>() + T::heap_size(self)
    }
}

/// The policy's `mx` patterns and extensions (approximate: string lengths, vectors by their length).
impl HeapSize for Policy {
    fn heap_size(&self) -> usize {
        let mx: usize = self.mx().iter().map(|mx| mx.as_str().len()).sum();
        let extensions: usize = self
            .extensions()
            .iter()
            .map(|(key, value)| key.capacity() + value.capacity())
            .sum();
        size_of_val(self.mx()) + mx + size_of_val(self.extensions()) + extensions
    }
}

impl HeapSize for PolicyId {
    fn heap_size(&self) -> usize {
        self.as_str().len()
    }
}

impl HeapSize for CacheEntry {
    fn heap_size(&self) -> usize {
        self.policy_id.heap_size() + self.policy.heap_size()
    }
}

/// The weight of an entry: its size, at least `min` (see the [module docs](self)).
struct Weigh<K, V> {
    min: u64,
    _types: PhantomData<fn(&K, &V)>,
}

impl<K, V> Clone for Weigh<K, V> {
    fn clone(&self) -> Self {
        Self {
            min: self.min,
            _types: PhantomData,
        }
    }
}

impl<K: HeapSize, V: HeapSize> Weighter<K, V> for Weigh<K, V> {
    fn weight(&self, key: &K, value: &V) -> u64 {
        let size = size_of::<(K, V)>() + ENTRY_OVERHEAD + key.heap_size() + value.heap_size();
        u64::try_from(size).unwrap_or(u64::MAX).max(self.min)
    }
}

type Inner<K, V> = Cache<K, V, Weigh<K, V>, RandomState, DefaultLifecycle<K, V>>;

/// A concurrent map of at most `max_entries` entries weighing at most `max_bytes`; see the
/// [module docs](self).
pub struct BoundedCache<K, V> {
    inner: Inner<K, V>,
    max_entries: usize,
    max_bytes: u64,
}

impl<K, V> BoundedCache<K, V>
where
    K: Eq + Hash + Clone + HeapSize,
    V: Clone + HeapSize,
{
    /// A map of at most `max_entries` entries (at least 1) weighing at most `max_bytes` bytes (at least 1), with
    /// a shard count chosen from the number of CPUs (one per CPU: hits only read-lock a shard, and fewer shards
    /// share the capacity more evenly), the entries and the bytes.
    #[must_use]
    pub fn new(max_entries: usize, max_bytes: u64) -> Self {
        let cpus = std::thread::available_parallelism().map_or(4, std::num::NonZeroUsize::get);
        Self::with_shards(max_entries, max_bytes, cpus.next_power_of_two())
    }

    /// Like [`BoundedCache::new`], with at most `shards` shards (rounded down to a power of two, and fewer when
    /// a shard would hold fewer than 32 entries or, bytes permitting, less than 256 KiB).
    ///
    /// ```
    /// use mtasts_cache::bounded::BoundedCache;
    /// let cache: BoundedCache<String, String> = BoundedCache::with_shards(100, 1 << 20, 64);
    /// assert_eq!(cache.shard_count(), 2);
    /// ```
    #[must_use]
    pub fn with_shards(max_entries: usize, max_bytes: u64, shards: usize) -> Self {
        let entries = max_entries.max(1);
        let bytes = max_bytes.max(1);
        let mut count = prev_power_of_two(shards.max(1));
        while count > 1
            && (entries / count < MIN_SHARD_ENTRIES
                || (bytes >= MIN_SHARD_BYTES && bytes / (count as u64) < MIN_SHARD_BYTES))
        {
            count /= 2;
        }
        let per_shard = (entries / count).max(1) as u64;
        let min = (bytes / entries as u64).max(1);
        // Every shard holds at most `per_shard` entries of the minimum weight (`min * per_shard * count` is at
        // most `max_entries * max_bytes / max_entries`), and never more than its share of the bytes.
        let shard_weight = (min * per_shard).min(bytes / count as u64).max(1);
        let options = OptionsBuilder::new()
            .shards(count)
            .estimated_items_capacity(entries)
            .weight_capacity(shard_weight * count as u64)
            .build()
            .unwrap_or_else(|_| unreachable!("every option is set"));
        let weigh = Weigh {
            min,
            _types: PhantomData,
        };
        Self {
            inner: Cache::with_options(
                options,
                weigh,
                RandomState::new(),
                DefaultLifecycle::default(),
            ),
            max_entries: entries,
            max_bytes: bytes,
        }
    }

    /// The entry bound.
    #[must_use]
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The byte bound.
    #[must_use]
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The number of shards.
    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.inner.num_shards()
    }

    /// The current number of entries (a snapshot).
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the map is empty (a snapshot).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The accounted weight of the entries, in bytes (a snapshot): never above [`BoundedCache::max_bytes`].
    #[must_use]
    pub fn weight(&self) -> u64 {
        self.inner.weight()
    }

    /// A clone of the value for `key`, marking it as asked for (a read lock on one shard).
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.inner.get(key)
    }

    /// A clone of the value for `key`, without marking it.
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.inner.peek(key)
    }

    /// Inserts or replaces the value for `key`. May evict other entries; an entry too heavy for its shard is
    /// not kept (and an older value of `key` is dropped).
    pub fn insert(&self, key: K, value: V) {
        self.inner.insert(key, value);
    }

    /// Inserts `value` if `key` is absent or `replace(current)` returns true, atomically; returns whether it
    /// was stored. Used for "newer wins" writes.
    ///
    /// ```
    /// use mtasts_cache::bounded::BoundedCache;
    /// let cache: BoundedCache<String, String> = BoundedCache::new(10, 1 << 20);
    /// assert!(cache.insert_if("k", "5".into(), |old| old.as_str() < "5"));
    /// assert!(!cache.insert_if("k", "3".into(), |old| old.as_str() < "3"));
    /// assert_eq!(cache.get("k").as_deref(), Some("5"));
    /// ```
    pub fn insert_if<Q, F>(&self, key: &Q, value: V, replace: F) -> bool
    where
        Q: Hash + Equivalent<K> + ToOwned<Owned = K> + ?Sized,
        F: FnOnce(&V) -> bool,
    {
        let action = |_: &K, current: &mut V| {
            if replace(current) {
                EntryAction::ReplaceWithGuard
            } else {
                EntryAction::Retain(())
            }
        };
        match self.inner.entry(key, None, action) {
            EntryResult::Retained(()) => false,
            // Concurrent `insert_if`s of the key wait for this one. `Err`: a concurrent `insert`, `remove` or
            // `clear` took the key's slot meanwhile; it wins.
            EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => {
                guard.insert(value).is_ok()
            }
            EntryResult::Removed(..) | EntryResult::Timeout => {
                unreachable!("the action never removes and there is no timeout")
            }
        }
    }

    /// Removes and returns the value for `key`.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.inner.remove(key).map(|(_, value)| value)
    }

    /// Removes everything; returns how many entries there were (a snapshot when others insert meanwhile).
    pub fn clear(&self) -> usize {
        let n = self.inner.len();
        self.inner.clear();
        n
    }

    /// Calls `f` on every entry, one entry at a time (a read lock on its shard while the key and value are
    /// cloned, none while `f` runs). Entries inserted or removed meanwhile may or may not be seen. Nothing is
    /// marked as asked for.
    pub fn for_each<F>(&self, mut f: F)
    where
        F: FnMut(&K, &V),
    {
        for (key, value) in self.inner.iter() {
            f(&key, &value);
        }
    }
}

impl<K, V> fmt::Debug for BoundedCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedCache")
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// The largest power of two not above `n` (`n` ≥ 1).
fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Map = BoundedCache<u64, Box<str>>;

    impl HeapSize for u64 {
        fn heap_size(&self) -> usize {
            0
        }
    }

    #[test]
    fn never_exceeds_the_entry_bound() {
        for (entries, shards) in [(100, 1), (100, 8), (10_000, 8), (10_001, 64), (33, 4)] {
            let map = Map::with_shards(entries, 64 << 20, shards);
            for k in 0..(entries as u64 * 10) {
                map.insert(k, "x".into());
                assert!(map.len() <= entries, "{entries}/{shards}: {}", map.len());
            }
            // Every shard holds its share: only the rounding is lost.
            assert!(
                map.len() + map.shard_count() >= entries,
                "{entries}: {}",
                map.len()
            );
            assert!(map.weight() <= map.max_bytes());
        }
    }

    #[test]
    fn never_exceeds_the_byte_bound() {
        let map = Map::with_shards(10_000, 1 << 20, 8);
        assert_eq!(map.shard_count(), 4, "shards of at least 256 KiB");
        for k in 0..2_000u64 {
            map.insert(k, "y".repeat(10_000).into());
            assert!(map.weight() <= 1 << 20);
        }
        // 10 000 bytes each: about a hundred fit in 1 MiB.
        assert!((80..=104).contains(&map.len()), "{}", map.len());
    }

    #[test]
    fn too_heavy_an_entry_is_not_kept() {
        let map = Map::with_shards(100, 64 << 10, 1);
        map.insert(1, "small".into());
        map.insert(1, "z".repeat(64 << 10).into());
        assert_eq!(map.get(&1), None);
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn a_cyclic_scan_keeps_most_keys_hitting() {
        // N + 1 keys cycled over N entries: an LRU misses every time.
        for shards in [1, 2, 8] {
            let n = 10_000u64;
            let map = Map::with_shards(n as usize, 64 << 20, shards);
            let (mut hits, mut lookups) = (0u64, 0u64);
            for round in 0..5 {
                for k in 0..=n {
                    let hit = map.get(&k).is_some();
                    if !hit {
                        map.insert(k, "policy".into());
                    }
                    if round > 1 {
                        lookups += 1;
                        hits += u64::from(hit);
                    }
                }
            }
            let ratio = hits as f64 / lookups as f64;
            assert!(ratio > 0.95, "{shards} shards: hit ratio {ratio}");
        }
    }

    #[test]
    fn a_hot_set_survives_a_scan() {
        let map = Map::with_shards(1_000, 64 << 20, 1);
        for round in 0..3 {
            for k in 0..100u64 {
                if map.get(&k).is_none() {
                    map.insert(k, "hot".into());
                }
            }
            // A one-off scan of twice the capacity.
            for k in 0..2_000u64 {
                map.insert(1_000_000 * (round + 1) + k, "cold".into());
            }
        }
        let kept = (0..100u64).filter(|k| map.peek(k).is_some()).count();
        assert_eq!(kept, 100);
    }

    #[test]
    fn insert_if_keeps_newer_values() {
        let map = Map::new(10, 1 << 20);
        assert!(map.insert_if(&1, "b".into(), |old| **old < *"b"));
        assert!(!map.insert_if(&1, "a".into(), |old| **old < *"a"));
        assert!(map.insert_if(&1, "c".into(), |old| **old < *"c"));
        assert_eq!(map.get(&1).as_deref(), Some("c"));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn for_each_remove_and_clear() {
        let map = Map::new(100, 1 << 20);
        for k in 0..10u64 {
            map.insert(k, k.to_string().into());
        }
        let mut seen = Vec::new();
        map.for_each(|k, v| {
            assert_eq!(k.to_string(), **v);
            seen.push(*k);
        });
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(map.remove(&3).as_deref(), Some("3"));
        assert_eq!(map.remove(&3), None);
        assert_eq!(map.clear(), 9);
        assert!(map.is_empty());
        assert_eq!(map.weight(), 0);
    }

    #[test]
    fn shard_counts() {
        assert_eq!(prev_power_of_two(1), 1);
        assert_eq!(prev_power_of_two(12), 8);
        assert_eq!(Map::with_shards(0, 0, 0).max_entries(), 1);
        assert_eq!(Map::with_shards(0, 0, 0).shard_count(), 1);
        assert_eq!(Map::with_shards(10_000, 64 << 20, 8).shard_count(), 8);
        assert_eq!(
            Map::with_shards(1_000_000, 64 << 20, 1024).shard_count(),
            256
        );
    }
}
