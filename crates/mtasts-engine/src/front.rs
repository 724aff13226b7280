//! The memory front: a bounded, sharded LRU map with O(1) get, insert and remove.
//!
//! Each shard is a `std::sync::Mutex` over a hash map from key to slot index and a slab of slots linked into a
//! recency list by indices (no `unsafe`). A lock is held only for the map operation itself, never across an
//! `.await`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

const NIL: usize = usize::MAX;
const MAX_SHARDS: usize = 16;

/// A bounded concurrent LRU map from domain to `V`.
pub(crate) struct Front<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    hasher: RandomState,
}

impl<V> Front<V> {
    /// A map holding at most `capacity` entries (at least 1) in total.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let n = capacity.min(MAX_SHARDS);
        let shards = (0..n)
            .map(|i| Mutex::new(Shard::new(capacity / n + usize::from(i < capacity % n))))
            .collect();
        Self {
            shards,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard<V>> {
        // The high bits: the shard's own map uses another hasher, but keep the choice independent of it anyway.
        let hash = self.hasher.hash_one(key);
        let index = usize::try_from(hash >> 32).unwrap_or(0) % self.shards.len();
        // A panic while holding a shard lock cannot leave the structure half-updated in a way that matters more
        // than losing the lookup, so a poisoned lock is used as is.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `f` to the entry for `key`, marking it most recently used.
    pub(crate) fn get_with<R>(&self, key: &str, f: impl FnOnce(&V) -> R) -> Option<R> {
        let mut shard = self.shard(key);
        shard.get(key).map(f)
    }

    /// Applies `f` to the entry for `key` without touching its recency.
    pub(crate) fn peek_with<R>(&self, key: &str, f: impl FnOnce(&V) -> R) -> Option<R> {
        let shard = self.shard(key);
        shard.peek(key).map(f)
    }

    /// Inserts or replaces the entry for `key`, evicting the least recently used entry of its shard when full.
    pub(crate) fn insert(&self, key: &str, value: V) {
        self.shard(key).insert(key, value);
    }

    /// Removes the entry for `key`; `true` if there was one.
    pub(crate) fn remove(&self, key: &str) -> bool {
        self.shard(key).remove(key)
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).slots.len())
            .sum()
    }

    /// Collects `f(key, value)` for every entry for which it returns `Some`, shard by shard (one lock at a time).
    pub(crate) fn collect<R>(&self, mut f: impl FnMut(&str, &V) -> Option<R>) -> Vec<R> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            out.extend(
                shard
                    .slots
                    .iter()
                    .filter_map(|slot| f(&slot.key, &slot.value)),
            );
        }
        out
    }
}

struct Slot<V> {
    key: Arc<str>,
    value: V,
    prev: usize,
    next: usize,
}

struct Shard<V> {
    map: HashMap<Arc<str>, usize>,
    slots: Vec<Slot<V>>,
    /// Most recently used.
    head: usize,
    /// Least recently used: evicted first.
    tail: usize,
    capacity: usize,
}

impl<V> Shard<V> {
    fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity: capacity.max(1),
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.slots[i].prev, self.slots[i].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next].prev = prev;
        }
    }

    fn push_front(&mut self, i: usize) {
        self.slots[i].prev = NIL;
        self.slots[i].next = self.head;
        if self.head == NIL {
            self.tail = i;
        } else {
            self.slots[self.head].prev = i;
        }
        self.head = i;
    }

    fn touch(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    fn get(&mut self, key: &str) -> Option<&V> {
        let i = *self.map.get(key)?;
        self.touch(i);
        Some(&self.slots[i].value)
    }

    fn peek(&self, key: &str) -> Option<&V> {
        self.map.get(key).map(|&i| &self.slots[i].value)
    }

    fn insert(&mut self, key: &str, value: V) {
        if let Some(&i) = self.map.get(key) {
            self.slots[i].value = value;
            self.touch(i);
            return;
        }
        let key: Arc<str> = Arc::from(key);
        if self.slots.len() < self.capacity {
            let i = self.slots.len();
            self.slots.push(Slot {
                key: Arc::clone(&key),
                value,
                prev: NIL,
                next: NIL,
            });
            self.map.insert(key, i);
            self.push_front(i);
        } else {
            // Full (capacity >= 1, so there is a tail): reuse the least recently used slot.
            let i = self.tail;
            self.unlink(i);
            let old = std::mem::replace(&mut self.slots[i].key, Arc::clone(&key));
            self.map.remove(&old);
            self.slots[i].value = value;
            self.map.insert(key, i);
            self.push_front(i);
        }
    }

    fn remove(&mut self, key: &str) -> bool {
        let Some(i) = self.map.remove(key) else {
            return false;
        };
        self.unlink(i);
        let last = self.slots.len() - 1;
        if i != last {
            // Move the last slot into the hole and repoint its neighbours and its map entry.
            self.slots.swap(i, last);
            let (prev, next) = (self.slots[i].prev, self.slots[i].next);
            if prev == NIL {
                self.head = i;
            } else {
                self.slots[prev].next = i;
            }
            if next == NIL {
                self.tail = i;
            } else {
                self.slots[next].prev = i;
            }
            if let Some(index) = self.map.get_mut(&*self.slots[i].key) {
                *index = i;
            }
        }
        self.slots.pop();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_in_order(shard: &Shard<u32>) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = shard.head;
        while i != NIL {
            out.push(shard.slots[i].key.to_string());
            i = shard.slots[i].next;
        }
        out
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut shard = Shard::new(2);
        shard.insert("a", 1);
        shard.insert("b", 2);
        assert_eq!(shard.get("a"), Some(&1));
        shard.insert("c", 3);
        assert_eq!(shard.peek("b"), None);
        assert_eq!(shard.peek("a"), Some(&1));
        assert_eq!(keys_in_order(&shard), ["c", "a"]);
    }

    #[test]
    fn replace_keeps_one_slot_and_refreshes_recency() {
        let mut shard = Shard::new(2);
        shard.insert("a", 1);
        shard.insert("b", 2);
        shard.insert("a", 10);
        assert_eq!(shard.slots.len(), 2);
        shard.insert("c", 3);
        assert_eq!(shard.peek("a"), Some(&10));
        assert_eq!(shard.peek("b"), None);
    }

    #[test]
    fn remove_middle_head_and_tail_keeps_links_consistent() {
        let mut shard = Shard::new(8);
        for (i, k) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            shard.insert(k, u32::try_from(i).unwrap_or(0));
        }
        assert!(shard.remove("c"));
        assert!(!shard.remove("c"));
        assert_eq!(keys_in_order(&shard), ["e", "d", "b", "a"]);
        assert!(shard.remove("e"));
        assert!(shard.remove("a"));
        assert_eq!(keys_in_order(&shard), ["d", "b"]);
        assert_eq!(shard.peek("b"), Some(&1));
        assert_eq!(shard.peek("d"), Some(&3));
        shard.insert("f", 5);
        assert_eq!(keys_in_order(&shard), ["f", "d", "b"]);
        assert!(shard.remove("b"));
        assert!(shard.remove("d"));
        assert!(shard.remove("f"));
        assert_eq!(shard.head, NIL);
        assert_eq!(shard.tail, NIL);
    }

    #[test]
    fn front_is_bounded_in_total() {
        let front = Front::new(100);
        for i in 0..1_000 {
            front.insert(&format!("d{i}.example"), i);
        }
        assert_eq!(front.len(), 100);
        // The most recent insert survives.
        assert_eq!(front.peek_with("d999.example", |v| *v), Some(999));
    }

    #[test]
    fn capacity_zero_means_one() {
        let front = Front::new(0);
        front.insert("a", 1);
        front.insert("b", 2);
        assert_eq!(front.len(), 1);
        assert_eq!(front.get_with("b", |v| *v), Some(2));
        assert!(front.remove("b"));
        assert_eq!(front.len(), 0);
    }
}
