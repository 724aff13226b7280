//! The PostgreSQL dialect and [`PostgresOptions`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::CacheError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgQueryResult};
use sqlx::{Connection, Pool};

use crate::store::sealed::{self, Class};
use crate::store::{Dialect, MIGRATE_OLD_COLUMNS, SqlCache, config};

/// The PostgreSQL database (marker for [`SqlCache`]).
#[derive(Debug, Clone, Copy)]
pub enum Postgres {}

/// A [`PolicyCache`](mtasts_cache::PolicyCache) in PostgreSQL; see the [crate docs](crate).
pub type PostgresCache = SqlCache<Postgres>;

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

impl SqlCache<Postgres> {
    /// Connects and creates the tables if missing.
    ///
    /// # Errors
    ///
    /// [`CacheError::Config`] for a malformed DSN, zero `max_connections`, an unknown database or a rejected
    /// login; [`CacheError::Unavailable`] / [`CacheError::Timeout`] if the server cannot be reached within
    /// `timeout`; [`CacheError::Query`] if the tables cannot be created.
    pub async fn connect(options: PostgresOptions) -> Result<Self, CacheError> {
        let connect = PgConnectOptions::from_str(&options.dsn)
            .map_err(|e| config::<Postgres>("invalid dsn", Some(Arc::new(e))))?;
        Self::start(connect, options.max_connections, options.timeout).await
    }
}

impl Dialect for Postgres {}

/// Serializes schema setup between daemons starting together (an arbitrary constant lock key).
const SCHEMA_LOCK: i64 = 0x6d74_6173_7473; // "mtasts"

/// Exactly the Python daemon's tables and indexes, each created only where missing (`CREATE … IF NOT EXISTS`
/// needs the CREATE privilege even when the table exists, which a shared database may not grant).
const PYTHON_TABLES: [(&str, &[&str]); 2] = [
    (
        "proactive_fetch_ts",
        &[
            "CREATE TABLE IF NOT EXISTS proactive_fetch_ts (id serial primary key, last_fetch_ts integer)",
        ],
    ),
    (
        "sts_policy_cache",
        &[
            "CREATE TABLE IF NOT EXISTS sts_policy_cache \
             (id serial primary key, domain text, ts integer, pol_id text, pol_body jsonb)",
            "CREATE UNIQUE INDEX IF NOT EXISTS sts_policy_domain ON sts_policy_cache (domain)",
            "CREATE INDEX IF NOT EXISTS sts_policy_domain_ts ON sts_policy_cache (domain, ts)",
        ],
    ),
];

/// Ours, which the Python daemon never sees.
const META_TABLE: &str = "CREATE TABLE IF NOT EXISTS mtasts_fetch_meta \
     (domain text primary key, fetched_at bigint, pol_id text)";

/// SQLSTATE insufficient_privilege.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

async fn exists(conn: &mut PgConnection, table: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(conn)
        .await
}

async fn has_old_columns(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name = 'sts_policy_cache' AND column_name = 'fetched_pol_id')",
    )
    .fetch_one(conn)
    .await
}

/// Creates our side table unless it exists; `Ok(false)` if we may not.
async fn create_meta_table(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    if exists(conn, "mtasts_fetch_meta").await? {
        return Ok(true);
    }
    let mut savepoint = conn.begin().await?;
    match sqlx::query(META_TABLE).execute(&mut *savepoint).await {
        Ok(_) => savepoint.commit().await.map(|()| true),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(INSUFFICIENT_PRIVILEGE) => {
            savepoint.rollback().await.map(|()| false)
        }
        Err(e) => Err(e),
    }
}

impl sealed::Dialect for Postgres {
    type Db = sqlx::Postgres;
    const STORE: &'static str = "postgres";
    const BODY_PARAM: &'static str = "$4::jsonb";
    const TS_UNUSABLE: &'static str = "sts_policy_cache.ts IS NULL";

    fn int8(column: &str) -> String {
        format!("{column}::bigint")
    }

    fn text(column: &str) -> String {
        format!("{column}::text")
    }

    async fn create_schema(pool: &Pool<sqlx::Postgres>) -> Result<bool, sqlx::Error> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await?;
        for (table, statements) in PYTHON_TABLES {
            if !exists(&mut tx, table).await? {
                for statement in statements.iter().copied() {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
            }
        }
        let fetch_meta = create_meta_table(&mut tx).await?;
        if fetch_meta && has_old_columns(&mut tx).await? {
            sqlx::query(MIGRATE_OLD_COLUMNS).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(fetch_meta)
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn classify(code: &str) -> Class {
        match code {
            // query_canceled (statement_timeout).
            "57014" => Class::Timeout,
            // Class 08 connection exceptions; admin_shutdown (pg_terminate_backend), crash_shutdown,
            // cannot_connect_now; too_many_connections.
            c if c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "53300") => {
                Class::Unavailable
            }
            // invalid_catalog_name (no such database); class 28 authorization failures.
            c if c == "3D000" || c.starts_with("28") => Class::Config("database or login rejected"),
            INSUFFICIENT_PRIVILEGE => Class::Config("permission denied"),
            _ => Class::Query,
        }
    }
}
