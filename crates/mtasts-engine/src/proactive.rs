//! The proactive refresh (RFC 8461 §3.3: "senders ... should proactively refresh"): a pass over the cached
//! policies that refreshes them before they are needed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mtasts_cache::ScanToken;
use mtasts_core::PolicyDomain;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::coalesce::wait;
use crate::engine::Engine;
use crate::freshness::{Done, Outcome, Purpose};
use crate::resolution::ResolvedPolicy;

/// Store scan page size for the proactive refresh.
const SCAN_PAGE: usize = 256;

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
    /// Refreshes that failed (the cached policy stays in use until it expires).
    pub failed: u64,
    /// Refreshes skipped because the domain is backing off after a recent failure.
    pub backoff: u64,
    /// Entries that could not be refreshed: undecodable store entries and invalid domain names.
    pub invalid: u64,
    /// Store scan errors (a scan error ends the pass early).
    pub scan_errors: u64,
    /// Whether the scan reached the end of the store.
    pub completed: bool,
}

impl RefreshReport {
    const fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Fresh => self.fresh += 1,
            Outcome::Fetched => self.fetched += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::NoPolicy => self.no_policy += 1,
            Outcome::Failed { .. } => self.failed += 1,
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
        let now = inner.clock.now();
        let purpose = Purpose::proactive(interval, grace_ratio);
        let concurrency = concurrency.max(1);
        let mut report = RefreshReport::default();
        let mut tasks = JoinSet::new();
        let is_due = |policy: &ResolvedPolicy, checked_at| purpose.is_due(policy, checked_at, now);

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
                if let Some(policy) = &entry.policy {
                    due.push((key.to_string(), is_due(policy, entry.checked_at)));
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
}
