//! [`SqlCache`]: the [`PolicyCache`] over any SQL database sqlx drives, given its [`Dialect`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use self::sealed::Class;
use async_trait::async_trait;
use mtasts_cache::compat::{decode_entry, policy_json, ts_to_i64};
use mtasts_cache::{CacheEntry, CacheError, PolicyCache, ScanPage, ScanToken};
use sqlx::error::DatabaseError;
use sqlx::pool::PoolOptions;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments,
    Pool, Row, Type,
};

/// A database the SQL store runs on: [`Sqlite`](crate::Sqlite) or [`Postgres`](crate::Postgres).
///
/// Sealed: the store's SQL and schema are only known for the databases this crate ships.
pub trait Dialect: sealed::Dialect {}

/// The parts of a store that differ between databases: a little SQL text, the schema, error codes.
pub(crate) mod sealed {
    use std::future::Future;

    use sqlx::{Database, Pool};

    pub trait Dialect: Send + Sync + Sized + 'static {
        /// The sqlx driver.
        type Db: Database;
        /// The store name in errors and logs.
        const STORE: &'static str;
        /// `column` as a 64-bit integer expression (the Python tables use 32-bit `integer` columns).
        fn int8(column: &str) -> String;
        /// `pol_body` as text.
        const BODY: &'static str;
        /// The `pol_body` value of an insert from parameter `$4` (text).
        const BODY_PARAM: &'static str;
        /// When a stored row's `ts` is unusable, so that any write replaces it.
        const TS_UNUSABLE: &'static str;
        /// Creates the Python daemon's tables and ours where missing.
        fn create_schema(
            pool: &Pool<Self::Db>,
        ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
        /// Rows an `INSERT`/`DELETE` touched.
        fn rows_affected(done: &<Self::Db as Database>::QueryResult) -> u64;
        /// What a database error code (SQLSTATE, or SQLite's result code) means for the caller.
        fn classify(code: &str) -> Class;
    }

    /// What a database error means, whatever the database calls it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Class {
        /// A lock or statement timeout ran out.
        Timeout,
        /// The server or file cannot be used for now.
        Unavailable,
        /// The options point at something that will never work (with why).
        Config(&'static str),
        /// Any other failed statement.
        Query,
    }
}

/// A [`PolicyCache`] in a SQL database, in the Python daemon's tables; see the [crate docs](crate).
///
/// Use it as [`SqliteCache`](crate::SqliteCache) or [`PostgresCache`](crate::PostgresCache).
pub struct SqlCache<D: Dialect> {
    pool: Pool<D::Db>,
    timeout: Duration,
    sql: Arc<Statements>,
}

impl<D: Dialect> Clone for SqlCache<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            timeout: self.timeout,
            sql: Arc::clone(&self.sql),
        }
    }
}

impl<D: Dialect> fmt::Debug for SqlCache<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlCache")
            .field("store", &D::STORE)
            .field("pool_size", &self.pool.size())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The statements of one store, built once from its dialect.
struct Statements {
    get: Arc<str>,
    set: Arc<str>,
    scan_first: Arc<str>,
    scan_after: Arc<str>,
    proactive_get: Arc<str>,
}

const REMOVE: &str = "DELETE FROM sts_policy_cache WHERE domain = $1";
const CLEAR: &str = "DELETE FROM sts_policy_cache";
const PROACTIVE_SET: &str = "INSERT INTO proactive_fetch_ts (id, last_fetch_ts) VALUES (1, $1) \
     ON CONFLICT (id) DO UPDATE SET last_fetch_ts = EXCLUDED.last_fetch_ts";

impl Statements {
    fn new<D: Dialect>() -> Self {
        // `fetched_at` only counts for the `pol_id` it was recorded with.
        let select = format!(
            "SELECT domain, {} AS ts, pol_id, {} AS pol_body, \
             CASE WHEN fetched_pol_id = pol_id THEN fetched_at END AS fetched_at FROM sts_policy_cache",
            D::int8("ts"),
            D::BODY
        );
        let arc = |s: String| Arc::<str>::from(s);
        Self {
            get: arc(format!("{select} WHERE domain = $1")),
            // Newer wins atomically (also against the Python daemon); a row with an unusable ts is replaced.
            set: arc(format!(
                "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body, fetched_at, fetched_pol_id) \
                 VALUES ($1, $2, $3, {}, $5, $3) \
                 ON CONFLICT (domain) DO UPDATE SET ts = EXCLUDED.ts, pol_id = EXCLUDED.pol_id, \
                 pol_body = EXCLUDED.pol_body, fetched_at = EXCLUDED.fetched_at, \
                 fetched_pol_id = EXCLUDED.fetched_pol_id \
                 WHERE {} OR sts_policy_cache.ts < EXCLUDED.ts",
                D::BODY_PARAM,
                D::TS_UNUSABLE
            )),
            // Keyset paging on the unique domain index; the token is the last domain returned.
            scan_first: arc(format!(
                "{select} WHERE domain IS NOT NULL ORDER BY domain LIMIT $1"
            )),
            scan_after: arc(format!(
                "{select} WHERE domain > $1 ORDER BY domain LIMIT $2"
            )),
            proactive_get: arc(format!(
                "SELECT {} FROM proactive_fetch_ts WHERE id = 1",
                D::int8("last_fetch_ts")
            )),
        }
    }
}

impl<D: Dialect> SqlCache<D> {
    /// A store over a lazily connecting pool of `max_connections`; creates the schema within `timeout`.
    pub(crate) async fn start(
        connect: <<D::Db as Database>::Connection as Connection>::Options,
        max_connections: u32,
        timeout: Duration,
    ) -> Result<Self, CacheError> {
        if max_connections == 0 {
            return Err(config::<D>("the pool size must be at least 1", None));
        }
        let pool = PoolOptions::<D::Db>::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(timeout)
            .test_before_acquire(true)
            .connect_lazy_with(connect);
        let cache = Self {
            pool,
            timeout,
            sql: Arc::new(Statements::new::<D>()),
        };
        cache.run(D::create_schema(&cache.pool)).await?;
        tracing::debug!(store = D::STORE, max_connections, "cache opened");
        Ok(cache)
    }

    /// Runs a driver future bounded by the timeout (plus slack so that the driver's own busy and acquire
    /// timeouts, which say more, win), mapping its errors.
    async fn run<T, F>(&self, fut: F) -> Result<T, CacheError>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let limit = self.timeout + self.timeout / 2 + Duration::from_millis(100);
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map_err(|e| map_err::<D>(e, self.timeout)),
            Err(_) => Err(CacheError::Timeout {
                store: D::STORE,
                after: self.timeout,
            }),
        }
    }
}

/// [`CacheError::Config`] of store `D`.
pub(crate) fn config<D: Dialect>(
    reason: &str,
    source: Option<mtasts_cache::BoxError>,
) -> CacheError {
    CacheError::Config {
        store: D::STORE,
        reason: reason.to_owned(),
        source,
    }
}

fn map_err<D: Dialect>(e: sqlx::Error, timeout: Duration) -> CacheError {
    let timed_out = || CacheError::Timeout {
        store: D::STORE,
        after: timeout,
    };
    let class = match &e {
        sqlx::Error::PoolTimedOut => return timed_out(),
        sqlx::Error::PoolClosed => return CacheError::Closed { store: D::STORE },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Class::Unavailable,
        sqlx::Error::Configuration(_) => Class::Config("invalid connection options"),
        sqlx::Error::Database(db) => D::classify(&code(db.as_ref())),
        _ => Class::Query,
    };
    match class {
        Class::Timeout => timed_out(),
        Class::Unavailable => CacheError::unavailable(D::STORE, e),
        Class::Config(reason) => config::<D>(reason, Some(Arc::new(e))),
        Class::Query => CacheError::query(D::STORE, e),
    }
}

fn code(db: &dyn DatabaseError) -> String {
    db.code().map(|c| c.into_owned()).unwrap_or_default()
}

/// Decodes one row of the entry `SELECT`; every decoding problem is a [`CacheError::Corrupt`].
fn decode_row<R: Row>(domain: &str, row: &R) -> Result<CacheEntry, CacheError>
where
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'a> &'a str: ColumnIndex<R>,
{
    let col =
        |name: &str, e: sqlx::Error| CacheError::corrupt(domain, format!("bad {name} column: {e}"));
    let ts: Option<i64> = row.try_get("ts").map_err(|e| col("ts", e))?;
    let pol_id: Option<String> = row.try_get("pol_id").map_err(|e| col("pol_id", e))?;
    let pol_body: Option<String> = row.try_get("pol_body").map_err(|e| col("pol_body", e))?;
    let fetched_at: Option<i64> = row
        .try_get("fetched_at")
        .map_err(|e| col("fetched_at", e))?;
    decode_entry(
        domain,
        ts,
        pol_id.as_deref(),
        pol_body.as_deref(),
        fetched_at,
    )
}

fn sql(statement: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    AssertSqlSafe(Arc::clone(statement))
}

#[async_trait]
impl<D: Dialect> PolicyCache for SqlCache<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db> + ColumnIndex<<D::Db as Database>::Row>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'r> String: Decode<'r, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    async fn get(&self, domain: &str) -> Result<Option<CacheEntry>, CacheError> {
        let query = sqlx::query(sql(&self.sql.get)).bind(domain);
        let row = self.run(query.fetch_optional(&self.pool)).await?;
        row.map(|r| decode_row(domain, &r)).transpose()
    }

    async fn set(&self, domain: &str, entry: &CacheEntry) -> Result<bool, CacheError> {
        let body = policy_json(&entry.policy);
        let query = sqlx::query(sql(&self.sql.set))
            .bind(domain)
            .bind(ts_to_i64(entry.checked_at))
            .bind(entry.policy_id.as_str())
            .bind(body.as_str())
            .bind(ts_to_i64(entry.fetched_at));
        let done = self.run(query.execute(&self.pool)).await?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn scan(
        &self,
        token: Option<&ScanToken>,
        page_size: usize,
    ) -> Result<ScanPage, CacheError> {
        let limit = i64::try_from(page_size.max(1)).unwrap_or(i64::MAX);
        let query = match token {
            None => sqlx::query(sql(&self.sql.scan_first)).bind(limit),
            Some(t) => sqlx::query(sql(&self.sql.scan_after))
                .bind(t.as_str())
                .bind(limit),
        };
        let rows = self.run(query.fetch_all(&self.pool)).await?;
        let decoded = rows
            .iter()
            .filter_map(|row| match row.try_get::<String, _>("domain") {
                Ok(domain) => {
                    let entry = decode_row(&domain, row);
                    Some((domain, entry))
                }
                // A domain that is not text cannot be addressed by get/set/remove either; nothing to report
                // it under.
                Err(e) => {
                    tracing::warn!(store = D::STORE, error = %e, "skipping a cache row whose domain is not text");
                    None
                }
            });
        Ok(ScanPage::from_keyset(decoded, rows.len(), page_size))
    }

    async fn remove(&self, domain: &str) -> Result<bool, CacheError> {
        let done = self
            .run(sqlx::query(REMOVE).bind(domain).execute(&self.pool))
            .await?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        let done = self.run(sqlx::query(CLEAR).execute(&self.pool)).await?;
        Ok(D::rows_affected(&done))
    }

    async fn proactive_fetch_ts(&self) -> Result<Option<u64>, CacheError> {
        let query = sqlx::query(sql(&self.sql.proactive_get));
        let Some(row) = self.run(query.fetch_optional(&self.pool)).await? else {
            return Ok(None);
        };
        let bad = |reason: String| CacheError::corrupt("proactive_fetch_ts", reason);
        let ts: Option<i64> = row
            .try_get(0)
            .map_err(|e| bad(format!("bad last_fetch_ts: {e}")))?;
        ts.map(|t| u64::try_from(t).map_err(|_| bad(format!("negative last_fetch_ts {t}"))))
            .transpose()
    }

    async fn set_proactive_fetch_ts(&self, ts: u64) -> Result<(), CacheError> {
        let query = sqlx::query(PROACTIVE_SET).bind(ts_to_i64(ts));
        self.run(query.execute(&self.pool)).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
