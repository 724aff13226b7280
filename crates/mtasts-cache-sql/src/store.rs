//! [`SqlCache`]: the [`PolicyCache`] over any SQL database sqlx drives, given its [`Dialect`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use self::sealed::Class;
use async_trait::async_trait;
use mtasts_cache::compat::{decode_entry, policy_json, ts_to_i64};
use mtasts_cache::{CacheEntry, CacheError, PolicyCache, ScanPage, ScanToken, skew_limit};
use sqlx::error::DatabaseError;
use sqlx::pool::PoolOptions;
use sqlx::query::Query;
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
        /// `pol_body` (in `column`) as text.
        fn text(column: &str) -> String;
        /// The `pol_body` value of an insert from parameter `$4` (text).
        const BODY_PARAM: &'static str;
        /// When a stored row's `ts` is unusable, so that any write replaces it.
        const TS_UNUSABLE: &'static str;
        /// Creates the Python daemon's tables where missing, and our side table `mtasts_fetch_meta` where
        /// missing and allowed; moves our old extra columns' data into it. `Ok(false)`: no side table.
        fn create_schema(
            pool: &Pool<Self::Db>,
        ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;
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
    /// Bound on one operation, pool wait included.
    timeout: Duration,
    sql: Arc<Statements>,
}

/// The pool and time limits of a store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) min_connections: u32,
    pub(crate) max_connections: u32,
    /// Waiting for a pooled connection, connecting included.
    pub(crate) acquire: Duration,
    /// One whole operation, waiting included; the drivers' own limits (which say more) are set below it.
    pub(crate) operation: Duration,
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

/// The statements of one store, built once from its dialect and whether the side table is there.
struct Statements {
    get: Arc<str>,
    set: Arc<str>,
    scan_first: Arc<str>,
    scan_after: Arc<str>,
    proactive_get: Arc<str>,
    /// Our side table `mtasts_fetch_meta` is usable.
    fetch_meta: bool,
}

/// Copies what our old extra columns of `sts_policy_cache` (`fetched_at`, `fetched_pol_id`, added by earlier
/// versions) hold into the side table, where it has no row yet.
pub(crate) const MIGRATE_OLD_COLUMNS: &str = "INSERT INTO mtasts_fetch_meta (domain, fetched_at, pol_id) \
     SELECT domain, fetched_at, fetched_pol_id FROM sts_policy_cache \
     WHERE domain IS NOT NULL AND fetched_at IS NOT NULL ON CONFLICT (domain) DO NOTHING";

const REMOVE: &str = "DELETE FROM sts_policy_cache WHERE domain = $1";
const CLEAR: &str = "DELETE FROM sts_policy_cache";
const META_SET: &str = "INSERT INTO mtasts_fetch_meta (domain, fetched_at, pol_id) VALUES ($1, $2, $3) \
     ON CONFLICT (domain) DO UPDATE SET fetched_at = EXCLUDED.fetched_at, pol_id = EXCLUDED.pol_id";
const META_REMOVE: &str = "DELETE FROM mtasts_fetch_meta WHERE domain = $1";
const META_CLEAR: &str = "DELETE FROM mtasts_fetch_meta";
const PROACTIVE_SET: &str = "INSERT INTO proactive_fetch_ts (id, last_fetch_ts) VALUES (1, $1) \
     ON CONFLICT (id) DO UPDATE SET last_fetch_ts = EXCLUDED.last_fetch_ts";

impl Statements {
    fn new<D: Dialect>(fetch_meta: bool) -> Self {
        // Our fetch time only counts for the `pol_id` it was recorded with: a row the Python daemon rewrote with
        // another id was fetched at its `ts`.
        let (fetched_at, from) = if fetch_meta {
            (
                "CASE WHEN m.pol_id = c.pol_id THEN m.fetched_at END",
                "sts_policy_cache c LEFT JOIN mtasts_fetch_meta m ON m.domain = c.domain",
            )
        } else {
            ("CAST(NULL AS BIGINT)", "sts_policy_cache c")
        };
        let select = format!(
            "SELECT c.domain AS domain, {} AS ts, c.pol_id AS pol_id, {} AS pol_body, {fetched_at} AS fetched_at \
             FROM {from}",
            D::int8("c.ts"),
            D::text("c.pol_body")
        );
        let arc = |s: String| Arc::<str>::from(s);
        Self {
            get: arc(format!("{select} WHERE c.domain = $1")),
            // Newer wins atomically (also against the Python daemon); a row with an unusable ts is replaced, and
            // so is one checked later than `$5` (this host's clock plus MAX_CLOCK_SKEW: it counts as now).
            set: arc(format!(
                "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES ($1, $2, $3, {}) \
                 ON CONFLICT (domain) DO UPDATE SET ts = EXCLUDED.ts, pol_id = EXCLUDED.pol_id, \
                 pol_body = EXCLUDED.pol_body WHERE {} OR sts_policy_cache.ts < EXCLUDED.ts \
                 OR sts_policy_cache.ts > $5",
                D::BODY_PARAM,
                D::TS_UNUSABLE
            )),
            // Keyset paging on the unique domain index; the token is the last domain returned.
            scan_first: arc(format!(
                "{select} WHERE c.domain IS NOT NULL ORDER BY c.domain LIMIT $1"
            )),
            scan_after: arc(format!(
                "{select} WHERE c.domain > $1 ORDER BY c.domain LIMIT $2"
            )),
            proactive_get: arc(format!(
                "SELECT {} FROM proactive_fetch_ts WHERE id = 1",
                D::int8("last_fetch_ts")
            )),
            fetch_meta,
        }
    }
}

impl<D: Dialect> SqlCache<D> {
    /// A store over a lazily connecting pool; creates the schema within the operation limit.
    pub(crate) async fn start(
        connect: <<D::Db as Database>::Connection as Connection>::Options,
        limits: Limits,
    ) -> Result<Self, CacheError> {
        if limits.max_connections == 0 {
            return Err(config::<D>("the pool size must be at least 1", None));
        }
        let pool = PoolOptions::<D::Db>::new()
            .max_connections(limits.max_connections)
            .min_connections(limits.min_connections.min(limits.max_connections))
            .acquire_timeout(limits.acquire)
            .test_before_acquire(true)
            .connect_lazy_with(connect);
        let timeout = limits.operation;
        let mut cache = Self {
            pool,
            timeout,
            sql: Arc::new(Statements::new::<D>(false)),
        };
        let fetch_meta = cache.run(D::create_schema(&cache.pool)).await?;
        if !fetch_meta {
            tracing::warn!(
                store = D::STORE,
                "cannot create the table mtasts_fetch_meta (no CREATE privilege): running without it, so \
                 policies read from the store count as fetched when last checked"
            );
        }
        cache.sql = Arc::new(Statements::new::<D>(fetch_meta));
        tracing::debug!(store = D::STORE, ?limits, fetch_meta, "cache opened");
        Ok(cache)
    }

    /// Runs a driver future bounded by the operation limit (plus slack so that the driver's own busy, acquire
    /// and statement timeouts, which say more, win), mapping its errors.
    async fn run<T, F>(&self, fut: F) -> Result<T, CacheError>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let limit = self.timeout + Duration::from_millis(100);
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

/// Runs `meta` (our side table's rows) and `main` (the entries) in one transaction; `main`'s result.
async fn delete<DB: Database>(
    pool: &Pool<DB>,
    meta: Option<Query<'_, DB, DB::Arguments>>,
    main: Query<'_, DB, DB::Arguments>,
) -> Result<DB::QueryResult, sqlx::Error>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
{
    let mut tx = pool.begin().await?;
    if let Some(meta) = meta {
        meta.execute(&mut *tx).await?;
    }
    let done = main.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(done)
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
        let policy_id = entry.policy_id.as_str();
        let write = async {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(sql(&self.sql.set))
                .bind(domain)
                .bind(ts_to_i64(entry.checked_at))
                .bind(policy_id)
                .bind(body.as_str())
                .bind(ts_to_i64(skew_limit()))
                .execute(&mut *tx)
                .await?;
            let written = D::rows_affected(&done) > 0;
            // Under the same row lock as the entry: our fetch time can only belong to the entry that won.
            if written && self.sql.fetch_meta {
                sqlx::query(META_SET)
                    .bind(domain)
                    .bind(ts_to_i64(entry.fetched_at))
                    .bind(policy_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(written)
        };
        self.run(write).await
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
        let meta = self
            .sql
            .fetch_meta
            .then(|| sqlx::query(META_REMOVE).bind(domain));
        let main = sqlx::query(REMOVE).bind(domain);
        let done = self.run(delete(&self.pool, meta, main)).await?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        let meta = self.sql.fetch_meta.then(|| sqlx::query(META_CLEAR));
        let done = self
            .run(delete(&self.pool, meta, sqlx::query(CLEAR)))
            .await?;
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
