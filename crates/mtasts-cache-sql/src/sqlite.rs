//! The SQLite dialect and [`SqliteOptions`].

use std::path::PathBuf;
use std::time::Duration;

use mtasts_cache::CacheError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteQueryResult, SqliteSynchronous};
use sqlx::{Pool, Row};

use crate::store::sealed::{self, Class};
use crate::store::{Dialect, Limits, MIGRATE_OLD_COLUMNS, SqlCache};

/// The SQLite database (marker for [`SqlCache`]).
#[derive(Debug, Clone, Copy)]
pub enum Sqlite {}

/// A [`PolicyCache`](mtasts_cache::PolicyCache) in a SQLite file; see the [crate docs](crate).
pub type SqliteCache = SqlCache<Sqlite>;

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

impl SqlCache<Sqlite> {
    /// Opens (creating if missing) the database file, switches it to WAL and creates the tables if missing.
    ///
    /// # Errors
    ///
    /// [`CacheError::Config`] for zero `threads` or a file that is not a SQLite database;
    /// [`CacheError::Unavailable`] or [`CacheError::Query`] if the file cannot be opened or the schema cannot
    /// be created; [`CacheError::Timeout`] after `timeout`.
    pub async fn open(options: SqliteOptions) -> Result<Self, CacheError> {
        let connect = SqliteConnectOptions::new()
            .filename(&options.filename)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // Each connection's page cache at most 512 KiB (SQLite's default is 2 MiB): the store is read on a
            // miss of the memory front, one row by its unique index, and the kernel's page cache keeps the
            // file; reading 10 001 rows at start otherwise left 2 MiB per connection resident.
            .pragma("cache_size", format!("-{PAGE_CACHE_KIB}"))
            .busy_timeout(options.timeout);
        let limits = Limits {
            min_connections: 0,
            max_connections: options.threads,
            acquire: options.timeout,
            // The busy timeout, and time to go on after it.
            operation: options.timeout + options.timeout / 2,
        };
        let cache = Self::start(connect, limits).await?;
        tracing::debug!(file = %options.filename.display(), "sqlite cache opened");
        Ok(cache)
    }
}

/// The page cache of each connection (`PRAGMA cache_size`, negative: in KiB).
const PAGE_CACHE_KIB: u32 = 512;

impl Dialect for Sqlite {}

const SCHEMA: [&str; 5] = [
    // Exactly the Python daemon's tables and indexes.
    "CREATE TABLE IF NOT EXISTS proactive_fetch_ts (id integer primary key, last_fetch_ts integer)",
    "CREATE TABLE IF NOT EXISTS sts_policy_cache (domain text, ts integer, pol_id text, pol_body text)",
    "CREATE UNIQUE INDEX IF NOT EXISTS sts_policy_domain ON sts_policy_cache (domain)",
    "CREATE INDEX IF NOT EXISTS sts_policy_domain_ts ON sts_policy_cache (domain, ts)",
    // Ours, which the Python daemon never sees.
    "CREATE TABLE IF NOT EXISTS mtasts_fetch_meta (domain text primary key, fetched_at integer, pol_id text)",
];

impl sealed::Dialect for Sqlite {
    type Db = sqlx::Sqlite;
    const STORE: &'static str = "sqlite";
    const BODY_PARAM: &'static str = "$4";
    const TS_UNUSABLE: &'static str = "typeof(sts_policy_cache.ts) != 'integer'";

    // A `ts` that is not an integer must stay visible as such (a corrupt row), so no cast.
    fn int8(column: &str) -> String {
        column.to_owned()
    }

    fn text(column: &str) -> String {
        column.to_owned()
    }

    async fn create_schema(pool: &Pool<sqlx::Sqlite>) -> Result<bool, sqlx::Error> {
        // One connection for the whole schema: SQLite compiles a statement against the schema its connection
        // last read, and an `INSERT … ON CONFLICT (domain)` prepared on a connection that saw the table before
        // another connection added its unique index fails ("ON CONFLICT clause does not match any PRIMARY KEY
        // or UNIQUE constraint") instead of reloading the schema. Connections opened later read the whole one.
        let mut connection = pool.acquire().await?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&mut *connection).await?;
        }
        if has_column(&mut connection, "fetched_pol_id").await? {
            sqlx::query(MIGRATE_OLD_COLUMNS)
                .execute(&mut *connection)
                .await?;
        }
        // Whoever may write the file may create tables in it.
        Ok(true)
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    fn classify(code: &str) -> Class {
        // Extended result codes carry the primary code in their low byte.
        match code.parse::<i32>().unwrap_or(0) & 0xff {
            // SQLITE_BUSY, SQLITE_LOCKED: the busy timeout ran out.
            5 | 6 => Class::Timeout,
            // SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
            8 | 10 | 13 | 14 => Class::Unavailable,
            // SQLITE_NOTADB: the file is something else.
            26 => Class::Config("file is not a SQLite database"),
            _ => Class::Query,
        }
    }
}

async fn has_column(
    connection: &mut sqlx::SqliteConnection,
    column: &str,
) -> Result<bool, sqlx::Error> {
    let rows = sqlx::query("SELECT name FROM pragma_table_info('sts_policy_cache')")
        .fetch_all(connection)
        .await?;
    Ok(rows
        .iter()
        .any(|r| r.try_get::<String, _>(0).is_ok_and(|n| n == column)))
}
