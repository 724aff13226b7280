//! Lookups for zones that ask for DANE: the MTA-STS resolution and the domain's DANE answer, side by side.

use std::sync::Arc;
use std::time::Duration;

use mtasts_core::{Mode, PolicyDomain};
use tokio::time::Instant;
use tracing::{debug, info};

use super::{Engine, WAIT_SLACK};
use crate::coalesce::wait;
use crate::dane::{DaneEntry, fallback, keep};
use crate::discover::{DaneAnswer, DaneDiscovery, DiscoveryRequest};
use crate::refresh::{DISCOVERY_SLACK, Inner, millis};
use crate::resolution::{Resolution, Source};

/// The answer to [`Engine::resolve_with_dane`]: the MTA-STS resolution and the DANE answer. When
/// [`DaneResolution::dane`] is `dane-only` or `dane` it wins (RFC 8461 §2); with [`DaneAnswer::MtaSts`] the
/// MTA-STS resolution applies.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DaneResolution {
    /// What [`Engine::resolve`] answers.
    pub mta_sts: Resolution,
    /// The DANE answer.
    pub dane: DaneAnswer,
    /// Where the DANE answer came from: [`Source::Memory`], [`Source::Discovered`], [`Source::Coalesced`], or
    /// [`Source::Unavailable`] when no discovery result came in time.
    pub dane_source: Source,
}

impl Engine {
    /// [`Engine::resolve`], and the DANE answer for `domain` (RFC 7672 §2.2, through
    /// [`Discover::discover_dane`](crate::Discover::discover_dane)), for zones that ask for DANE.
    ///
    /// Both run at once, each coalesced per domain (concurrent lookups share one MTA-STS discovery and one DANE
    /// discovery) and bounded by `timeout`. A DANE answer is kept in memory only: for the smallest TTL of the DNS
    /// data it rests on, within `[cache_grace, max_dane_ttl]`; an answer from a failed lookup for `cache_grace`,
    /// and the domain's DANE discovery then waits `failure_backoff`. Never fails: without a DANE result in time
    /// the answer is `dane` for a domain known to use DANE, else the MTA-STS answer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mtasts_core::PolicyDomain;
    /// use mtasts_engine::{
    ///     DaneAnswer, DaneDiscovery, Discover, Discovery, DiscoveryRequest, Engine, NoPolicyReason, Source,
    ///     async_trait,
    /// };
    ///
    /// /// Every domain has usable TLSA records for every MX host, and no MTA-STS policy.
    /// struct AllDane;
    ///
    /// #[async_trait]
    /// impl Discover for AllDane {
    ///     async fn discover(&self, _: &DiscoveryRequest<'_>) -> Discovery {
    ///         Discovery::NoPolicy { reason: NoPolicyReason::NxDomain, negative_ttl: None }
    ///     }
    ///     async fn discover_dane(&self, _: &DiscoveryRequest<'_>) -> DaneDiscovery {
    ///         DaneDiscovery::new(DaneAnswer::DaneOnly, "all_usable", Some(Duration::from_secs(300)), false)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::builder(AllDane).build();
    /// let domain = PolicyDomain::parse("example.com")?;
    /// let found = engine.resolve_with_dane(&domain, Duration::from_secs(4)).await;
    /// assert_eq!((found.dane, found.dane_source), (DaneAnswer::DaneOnly, Source::Discovered));
    /// assert!(found.mta_sts.policy.is_none());
    /// let again = engine.resolve_with_dane(&domain, Duration::from_secs(4)).await;
    /// assert_eq!(again.dane_source, Source::Memory);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn resolve_with_dane(
        &self,
        domain: &PolicyDomain,
        timeout: Duration,
    ) -> DaneResolution {
        let (mta_sts, (dane, dane_source)) = tokio::join!(
            self.resolve(domain, timeout),
            self.inner.resolve_dane(domain, timeout)
        );
        self.inner.note_weaker_than_enforce(domain, &mta_sts, dane);
        DaneResolution {
            mta_sts,
            dane,
            dane_source,
        }
    }
}

impl Inner {
    /// The DANE answer for `domain`: from memory, or from the domain's (shared) DANE discovery.
    async fn resolve_dane(
        self: &Arc<Self>,
        domain: &PolicyDomain,
        timeout: Duration,
    ) -> (DaneAnswer, Source) {
        let key = domain.as_str();
        if let Some(answer) = self
            .dane
            .front
            .get(key)
            .and_then(|e| e.answer(Instant::now()))
        {
            debug!(
                domain = key,
                answer = answer.kind(),
                "DANE answer from memory"
            );
            return (answer, Source::Memory);
        }
        let (mut flight, leader) = self.dane.flights.join_or_start(key, || {
            let inner = Arc::clone(self);
            let domain = domain.clone();
            async move { inner.discover_dane(&domain, timeout).await }
        });
        match wait(&mut flight, Some(timeout.saturating_add(WAIT_SLACK))).await {
            Some(answer) if leader => (answer, Source::Discovered),
            Some(answer) => (answer, Source::Coalesced),
            None => (
                fallback(self.dane.front.peek(key).as_ref()),
                Source::Unavailable,
            ),
        }
    }

    /// One DANE discovery of `domain`, in its own task: the discoverer's result, remembered and logged.
    async fn discover_dane(&self, domain: &PolicyDomain, timeout: Duration) -> DaneAnswer {
        let key = domain.as_str();
        let deadline = Instant::now() + timeout;
        let generation = self.purge_generation();
        let last = self.dane.front.peek(key);
        // Answered meanwhile (this flight raced with the end of the previous one).
        if let Some(answer) = last.as_ref().and_then(|e| e.answer(self.clock.monotonic())) {
            return answer;
        }
        let Some(_permit) = self.permit(deadline).await else {
            debug!(
                domain = key,
                "no discovery slot within the timeout (max_in_flight); DANE answer from what is known"
            );
            return fallback(last.as_ref());
        };
        let started = Instant::now();
        let remaining = deadline.saturating_duration_since(started);
        let request = DiscoveryRequest::new(domain, None, remaining);
        let found = tokio::time::timeout(
            remaining.saturating_add(DISCOVERY_SLACK),
            self.discoverer.0.discover_dane(&request),
        )
        .await
        .unwrap_or_else(|_elapsed| {
            DaneDiscovery::new(fallback(last.as_ref()), "timeout", None, true)
        });
        let max_ttl = self.dane.max_ttl;
        let entry = DaneEntry::new(&found, self.clock.monotonic(), &self.freshness, max_ttl);
        info!(
            domain = key,
            answer = found.answer.kind(),
            reason = found.reason,
            failed = found.failed,
            keep_s = keep(&self.freshness, max_ttl, &found).as_secs(),
            duration_ms = millis(started.elapsed()),
            "DANE discovery"
        );
        // A purge since the discovery started wins (see `Inner::remember`).
        if !self.purged_since(generation) {
            self.dane.front.insert(Arc::from(key), entry);
            if self.purged_since(generation) {
                self.dane.front.remove(key);
            }
        }
        found.answer
    }

    /// Logs, once per domain, that `dane` replaces an `enforce` MTA-STS policy while some MX hosts have no
    /// usable TLSA records: those hosts get opportunistic TLS (or unauthenticated TLS) instead of `secure
    /// match=`. RFC 8461 §2 gives DANE precedence and Postfix cannot mix levels per host.
    fn note_weaker_than_enforce(
        &self,
        domain: &PolicyDomain,
        mta_sts: &Resolution,
        dane: DaneAnswer,
    ) {
        if dane != DaneAnswer::Dane || mta_sts.mode() != Some(Mode::Enforce) {
            return;
        }
        let Some(entry) = self.dane.front.peek(domain.as_str()) else {
            return;
        };
        if !entry.failed && self.dane_noted.first(domain.as_str()) {
            info!(
                domain = domain.as_str(),
                "some MX hosts have no usable TLSA records: answering `dane` over the enforce MTA-STS policy \
                 (RFC 8461 §2: DANE takes precedence); those hosts get opportunistic TLS, not `secure match=`"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use tokio::sync::watch;

    use super::*;
    use crate::{Discover, Discovery, NoPolicyReason};

    const TIMEOUT: Duration = Duration::from_secs(4);

    /// No MTA-STS policy anywhere; DANE answers what `reply` holds, once the gate is open.
    struct Fake {
        reply: Mutex<DaneDiscovery>,
        dane_calls: AtomicUsize,
        gate: watch::Sender<bool>,
    }

    impl Fake {
        fn new(reply: DaneDiscovery) -> Arc<Self> {
            Arc::new(Self {
                reply: Mutex::new(reply),
                dane_calls: AtomicUsize::new(0),
                gate: watch::Sender::new(true),
            })
        }

        fn calls(&self) -> usize {
            self.dane_calls.load(Ordering::SeqCst)
        }

        fn set(&self, reply: DaneDiscovery) {
            *self.reply.lock().expect("reply") = reply;
        }
    }

    #[async_trait]
    impl Discover for Fake {
        async fn discover(&self, _: &DiscoveryRequest<'_>) -> Discovery {
            Discovery::NoPolicy {
                reason: NoPolicyReason::NxDomain,
                negative_ttl: None,
            }
        }

        async fn discover_dane(&self, _: &DiscoveryRequest<'_>) -> DaneDiscovery {
            self.dane_calls.fetch_add(1, Ordering::SeqCst);
            let mut gate = self.gate.subscribe();
            let _open = gate.wait_for(|open| *open).await;
            self.reply.lock().expect("reply").clone()
        }
    }

    fn engine(fake: &Arc<Fake>) -> Engine {
        Engine::builder(Arc::clone(fake))
            .cache_grace(Duration::from_secs(60))
            .failure_backoff(Duration::from_secs(300))
            .max_dane_ttl(Duration::from_secs(3600))
            .build()
    }

    fn example() -> PolicyDomain {
        PolicyDomain::parse("example.com").expect("domain")
    }

    fn found(answer: DaneAnswer, ttl: u64, failed: bool) -> DaneDiscovery {
        DaneDiscovery::new(answer, "test", Some(Duration::from_secs(ttl)), failed)
    }

    async fn lookup(engine: &Engine) -> (DaneAnswer, Source) {
        let found = engine.resolve_with_dane(&example(), TIMEOUT).await;
        (found.dane, found.dane_source)
    }

    /// One step of a script: let `secs` pass, make the discoverer answer `reply` from now on (if given), look
    /// up, and expect `(answer, source)` and the discoverer's call count.
    type Step = (u64, Option<DaneDiscovery>, (DaneAnswer, Source), usize);

    async fn play(first: DaneDiscovery, steps: &[Step]) {
        let fake = Fake::new(first);
        let engine = engine(&fake);
        for (i, (secs, reply, want, calls)) in steps.iter().enumerate() {
            tokio::time::advance(Duration::from_secs(*secs)).await;
            if let Some(reply) = reply {
                fake.set(reply.clone());
            }
            assert_eq!(lookup(&engine).await, *want, "step {i}");
            assert_eq!(fake.calls(), *calls, "step {i}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_kept_for_their_ttl_and_failures_for_grace_then_back_off() {
        use DaneAnswer::{Dane, DaneOnly, MtaSts};
        let (memory, discovered) = (Source::Memory, Source::Discovered);
        // A usable answer lives for its TTL (600 s).
        let kept: &[Step] = &[
            (0, None, (DaneOnly, discovered), 1),
            (599, None, (DaneOnly, memory), 1),
            (1, Some(found(MtaSts, 600, false)), (MtaSts, discovered), 2),
        ];
        play(found(DaneOnly, 600, false), kept).await;
        // A failure: cache_grace (60 s) has passed, the back-off (300 s) has not, no new lookup.
        let backing_off: &[Step] = &[
            (0, None, (Dane, discovered), 1),
            (299, None, (Dane, memory), 1),
            (
                1,
                Some(found(DaneOnly, 600, false)),
                (DaneOnly, discovered),
                2,
            ),
        ];
        play(found(Dane, 600, true), backing_off).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_from_a_zone_without_dane_never_discovers_dane() {
        let fake = Fake::new(found(DaneAnswer::DaneOnly, 600, false));
        let engine = engine(&fake);
        assert!(engine.resolve(&example(), TIMEOUT).await.policy.is_none());
        assert_eq!(fake.calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_lookups_share_one_dane_discovery() {
        let fake = Fake::new(found(DaneAnswer::DaneOnly, 600, false));
        fake.gate.send_replace(false);
        let engine = engine(&fake);
        let lookups: Vec<_> = (0..8)
            .map(|_| {
                let engine = engine.clone();
                tokio::spawn(async move { lookup(&engine).await })
            })
            .collect();
        tokio::task::yield_now().await;
        fake.gate.send_replace(true);
        let mut sources = Vec::new();
        for task in lookups {
            let (answer, source) = task.await.expect("lookup");
            assert_eq!(answer, DaneAnswer::DaneOnly);
            sources.push(source);
        }
        assert_eq!(fake.calls(), 1);
        assert_eq!(
            sources.iter().filter(|s| **s == Source::Discovered).count(),
            1,
            "{sources:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_discovery_that_overruns_keeps_a_dane_domain_dane_and_an_unknown_one_mta_sts() {
        let fake = Fake::new(found(DaneAnswer::DaneOnly, 600, false));
        let engine = engine(&fake);
        fake.gate.send_replace(false);
        // Cut off after the timeout: a failure, nothing known, the MTA-STS answer.
        assert_eq!(
            lookup(&engine).await,
            (DaneAnswer::MtaSts, Source::Discovered)
        );
        fake.gate.send_replace(true);
        // A failure backs off: no new discovery for 300 s.
        assert_eq!(lookup(&engine).await, (DaneAnswer::MtaSts, Source::Memory));
        assert_eq!(fake.calls(), 1);
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(
            lookup(&engine).await,
            (DaneAnswer::DaneOnly, Source::Discovered)
        );
        // Expired, and the resolver hangs: `dane`, never an MTA-STS answer over a DANE domain.
        tokio::time::advance(Duration::from_secs(600)).await;
        fake.gate.send_replace(false);
        assert_eq!(
            lookup(&engine).await,
            (DaneAnswer::Dane, Source::Discovered)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_forgets_the_dane_answer() {
        let fake = Fake::new(found(DaneAnswer::DaneOnly, 600, false));
        let engine = engine(&fake);
        lookup(&engine).await;
        assert!(engine.purge("example.com").await.expect("purge"));
        assert_eq!(
            lookup(&engine).await,
            (DaneAnswer::DaneOnly, Source::Discovered)
        );
        assert_eq!(fake.calls(), 2);
    }
}
