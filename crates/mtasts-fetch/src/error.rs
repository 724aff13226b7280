//! Typed errors: [`FetchError`] for a discovery that failed, [`BuildError`] for configuration.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::net::NetError;

/// Why a discovery failed (the Python daemon's `FETCH_ERROR`).
///
/// A failure is never "no policy": RFC 8461 §3.3 and §5 ask the sender to keep using a cached
/// policy when a refresh fails. Each variant has a stable label, [`FetchError::kind`], for logs
/// and metrics. Cheap to clone (sources are shared).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The DNS query for `name` got no answer before the deadline.
    #[error("DNS query for {name} timed out")]
    DnsTimeout {
        /// The queried name.
        name: String,
    },
    /// The DNS server answered `name` with an error code such as SERVFAIL or REFUSED.
    #[error("DNS server failure for {name}: {code}")]
    DnsServerFailure {
        /// The queried name.
        name: String,
        /// The DNS response code, e.g. `Server Failure`.
        code: &'static str,
    },
    /// The DNS lookup for `name` failed for another reason (I/O, malformed answer…).
    #[error("DNS lookup for {name} failed")]
    Dns {
        /// The queried name.
        name: String,
        /// The resolver's error.
        #[source]
        source: Arc<NetError>,
    },
    /// The policy host `mta-sts.<domain>` has no address (NXDOMAIN or no A/AAAA record).
    #[error("policy host {host} has no address")]
    NoAddress {
        /// The policy host.
        host: String,
    },
    /// The policy host name cannot be used for TLS or HTTP (cannot happen for a valid
    /// [`mtasts_core::PolicyDomain`]).
    #[error("{host} cannot be used as a TLS server name or HTTP host")]
    InvalidHost {
        /// The policy host.
        host: String,
    },
    /// The TCP connection to the policy host failed.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address (`ip:port`) that was tried last.
        addr: String,
        /// The socket error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The TCP connection to the HTTPS proxy failed.
    #[error("cannot connect to proxy {proxy}")]
    ProxyConnect {
        /// The proxy (`host:port`).
        proxy: String,
        /// The socket error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The proxy answered the CONNECT request with a status other than 2xx.
    #[error("proxy {proxy} refused the tunnel with status {status}")]
    ProxyRefused {
        /// The proxy (`host:port`).
        proxy: String,
        /// The proxy's HTTP status (407 when authentication failed).
        status: u16,
    },
    /// The proxy's answer to CONNECT was not HTTP.
    #[error("proxy {proxy} sent a malformed answer to CONNECT")]
    ProxyProtocol {
        /// The proxy (`host:port`).
        proxy: String,
    },
    /// The TLS handshake failed, e.g. the certificate is not valid for `host` or comes from
    /// an untrusted CA (RFC 8461 §3.3).
    #[error("TLS handshake with {host} failed")]
    Tls {
        /// The policy host.
        host: String,
        /// The TLS error (a [`rustls::Error`] inside an [`io::Error`]).
        #[source]
        source: Arc<io::Error>,
    },
    /// The whole discovery did not finish within the configured timeout (RFC 8461 §3.3).
    #[error("policy fetch timed out after {after:?}")]
    Timeout {
        /// The configured timeout.
        after: Duration,
    },
    /// The HTTP exchange failed (connection closed early, protocol error).
    #[error("HTTP exchange with {host} failed")]
    Http {
        /// The policy host.
        host: String,
        /// hyper's error.
        #[source]
        source: Arc<hyper::Error>,
    },
    /// The server answered with a status other than 200 (RFC 8461 §3.3).
    #[error("policy server answered HTTP {status}")]
    HttpStatus {
        /// The HTTP status.
        status: u16,
    },
    /// The server answered with a redirect, which must not be followed (RFC 8461 §3.3).
    #[error("policy server redirected (HTTP {status}) to {}", location.as_deref().unwrap_or("nowhere"))]
    Redirect {
        /// The HTTP status (3xx).
        status: u16,
        /// The Location header, if any.
        location: Option<String>,
    },
    /// The media type is not `text/plain` (RFC 8461 §3.2).
    #[error("policy has media type {}, not text/plain", content_type.as_deref().unwrap_or("(none)"))]
    MediaType {
        /// The Content-Type header, if any.
        content_type: Option<String>,
    },
    /// The body is larger than the limit (64 KiB; RFC 8461 §3.3 suggests bounding it).
    #[error("policy body exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
        /// The announced Content-Length, when that is what exceeded the limit.
        content_length: Option<u64>,
    },
    /// The body is not a valid policy (RFC 8461 §3.2).
    #[error("invalid policy")]
    InvalidPolicy(#[source] mtasts_core::Error),
    /// This host could not open a socket for the discovery: it is out of file descriptors or memory
    /// (`EMFILE`, `ENFILE`, `ENOMEM`, `ENOBUFS`). Not the domain's failure: the engine sees it as a
    /// [`DiscoveryError::local_resource`](mtasts_engine::DiscoveryError::local_resource).
    #[error("no socket for the {during}: this host is out of open files or memory")]
    LocalResource {
        /// What needed the socket: `dns`, `connect` or `proxy_connect`.
        during: &'static str,
        /// The system's error.
        #[source]
        source: Arc<io::Error>,
    },
}

impl FetchError {
    /// A stable, short label for logs and metrics, e.g. `"dns_timeout"` or `"http_status"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DnsTimeout { .. } => "dns_timeout",
            Self::DnsServerFailure { .. } => "dns_server_failure",
            Self::Dns { .. } => "dns_error",
            Self::NoAddress { .. } => "no_address",
            Self::InvalidHost { .. } => "invalid_host",
            Self::Connect { .. } => "connect",
            Self::ProxyConnect { .. } => "proxy_connect",
            Self::ProxyRefused { .. } => "proxy_refused",
            Self::ProxyProtocol { .. } => "proxy_protocol",
            Self::Tls { .. } => "tls",
            Self::Timeout { .. } => "timeout",
            Self::Http { .. } => "http",
            Self::HttpStatus { .. } => "http_status",
            Self::Redirect { .. } => "redirect",
            Self::MediaType { .. } => "media_type",
            Self::TooLarge { .. } => "too_large",
            Self::InvalidPolicy(_) => "invalid_policy",
            Self::LocalResource { .. } => "local_resource",
        }
    }

    /// Whether this host, not the domain, failed ([`FetchError::LocalResource`]).
    pub fn is_local_resource(&self) -> bool {
        matches!(self, Self::LocalResource { .. })
    }

    /// `error` from opening a socket for `during`: [`FetchError::LocalResource`] when this host is out of
    /// descriptors or memory, else what `otherwise` makes of it.
    pub(crate) fn socket(
        during: &'static str,
        error: io::Error,
        otherwise: impl FnOnce(Arc<io::Error>) -> Self,
    ) -> Self {
        if is_local_resource(&error) {
            Self::LocalResource {
                during,
                source: Arc::new(error),
            }
        } else {
            otherwise(Arc::new(error))
        }
    }
}

/// This host's resource shortage, if it cannot open a socket now (out of descriptors or memory). For failures
/// whose cause the resolver does not keep: hickory reports a DNS socket it could not open as "no connections",
/// and a policy host whose A query failed that way as having no address.
pub(crate) fn socket_shortage() -> Option<io::Error> {
    match std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)) {
        Err(error) if is_local_resource(&error) => Some(error),
        _ => None,
    }
}

/// Whether `error` says this host ran out of a resource (descriptors: `EMFILE`, `ENFILE`; memory: `ENOMEM`,
/// `ENOBUFS`), not that the peer failed.
pub(crate) fn is_local_resource(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::OutOfMemory
        || matches!(
            error.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
        )
}

impl From<mtasts_core::Error> for FetchError {
    fn from(error: mtasts_core::Error) -> Self {
        Self::InvalidPolicy(error)
    }
}

/// Why a [`crate::Fetcher`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The system DNS configuration (`/etc/resolv.conf`) could not be read.
    #[error("cannot read the system DNS configuration")]
    SystemDns(#[source] NetError),
    /// The resolver could not be built from the configuration.
    #[error("cannot build the DNS resolver")]
    Resolver(#[source] NetError),
    /// No nameserver was given.
    #[error("no nameserver configured")]
    NoNameserver,
    /// The extra CA file could not be read or parsed.
    #[error("cannot read CA certificates from {path}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The PEM or I/O error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The extra CA file holds no certificate.
    #[error("no certificate found in {path}")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A root certificate was rejected.
    #[error("invalid root certificate")]
    RootCertificate(#[source] rustls::Error),
    /// No trusted root certificate at all (no system roots and no extra CA).
    #[error("no trusted root certificates (system store empty and no extra CA given)")]
    NoRoots,
    /// The TLS configuration could not be built.
    #[error("cannot build the TLS configuration")]
    Tls(#[source] rustls::Error),
    /// The proxy URL is not usable.
    #[error("invalid proxy URL {url:?}: {reason}")]
    InvalidProxy {
        /// The URL as given (credentials removed).
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl BuildError {
    /// A stable, short label, e.g. `"ca_file"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SystemDns(_) => "system_dns",
            Self::Resolver(_) => "resolver",
            Self::NoNameserver => "no_nameserver",
            Self::CaFile { .. } => "ca_file",
            Self::NoCertificate { .. } => "no_certificate",
            Self::RootCertificate(_) => "root_certificate",
            Self::NoRoots => "no_roots",
            Self::Tls(_) => "tls",
            Self::InvalidProxy { .. } => "invalid_proxy",
        }
    }
}
