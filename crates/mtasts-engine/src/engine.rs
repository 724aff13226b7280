//! The engine: memory front, store read-through, coalesced discovery, RFC 8461 freshness rules.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mtasts_cache::lru::ShardedLru;
use mtasts_cache::{CacheEntry, CacheError, PolicyCache, ScanToken};
use mtasts_core::{PolicyDomain, PolicyId};
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::clock::{Clock, SystemClock};
use crate::discover::{Discover, Discovery, DiscoveryRequest};
use crate::refresh::RefreshReport;
use crate::resolution::{Resolution, ResolvedPolicy, Source};
use crate::stats::EngineStats;

// The defaults below are also the daemon's configuration defaults (mta-sts-daemon reads them from here, so they
// are written once); the daemon's documentation (docs/configuration.md, mta-sts-daemon.yml(5)) names them.

/// Default [`EngineBuilder::memory_capacity`]: the Python daemon's `cache_size` (the daemon's
/// `cache.options.cache_size` and `limits.memory_cache_size`).
pub const DEFAULT_MEMORY_CAPACITY: usize = 10_000;
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

/// Upper bound of the near-expiry margin, see [`refetch_margin`].
const MAX_REFETCH_MARGIN: u64 = 86_400;
/// How long past its own timeout a discovery may run before the engine cuts it off.
const DISCOVERY_SLACK: Duration = Duration::from_millis(250);
/// How long past its timeout a lookup waits for a shared discovery (store reads and writes happen around it).
const WAIT_SLACK: Duration = Duration::from_secs(1);
/// The longest a discovery task waits on one store operation. Stores bound their operations by their own
/// timeouts; this only keeps a misbehaving store from pinning a domain's shared discovery (and so every later
/// lookup of it) forever.
const STORE_CAP: Duration = Duration::from_secs(15);
/// Store scan page size for the proactive refresh.
const SCAN_PAGE: usize = 256;

/// The near-expiry margin for a policy with `max_age` seconds: a quarter of `max_age`, at most one day.
///
/// RFC 8461 §5.1: a policy is valid while less than `max_age` has passed since it was fetched; a TXT check that
/// finds the id unchanged (§3.1) says the policy did not change, but does not renew it. So once less than this
/// margin of validity is left, the engine fetches the policy over HTTPS again even when the id is unchanged, and
/// the policy never lapses for a domain that is looked up or proactively refreshed. A quarter keeps short-lived
/// policies (`max_age` of minutes) from being refetched on every check; the one-day cap bounds how early a
/// long-lived policy (weeks, the RFC's suggestion) is refetched. With `max_age: 1` the margin is 0: the policy is
/// refetched once it has expired.
#[must_use]
pub const fn refetch_margin(max_age: u64) -> u64 {
    let quarter = max_age / 4;
    if quarter < MAX_REFETCH_MARGIN {
        quarter
    } else {
        MAX_REFETCH_MARGIN
    }
}

/// Whether `policy` must be fetched over HTTPS (not just re-checked by TXT id) at `now`, given that it should
/// stay valid for `horizon` more seconds (the next proactive pass).
fn needs_refetch(policy: &ResolvedPolicy, now: u64, horizon: u64) -> bool {
    let margin = refetch_margin(u64::from(policy.policy().max_age().as_secs()));
    now.saturating_add(margin).saturating_add(horizon) >= policy.expires_at()
}

/// What the engine keeps in memory per domain.
#[derive(Clone)]
struct FrontEntry {
    /// The cached policy (possibly expired; [`FrontEntry::answer`] checks), or none.
    policy: Option<Arc<ResolvedPolicy>>,
    /// When `policy` was last confirmed current (0 when there is none).
    checked_at: u64,
    /// Answer from memory, without store or network, while `now < fresh_until`.
    fresh_until: u64,
    /// No discovery for this domain while `now < retry_after` (failure back-off, RFC 8461 §3.3).
    retry_after: u64,
}

impl FrontEntry {
    fn confirmed(policy: Arc<ResolvedPolicy>, checked_at: u64, grace: u64) -> Self {
        Self {
            policy: Some(policy),
            checked_at,
            fresh_until: checked_at.saturating_add(grace),
            retry_after: 0,
        }
    }

    /// The answer this entry gives at `now`, or `None` when the store and maybe the network must be asked.
    fn answer(&self, now: u64) -> Option<Resolution> {
        if now >= self.fresh_until {
            return None;
        }
        let backing_off = now < self.retry_after;
        match &self.policy {
            // RFC 8461 §5.1: an expired policy is never applied; look again.
            Some(policy) if !policy.is_valid_at(now) => None,
            Some(policy) => Some(Resolution {
                policy: Some(Arc::clone(policy)),
                source: if backing_off {
                    Source::Stale
                } else {
                    Source::Memory
                },
            }),
            None => Some(Resolution::none(if backing_off {
                Source::Unavailable
            } else {
                Source::Memory
            })),
        }
    }
}

/// What a refresh did (for stats and the proactive report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Checked recently enough already: no discovery.
    Fresh,
    Fetched,
    Unchanged,
    NoPolicy,
    Failed,
    /// Backing off after a failure: no discovery.
    Backoff,
    /// No discovery slot within the timeout.
    Overloaded,
}

/// The shared result of one refresh.
#[derive(Clone)]
struct Done {
    resolution: Resolution,
    outcome: Outcome,
}

#[derive(Clone, Copy)]
enum Mode {
    /// A lookup: answers checked less than `cache_grace` ago are fresh; bounded by `max_in_flight`.
    Request,
    /// The proactive refresh: entries checked less than `min_age` ago are fresh; the policy should stay valid
    /// `horizon` seconds more. Bounded by the pass's own concurrency, not by `max_in_flight`.
    Proactive { min_age: u64, horizon: u64 },
}

/// The best policy known for a domain during a refresh.
struct Known {
    policy: Arc<ResolvedPolicy>,
    checked_at: u64,
    from_store: bool,
}

type Shared = watch::Receiver<Option<Done>>;

/// Builds an [`Engine`]; see [`Engine::builder`].
pub struct EngineBuilder {
    discoverer: Arc<dyn Discover>,
    store: Option<Arc<dyn PolicyCache>>,
    memory_capacity: usize,
    cache_grace: Duration,
    max_negative_ttl: Duration,
    failure_backoff: Duration,
    max_in_flight: usize,
    refresh_timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("store", &self.store)
            .field("memory_capacity", &self.memory_capacity)
            .field("cache_grace", &self.cache_grace)
            .field("max_negative_ttl", &self.max_negative_ttl)
            .field("failure_backoff", &self.failure_backoff)
            .field("max_in_flight", &self.max_in_flight)
            .field("refresh_timeout", &self.refresh_timeout)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// A persistent store behind the memory front (read-through, write-through), possibly shared by several
    /// hosts. Default: none (memory only).
    #[must_use]
    pub fn store(mut self, store: Arc<dyn PolicyCache>) -> Self {
        self.store = Some(store);
        self
    }

    /// How many domains the memory front holds (policies, "no policy" answers and back-off markers together);
    /// the least recently used is dropped first. Default [`DEFAULT_MEMORY_CAPACITY`]; 0 is taken as 1. The
    /// capacity is split over shards and eviction is per shard, so size it with some headroom over the number
    /// of domains that should stay in memory.
    #[must_use]
    pub const fn memory_capacity(mut self, capacity: usize) -> Self {
        self.memory_capacity = capacity;
        self
    }

    /// How long after a check an answer is given without asking the store or the network (the Python daemon's
    /// `cache_grace`). It is also the shortest time a "no policy" answer is cached. Default
    /// [`DEFAULT_CACHE_GRACE`]. Whole seconds.
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
        let cache_grace = self.cache_grace.as_secs();
        let front = Arc::new(ShardedLru::new(self.memory_capacity));
        let stats = EngineStats::new(registry, {
            let front = Arc::clone(&front);
            move || front.len()
        });
        Engine {
            inner: Arc::new(Inner {
                discoverer: self.discoverer,
                store: self.store,
                front,
                inflight: Mutex::new(HashMap::new()),
                permits: Arc::new(Semaphore::new(max_in_flight.min(Semaphore::MAX_PERMITS))),
                clock: self.clock,
                cache_grace,
                max_negative_ttl: self.max_negative_ttl.as_secs().max(cache_grace),
                failure_backoff: self.failure_backoff.as_secs(),
                refresh_timeout: self.refresh_timeout,
                stats,
                last_proactive: AtomicU64::new(0),
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
///   re-checked (§3.1): unchanged → no HTTPS; changed, or the policy near expiry (see [`refetch_margin`]) →
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
///   (times out or is dropped) does not cancel it for the others. At most `max_in_flight` discoveries run at once.
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
    inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.inner.store)
            .field("memory_entries", &self.inner.front.len())
            .field("cache_grace", &self.inner.cache_grace)
            .finish_non_exhaustive()
    }
}

struct Inner {
    discoverer: Arc<dyn Discover>,
    store: Option<Arc<dyn PolicyCache>>,
    /// The memory front: bounded, sharded (a std `Mutex` per shard, never held across `.await`), O(1) LRU.
    front: Arc<ShardedLru<Arc<str>, FrontEntry>>,
    /// Discoveries running now, by domain: lookups of the same domain wait on the same result.
    inflight: Mutex<HashMap<Arc<str>, Shared>>,
    permits: Arc<Semaphore>,
    clock: Arc<dyn Clock>,
    cache_grace: u64,
    max_negative_ttl: u64,
    failure_backoff: u64,
    refresh_timeout: Duration,
    stats: EngineStats,
    /// When the last proactive pass finished, when there is no store (0 = never).
    last_proactive: AtomicU64,
}

impl Engine {
    /// A builder with `discoverer` (usually an `mtasts_fetch::Fetcher`) and the defaults.
    pub fn builder(discoverer: impl Discover) -> EngineBuilder {
        EngineBuilder {
            discoverer: Arc::new(discoverer),
            store: None,
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
            cache_grace: DEFAULT_CACHE_GRACE,
            max_negative_ttl: DEFAULT_MAX_NEGATIVE_TTL,
            failure_backoff: DEFAULT_FAILURE_BACKOFF,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            clock: Arc::new(SystemClock),
        }
    }

    /// The policy that applies to `domain` now, or none.
    ///
    /// Never fails: discovery problems give the cached policy while it is valid, else no policy (RFC 8461 §3.3),
    /// and [`Resolution::source`] says which. `timeout` bounds the discovery; the call returns within about
    /// `timeout` plus one second even when the store is slow.
    pub async fn resolve(&self, domain: &PolicyDomain, timeout: Duration) -> Resolution {
        // The hot path: synchronous, one shard lock, no allocation.
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
        let now = inner.clock.now();
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
        let (mut rx, leader) = Inner::start_or_join(inner, domain, timeout, Mode::Request);
        if !leader {
            inner.stats.coalesced.inc();
        }
        match wait(&mut rx, Some(timeout.saturating_add(WAIT_SLACK))).await {
            Some(done) => {
                let mut resolution = done.resolution;
                if !leader {
                    resolution.source = Source::Coalesced;
                }
                resolution
            }
            None => inner.fallback(key, inner.clock.now()),
        }
    }

    /// Refreshes cached policies before they are needed (RFC 8461 §3.3: "proactively refresh").
    ///
    /// Walks the store page by page (or the memory front when there is no store) and refreshes every policy
    /// checked more than `interval / grace_ratio` ago, or that would come within its near-expiry margin before
    /// the next pass (`interval` from now), with at most `concurrency` discoveries at once (on top of
    /// `max_in_flight`). Lookups of a domain being refreshed join its discovery. Domains that no longer publish a
    /// policy and whose cached policy has expired are removed from the store. Records the time of the pass with
    /// [`PolicyCache::set_proactive_fetch_ts`]. Each discovery is bounded by
    /// [`EngineBuilder::refresh_timeout`].
    pub async fn refresh_proactively(
        &self,
        interval: Duration,
        grace_ratio: f64,
        concurrency: usize,
    ) -> RefreshReport {
        let inner = &self.inner;
        let started = Instant::now();
        let now = inner.clock.now();
        let ratio = if grace_ratio.is_finite() && grace_ratio > 0.0 {
            grace_ratio
        } else {
            1.0
        };
        // Truncation is intended: whole seconds; the value is finite and non-negative.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let min_age = (interval.as_secs_f64() / ratio) as u64;
        let horizon = interval.as_secs();
        let mode = Mode::Proactive { min_age, horizon };
        let concurrency = concurrency.max(1);
        let mut report = RefreshReport::default();
        let mut tasks = JoinSet::new();
        let is_due = |policy: &ResolvedPolicy, checked_at: u64| {
            now.saturating_sub(checked_at) >= min_age || needs_refetch(policy, now, horizon)
        };

        if let Some(store) = &inner.store {
            let mut token: Option<ScanToken> = None;
            loop {
                let page = match store.scan(token.as_ref(), SCAN_PAGE).await {
                    Ok(page) => page,
                    Err(error) => {
                        report.scan_errors += 1;
                        warn!(kind = error.kind(), %error, "proactive refresh: cache scan failed; pass ends early");
                        break;
                    }
                };
                report.invalid += page.corrupt.len() as u64;
                for (domain, entry) in page.entries {
                    report.scanned += 1;
                    if is_due(&ResolvedPolicy::from_entry(&entry), entry.checked_at) {
                        report.due += 1;
                        self.schedule(&mut tasks, &mut report, &domain, mode, concurrency)
                            .await;
                    }
                }
                match page.next {
                    Some(next) => token = Some(next),
                    None => {
                        report.completed = true;
                        break;
                    }
                }
            }
        } else {
            let mut due = Vec::new();
            inner.front.for_each(|key, entry| {
                if let Some(policy) = &entry.policy {
                    due.push((key.to_string(), is_due(policy, entry.checked_at)));
                }
            });
            for (domain, due) in due {
                report.scanned += 1;
                if due {
                    report.due += 1;
                    self.schedule(&mut tasks, &mut report, &domain, mode, concurrency)
                        .await;
                }
            }
            report.completed = true;
        }
        while let Some(joined) = tasks.join_next().await {
            record(&mut report, joined);
        }

        let finished = inner.clock.now();
        if let Some(store) = &inner.store
            && let Err(error) = store.set_proactive_fetch_ts(finished).await
        {
            inner.stats.store_write_errors.inc();
            warn!(kind = error.kind(), %error, "proactive refresh: could not record the pass time");
        }
        inner.last_proactive.store(finished, Ordering::Relaxed);
        info!(
            scanned = report.scanned,
            due = report.due,
            fetched = report.fetched,
            unchanged = report.unchanged,
            no_policy = report.no_policy,
            failed = report.failed,
            duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "proactive refresh pass done"
        );
        report
    }

    async fn schedule(
        &self,
        tasks: &mut JoinSet<Option<Done>>,
        report: &mut RefreshReport,
        domain: &str,
        mode: Mode,
        concurrency: usize,
    ) {
        let domain = match PolicyDomain::parse(domain) {
            Ok(domain) => domain,
            Err(error) => {
                report.invalid += 1;
                warn!(domain, %error, "proactive refresh: cached domain name is invalid; skipped");
                return;
            }
        };
        while tasks.len() >= concurrency {
            match tasks.join_next().await {
                Some(joined) => record(report, joined),
                None => break,
            }
        }
        let (mut rx, _) =
            Inner::start_or_join(&self.inner, &domain, self.inner.refresh_timeout, mode);
        tasks.spawn(async move { wait(&mut rx, None).await });
    }

    /// When the last proactive refresh pass finished (Unix seconds), from the store when there is one; `None`
    /// if never (or the store cannot say). Lets a daemon schedule the next pass across restarts.
    pub async fn last_proactive_refresh(&self) -> Option<u64> {
        match &self.inner.store {
            Some(store) => match store.proactive_fetch_ts().await {
                Ok(ts) => ts,
                Err(error) => {
                    self.inner.stats.store_read_errors.inc();
                    warn!(kind = error.kind(), %error, "could not read the last proactive refresh time");
                    None
                }
            },
            None => Some(self.inner.last_proactive.load(Ordering::Relaxed)).filter(|&ts| ts != 0),
        }
    }

    /// Forgets `domain` (a normalised policy domain) in memory and in the store: the next lookup discovers it
    /// afresh. `Ok(true)` if something was removed.
    ///
    /// # Errors
    ///
    /// The store's error when it could not remove the entry (the memory entry is removed anyway).
    pub async fn purge(&self, domain: &str) -> Result<bool, CacheError> {
        let in_memory = self.inner.front.remove(domain).is_some();
        match &self.inner.store {
            Some(store) => Ok(store.remove(domain).await? || in_memory),
            None => Ok(in_memory),
        }
    }

    /// The engine's metrics, live.
    #[must_use]
    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }
}

fn record(report: &mut RefreshReport, joined: Result<Option<Done>, tokio::task::JoinError>) {
    match joined {
        Ok(Some(done)) => report.record(done.outcome),
        // The shared discovery task panicked or was cancelled.
        Ok(None) | Err(_) => report.failed += 1,
    }
}

/// Waits for a shared result, at most `budget` when given.
async fn wait(rx: &mut Shared, budget: Option<Duration>) -> Option<Done> {
    let done = rx.wait_for(Option::is_some);
    let result = match budget {
        Some(budget) => tokio::time::timeout(budget, done).await.ok()?,
        None => done.await,
    };
    result.ok().and_then(|value| (*value).clone())
}

/// Removes a domain's entry from the in-flight map when its discovery task ends, however it ends.
struct InflightGuard {
    inner: Arc<Inner>,
    key: Arc<str>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.inner
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&*self.key);
    }
}

/// Decrements the in-flight gauge when a discovery ends.
struct InFlight<'a>(&'a EngineStats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// `op`, failing with [`CacheError::Timeout`] after [`STORE_CAP`].
async fn bounded<T>(op: impl Future<Output = Result<T, CacheError>>) -> Result<T, CacheError> {
    tokio::time::timeout(STORE_CAP, op)
        .await
        .unwrap_or(Err(CacheError::Timeout {
            store: "engine",
            after: STORE_CAP,
        }))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Inner {
    /// Joins the refresh running for `domain`, or starts one in its own task. `true` when started here.
    fn start_or_join(
        this: &Arc<Self>,
        domain: &PolicyDomain,
        timeout: Duration,
        mode: Mode,
    ) -> (Shared, bool) {
        let mut inflight = this.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = inflight.get(domain.as_str()) {
            return (rx.clone(), false);
        }
        let (tx, rx) = watch::channel(None);
        let key: Arc<str> = Arc::from(domain.as_str());
        inflight.insert(Arc::clone(&key), rx.clone());
        drop(inflight);
        // Created before spawning: if the task never runs, dropping it still clears the map entry.
        let guard = InflightGuard {
            inner: Arc::clone(this),
            key,
        };
        let domain = domain.clone();
        tokio::spawn(async move {
            let done = guard.inner.refresh(&domain, timeout, mode).await;
            // Out of the map first, so a lookup that misses from now on starts afresh (and finds the new front).
            drop(guard);
            tx.send_replace(Some(done));
        });
        (rx, true)
    }

    /// Stores `entry` in the memory front.
    fn remember(&self, key: &str, entry: FrontEntry) {
        self.front.insert(Arc::from(key), entry);
    }

    /// The answer when no fresh result is available: the cached policy while valid, else none.
    ///
    /// The discovery may have finished and updated memory while its store write is still pending: then that
    /// fresh answer is used.
    fn fallback(&self, key: &str, now: u64) -> Resolution {
        let Some(entry) = self.front.peek(key) else {
            return Resolution::none(Source::Unavailable);
        };
        if let Some(resolution) = entry.answer(now) {
            return resolution;
        }
        self.stale_or_none(entry.policy.filter(|p| p.is_valid_at(now)))
    }

    fn stale_or_none(&self, policy: Option<Arc<ResolvedPolicy>>) -> Resolution {
        match policy {
            Some(policy) => {
                self.stats.stale_answers.inc();
                Resolution {
                    policy: Some(policy),
                    source: Source::Stale,
                }
            }
            None => Resolution::none(Source::Unavailable),
        }
    }

    /// One refresh of `domain`: store, back-off, discovery, bookkeeping. Runs in its own task.
    async fn refresh(&self, domain: &PolicyDomain, timeout: Duration, mode: Mode) -> Done {
        let key = domain.as_str();
        let deadline = Instant::now() + timeout;
        let now = self.clock.now();
        let front = self.front.peek(key);
        if let (Mode::Request, Some(entry)) = (mode, &front) {
            // Refreshed since the caller looked (it raced with the end of the previous discovery).
            if let Some(resolution) = entry.answer(now) {
                return Done {
                    resolution,
                    outcome: Outcome::Fresh,
                };
            }
        }
        let retry_after = front.as_ref().map_or(0, |entry| entry.retry_after);
        let mut known = front.and_then(|entry| {
            entry.policy.map(|policy| Known {
                policy,
                checked_at: entry.checked_at,
                from_store: false,
            })
        });

        // Read-through: the store may hold a newer check, e.g. by another host sharing it.
        let mut purged = false;
        if let Some(store) = &self.store {
            match bounded(store.get(key)).await {
                Ok(Some(entry))
                    if known
                        .as_ref()
                        .is_none_or(|k| entry.checked_at > k.checked_at) =>
                {
                    let policy = match &known {
                        Some(k)
                            if *k.policy.id() == entry.policy_id
                                && k.policy.fetched_at() == entry.fetched_at =>
                        {
                            Arc::clone(&k.policy)
                        }
                        _ => Arc::new(ResolvedPolicy::from_entry(&entry)),
                    };
                    known = Some(Known {
                        policy,
                        checked_at: entry.checked_at,
                        from_store: true,
                    });
                }
                Ok(None) if known.is_some() => {
                    // Gone from the store: purged (`mta-sts-daemon cache purge`, by any host sharing the store) or
                    // lost. Forget the memory copy too, so that a purge reaches every engine using the store within
                    // `cache_grace`: a full discovery with an HTTPS fetch follows (re-checking the old id would
                    // bring back the purged policy). A read *error* keeps the memory copy (below).
                    self.stats.store_purged.inc();
                    debug!(
                        domain = key,
                        "policy gone from the store; memory copy dropped"
                    );
                    known = None;
                    purged = true;
                }
                Ok(_) => {}
                Err(error) => {
                    // A store read error counts as a miss.
                    self.stats.store_read_errors.inc();
                    warn!(domain = key, kind = error.kind(), %error, "policy cache read failed; treated as a miss");
                }
            }
        }

        let (min_age, horizon) = match mode {
            Mode::Request => (self.cache_grace, 0),
            Mode::Proactive { min_age, horizon } => (min_age, horizon),
        };
        if let Some(k) = &known
            && k.policy.is_valid_at(now)
            && now.saturating_sub(k.checked_at) < min_age
            // A proactive pass refreshes a policy that would near expiry before the next pass.
            && (horizon == 0 || !needs_refetch(&k.policy, now, horizon))
        {
            let source = if k.from_store {
                self.stats.store_hits.inc();
                // Another host's clock may be ahead: never trust a check from the future for longer than grace.
                let checked_at = k.checked_at.min(now);
                self.remember(
                    key,
                    FrontEntry::confirmed(Arc::clone(&k.policy), checked_at, self.cache_grace),
                );
                Source::Store
            } else {
                Source::Memory
            };
            debug!(
                domain = key,
                source = source.as_str(),
                "policy checked recently"
            );
            return Done {
                resolution: Resolution {
                    policy: Some(Arc::clone(&k.policy)),
                    source,
                },
                outcome: Outcome::Fresh,
            };
        }

        // RFC 8461 §3.3: rate-limit refetch attempts after a failure.
        if now < retry_after {
            self.stats.backoff_skips.inc();
            debug!(
                domain = key,
                retry_after, "discovery backing off after a failure"
            );
            let valid = known.map(|k| k.policy).filter(|p| p.is_valid_at(now));
            return Done {
                resolution: self.stale_or_none(valid),
                outcome: Outcome::Backoff,
            };
        }

        // An unchanged id needs no HTTPS, unless the policy is near expiry (§5.1, see `refetch_margin`).
        let known_id: Option<PolicyId> = known
            .as_ref()
            .filter(|k| !needs_refetch(&k.policy, now, horizon))
            .map(|k| k.policy.id().clone());

        let _permit = match mode {
            Mode::Request => {
                match tokio::time::timeout_at(deadline, Arc::clone(&self.permits).acquire_owned())
                    .await
                {
                    Ok(Ok(permit)) if deadline > Instant::now() => Some(permit),
                    _ => {
                        self.stats.overloaded.inc();
                        debug!(
                            domain = key,
                            "no discovery slot within the timeout (max_in_flight); answering from cache"
                        );
                        let valid = known.map(|k| k.policy).filter(|p| p.is_valid_at(now));
                        return Done {
                            resolution: self.stale_or_none(valid),
                            outcome: Outcome::Overloaded,
                        };
                    }
                }
            }
            Mode::Proactive { .. } => None,
        };

        let remaining = deadline.saturating_duration_since(Instant::now());
        self.stats.in_flight.inc();
        let in_flight = InFlight(&self.stats);
        let started = Instant::now();
        let discovery = tokio::time::timeout(
            remaining.saturating_add(DISCOVERY_SLACK),
            self.discoverer
                .discover(&DiscoveryRequest::new(domain, known_id.as_ref(), remaining)),
        )
        .await;
        drop(in_flight);
        let duration_ms = millis(started.elapsed());
        let now = self.clock.now();

        match discovery {
            Ok(Discovery::Fetched { id, policy }) => {
                self.stats.fetched.inc();
                let reason = match (&known, &known_id) {
                    (None, _) if purged => "purged",
                    (None, _) => "new",
                    (Some(_), None) => "near_expiry",
                    (Some(_), Some(_)) => "id_changed",
                };
                let resolved = Arc::new(ResolvedPolicy::new(id, policy, now));
                info!(
                    domain = key,
                    outcome = "fetched",
                    reason,
                    id = %resolved.id(),
                    mode = %resolved.policy().mode(),
                    max_age = resolved.policy().max_age().as_secs(),
                    duration_ms,
                    "MTA-STS discovery"
                );
                self.remember(
                    key,
                    FrontEntry::confirmed(Arc::clone(&resolved), now, self.cache_grace),
                );
                self.write_store(key, &resolved.to_entry(now)).await;
                Done {
                    resolution: Resolution {
                        policy: Some(resolved),
                        source: Source::Discovered,
                    },
                    outcome: Outcome::Fetched,
                }
            }
            Ok(Discovery::Unchanged { id }) => match known {
                Some(k) if known_id.as_ref() == Some(&id) => {
                    self.stats.unchanged.inc();
                    info!(domain = key, outcome = "unchanged", reason = "id_unchanged", %id, duration_ms, "MTA-STS discovery");
                    self.remember(
                        key,
                        FrontEntry::confirmed(Arc::clone(&k.policy), now, self.cache_grace),
                    );
                    // checked_at moves, fetched_at stays: an unchanged id does not extend validity (§5.1).
                    self.write_store(key, &k.policy.to_entry(now)).await;
                    Done {
                        resolution: Resolution {
                            policy: Some(k.policy),
                            source: Source::Discovered,
                        },
                        outcome: Outcome::Unchanged,
                    }
                }
                other => {
                    let error = Anomaly::UnexpectedUnchanged {
                        id,
                        asked: known_id,
                    };
                    self.failed(key, other, now, "unexpected_unchanged", &error, duration_ms)
                }
            },
            Ok(Discovery::NoPolicy {
                reason,
                negative_ttl,
            }) => {
                self.stats.no_policy.inc();
                let ttl = negative_ttl
                    .map_or(0, |ttl| ttl.as_secs())
                    .min(self.max_negative_ttl)
                    .max(self.cache_grace);
                let had_known = known.is_some();
                let kept = known.filter(|k| k.policy.is_valid_at(now));
                info!(
                    domain = key,
                    outcome = "no_policy",
                    reason = reason.kind(),
                    detail = %reason,
                    kept_cached = kept.is_some(),
                    ttl,
                    duration_ms,
                    "MTA-STS discovery"
                );
                let fresh_until = now.saturating_add(ttl);
                if let Some(k) = kept {
                    // RFC 8461 §10.2: removing the TXT record does not remove a cached policy; it applies until it
                    // expires (§5.1).
                    let entry = FrontEntry {
                        policy: Some(Arc::clone(&k.policy)),
                        checked_at: k.checked_at,
                        fresh_until,
                        retry_after: 0,
                    };
                    self.remember(key, entry);
                    Done {
                        resolution: Resolution {
                            policy: Some(k.policy),
                            source: Source::Discovered,
                        },
                        outcome: Outcome::NoPolicy,
                    }
                } else {
                    self.remember(
                        key,
                        FrontEntry {
                            policy: None,
                            checked_at: 0,
                            fresh_until,
                            retry_after: 0,
                        },
                    );
                    if had_known {
                        // Expired and no longer published: nothing left to keep (bounds store growth).
                        self.remove_from_store(key).await;
                    }
                    Done {
                        resolution: Resolution::none(Source::Discovered),
                        outcome: Outcome::NoPolicy,
                    }
                }
            }
            Ok(Discovery::Failed(error)) => {
                self.failed(key, known, now, error.kind(), &error, duration_ms)
            }
            Err(_elapsed) => {
                let error = Anomaly::Overran { timeout: remaining };
                self.failed(key, known, now, "timeout", &error, duration_ms)
            }
        }
    }

    /// Bookkeeping for a failed discovery: back off, answer from the cached policy while it is valid (§3.3).
    fn failed(
        &self,
        key: &str,
        known: Option<Known>,
        now: u64,
        kind: &'static str,
        error: &dyn std::error::Error,
        duration_ms: u64,
    ) -> Done {
        self.stats.failure(kind);
        let kept = known.filter(|k| k.policy.is_valid_at(now));
        info!(
            domain = key,
            outcome = "failed",
            reason = kind,
            error = %error,
            stale = kept.is_some(),
            backoff = self.failure_backoff,
            duration_ms,
            "MTA-STS discovery"
        );
        let retry_after = now.saturating_add(self.failure_backoff);
        let (policy, checked_at) = match kept {
            Some(k) => (Some(k.policy), k.checked_at),
            None => (None, 0),
        };
        self.remember(
            key,
            FrontEntry {
                policy: policy.clone(),
                checked_at,
                fresh_until: retry_after,
                retry_after,
            },
        );
        Done {
            resolution: self.stale_or_none(policy),
            outcome: Outcome::Failed,
        }
    }

    /// Write-through; a failure is logged and otherwise ignored.
    async fn write_store(&self, key: &str, entry: &CacheEntry) {
        if let Some(store) = &self.store
            && let Err(error) = bounded(store.set(key, entry)).await
        {
            self.stats.store_write_errors.inc();
            warn!(domain = key, kind = error.kind(), %error, "policy cache write failed");
        }
    }

    async fn remove_from_store(&self, key: &str) {
        if let Some(store) = &self.store
            && let Err(error) = bounded(store.remove(key)).await
        {
            self.stats.store_write_errors.inc();
            warn!(domain = key, kind = error.kind(), %error, "policy cache removal failed");
        }
    }
}

/// Discovery results the engine treats as failures although the discoverer did not report one.
#[derive(Debug, thiserror::Error)]
enum Anomaly {
    /// The discoverer answered "unchanged" to a question it was not asked.
    #[error("discovery reported id {id} unchanged, but the engine asked about {asked:?}")]
    UnexpectedUnchanged {
        id: PolicyId,
        asked: Option<PolicyId>,
    },
    /// The discoverer ignored its timeout and was cut off.
    #[error("discovery overran its {timeout:?} timeout")]
    Overran { timeout: Duration },
}

#[cfg(test)]
mod tests;
