//! The proactive refresh report.

use crate::engine::Outcome;

/// What one [`Engine::refresh_proactively`](crate::Engine::refresh_proactively) pass did.
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
    pub(crate) const fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Fresh => self.fresh += 1,
            Outcome::Fetched => self.fetched += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::NoPolicy => self.no_policy += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Backoff | Outcome::Overloaded => self.backoff += 1,
        }
    }
}
