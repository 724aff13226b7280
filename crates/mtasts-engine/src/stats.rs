//! Counters, for logs and the metrics endpoint.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// A snapshot of the engine's counters ([`Engine::stats`](crate::Engine::stats)).
///
/// Counters only grow for the life of the engine, except the gauges `in_flight` and `memory_entries`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Lookups answered by the memory front (including cached "no policy" and back-off answers).
    pub memory_hits: u64,
    /// Lookups answered by the persistent store without discovery.
    pub store_hits: u64,
    /// Lookups the memory front could not answer.
    pub misses: u64,
    /// Lookups that joined a discovery already running for their domain.
    pub coalesced: u64,
    /// Discoveries that fetched a policy over HTTPS.
    pub fetched: u64,
    /// Discoveries that found the TXT id unchanged (no HTTPS).
    pub unchanged: u64,
    /// Discoveries that found no policy.
    pub no_policy: u64,
    /// Discoveries that failed.
    pub failed: u64,
    /// Failed discoveries by failure kind label (`mtasts_fetch::FetchError::kind`), sorted by label.
    pub failures_by_kind: Vec<(&'static str, u64)>,
    /// Discoveries skipped because the domain is backing off after a failure (RFC 8461 §3.3 rate limit).
    pub backoff_skips: u64,
    /// Discoveries that could not start within the lookup's timeout because `max_in_flight` were running.
    pub overloaded: u64,
    /// Lookups answered from a cached policy because discovery failed or could not run.
    pub stale_answers: u64,
    /// Store reads that failed (each counted as a miss).
    pub store_read_errors: u64,
    /// Store writes that failed (logged, otherwise ignored).
    pub store_write_errors: u64,
    /// Memory copies dropped because the store no longer held the domain (purged, e.g. by
    /// `mta-sts-daemon cache purge`); each is followed by a full discovery.
    pub store_purged: u64,
    /// Discoveries running now.
    pub in_flight: u64,
    /// Entries in the memory front now.
    pub memory_entries: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) memory_hits: Counter,
    pub(crate) store_hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) coalesced: Counter,
    pub(crate) fetched: Counter,
    pub(crate) unchanged: Counter,
    pub(crate) no_policy: Counter,
    pub(crate) failed: Counter,
    pub(crate) backoff_skips: Counter,
    pub(crate) overloaded: Counter,
    pub(crate) stale_answers: Counter,
    pub(crate) store_read_errors: Counter,
    pub(crate) store_write_errors: Counter,
    pub(crate) store_purged: Counter,
    pub(crate) in_flight: Counter,
    /// Only touched on the failure path.
    failures_by_kind: Mutex<BTreeMap<&'static str, u64>>,
}

impl Counters {
    pub(crate) fn failure(&self, kind: &'static str) {
        self.failed.inc();
        let mut map = self
            .failures_by_kind
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *map.entry(kind).or_insert(0) += 1;
    }

    pub(crate) fn snapshot(&self, memory_entries: usize) -> EngineStats {
        let failures_by_kind = self
            .failures_by_kind
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        EngineStats {
            memory_hits: self.memory_hits.get(),
            store_hits: self.store_hits.get(),
            misses: self.misses.get(),
            coalesced: self.coalesced.get(),
            fetched: self.fetched.get(),
            unchanged: self.unchanged.get(),
            no_policy: self.no_policy.get(),
            failed: self.failed.get(),
            failures_by_kind,
            backoff_skips: self.backoff_skips.get(),
            overloaded: self.overloaded.get(),
            stale_answers: self.stale_answers.get(),
            store_read_errors: self.store_read_errors.get(),
            store_write_errors: self.store_write_errors.get(),
            store_purged: self.store_purged.get(),
            in_flight: self.in_flight.get(),
            memory_entries: u64::try_from(memory_entries).unwrap_or(u64::MAX),
        }
    }
}
