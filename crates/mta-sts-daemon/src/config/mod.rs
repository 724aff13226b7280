//! The daemon's configuration: the Python daemon's YAML file, read the way PyYAML reads it.
//!
//! Every key of `postfix-mta-sts-resolver` keeps its name, default and meaning (see `docs/configuration.md`).
//! Our own additions live under new sections (`resolver`, `limits`, `freshness`, `metrics`) so that a file
//! written for us still loads in the Python daemon (which ignores unknown keys) and the other way round.
//!
//! Each default is written once: in the `Default` impl of its section (the engine's defaults come from
//! `mtasts_engine`'s `DEFAULT_*` constants), which the reader uses for absent keys. Reading returns the
//! [`Config`] and its [`Diagnostics`] (unknown keys, warnings), which the caller logs.

mod extract;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use extract::{Section, invalid, to_int};
use mtasts_engine::{
    DEFAULT_CACHE_GRACE, DEFAULT_FAILURE_BACKOFF, DEFAULT_MAX_DANE_TTL, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_NEGATIVE_TTL, DEFAULT_MEMORY_BYTES, DEFAULT_MEMORY_CAPACITY,
    DEFAULT_REFRESH_TIMEOUT,
};
pub use yaml::YamlError;
use yaml::{Node, Value};

/// The default configuration file, as in the Python daemon.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/mta-sts-daemon.yml";
/// Default `host`, as in the Python daemon.
pub(crate) const DEFAULT_HOST: &str = "127.0.0.1";
/// Default `port`, as in the Python daemon.
pub(crate) const DEFAULT_PORT: u16 = 8461;

/// Why the configuration could not be loaded. Every command exits with code 78 (`EX_CONFIG`) on any of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (or does not exist).
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML (or not valid for `yaml.safe_load`).
    #[error(transparent)]
    Yaml(#[from] YamlError),
    /// A key has a value of the wrong type or out of range.
    #[error("configuration key `{key}` (line {line}): expected {expected}, found {found}")]
    Invalid {
        /// Dotted key path, e.g. `zones.myzone.timeout`.
        key: String,
        /// 1-based line of the value (0 when the key is absent).
        line: usize,
        /// What the key accepts.
        expected: String,
        /// What was found.
        found: String,
    },
}

/// Where the daemon listens.
///
/// [`FromStr`](std::str::FromStr) reads the one-string form of `metrics.listen`: `host:port` (`[v6]:port` for an
/// IPv6 address) or `unix:/path`; [`Display`](fmt::Display) writes it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenConfig {
    /// TCP on `host:port` (`host` may be a name, resolved at start).
    Tcp {
        /// Bind address or host name. Default `127.0.0.1`.
        host: String,
        /// Port. Default 8461; 0 picks a free port.
        port: u16,
    },
    /// A UNIX socket at `path` (then `host` and `port` are ignored).
    Unix {
        /// The socket path.
        path: PathBuf,
        /// File mode applied after binding (`mode: 0666` is octal as in YAML 1.1).
        mode: Option<u32>,
    },
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self::Tcp {
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
        }
    }
}

/// Why a `host:port` or `unix:/path` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid listen address {value:?}: {reason}")]
pub(crate) struct InvalidListen {
    /// The value.
    pub(crate) value: String,
    /// What is wrong with it.
    pub(crate) reason: &'static str,
}

impl std::str::FromStr for ListenConfig {
    type Err = InvalidListen;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidListen {
            value: value.to_owned(),
            reason,
        };
        let text = value.trim();
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(invalid("the socket path is empty"));
            }
            return Ok(Self::Unix {
                path: PathBuf::from(path),
                mode: None,
            });
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected host:port or unix:/path"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6,
            None if host.contains(':') => {
                return Err(invalid("write an IPv6 address in brackets: [::1]:9461"));
            }
            None => host,
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        Ok(Self::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ListenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') && !host.starts_with('[') => {
                write!(f, "[{host}]:{port}")
            }
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
            Self::Unix { path, .. } => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One socketmap name's behaviour (`default_zone`, `zones.<name>`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ZoneConfig {
    /// Answer `testing` policies as if they were `enforce`. Default false.
    pub(crate) strict_testing: bool,
    /// Bound on one discovery (DNS + HTTPS). Default [`DEFAULT_REFRESH_TIMEOUT`] (4 s).
    pub(crate) timeout: Duration,
    /// Append `servername=hostname` (Postfix ≥ 3.4). Default true.
    pub(crate) require_sni: bool,
    /// Append Postfix 3.10 TLSRPT attributes. Default false.
    pub(crate) tlsrpt: bool,
    /// Also run the DANE discovery (RFC 7672 §2.2) and answer `dane-only` / `dane` where DNSSEC-validated TLSA
    /// records exist, since MTA-STS must not override DANE (RFC 8461 §2). Default false.
    pub(crate) dane: bool,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        Self {
            strict_testing: false,
            timeout: DEFAULT_REFRESH_TIMEOUT,
            require_sni: true,
            tlsrpt: false,
            dane: false,
        }
    }
}

/// Options of the Redis server that holds the data (`redis`; `redis_sentinel`: the master), with redis-py's
/// names.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RedisServerConfig {
    /// Pool size (`max_connections`).
    pub(crate) max_connections: Option<usize>,
    /// Per-command timeout (`socket_timeout`).
    pub(crate) socket_timeout: Option<Duration>,
    /// Connect timeout (`socket_connect_timeout`).
    pub(crate) socket_connect_timeout: Option<Duration>,
    /// Password (`password`); for `redis` it overrides the URL's.
    pub(crate) password: Option<String>,
    /// User name (`username`); for `redis` it overrides the URL's.
    pub(crate) username: Option<String>,
    /// Database number (`db`); for `redis` it overrides the URL's.
    pub(crate) db: Option<i64>,
    /// `ssl`: TLS to the server (for `redis` also asked by a `rediss://` URL).
    pub(crate) ssl: bool,
    /// `ssl_ca_certs`: CA certificates (PEM) to trust instead of the system's.
    pub(crate) ssl_ca_certs: Option<PathBuf>,
    /// `ssl_certfile`, `ssl_keyfile`: a client certificate and its key.
    pub(crate) ssl_certfile: Option<PathBuf>,
    /// `ssl_keyfile`.
    pub(crate) ssl_keyfile: Option<PathBuf>,
    /// `ssl_cert_reqs`: `required` (default) and `optional` verify the server's certificate, `none` does not.
    pub(crate) ssl_cert_reqs_none: bool,
    /// `ssl_check_hostname`, default true (redis-py 4.x did not check).
    pub(crate) ssl_check_hostname: bool,
}

/// `redis` store options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://…` or `unix://…`.
    pub(crate) url: String,
    /// The server's options.
    pub(crate) server: RedisServerConfig,
}

/// `redis_sentinel` store options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SentinelConfig {
    /// `sentinel_master_name`.
    pub(crate) master_name: String,
    /// `sentinels`: `[host, port]` pairs.
    pub(crate) sentinels: Vec<(String, u16)>,
    /// The master's options: every other option goes to the master, as in the Python daemon.
    pub(crate) server: RedisServerConfig,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            dsn: None,
            host: Vec::new(),
            port: None,
            user: None,
            password: None,
            passfile: None,
            database: None,
            ssl: None,
            server_settings: Vec::new(),
            command_timeout: None,
            min_size: 0,
            max_size: 10,
            timeout: Duration::from_secs(5),
        }
    }
}

/// `postgres` store options, with asyncpg's names: the Python daemon passes `cache.options` (but `timeout`) to
/// `asyncpg.create_pool`. Keywords override the DSN's parts; the `PG*` environment variables fill the rest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PostgresConfig {
    /// `dsn`, e.g. `postgres://user@%2Frun%2Fpostgresql/db?sslmode=verify-full`.
    pub(crate) dsn: Option<String>,
    /// `host`: a name, an address or a socket directory, or a list of them (the first that answers is used).
    pub(crate) host: Vec<String>,
    /// `port`.
    pub(crate) port: Option<u16>,
    /// `user`.
    pub(crate) user: Option<String>,
    /// `password`.
    pub(crate) password: Option<String>,
    /// `passfile`: a password file in `.pgpass` format.
    pub(crate) passfile: Option<PathBuf>,
    /// `database`.
    pub(crate) database: Option<String>,
    /// `ssl`: an sslmode name (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`); `true` is
    /// `verify-full` (asyncpg's default SSL context verifies), `false` is `disable`.
    pub(crate) ssl: Option<String>,
    /// `server_settings`: sent at connect (e.g. `application_name`).
    pub(crate) server_settings: Vec<(String, String)>,
    /// `command_timeout`: bound on each statement; default `timeout`.
    pub(crate) command_timeout: Option<Duration>,
    /// `min_size` of the pool, default 0.
    pub(crate) min_size: usize,
    /// `max_size` of the pool, default 10.
    pub(crate) max_size: usize,
    /// `timeout` for acquiring a connection (the Python daemon's own option), default 5 s.
    pub(crate) timeout: Duration,
}

/// The policy store (`cache`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub(crate) enum CacheConfig {
    /// In memory only (`type: internal`): the engine's memory front.
    Internal {
        /// `cache_size`, default [`DEFAULT_MEMORY_CAPACITY`] (10 000) entries.
        cache_size: usize,
    },
    /// SQLite file (`type: sqlite`).
    Sqlite {
        /// `filename`.
        filename: PathBuf,
        /// `threads`; default: number of CPUs.
        threads: Option<usize>,
        /// `timeout`, default 5 s.
        timeout: Duration,
    },
    /// Redis (`type: redis`).
    Redis(RedisConfig),
    /// Redis behind Sentinel (`type: redis_sentinel`).
    RedisSentinel(SentinelConfig),
    /// PostgreSQL (`type: postgres`).
    Postgres(PostgresConfig),
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self::Internal {
            cache_size: DEFAULT_MEMORY_CAPACITY,
        }
    }
}

impl CacheConfig {
    /// The `cache.type` name.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Self::Internal { .. } => "internal",
            Self::Sqlite { .. } => "sqlite",
            Self::Redis(_) => "redis",
            Self::RedisSentinel(_) => "redis_sentinel",
            Self::Postgres { .. } => "postgres",
        }
    }
}

/// `proactive_policy_fetching`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProactiveConfig {
    /// Default false.
    pub(crate) enabled: bool,
    /// Default 86 400 s.
    pub(crate) interval: Duration,
    /// Default 100.
    pub(crate) concurrency_limit: usize,
    /// Default 2.0: entries younger than `interval / grace_ratio` are skipped.
    pub(crate) grace_ratio: f64,
}

impl Default for ProactiveConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: Duration::from_secs(86_400),
            concurrency_limit: 100,
            grace_ratio: 2.0,
        }
    }
}

/// Ours: how policies are discovered (`resolver` section).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ResolverConfig {
    /// DNS servers (`ip` or `ip:port`); empty = the system's `/etc/resolv.conf`.
    pub(crate) nameservers: Vec<SocketAddr>,
    /// Extra trusted CA certificates (PEM) for policy hosts, in addition to the system roots.
    pub(crate) extra_ca_file: Option<PathBuf>,
    /// Port of the policy HTTPS servers. Only for tests: RFC 8461 §3.3 fixes it at 443.
    pub(crate) policy_port: Option<u16>,
    /// HTTPS proxy for policy fetches.
    pub(crate) proxy: ProxySetting,
}

/// `resolver.proxy`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum ProxySetting {
    /// From `https_proxy`/`HTTPS_PROXY` and `no_proxy` (the default, like curl).
    #[default]
    Environment,
    /// No proxy, whatever the environment says (`proxy: none`).
    Disabled,
    /// This proxy URL, e.g. `http://user:pass@proxy.example:3128`.
    Url(String),
}

/// Ours: resource bounds (`limits` section).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LimitsConfig {
    /// Open client connections at most; more wait in the kernel's backlog. Default 10 000.
    pub(crate) max_connections: usize,
    /// Requests of one connection being processed at once (pipelining queue). Default 64.
    pub(crate) max_pipeline: usize,
    /// Longest request accepted, bytes (Postfix's own limit is 10 000). Default 10 000.
    pub(crate) max_request_size: usize,
    /// Policy discoveries in flight at once, all zones together. Default [`DEFAULT_MAX_IN_FLIGHT`] (1 000).
    pub(crate) max_discoveries: usize,
    /// Entries of the memory front over a persistent store. Default [`DEFAULT_MEMORY_CAPACITY`] (10 000).
    pub(crate) memory_cache_size: usize,
    /// Bytes the memory front's entries may take (each weighs about its size), with a persistent store and with
    /// `internal` alike. Default [`DEFAULT_MEMORY_BYTES`] (64 MiB).
    pub(crate) memory_cache_bytes: u64,
    /// A connection with no request pending that receives no whole request for this long is closed (a
    /// half-sent netstring too). Zero: never. Default [`DEFAULT_IDLE_TIMEOUT`] (60 s); Postfix itself drops an
    /// idle socketmap connection after about 10 s.
    pub(crate) idle_timeout: Duration,
}

/// The least `limits.memory_cache_bytes`: 1 MiB (room for a few of the largest policies in every shard).
const MIN_MEMORY_CACHE_BYTES: i64 = 1 << 20;
/// The most `limits.memory_cache_bytes`: 1 TiB.
const MAX_MEMORY_CACHE_BYTES: i64 = 1 << 40;

/// The default of `limits.idle_timeout`.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_pipeline: 64,
            max_request_size: 10_000,
            max_discoveries: DEFAULT_MAX_IN_FLIGHT,
            memory_cache_size: DEFAULT_MEMORY_CAPACITY,
            memory_cache_bytes: DEFAULT_MEMORY_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Ours: freshness knobs of the engine (`freshness` section).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FreshnessConfig {
    /// Longest time a "no policy" answer is cached. Default [`DEFAULT_MAX_NEGATIVE_TTL`] (3 600 s).
    pub(crate) max_negative_ttl: Duration,
    /// After a failed discovery, do not retry that domain for this long (RFC 8461 §3.3). Default
    /// [`DEFAULT_FAILURE_BACKOFF`] (60 s).
    pub(crate) failure_backoff: Duration,
    /// Longest time a DANE answer is kept in memory (it is kept for the smallest TTL of the DNS records it
    /// comes from, at least `cache_grace`). Default [`DEFAULT_MAX_DANE_TTL`] (3 600 s).
    pub(crate) max_dane_ttl: Duration,
}

impl Default for FreshnessConfig {
    fn default() -> Self {
        Self {
            max_negative_ttl: DEFAULT_MAX_NEGATIVE_TTL,
            failure_backoff: DEFAULT_FAILURE_BACKOFF,
            max_dane_ttl: DEFAULT_MAX_DANE_TTL,
        }
    }
}

/// Ours: the Prometheus metrics endpoint (`metrics` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetricsConfig {
    /// `listen`: `"host:port"` or `"unix:/path"` (with `mode`).
    pub(crate) listen: ListenConfig,
}

/// The control socket's default path: in the unit's `RuntimeDirectory` (`/run/mta-sts`).
pub(crate) const DEFAULT_CONTROL_SOCKET: &str = "/run/mta-sts/control.sock";

/// Ours: the control socket (`control` section), through which `mta-sts-daemon query` and the `cache` commands
/// ask the running daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControlConfig {
    /// `socket`: the UNIX socket's path, default [`DEFAULT_CONTROL_SOCKET`] (mode 0660, the daemon's group).
    pub(crate) socket: PathBuf,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `host`/`port` or `path`/`mode`.
    pub(crate) listen: ListenConfig,
    /// `reuse_port`, default true.
    pub(crate) reuse_port: bool,
    /// `cache_grace`, default [`DEFAULT_CACHE_GRACE`] (60 s).
    pub(crate) cache_grace: Duration,
    /// `shutdown_timeout`, default 20 s.
    pub(crate) shutdown_timeout: Duration,
    /// `cache`.
    pub(crate) cache: CacheConfig,
    /// `proactive_policy_fetching`.
    pub(crate) proactive: ProactiveConfig,
    /// `default_zone`.
    pub(crate) default_zone: ZoneConfig,
    /// `zones`.
    pub(crate) zones: BTreeMap<String, ZoneConfig>,
    /// Ours: `resolver`.
    pub(crate) resolver: ResolverConfig,
    /// Ours: `limits`.
    pub(crate) limits: LimitsConfig,
    /// Ours: `freshness`.
    pub(crate) freshness: FreshnessConfig,
    /// Ours: `metrics`; `None` (the default) serves no metrics endpoint.
    pub(crate) metrics: Option<MetricsConfig>,
    /// Ours: `control`.
    pub(crate) control: ControlConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ListenConfig::default(),
            reuse_port: true,
            cache_grace: DEFAULT_CACHE_GRACE,
            shutdown_timeout: Duration::from_secs(20),
            cache: CacheConfig::default(),
            proactive: ProactiveConfig::default(),
            default_zone: ZoneConfig::default(),
            zones: BTreeMap::new(),
            resolver: ResolverConfig::default(),
            limits: LimitsConfig::default(),
            freshness: FreshnessConfig::default(),
            metrics: None,
            control: ControlConfig::default(),
        }
    }
}

/// What reading a configuration found worth a warning, without refusing it. The caller logs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    unknown_keys: Vec<String>,
    warnings: Vec<String>,
}

impl Diagnostics {
    /// Keys the daemon does not know (dotted paths, e.g. `default_zone.strict`), in document order by section.
    /// They are ignored, as the Python daemon ignores them.
    pub fn unknown_keys(&self) -> &[String] {
        &self.unknown_keys
    }

    /// Other things worth a warning (e.g. `host` given together with `path`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.unknown_keys.is_empty() && self.warnings.is_empty()
    }
}

impl Config {
    /// Parses configuration text. An empty document means all defaults.
    ///
    /// ```
    /// use mta_sts_daemon::Config;
    /// let (_config, diagnostics) = Config::parse("path: /run/mta-sts.sock\nmode: 0666\nhots: 1\n")?;
    /// assert_eq!(diagnostics.unknown_keys(), ["hots"]);
    /// # Ok::<(), mta_sts_daemon::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The text is not YAML, or a key has a value of the wrong type or out of range.
    pub fn parse(text: &str) -> Result<(Self, Diagnostics), ConfigError> {
        Self::from_node(&yaml::load(text)?)
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    ///
    /// The file cannot be read (also when it does not exist) or is invalid.
    pub fn load(path: &Path) -> Result<(Self, Diagnostics), ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// [`Config::load`], but a file that does not exist means all defaults (as an empty one does), with a
    /// warning: the daemon's default path (`/etc/mta-sts-daemon.yml`) may be absent.
    ///
    /// # Errors
    ///
    /// The file exists but cannot be read, or is invalid.
    pub fn load_or_default(path: &Path) -> Result<(Self, Diagnostics), ConfigError> {
        match Self::load(path) {
            Err(ConfigError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let mut diagnostics = Diagnostics::default();
                diagnostics.warnings.push(format!(
                    "configuration file {} not found, using defaults",
                    path.display()
                ));
                Ok((Self::default(), diagnostics))
            }
            other => other,
        }
    }

    /// The zone for a socketmap name: `zones.<name>` or `default_zone`.
    #[cfg(test)]
    pub(crate) fn zone(&self, name: &str) -> &ZoneConfig {
        self.zones.get(name).unwrap_or(&self.default_zone)
    }

    /// Whether any zone (`default_zone` or `zones.<name>`) has `dane: true`.
    pub(crate) fn dane_enabled(&self) -> bool {
        self.default_zone.dane || self.zones.values().any(|zone| zone.dane)
    }

    fn from_node(root: &Node) -> Result<(Self, Diagnostics), ConfigError> {
        let d = Self::default();
        let mut top = Section::new("", Some(root))?;
        let mut unknown = Vec::new();
        let mut warnings = Vec::new();

        let listen = if let Some(path) = top.opt_string("path")? {
            let mode = match top.node("mode") {
                None => None,
                Some(node) => Some(socket_mode(node, &mut warnings)?),
            };
            for ignored in ["host", "port"] {
                if top.has(ignored) {
                    top.node(ignored);
                    warnings.push(format!("`{ignored}` is ignored because `path` is set"));
                }
            }
            ListenConfig::Unix {
                path: PathBuf::from(path),
                mode,
            }
        } else {
            if top.has("mode") {
                top.node("mode");
                warnings.push("`mode` is ignored without `path`".to_owned());
            }
            let host = top
                .opt_string("host")?
                .unwrap_or_else(|| DEFAULT_HOST.to_owned());
            let port = match top.node("port") {
                None => DEFAULT_PORT,
                Some(Node {
                    value: Value::Str(s),
                    line,
                }) => s.trim().parse::<u16>().map_err(|_| ConfigError::Invalid {
                    key: "port".into(),
                    line: *line,
                    expected: "a port number from 0 to 65535".into(),
                    found: format!("a string ({s:?})"),
                })?,
                Some(node) => to_int("port", node, 0, 65535)? as u16,
            };
            ListenConfig::Tcp { host, port }
        };
        let reuse_port = top.bool("reuse_port", d.reuse_port)?;
        let cache_grace = top.seconds("cache_grace", d.cache_grace)?;
        let shutdown_timeout = top.seconds("shutdown_timeout", d.shutdown_timeout)?;

        let mut cache_section = top.section("cache")?;
        let cache = cache_config(&mut cache_section, &mut unknown)?;
        unknown.extend(cache_section.unknown_keys());

        let mut pro = top.section("proactive_policy_fetching")?;
        let proactive = ProactiveConfig {
            enabled: pro.bool("enabled", d.proactive.enabled)?,
            interval: pro.seconds("interval", d.proactive.interval)?,
            concurrency_limit: pro.int(
                "concurrency_limit",
                d.proactive.concurrency_limit as i64,
                1,
                1_000_000,
            )? as usize,
            grace_ratio: pro.float("grace_ratio", d.proactive.grace_ratio, 0.0)?,
        };
        if proactive.enabled && proactive.interval.is_zero() {
            return Err(ConfigError::Invalid {
                key: pro.key_path("interval"),
                line: pro.line(),
                expected: "a positive number of seconds when proactive fetching is enabled".into(),
                found: "0".into(),
            });
        }
        unknown.extend(pro.unknown_keys());

        let mut dz = top.section("default_zone")?;
        let default_zone = zone_config(&mut dz)?;
        unknown.extend(dz.unknown_keys());

        let mut zones = BTreeMap::new();
        match top.node("zones") {
            None => {}
            Some(Node {
                value: Value::Map(entries),
                ..
            }) => {
                for (name, body) in entries {
                    let name = match &name.value {
                        Value::Str(s) => s.clone(),
                        // PyYAML would key the zone by a non-string (never matched by a request); keep its text.
                        other => other.to_string(),
                    };
                    let mut z = Section::new(&format!("zones.{name}"), Some(body))?;
                    zones.insert(name, zone_config(&mut z)?);
                    unknown.extend(z.unknown_keys());
                }
            }
            Some(other) => {
                return Err(invalid(
                    "zones",
                    other,
                    "a mapping of zone names to zone settings",
                ));
            }
        }

        let mut res = top.section("resolver")?;
        let resolver = resolver_config(&mut res)?;
        unknown.extend(res.unknown_keys());

        let mut lim = top.section("limits")?;
        let limits = LimitsConfig {
            max_connections: lim.int(
                "max_connections",
                d.limits.max_connections as i64,
                1,
                10_000_000,
            )? as usize,
            max_pipeline: lim.int("max_pipeline", d.limits.max_pipeline as i64, 1, 100_000)?
                as usize,
            max_request_size: lim.int(
                "max_request_size",
                d.limits.max_request_size as i64,
                64,
                100_000,
            )? as usize,
            max_discoveries: lim.int(
                "max_discoveries",
                d.limits.max_discoveries as i64,
                1,
                1_000_000,
            )? as usize,
            memory_cache_size: lim.int(
                "memory_cache_size",
                d.limits.memory_cache_size as i64,
                1,
                100_000_000,
            )? as usize,
            memory_cache_bytes: lim.int(
                "memory_cache_bytes",
                i64::try_from(d.limits.memory_cache_bytes).unwrap_or(i64::MAX),
                MIN_MEMORY_CACHE_BYTES,
                MAX_MEMORY_CACHE_BYTES,
            )? as u64,
            idle_timeout: lim.seconds("idle_timeout", d.limits.idle_timeout)?,
        };
        unknown.extend(lim.unknown_keys());

        let mut fr = top.section("freshness")?;
        let freshness = FreshnessConfig {
            max_negative_ttl: fr.seconds("max_negative_ttl", d.freshness.max_negative_ttl)?,
            failure_backoff: fr.seconds("failure_backoff", d.freshness.failure_backoff)?,
            max_dane_ttl: fr.seconds("max_dane_ttl", d.freshness.max_dane_ttl)?,
        };
        unknown.extend(fr.unknown_keys());

        let mut met = top.section("metrics")?;
        let metrics = metrics_config(&mut met, &mut warnings)?;
        unknown.extend(met.unknown_keys());

        let mut ctl = top.section("control")?;
        let control = ControlConfig {
            socket: match ctl.opt_string("socket")? {
                Some(path) if !path.trim().is_empty() => PathBuf::from(path),
                Some(_) => {
                    return Err(ConfigError::Invalid {
                        key: ctl.key_path("socket"),
                        line: ctl.line(),
                        expected: "the path of a UNIX socket".into(),
                        found: "an empty string".into(),
                    });
                }
                None => d.control.socket,
            },
        };
        unknown.extend(ctl.unknown_keys());

        let mut unknown_keys = top.unknown_keys();
        unknown_keys.extend(unknown);
        let config = Self {
            listen,
            reuse_port,
            cache_grace,
            shutdown_timeout,
            cache,
            proactive,
            default_zone,
            zones,
            resolver,
            limits,
            freshness,
            metrics,
            control,
        };
        Ok((
            config,
            Diagnostics {
                unknown_keys,
                warnings,
            },
        ))
    }
}

/// `mode`: an integer (YAML 1.1: `0666` is octal) or, as an extension, a string of octal digits.
fn socket_mode(node: &Node, warnings: &mut Vec<String>) -> Result<u32, ConfigError> {
    let expected = "a file mode such as 0666 (octal, with the leading zero) from 0 to 07777";
    let mode = match &node.value {
        Value::Int(i) if (0..=0o7777).contains(i) => *i as u32,
        Value::Str(s) => u32::from_str_radix(s.trim().trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| invalid("mode", node, expected))?,
        _ => return Err(invalid("mode", node, expected)),
    };
    if matches!(node.value, Value::Int(_)) && mode > 0o777 {
        warnings.push(format!(
            "`mode` is {mode} decimal = {mode:#o} octal (special bits set); write it with a leading zero, e.g. 0666, if octal was meant"
        ));
    }
    Ok(mode)
}

/// `metrics`: off without `listen`.
fn metrics_config(
    m: &mut Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<MetricsConfig>, ConfigError> {
    const EXPECTED: &str = "\"host:port\" or \"unix:/path\"";
    let listen = m.node("listen");
    let mode = match m.node("mode") {
        None => None,
        Some(node) => Some(socket_mode(node, warnings)?),
    };
    let Some(node) = listen else {
        if mode.is_some() {
            warnings.push("`metrics.mode` is ignored without `metrics.listen`".to_owned());
        }
        return Ok(None);
    };
    let Value::Str(text) = &node.value else {
        return Err(invalid(&m.key_path("listen"), node, EXPECTED));
    };
    let listen = match text.parse::<ListenConfig>() {
        Ok(ListenConfig::Unix { path, .. }) => ListenConfig::Unix { path, mode },
        Ok(tcp) => tcp,
        Err(e) => {
            return Err(ConfigError::Invalid {
                key: m.key_path("listen"),
                line: node.line,
                expected: format!("{EXPECTED} ({})", e.reason),
                found: format!("{text:?}"),
            });
        }
    };
    if mode.is_some() && matches!(listen, ListenConfig::Tcp { .. }) {
        warnings.push("`metrics.mode` applies only to a `unix:` socket".to_owned());
    }
    Ok(Some(MetricsConfig { listen }))
}

fn zone_config(z: &mut Section<'_>) -> Result<ZoneConfig, ConfigError> {
    let d = ZoneConfig::default();
    let timeout = z.seconds("timeout", d.timeout)?;
    if timeout.is_zero() {
        return Err(ConfigError::Invalid {
            key: z.key_path("timeout"),
            line: z.line(),
            expected: "a positive number of seconds".into(),
            found: "0".into(),
        });
    }
    Ok(ZoneConfig {
        strict_testing: z.bool("strict_testing", d.strict_testing)?,
        timeout,
        require_sni: z.bool("require_sni", d.require_sni)?,
        tlsrpt: z.bool("tlsrpt", d.tlsrpt)?,
        dane: z.bool("dane", d.dane)?,
    })
}

fn resolver_config(r: &mut Section<'_>) -> Result<ResolverConfig, ConfigError> {
    let mut nameservers = Vec::new();
    match r.node("nameservers") {
        None => {}
        Some(Node {
            value: Value::Seq(items),
            ..
        }) => {
            for item in items {
                let parsed = match &item.value {
                    Value::Str(s) => s.parse::<SocketAddr>().ok().or_else(|| {
                        s.parse::<std::net::IpAddr>()
                            .ok()
                            .map(|ip| SocketAddr::new(ip, 53))
                    }),
                    _ => None,
                };
                let addr = parsed.ok_or_else(|| {
                    invalid(
                        &r.key_path("nameservers"),
                        item,
                        "IP addresses, optionally with a port (\"192.0.2.1:53\")",
                    )
                })?;
                nameservers.push(addr);
            }
        }
        Some(other) => {
            return Err(invalid(
                &r.key_path("nameservers"),
                other,
                "a list of IP addresses",
            ));
        }
    }
    Ok(ResolverConfig {
        nameservers,
        extra_ca_file: r.opt_string("extra_ca_file")?.map(PathBuf::from),
        policy_port: r.opt_int("policy_port", 1, 65535)?.map(|p| p as u16),
        proxy: match r.opt_string("proxy")? {
            None => ProxySetting::Environment,
            Some(s) if s.is_empty() || s == "none" => ProxySetting::Disabled,
            Some(url) => ProxySetting::Url(url),
        },
    })
}

fn not_built(key: &str, line: usize, ty: &str, feature: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        line,
        expected: format!(
            "a cache type this build supports (rebuild with the `{feature}` feature for `{ty}`)"
        ),
        found: format!("{ty:?}"),
    }
}

fn cache_config(
    c: &mut Section<'_>,
    unknown: &mut Vec<String>,
) -> Result<CacheConfig, ConfigError> {
    let type_line = c.node("type").map_or(c.line(), |n| n.line);
    let ty = c
        .opt_string("type")?
        .unwrap_or_else(|| "internal".to_owned());
    let type_key = c.key_path("type");
    let mut o = c.section("options")?;
    let cache = match ty.as_str() {
        "internal" => CacheConfig::Internal {
            cache_size: o.int("cache_size", DEFAULT_MEMORY_CAPACITY as i64, 1, 100_000_000)?
                as usize,
        },
        "sqlite" => {
            if !cfg!(feature = "sqlite") {
                return Err(not_built(&type_key, type_line, "sqlite", "sqlite"));
            }
            let filename = o
                .opt_string("filename")?
                .ok_or_else(|| ConfigError::Invalid {
                    key: o.key_path("filename"),
                    line: o.line(),
                    expected: "the path of the SQLite database file".into(),
                    found: "nothing".into(),
                })?;
            CacheConfig::Sqlite {
                filename: PathBuf::from(filename),
                threads: o.opt_int("threads", 1, 1024)?.map(|t| t as usize),
                timeout: o.seconds("timeout", Duration::from_secs(5))?,
            }
        }
        "redis" => {
            if !cfg!(feature = "redis") {
                return Err(not_built(&type_key, type_line, "redis", "redis"));
            }
            let url = o.opt_string("url")?.ok_or_else(|| ConfigError::Invalid {
                key: o.key_path("url"),
                line: o.line(),
                expected: "a Redis URL such as redis://127.0.0.1/0".into(),
                found: "nothing".into(),
            })?;
            CacheConfig::Redis(RedisConfig {
                url,
                server: redis_server(&mut o)?,
            })
        }
        "redis_sentinel" => {
            if !cfg!(feature = "redis") {
                return Err(not_built(&type_key, type_line, "redis_sentinel", "redis"));
            }
            let master_name =
                o.opt_string("sentinel_master_name")?
                    .ok_or_else(|| ConfigError::Invalid {
                        key: o.key_path("sentinel_master_name"),
                        line: o.line(),
                        expected: "the name of the monitored master".into(),
                        found: "nothing".into(),
                    })?;
            let key = o.key_path("sentinels");
            let sentinels = match o.node("sentinels") {
                Some(Node {
                    value: Value::Seq(items),
                    ..
                }) if !items.is_empty() => items
                    .iter()
                    .map(|item| sentinel_addr(&key, item))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(other) => {
                    return Err(invalid(
                        &key,
                        other,
                        "a non-empty list of [host, port] pairs",
                    ));
                }
                None => {
                    return Err(ConfigError::Invalid {
                        key,
                        line: o.line(),
                        expected: "a non-empty list of [host, port] pairs".into(),
                        found: "nothing".into(),
                    });
                }
            };
            CacheConfig::RedisSentinel(SentinelConfig {
                master_name,
                sentinels,
                server: redis_server(&mut o)?,
            })
        }
        "postgres" => {
            if !cfg!(feature = "postgres") {
                return Err(not_built(&type_key, type_line, "postgres", "postgres"));
            }
            CacheConfig::Postgres(postgres_config(&mut o)?)
        }
        other => {
            return Err(ConfigError::Invalid {
                key: type_key,
                line: type_line,
                expected: "one of internal, sqlite, redis, redis_sentinel, postgres".into(),
                found: format!("{other:?}"),
            });
        }
    };
    unknown.extend(o.unknown_keys());
    Ok(cache)
}

/// The options redis-py takes for the server holding the data.
fn redis_server(o: &mut Section<'_>) -> Result<RedisServerConfig, ConfigError> {
    let key = o.key_path("ssl_cert_reqs");
    let ssl_cert_reqs_none = match o.node("ssl_cert_reqs").map(|n| (n, &n.value)) {
        None => false,
        Some((_, Value::Str(s))) if s == "required" || s == "optional" => false,
        Some((_, Value::Str(s))) if s == "none" => true,
        Some((node, _)) => return Err(invalid(&key, node, "required, optional or none")),
    };
    Ok(RedisServerConfig {
        max_connections: o
            .opt_int("max_connections", 1, 100_000)?
            .map(|n| n as usize),
        socket_timeout: o.opt_seconds("socket_timeout")?,
        socket_connect_timeout: o.opt_seconds("socket_connect_timeout")?,
        password: o.opt_string("password")?,
        username: o.opt_string("username")?,
        db: o.opt_int("db", 0, i64::from(u16::MAX))?,
        ssl: o.bool("ssl", false)?,
        ssl_ca_certs: o.opt_string("ssl_ca_certs")?.map(PathBuf::from),
        ssl_certfile: o.opt_string("ssl_certfile")?.map(PathBuf::from),
        ssl_keyfile: o.opt_string("ssl_keyfile")?.map(PathBuf::from),
        ssl_cert_reqs_none,
        ssl_check_hostname: o.bool("ssl_check_hostname", true)?,
    })
}

const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

fn postgres_config(o: &mut Section<'_>) -> Result<PostgresConfig, ConfigError> {
    let d = PostgresConfig::default();
    let key = o.key_path("host");
    let host = match o.node("host") {
        None => Vec::new(),
        Some(Node {
            value: Value::Str(h),
            ..
        }) => vec![h.clone()],
        Some(Node {
            value: Value::Seq(items),
            ..
        }) => items
            .iter()
            .map(|item| match &item.value {
                Value::Str(h) => Ok(h.clone()),
                _ => Err(invalid(
                    &key,
                    item,
                    "a host name, an address or a socket directory",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(invalid(&key, other, "a host or a list of hosts")),
    };
    let key = o.key_path("ssl");
    let ssl = match o.node("ssl") {
        None => None,
        Some(Node {
            value: Value::Bool(b),
            ..
        }) => Some(if *b { "verify-full" } else { "disable" }.to_owned()),
        Some(Node {
            value: Value::Str(mode),
            ..
        }) if SSL_MODES.contains(&mode.as_str()) => Some(mode.clone()),
        Some(other) => {
            return Err(invalid(
                &key,
                other,
                "true, false or an sslmode (disable, prefer, require, verify-ca, verify-full)",
            ));
        }
    };
    let key = o.key_path("server_settings");
    let server_settings = match o.node("server_settings") {
        None => Vec::new(),
        Some(Node {
            value: Value::Map(entries),
            ..
        }) => entries
            .iter()
            .map(|(k, v)| match (&k.value, &v.value) {
                (Value::Str(k), Value::Str(v)) => Ok((k.clone(), v.clone())),
                (Value::Str(k), Value::Int(n)) => Ok((k.clone(), n.to_string())),
                _ => Err(invalid(&key, v, "a mapping of setting names to values")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(invalid(&key, other, "a mapping of setting names to values")),
    };
    Ok(PostgresConfig {
        dsn: o.opt_string("dsn")?,
        host,
        port: o.opt_int("port", 1, 65535)?.map(|p| p as u16),
        user: o.opt_string("user")?,
        password: o.opt_string("password")?,
        passfile: o.opt_string("passfile")?.map(PathBuf::from),
        database: o.opt_string("database")?,
        ssl,
        server_settings,
        command_timeout: o.opt_seconds("command_timeout")?,
        min_size: o.int("min_size", d.min_size as i64, 0, 10_000)? as usize,
        max_size: o.int("max_size", d.max_size as i64, 1, 10_000)? as usize,
        timeout: o.seconds("timeout", d.timeout)?,
    })
}

fn sentinel_addr(key: &str, item: &Node) -> Result<(String, u16), ConfigError> {
    let expected = "a [host, port] pair";
    match &item.value {
        Value::Seq(pair) if pair.len() == 2 => {
            let host = match &pair[0].value {
                Value::Str(s) => s.clone(),
                _ => return Err(invalid(key, &pair[0], "a host name or address")),
            };
            let port = to_int(key, &pair[1], 1, 65535)? as u16;
            Ok((host, port))
        }
        _ => Err(invalid(key, item, expected)),
    }
}

#[cfg(test)]
mod tests;
