//! The discovery seam: how the engine asks DNS and HTTPS about a domain.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mtasts_core::{PolicyDomain, PolicyId};
use mtasts_fetch::{Discovery, Fetcher};

/// Runs one MTA-STS policy discovery (RFC 8461 §3): TXT lookup, then an HTTPS fetch when needed.
///
/// Implemented for [`mtasts_fetch::Fetcher`]; tests substitute a fake. The engine calls it at most once at a time
/// per domain (requests are coalesced) and bounds how many run at once.
///
/// Contract (the one [`Fetcher::discover`] has):
/// - `known_id: Some(id)` and the TXT record's id equals `id` → [`Discovery::Unchanged`], without HTTPS;
/// - `known_id: None` → fetch the policy over HTTPS whenever a valid TXT record exists;
/// - the whole discovery (DNS, connect, TLS, body) finishes within `timeout`, reporting a timeout as
///   [`Discovery::Failed`]. The engine also enforces the bound, so an implementation that overruns is cut off.
///
/// ```no_run
/// use std::time::Duration;
/// use mtasts_core::PolicyDomain;
/// use mtasts_engine::Discover;
/// use mtasts_fetch::Fetcher;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let fetcher = Fetcher::builder().build()?;
/// let domain = PolicyDomain::parse("example.com")?;
/// let discovery = Discover::discover(&fetcher, &domain, None, Duration::from_secs(4)).await;
/// println!("{discovery:?}");
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait Discover: Send + Sync + 'static {
    /// Discovers the policy of `domain`; see the trait documentation for the contract.
    async fn discover(
        &self,
        domain: &PolicyDomain,
        known_id: Option<&PolicyId>,
        timeout: Duration,
    ) -> Discovery;
}

#[async_trait]
impl Discover for Fetcher {
    async fn discover(
        &self,
        domain: &PolicyDomain,
        known_id: Option<&PolicyId>,
        timeout: Duration,
    ) -> Discovery {
        self.with_timeout(timeout).discover(domain, known_id).await
    }
}

#[async_trait]
impl<T: Discover + ?Sized> Discover for Arc<T> {
    async fn discover(
        &self,
        domain: &PolicyDomain,
        known_id: Option<&PolicyId>,
        timeout: Duration,
    ) -> Discovery {
        (**self).discover(domain, known_id, timeout).await
    }
}
