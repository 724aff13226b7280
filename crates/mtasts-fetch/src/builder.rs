//! [`FetcherBuilder`]: DNS, TLS, proxy and timeout configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::BuildError;
use crate::proxy::{NoProxy, Proxy};
use crate::{Fetcher, Inner};

/// The default bound on a whole discovery (DNS + connect + TLS + body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4);

/// The default port of the policy host (HTTPS, RFC 8461 §3.3).
pub const DEFAULT_POLICY_PORT: u16 = 443;

#[derive(Clone, Debug, Default)]
enum ProxySetting {
    /// `https_proxy` & co. and `no_proxy` from the environment at build time.
    #[default]
    FromEnv,
    /// Never use a proxy.
    Direct,
    /// This proxy (and the environment's `no_proxy` unless one was given).
    Explicit(Proxy),
}

/// Builds a [`Fetcher`]; see [`Fetcher::builder`].
///
/// Defaults: nameservers from `/etc/resolv.conf`, a 4 s timeout, system roots (honouring
/// `SSL_CERT_FILE`/`SSL_CERT_DIR`) and no extra CA, policy port 443, proxy from
/// `https_proxy`/`HTTPS_PROXY` (then `all_proxy`) with `no_proxy`, like curl.
#[derive(Debug, Default)]
#[must_use]
pub struct FetcherBuilder {
    nameservers: Option<Vec<SocketAddr>>,
    timeout: Option<Duration>,
    extra_ca_files: Vec<PathBuf>,
    extra_roots: Vec<CertificateDer<'static>>,
    native_roots: Option<bool>,
    policy_port: Option<u16>,
    proxy: ProxySetting,
    no_proxy: Option<NoProxy>,
}

impl FetcherBuilder {
    /// Uses these nameservers (UDP, falling back to TCP for truncated answers) instead of the
    /// system configuration.
    pub fn nameservers(mut self, nameservers: Vec<SocketAddr>) -> Self {
        self.nameservers = Some(nameservers);
        self
    }

    /// Bounds a whole discovery (DNS + connect + TLS + body). Default 4 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Also trusts the CA certificates in this PEM file (private PKI, tests).
    pub fn extra_ca_pem_file(mut self, path: impl AsRef<Path>) -> Self {
        self.extra_ca_files.push(path.as_ref().to_owned());
        self
    }

    /// Also trusts this CA certificate.
    pub fn add_root_certificate(mut self, cert: CertificateDer<'static>) -> Self {
        self.extra_roots.push(cert);
        self
    }

    /// Whether to trust the system's root certificates (default `true`).
    pub fn native_roots(mut self, enabled: bool) -> Self {
        self.native_roots = Some(enabled);
        self
    }

    /// Connects to the policy host on this port instead of 443 (tests).
    pub fn policy_port(mut self, port: u16) -> Self {
        self.policy_port = Some(port);
        self
    }

    /// Reaches policy hosts through this proxy (overrides the environment).
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = ProxySetting::Explicit(proxy);
        self
    }

    /// Hosts that bypass the proxy (overrides `no_proxy` from the environment).
    pub fn no_proxy(mut self, no_proxy: NoProxy) -> Self {
        self.no_proxy = Some(no_proxy);
        self
    }

    /// Never uses a proxy, whatever the environment says.
    pub fn without_proxy(mut self) -> Self {
        self.proxy = ProxySetting::Direct;
        self
    }

    /// Builds the fetcher: reads the DNS configuration, the root certificates and the proxy
    /// environment once.
    ///
    /// # Errors
    ///
    /// [`BuildError`] when the DNS configuration, a CA file or the proxy URL is unusable.
    pub fn build(self) -> Result<Fetcher, BuildError> {
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let (resolver, nameservers) = build_resolver(self.nameservers.as_deref(), timeout)?;
        let tls = build_tls(
            self.native_roots.unwrap_or(true),
            &self.extra_ca_files,
            self.extra_roots,
        )?;
        let (proxy, no_proxy) = match self.proxy {
            ProxySetting::Direct => (None, NoProxy::default()),
            ProxySetting::Explicit(proxy) => (
                Some(proxy),
                self.no_proxy.or_else(NoProxy::from_env).unwrap_or_default(),
            ),
            ProxySetting::FromEnv => (
                Proxy::from_env()?,
                self.no_proxy.or_else(NoProxy::from_env).unwrap_or_default(),
            ),
        };
        tracing::debug!(
            ?timeout,
            proxy = proxy.as_ref().map(ToString::to_string),
            "fetcher built"
        );
        Ok(Fetcher {
            inner: Arc::new(Inner {
                resolver,
                tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
                policy_port: self.policy_port.unwrap_or(DEFAULT_POLICY_PORT),
                proxy,
                no_proxy,
                dane: crate::dane::stub::Stub::new(nameservers, attempt_timeout(timeout)),
            }),
            timeout,
        })
    }
}

/// How long one DNS attempt may take: a lost UDP datagram is retried within the overall
/// deadline, and two tries together outlast it, so a silent server is reported by the deadline
/// (DnsTimeout), not by the resolver.
fn attempt_timeout(timeout: Duration) -> Duration {
    (timeout * 3 / 5).max(Duration::from_millis(200))
}

/// The resolver, and the nameservers it uses (for the DANE queries, which bypass it).
fn build_resolver(
    nameservers: Option<&[SocketAddr]>,
    timeout: Duration,
) -> Result<(TokioResolver, Vec<SocketAddr>), BuildError> {
    let (config, options) = match nameservers {
        Some([]) => return Err(BuildError::NoNameserver),
        Some(addrs) => {
            let servers = addrs
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        }
        None => hickory_resolver::system_conf::read_system_conf().map_err(BuildError::SystemDns)?,
    };
    let addrs = config
        .name_servers()
        .iter()
        .filter_map(|server| {
            let udp = server
                .connections
                .iter()
                .find(|c| matches!(c.protocol, ProtocolConfig::Udp))?;
            Some(SocketAddr::new(server.ip, udp.port))
        })
        .collect();
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    *builder.options_mut() = options;
    let options = builder.options_mut();
    // Each discovery asks the zone: the engine caches policies, and a stale DNS cache would
    // hide a new policy id (RFC 8461 §3.1, §5.1).
    options.cache_size = 0;
    options.edns0 = true;
    options.timeout = attempt_timeout(timeout);
    options.attempts = 2;
    // /etc/hosts applies to the policy host's address, as for curl (never to TXT).
    options.use_hosts_file = ResolveHosts::Auto;
    let resolver = builder.build().map_err(BuildError::Resolver)?;
    Ok((resolver, addrs))
}

fn build_tls(
    native_roots: bool,
    extra_ca_files: &[PathBuf],
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    if native_roots {
        // Honours SSL_CERT_FILE and SSL_CERT_DIR.
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "could not load some system root certificates");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "system root certificates loaded");
    }
    for path in extra_ca_files {
        let mut found = false;
        let certs = CertificateDer::pem_file_iter(path).map_err(|source| BuildError::CaFile {
            path: path.clone(),
            source,
        })?;
        for cert in certs {
            let cert = cert.map_err(|source| BuildError::CaFile {
                path: path.clone(),
                source,
            })?;
            roots.add(cert).map_err(BuildError::RootCertificate)?;
            found = true;
        }
        if !found {
            return Err(BuildError::NoCertificate { path: path.clone() });
        }
    }
    for cert in extra_roots {
        roots.add(cert).map_err(BuildError::RootCertificate)?;
    }
    if roots.is_empty() {
        return Err(BuildError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(BuildError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every fetch validates the certificate the server presents now (RFC 8461 §3.3); fetches
    // are rare, so session resumption buys nothing.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}
