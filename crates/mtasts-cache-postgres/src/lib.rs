//! PostgreSQL store for the MTA-STS policy cache, compatible with `postfix-mta-sts-resolver`'s tables.
//!
//! [`PostgresCache`] implements [`PolicyCache`] over a PostgreSQL database, connected with
//! [`PostgresCache::connect`] from [`PostgresOptions`] (`dsn`, `timeout`, `max_connections`). Several daemons
//! (Rust or Python) can share the tables: writes are a single `INSERT … ON CONFLICT (domain) DO UPDATE … WHERE
//! sts_policy_cache.ts < EXCLUDED.ts`, so the newest entry always wins.
//!
//! # Layout (shared with the Python daemon)
//!
//! ```text
//! proactive_fetch_ts(id serial primary key, last_fetch_ts integer)                        -- one row, id = 1
//! sts_policy_cache(id serial primary key, domain text, ts integer, pol_id text, pol_body jsonb)
//!     unique index sts_policy_domain (domain), index sts_policy_domain_ts (domain, ts)
//! ```
//!
//! `ts` is [`CacheEntry::checked_at`](mtasts_cache::CacheEntry::checked_at), `pol_body` the policy as JSON (see
//! [`mtasts_cache::compat`]). Tables and indexes are created if missing. Two nullable columns the Python daemon
//! never reads are added if missing: `fetched_at` (the HTTPS fetch time) and `fetched_pol_id` (the `pol_id` it
//! belongs to); a row whose `pol_id` differs from `fetched_pol_id` was rewritten by the Python daemon, and its
//! `fetched_at` is taken to be `ts`. Like the Python daemon's, `ts` is a 32-bit `integer` (good until 2038).
//!
//! # Crate features
//!
//! - `tls` (off by default): TLS to the server with rustls (ring) and the system's trust roots, for DSNs with
//!   `sslmode=require`, `verify-ca` or `verify-full`. Without it, use `sslmode=disable` or `prefer`.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use mtasts_cache::PolicyCache;
//! use mtasts_cache_postgres::{PostgresCache, PostgresOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mtasts_cache::CacheError> {
//! let options = PostgresOptions::new("postgres://mta-sts@db.example/mta-sts").timeout(Duration::from_secs(5));
//! let cache = PostgresCache::connect(options).await?;
//! let entry = cache.get("example.com").await?;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mtasts_cache::compat::{decode_entry, policy_json, ts_to_i64};
use mtasts_cache::{CacheEntry, CacheError, PolicyCache, ScanPage, ScanToken};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

const STORE: &str = "postgres";

/// Options of [`PostgresCache::connect`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Connection URL, `postgres://user:password@host:port/database?options` (as libpq URLs; `sslmode` needs
    /// the `tls` feature for anything but `disable` and `prefer`).
    pub dsn: String,
    /// Bound on connecting and on every operation. Default: 5 s.
    pub timeout: Duration,
    /// Connection-pool size. Default: 10.
    pub max_connections: u32,
}

impl PostgresOptions {
    /// Options for `dsn` with the defaults.
    pub fn new(dsn: impl Into<String>) -> Self {
        Self {
            dsn: dsn.into(),
            timeout: Duration::from_secs(5),
            max_connections: 10,
        }
    }

    /// Sets the operation bound.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connection-pool size.
    #[must_use]
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }
}

/// A [`PolicyCache`] in PostgreSQL; see the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct PostgresCache {
    pool: PgPool,
    timeout: Duration,
}

/// Serializes schema setup between daemons starting together (an arbitrary constant lock key).
const SCHEMA_LOCK: i64 = 0x6d74_6173_7473; // "mtasts"

const SCHEMA: [&str; 6] = [
    // Exactly the Python daemon's tables and indexes.
    "CREATE TABLE IF NOT EXISTS proactive_fetch_ts (id serial primary key, last_fetch_ts integer)",
    "CREATE TABLE IF NOT EXISTS sts_policy_cache \
     (id serial primary key, domain text, ts integer, pol_id text, pol_body jsonb)",
    "CREATE UNIQUE INDEX IF NOT EXISTS sts_policy_domain ON sts_policy_cache (domain)",
    "CREATE INDEX IF NOT EXISTS sts_policy_domain_ts ON sts_policy_cache (domain, ts)",
    // Ours; the Python daemon names its columns and never sees these.
    "ALTER TABLE sts_policy_cache ADD COLUMN IF NOT EXISTS fetched_at bigint",
    "ALTER TABLE sts_policy_cache ADD COLUMN IF NOT EXISTS fetched_pol_id text",
];

/// The columns every entry query selects (`fetched_at` only counts for the `pol_id` it was recorded with).
macro_rules! select_columns {
    () => {
        "domain, ts::bigint AS ts, pol_id, pol_body::text AS pol_body, \
         CASE WHEN fetched_pol_id = pol_id THEN fetched_at END AS fetched_at"
    };
}

impl PostgresCache {
    /// Connects and creates the tables if missing.
    ///
    /// # Errors
    ///
    /// [`CacheError::Config`] for a malformed DSN, zero `max_connections`, an unknown database or a rejected
    /// login; [`CacheError::Unavailable`] / [`CacheError::Timeout`] if the server cannot be reached within
    /// `timeout`; [`CacheError::Query`] if the tables cannot be created.
    pub async fn connect(options: PostgresOptions) -> Result<Self, CacheError> {
        if options.max_connections == 0 {
            return Err(config("max_connections must be at least 1", None));
        }
        let connect = PgConnectOptions::from_str(&options.dsn)
            .map_err(|e| config("invalid dsn", Some(Arc::new(e))))?;
        let timeout = options.timeout;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(0)
            .acquire_timeout(timeout)
            .test_before_acquire(true)
            .connect_lazy_with(connect);
        let cache = Self { pool, timeout };
        cache.run(cache.create_schema()).await?;
        tracing::debug!(
            max_connections = options.max_connections,
            "postgres cache connected"
        );
        Ok(cache)
    }

    async fn create_schema(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// Runs a driver future bounded by the timeout (plus slack so that the pool's own acquire timeout, which
    /// says more, wins), mapping errors.
    async fn run<T, F>(&self, fut: F) -> Result<T, CacheError>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let limit = self.timeout + self.timeout / 2 + Duration::from_millis(100);
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map_err(|e| map_err(e, self.timeout)),
            Err(_) => Err(CacheError::Timeout {
                store: STORE,
                after: self.timeout,
            }),
        }
    }
}

fn config(reason: &str, source: Option<mtasts_cache::BoxError>) -> CacheError {
    CacheError::Config {
        store: STORE,
        reason: reason.to_owned(),
        source,
    }
}

fn map_err(e: sqlx::Error, timeout: Duration) -> CacheError {
    match e {
        sqlx::Error::PoolTimedOut => CacheError::Timeout {
            store: STORE,
            after: timeout,
        },
        sqlx::Error::PoolClosed => CacheError::Closed { store: STORE },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => CacheError::unavailable(STORE, e),
        sqlx::Error::Configuration(_) => config("invalid connection options", Some(Arc::new(e))),
        sqlx::Error::Database(ref db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                // query_canceled (statement_timeout).
                "57014" => CacheError::Timeout {
                    store: STORE,
                    after: timeout,
                },
                // Class 08 connection exceptions; admin_shutdown (pg_terminate_backend), crash_shutdown,
                // cannot_connect_now; too_many_connections.
                c if c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "53300") => {
                    CacheError::unavailable(STORE, e)
                }
                // invalid_catalog_name (no such database); class 28 authorization failures.
                c if c == "3D000" || c.starts_with("28") => {
                    config("database or login rejected", Some(Arc::new(e)))
                }
                _ => CacheError::query(STORE, e),
            }
        }
        _ => CacheError::query(STORE, e),
    }
}

/// Decodes one row of `select_columns!()`; every decoding problem is a [`CacheError::Corrupt`].
fn decode_row(domain: &str, row: &PgRow) -> Result<CacheEntry, CacheError> {
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

#[async_trait]
impl PolicyCache for PostgresCache {
    async fn get(&self, domain: &str) -> Result<Option<CacheEntry>, CacheError> {
        let sql = concat!(
            "SELECT ",
            select_columns!(),
            " FROM sts_policy_cache WHERE domain = $1"
        );
        let row = self
            .run(sqlx::query(sql).bind(domain).fetch_optional(&self.pool))
            .await?;
        row.map(|r| decode_row(domain, &r)).transpose()
    }

    async fn set(&self, domain: &str, entry: &CacheEntry) -> Result<bool, CacheError> {
        // Newer wins atomically (also against the Python daemon); a row without ts (corrupt) is replaced.
        let sql = "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body, fetched_at, fetched_pol_id) \
                   VALUES ($1, $2, $3, $4::jsonb, $5, $3) \
                   ON CONFLICT (domain) DO UPDATE SET ts = EXCLUDED.ts, pol_id = EXCLUDED.pol_id, \
                   pol_body = EXCLUDED.pol_body, fetched_at = EXCLUDED.fetched_at, \
                   fetched_pol_id = EXCLUDED.fetched_pol_id \
                   WHERE sts_policy_cache.ts IS NULL OR sts_policy_cache.ts < EXCLUDED.ts";
        let done = self
            .run(
                sqlx::query(sql)
                    .bind(domain)
                    .bind(ts_to_i64(entry.checked_at))
                    .bind(entry.policy_id.as_str())
                    .bind(policy_json(&entry.policy))
                    .bind(ts_to_i64(entry.fetched_at))
                    .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn scan(
        &self,
        token: Option<&ScanToken>,
        page_size: usize,
    ) -> Result<ScanPage, CacheError> {
        // Keyset paging on the unique domain index; the token is the last domain returned.
        let limit = i64::try_from(page_size.max(1)).unwrap_or(i64::MAX);
        let rows = match token {
            None => {
                let sql = concat!(
                    "SELECT ",
                    select_columns!(),
                    " FROM sts_policy_cache WHERE domain IS NOT NULL ORDER BY domain LIMIT $1"
                );
                self.run(sqlx::query(sql).bind(limit).fetch_all(&self.pool))
                    .await?
            }
            Some(t) => {
                let sql = concat!(
                    "SELECT ",
                    select_columns!(),
                    " FROM sts_policy_cache WHERE domain > $1 ORDER BY domain LIMIT $2"
                );
                self.run(
                    sqlx::query(sql)
                        .bind(t.as_str())
                        .bind(limit)
                        .fetch_all(&self.pool),
                )
                .await?
            }
        };
        let rows_read = rows.len();
        let decoded = rows.iter().filter_map(|row| match row.try_get::<String, _>("domain") {
            Ok(domain) => {
                let entry = decode_row(&domain, row);
                Some((domain, entry))
            }
            Err(e) => {
                tracing::warn!(error = %e, "postgres cache: skipping row with an unreadable domain");
                None
            }
        });
        Ok(ScanPage::from_keyset(decoded, rows_read, page_size))
    }

    async fn remove(&self, domain: &str) -> Result<bool, CacheError> {
        let sql = "DELETE FROM sts_policy_cache WHERE domain = $1";
        let done = self
            .run(sqlx::query(sql).bind(domain).execute(&self.pool))
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        let done = self
            .run(sqlx::query("DELETE FROM sts_policy_cache").execute(&self.pool))
            .await?;
        Ok(done.rows_affected())
    }

    async fn proactive_fetch_ts(&self) -> Result<Option<u64>, CacheError> {
        let sql = "SELECT last_fetch_ts::bigint FROM proactive_fetch_ts WHERE id = 1";
        let row = self
            .run(sqlx::query(sql).fetch_optional(&self.pool))
            .await?;
        let Some(row) = row else { return Ok(None) };
        let bad = |reason: String| CacheError::corrupt("proactive_fetch_ts", reason);
        let ts: Option<i64> = row
            .try_get(0)
            .map_err(|e| bad(format!("bad last_fetch_ts: {e}")))?;
        ts.map(|t| u64::try_from(t).map_err(|_| bad(format!("negative last_fetch_ts {t}"))))
            .transpose()
    }

    async fn set_proactive_fetch_ts(&self, ts: u64) -> Result<(), CacheError> {
        let sql = "INSERT INTO proactive_fetch_ts (last_fetch_ts, id) VALUES ($1, 1) \
                   ON CONFLICT (id) DO UPDATE SET last_fetch_ts = EXCLUDED.last_fetch_ts";
        self.run(sqlx::query(sql).bind(ts_to_i64(ts)).execute(&self.pool))
            .await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
