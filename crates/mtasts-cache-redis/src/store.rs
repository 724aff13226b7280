//! [`RedisCache`]: the [`PolicyCache`] over Redis.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use deadpool::managed::PoolBuilder;
use deadpool_redis::redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, Cmd, ConnectionAddr, FromRedisValue, RedisError, TlsMode,
};
use deadpool_redis::{PoolError, Runtime};
use mtasts_cache::{
    CacheEntry, CacheError, CorruptEntry, PolicyCache, ScanPage, ScanToken, async_trait, skew_limit,
};

use crate::member;
use crate::options::{RedisOptions, SentinelOptions, ServerOptions, redact_url};
use crate::pool::{Conn, Pool, SentinelManager};

/// The store name in [`CacheError`]s.
const STORE: &str = "redis";
/// The Python daemon's metadata hash; its `scan` skips this key by name.
pub const METADATA_KEY: &str = "_metadata";
/// The field of [`METADATA_KEY`] holding the last proactive refresh time.
pub const PROACTIVE_FETCH_FIELD: &str = "proactive_fetch_ts";
/// How many `SCAN` round trips one [`PolicyCache::scan`] call makes at most before returning a (possibly
/// short or empty) page.
const MAX_SCAN_ROUNDS: usize = 8;
/// `SCAN ... COUNT` used by [`PolicyCache::clear`].
const CLEAR_BATCH: usize = 1000;

/// Newer wins, atomically: the member is written only if no member with a score (`checked_at`) at least as
/// high exists, a score above `ARGV[3]` (this host's clock plus [`MAX_CLOCK_SKEW`](mtasts_cache::MAX_CLOCK_SKEW),
/// written by a host whose clock runs ahead) counting as now. The written member is then the only one (the
/// Python daemon trims all but the highest-scored after a write; a replaced future member must go too).
///
/// `KEYS[1]` = domain, `ARGV[1]` = score, `ARGV[2]` = member, `ARGV[3]` = the skew limit. Returns 1 if written,
/// 0 if not.
const SET_IF_NEWER: &str = r"
local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if top[2] ~= nil and tonumber(top[2]) >= tonumber(ARGV[1]) and tonumber(top[2]) <= tonumber(ARGV[3]) then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// Why a key cannot be used; the source of a [`CacheError::Query`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is the Python daemon's metadata hash ([`METADATA_KEY`]), never a policy domain.
    #[error("{key:?} is reserved for the cache metadata")]
    Reserved {
        /// The key asked for.
        key: String,
    },
}

/// A [`PolicyCache`] in Redis, directly or through Redis Sentinel, sharing its data layout with the Python
/// `postfix-mta-sts-resolver` so both can use the same database.
///
/// See the [crate documentation](crate) for the layout. Every method call returns within
/// `connect_timeout + response_timeout` (with [`CacheError::Timeout`] if need be); connections broken by a
/// server restart or failover are replaced on the next call.
pub struct RedisCache {
    pool: Pool,
    /// Upper bound for one call (one connection setup plus one answer).
    deadline: Duration,
    response_timeout: Duration,
    /// For `Debug` and logs: the URL without password, or the sentinel master name.
    target: String,
}

impl RedisCache {
    /// Connects to one Redis server and checks that it answers (`PING`).
    ///
    /// # Errors
    ///
    /// [`CacheError::Config`] for a malformed URL or a zero pool size; [`CacheError::Unavailable`],
    /// [`CacheError::Timeout`] or [`CacheError::Query`] (e.g. a wrong password) if the server cannot be used.
    ///
    /// ```no_run
    /// use mtasts_cache_redis::{RedisCache, RedisOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), mtasts_cache::CacheError> {
    /// let cache = RedisCache::connect(RedisOptions::new("redis://:secret@127.0.0.1:6379/1")).await?;
    /// # drop(cache);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(options: RedisOptions) -> Result<Self, CacheError> {
        Self::connect_lazy(options)?.answering().await
    }

    /// Like [`RedisCache::connect`], but opens no connection until the first call: the store can be set up
    /// while Redis is still down.
    ///
    /// # Errors
    ///
    /// [`CacheError::Config`] for a malformed URL or a zero pool size.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "options are handed over, like to the other constructors"
    )]
    pub fn connect_lazy(options: RedisOptions) -> Result<Self, CacheError> {
        let target = redact_url(&options.url);
        let info = options.connection_info();
        let server = &options.server;
        let config = connection_config(server);
        let manager = info
            .and_then(|info| deadpool_redis::Manager::new_with_config(info, config))
            .map_err(|e| CacheError::Config {
                store: STORE,
                reason: format!("invalid URL or TLS options for {target:?}"),
                source: Some(share(e)),
            })?;
        let pool = build_pool(deadpool_redis::Pool::builder(manager), server)?;
        Ok(Self::new(Pool::Direct(pool), server, target))
    }

    /// Connects to the master the sentinels name and checks that it answers.
    ///
    /// Failovers are followed automatically: a connection is always opened to the current master, and
    /// pooled connections to a server that is no longer the master are dropped.
    ///
    /// # Errors
    ///
    /// As [`RedisCache::connect`]; [`CacheError::Config`] also for an empty sentinel list.
    ///
    /// ```no_run
    /// use mtasts_cache_redis::{RedisCache, SentinelOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), mtasts_cache::CacheError> {
    /// let sentinels = vec![("10.0.0.1".to_owned(), 26379), ("10.0.0.2".to_owned(), 26379)];
    /// let cache = RedisCache::sentinel(SentinelOptions::new("mymaster", sentinels).db(1)).await?;
    /// # drop(cache);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn sentinel(options: SentinelOptions) -> Result<Self, CacheError> {
        Self::sentinel_lazy(options)?.answering().await
    }

    /// Like [`RedisCache::sentinel`], but opens no connection until the first call.
    ///
    /// # Errors
    ///
    /// [`CacheError::Config`] for an empty sentinel list or a zero pool size.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "options are handed over, like to the other constructors"
    )]
    pub fn sentinel_lazy(options: SentinelOptions) -> Result<Self, CacheError> {
        let server = &options.server;
        if options.sentinels.is_empty() {
            return Err(CacheError::Config {
                store: STORE,
                reason: "no sentinels configured".into(),
                source: None,
            });
        }
        let addrs = options
            .sentinels
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder =
            SentinelClientBuilder::new(addrs, &options.master_name, SentinelServerType::Master)
                .map_err(config_error("invalid sentinel configuration"))?
                .set_client_to_redis_db(server.db.unwrap_or(0));
        if let Some(user) = &server.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &server.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(tls) = &server.tls {
            let mode = if tls.verify {
                TlsMode::Secure
            } else {
                TlsMode::Insecure
            };
            let certificates = tls.certificates().map_err(|e| CacheError::Config {
                store: STORE,
                reason: "cannot read a TLS certificate or key file".into(),
                source: Some(share(e)),
            })?;
            if tls.verify && !tls.check_hostname {
                tracing::warn!(
                    "redis_sentinel: ssl_check_hostname false is not supported through Sentinel; the master's \
                     host name is still checked"
                );
            }
            builder = builder
                .set_client_to_redis_tls_mode(mode)
                .set_client_to_redis_certificates(certificates);
        }
        if let Some(user) = &options.sentinel_username {
            builder = builder.set_client_to_sentinel_username(user);
        }
        if let Some(password) = &options.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        let client = builder
            .build()
            .map_err(config_error("invalid sentinel configuration"))?;
        let manager = SentinelManager::new(client, connection_config(server));
        let pool = build_pool(deadpool::managed::Pool::builder(manager), server)?;
        let target = format!("sentinel master {:?}", options.master_name);
        Ok(Self::new(Pool::Sentinel(pool), server, target))
    }

    fn new(pool: Pool, server: &ServerOptions, target: String) -> Self {
        Self {
            pool,
            deadline: server.connect_timeout + server.response_timeout,
            response_timeout: server.response_timeout,
            target,
        }
    }

    /// This store once its server has answered.
    async fn answering(self) -> Result<Self, CacheError> {
        self.ping().await?;
        Ok(self)
    }

    /// Checks that the server answers (`PING`).
    ///
    /// # Errors
    ///
    /// [`CacheError::Unavailable`], [`CacheError::Timeout`], [`CacheError::Query`] or [`CacheError::Closed`].
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.query::<()>(&redis::cmd("PING")).await
    }

    /// Runs one command, on a pooled connection, within the deadline.
    ///
    /// A connection that failed is not returned to the pool. A command that failed because the connection
    /// broke, or because its server turned into a replica (`READONLY`, after a failover), is retried once on
    /// a new connection; the commands sent are idempotent or guarded (newer wins), so a retry is safe.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, CacheError> {
        self.within_deadline(async {
            let mut retried = false;
            loop {
                let mut conn = self.pool.get().await.map_err(|e| self.pool_error(e))?;
                match cmd.query_async::<T>(conn.connection()).await {
                    Ok(v) => return Ok(v),
                    Err(e) => self.after_error(conn, e, &mut retried)?,
                }
            }
        })
        .await
    }

    /// Like [`RedisCache::query`] for a pipeline.
    async fn query_pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, CacheError> {
        self.within_deadline(async {
            let mut retried = false;
            loop {
                let mut conn = self.pool.get().await.map_err(|e| self.pool_error(e))?;
                match pipe.query_async::<T>(conn.connection()).await {
                    Ok(v) => return Ok(v),
                    Err(e) => self.after_error(conn, e, &mut retried)?,
                }
            }
        })
        .await
    }

    async fn within_deadline<T>(
        &self,
        fut: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        if self.pool.is_closed() {
            return Err(CacheError::Closed { store: STORE });
        }
        tokio::time::timeout(self.deadline, fut)
            .await
            .unwrap_or(Err(CacheError::Timeout {
                store: STORE,
                after: self.deadline,
            }))
    }

    /// Decides what happens after a failed command: `Ok(())` = retry, `Err` = give up.
    fn after_error(
        &self,
        conn: Conn,
        err: RedisError,
        retried: &mut bool,
    ) -> Result<(), CacheError> {
        let read_only = err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
        let broken = read_only
            || err.is_connection_dropped()
            || err.is_io_error()
            || err.is_unrecoverable_error();
        if broken {
            conn.discard();
        }
        if read_only {
            // A failover happened: every idle connection may still point at the demoted master.
            self.pool.drop_idle();
        }
        if broken && !err.is_timeout() && !*retried {
            *retried = true;
            tracing::debug!(target = %self.target, error = %err, "redis connection failed; retrying on a new one");
            return Ok(());
        }
        Err(self.redis_error(err))
    }

    fn redis_error(&self, err: RedisError) -> CacheError {
        if err.is_timeout() {
            CacheError::Timeout {
                store: STORE,
                after: self.response_timeout,
            }
        } else if err.is_io_error()
            || err.is_connection_refusal()
            || err.is_connection_dropped()
            || err.is_unrecoverable_error()
            || err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        {
            CacheError::Unavailable {
                store: STORE,
                source: share(err),
            }
        } else {
            CacheError::Query {
                store: STORE,
                source: share(err),
            }
        }
    }

    fn pool_error(&self, err: PoolError) -> CacheError {
        match err {
            PoolError::Timeout(_) => CacheError::Timeout {
                store: STORE,
                after: self.deadline,
            },
            PoolError::Closed => CacheError::Closed { store: STORE },
            PoolError::Backend(e) if e.is_timeout() => CacheError::Timeout {
                store: STORE,
                after: self.deadline,
            },
            // The server rejected our credentials, which waiting won't fix.
            PoolError::Backend(e) if is_refused_handshake(&e) => CacheError::Query {
                store: STORE,
                source: share(e),
            },
            // Failing to open a connection (refused, reset, no master known) means the store is unusable for now.
            PoolError::Backend(e) => CacheError::Unavailable {
                store: STORE,
                source: share(e),
            },
            other => CacheError::Unavailable {
                store: STORE,
                source: share(other),
            },
        }
    }
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("RedisCache")
            .field("target", &self.target)
            .field("deadline", &self.deadline)
            .field("pool_size", &status.size)
            .field("pool_max_size", &status.max_size)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl PolicyCache for RedisCache {
    async fn get(&self, domain: &str) -> Result<Option<CacheEntry>, CacheError> {
        if domain == METADATA_KEY {
            return Ok(None);
        }
        let top = redis::cmd("ZREVRANGE")
            .arg(domain)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .clone();
        match self.query::<Vec<(Vec<u8>, f64)>>(&top).await {
            Ok(members) => match members.first() {
                None => Ok(None),
                Some((member, score)) => member::decode(domain, member, *score).map(Some),
            },
            Err(e) if is_wrong_type(&e) => Err(CacheError::corrupt(
                domain,
                "key does not hold a sorted set",
            )),
            Err(e) => Err(e),
        }
    }

    async fn set(&self, domain: &str, entry: &CacheEntry) -> Result<bool, CacheError> {
        reject_reserved(domain)?;
        let member = member::encode(entry);
        let script = redis::cmd("EVAL")
            .arg(SET_IF_NEWER)
            .arg(1)
            .arg(domain)
            .arg(entry.checked_at)
            .arg(member)
            .arg(skew_limit())
            .clone();
        match self.query::<i64>(&script).await {
            Ok(written) => Ok(written == 1),
            Err(e) if is_wrong_type(&e) => Err(CacheError::corrupt(
                domain,
                "key does not hold a sorted set",
            )),
            Err(e) => Err(e),
        }
    }

    async fn scan(
        &self,
        token: Option<&ScanToken>,
        page_size: usize,
    ) -> Result<ScanPage, CacheError> {
        let mut cursor: u64 = match token {
            None => 0,
            Some(t) => t.as_str().parse().map_err(|_| CacheError::InvalidToken {
                token: t.to_string(),
            })?,
        };
        let want = page_size.max(1);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_SCAN_ROUNDS {
            let count = want.saturating_sub(keys.len()).max(10);
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(count)
                .arg("TYPE")
                .arg("zset")
                .clone();
            let (next, batch): (u64, Vec<Vec<u8>>) = self.query(&scan).await?;
            cursor = next;
            // SCAN may return a key twice; the metadata hash is filtered out by TYPE already.
            keys.extend(
                batch
                    .into_iter()
                    .filter(|k| k.as_slice() != METADATA_KEY.as_bytes() && seen.insert(k.clone())),
            );
            if cursor == 0 || keys.len() >= want {
                break;
            }
        }
        let mut page = ScanPage {
            next: (cursor != 0).then(|| ScanToken::new(cursor.to_string())),
            ..ScanPage::default()
        };
        if keys.is_empty() {
            return Ok(page);
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("ZREVRANGE")
                .arg(key)
                .arg(0)
                .arg(0)
                .arg("WITHSCORES");
        }
        // One reply per key; a key replaced by another type since SCAN saw it must not fail the page.
        pipe.ignore_errors();
        let tops: Vec<redis::RedisResult<Vec<(Vec<u8>, f64)>>> = self.query_pipe(&pipe).await?;
        for (key, top) in keys.iter().zip(tops) {
            let domain = String::from_utf8_lossy(key).into_owned();
            let top = match top {
                Ok(top) => top,
                Err(e) if e.code() == Some("WRONGTYPE") => continue, // no longer a sorted set: not ours
                Err(e) => {
                    let error =
                        CacheError::corrupt(domain.clone(), format!("unreadable sorted set: {e}"));
                    page.corrupt.push(CorruptEntry { domain, error });
                    continue;
                }
            };
            let Some((member, score)) = top.first() else {
                continue; // removed since SCAN saw it
            };
            if std::str::from_utf8(key).is_err() {
                let error = CacheError::corrupt(domain.clone(), "key is not UTF-8");
                page.corrupt.push(CorruptEntry { domain, error });
                continue;
            }
            match member::decode(&domain, member, *score) {
                Ok(entry) => page.entries.push((domain, entry)),
                Err(error) => {
                    tracing::warn!(%domain, %error, "skipping corrupt redis cache entry");
                    page.corrupt.push(CorruptEntry { domain, error });
                }
            }
        }
        Ok(page)
    }

    async fn remove(&self, domain: &str) -> Result<bool, CacheError> {
        if domain == METADATA_KEY {
            return Ok(false);
        }
        let removed: u64 = self.query(redis::cmd("DEL").arg(domain)).await?;
        Ok(removed > 0)
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        let mut cursor = 0u64;
        let mut removed = 0u64;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(CLEAR_BATCH)
                .arg("TYPE")
                .arg("zset")
                .clone();
            let (next, keys): (u64, Vec<Vec<u8>>) = self.query(&scan).await?;
            let keys: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| k.as_slice() != METADATA_KEY.as_bytes())
                .collect();
            if !keys.is_empty() {
                // DEL counts what it actually removed, so keys SCAN returns twice are counted once.
                removed += self.query::<u64>(redis::cmd("DEL").arg(&keys)).await?;
            }
            cursor = next;
            if cursor == 0 {
                return Ok(removed);
            }
        }
    }

    async fn proactive_fetch_ts(&self) -> Result<Option<u64>, CacheError> {
        let value: Option<String> = self
            .query(
                redis::cmd("HGET")
                    .arg(METADATA_KEY)
                    .arg(PROACTIVE_FETCH_FIELD),
            )
            .await?;
        match value.as_deref() {
            // The Python daemon treats an empty value as "never".
            None | Some("") => Ok(None),
            Some(text) => member::parse_ts_text(text).map(Some).ok_or_else(|| {
                CacheError::corrupt(
                    METADATA_KEY,
                    format!("invalid {PROACTIVE_FETCH_FIELD} {text:?}"),
                )
            }),
        }
    }

    async fn set_proactive_fetch_ts(&self, ts: u64) -> Result<(), CacheError> {
        self.query::<()>(
            redis::cmd("HSET")
                .arg(METADATA_KEY)
                .arg(PROACTIVE_FETCH_FIELD)
                .arg(ts.to_string()),
        )
        .await
    }

    async fn close(&self) {
        self.pool.close();
    }
}

fn connection_config(server: &ServerOptions) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(server.connect_timeout))
        .set_response_timeout(Some(server.response_timeout))
}

/// A pool of at most `pool_size` connections whose every wait is bounded by the server options' timeouts.
fn build_pool<M, W>(
    builder: PoolBuilder<M, W>,
    server: &ServerOptions,
) -> Result<deadpool::managed::Pool<M, W>, CacheError>
where
    M: deadpool::managed::Manager,
    W: From<deadpool::managed::Object<M>>,
{
    if server.pool_size == 0 {
        return Err(CacheError::Config {
            store: STORE,
            reason: "pool_size must be at least 1".into(),
            source: None,
        });
    }
    builder
        .max_size(server.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(server.connect_timeout + server.response_timeout))
        .create_timeout(Some(server.connect_timeout))
        .recycle_timeout(Some(server.response_timeout))
        .build()
        .map_err(|e| CacheError::Config {
            store: STORE,
            reason: "cannot build the connection pool".into(),
            source: Some(share(e)),
        })
}

fn reject_reserved(domain: &str) -> Result<(), CacheError> {
    if domain == METADATA_KEY {
        return Err(CacheError::query(
            STORE,
            KeyError::Reserved {
                key: domain.to_owned(),
            },
        ));
    }
    Ok(())
}

/// Whether opening a connection failed because the server rejected our credentials.
fn is_refused_handshake(err: &RedisError) -> bool {
    err.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

fn is_wrong_type(err: &CacheError) -> bool {
    let CacheError::Query { source, .. } = err else {
        return false;
    };
    source
        .downcast_ref::<RedisError>()
        .is_some_and(|e| e.code() == Some("WRONGTYPE"))
}

fn share<E: std::error::Error + Send + Sync + 'static>(err: E) -> mtasts_cache::BoxError {
    std::sync::Arc::new(err)
}

fn config_error(reason: &'static str) -> impl Fn(RedisError) -> CacheError {
    move |e| CacheError::Config {
        store: STORE,
        reason: reason.into(),
        source: Some(share(e)),
    }
}
