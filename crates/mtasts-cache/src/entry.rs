//! The cached value.

use mtasts_core::{Policy, PolicyId};

/// What a store keeps for one policy domain.
///
/// `checked_at` orders writes ([`PolicyCache::set`](crate::PolicyCache::set): newer wins); `fetched_at` is when
/// the policy body was last fetched over HTTPS, from which its `max_age` counts (RFC 8461 §5.1).
#[derive(Clone, Debug, PartialEq)]
pub struct CacheEntry {
    /// Last time the policy was confirmed current (TXT id check or HTTPS fetch), Unix seconds.
    ///
    /// This is the Python daemon's `ts`.
    pub checked_at: u64,
    /// Last successful HTTPS fetch, Unix seconds (RFC 8461 §5.1: `max_age` counts from here).
    ///
    /// Equal to `checked_at` for entries written by the Python daemon, which has no such field.
    pub fetched_at: u64,
    /// The policy id from the `_mta-sts` TXT record (RFC 8461 §3.1).
    pub policy_id: PolicyId,
    /// The policy itself (RFC 8461 §3.2).
    pub policy: Policy,
}

impl CacheEntry {
    /// An entry for a policy just fetched at `fetched_at` (so `checked_at == fetched_at`).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mtasts_cache::CacheEntry;
    /// let policy = "version: STSv1\nmode: testing\nmax_age: 600\nmx: *.example.net\n".parse()?;
    /// let entry = CacheEntry::new(1_700_000_000, "abc123".parse()?, policy);
    /// assert_eq!(entry.checked_at, entry.fetched_at);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn new(fetched_at: u64, policy_id: PolicyId, policy: Policy) -> Self {
        Self {
            checked_at: fetched_at,
            fetched_at,
            policy_id,
            policy,
        }
    }

    /// This entry with `checked_at` moved to `now` (the TXT id was confirmed unchanged); `fetched_at` stays.
    #[must_use]
    pub fn checked(mut self, now: u64) -> Self {
        self.checked_at = now;
        self
    }
}
