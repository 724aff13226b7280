//! MTA-STS policy discovery over DNS (hickory) and HTTPS (hyper + rustls).
//!
//! A [`Fetcher`] is built once by a [`FetcherBuilder`] and cloned cheaply into every task.
//! [`Fetcher::discover`] runs RFC 8461 discovery for one [`PolicyDomain`]:
//!
//! 1. TXT lookup of `_mta-sts.<domain>` (§3.1): CNAMEs followed, each record's strings
//!    concatenated, exactly one `v=STSv1` record selected by [`mtasts_core::select_record`].
//!    NXDOMAIN, NODATA or no valid record give [`Discovery::NoPolicy`] (with the negative
//!    TTL of the zone's SOA when there is one); SERVFAIL and timeouts give
//!    [`Discovery::Failed`], never "no policy".
//! 2. If the record's id equals the known id: [`Discovery::Unchanged`], no HTTPS request.
//! 3. Otherwise `GET https://mta-sts.<domain>/.well-known/mta-sts.txt` (§3.3): the host is
//!    resolved by the same resolver; TLS validates the exact name against the system roots
//!    (and any extra CA); no redirects; status 200; `text/plain`; at most 64 KiB; an HTTP
//!    CONNECT proxy from `https_proxy` when set. The body is parsed by
//!    [`mtasts_core::Policy::parse`]: [`Discovery::Fetched`].
//!
//! One timeout bounds the whole discovery. Every step logs a `tracing` debug event.
//!
//! [`Fetcher::discover_dane`] runs the DANE discovery of RFC 7672 §2.2 (module [`dane`]).
//!
//! [`Fetcher`] implements [`mtasts_engine::Discover`], the engine's discovery seam, so it plugs
//! into [`mtasts_engine::Engine`]; [`Discovery`] and [`NoPolicyReason`] are the engine's types
//! (with [`FetchError`] as the failure).
//!
//! ```no_run
//! use mtasts_core::PolicyDomain;
//! use mtasts_fetch::{Discovery, Fetcher};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fetcher = Fetcher::builder().build()?;
//! let domain = PolicyDomain::parse("example.com")?;
//! match fetcher.discover(&domain, None).await {
//!     Discovery::Fetched { id, policy } => println!("{id}: {}", policy.mode()),
//!     Discovery::NoPolicy { reason, .. } => println!("no policy: {reason}"),
//!     Discovery::Failed(error) => println!("failed ({}): {error}", error.kind()),
//!     other => println!("{other:?}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Crate features
//!
//! None. TLS uses rustls with the *ring* provider.

mod builder;
pub mod dane;
mod error;
mod https;
mod proxy;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use mtasts_core::{Policy, PolicyDomain, PolicyId};
use mtasts_engine::{DaneDiscovery, Discover, DiscoveryError, DiscoveryRequest, async_trait};
use tokio::time::Instant;

pub use builder::{DEFAULT_POLICY_PORT, DEFAULT_TIMEOUT, FetcherBuilder};
pub use error::{BuildError, FetchError};
pub use https::{MAX_POLICY_SIZE, POLICY_PATH};
pub use mtasts_engine::NoPolicyReason;
pub use proxy::{NoProxy, Proxy};

/// The `User-Agent` of policy requests: `mtasts/<version>`.
pub const USER_AGENT: &str = concat!("mtasts/", env!("CARGO_PKG_VERSION"));

/// Runs MTA-STS policy discovery. Built once ([`Fetcher::builder`]), cheap to clone, shared
/// by all tasks.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
    timeout: Duration,
}

struct Inner {
    resolver: TokioResolver,
    tls: tokio_rustls::TlsConnector,
    policy_port: u16,
    proxy: Option<Proxy>,
    no_proxy: NoProxy,
    dane: dane::stub::Stub,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("timeout", &self.timeout)
            .field("policy_port", &self.inner.policy_port)
            .field("proxy", &self.inner.proxy)
            .field("nameservers", &self.inner.dane.servers())
            .finish_non_exhaustive()
    }
}

/// The outcome of one discovery, with this crate's typed [`FetchError`] as the failure: the engine's
/// [`mtasts_engine::Discovery`] (the same variants; the engine sees the failure as a
/// [`DiscoveryError`] through [`Discover`]).
pub type Discovery = mtasts_engine::Discovery<FetchError>;

/// Plugs the fetcher into [`mtasts_engine::Engine`]: each discovery runs with the request's
/// timeout; failures become [`DiscoveryError`]s labelled with [`FetchError::kind`] (the typed
/// error stays reachable with [`DiscoveryError::downcast_ref`]).
///
/// ```no_run
/// use std::time::Duration;
/// use mtasts_core::PolicyDomain;
/// use mtasts_engine::{Discover, DiscoveryRequest};
/// use mtasts_fetch::Fetcher;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let fetcher = Fetcher::builder().build()?;
/// let domain = PolicyDomain::parse("example.com")?;
/// let request = DiscoveryRequest::new(&domain, None, Duration::from_secs(4));
/// println!("{:?}", Discover::discover(&fetcher, &request).await);
/// # Ok(())
/// # }
/// ```
#[async_trait]
impl Discover for Fetcher {
    async fn discover(&self, request: &DiscoveryRequest<'_>) -> mtasts_engine::Discovery {
        self.with_timeout(request.timeout)
            .discover(request.domain, request.known_id)
            .await
            .map_err(erase)
    }

    async fn discover_dane(&self, request: &DiscoveryRequest<'_>) -> DaneDiscovery {
        self.with_timeout(request.timeout)
            .discover_dane(request.domain)
            .await
            .discovery()
    }
}

impl Fetcher {
    /// A builder with the defaults (system DNS, 4 s timeout, system roots, port 443, proxy
    /// from the environment).
    pub fn builder() -> FetcherBuilder {
        FetcherBuilder::default()
    }

    /// The same fetcher (same resolver and TLS configuration) with another timeout.
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            timeout,
        }
    }

    /// The timeout bounding each discovery.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The nameservers queried (UDP port; TCP on the same port), in order: the configured ones
    /// or those of `/etc/resolv.conf`. DANE trusts their AD bit, which is only safe from a
    /// validating resolver on loopback.
    pub fn nameservers(&self) -> &[SocketAddr] {
        self.inner.dane.servers()
    }

    /// Parses `domain` ([`PolicyDomain::parse`]) and discovers its policy; a name that cannot
    /// be a policy domain gives [`NoPolicyReason::InvalidDomain`] without any network call.
    pub async fn discover_name(&self, domain: &str, known_id: Option<&PolicyId>) -> Discovery {
        match PolicyDomain::parse(domain) {
            Ok(domain) => self.discover(&domain, known_id).await,
            Err(error) => {
                tracing::debug!(domain, %error, "not a policy domain");
                Discovery::NoPolicy {
                    reason: NoPolicyReason::InvalidDomain(error),
                    negative_ttl: None,
                }
            }
        }
    }

    /// Discovers the policy of `domain`.
    ///
    /// With `known_id` equal to the published id the result is [`Discovery::Unchanged`] and
    /// no HTTPS request is made; pass `None` to always fetch the policy when a record exists
    /// (e.g. to renew an expiring policy, RFC 8461 §5.1).
    pub async fn discover(&self, domain: &PolicyDomain, known_id: Option<&PolicyId>) -> Discovery {
        let deadline = Instant::now() + self.timeout;
        let discovery = self.discover_until(domain, known_id, deadline).await;
        tracing::debug!(%domain, result = kind(&discovery), "discovery finished");
        discovery
    }

    async fn discover_until(
        &self,
        domain: &PolicyDomain,
        known_id: Option<&PolicyId>,
        deadline: Instant,
    ) -> Discovery {
        let txt_name = domain.txt_name();
        let fqdn = format!("{txt_name}.");
        tracing::debug!(%domain, name = %txt_name, "TXT lookup");
        let lookup =
            match tokio::time::timeout_at(deadline, self.inner.resolver.txt_lookup(fqdn.as_str()))
                .await
            {
                Err(_elapsed) => {
                    return Discovery::Failed(FetchError::DnsTimeout { name: txt_name });
                }
                Ok(Ok(lookup)) => lookup,
                Ok(Err(error)) => return negative_or_failed(&txt_name, error),
            };
        let records: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                // RFC 8461 §3.1: the strings of one record are concatenated.
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect();
        tracing::debug!(%domain, ?records, "TXT answer");
        let record = match mtasts_core::select_record(records.iter().map(String::as_str)) {
            Ok(record) => record,
            Err(error) => {
                tracing::debug!(%domain, %error, "no valid STSv1 record");
                return Discovery::NoPolicy {
                    reason: NoPolicyReason::NoValidRecord(error),
                    negative_ttl: None,
                };
            }
        };
        let id = record.id().clone();
        if known_id == Some(&id) {
            tracing::debug!(%domain, %id, "policy id unchanged");
            return Discovery::Unchanged { id };
        }
        let host = domain.policy_host();
        let body = match tokio::time::timeout_at(deadline, https::fetch(&self.inner, &host)).await {
            Err(_elapsed) => {
                tracing::debug!(%domain, timeout = ?self.timeout, "policy fetch timed out");
                return Discovery::Failed(FetchError::Timeout {
                    after: self.timeout,
                });
            }
            Ok(Err(error)) => {
                tracing::debug!(%domain, %error, kind = error.kind(), "policy fetch failed");
                return Discovery::Failed(error);
            }
            Ok(Ok(body)) => body,
        };
        match Policy::parse(&body) {
            Ok(policy) => {
                // One list tells whether the record or the policy needed a leniency (mtasts-core "Strictness").
                let policy = policy.with_leniencies(record.leniencies().iter().copied());
                tracing::debug!(%domain, %id, mode = %policy.mode(), max_age = %policy.max_age(), leniencies = ?policy.leniencies(), "policy parsed");
                Discovery::Fetched { id, policy }
            }
            Err(error) => {
                tracing::debug!(%domain, %error, "invalid policy");
                Discovery::Failed(FetchError::from(error))
            }
        }
    }
}

/// The engine's view of `error`: labelled with [`FetchError::kind`], this host's failures marked as such.
fn erase(error: FetchError) -> DiscoveryError {
    if error.is_local_resource() {
        DiscoveryError::local_resource(error.kind(), error)
    } else {
        DiscoveryError::new(error.kind(), error)
    }
}

/// A stable, short label for logs: `"no_policy"`, `"unchanged"`, `"fetched"` or the error's
/// [`FetchError::kind`].
fn kind(discovery: &Discovery) -> &'static str {
    match discovery {
        Discovery::NoPolicy { .. } => "no_policy",
        Discovery::Unchanged { .. } => "unchanged",
        Discovery::Fetched { .. } => "fetched",
        Discovery::Failed(error) => error.kind(),
    }
}

/// Maps a failed TXT lookup: NXDOMAIN/NODATA are "no policy", everything else is a failure
/// (SERVFAIL must not look like "no policy").
fn negative_or_failed(name: &str, error: NetError) -> Discovery {
    if let NetError::Dns(DnsError::NoRecordsFound(no_records)) = &error {
        let negative_ttl = no_records
            .negative_ttl
            .map(|ttl| Duration::from_secs(u64::from(ttl)));
        let reason = if no_records.response_code == ResponseCode::NXDomain {
            NoPolicyReason::NxDomain
        } else {
            NoPolicyReason::NoData
        };
        tracing::debug!(name, %reason, ?negative_ttl, "negative DNS answer");
        return Discovery::NoPolicy {
            reason,
            negative_ttl,
        };
    }
    Discovery::Failed(dns_error(name, error, |code| {
        FetchError::DnsServerFailure {
            name: name.to_owned(),
            code: code.to_str(),
        }
    }))
}

/// Maps a resolver error to a [`FetchError`]; `no_records` handles NXDOMAIN/NODATA.
fn dns_error(
    name: &str,
    error: NetError,
    no_records: impl FnOnce(ResponseCode) -> FetchError,
) -> FetchError {
    tracing::debug!(name, %error, "DNS lookup failed");
    match error {
        NetError::Timeout => FetchError::DnsTimeout {
            name: name.to_owned(),
        },
        NetError::Dns(DnsError::NoRecordsFound(no_records_found)) => {
            no_records(no_records_found.response_code)
        }
        NetError::Dns(DnsError::ResponseCode(code)) => FetchError::DnsServerFailure {
            name: name.to_owned(),
            code: code.to_str(),
        },
        // No socket for the query: this host's trouble, not the zone's.
        NetError::Io(io) if error::is_local_resource(&io) => FetchError::LocalResource {
            during: "dns",
            source: io,
        },
        // hickory reports a socket it could not open as "no connections" (or an I/O error): when this host
        // cannot open one now either, that was the cause.
        other => match error::socket_shortage() {
            Some(io) => FetchError::LocalResource {
                during: "dns",
                source: Arc::new(io),
            },
            None => FetchError::Dns {
                name: name.to_owned(),
                source: Arc::new(other),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use hickory_resolver::net::NoRecords;
    use hickory_resolver::proto::op::Query;
    use hickory_resolver::proto::rr::{Name, RecordType};

    use super::*;

    fn no_records(code: ResponseCode, negative_ttl: Option<u32>) -> NetError {
        let query = Query::query(
            Name::from_ascii("_mta-sts.example.com.").expect("name"),
            RecordType::TXT,
        );
        let mut no_records = NoRecords::new(query, code);
        no_records.negative_ttl = negative_ttl;
        NetError::Dns(DnsError::NoRecordsFound(no_records))
    }

    #[test]
    fn nxdomain_and_nodata_are_no_policy() {
        let discovery = negative_or_failed("n", no_records(ResponseCode::NXDomain, Some(60)));
        assert!(matches!(
            discovery,
            Discovery::NoPolicy { reason: NoPolicyReason::NxDomain, negative_ttl: Some(ttl) }
                if ttl == Duration::from_secs(60)
        ));
        let discovery = negative_or_failed("n", no_records(ResponseCode::NoError, None));
        assert!(matches!(
            discovery,
            Discovery::NoPolicy {
                reason: NoPolicyReason::NoData,
                negative_ttl: None
            }
        ));
    }

    #[test]
    fn server_failures_and_timeouts_are_never_no_policy() {
        for code in [
            ResponseCode::ServFail,
            ResponseCode::Refused,
            ResponseCode::NotImp,
        ] {
            let discovery = negative_or_failed("n", NetError::Dns(DnsError::ResponseCode(code)));
            assert_eq!(kind(&discovery), "dns_server_failure", "{code:?}");
        }
        assert_eq!(
            kind(&negative_or_failed("n", NetError::Timeout)),
            "dns_timeout"
        );
        assert_eq!(
            kind(&negative_or_failed("n", NetError::NoConnections)),
            "dns_error"
        );
    }

    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn fetcher_and_its_future_can_cross_tasks() {
        assert_send_sync_clone::<Fetcher>();
        assert_send_sync_clone::<Discovery>();
        assert_send_sync_clone::<FetchError>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        let fetcher = Fetcher::builder()
            .nameservers(vec!["127.0.0.1:53".parse().expect("addr")])
            .build()
            .expect("fetcher");
        let domain = PolicyDomain::parse("example.com").expect("domain");
        let future = fetcher.discover(&domain, None);
        assert_send(&future);
    }

    /// Issue 11 item 3: no descriptor or memory for a DNS socket is this host's failure, anything else from
    /// the socket layer stays the zone's.
    #[test]
    fn a_dns_socket_this_host_cannot_open_is_a_local_failure() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            let io = std::io::Error::from_raw_os_error(errno);
            let discovery = negative_or_failed("n", NetError::Io(Arc::new(io)));
            assert!(
                matches!(&discovery, Discovery::Failed(e) if e.is_local_resource() && e.kind() == "local_resource"),
                "errno {errno}: {discovery:?}"
            );
            let erased = discovery.map_err(erase);
            assert!(matches!(erased, mtasts_engine::Discovery::Failed(e) if e.is_local_resource()));
        }
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            kind(&negative_or_failed("n", NetError::Io(Arc::new(refused)))),
            "dns_error"
        );
    }

    #[test]
    fn policy_host_without_records_has_no_address() {
        let error = dns_error("h", no_records(ResponseCode::NXDomain, None), |_| {
            FetchError::NoAddress { host: "h".into() }
        });
        assert_eq!(error.kind(), "no_address");
    }
}
