//! Connection options for [`RedisCache`](crate::RedisCache).

use std::fmt;
use std::time::Duration;

/// Default for [`RedisOptions::connect_timeout`] and [`SentinelOptions::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`RedisOptions::response_timeout`] and [`SentinelOptions::response_timeout`].
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`RedisOptions::pool_size`] and [`SentinelOptions::pool_size`].
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How to reach a single Redis server: [`RedisCache::connect`](crate::RedisCache::connect).
///
/// The URL carries the database number and credentials:
/// `redis://[[user]:password@]host[:port][/db]`, or `redis+unix:///path/to/socket?db=N&pass=secret` for a
/// UNIX socket. The password is never printed by `Debug`.
///
/// ```
/// use std::time::Duration;
/// use mtasts_cache_redis::RedisOptions;
///
/// let options = RedisOptions::new("redis://:s3cret@127.0.0.1:6379/2")
///     .connect_timeout(Duration::from_secs(2))
///     .pool_size(8);
/// assert_eq!(options.pool_size, 8);
/// assert!(!format!("{options:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Server URL (see the type's documentation).
    pub url: String,
    /// Limit for opening a connection (TCP connect plus handshake). Default 5 s.
    pub connect_timeout: Duration,
    /// Limit for the answer to one command. Default 5 s.
    pub response_timeout: Duration,
    /// Most connections kept open at once. Each is multiplexed, so a few suffice. Default 16.
    pub pool_size: usize,
}

impl RedisOptions {
    /// Options for `url` with default timeouts and pool size.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
        }
    }

    /// Sets [`RedisOptions::connect_timeout`].
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`RedisOptions::response_timeout`].
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets [`RedisOptions::pool_size`].
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
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
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// How to find the master through Redis Sentinel: [`RedisCache::sentinel`](crate::RedisCache::sentinel).
///
/// The master is looked up through the sentinels (asked in order) whenever a connection is opened; a pooled
/// connection whose server is no longer the master (after a failover) is dropped, so the store follows
/// failovers by itself.
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
    /// Database number on the master. Default 0.
    pub db: i64,
    /// User name for the master (Redis 6 ACL), if any.
    pub username: Option<String>,
    /// Password for the master, if any.
    pub password: Option<String>,
    /// User name for the sentinels themselves, if they require one.
    pub sentinel_username: Option<String>,
    /// Password for the sentinels themselves, if they require one.
    pub sentinel_password: Option<String>,
    /// Limit for opening a connection (sentinel lookup, connect, role check). Default 5 s.
    pub connect_timeout: Duration,
    /// Limit for the answer to one command. Default 5 s.
    pub response_timeout: Duration,
    /// Most connections kept open at once. Default 16.
    pub pool_size: usize,
}

impl SentinelOptions {
    /// Options for the master `master_name` known to `sentinels`, database 0, no password.
    #[must_use]
    pub fn new(master_name: impl Into<String>, sentinels: Vec<(String, u16)>) -> Self {
        Self {
            master_name: master_name.into(),
            sentinels,
            db: 0,
            username: None,
            password: None,
            sentinel_username: None,
            sentinel_password: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
        }
    }

    /// Sets [`SentinelOptions::db`].
    #[must_use]
    pub fn db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// Sets [`SentinelOptions::username`].
    #[must_use]
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets [`SentinelOptions::password`].
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
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

    /// Sets [`SentinelOptions::connect_timeout`].
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`SentinelOptions::response_timeout`].
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets [`SentinelOptions::pool_size`].
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }
}

impl fmt::Debug for SentinelOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("SentinelOptions")
            .field("master_name", &self.master_name)
            .field("sentinels", &self.sentinels)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &secret(&self.sentinel_password))
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// `url` with any password replaced, for logs and `Debug`.
pub(crate) fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    // userinfo: between "://" and the last '@' before the path.
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            out = format!("{}{user}:<redacted>{}", &url[..scheme_end + 3], &rest[at..]);
        }
    }
    // Query parameters of redis+unix URLs: `pass=...` / `password=...`.
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k == "pass" || k == "password" => format!("{k}=<redacted>"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        let cases = [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("redis://:pw@host:6379/3", "redis://:<redacted>@host:6379/3"),
            ("redis://user:pw@host/3", "redis://user:<redacted>@host/3"),
            ("redis://user:p@w@host", "redis://user:<redacted>@host"),
            (
                "redis+unix:///run/redis.sock?db=2&pass=pw",
                "redis+unix:///run/redis.sock?db=2&pass=<redacted>",
            ),
            ("no scheme", "no scheme"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn defaults() {
        let o = RedisOptions::default();
        assert_eq!(o.url, "redis://127.0.0.1:6379/0");
        assert_eq!(
            (o.connect_timeout, o.response_timeout, o.pool_size),
            (Duration::from_secs(5), Duration::from_secs(5), 16)
        );
        let s = SentinelOptions::new("m", vec![]);
        assert_eq!((s.db, s.password.as_deref()), (0, None));
    }
}
