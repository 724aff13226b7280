//! The proactive refresh (RFC 8461 §3.3: "senders ... should proactively refresh"): a pass over the cached
//! policies that refreshes them before they are needed ([`Engine::refresh_proactively`]), and the loop that runs
//! a pass every interval on the engine's clock ([`Engine::spawn_proactive`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use mtasts_cache::{CacheError, MAX_CLOCK_SKEW, ScanToken, is_skewed};
use mtasts_core::PolicyDomain;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::clock::Now;
use crate::coalesce::wait;
use crate::engine::Engine;
use crate::freshness::{Done, Outcome, Purpose, is_skewed_entry};
use crate::writes::bounded;

/// Store scan page size for the proactive refresh.
const SCAN_PAGE: usize = 256;
/// How long the proactive loop waits for an unavailable store before asking it again when the last pass was.
const STORE_RETRY: Duration = Duration::from_secs(10);

/// What one [`Engine::refresh_proactively`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshReport {
    /// Entries visited (store scan, or the memory front when there is no store).
    pub scanned: u64,
    /// Entries old enough (or near enough to expiry) to be refreshed.
    pub due: u64,
    /// Due entries found already refreshed meanwhile (by a lookup or another host sharing the store).
    pub fresh: u64,
    /// Refreshes that fetched the policy over HTTPS.
    pub fetched: u64,
    /// Refreshes that found the TXT id unchanged.
    pub unchanged: u64,
    /// Refreshes that found no policy published any more.
    pub no_policy: u64,
    /// Refreshes that failed (the cached policy stays in use until it expires), including those this host
    /// lacked a descriptor or memory for.
    pub failed: u64,
    /// Refreshes skipped because the domain is backing off after a recent failure.
    pub backoff: u64,
    /// Entries that could not be refreshed: undecodable store entries and invalid domain names.
    pub invalid: u64,
    /// Store scan errors (a scan error ends the pass early).
    pub scan_errors: u64,
    /// Whether the scan reached the end of the store.
    pub completed: bool,
    /// When the pass finished (Unix seconds, on the engine's [`Clock`](crate::Clock)); the time recorded with
    /// [`PolicyCache::set_proactive_fetch_ts`](mtasts_cache::PolicyCache::set_proactive_fetch_ts).
    pub finished_at: u64,
}

impl RefreshReport {
    const fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Fresh => self.fresh += 1,
            Outcome::Fetched => self.fetched += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::NoPolicy => self.no_policy += 1,
            Outcome::Failed { .. } | Outcome::LocalResource { .. } => self.failed += 1,
            Outcome::Backoff | Outcome::Overloaded => self.backoff += 1,
        }
    }

    fn joined(&mut self, joined: Result<Option<Done>, tokio::task::JoinError>) {
        match joined {
            Ok(Some(done)) => self.record(done.outcome),
            // The shared discovery task panicked or was cancelled.
            Ok(None) | Err(_) => self.failed += 1,
        }
    }
}

impl Engine {
    /// Refreshes cached policies before they are needed (RFC 8461 §3.3: "proactively refresh").
    ///
    /// Walks the store page by page (or the memory front when there is no store) and refreshes every policy
    /// checked more than `interval / grace_ratio` ago, or that would come within its near-expiry margin before
    /// the next pass (`interval` from now), with at most `concurrency` discoveries at once (on top of
    /// `max_in_flight`). Lookups of a domain being refreshed join its discovery. Domains that no longer publish a
    /// policy and whose cached policy has expired are removed from the store. Records the time of the pass with
    /// [`PolicyCache::set_proactive_fetch_ts`](mtasts_cache::PolicyCache::set_proactive_fetch_ts). Each discovery
    /// is bounded by [`EngineBuilder::refresh_timeout`](crate::EngineBuilder::refresh_timeout).
    pub async fn refresh_proactively(
        &self,
        interval: Duration,
        grace_ratio: f64,
        concurrency: usize,
    ) -> RefreshReport {
        let inner = &self.inner;
        let started = Instant::now();
        let now = Now::read(&*inner.clock);
        let purpose = Purpose::proactive(interval, grace_ratio);
        let concurrency = concurrency.max(1);
        let mut report = RefreshReport::default();
        let mut tasks = JoinSet::new();

        if let Some(store) = &inner.store {
            let mut token: Option<ScanToken> = None;
            loop {
                let page = match bounded(store.scan(token.as_ref(), SCAN_PAGE)).await {
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
                    if is_skewed_entry(&entry, &now) {
                        inner.skewed(&domain);
                    }
                    if purpose.is_due_stored(&entry, &now) {
                        report.due += 1;
                        self.schedule(&mut tasks, &mut report, &domain, purpose, concurrency)
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
                if entry.policy.is_some() {
                    due.push((key.to_string(), entry.is_due(purpose, now.mono)));
                }
            });
            for (domain, due) in due {
                report.scanned += 1;
                if due {
                    report.due += 1;
                    self.schedule(&mut tasks, &mut report, &domain, purpose, concurrency)
                        .await;
                }
            }
            report.completed = true;
        }
        while let Some(joined) = tasks.join_next().await {
            report.joined(joined);
        }

        let finished = inner.clock.now();
        report.finished_at = finished;
        if let Some(store) = &inner.store
            && let Err(error) = bounded(store.set_proactive_fetch_ts(finished)).await
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
            completed = report.completed,
            duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "proactive refresh pass done"
        );
        report
    }

    /// Runs [`Engine::refresh_proactively`] every `interval` in a task of its own, until the returned handle is
    /// aborted; `on_pass` sees each pass's report (e.g. to count it in metrics).
    ///
    /// A pass runs when `interval` has passed since the last recorded one ([`Engine::last_proactive_refresh`]:
    /// from the store when there is one, so a restart, or another host sharing the store, does not cause an
    /// early pass); the first one at once when none is recorded. While the store is unavailable (still opening,
    /// or down) no pass runs: it is asked again every 10 s. Passes are at least `interval` apart even when
    /// the store cannot record them. Time is the engine's [`Clock`](crate::Clock); the waits are tokio timers,
    /// so tests run them with paused time. An `interval` under one second is taken as one second.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mtasts_engine::{Discover, Discovery, DiscoveryRequest, Engine, NoPolicyReason, async_trait};
    ///
    /// struct Nothing;
    ///
    /// #[async_trait]
    /// impl Discover for Nothing {
    ///     async fn discover(&self, _: &DiscoveryRequest<'_>) -> Discovery {
    ///         Discovery::NoPolicy { reason: NoPolicyReason::NxDomain, negative_ttl: None }
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let engine = Engine::builder(Nothing).build();
    /// let (passes, mut reports) = tokio::sync::mpsc::unbounded_channel();
    /// let proactive = engine.spawn_proactive(Duration::from_secs(86_400), 2.0, 10, move |report| {
    ///     let _ = passes.send(report.clone());
    /// });
    /// // Nothing recorded yet: the first pass runs at once.
    /// let first = reports.recv().await.expect("a pass");
    /// assert!(first.completed);
    /// proactive.abort();
    /// # }
    /// ```
    pub fn spawn_proactive(
        &self,
        interval: Duration,
        grace_ratio: f64,
        concurrency: usize,
        mut on_pass: impl FnMut(&RefreshReport) + Send + 'static,
    ) -> JoinHandle<()> {
        let engine = self.clone();
        let interval = interval.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut passes = Passes::default();
            loop {
                let wait = engine.until_next_pass(interval, &mut passes).await;
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                    // Look again: another host sharing the store may have run a pass meanwhile.
                    continue;
                }
                info!("proactive refresh pass starting");
                let report = engine
                    .refresh_proactively(interval, grace_ratio, concurrency)
                    .await;
                passes.ours = Some((report.finished_at, engine.inner.clock.monotonic()));
                on_pass(&report);
                // At least one interval between passes, even if the store could not record this one.
                tokio::time::sleep(interval).await;
            }
        })
    }

    /// How long until the next proactive pass is due: `interval` after the last recorded pass (zero when none is
    /// recorded, or the store cannot say why not). While the store is unavailable (it may still be opening, or be
    /// down), a while: a pass then could not scan it.
    async fn until_next_pass(&self, interval: Duration, passes: &mut Passes) -> Duration {
        let last = match self.read_last_pass().await {
            Ok(Some(last)) => last,
            Ok(None) => return Duration::ZERO,
            Err(error) if error.is_transient() => return STORE_RETRY.min(interval),
            Err(_) => return Duration::ZERO,
        };
        let now = Now::read(&*self.inner.clock);
        interval.saturating_sub(passes.since(last, &now))
    }

    async fn schedule(
        &self,
        tasks: &mut JoinSet<Option<Done>>,
        report: &mut RefreshReport,
        domain: &str,
        purpose: Purpose,
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
                Some(joined) => report.joined(joined),
                None => break,
            }
        }
        let (mut flight, _) =
            self.inner
                .start_or_join(&domain, self.inner.refresh_timeout, purpose);
        tasks.spawn(async move { wait(&mut flight, None).await });
    }

    /// When the last proactive refresh pass finished (Unix seconds), from the store when there is one; `None`
    /// if never (or the store cannot say). Lets a daemon schedule the next pass across restarts.
    pub async fn last_proactive_refresh(&self) -> Option<u64> {
        self.read_last_pass().await.unwrap_or(None)
    }

    /// [`Engine::last_proactive_refresh`], or the store's error (logged and counted).
    async fn read_last_pass(&self) -> Result<Option<u64>, CacheError> {
        match &self.inner.store {
            Some(store) => bounded(store.proactive_fetch_ts()).await.inspect_err(|error| {
                self.inner.stats.store_read_errors.inc();
                warn!(kind = error.kind(), error = %error.with_causes(), "could not read the last proactive refresh time");
            }),
            None => Ok(Some(self.inner.last_proactive.load(Ordering::Relaxed)).filter(|&ts| ts != 0)),
        }
    }
}

/// What the proactive loop has seen of the recorded pass times (Unix seconds), to count them on monotonic time
/// where it can.
#[derive(Debug, Default)]
struct Passes {
    /// This loop's last pass: its recorded time, and when it finished (monotonic).
    ours: Option<(u64, Instant)>,
    /// A recorded time from the future (more than `MAX_CLOCK_SKEW` ahead), and when it was first read.
    future: Option<(u64, Instant)>,
}

impl Passes {
    /// How long ago the pass recorded at `last` ran, at `now`. This loop's own pass is timed on monotonic time (a
    /// wall clock that steps does not move it). A time from the future counts as the moment it was first read,
    /// so the next pass still comes an interval later (and records a sane time).
    fn since(&mut self, last: u64, now: &Now) -> Duration {
        if let Some((ours, at)) = self.ours
            && ours == last
        {
            return now.mono.saturating_duration_since(at);
        }
        if !is_skewed(last, now.secs()) {
            return now.since(last);
        }
        match self.future {
            Some((seen, at)) if seen == last => now.mono.saturating_duration_since(at),
            _ => {
                warn!(
                    proactive_fetch_ts = last,
                    max_skew_secs = MAX_CLOCK_SKEW.as_secs(),
                    "the last proactive refresh was recorded in the future (a clock ahead of ours); counted as now"
                );
                self.future = Some((last, now.mono));
                Duration::ZERO
            }
        }
    }
}
