//! The refresh shell: the engine's state, and the I/O of one refresh of a domain (store read, discovery slot,
//! discovery, memory and store writes, metrics, logs) around the pure rules of [`crate::freshness`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mtasts_cache::lru::ShardedLru;
use mtasts_cache::{CacheError, MAX_CLOCK_SKEW, PolicyCache};
use mtasts_core::{PolicyDomain, PolicyId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::clock::{Clock, Now};
use crate::coalesce::{Flight, Flights};
use crate::dane::DaneMemory;
use crate::discover::{Discoverer, Discovery, DiscoveryError, DiscoveryRequest, NoPolicyReason};
use crate::freshness::{
    Anomaly, Done, Event, Freshness, FrontEntry, Outcome, Purpose, Step, Stored, stale_or_none,
};
use crate::front::Front;
use crate::resolution::{Resolution, Source};
use crate::stats::EngineStats;
use crate::writes::{Every, WriteStats, Writes};

/// How long past its own timeout a discovery may run before the engine cuts it off.
pub(crate) const DISCOVERY_SLACK: Duration = Duration::from_millis(250);
/// The share of a refresh's timeout its store read may take: a quarter. A slower store is gone without, and
/// the discovery has the rest.
const STORE_READ_SHARE: u32 = 4;

/// The engine's state, shared by every handle and every refresh task.
pub(crate) struct Inner {
    pub(crate) discoverer: Discoverer,
    pub(crate) store: Option<Arc<dyn PolicyCache>>,
    /// The memory front: bounded by entries and bytes, sharded (locks never held across `.await`), CLOCK with
    /// TinyLFU admission for what is read from the store.
    pub(crate) front: Arc<Front>,
    /// Refreshes running now, by domain: lookups of the same domain wait on the same result.
    pub(crate) flights: Arc<Flights<Done>>,
    /// Discovery slots for lookups (`max_in_flight`).
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) freshness: Freshness,
    pub(crate) refresh_timeout: Duration,
    pub(crate) stats: EngineStats,
    /// When the last proactive pass finished, when there is no store (0 = never).
    pub(crate) last_proactive: AtomicU64,
    /// Domains whose store entries were found from the future, for warning once per domain.
    pub(crate) skew_warnings: WarnOnce,
    /// DANE answers and discoveries, for zones that ask for DANE (memory only).
    pub(crate) dane: DaneMemory,
    /// Domains the "`dane` over an enforce policy" line was logged for.
    pub(crate) dane_noted: WarnOnce,
    /// Domains the "invalid TXT record" line was logged for.
    pub(crate) invalid_noted: WarnOnce,
    /// The store writes, queued (started with the first one, inside the runtime).
    pub(crate) writes: OnceLock<Writes>,
    /// Rate limit for the "store read failed" warning.
    pub(crate) read_warned: Every,
    /// Rate limit for the "this host lacks a resource for discovery" warning.
    pub(crate) local_warned: Every,
    /// Purges so far ([`Engine::purge`](crate::Engine::purge), `purge_all`): a refresh that started before a
    /// purge neither remembers nor writes its result, so that the purge wins (issue 11 item 6).
    pub(crate) purges: Arc<AtomicU64>,
}

impl Inner {
    /// Joins the refresh running for `domain`, or starts one in its own task. `true` when started here.
    pub(crate) fn start_or_join(
        self: &Arc<Self>,
        domain: &PolicyDomain,
        timeout: Duration,
        purpose: Purpose,
    ) -> (Flight<Done>, bool) {
        self.flights.join_or_start(domain.as_str(), || {
            let inner = Arc::clone(self);
            let domain = domain.clone();
            async move { inner.refresh(&domain, timeout, purpose).await }
        })
    }

    /// One refresh of `domain`: store, back-off, discovery, bookkeeping. Runs in its own task.
    async fn refresh(&self, domain: &PolicyDomain, timeout: Duration, purpose: Purpose) -> Done {
        let key = domain.as_str();
        // Read before memory and the store are: a purge from here on wins over what this refresh learns.
        let generation = self.purge_generation();
        let deadline = Instant::now() + timeout;
        let now = Now::read(&*self.clock);
        let front = self.front.peek(key);
        if let (Purpose::Lookup, Some(entry)) = (purpose, &front)
            // Refreshed since the caller looked (it raced with the end of the previous discovery).
            && let Some(resolution) = entry.answer(now.mono)
        {
            return Done {
                resolution,
                outcome: Outcome::Fresh,
            };
        }

        // Read-through: the store may hold a newer check, e.g. by another host sharing it. A quarter of the
        // time at most: a slow store is gone without.
        let stored = self.read_store(key, timeout / STORE_READ_SHARE).await;
        let decision = self.freshness.decide(front.as_ref(), stored, &now, purpose);
        if decision.skewed {
            self.skewed(key);
        }
        if decision.purged {
            self.stats.store_purged.inc();
            debug!(
                domain = key,
                "policy gone from the store; memory copy dropped"
            );
        }
        let plan = match decision.step {
            Step::Answer { done, remember } => {
                if let Some(entry) = remember {
                    // Read from the store: cheap to read again, so it competes for memory (a scan of the
                    // store does not push out the domains asked for often).
                    self.remember(key, entry, generation, Keep::IfAdmitted);
                }
                self.count(&done);
                match done.outcome {
                    Outcome::Backoff => {
                        debug!(domain = key, "discovery backing off after a failure");
                    }
                    _ => debug!(
                        domain = key,
                        source = done.resolution.source.as_str(),
                        "policy checked recently"
                    ),
                }
                return done;
            }
            Step::Discover(plan) => plan,
        };

        let _permit = match purpose {
            Purpose::Lookup => match self.permit(deadline).await {
                Some(permit) => Some(permit),
                None => {
                    debug!(
                        domain = key,
                        "no discovery slot within the timeout (max_in_flight); answering from cache"
                    );
                    let done = plan.overloaded(Now::read(&*self.clock).mono);
                    self.count(&done);
                    return done;
                }
            },
            // The proactive pass bounds its own concurrency.
            Purpose::Proactive { .. } => None,
        };

        let started = Instant::now();
        let discovery = self
            .discover(domain, plan.known_id.as_ref(), deadline)
            .await;
        let duration_ms = millis(started.elapsed());
        let applied = self
            .freshness
            .apply(discovery, plan, &Now::read(&*self.clock));
        self.count(&applied.done);
        self.log(key, &applied.event, duration_ms);
        if let Event::NoPolicy { reason, .. } = &applied.event
            && reason.is_invalid_record()
        {
            self.invalid_record(key, reason);
        }
        if let Some(front) = applied.front {
            // What a discovery learnt (a policy, its absence, a failure's back-off) costs round trips: kept, and
            // written to the store. Without a store the front is the only memory, and a cycle of more domains
            // than fit would make every lookup a discovery if each pushed out the next one asked for: then it
            // competes like a store read.
            let keep = if self.store.is_some() {
                Keep::Always
            } else {
                Keep::IfAdmitted
            };
            self.remember(key, front, generation, keep);
        }
        // Queued: the answer does not wait for the store. The writer drops it if a purge comes first.
        if let Some(writes) = self.writes() {
            writes.push(key, applied.store, generation);
        }
        applied.done
    }

    /// The store's write queue (started on first use), if there is a store.
    pub(crate) fn writes(&self) -> Option<&Writes> {
        let store = self.store.as_ref()?;
        Some(self.writes.get_or_init(|| {
            let stats = WriteStats {
                errors: self.stats.store_write_errors.clone(),
                dropped: self.stats.store_writes_dropped.clone(),
            };
            Writes::start(Arc::clone(store), stats, Arc::clone(&self.purges))
        }))
    }

    /// What the store says about `key`, if it says it within `budget`; a read error or a slower store counts as
    /// a miss.
    async fn read_store(&self, key: &str, budget: Duration) -> Stored {
        let Some(store) = &self.store else {
            return Stored::Unknown;
        };
        let error = match tokio::time::timeout(budget, store.get(key)).await {
            Ok(Ok(Some(entry))) => return Stored::Entry(entry),
            Ok(Ok(None)) => return Stored::Absent,
            Ok(Err(error)) => error,
            Err(_elapsed) => CacheError::Timeout {
                store: "engine",
                after: budget,
            },
        };
        self.stats.store_read_errors.inc();
        if self.read_warned.ready() {
            warn!(domain = key, kind = error.kind(), error = %error.with_causes(), "policy cache read failed; treated as a miss");
        } else {
            debug!(domain = key, kind = error.kind(), %error, "policy cache read failed; treated as a miss");
        }
        Stored::Unknown
    }

    /// `key` publishes an invalid `STSv1` record: counted, and logged at info once per domain (the Python daemon
    /// enforced some such records, so after a migration the difference shows here).
    fn invalid_record(&self, key: &str, reason: &NoPolicyReason) {
        self.stats.invalid_records.inc();
        if self.invalid_noted.first(key) {
            info!(
                domain = key,
                detail = %reason,
                "invalid MTA-STS TXT record: no policy (RFC 8461 section 3.1); counted in mtasts_invalid_records_total"
            );
        }
    }

    /// A store entry of `key` holds a time from the future: counted, and warned about once per domain.
    pub(crate) fn skewed(&self, key: &str) {
        self.stats.store_skewed.inc();
        if self.skew_warnings.first(key) {
            warn!(
                domain = key,
                max_skew_secs = MAX_CLOCK_SKEW.as_secs(),
                "policy cache entry written with a clock ahead of ours (a host sharing the store?); counted as \
                 checked now and replaced by the next check"
            );
        }
    }

    /// A discovery slot for a lookup, if one frees up before `deadline`.
    pub(crate) async fn permit(&self, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        match tokio::time::timeout_at(deadline, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) if deadline > Instant::now() => Some(permit),
            _ => None,
        }
    }

    /// Runs the discoverer until `deadline` (plus a little slack); one that overruns is cut off and counts as
    /// failed.
    async fn discover(
        &self,
        domain: &PolicyDomain,
        known_id: Option<&PolicyId>,
        deadline: Instant,
    ) -> Discovery {
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.stats.in_flight.inc();
        let _in_flight = InFlight(&self.stats);
        let request = DiscoveryRequest::new(domain, known_id, remaining);
        tokio::time::timeout(
            remaining.saturating_add(DISCOVERY_SLACK),
            self.discoverer.0.discover(&request),
        )
        .await
        .unwrap_or_else(|_elapsed| {
            let error = Anomaly::Overran { timeout: remaining };
            Discovery::Failed(DiscoveryError::new("timeout", error))
        })
    }

    /// Counts a refresh's result in the metrics.
    fn count(&self, done: &Done) {
        let stats = &self.stats;
        match done.outcome {
            Outcome::Fresh if done.resolution.source == Source::Store => stats.store_hits.inc(),
            Outcome::Fresh => {}
            Outcome::Fetched => stats.fetched.inc(),
            Outcome::Unchanged => stats.unchanged.inc(),
            Outcome::NoPolicy => stats.no_policy.inc(),
            Outcome::Failed { kind } => stats.failure(kind),
            Outcome::LocalResource { .. } => stats.local_resource.inc(),
            Outcome::Backoff => stats.backoff_skips.inc(),
            Outcome::Overloaded => stats.overloaded.inc(),
        }
        if done.outcome != Outcome::Fresh && done.resolution.source == Source::Stale {
            stats.stale_answers.inc();
        }
    }

    /// One info line per discovery.
    fn log(&self, key: &str, event: &Event, duration_ms: u64) {
        match event {
            Event::Fetched {
                reason,
                id,
                mode,
                max_age,
            } => info!(
                domain = key,
                outcome = "fetched",
                reason,
                %id,
                %mode,
                max_age,
                duration_ms,
                "MTA-STS discovery"
            ),
            Event::Unchanged { id } => info!(
                domain = key,
                outcome = "unchanged",
                reason = "id_unchanged",
                %id,
                duration_ms,
                "MTA-STS discovery"
            ),
            Event::NoPolicy {
                reason,
                kept_cached,
                ttl,
            } => {
                macro_rules! no_policy {
                    ($level:expr) => {
                        tracing::event!(
                            $level,
                            domain = key,
                            outcome = "no_policy",
                            reason = reason.kind(),
                            detail = %reason,
                            kept_cached,
                            ttl = ttl.as_secs_f64(),
                            duration_ms,
                            "MTA-STS discovery"
                        )
                    };
                }
                // Most domains publish no policy: a line for each of them after every negative TTL would drown
                // the log, so that is debug. A record gone while its policy stays in use (RFC 8461 §10.2) is
                // worth telling.
                if *kept_cached {
                    no_policy!(tracing::Level::INFO);
                } else {
                    no_policy!(tracing::Level::DEBUG);
                }
            }
            Event::Failed { error, stale } => info!(
                domain = key,
                outcome = "failed",
                reason = error.kind(),
                error = %error,
                stale,
                backoff = self.freshness.failure_backoff.as_secs_f64(),
                duration_ms,
                "MTA-STS discovery"
            ),
            // This host's trouble, not the domain's: a warning, at most one a second (a descriptor shortage
            // fails every discovery at once).
            Event::LocalResource { error, stale } => {
                if self.local_warned.ready() {
                    warn!(
                        domain = key,
                        outcome = "local_resource",
                        reason = error.kind(),
                        error = %error,
                        stale,
                        duration_ms,
                        "MTA-STS discovery could not run: this host lacks open files or memory (not the domain's \
                         failure: no back-off, nothing cached)"
                    );
                } else {
                    debug!(
                        domain = key,
                        outcome = "local_resource",
                        reason = error.kind(),
                        error = %error,
                        stale,
                        duration_ms,
                        "MTA-STS discovery could not run: this host lacks open files or memory"
                    );
                }
            }
        }
    }

    /// The purge generation now: compare with [`Inner::purged_since`].
    pub(crate) fn purge_generation(&self) -> u64 {
        self.purges.load(Ordering::Acquire)
    }

    /// Whether a purge came after `generation` was read.
    pub(crate) fn purged_since(&self, generation: u64) -> bool {
        self.purge_generation() != generation
    }

    /// Counts a purge: every refresh running now started before it. Called before the purge empties memory.
    pub(crate) fn purging(&self) {
        self.purges.fetch_add(1, Ordering::AcqRel);
    }

    /// Stores `entry` in the memory front (`keep`: always, or if the front's admission filter lets it in),
    /// unless a purge came after `generation` (the refresh that learnt it
    /// started before the purge: the purge wins). Checked again after the insert: a purge that empties memory
    /// in between has counted itself first, and the entry is taken out again.
    fn remember(&self, key: &str, entry: FrontEntry, generation: u64, keep: Keep) {
        if self.purged_since(generation) {
            debug!(domain = key, "purged during the refresh; result not kept");
            return;
        }
        match keep {
            Keep::Always => {
                self.front.insert(Box::from(key), entry);
            }
            Keep::IfAdmitted => {
                self.front.offer(Box::from(key), entry);
            }
        }
        if self.purged_since(generation) {
            self.front.remove(key);
        }
    }

    /// The answer when a lookup's refresh did not finish in time: the memory front's answer (the discovery may
    /// have finished and updated memory while its store write is still pending), else the cached policy while
    /// valid, else none.
    pub(crate) fn fallback(&self, key: &str, now: Instant) -> Resolution {
        let Some(entry) = self.front.peek(key) else {
            return Resolution::none(Source::Unavailable);
        };
        if let Some(resolution) = entry.answer(now) {
            return resolution;
        }
        let resolution = stale_or_none(entry.valid_policy(now));
        if resolution.source == Source::Stale {
            self.stats.stale_answers.inc();
        }
        resolution
    }
}

/// Decrements the in-flight gauge when a discovery ends.
/// How an entry goes into the memory front ([`mtasts_cache::bounded::BoundedCache`]).
#[derive(Debug, Clone, Copy)]
enum Keep {
    /// `insert`: room is made for it.
    Always,
    /// `offer`: only if asked for more often than the entry it would push out.
    IfAdmitted,
}

struct InFlight<'a>(&'a EngineStats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Remembers the domains a warning was logged for (the most recent [`WarnOnce::CAPACITY`]), so that one is
/// logged once per domain, and at most one a second in all.
#[derive(Debug)]
pub(crate) struct WarnOnce {
    seen: ShardedLru<Arc<str>, ()>,
    every: Every,
}

impl WarnOnce {
    const CAPACITY: usize = 4_096;

    pub(crate) fn new() -> Self {
        Self {
            seen: ShardedLru::new(Self::CAPACITY),
            every: Every::second(),
        }
    }

    /// Whether to log the warning for `key` now: not logged for it before, nor for any key within the last
    /// second.
    pub(crate) fn first(&self, key: &str) -> bool {
        self.seen.insert(Arc::from(key), ()).is_none() && self.every.ready()
    }
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
