//! DANE for SMTP (RFC 7672): which next-hop domains Postfix should reach with `dane-only` or
//! `dane` instead of the MTA-STS answer (RFC 8461 §2: MTA-STS must not override DANE).
//!
//! [`Fetcher::discover_dane`](crate::Fetcher::discover_dane) runs the discovery of RFC 7672
//! §2.2 and returns a [`DaneView`]:
//!
//! 1. MX lookup of the domain. Only a DNSSEC-validated answer (the AD bit of the resolver)
//!    makes its hosts DANE candidates ([`MxStatus`]); validated "no MX" makes the domain its
//!    own host (implicit MX); a null MX (RFC 7505) has no host.
//! 2. For each host (at most [`MAX_HOSTS`], by preference), concurrently: A and AAAA lookups
//!    ([`Addresses`]); when they validate, the TLSA lookup at `_25._tcp.<host>` — at the
//!    CNAME-expanded name first when the host is an alias ([`TlsaStatus`]).
//!
//! Every query asks for the AD bit and sets EDNS DO, and goes to the fetcher's nameservers
//! ([`Fetcher::nameservers`](crate::Fetcher::nameservers)); the AD bit is only as trustworthy
//! as the path to the resolver, so it should be a validating resolver on loopback. One
//! deadline (the fetcher's timeout) bounds the whole discovery; a lookup still running then
//! is a failure.
//!
//! [`decide`] (also [`DaneView::verdict`]) maps a view to a [`DaneAnswer`] — `dane-only`,
//! `dane`, or the MTA-STS answer — without any I/O, and [`DaneView::discovery`] is what the
//! engine keeps of it (the fetcher's [`Discover::discover_dane`](mtasts_engine::Discover::discover_dane)).
//!
//! ```no_run
//! use mtasts_core::PolicyDomain;
//! use mtasts_fetch::Fetcher;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fetcher = Fetcher::builder()
//!     .nameservers(vec!["127.0.0.1:53".parse()?])
//!     .build()?;
//! let view = fetcher.discover_dane(&PolicyDomain::parse("example.com")?).await;
//! let verdict = view.verdict();
//! match verdict.answer.postfix_level() {
//!     Some(level) => println!("OK {level} ({})", verdict.reason),
//!     None => println!("use the MTA-STS answer ({})", verdict.reason),
//! }
//! # Ok(())
//! # }
//! ```

mod lookup;
pub(crate) mod stub;
mod tlsa;
mod view;

use mtasts_core::PolicyDomain;
use tokio::time::Instant;

pub use mtasts_engine::DaneAnswer;
pub use tlsa::{TlsaRecord, Unusable};
pub use view::{
    Addresses, DaneReason, DaneVerdict, DaneView, HostView, MxStatus, TlsaStatus, decide,
};

use crate::Fetcher;

/// The most MX hosts one discovery looks up (the first by preference). A domain with more
/// never gets `dane-only`, since the others are unknown.
pub const MAX_HOSTS: usize = 10;

impl Fetcher {
    /// Runs the DANE discovery of RFC 7672 §2.2 for `domain` (see [the module docs](crate::dane)),
    /// bounded by the fetcher's timeout. Never fails: failed lookups are part of the view.
    pub async fn discover_dane(&self, domain: &PolicyDomain) -> DaneView {
        let deadline = Instant::now() + self.timeout();
        let view = lookup::discover(&self.inner.dane, domain.as_str(), deadline).await;
        let verdict = view.verdict();
        tracing::debug!(
            %domain,
            answer = verdict.answer.kind(),
            reason = verdict.reason.kind(),
            hosts = view.hosts().len(),
            min_ttl = ?view.min_ttl(),
            "DANE discovery finished"
        );
        view
    }
}
