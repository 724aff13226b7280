//! Wiring: configuration → fetcher, store, engine, listener, server, proactive refresh.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mtasts_engine::{Clock, Engine};
use mtasts_fetch::Fetcher;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::StartError;
use crate::config::{Config, ListenConfig, ProxySetting};
use crate::listen::{Listener, LocalAddr, passed_socket_difference};
use crate::metrics::{self, Metrics, TimedDiscover};
use crate::privileges::SocketOwner;
use crate::server::{Handler, serve};
use crate::stores;

/// A daemon whose socket is bound (or taken from systemd) and whose policy fetcher is built (CA files and
/// resolver configuration read), but which does not serve yet: privileges can be dropped in between. The
/// store is opened by [`Bound::start`], after that.
#[derive(Debug)]
pub struct Bound {
    config: Config,
    fetcher: Fetcher,
    listeners: Vec<Listener>,
    local_addrs: Vec<LocalAddr>,
    /// The metrics endpoint's listener (`metrics.listen`), always bound by us, never taken from systemd.
    metrics: Option<(Listener, LocalAddr)>,
}

impl Bound {
    /// Binds the configured socket. Needs a tokio runtime.
    pub fn bind(config: Config) -> Result<Self, StartError> {
        Self::bind_owned(config, SocketOwner::default())
    }

    /// [`Bound::bind`], the UNIX socket files created belonging to `owner` (`-u`/`-g`).
    pub(crate) fn bind_owned(config: Config, owner: SocketOwner) -> Result<Self, StartError> {
        // Built now, while still privileged: it reads the CA files and /etc/resolv.conf.
        let fetcher = build_fetcher(&config)?;
        for warning in discovery_warnings(&config, &fetcher) {
            warn!("{warning}");
        }
        // Sockets passed by systemd (socket activation) win over the configured one.
        let mut listeners = Listener::from_systemd().map_err(|source| StartError::Systemd {
            what: "LISTEN_FDS socket",
            source,
        })?;
        let activated = !listeners.is_empty();
        if !activated {
            listeners.push(bind(&config.listen, config.reuse_port, owner)?);
        }
        let local_addrs = listeners
            .iter()
            .map(|l| local_addr(l, &config.listen))
            .collect::<Result<Vec<_>, _>>()?;
        if activated
            && let Some(difference) = passed_socket_difference(&config.listen, &local_addrs)
        {
            warn!("{difference}");
        }
        let metrics = match &config.metrics {
            None => None,
            Some(m) => {
                let listener = bind(&m.listen, config.reuse_port, owner)?;
                let addr = local_addr(&listener, &m.listen)?;
                Some((listener, addr))
            }
        };
        Ok(Self {
            config,
            fetcher,
            listeners,
            local_addrs,
            metrics,
        })
    }

    /// Where it listens (several addresses only with systemd socket activation).
    pub fn local_addrs(&self) -> &[LocalAddr] {
        &self.local_addrs
    }

    /// Opens the store, builds the engine and starts serving.
    pub async fn start(self) -> Result<Running, StartError> {
        self.start_with_clock(None).await
    }

    /// [`Bound::start`] with the engine reading time from `clock` (tests use a `ManualClock`).
    pub async fn start_with_clock(
        self,
        clock: Option<Arc<dyn Clock>>,
    ) -> Result<Running, StartError> {
        let Self {
            config,
            fetcher,
            listeners,
            local_addrs,
            metrics: metrics_listener,
        } = self;
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry, config.zones.keys()));
        let fetcher = TimedDiscover::new(fetcher, Arc::clone(&metrics));
        // Opened in the background: a store that is down or hung only costs misses.
        let store_status = Arc::clone(&metrics);
        let (store, memory) =
            stores::supervised(&config.cache, config.limits.memory_cache_size, move |up| {
                store_status.store_up(up);
            })?;
        let mut builder = Engine::builder(fetcher)
            .memory_capacity(memory)
            .memory_bytes(config.limits.memory_cache_bytes)
            .cache_grace(config.cache_grace)
            .max_negative_ttl(config.freshness.max_negative_ttl)
            .failure_backoff(config.freshness.failure_backoff)
            .max_dane_ttl(config.freshness.max_dane_ttl)
            .max_in_flight(config.limits.max_discoveries)
            .refresh_timeout(config.default_zone.timeout);
        if let Some(store) = store {
            builder = builder.store(store);
        }
        if let Some(clock) = clock {
            builder = builder.clock(clock);
        }
        let engine = builder.build_with_registry(&mut registry);
        let registry = Arc::new(registry);
        let handler =
            Arc::new(Handler::new(engine.clone(), &config).with_metrics(Arc::clone(&metrics)));
        let stop = CancellationToken::new();
        let (metrics_server, metrics_addr) = match metrics_listener {
            Some((listener, addr)) => {
                info!(listen = %addr, path = metrics::METRICS_PATH, "metrics endpoint serving");
                let task = tokio::spawn(metrics::serve(listener, registry, stop.clone()));
                (Some(task), Some(addr))
            }
            None => (None, None),
        };
        let server = tokio::spawn(serve(
            listeners,
            handler,
            config.limits.clone(),
            config.shutdown_timeout,
            stop.clone(),
        ));
        let proactive = config.proactive.enabled.then(|| {
            let metrics = Arc::clone(&metrics);
            let cfg = &config.proactive;
            engine.spawn_proactive(
                cfg.interval,
                cfg.grace_ratio,
                cfg.concurrency_limit,
                move |report| metrics.record_refresh(report, report.finished_at),
            )
        });
        for addr in &local_addrs {
            info!(listen = %addr, cache = config.cache.type_name(), "mta-sts-daemon serving");
        }
        Ok(Running {
            local_addrs,
            engine,
            metrics,
            metrics_addr,
            stop,
            server,
            metrics_server,
            proactive,
        })
    }
}

/// A serving daemon.
#[derive(Debug)]
pub struct Running {
    local_addrs: Vec<LocalAddr>,
    engine: Engine,
    metrics: Arc<Metrics>,
    metrics_addr: Option<LocalAddr>,
    stop: CancellationToken,
    server: JoinHandle<()>,
    metrics_server: Option<JoinHandle<()>>,
    proactive: Option<JoinHandle<()>>,
}

impl Running {
    /// Binds and starts in one step (no privilege change in between); for tests and embedding.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), mta_sts_daemon::StartError> {
    /// let (cfg, _) = mta_sts_daemon::Config::parse("port: 0\n")?;
    /// let running = mta_sts_daemon::Running::start(cfg).await?;
    /// println!("listening on {}", running.local_addr());
    /// running.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(config: Config) -> Result<Self, StartError> {
        Bound::bind(config)?.start().await
    }

    /// Where it listens (the first listener; see [`Running::local_addrs`]).
    pub fn local_addr(&self) -> &LocalAddr {
        // Never empty: binding yields at least one listener.
        &self.local_addrs[0]
    }

    /// Every address it listens on.
    pub fn local_addrs(&self) -> &[LocalAddr] {
        &self.local_addrs
    }

    /// The engine (for statistics and tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The daemon's counters (kept whether or not the metrics endpoint is enabled).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where the metrics endpoint listens (`metrics.listen`), if enabled.
    pub fn metrics_addr(&self) -> Option<&LocalAddr> {
        self.metrics_addr.as_ref()
    }

    /// Stops accepting connections at once; open connections are served until they close or
    /// `shutdown_timeout` passes. Returns immediately; see [`Running::wait`].
    pub fn stop(&self) {
        self.stop.cancel();
        if let Some(proactive) = &self.proactive {
            proactive.abort();
        }
    }

    /// Waits until the server has stopped (after [`Running::stop`]), and the store writes still queued are done
    /// (at most 5 s).
    pub async fn wait(self) {
        if let Err(e) = self.server.await {
            warn!(error = %e, "server task ended abnormally");
        }
        if tokio::time::timeout(FLUSH_AT_EXIT, self.engine.flush_store_writes())
            .await
            .is_err()
        {
            warn!("cache store writes still queued at exit are lost (the store is slow)");
        }
        if let Some(m) = self.metrics_server
            && let Err(e) = m.await
        {
            warn!(error = %e, "metrics endpoint task ended abnormally");
        }
        if let Some(p) = self.proactive {
            p.abort();
            let _ = p.await;
        }
    }

    /// [`Running::stop`] then [`Running::wait`].
    pub async fn shutdown(self) {
        self.stop();
        self.wait().await;
    }
}

/// How long a stopping daemon waits for the store writes still queued.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(5);

fn bind(
    listen: &ListenConfig,
    reuse_port: bool,
    owner: SocketOwner,
) -> Result<Listener, StartError> {
    Listener::bind(listen, reuse_port, owner).map_err(|source| StartError::Bind {
        addr: listen.to_string(),
        source,
    })
}

fn local_addr(listener: &Listener, listen: &ListenConfig) -> Result<LocalAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen.to_string(),
        source,
    })
}

/// The nameservers whose AD bit cannot be trusted: those not on loopback. DANE answers rest on the resolver's AD
/// bit, which only means something over a path no one else can write to (RFC 7672 §2.1.3: a validating resolver on
/// the same host, as Postfix's `smtp_dns_support_level = dnssec` also assumes).
fn untrusted_nameservers(servers: &[SocketAddr]) -> Vec<SocketAddr> {
    servers
        .iter()
        .filter(|addr| !addr.ip().is_loopback())
        .copied()
        .collect()
}

/// What the start warns about once discovery is set up (and `--check-config` prints): a zone with `dane` and a
/// nameserver not on loopback.
pub(crate) fn discovery_warnings(config: &Config, fetcher: &Fetcher) -> Vec<String> {
    let mut warnings = Vec::new();
    if !config.dane_enabled() {
        return warnings;
    }
    let untrusted = untrusted_nameservers(fetcher.nameservers());
    if !untrusted.is_empty() {
        let list = untrusted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        warnings.push(format!(
            "a zone has `dane: true` but these nameservers are not on loopback: {list}; their AD bit (DNSSEC \
             validated) can be forged on the way; use a validating resolver on this host \
             (resolver.nameservers: [\"127.0.0.1\"])"
        ));
    }
    warnings.push(
        "`dane: true` is read, but this build does not look up DANE yet: every zone gives the MTA-STS answer"
            .to_owned(),
    );
    warnings
}

/// The policy fetcher the configuration asks for: reads the CA files and the resolver configuration, parses the
/// proxy URL; connects nowhere.
pub(crate) fn build_fetcher(config: &Config) -> Result<Fetcher, StartError> {
    let mut builder = Fetcher::builder().timeout(config.default_zone.timeout);
    if !config.resolver.nameservers.is_empty() {
        builder = builder.nameservers(config.resolver.nameservers.clone());
    }
    if let Some(ca) = &config.resolver.extra_ca_file {
        builder = builder.extra_ca_pem_file(ca);
    }
    if let Some(port) = config.resolver.policy_port {
        builder = builder.policy_port(port);
    }
    match &config.resolver.proxy {
        ProxySetting::Environment => {}
        ProxySetting::Disabled => builder = builder.without_proxy(),
        ProxySetting::Url(url) => {
            builder = builder.proxy(url.parse().map_err(StartError::Fetcher)?);
        }
    }
    builder.build().map_err(StartError::Fetcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_nameservers_are_trusted_for_dane() {
        let addrs = |list: &[&str]| -> Vec<SocketAddr> {
            list.iter().map(|a| a.parse().expect("addr")).collect()
        };
        assert!(
            untrusted_nameservers(&addrs(&["127.0.0.1:53", "127.0.0.53:53", "[::1]:5353"]))
                .is_empty()
        );
        assert_eq!(
            untrusted_nameservers(&addrs(&[
                "127.0.0.1:53",
                "192.0.2.1:53",
                "[2001:db8::1]:53"
            ])),
            addrs(&["192.0.2.1:53", "[2001:db8::1]:53"])
        );
    }
}
