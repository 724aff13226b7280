//! Connection options for [`RedisCache`](crate::RedisCache).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use deadpool_redis::redis::{
    Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisError, RedisResult, TlsCertificates,
};
use url::Url;

/// Default for [`ServerOptions::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`ServerOptions::response_timeout`].
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`ServerOptions::pool_size`].
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How to log in to and talk with the Redis server holding the data (behind Sentinel: the master). Shared by
/// [`RedisOptions`] and [`SentinelOptions`], which have a setter for each field.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Database number; for [`RedisOptions`] it overrides the URL's. Default: the URL's, else 0.
    pub db: Option<i64>,
    /// User name (Redis 6 ACL); for [`RedisOptions`] it overrides the URL's.
    pub username: Option<String>,
    /// Password; for [`RedisOptions`] it overrides the URL's. Never printed by `Debug`.
    pub password: Option<String>,
    /// Limit for opening a connection (TCP connect plus handshake; through Sentinel also the lookup and the
    /// role check). Default 5 s.
    pub connect_timeout: Duration,
    /// Limit for the answer to one command. Default 5 s.
    pub response_timeout: Duration,
    /// Most connections kept open at once. Each is multiplexed, so a few suffice. Default 16.
    pub pool_size: usize,
    /// TLS (redis-py's `ssl*` options); for [`RedisOptions`] also turned on by a `rediss://` URL.
    pub tls: Option<TlsOptions>,
}

/// TLS to the server, with redis-py's option names. The server's certificate chain and name are checked by
/// default (redis-py 4.x did not check the name).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// `ssl_ca_certs`: the CA certificates (PEM) to trust instead of the system's.
    pub ca_certs: Option<PathBuf>,
    /// `ssl_certfile` and `ssl_keyfile`: a client certificate and its key (PEM).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `ssl_cert_reqs`: whether the server's certificate is verified (`required`/`optional`: yes, `none`: no).
    pub verify: bool,
    /// `ssl_check_hostname`: whether the certificate must name the host connected to (with `verify`).
    pub check_hostname: bool,
}

impl Default for TlsOptions {
    /// Verified against the system's roots, host name checked, no client certificate.
    fn default() -> Self {
        Self {
            ca_certs: None,
            client_cert: None,
            verify: true,
            check_hostname: true,
        }
    }
}

impl TlsOptions {
    /// The certificates for the driver, read from their files.
    pub(crate) fn certificates(&self) -> std::io::Result<TlsCertificates> {
        let root_cert = self.ca_certs.as_ref().map(std::fs::read).transpose()?;
        let client_tls = match &self.client_cert {
            Some((cert, key)) => Some(ClientTlsConfig {
                client_cert: std::fs::read(cert)?,
                client_key: std::fs::read(key)?,
            }),
            None => None,
        };
        Ok(TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            db: None,
            username: None,
            password: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
            tls: None,
        }
    }
}

impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &redacted(self.password.as_ref()))
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls)
            .finish()
    }
}

fn redacted<T>(secret: Option<&T>) -> Option<&'static str> {
    secret.map(|_| "<redacted>")
}

/// How to reach a single Redis server: [`RedisCache::connect`](crate::RedisCache::connect).
///
/// The URL is `redis://[[user]:password@]host[:port][/db]`, or `redis+unix:///path/to/socket?db=N&pass=secret`
/// (also `unix://`) for a UNIX socket. [`db`](Self::db), [`username`](Self::username) and
/// [`password`](Self::password) override the URL's parts, as redis-py's `from_url(url, **options)` does.
/// Passwords are never printed by `Debug`.
///
/// ```
/// use std::time::Duration;
/// use mtasts_cache_redis::RedisOptions;
///
/// let options = RedisOptions::new("redis://127.0.0.1:6379/2")
///     .password("s3cret")
///     .db(3)
///     .connect_timeout(Duration::from_secs(2))
///     .pool_size(8);
/// assert_eq!(options.server.pool_size, 8);
/// assert!(!format!("{options:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Server URL (see the type's documentation).
    pub url: String,
    /// Login and limits.
    pub server: ServerOptions,
}

impl RedisOptions {
    /// Options for `url` with default timeouts and pool size.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            server: ServerOptions::default(),
        }
    }

    /// The URL's connection details with [`ServerOptions::db`], `username`, `password` and `tls` put over them.
    pub(crate) fn connection_info(&self) -> RedisResult<ConnectionInfo> {
        let mut info = self.url.as_str().into_connection_info()?;
        let mut redis = info.redis_settings().clone();
        if let Some(db) = self.server.db {
            redis = redis.set_db(db);
        }
        if let Some(user) = &self.server.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.server.password {
            redis = redis.set_password(password);
        }
        info = info.set_redis_settings(redis);
        // `rediss://` asks for TLS with the defaults; `ssl: true` (TlsOptions) over a `redis://` URL too.
        let tls = match (info.addr(), &self.server.tls) {
            (_, Some(tls)) => tls.clone(),
            (ConnectionAddr::TcpTls { .. }, None) => TlsOptions::default(),
            _ => return Ok(info),
        };
        let (host, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), *port)
            }
            ConnectionAddr::Unix(_) => {
                return Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "TLS over a UNIX socket",
                )));
            }
            _ => return Ok(info),
        };
        info = info.set_addr(ConnectionAddr::TcpTls {
            host,
            port,
            insecure: !tls.verify,
            tls_params: None,
        });
        let certificates = tls.certificates().map_err(|e| {
            RedisError::from((
                ErrorKind::InvalidClientConfig,
                "cannot read a TLS certificate or key file",
                e.to_string(),
            ))
        })?;
        let client = Client::build_with_tls(info, certificates)?;
        let mut info = client.get_connection_info().clone();
        if !tls.check_hostname {
            let mut addr = info.addr().clone();
            addr.set_danger_accept_invalid_hostnames(true);
            info = info.set_addr(addr);
        }
        Ok(info)
    }
}

impl Default for RedisOptions {
    /// `redis://127.0.0.1:6379/0` (the Python daemon's default URL is `redis://localhost`).
    fn default() -> Self {
        Self::new("redis://127.0.0.1:6379/0")
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &redact_url(&self.url))
            .field("server", &self.server)
            .finish()
    }
}

/// How to find the master through Redis Sentinel: [`RedisCache::sentinel`](crate::RedisCache::sentinel).
///
/// The master is looked up through the sentinels (asked in order) whenever a connection is opened; a pooled
/// connection whose server is no longer the master (after a failover) is dropped, so the store follows
/// failovers by itself. Everything but the sentinels, the master's name and the sentinels' own login applies to
/// the master ([`ServerOptions`]), as in the Python daemon.
///
/// ```
/// use mtasts_cache_redis::SentinelOptions;
///
/// let options = SentinelOptions::new("mymaster", vec![("10.0.0.1".into(), 26379), ("10.0.0.2".into(), 26379)])
///     .db(1)
///     .password("s3cret");
/// assert_eq!(options.sentinels.len(), 2);
/// assert!(!format!("{options:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct SentinelOptions {
    /// The name the sentinels monitor the master under (`sentinel monitor <name> ...`).
    pub master_name: String,
    /// Sentinel addresses, host and port; asked in this order.
    pub sentinels: Vec<(String, u16)>,
    /// User name for the sentinels themselves, if they require one.
    pub sentinel_username: Option<String>,
    /// Password for the sentinels themselves, if they require one.
    pub sentinel_password: Option<String>,
    /// Login on the master, and limits.
    pub server: ServerOptions,
}

impl SentinelOptions {
    /// Options for the master `master_name` known to `sentinels`, database 0, no password.
    #[must_use]
    pub fn new(master_name: impl Into<String>, sentinels: Vec<(String, u16)>) -> Self {
        Self {
            master_name: master_name.into(),
            sentinels,
            sentinel_username: None,
            sentinel_password: None,
            server: ServerOptions::default(),
        }
    }

    /// Sets [`SentinelOptions::sentinel_username`].
    #[must_use]
    pub fn sentinel_username(mut self, username: impl Into<String>) -> Self {
        self.sentinel_username = Some(username.into());
        self
    }

    /// Sets [`SentinelOptions::sentinel_password`].
    #[must_use]
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(password.into());
        self
    }
}

impl fmt::Debug for SentinelOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelOptions")
            .field("master_name", &self.master_name)
            .field("sentinels", &self.sentinels)
            .field("sentinel_username", &self.sentinel_username)
            .field(
                "sentinel_password",
                &redacted(self.sentinel_password.as_ref()),
            )
            .field("server", &self.server)
            .finish()
    }
}

/// The setters of [`ServerOptions`]' fields, for each options type that has one.
macro_rules! server_setters {
    ($($options:ty),+) => {$(
        impl $options {
            /// Sets [`ServerOptions::db`].
            #[must_use]
            pub fn db(mut self, db: i64) -> Self {
                self.server.db = Some(db);
                self
            }

            /// Sets [`ServerOptions::username`].
            #[must_use]
            pub fn username(mut self, username: impl Into<String>) -> Self {
                self.server.username = Some(username.into());
                self
            }

            /// Sets [`ServerOptions::password`].
            #[must_use]
            pub fn password(mut self, password: impl Into<String>) -> Self {
                self.server.password = Some(password.into());
                self
            }

            /// Sets [`ServerOptions::connect_timeout`].
            #[must_use]
            pub fn connect_timeout(mut self, timeout: Duration) -> Self {
                self.server.connect_timeout = timeout;
                self
            }

            /// Sets [`ServerOptions::response_timeout`].
            #[must_use]
            pub fn response_timeout(mut self, timeout: Duration) -> Self {
                self.server.response_timeout = timeout;
                self
            }

            /// Sets [`ServerOptions::tls`].
            #[must_use]
            pub fn tls(mut self, tls: TlsOptions) -> Self {
                self.server.tls = Some(tls);
                self
            }

            /// Sets [`ServerOptions::pool_size`].
            #[must_use]
            pub fn pool_size(mut self, size: usize) -> Self {
                self.server.pool_size = size;
                self
            }
        }
    )+};
}

server_setters!(RedisOptions, SentinelOptions);

/// `url` with any password replaced, for logs and `Debug`; a URL that does not parse shows its scheme only.
pub(crate) fn redact_url(url: &str) -> String {
    const REDACTED: &str = "redacted";
    let Ok(mut parsed) = Url::parse(url) else {
        return match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => "…".to_owned(),
        };
    };
    if parsed.password().is_some() {
        // Only fails for URLs that cannot have a password, and this one has one.
        let _ = parsed.set_password(Some(REDACTED));
    }
    // Query parameters of UNIX-socket URLs: `pass=…` / `password=…`.
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "pass" || k == "password" {
                    REDACTED.into()
                } else {
                    v
                };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.into()
}

#[cfg(test)]
mod tests {
    use deadpool_redis::redis::ConnectionAddr;

    use super::*;

    #[test]
    fn redacts_passwords() {
        let cases = [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("redis://:pw@host:6379/3", "redis://:redacted@host:6379/3"),
            ("redis://user:pw@host/3", "redis://user:redacted@host/3"),
            ("redis://user:p%40w@host", "redis://user:redacted@host"),
            (
                "redis+unix:///run/redis.sock?db=2&pass=pw",
                "redis+unix:///run/redis.sock?db=2&pass=redacted",
            ),
            ("redis://user:pw@[bad", "redis://…"),
            ("no scheme", "…"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn options_override_the_url_parts() {
        // (url, username, password, db) → (address, username, password, db) the store logs in with.
        type Given<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<i64>);
        type LogIn<'a> = (&'a str, Option<&'a str>, Option<&'a str>, i64);
        let cases: [(Given<'_>, LogIn<'_>); 6] = [
            (
                ("redis://127.0.0.1/0", None, None, None),
                ("127.0.0.1:6379", None, None, 0),
            ),
            (
                ("redis://127.0.0.1/0", None, Some("p@ss:/"), None),
                ("127.0.0.1:6379", None, Some("p@ss:/"), 0),
            ),
            (
                ("redis://old:x@h:6380/1", Some("u"), Some("new"), Some(3)),
                ("h:6380", Some("u"), Some("new"), 3),
            ),
            (
                ("redis://old:x@h:6380/1", None, None, None),
                ("h:6380", Some("old"), Some("x"), 1),
            ),
            // UNIX sockets keep their path; the options replace the query's.
            (
                ("unix:///run/redis.sock?db=1&pass=old", None, None, Some(2)),
                ("/run/redis.sock", None, Some("old"), 2),
            ),
            (
                (
                    "redis+unix:///run/redis.sock",
                    Some("u"),
                    Some("p&w"),
                    Some(4),
                ),
                ("/run/redis.sock", Some("u"), Some("p&w"), 4),
            ),
        ];
        for ((url, user, pass, db), (addr, want_user, want_pass, want_db)) in cases {
            let mut options = RedisOptions::new(url);
            options.server.username = user.map(str::to_owned);
            options.server.password = pass.map(str::to_owned);
            options.server.db = db;
            let info = options.connection_info().expect(url);
            let shown = match info.addr() {
                ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
                ConnectionAddr::Unix(path) => path.display().to_string(),
                other => format!("{other:?}"),
            };
            let redis = info.redis_settings();
            assert_eq!(
                (
                    shown.as_str(),
                    redis.username(),
                    redis.password(),
                    redis.db()
                ),
                (addr, want_user, want_pass, want_db),
                "{url}"
            );
        }
    }

    #[test]
    fn defaults() {
        let o = RedisOptions::default();
        assert_eq!(o.url, "redis://127.0.0.1:6379/0");
        assert_eq!(
            (
                o.server.connect_timeout,
                o.server.response_timeout,
                o.server.pool_size
            ),
            (Duration::from_secs(5), Duration::from_secs(5), 16)
        );
        let s = SentinelOptions::new("m", vec![]);
        assert_eq!((s.server.db, s.server.password.as_deref()), (None, None));
    }
}
