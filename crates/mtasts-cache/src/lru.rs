//! A bounded, sharded, concurrent LRU map.
//!
//! [`ShardedLru`] splits its capacity over several shards, each a `std::sync::Mutex` around an O(1) LRU list
//! (a hash map into a dense slot vector linked as a doubly linked list). A key always lives in the shard its
//! hash selects, so operations on different keys rarely contend. Locks are held only for the few instructions
//! of one operation and never across an `.await`.
//!
//! Recency is tracked per shard: when a shard is full its least recently used entry is evicted, even if another
//! shard has older ones. The total number of entries never exceeds [`ShardedLru::capacity`].
//!
//! ```
//! use mtasts_cache::lru::ShardedLru;
//!
//! let lru: ShardedLru<String, u32> = ShardedLru::with_shards(2, 1);
//! lru.insert("a".to_owned(), 1);
//! lru.insert("b".to_owned(), 2);
//! assert_eq!(lru.get("a"), Some(1)); // "a" is now the most recently used
//! lru.insert("c".to_owned(), 3);     // evicts "b"
//! assert_eq!(lru.get("b"), None);
//! assert_eq!(lru.len(), 2);
//! ```

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard, PoisonError};

const NIL: usize = usize::MAX;
const MAX_SHARDS: usize = 64;

/// A bounded LRU map safe to share between threads and tasks; see the [module docs](self).
pub struct ShardedLru<K, V, S = RandomState> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    hasher: S,
    capacity: usize,
}

impl<K, V> ShardedLru<K, V>
where
    K: Hash + Eq + Clone,
{
    /// A map holding at most `capacity` entries (at least 1), with a shard count chosen from the number of CPUs.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let cpus = std::thread::available_parallelism().map_or(4, std::num::NonZeroUsize::get);
        Self::with_shards(capacity, (cpus * 4).next_power_of_two())
    }

    /// A map holding at most `capacity` entries (at least 1) in `shards` shards (between 1 and 64, and no more
    /// than `capacity`).
    #[must_use]
    pub fn with_shards(capacity: usize, shards: usize) -> Self {
        Self::with_shards_and_hasher(capacity, shards, RandomState::new())
    }
}

impl<K, V, S> ShardedLru<K, V, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Like [`ShardedLru::with_shards`], with the hasher that selects a key's shard.
    pub fn with_shards_and_hasher(capacity: usize, shards: usize, hasher: S) -> Self {
        let capacity = capacity.max(1);
        let count = shards.clamp(1, MAX_SHARDS).min(capacity);
        let shards = (0..count)
            .map(|i| {
                let cap = capacity / count + usize::from(i < capacity % count);
                Mutex::new(Shard::new(cap))
            })
            .collect();
        Self {
            shards,
            hasher,
            capacity,
        }
    }

    /// The maximum number of entries.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of shards.
    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The current number of entries (a snapshot; others may be changing it).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Whether the map is empty (a snapshot).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| lock(s).map.is_empty())
    }

    fn shard<Q>(&self, key: &Q) -> MutexGuard<'_, Shard<K, V>>
    where
        Q: Hash + ?Sized,
    {
        // `Borrow` guarantees that a key and its borrowed form hash alike, so both select the same shard.
        let hash = self.hasher.hash_one(key);
        // The modulo result is below the shard count, which is a usize.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "value is below shards.len()"
        )]
        let index = (hash % self.shards.len() as u64) as usize;
        lock(&self.shards[index])
    }

    /// A clone of the value for `key`, marking it most recently used.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let mut shard = self.shard(key);
        let index = *shard.map.get(key)?;
        shard.touch(index);
        Some(shard.slots[index].value.clone())
    }

    /// A clone of the value for `key`, without changing its recency.
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let shard = self.shard(key);
        let index = *shard.map.get(key)?;
        Some(shard.slots[index].value.clone())
    }

    /// Inserts or replaces the value for `key` (now most recently used); returns the previous value. May evict
    /// the shard's least recently used entry.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        let mut shard = self.shard(&key);
        shard.upsert(key, value, |_| true).1
    }

    /// Inserts `value` if `key` is absent or `replace(current)` returns true, atomically; returns whether it
    /// was stored. Used for "newer wins" writes.
    ///
    /// ```
    /// use mtasts_cache::lru::ShardedLru;
    /// let lru: ShardedLru<&str, u64> = ShardedLru::new(10);
    /// assert!(lru.insert_if("k", 5, |old| *old < 5));
    /// assert!(!lru.insert_if("k", 3, |old| *old < 3));
    /// assert_eq!(lru.get("k"), Some(5));
    /// ```
    pub fn insert_if<F>(&self, key: K, value: V, replace: F) -> bool
    where
        F: FnOnce(&V) -> bool,
    {
        let mut shard = self.shard(&key);
        shard.upsert(key, value, replace).0
    }

    /// Removes and returns the value for `key`.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = self.shard(key);
        let index = shard.map.remove(key)?;
        Some(shard.remove_slot(index).value)
    }

    /// Removes everything; returns how many entries there were.
    pub fn clear(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let mut shard = lock(s);
                let n = shard.map.len();
                shard.clear();
                n
            })
            .sum()
    }

    /// Calls `f` on every entry, one shard at a time (each shard is locked while `f` runs on its entries, so keep
    /// `f` short and do not call back into this map from it). Recency is unchanged.
    pub fn for_each<F>(&self, mut f: F)
    where
        F: FnMut(&K, &V),
    {
        for s in &self.shards {
            let shard = lock(s);
            for node in &shard.slots {
                f(&node.key, &node.value);
            }
        }
    }
}

impl<K, V, S> fmt::Debug for ShardedLru<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedLru")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// Locks a shard; a poisoned lock (a panic elsewhere while it was held) still holds a consistent list, because
/// every mutation completes before any code that could panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Node<K, V> {
    key: K,
    value: V,
    prev: usize,
    next: usize,
}

/// One LRU list. `slots` is dense (removal swaps the last slot into the hole), `head` is the most recently used.
struct Shard<K, V> {
    map: HashMap<K, usize>,
    slots: Vec<Node<K, V>>,
    head: usize,
    tail: usize,
    cap: usize,
}

impl<K, V> Shard<K, V>
where
    K: Hash + Eq + Clone,
{
    fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            cap,
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.slots.clear();
        self.head = NIL;
        self.tail = NIL;
    }

    fn unlink(&mut self, index: usize) {
        let (prev, next) = (self.slots[index].prev, self.slots[index].next);
        self.point_neighbours(prev, next, next, prev);
    }

    /// Makes the node before a node (`prev`, or the head if none) point forward to `forward`, and the node
    /// after it (`next`, or the tail if none) point back to `back`.
    fn point_neighbours(&mut self, prev: usize, next: usize, forward: usize, back: usize) {
        if prev == NIL {
            self.head = forward;
        } else {
            self.slots[prev].next = forward;
        }
        if next == NIL {
            self.tail = back;
        } else {
            self.slots[next].prev = back;
        }
    }

    fn push_front(&mut self, index: usize) {
        self.slots[index].prev = NIL;
        self.slots[index].next = self.head;
        if self.head == NIL {
            self.tail = index;
        } else {
            self.slots[self.head].prev = index;
        }
        self.head = index;
    }

    fn touch(&mut self, index: usize) {
        if self.head != index {
            self.unlink(index);
            self.push_front(index);
        }
    }

    /// Removes slot `index` (already removed from `map`), moving the last slot into its place.
    fn remove_slot(&mut self, index: usize) -> Node<K, V> {
        self.unlink(index);
        let last = self.slots.len() - 1;
        if index != last {
            // Relink the node that is about to move from `last` to `index`.
            let (prev, next) = (self.slots[last].prev, self.slots[last].next);
            self.point_neighbours(prev, next, index, index);
            if let Some(i) = self.map.get_mut(&self.slots[last].key) {
                *i = index;
            }
        }
        self.slots.swap_remove(index)
    }

    fn upsert<F>(&mut self, key: K, value: V, replace: F) -> (bool, Option<V>)
    where
        F: FnOnce(&V) -> bool,
    {
        if let Some(&index) = self.map.get(&key) {
            if !replace(&self.slots[index].value) {
                return (false, None);
            }
            let old = std::mem::replace(&mut self.slots[index].value, value);
            self.touch(index);
            return (true, Some(old));
        }
        if self.slots.len() >= self.cap && self.tail != NIL {
            let tail = self.tail;
            self.map.remove(&self.slots[tail].key);
            self.remove_slot(tail);
        }
        let index = self.slots.len();
        self.slots.push(Node {
            key: key.clone(),
            value,
            prev: NIL,
            next: NIL,
        });
        self.map.insert(key, index);
        self.push_front(index);
        (true, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(lru: &ShardedLru<u32, u32>) -> Vec<u32> {
        // Single shard: walk from most to least recently used.
        let shard = lock(&lru.shards[0]);
        let mut out = Vec::new();
        let mut i = shard.head;
        while i != NIL {
            out.push(shard.slots[i].key);
            i = shard.slots[i].next;
        }
        out
    }

    #[test]
    fn evicts_least_recently_used() {
        let lru = ShardedLru::with_shards(3, 1);
        for k in 1..=3 {
            lru.insert(k, k * 10);
        }
        assert_eq!(lru.get(&1), Some(10));
        lru.insert(4, 40);
        assert_eq!(lru.get(&2), None);
        assert_eq!(order(&lru), vec![4, 1, 3]);
        assert_eq!(lru.len(), 3);
    }

    #[test]
    fn peek_does_not_promote() {
        let lru = ShardedLru::with_shards(2, 1);
        lru.insert(1, 1);
        lru.insert(2, 2);
        assert_eq!(lru.peek(&1), Some(1));
        lru.insert(3, 3);
        assert_eq!(lru.peek(&1), None);
    }

    #[test]
    fn remove_relinks_moved_slot() {
        let lru = ShardedLru::with_shards(10, 1);
        for k in 0..5 {
            lru.insert(k, k);
        }
        assert_eq!(lru.remove(&1), Some(1));
        assert_eq!(lru.remove(&1), None);
        assert_eq!(order(&lru), vec![4, 3, 2, 0]);
        assert_eq!(lru.remove(&4), Some(4));
        assert_eq!(order(&lru), vec![3, 2, 0]);
        assert_eq!(lru.remove(&0), Some(0));
        assert_eq!(order(&lru), vec![3, 2]);
        for k in [2, 3] {
            assert_eq!(lru.get(&k), Some(k));
        }
        assert_eq!(order(&lru), vec![3, 2]);
    }

    #[test]
    fn insert_replaces_and_returns_old() {
        let lru = ShardedLru::with_shards(2, 1);
        assert_eq!(lru.insert(1, 1), None);
        assert_eq!(lru.insert(1, 2), Some(1));
        assert_eq!(lru.len(), 1);
        assert!(!lru.insert_if(1, 0, |old| *old < 0));
        assert_eq!(lru.get(&1), Some(2));
    }

    #[test]
    fn never_exceeds_capacity_across_shards() {
        let lru = ShardedLru::with_shards(100, 8);
        for k in 0..10_000 {
            lru.insert(k, k);
        }
        assert!(lru.len() <= 100);
        assert!(lru.len() > 50, "shards should all be in use");
        let n = lru.len();
        assert_eq!(lru.clear(), n);
        assert!(lru.is_empty());
    }

    #[test]
    fn shard_count_is_bounded() {
        assert_eq!(ShardedLru::<u8, u8>::with_shards(0, 0).capacity(), 1);
        assert_eq!(ShardedLru::<u8, u8>::with_shards(3, 16).shard_count(), 3);
        assert_eq!(
            ShardedLru::<u8, u8>::with_shards(10_000, 1000).shard_count(),
            MAX_SHARDS
        );
    }

    #[test]
    fn random_operations_match_a_model() {
        // A tiny model: a Vec ordered from least to most recently used.
        let lru = ShardedLru::with_shards(8, 1);
        let mut model: Vec<(u32, u32)> = Vec::new();
        let mut x: u32 = 12345;
        for step in 0..5_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let key = x % 16;
            match x % 3 {
                0 => {
                    lru.insert(key, step);
                    model.retain(|(k, _)| *k != key);
                    if model.len() == 8 {
                        model.remove(0);
                    }
                    model.push((key, step));
                }
                1 => {
                    let want = model
                        .iter()
                        .position(|(k, _)| *k == key)
                        .map(|i| model.remove(i));
                    if let Some(e) = want {
                        model.push(e);
                    }
                    assert_eq!(lru.get(&key), want.map(|(_, v)| v));
                }
                _ => {
                    let want = model
                        .iter()
                        .position(|(k, _)| *k == key)
                        .map(|i| model.remove(i).1);
                    assert_eq!(lru.remove(&key), want);
                }
            }
            let expect: Vec<u32> = model.iter().rev().map(|(k, _)| *k).collect();
            assert_eq!(order(&lru), expect);
        }
    }
}
