//! The discovery seam: what the engine asks about a domain, and what it needs to hear back.
//!
//! The engine owns both sides of the contract ([`Discover`], [`DiscoveryRequest`], [`Discovery`]), so it depends
//! on no particular DNS or HTTPS stack: `mtasts-fetch` implements [`Discover`] for its `Fetcher`, a Rust MTA can
//! plug in its own resolver and HTTP client, and tests use a fake.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mtasts_core::{Policy, PolicyDomain, PolicyId};

/// Runs one MTA-STS policy discovery (RFC 8461 §3): TXT lookup, then an HTTPS fetch when needed.
///
/// Implemented by `mtasts_fetch::Fetcher`; an MTA with its own DNS resolver and HTTP client implements it
/// instead. The engine calls it at most once at a time per domain (requests are coalesced) and bounds how many
/// run at once.
///
/// Contract:
/// - `request.known_id` is `Some(id)` and the TXT record's id equals `id` → [`Discovery::Unchanged`], without
///   HTTPS (§3.1);
/// - `request.known_id` is `None` → fetch the policy over HTTPS whenever a valid TXT record exists (the engine
///   asks so when nothing is cached or the cached policy nears expiry, §5.1);
/// - a missing or invalid TXT record is [`Discovery::NoPolicy`]; anything that stops the discovery from
///   finishing (DNS failure, TLS, HTTP status, invalid policy file, timeout) is [`Discovery::Failed`], never
///   "no policy" (§3.3);
/// - a failure of a resource of this host (no file descriptor or memory for a DNS or HTTPS socket: `EMFILE`,
///   `ENFILE`, `ENOMEM`) is [`Discovery::Failed`] with a [`DiscoveryError::local_resource`]: it says nothing
///   about the domain, so the engine neither backs off nor caches it;
/// - the whole discovery finishes within `request.timeout`. The engine also enforces the bound, so an
///   implementation that overruns is cut off and counted as a failure.
///
/// ```
/// use std::time::Duration;
/// use mtasts_core::PolicyDomain;
/// use mtasts_engine::{Discover, Discovery, DiscoveryError, DiscoveryRequest, Engine, Source, async_trait};
///
/// /// An MTA's own discovery: here every domain fails but `example.com`.
/// struct MyFetcher;
///
/// #[async_trait]
/// impl Discover for MyFetcher {
///     async fn discover(&self, request: &DiscoveryRequest<'_>) -> Discovery {
///         if request.domain.as_str() != "example.com" {
///             return Discovery::Failed(DiscoveryError::new("http_status", "HTTP 503"));
///         }
///         let id = "20250101".parse().expect("valid id");
///         if request.known_id == Some(&id) {
///             return Discovery::Unchanged { id };
///         }
///         match "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mx.example.com\n".parse() {
///             Ok(policy) => Discovery::Fetched { id, policy },
///             Err(error) => Discovery::Failed(DiscoveryError::new("invalid_policy", error)),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::builder(MyFetcher).build();
/// let found = engine.resolve(&PolicyDomain::parse("example.com")?, Duration::from_secs(4)).await;
/// assert_eq!(found.source, Source::Discovered);
/// let failed = engine.resolve(&PolicyDomain::parse("example.net")?, Duration::from_secs(4)).await;
/// assert_eq!((failed.source, failed.policy.is_none()), (Source::Unavailable, true));
/// assert_eq!(engine.stats().failures("http_status"), 1);
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait Discover: Send + Sync + 'static {
    /// Discovers the policy of `request.domain`; see the trait documentation for the contract.
    async fn discover(&self, request: &DiscoveryRequest<'_>) -> Discovery;

    /// Runs the DANE discovery of RFC 7672 §2.2 for `request.domain` (MX, each host's addresses and TLSA
    /// records, trusting the resolver's DNSSEC validation) within `request.timeout`, and says which answer it
    /// gives ([`DaneDiscovery`]). The engine calls it only for [`Engine::resolve_with_dane`] (zones that ask for
    /// DANE), never for [`Engine::resolve`]. A failed lookup is part of the result
    /// ([`DaneDiscovery::failed`]), never a panic or an error.
    ///
    /// The default does no DANE: [`DaneDiscovery::unsupported`], so the MTA-STS answer applies.
    ///
    /// [`Engine::resolve_with_dane`]: crate::Engine::resolve_with_dane
    /// [`Engine::resolve`]: crate::Engine::resolve
    async fn discover_dane(&self, request: &DiscoveryRequest<'_>) -> DaneDiscovery {
        let _ = request;
        DaneDiscovery::unsupported()
    }
}

#[async_trait]
impl<T: Discover + ?Sized> Discover for Arc<T> {
    async fn discover(&self, request: &DiscoveryRequest<'_>) -> Discovery {
        (**self).discover(request).await
    }

    async fn discover_dane(&self, request: &DiscoveryRequest<'_>) -> DaneDiscovery {
        (**self).discover_dane(request).await
    }
}

/// The answer a DANE discovery gives (RFC 7672; RFC 8461 §2: MTA-STS must not override DANE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DaneAnswer {
    /// Postfix level `dane-only`: every MX host has usable DNSSEC-validated TLSA records.
    DaneOnly,
    /// Postfix level `dane`: Postfix applies RFC 7672 to each host itself.
    Dane,
    /// DANE does not apply: answer what MTA-STS says.
    MtaSts,
}

impl DaneAnswer {
    /// The Postfix TLS security level to answer (`dane-only`, `dane`), `None` for the MTA-STS answer.
    ///
    /// ```
    /// use mtasts_engine::DaneAnswer;
    /// assert_eq!(DaneAnswer::DaneOnly.postfix_level(), Some("dane-only"));
    /// assert_eq!(DaneAnswer::MtaSts.postfix_level(), None);
    /// ```
    #[must_use]
    pub const fn postfix_level(self) -> Option<&'static str> {
        match self {
            Self::DaneOnly => Some("dane-only"),
            Self::Dane => Some("dane"),
            Self::MtaSts => None,
        }
    }

    /// A stable, short label for logs and metrics: `dane_only`, `dane`, `mta_sts`.
    #[must_use]
    pub const fn kind(self) -> &'static str {
        match self {
            Self::DaneOnly => "dane_only",
            Self::Dane => "dane",
            Self::MtaSts => "mta_sts",
        }
    }
}

impl fmt::Display for DaneAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.postfix_level().unwrap_or("mta-sts"))
    }
}

/// What a DANE discovery ([`Discover::discover_dane`]) found, as far as the engine needs it: the answer, why
/// (a label for logs), how long the DNS data it rests on may be kept, and whether it came from a failed lookup.
///
/// ```
/// use std::time::Duration;
/// use mtasts_engine::{DaneAnswer, DaneDiscovery};
/// let found = DaneDiscovery::new(DaneAnswer::DaneOnly, "all_usable", Some(Duration::from_secs(300)), false);
/// assert_eq!(found.answer, DaneAnswer::DaneOnly);
/// assert!(!DaneDiscovery::unsupported().failed);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DaneDiscovery {
    /// The answer.
    pub answer: DaneAnswer,
    /// Why, as a stable short label (e.g. `all_usable`, `mx_insecure`, `lookup_failed`).
    pub reason: &'static str,
    /// The smallest TTL of the DNS records (and negative answers) used; `None` when none was seen. The engine
    /// keeps the answer that long, within `[cache_grace, max_dane_ttl]`.
    pub ttl: Option<Duration>,
    /// The answer came from a failed lookup (MX, address or TLSA): the engine keeps it for `cache_grace` only
    /// and backs off the domain's DANE lookups for `failure_backoff`.
    pub failed: bool,
}

impl DaneDiscovery {
    /// A discovery's result from its parts.
    #[must_use]
    pub const fn new(
        answer: DaneAnswer,
        reason: &'static str,
        ttl: Option<Duration>,
        failed: bool,
    ) -> Self {
        Self {
            answer,
            reason,
            ttl,
            failed,
        }
    }

    /// A discoverer that does no DANE: the MTA-STS answer, kept as long as the engine allows.
    #[must_use]
    pub const fn unsupported() -> Self {
        Self::new(DaneAnswer::MtaSts, "unsupported", None, false)
    }
}

/// The engine's discoverer; its `Debug` only names it (implementors need not be `Debug`).
pub(crate) struct Discoverer(pub(crate) Arc<dyn Discover>);

impl fmt::Debug for Discoverer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Discover")
    }
}

/// What the engine asks a [`Discover`]. Fields may be added (the struct is `#[non_exhaustive]`): build one with
/// [`DiscoveryRequest::new`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct DiscoveryRequest<'a> {
    /// The policy domain.
    pub domain: &'a PolicyDomain,
    /// The id of the policy the engine holds and does not need to fetch again if it is still published; `None`
    /// to fetch the policy whenever a valid TXT record exists.
    pub known_id: Option<&'a PolicyId>,
    /// The bound on the whole discovery (DNS, connect, TLS, body).
    pub timeout: Duration,
}

impl<'a> DiscoveryRequest<'a> {
    /// A request about `domain`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use mtasts_core::PolicyDomain;
    /// use mtasts_engine::DiscoveryRequest;
    /// let domain = PolicyDomain::parse("example.com")?;
    /// let request = DiscoveryRequest::new(&domain, None, Duration::from_secs(4));
    /// assert_eq!(request.domain.as_str(), "example.com");
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub const fn new(
        domain: &'a PolicyDomain,
        known_id: Option<&'a PolicyId>,
        timeout: Duration,
    ) -> Self {
        Self {
            domain,
            known_id,
            timeout,
        }
    }
}

/// The outcome of one discovery; maps onto the Python daemon's NONE / NOT_CHANGED / VALID / FETCH_ERROR.
///
/// `E` is the failure type: [`DiscoveryError`] at the engine's seam; a discoverer may use its own typed error in
/// its own API (`mtasts_fetch::Discovery` is `Discovery<mtasts_fetch::FetchError>`) and convert with
/// [`Discovery::map_err`].
#[derive(Clone, Debug)]
pub enum Discovery<E = DiscoveryError> {
    /// The domain publishes no (usable) policy (RFC 8461 §3.1). A cached policy stays valid until it expires
    /// (§10.2: a missing record does not delete it).
    NoPolicy {
        /// Why.
        reason: NoPolicyReason,
        /// The negative-caching TTL from the zone's SOA (RFC 2308), when the answer had one.
        negative_ttl: Option<Duration>,
    },
    /// The TXT record's id equals the known id: the policy did not change; no HTTPS request was made.
    Unchanged {
        /// The id (the known one).
        id: PolicyId,
    },
    /// A policy was fetched and parsed.
    Fetched {
        /// The id from the TXT record.
        id: PolicyId,
        /// The policy.
        policy: Policy,
    },
    /// Discovery failed; a cached policy is kept (RFC 8461 §3.3).
    Failed(E),
}

impl<E> Discovery<E> {
    /// The same outcome with the failure mapped by `f`.
    ///
    /// ```
    /// use mtasts_engine::{Discovery, DiscoveryError};
    /// let typed: Discovery<std::io::Error> = Discovery::Failed(std::io::Error::other("refused"));
    /// let erased = typed.map_err(|e| DiscoveryError::new("connect", e));
    /// assert!(matches!(erased, Discovery::Failed(e) if e.kind() == "connect"));
    /// ```
    pub fn map_err<F>(self, f: impl FnOnce(E) -> F) -> Discovery<F> {
        match self {
            Self::NoPolicy {
                reason,
                negative_ttl,
            } => Discovery::NoPolicy {
                reason,
                negative_ttl,
            },
            Self::Unchanged { id } => Discovery::Unchanged { id },
            Self::Fetched { id, policy } => Discovery::Fetched { id, policy },
            Self::Failed(error) => Discovery::Failed(f(error)),
        }
    }
}

/// Why a domain has no policy.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum NoPolicyReason {
    /// `_mta-sts.<domain>` does not exist (NXDOMAIN).
    NxDomain,
    /// `_mta-sts.<domain>` exists but has no TXT record (NODATA).
    NoData,
    /// No single valid `v=STSv1` record: none, several, or an invalid one (RFC 8461 §3.1).
    NoValidRecord(mtasts_core::Error),
    /// The name cannot have a policy (parent-domain form, IP literal, bad syntax); nothing was sent on the
    /// network.
    InvalidDomain(mtasts_core::Error),
}

impl NoPolicyReason {
    /// A stable, short label, e.g. `"nxdomain"`.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::NxDomain => "nxdomain",
            Self::NoData => "nodata",
            Self::NoValidRecord(_) => "no_valid_record",
            Self::InvalidDomain(_) => "invalid_domain",
        }
    }

    /// Whether the domain publishes an `STSv1` TXT record that is invalid (a bad id, a repeated version, a
    /// syntax error) or several of them: RFC 8461 §3.1 makes that "no policy", while the Python daemon enforced
    /// some such records. Worth telling an administrator after a migration; a domain without any record is not.
    ///
    /// ```
    /// use mtasts_engine::NoPolicyReason;
    /// let bad_id = "v=STSv1; id=not-an-id!;".parse::<mtasts_core::TxtRecord>().unwrap_err();
    /// assert!(NoPolicyReason::NoValidRecord(bad_id).is_invalid_record());
    /// assert!(!NoPolicyReason::NoValidRecord(mtasts_core::Error::NoRecord).is_invalid_record());
    /// assert!(!NoPolicyReason::NxDomain.is_invalid_record());
    /// ```
    #[must_use]
    pub const fn is_invalid_record(&self) -> bool {
        matches!(self, Self::NoValidRecord(error) if !matches!(error, mtasts_core::Error::NoRecord))
    }
}

impl fmt::Display for NoPolicyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NxDomain => f.write_str("the _mta-sts name does not exist (NXDOMAIN)"),
            Self::NoData => f.write_str("the _mta-sts name has no TXT record (NODATA)"),
            Self::NoValidRecord(error) => write!(f, "no single valid STSv1 TXT record: {error}"),
            Self::InvalidDomain(error) => write!(f, "not a policy domain: {error}"),
        }
    }
}

/// Why a discovery failed, as the engine sees it: a stable label ([`DiscoveryError::kind`], for logs and the
/// failure counters) and the discoverer's own error (for logs; [`DiscoveryError::downcast_ref`] gets it back).
///
/// Cheap to clone (the error is shared). Displays as the wrapped error; its [`Error::source`] is the wrapped
/// error's source.
///
/// ```
/// use mtasts_engine::DiscoveryError;
/// let error = DiscoveryError::new("dns_timeout", std::io::Error::other("no answer from 127.0.0.53"));
/// assert_eq!(error.kind(), "dns_timeout");
/// assert_eq!(error.to_string(), "no answer from 127.0.0.53");
/// assert!(error.downcast_ref::<std::io::Error>().is_some());
/// ```
#[derive(Clone)]
pub struct DiscoveryError {
    kind: &'static str,
    error: Arc<dyn Error + Send + Sync>,
    local: bool,
}

impl DiscoveryError {
    /// A failure of kind `kind` (a short lowercase label such as `"dns_timeout"` or `"http_status"`) caused by
    /// `error` (an error value, or a message).
    pub fn new(kind: &'static str, error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            kind,
            error: Arc::from(error.into()),
            local: false,
        }
    }

    /// A failure of a resource of this host, not of the domain: no file descriptor or memory for a DNS or HTTPS
    /// socket (`EMFILE`, `ENFILE`, `ENOMEM`). The engine answers the cached policy while it is valid, else no
    /// policy, and neither backs the domain off nor caches anything about it (the next lookup tries again); it
    /// logs the failure as this host's (rate-limited) and counts it in
    /// [`EngineStats::local_resource`](crate::EngineStats::local_resource).
    ///
    /// ```
    /// use mtasts_engine::DiscoveryError;
    /// let emfile = std::io::Error::from_raw_os_error(24);
    /// let error = DiscoveryError::local_resource("local_resource", emfile);
    /// assert!(error.is_local_resource());
    /// assert!(!DiscoveryError::new("connect", "refused").is_local_resource());
    /// ```
    pub fn local_resource(
        kind: &'static str,
        error: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        Self {
            local: true,
            ..Self::new(kind, error)
        }
    }

    /// Whether this host, not the domain, failed ([`DiscoveryError::local_resource`]).
    #[must_use]
    pub const fn is_local_resource(&self) -> bool {
        self.local
    }

    /// The failure's label.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        self.kind
    }

    /// The discoverer's error, if it is an `E`.
    #[must_use]
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.error.downcast_ref()
    }
}

impl fmt::Debug for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryError")
            .field("kind", &self.kind)
            .field("error", &self.error)
            .field("local", &self.local)
            .finish()
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl Error for DiscoveryError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error.source()
    }
}
