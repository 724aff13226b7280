//! The memory front: what the engine keeps per domain in memory ([`FrontEntry`]), bounded by entries and bytes
//! in a scan-resistant [`BoundedCache`] (CLOCK eviction; what is read from the store passes a TinyLFU admission
//! filter, what a discovery learnt is always kept).
//!
//! Each entry weighs its approximate heap size: the key, the entry, and the policy it holds (its id, `mx`
//! patterns and extensions, plus an allowance for the value an embedder derives from it with
//! [`ResolvedPolicy::derived`], e.g. the daemon's rendered reply). The weight is fixed when the entry is stored:
//! the derived value is set later, so it is estimated from the policy.

use std::mem::size_of;

use mtasts_cache::bounded::{BoundedCache, HeapSize};

use crate::freshness::FrontEntry;
use crate::resolution::ResolvedPolicy;

/// The memory front, keyed by policy domain.
pub(crate) type Front = BoundedCache<Box<str>, FrontEntry>;

/// The allowance for a derived value besides the `mx` text it may repeat. The daemon's is boxed and holds the
/// domain, four boxed reply slots, the one rendering a server usually uses and a reply's fixed words: about
/// 256 bytes.
const DERIVED_ALLOWANCE: usize = 256;

impl HeapSize for ResolvedPolicy {
    fn heap_size(&self) -> usize {
        let mx: usize = self.policy().mx().iter().map(|mx| mx.as_str().len()).sum();
        self.id().heap_size() + self.policy().heap_size() + DERIVED_ALLOWANCE + mx
    }
}

impl HeapSize for FrontEntry {
    fn heap_size(&self) -> usize {
        self.policy.as_ref().map_or(0, |held| {
            // The policy is shared with lookups in progress; counted in full here.
            2 * size_of::<usize>() + size_of::<ResolvedPolicy>() + held.policy.heap_size()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use std::sync::Arc;

    use super::*;
    use crate::freshness::Held;

    fn entry(mx: usize) -> FrontEntry {
        let lines: String = (0..mx)
            .map(|i| format!("mx: mx{i:05}.example.net\n"))
            .collect();
        let policy = format!("version: STSv1\nmode: testing\nmax_age: 86400\n{lines}");
        let policy = ResolvedPolicy::new("id".parse().unwrap(), policy.parse().unwrap(), 0);
        let now = Instant::now();
        FrontEntry {
            policy: Some(Held {
                policy: Arc::new(policy),
                expires: now + Duration::from_secs(60),
            }),
            checked: Some(now),
            fresh_until: now,
            retry_after: None,
        }
    }

    #[test]
    fn an_entry_weighs_about_its_policy() {
        let small = entry(2).heap_size();
        assert!((200..1_000).contains(&small), "{small}");
        // Each `mx` line of 18 characters adds its pattern, its text again for the derived reply and a slot.
        let big = entry(2_002).heap_size();
        let per_mx = (big - small) / 2_000;
        assert!((18 * 2 + 24..=18 * 2 + 32).contains(&per_mx), "{per_mx}");
        let none = FrontEntry {
            policy: None,
            ..entry(1)
        };
        assert_eq!(none.heap_size(), 0);
    }
}
