//! SQLite store for the MTA-STS policy cache, compatible with `postfix-mta-sts-resolver`'s cache file.
//!
//! [`SqliteCache`] implements [`PolicyCache`] over one SQLite file, opened with [`SqliteCache::open`] from
//! [`SqliteOptions`] (`filename`, `threads`, `timeout` — the Python daemon's `cache.options`). The file is created
//! if missing and switched to WAL; `threads` is the connection-pool size and `timeout` both SQLite's busy timeout
//! and the bound on every operation.
//!
//! # Layout (shared with the Python daemon)
//!
//! ```text
//! sts_policy_cache(domain text, ts integer, pol_id text, pol_body text)  -- unique index on domain
//! proactive_fetch_ts(id integer primary key, last_fetch_ts integer)      -- one row, id = 1
//! ```
//!
//! `ts` is [`CacheEntry::checked_at`](mtasts_cache::CacheEntry::checked_at) and `pol_body` the policy as JSON
//! (see [`mtasts_cache::compat`]). Two nullable columns the Python daemon never reads are added if missing:
//! `fetched_at` (the HTTPS fetch time) and `fetched_pol_id` (the `pol_id` it belongs to). A row whose `pol_id`
//! differs from `fetched_pol_id` was rewritten by the Python daemon, and its `fetched_at` is taken to be `ts`.
//!
//! # Example
//!
//! ```
//! use mtasts_cache::{CacheEntry, PolicyCache};
//! use mtasts_cache_sqlite::{SqliteCache, SqliteOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let cache = SqliteCache::open(SqliteOptions::new(dir.path().join("cache.db")).threads(2)).await?;
//! let policy = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\n".parse()?;
//! cache.set("example.com", &CacheEntry::new(1_700_000_000, "abc".parse()?, policy)).await?;
//! assert!(cache.get("example.com").await?.is_some());
//! cache.close().await;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use mtasts_cache::compat::{decode_entry, policy_json, ts_to_i64};
use mtasts_cache::{CacheEntry, CacheError, PolicyCache, ScanPage, ScanToken};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

const STORE: &str = "sqlite";

/// Options of [`SqliteCache::open`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// The database file; created if missing.
    pub filename: PathBuf,
    /// Connection-pool size (each SQLite connection has its own worker thread). Default: the number of CPUs.
    pub threads: u32,
    /// SQLite busy timeout and the bound on every operation. Default: 5 s.
    pub timeout: Duration,
}

impl SqliteOptions {
    /// Options for `filename` with the defaults.
    pub fn new(filename: impl Into<PathBuf>) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self {
            filename: filename.into(),
            threads: u32::try_from(cpus).unwrap_or(1),
            timeout: Duration::from_secs(5),
        }
    }

    /// Sets the connection-pool size.
    #[must_use]
    pub fn threads(mut self, threads: u32) -> Self {
        self.threads = threads;
        self
    }

    /// Sets the busy timeout and operation bound.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A [`PolicyCache`] in a SQLite file; see the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct SqliteCache {
    pool: SqlitePool,
    timeout: Duration,
}

const SCHEMA: [&str; 4] = [
    // Exactly the Python daemon's tables and indexes.
    "CREATE TABLE IF NOT EXISTS proactive_fetch_ts (id integer primary key, last_fetch_ts integer)",
    "CREATE TABLE IF NOT EXISTS sts_policy_cache (domain text, ts integer, pol_id text, pol_body text)",
    "CREATE UNIQUE INDEX IF NOT EXISTS sts_policy_domain ON sts_policy_cache (domain)",
    "CREATE INDEX IF NOT EXISTS sts_policy_domain_ts ON sts_policy_cache (domain, ts)",
];

/// Our extra columns and the statements adding them when missing.
const EXTRA_COLUMNS: [(&str, &str); 2] = [
    (
        "fetched_at",
        "ALTER TABLE sts_policy_cache ADD COLUMN fetched_at integer",
    ),
    (
        "fetched_pol_id",
        "ALTER TABLE sts_policy_cache ADD COLUMN fetched_pol_id text",
    ),
];

/// The columns every entry query selects (`fetched_at` only counts for the `pol_id` it was recorded with).
macro_rules! select_columns {
    () => {
        "domain, ts, pol_id, pol_body, CASE WHEN fetched_pol_id = pol_id THEN fetched_at END AS fetched_at"
    };
}

impl SqliteCache {
    /// Opens (creating if missing) the database file, switches it to WAL and creates the tables if missing.
    ///
    /// # Errors
    ///
    /// [`CacheError::Config`] for zero `threads`; [`CacheError::Unavailable`] or [`CacheError::Query`] if the file
    /// cannot be opened or the schema cannot be created; [`CacheError::Timeout`] after `timeout`.
    pub async fn open(options: SqliteOptions) -> Result<Self, CacheError> {
        if options.threads == 0 {
            return Err(CacheError::Config {
                store: STORE,
                reason: "threads must be at least 1".into(),
                source: None,
            });
        }
        let connect = SqliteConnectOptions::new()
            .filename(&options.filename)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.timeout);
        let timeout = options.timeout;
        let pool = bounded(timeout, async {
            SqlitePoolOptions::new()
                .max_connections(options.threads)
                .min_connections(0)
                .acquire_timeout(timeout)
                .connect_with(connect)
                .await
                .map_err(|e| map_err(e, timeout))
        })
        .await?;
        let cache = Self { pool, timeout };
        bounded(timeout, cache.create_schema()).await?;
        tracing::debug!(file = %options.filename.display(), threads = options.threads, "sqlite cache opened");
        Ok(cache)
    }

    async fn create_schema(&self) -> Result<(), CacheError> {
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        }
        for (column, alter) in EXTRA_COLUMNS {
            if self.has_column(column).await? {
                continue;
            }
            if let Err(e) = sqlx::query(alter).execute(&self.pool).await {
                // Another process may have added it meanwhile.
                if !self.has_column(column).await? {
                    return Err(self.err(e));
                }
            }
        }
        Ok(())
    }

    async fn has_column(&self, column: &str) -> Result<bool, CacheError> {
        let rows = sqlx::query("SELECT name FROM pragma_table_info('sts_policy_cache')")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .any(|r| r.try_get::<String, _>(0).is_ok_and(|n| n == column)))
    }

    fn err(&self, e: sqlx::Error) -> CacheError {
        map_err(e, self.timeout)
    }

    async fn run<T, F>(&self, fut: F) -> Result<T, CacheError>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let timeout = self.timeout;
        bounded(timeout, async {
            fut.await.map_err(|e| map_err(e, timeout))
        })
        .await
    }
}

/// Bounds `fut` by `timeout` (plus slack so that the driver's own busy/acquire timeouts, which say more, win).
async fn bounded<T, F>(timeout: Duration, fut: F) -> Result<T, CacheError>
where
    F: Future<Output = Result<T, CacheError>>,
{
    match tokio::time::timeout(timeout + timeout / 2 + Duration::from_millis(100), fut).await {
        Ok(r) => r,
        Err(_) => Err(CacheError::Timeout {
            store: STORE,
            after: timeout,
        }),
    }
}

fn map_err(e: sqlx::Error, timeout: Duration) -> CacheError {
    match e {
        sqlx::Error::PoolTimedOut => CacheError::Timeout {
            store: STORE,
            after: timeout,
        },
        sqlx::Error::PoolClosed => CacheError::Closed { store: STORE },
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => CacheError::unavailable(STORE, e),
        sqlx::Error::Configuration(_) => CacheError::Config {
            store: STORE,
            reason: e.to_string(),
            source: Some(std::sync::Arc::new(e)),
        },
        sqlx::Error::Database(ref db) => {
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), including extended codes: the busy timeout ran out.
            let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
            match code & 0xff {
                5 | 6 => CacheError::Timeout {
                    store: STORE,
                    after: timeout,
                },
                // SQLITE_CANTOPEN (14), SQLITE_IOERR (10), SQLITE_FULL (13), SQLITE_READONLY (8).
                8 | 10 | 13 | 14 => CacheError::unavailable(STORE, e),
                // SQLITE_NOTADB (26): the file is something else.
                26 => CacheError::Config {
                    store: STORE,
                    reason: "file is not a SQLite database".into(),
                    source: Some(std::sync::Arc::new(e)),
                },
                _ => CacheError::query(STORE, e),
            }
        }
        _ => CacheError::query(STORE, e),
    }
}

/// Decodes one row of `select_columns!()`; every decoding problem is a [`CacheError::Corrupt`].
fn decode_row(domain: &str, row: &SqliteRow) -> Result<CacheEntry, CacheError> {
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
impl PolicyCache for SqliteCache {
    async fn get(&self, domain: &str) -> Result<Option<CacheEntry>, CacheError> {
        let sql = concat!(
            "SELECT ",
            select_columns!(),
            " FROM sts_policy_cache WHERE domain = ?1"
        );
        let row = self
            .run(sqlx::query(sql).bind(domain).fetch_optional(&self.pool))
            .await?;
        row.map(|r| decode_row(domain, &r)).transpose()
    }

    async fn set(&self, domain: &str, entry: &CacheEntry) -> Result<bool, CacheError> {
        // Newer wins atomically; a row whose ts is not an integer (corrupt) is replaced.
        let sql = "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body, fetched_at, fetched_pol_id) \
                   VALUES (?1, ?2, ?3, ?4, ?5, ?3) \
                   ON CONFLICT (domain) DO UPDATE SET ts = excluded.ts, pol_id = excluded.pol_id, \
                   pol_body = excluded.pol_body, fetched_at = excluded.fetched_at, \
                   fetched_pol_id = excluded.fetched_pol_id \
                   WHERE typeof(sts_policy_cache.ts) != 'integer' OR sts_policy_cache.ts < excluded.ts";
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
                    " FROM sts_policy_cache WHERE domain IS NOT NULL ORDER BY domain LIMIT ?1"
                );
                self.run(sqlx::query(sql).bind(limit).fetch_all(&self.pool))
                    .await?
            }
            Some(t) => {
                let sql = concat!(
                    "SELECT ",
                    select_columns!(),
                    " FROM sts_policy_cache WHERE domain > ?1 ORDER BY domain LIMIT ?2"
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
        let decoded = rows
            .iter()
            .filter_map(|row| match row.try_get::<String, _>("domain") {
                Ok(domain) => {
                    let entry = decode_row(&domain, row);
                    Some((domain, entry))
                }
                // A non-text domain cannot be addressed by get/set/remove either; nothing to report it under.
                Err(e) => {
                    tracing::warn!(error = %e, "sqlite cache: skipping row with a non-text domain");
                    None
                }
            });
        Ok(ScanPage::from_keyset(decoded, rows_read, page_size))
    }

    async fn remove(&self, domain: &str) -> Result<bool, CacheError> {
        let done = self
            .run(
                sqlx::query("DELETE FROM sts_policy_cache WHERE domain = ?1")
                    .bind(domain)
                    .execute(&self.pool),
            )
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
        let row = self
            .run(
                sqlx::query("SELECT last_fetch_ts FROM proactive_fetch_ts WHERE id = 1")
                    .fetch_optional(&self.pool),
            )
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
        let sql = "INSERT INTO proactive_fetch_ts (id, last_fetch_ts) VALUES (1, ?1) \
                   ON CONFLICT (id) DO UPDATE SET last_fetch_ts = excluded.last_fetch_ts";
        self.run(sqlx::query(sql).bind(ts_to_i64(ts)).execute(&self.pool))
            .await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
