//! What a lookup returns.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};

use mtasts_cache::CacheEntry;
use mtasts_core::{Mode, Policy, PolicyId};

/// The answer to [`Engine::resolve`](crate::Engine::resolve): a policy to apply, or none.
///
/// There is no error case: RFC 8461 §3.3 says a sender that cannot discover a policy delivers as if the domain
/// had none, so failures become "no policy" (or the cached policy while it is still valid), and [`Resolution::source`]
/// says why.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The policy to apply, valid now (RFC 8461 §5.1); `None` = no policy.
    pub policy: Option<Arc<ResolvedPolicy>>,
    /// Where the answer came from.
    pub source: Source,
}

impl Resolution {
    /// No policy, from `source`.
    #[must_use]
    pub const fn none(source: Source) -> Self {
        Self {
            policy: None,
            source,
        }
    }

    /// The policy's mode, if there is a policy.
    #[must_use]
    pub fn mode(&self) -> Option<Mode> {
        self.policy.as_ref().map(|p| p.policy().mode())
    }
}

/// Where a [`Resolution`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// The memory front, checked less than `cache_grace` ago (or a cached "no policy" / back-off answer).
    Memory,
    /// The persistent store, checked less than `cache_grace` ago (possibly by another host sharing it).
    Store,
    /// This lookup ran a discovery (TXT check, HTTPS fetch when needed) and answers from its result.
    Discovered,
    /// This lookup joined a discovery another lookup had started, and answers from its result.
    Coalesced,
    /// Discovery failed, is backing off after a failure, or could not run in time: answered from the cached
    /// policy, which is still within its `max_age` (RFC 8461 §3.3, §5.1).
    Stale,
    /// Discovery failed, is backing off, or could not run in time, and nothing valid is cached: no policy
    /// (RFC 8461 §3.3: deliver as if the domain had none).
    Unavailable,
}

impl Source {
    /// A stable lowercase label for logs and metrics.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Store => "store",
            Self::Discovered => "discovered",
            Self::Coalesced => "coalesced",
            Self::Stale => "stale",
            Self::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy with the facts the engine tracks about it. Shared as `Arc<ResolvedPolicy>`; never mutated (but for
/// the one value an embedder may derive from it once, [`ResolvedPolicy::derived`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPolicy {
    id: PolicyId,
    /// Shared with every other `ResolvedPolicy` of an identical policy ([`share`]).
    policy: Arc<Policy>,
    fetched_at: u64,
    derived: Derived,
}

/// The slot of [`ResolvedPolicy::derived`]: set at most once. A clone starts empty, and it takes no part in
/// equality (it is a function of the policy).
#[derive(Default)]
struct Derived(OnceLock<Box<dyn Any + Send + Sync>>);

impl Clone for Derived {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Derived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Derived(set)"
        } else {
            "Derived(empty)"
        })
    }
}

impl ResolvedPolicy {
    /// A policy with id `id` fetched over HTTPS at `fetched_at` (Unix seconds).
    ///
    /// Domains often publish the very same policy (those of one mail provider): every `ResolvedPolicy` of an
    /// identical policy (the same fields and [leniencies](Policy::leniencies)) shares one copy of it in memory.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mtasts_engine::ResolvedPolicy;
    /// let policy = "version: STSv1\nmode: enforce\nmax_age: 600\nmx: mx.example.com\n".parse()?;
    /// let resolved = ResolvedPolicy::new("id1".parse()?, policy, 1_000);
    /// assert_eq!(resolved.expires_at(), 1_600);
    /// assert!(resolved.is_valid_at(1_599));
    /// assert!(!resolved.is_valid_at(1_600));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn new(id: PolicyId, policy: Policy, fetched_at: u64) -> Self {
        Self {
            id,
            policy: share(policy),
            fetched_at,
            derived: Derived(OnceLock::new()),
        }
    }

    /// A value the embedder derives from this policy, computed by `init` on the first call and kept as long as
    /// the policy is: the policy never changes, so the value never goes stale, and every later call is a load.
    /// The daemon keeps its rendered Postfix replies here, so a cache hit copies no policy text. One value per
    /// policy: `None` when the slot already holds a value of another type.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mtasts_engine::ResolvedPolicy;
    /// let policy = "version: STSv1\nmode: enforce\nmax_age: 600\nmx: mx.example.com\n".parse()?;
    /// let resolved = ResolvedPolicy::new("id1".parse()?, policy, 1_000);
    /// let mx_count = |p: &ResolvedPolicy| p.derived(|| p.policy().mx().len()).copied();
    /// assert_eq!(mx_count(&resolved), Some(1));
    /// // Computed once: a later `init` is not called.
    /// assert_eq!(resolved.derived(|| 99_usize), Some(&1));
    /// assert_eq!(resolved.derived(|| "another type"), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn derived<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Option<&T> {
        self.derived
            .0
            .get_or_init(|| Box::new(init()))
            .downcast_ref::<T>()
    }

    pub(crate) fn to_entry(&self, checked_at: u64) -> CacheEntry {
        CacheEntry {
            checked_at,
            fetched_at: self.fetched_at,
            policy_id: self.id.clone(),
            policy: Policy::clone(&self.policy),
        }
    }

    /// The policy id from the TXT record (RFC 8461 §3.1).
    #[must_use]
    pub const fn id(&self) -> &PolicyId {
        &self.id
    }

    /// The policy (RFC 8461 §3.2).
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// When the policy body was last fetched over HTTPS (Unix seconds).
    #[must_use]
    pub const fn fetched_at(&self) -> u64 {
        self.fetched_at
    }

    /// When the policy stops being valid: `fetched_at + max_age` (RFC 8461 §5.1). A TXT check that finds the
    /// id unchanged does not move this.
    #[must_use]
    pub fn expires_at(&self) -> u64 {
        self.fetched_at
            .saturating_add(u64::from(self.policy.max_age().as_secs()))
    }

    /// Whether the policy may be applied at `now`: `now - fetched_at < max_age` (RFC 8461 §5.1).
    #[must_use]
    pub fn is_valid_at(&self, now: u64) -> bool {
        now < self.expires_at()
    }

    /// Seconds of validity left at `now` (0 once expired), e.g. for Postfix's `policy_ttl`.
    #[must_use]
    pub fn ttl_at(&self, now: u64) -> u64 {
        self.expires_at().saturating_sub(now)
    }
}

/// The policies in use, each once: see [`share`].
static SHARED: LazyLock<Mutex<Shared>> = LazyLock::new(Mutex::default);

#[derive(Default)]
struct Shared {
    policies: HashSet<Exact>,
    /// How many were in use at the last sweep.
    live: usize,
}

/// A policy compared by all it holds, leniencies included (`Policy`'s own equality leaves them out).
struct Exact(Arc<Policy>);

impl PartialEq for Exact {
    fn eq(&self, other: &Self) -> bool {
        *self.0 == *other.0 && self.0.leniencies() == other.0.leniencies()
    }
}

impl Eq for Exact {}

impl Hash for Exact {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.0.leniencies().hash(state);
    }
}

/// Sweeps no sooner than this many policies are remembered.
const SWEEP_FLOOR: usize = 1_024;

/// `policy`, or the identical one already in use: one copy of each policy in memory, however many domains
/// publish it. Policies no longer used are forgotten when the set has doubled since the last sweep, so it holds
/// at most about twice the policies in use (amortised O(1); on the discovery and store path, never on a hit).
fn share(policy: Policy) -> Arc<Policy> {
    let candidate = Exact(Arc::new(policy));
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = shared.policies.get(&candidate) {
        return Arc::clone(&known.0);
    }
    if shared.policies.len() >= (2 * shared.live).max(SWEEP_FLOOR) {
        shared
            .policies
            .retain(|known| Arc::strong_count(&known.0) > 1);
        shared.policies.shrink_to_fit();
        shared.live = shared.policies.len();
    }
    shared.policies.insert(Exact(Arc::clone(&candidate.0)));
    candidate.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(mx: &str) -> ResolvedPolicy {
        let text = format!("version: STSv1\nmode: enforce\nmax_age: 600\nmx: {mx}\n");
        ResolvedPolicy::new("id1".parse().unwrap(), text.parse().unwrap(), 0)
    }

    #[test]
    fn identical_policies_are_shared() {
        let (a, b) = (resolved("mx.shared.example"), resolved("mx.shared.example"));
        assert!(Arc::ptr_eq(&a.policy, &b.policy));
        assert!(!Arc::ptr_eq(
            &a.policy,
            &resolved("mx.other.example").policy
        ));
        // A leniency is kept apart: the policy reports how it was spelled.
        let dotted = resolved("mx.shared.example.");
        assert_eq!(dotted.policy(), a.policy());
        assert!(!Arc::ptr_eq(&a.policy, &dotted.policy));
        assert_eq!(dotted.policy().leniencies().len(), 1);
    }

    #[test]
    fn policies_no_longer_used_are_forgotten() {
        for i in 0..5 * SWEEP_FLOOR {
            drop(resolved(&format!("mx{i}.sweep.example")));
        }
        let kept = resolved("mx.kept.example");
        for i in 0..5 * SWEEP_FLOOR {
            drop(resolved(&format!("mx{i}.sweep2.example")));
        }
        let shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        // Other tests share the set: only a bound can be checked.
        assert!(
            shared.policies.len() <= 4 * SWEEP_FLOOR,
            "{}",
            shared.policies.len()
        );
        assert!(shared.policies.contains(&Exact(Arc::clone(&kept.policy))));
    }
}
