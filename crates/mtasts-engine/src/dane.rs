//! DANE answers in memory (RFC 7672; RFC 8461 §2: MTA-STS must not override DANE): how long one is kept, when
//! it answers without a discovery, what is answered when no discovery result comes in time. Pure rules over a
//! time argument; the lookup that uses them is `engine/with_dane.rs`.
//!
//! DANE state lives in a memory of its own next to the MTA-STS front, keyed by domain like it: the MTA-STS entry
//! serves every zone, the DANE entry only lookups from zones that ask for DANE ([`crate::Engine::resolve_with_dane`]),
//! so a daemon without such zones keeps none. It is never written to the store (the stores keep the Python
//! daemon's layouts).

use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::lru::ShardedLru;
use tokio::time::Instant;

use crate::coalesce::Flights;
use crate::discover::{DaneAnswer, DaneDiscovery};
use crate::freshness::Freshness;

/// How long to keep `found`: `cache_grace` when it came from a failed lookup, else the smallest TTL of the DNS
/// data it rests on, within `[cache_grace, max_ttl]` (`max_ttl` when no TTL was seen).
pub(crate) fn keep(freshness: &Freshness, max_ttl: Duration, found: &DaneDiscovery) -> Duration {
    if found.failed {
        return freshness.grace;
    }
    found
        .ttl
        .unwrap_or(max_ttl)
        .min(max_ttl)
        .max(freshness.grace)
}

/// One domain's DANE answer in memory.
#[derive(Clone, Debug)]
pub(crate) struct DaneEntry {
    pub(crate) answer: DaneAnswer,
    /// The answer came from a failed lookup.
    pub(crate) failed: bool,
    fresh_until: Instant,
    /// After a failure: no new discovery before this (`failure_backoff`).
    retry_after: Option<Instant>,
}

impl DaneEntry {
    /// The entry for `found`, discovered at `now` (monotonic), kept for [`keep`].
    pub(crate) fn new(
        found: &DaneDiscovery,
        now: Instant,
        freshness: &Freshness,
        max_ttl: Duration,
    ) -> Self {
        Self {
            answer: found.answer,
            failed: found.failed,
            fresh_until: now + keep(freshness, max_ttl, found),
            retry_after: found.failed.then(|| now + freshness.failure_backoff),
        }
    }

    /// The answer at `now` without a discovery: while the entry is fresh, and after a failure while the back-off
    /// lasts.
    pub(crate) fn answer(&self, now: Instant) -> Option<DaneAnswer> {
        let backing_off = self.retry_after.is_some_and(|until| now < until);
        (now < self.fresh_until || backing_off).then_some(self.answer)
    }
}

/// The answer when no discovery result came in time, from the last answer known (`None`: nothing known). A
/// domain known to use DANE stays `dane`: Postfix then looks the TLSA records up itself, and an MTA-STS `secure`
/// never overrides DANE; anything else gives the MTA-STS answer.
pub(crate) fn fallback(last: Option<&DaneEntry>) -> DaneAnswer {
    match last.map(|entry| entry.answer) {
        Some(DaneAnswer::DaneOnly | DaneAnswer::Dane) => DaneAnswer::Dane,
        _ => DaneAnswer::MtaSts,
    }
}

/// The engine's DANE half: the memory and the running discoveries, by domain.
pub(crate) struct DaneMemory {
    pub(crate) front: ShardedLru<Arc<str>, DaneEntry>,
    pub(crate) flights: Arc<Flights<DaneAnswer>>,
    /// `max_dane_ttl` (never below `cache_grace`).
    pub(crate) max_ttl: Duration,
}

impl DaneMemory {
    /// An empty memory of at most `capacity` domains.
    pub(crate) fn new(capacity: usize, max_ttl: Duration) -> Self {
        Self {
            front: ShardedLru::new(capacity),
            flights: Arc::default(),
            max_ttl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(60);
    const MAX_TTL: Duration = Duration::from_secs(3600);

    fn freshness() -> Freshness {
        Freshness {
            grace: GRACE,
            max_negative_ttl: MAX_TTL,
            failure_backoff: Duration::from_secs(300),
        }
    }

    fn entry(found: &DaneDiscovery, now: Instant) -> DaneEntry {
        DaneEntry::new(found, now, &freshness(), MAX_TTL)
    }

    fn found(answer: DaneAnswer, ttl: Option<u64>, failed: bool) -> DaneDiscovery {
        DaneDiscovery::new(answer, "test", ttl.map(Duration::from_secs), failed)
    }

    #[test]
    fn an_answer_is_kept_for_its_ttl_within_grace_and_max_dane_ttl() {
        let secs = Duration::from_secs;
        let cases = [
            (Some(600), secs(600)),
            (Some(5), GRACE),
            (Some(90_000), secs(3600)),
            (None, secs(3600)),
        ];
        for (ttl, kept) in cases {
            assert_eq!(
                keep(
                    &freshness(),
                    MAX_TTL,
                    &found(DaneAnswer::DaneOnly, ttl, false)
                ),
                kept,
                "{ttl:?}"
            );
        }
        // An answer from a failed lookup: cache_grace, whatever the TTLs seen.
        assert_eq!(
            keep(
                &freshness(),
                MAX_TTL,
                &found(DaneAnswer::Dane, Some(600), true)
            ),
            GRACE
        );
    }

    #[test]
    fn an_entry_answers_while_fresh_and_a_failure_while_backing_off() {
        let now = Instant::now();
        let ok = entry(&found(DaneAnswer::DaneOnly, Some(600), false), now);
        assert_eq!(ok.answer(now), Some(DaneAnswer::DaneOnly));
        assert_eq!(
            ok.answer(now + Duration::from_secs(599)),
            Some(DaneAnswer::DaneOnly)
        );
        assert_eq!(ok.answer(now + Duration::from_secs(600)), None);
        let failed = entry(&found(DaneAnswer::Dane, Some(600), true), now);
        // Kept for cache_grace, then answered without a new lookup until the back-off ends.
        assert_eq!(
            failed.answer(now + Duration::from_secs(200)),
            Some(DaneAnswer::Dane)
        );
        assert_eq!(failed.answer(now + Duration::from_secs(300)), None);
    }

    #[test]
    fn without_a_result_in_time_dane_stays_dane_and_nothing_known_is_mta_sts() {
        let now = Instant::now();
        let entry = |answer| entry(&found(answer, None, false), now);
        assert_eq!(fallback(None), DaneAnswer::MtaSts);
        assert_eq!(
            fallback(Some(&entry(DaneAnswer::DaneOnly))),
            DaneAnswer::Dane
        );
        assert_eq!(fallback(Some(&entry(DaneAnswer::Dane))), DaneAnswer::Dane);
        assert_eq!(
            fallback(Some(&entry(DaneAnswer::MtaSts))),
            DaneAnswer::MtaSts
        );
    }
}
