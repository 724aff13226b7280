//! The public handle: [`Engine`], its builder, lookups and purges. The refresh itself is in `refresh.rs` (I/O)
//! and `freshness.rs` (rules); the proactive refresh in `proactive.rs`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use mtasts_cache::{CacheError, PolicyCache};
use mtasts_core::PolicyDomain;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::clock::{Clock, SystemClock};
use crate::coalesce::wait;
use crate::dane::DaneMemory;
use crate::discover::{Discover, Discoverer};
use crate::freshness::{Freshness, Purpose};
use crate::front::Front;
use crate::refresh::{Inner, WarnOnce};
use crate::resolution::{Resolution, Source};
use crate::stats::EngineStats;
use crate::writes::Every;

// The defaults below are also the daemon's configuration defaults (mta-sts-daemon reads them from here, so they
// are written once); the daemon's documentation (docs/configuration.md, mta-sts-daemon.yml(5)) names them.

/// Default [`EngineBuilder::memory_capacity`]: the Python daemon's `cache_size` (the daemon's
/// `cache.options.cache_size` and `limits.memory_cache_size`).
pub const DEFAULT_MEMORY_CAPACITY: usize = 10_000;
/// Default [`EngineBuilder::memory_bytes`]: 64 MiB (the daemon's `limits.memory_cache_bytes`).
pub const DEFAULT_MEMORY_BYTES: u64 = mtasts_cache::MemoryCache::DEFAULT_BYTES;
/// Default [`EngineBuilder::cache_grace`]: the Python daemon's `cache_grace`.
pub const DEFAULT_CACHE_GRACE: Duration = Duration::from_secs(60);
/// Default [`EngineBuilder::max_negative_ttl`] (the daemon's `freshness.max_negative_ttl`).
pub const DEFAULT_MAX_NEGATIVE_TTL: Duration = Duration::from_secs(3_600);
/// Default [`EngineBuilder::failure_backoff`] (the daemon's `freshness.failure_backoff`).
pub const DEFAULT_FAILURE_BACKOFF: Duration = Duration::from_secs(60);
/// Default [`EngineBuilder::max_in_flight`] (the daemon's `limits.max_discoveries`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1_000;
/// Default [`EngineBuilder::refresh_timeout`]: the Python daemon's zone `timeout`.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(4);
/// Default [`EngineBuilder::max_dane_ttl`] (the daemon's `freshness.max_dane_ttl`).
pub const DEFAULT_MAX_DANE_TTL: Duration = Duration::from_secs(3_600);

/// How long past its timeout a lookup waits for a shared discovery (store reads and writes happen around it).
const WAIT_SLACK: Duration = Duration::from_secs(1);

/// Builds an [`Engine`]; see [`Engine::builder`].
#[derive(Debug)]
pub struct EngineBuilder {
    discoverer: Discoverer,
    store: Option<Arc<dyn PolicyCache>>,
    memory_capacity: usize,
    memory_bytes: u64,
    cache_grace: Duration,
    max_negative_ttl: Duration,
    failure_backoff: Duration,
    max_in_flight: usize,
    refresh_timeout: Duration,
    max_dane_ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl EngineBuilder {
    /// A persistent store behind the memory front (read-through, write-through), possibly shared by several
    /// hosts. Default: none (memory only).
    #[must_use]
    pub fn store(mut self, store: Arc<dyn PolicyCache>) -> Self {
        self.store = Some(store);
        self
    }

    /// How many domains the memory front holds at most (policies, "no policy" answers and back-off markers
    /// together). Default [`DEFAULT_MEMORY_CAPACITY`]; 0 is taken as 1. When it is full, what is read from the
    /// store comes in only if it was asked for more often than the entry it would push out (TinyLFU admission,
    /// see [`mtasts_cache::bounded`]), and so does what a discovery learnt when there is no store; with a store,
    /// what a discovery learnt is always kept (the CLOCK victim makes room). A scan of more domains than fit
    /// does not flush the ones in steady use, and a cycle of more domains than fit keeps hitting memory for all
    /// but those that do not fit.
    #[must_use]
    pub const fn memory_capacity(mut self, capacity: usize) -> Self {
        self.memory_capacity = capacity;
        self
    }

    /// How many bytes the memory front's entries may take, approximately (each weighs its key, its state and
    /// its policy, at least `bytes / memory_capacity`). Default [`DEFAULT_MEMORY_BYTES`]. Large policies take
    /// their size: 64 KiB policies fill 64 MiB at about a thousand domains. A policy heavier than most of a
    /// shard's share (at least 256 KiB when `bytes` allows) is not kept in memory.
    #[must_use]
    pub const fn memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = bytes;
        self
    }

    /// How long after a check an answer is given without asking the store or the network (the Python daemon's
    /// `cache_grace`). It is also the shortest time a "no policy" answer is cached. Default
    /// [`DEFAULT_CACHE_GRACE`]. Kept with sub-second precision, on monotonic time.
    #[must_use]
    pub const fn cache_grace(mut self, grace: Duration) -> Self {
        self.cache_grace = grace;
        self
    }

    /// The longest time a "no policy" answer is cached, however long the DNS negative-caching time (the SOA
    /// minimum) is. Never below `cache_grace`. Default [`DEFAULT_MAX_NEGATIVE_TTL`].
    #[must_use]
    pub const fn max_negative_ttl(mut self, ttl: Duration) -> Self {
        self.max_negative_ttl = ttl;
        self
    }

    /// After a failed discovery, how long the domain is not tried again (RFC 8461 §3.3 asks senders to
    /// rate-limit refetch attempts); meanwhile the cached policy answers while valid, else "no policy". Default
    /// [`DEFAULT_FAILURE_BACKOFF`].
    #[must_use]
    pub const fn failure_backoff(mut self, backoff: Duration) -> Self {
        self.failure_backoff = backoff;
        self
    }

    /// The most discoveries run at once for lookups (the proactive refresh has its own bound). A lookup that
    /// cannot start its discovery within its timeout answers from the cache, or "no policy". Default
    /// [`DEFAULT_MAX_IN_FLIGHT`]; 0 is taken as 1.
    #[must_use]
    pub const fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// The timeout of each discovery of the proactive refresh. Default [`DEFAULT_REFRESH_TIMEOUT`].
    #[must_use]
    pub const fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = timeout;
        self
    }

    /// The longest time a DANE answer ([`Engine::resolve_with_dane`]) is kept in memory; it is kept for the
    /// smallest TTL of the DNS data it rests on, at least `cache_grace`. Default [`DEFAULT_MAX_DANE_TTL`].
    #[must_use]
    pub const fn max_dane_ttl(mut self, ttl: Duration) -> Self {
        self.max_dane_ttl = ttl;
        self
    }

    /// The time source. Default [`SystemClock`].
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The engine. Its metrics are kept ([`Engine::stats`]) but registered nowhere; see
    /// [`EngineBuilder::build_with_registry`].
    #[must_use]
    pub fn build(self) -> Engine {
        self.build_with_registry(&mut Registry::default())
    }

    /// The engine, with its metrics registered in `registry` (see [`EngineStats`] for their names), e.g. to be
    /// served to Prometheus next to the embedder's own.
    #[must_use]
    pub fn build_with_registry(self, registry: &mut Registry) -> Engine {
        let max_in_flight = self.max_in_flight.max(1);
        let cache_grace = self.cache_grace;
        let front = Arc::new(Front::new(self.memory_capacity, self.memory_bytes));
        let stats = EngineStats::new(registry, {
            let front = Arc::clone(&front);
            move || front.len()
        });
        Engine {
            inner: Arc::new(Inner {
                discoverer: self.discoverer,
                store: self.store,
                front,
                flights: Arc::default(),
                permits: Arc::new(Semaphore::new(max_in_flight.min(Semaphore::MAX_PERMITS))),
                clock: self.clock,
                freshness: Freshness {
                    grace: cache_grace,
                    max_negative_ttl: self.max_negative_ttl.max(cache_grace),
                    failure_backoff: self.failure_backoff,
                },
                refresh_timeout: self.refresh_timeout,
                dane: DaneMemory::new(self.memory_capacity, self.max_dane_ttl.max(cache_grace)),
                dane_noted: WarnOnce::new(),
                stats,
                last_proactive: AtomicU64::new(0),
                skew_warnings: WarnOnce::new(),
                invalid_noted: WarnOnce::new(),
                writes: std::sync::OnceLock::new(),
                read_warned: Every::second(),
                local_warned: Every::second(),
                purges: Arc::default(),
            }),
        }
    }
}

/// The MTA-STS policy resolution engine.
///
/// Answers "which policy applies to this domain now?" ([`Engine::resolve`]) from a bounded memory front, an
/// optional persistent store, and discovery over DNS and HTTPS, following RFC 8461's caching rules:
///
/// - an answer checked less than `cache_grace` ago comes from memory: no store, no network, no allocation
///   beyond an `Arc` clone;
/// - older: the store is read again (another host sharing it may have refreshed the domain), then the TXT id is
///   re-checked (§3.1): unchanged → no HTTPS; changed, or the policy near expiry (see [`refetch_margin`](crate::refetch_margin)) →
///   HTTPS fetch. A policy is applied only while less than its `max_age` has passed since its last HTTPS fetch
///   (§5.1);
/// - a policy gone from the store (purged, e.g. with `mta-sts-daemon cache purge` on any host sharing it) is
///   forgotten in memory too at that re-read, and discovered afresh with an HTTPS fetch: a purge reaches every
///   engine using the store within `cache_grace`. A store read error keeps the memory copy;
/// - a missing TXT record does not delete a valid cached policy (§10.2); "no policy" is cached for at least
///   `cache_grace` and up to the DNS negative TTL, bounded by `max_negative_ttl`;
/// - a failed discovery answers from the cached policy until it expires, and the domain is not tried again for
///   `failure_backoff` (§3.3);
/// - concurrent lookups of one domain share one discovery, which runs in its own task: a lookup that gives up
///   (times out or is dropped) does not cancel it for the others. At most `max_in_flight` discoveries run at once;
/// - a store never delays an answer much: a lookup reads it for at most a quarter of its timeout (then
///   discovers without it), and store writes are queued and done in the background (at most 1000 wait; more
///   are dropped and counted), see [`Engine::flush_store_writes`].
///
/// `Engine` is a cheap handle (`Arc` inside): clone it into every connection. Its methods must run inside a
/// Tokio runtime (discoveries are spawned).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mtasts_core::PolicyDomain;
/// use mtasts_engine::{Discover, Discovery, DiscoveryRequest, Engine, Source, async_trait};
///
/// /// A stand-in for `mtasts_fetch::Fetcher`: every domain publishes the same policy.
/// struct Static;
///
/// #[async_trait]
/// impl Discover for Static {
///     async fn discover(&self, _: &DiscoveryRequest<'_>) -> Discovery {
///         let policy = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mx.example.com\n".parse().unwrap();
///         Discovery::Fetched { id: "20250101".parse().unwrap(), policy }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::builder(Static).cache_grace(Duration::from_secs(60)).build();
/// let domain = PolicyDomain::parse("example.com")?;
///
/// let first = engine.resolve(&domain, Duration::from_secs(4)).await;
/// assert_eq!(first.source, Source::Discovered);
/// let again = engine.resolve(&domain, Duration::from_secs(4)).await;
/// assert_eq!(again.source, Source::Memory);
/// assert!(again.policy.is_some_and(|p| p.policy().matches_mx("mx.example.com")));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.inner.store)
            .field("memory_entries", &self.inner.front.len())
            .field("memory_bytes", &self.inner.front.weight())
            .field("freshness", &self.inner.freshness)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder with `discoverer` (usually an `mtasts_fetch::Fetcher`) and the defaults.
    pub fn builder(discoverer: impl Discover) -> EngineBuilder {
        EngineBuilder {
            discoverer: Discoverer(Arc::new(discoverer)),
            store: None,
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            cache_grace: DEFAULT_CACHE_GRACE,
            max_negative_ttl: DEFAULT_MAX_NEGATIVE_TTL,
            failure_backoff: DEFAULT_FAILURE_BACKOFF,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            max_dane_ttl: DEFAULT_MAX_DANE_TTL,
            clock: Arc::new(SystemClock),
        }
    }

    /// The policy that applies to `domain` now, or none.
    ///
    /// Never fails: discovery problems give the cached policy while it is valid, else no policy (RFC 8461 §3.3),
    /// and [`Resolution::source`] says which. `timeout` bounds the discovery; the call returns within about
    /// `timeout` plus one second even when the store is slow.
    pub async fn resolve(&self, domain: &PolicyDomain, timeout: Duration) -> Resolution {
        // The hot path: synchronous, one shard read lock, no allocation.
        if let Some(resolution) = self.cached(domain) {
            return resolution;
        }
        // Boxed so that the hot path's future stays small.
        Box::pin(self.resolve_slow(domain, timeout)).await
    }

    /// The memory front's answer for `domain`, if it has a fresh one (checked less than `cache_grace` ago, a
    /// cached "no policy", or a back-off answer), without any store or network access: what
    /// [`Engine::resolve`] does first. Synchronous, for callers that want to skip creating a future on hits.
    #[must_use]
    pub fn cached(&self, domain: &PolicyDomain) -> Option<Resolution> {
        let inner = &self.inner;
        let key = domain.as_str();
        let now = inner.clock.monotonic();
        let resolution = inner.front.get(key)?.answer(now)?;
        inner.stats.memory_hits.inc();
        debug!(
            domain = key,
            source = resolution.source.as_str(),
            "policy from memory"
        );
        Some(resolution)
    }

    async fn resolve_slow(&self, domain: &PolicyDomain, timeout: Duration) -> Resolution {
        let inner = &self.inner;
        let key = domain.as_str();
        inner.stats.misses.inc();
        let (mut flight, leader) = inner.start_or_join(domain, timeout, Purpose::Lookup);
        if !leader {
            inner.stats.coalesced.inc();
        }
        match wait(&mut flight, Some(timeout.saturating_add(WAIT_SLACK))).await {
            Some(done) => {
                let mut resolution = done.resolution;
                if !leader {
                    resolution.source = Source::Coalesced;
                }
                resolution
            }
            None => inner.fallback(key, inner.clock.monotonic()),
        }
    }

    /// Forgets `domain` (a normalised policy domain) in memory and in the store: the next lookup discovers it
    /// afresh. `Ok(true)` if something was removed. The purge wins over discoveries already running: their
    /// results still answer the lookups waiting for them, but are kept neither in memory nor in the store.
    ///
    /// # Errors
    ///
    /// The store's error when it could not remove the entry (the memory entry is removed anyway).
    pub async fn purge(&self, domain: &str) -> Result<bool, CacheError> {
        // A discovery running now keeps its result neither in memory nor in the store.
        self.inner.purging();
        let dane = self.inner.dane.front.remove(domain).is_some();
        let in_memory = self.inner.front.remove(domain).is_some() || dane;
        // A write queued before the purge is dropped or done before the store's entry is removed.
        self.flush_store_writes().await;
        match &self.inner.store {
            Some(store) => Ok(store.remove(domain).await? || in_memory),
            None => Ok(in_memory),
        }
    }

    /// Waits until the store writes queued so far are done: a discovery's result is answered at once and
    /// written to the store afterwards, in the background (at most 1000 writes wait for a slow store; more are
    /// dropped and counted in [`EngineStats::store_writes_dropped`]). For a clean shutdown, and for tests that
    /// look at the store. Returns at once without a store.
    pub async fn flush_store_writes(&self) {
        if let Some(writes) = self.inner.writes.get() {
            writes.flush().await;
        }
    }

    /// The engine's metrics, live.
    #[must_use]
    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }
}

#[cfg(test)]
mod tests;
mod with_dane;

pub use with_dane::DaneResolution;
