//! Looking at what the engine holds, for administration (the daemon's control socket): one domain's memory
//! entry, the policies in memory page by page, and purging everything. None of it counts as a lookup.

use mtasts_cache::{CacheError, PolicyCache};
use std::collections::BinaryHeap;
use std::sync::Arc;
use tokio::time::Instant;

use crate::clock::Now;
use crate::engine::Engine;
use crate::freshness::FrontEntry;
use crate::resolution::ResolvedPolicy;

/// What the engine's memory holds for one domain, with its times as wall-clock Unix seconds.
///
/// The engine keeps these deadlines on a monotonic clock; they are converted at the time of the call, so a wall
/// clock stepped since then shifts them by the step.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MemoryEntry {
    /// The policy held (possibly expired: see [`ResolvedPolicy::is_valid_at`]), or none: a cached "no policy"
    /// answer or a failure back-off.
    pub policy: Option<Arc<ResolvedPolicy>>,
    /// When the policy was last confirmed current (a TXT id check or an HTTPS fetch); `None` without a policy,
    /// or when that was longer ago than the monotonic clock reaches.
    pub checked_at: Option<u64>,
    /// Until when lookups are answered from memory alone; then the store, and maybe the network, are asked.
    pub fresh_until: u64,
    /// Until when the domain is not discovered again after a failure (RFC 8461 §3.3), if it is backing off.
    pub retry_after: Option<u64>,
}

impl MemoryEntry {
    fn of(entry: &FrontEntry, now: &Now) -> Self {
        Self {
            policy: entry.policy.as_ref().map(|held| Arc::clone(&held.policy)),
            checked_at: entry.checked.map(|at| wall_secs(at, now)),
            fresh_until: wall_secs(entry.fresh_until, now),
            retry_after: entry
                .retry_after
                .filter(|until| *until > now.mono)
                .map(|until| wall_secs(until, now)),
        }
    }
}

/// The wall-clock second of the monotonic time `at`.
fn wall_secs(at: Instant, now: &Now) -> u64 {
    let wall = if at >= now.mono {
        now.wall.saturating_add(at - now.mono)
    } else {
        now.wall.saturating_sub(now.mono - at)
    };
    wall.as_secs()
}

/// A domain and its memory entry, ordered by domain (for a page of the smallest domains).
struct ByDomain(String, MemoryEntry);

impl PartialEq for ByDomain {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for ByDomain {}

impl PartialOrd for ByDomain {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByDomain {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl Engine {
    /// What memory holds for `domain` (a normalised policy domain), without touching the store or the network,
    /// and without counting a lookup or marking the entry as asked for (eviction is unchanged).
    #[must_use]
    pub fn memory_entry(&self, domain: &str) -> Option<MemoryEntry> {
        let entry = self.inner.front.peek(domain)?;
        Some(MemoryEntry::of(&entry, &Now::read(&*self.inner.clock)))
    }

    /// The policies held in memory, in domain order: at most `limit` of them, for the domains after `after`
    /// (keyset paging: pass the last domain of a page to get the next; an empty page ends). "No policy" answers
    /// and back-offs without a policy are left out.
    ///
    /// Each call walks the whole memory front (one shard locked at a time) and keeps the `limit` smallest
    /// domains: O(entries × log `limit`).
    #[must_use]
    pub fn memory_policies(&self, after: Option<&str>, limit: usize) -> Vec<(String, MemoryEntry)> {
        if limit == 0 {
            return Vec::new();
        }
        let now = Now::read(&*self.inner.clock);
        // A max-heap of the `limit` smallest domains seen so far.
        let mut page: BinaryHeap<ByDomain> = BinaryHeap::with_capacity(limit.min(4096) + 1);
        self.inner.front.for_each(|key, entry| {
            if entry.policy.is_none() || after.is_some_and(|after| &**key <= after) {
                return;
            }
            if page.len() == limit && page.peek().is_some_and(|largest| **key >= *largest.0) {
                return;
            }
            page.push(ByDomain(key.to_string(), MemoryEntry::of(entry, &now)));
            if page.len() > limit {
                page.pop();
            }
        });
        page.into_sorted_vec()
            .into_iter()
            .map(|ByDomain(domain, entry)| (domain, entry))
            .collect()
    }

    /// Forgets every domain, in memory (DANE answers too) and in the store: the next lookups discover them
    /// afresh; discoveries already running keep their results neither in memory nor in the store. Returns how
    /// many policies were removed: from the store when there is one, else from memory.
    ///
    /// # Errors
    ///
    /// The store's error when it could not remove its entries (memory is emptied anyway).
    pub async fn purge_all(&self) -> Result<u64, CacheError> {
        // A discovery running now keeps its result neither in memory nor in the store.
        self.inner.purging();
        let mut in_memory = 0u64;
        self.inner.front.for_each(|_, entry| {
            in_memory += u64::from(entry.policy.is_some());
        });
        self.inner.front.clear();
        self.inner.dane.front.clear();
        // A write queued before the purge is dropped or done before the store is emptied.
        self.flush_store_writes().await;
        match &self.inner.store {
            Some(store) => store.clear().await,
            None => Ok(in_memory),
        }
    }

    /// The persistent store behind the memory front, if there is one.
    #[must_use]
    pub fn store(&self) -> Option<&Arc<dyn PolicyCache>> {
        self.inner.store.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mtasts_core::PolicyDomain;

    use super::*;
    use crate::{Discover, Discovery, DiscoveryRequest, ManualClock, async_trait};

    /// Every domain publishes one policy, except those starting with `none`, which publish none.
    #[derive(Debug)]
    struct Publishing;

    #[async_trait]
    impl Discover for Publishing {
        async fn discover(&self, request: &DiscoveryRequest<'_>) -> Discovery {
            if request.domain.as_str().starts_with("none") {
                return Discovery::NoPolicy {
                    reason: crate::NoPolicyReason::NxDomain,
                    negative_ttl: None,
                };
            }
            Discovery::Fetched {
                id: "id1".parse().expect("id"),
                policy: "version: STSv1\nmode: enforce\nmax_age: 600\nmx: mx.example\n"
                    .parse()
                    .expect("policy"),
            }
        }
    }

    async fn engine_with(domains: &[&str]) -> (Engine, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let engine = Engine::builder(Publishing)
            .clock(Arc::clone(&clock) as Arc<dyn crate::Clock>)
            .cache_grace(Duration::from_secs(60))
            .build();
        for d in domains {
            let domain = PolicyDomain::parse(d).expect("domain");
            engine.resolve(&domain, Duration::from_secs(4)).await;
        }
        (engine, clock)
    }

    #[tokio::test(start_paused = true)]
    async fn a_memory_entry_in_wall_clock_seconds() {
        let (engine, clock) = engine_with(&["a.example", "none.example"]).await;
        clock.advance(Duration::from_secs(10));
        let entry = engine.memory_entry("a.example").expect("held");
        let policy = entry.policy.as_ref().expect("a policy");
        assert_eq!(
            (policy.fetched_at(), entry.checked_at, entry.fresh_until),
            (1_000_000, Some(1_000_000), 1_000_060)
        );
        assert_eq!(entry.retry_after, None);
        let none = engine
            .memory_entry("none.example")
            .expect("no policy is held too");
        assert!(
            none.policy.is_none() && none.fresh_until >= 1_000_060,
            "{none:?}"
        );
        assert!(engine.memory_entry("other.example").is_none());
        assert_eq!(
            engine.stats().memory_hits.get(),
            0,
            "looking is not a lookup"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn memory_policies_page_in_domain_order_without_no_policy_entries() {
        let (engine, _) = engine_with(&[
            "d.example",
            "b.example",
            "none.example",
            "a.example",
            "c.example",
        ])
        .await;
        let names = |page: Vec<(String, MemoryEntry)>| -> Vec<String> {
            page.into_iter().map(|(d, _)| d).collect()
        };
        assert_eq!(
            names(engine.memory_policies(None, 2)),
            ["a.example", "b.example"]
        );
        assert_eq!(
            names(engine.memory_policies(Some("b.example"), 2)),
            ["c.example", "d.example"]
        );
        assert!(engine.memory_policies(Some("d.example"), 2).is_empty());
        assert!(engine.memory_policies(None, 0).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn purge_all_empties_memory_and_the_store() {
        let (engine, _) = engine_with(&["a.example", "b.example", "none.example"]).await;
        assert_eq!(engine.purge_all().await.expect("memory only"), 2);
        assert!(engine.memory_entry("a.example").is_none());
        assert!(engine.memory_entry("none.example").is_none());

        let store: Arc<dyn PolicyCache> = Arc::new(mtasts_cache::MemoryCache::default());
        let engine = Engine::builder(Publishing)
            .store(Arc::clone(&store))
            .build();
        for d in ["a.example", "b.example", "c.example"] {
            let domain = PolicyDomain::parse(d).expect("domain");
            engine.resolve(&domain, Duration::from_secs(4)).await;
        }
        assert!(engine.store().is_some());
        // Store writes end after the answer.
        engine.flush_store_writes().await;
        assert_eq!(store.scan(None, 10).await.expect("scan").entries.len(), 3);
        assert_eq!(engine.purge_all().await.expect("purge"), 3);
        assert!(store.get("a.example").await.expect("get").is_none());
        assert!(engine.memory_entry("a.example").is_none());
    }
}
