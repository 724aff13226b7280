//! The PostgreSQL dialect and [`PostgresOptions`].

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::CacheError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgQueryResult, PgSslMode};
use sqlx::{Connection, Pool};

use crate::pgpass;
use crate::store::sealed::{self, Class};
use crate::store::{Dialect, Limits, MIGRATE_OLD_COLUMNS, SqlCache, config};

/// The PostgreSQL database (marker for [`SqlCache`]).
#[derive(Debug, Clone, Copy)]
pub enum Postgres {}

/// A [`PolicyCache`](mtasts_cache::PolicyCache) in PostgreSQL; see the [crate docs](crate).
pub type PostgresCache = SqlCache<Postgres>;

/// Options of [`PostgresCache::connect`], with asyncpg's names (the Python daemon passes its `cache.options`
/// to `asyncpg.create_pool`).
///
/// Connection parameters come, as in asyncpg and libpq, from the `PG*` environment variables (`PGHOST`,
/// `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, …), then the [`dsn`](Self::dsn)
/// (a libpq URL, with `sslmode`, `sslrootcert`, `sslcert`, `sslkey`), then the keyword options set here, each
/// overriding the one before. Without a password, the password file ([`passfile`](Self::passfile), else
/// `PGPASSFILE`, else `~/.pgpass`) is looked up for the final host, port, database and user.
///
/// ```
/// use std::time::Duration;
/// use mtasts_cache_sql::{PostgresOptions, SslMode};
///
/// let options = PostgresOptions::new("postgres://mta-sts@db.example/mta-sts")
///     .host("db2.example")
///     .ssl(SslMode::VerifyFull)
///     .server_setting("application_name", "mta-sts-daemon")
///     .command_timeout(Duration::from_secs(2));
/// assert_eq!(options.hosts, ["db2.example"]);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Connection URL, `postgres://user:password@host:port/database?options` (as libpq URLs; `sslmode` other
    /// than `disable`/`prefer` needs the `tls` feature). Optional: keywords and `PG*` variables may say all.
    pub dsn: Option<String>,
    /// Host names, addresses or socket directories (asyncpg `host`); with several, the first that accepts a
    /// connection at start is used.
    pub hosts: Vec<String>,
    /// Port (asyncpg `port`).
    pub port: Option<u16>,
    /// User name (asyncpg `user`).
    pub user: Option<String>,
    /// Password (asyncpg `password`).
    pub password: Option<String>,
    /// Password file in `.pgpass` format (asyncpg `passfile`).
    pub passfile: Option<PathBuf>,
    /// Database name (asyncpg `database`).
    pub database: Option<String>,
    /// TLS (asyncpg `ssl`: a mode; `true` is [`SslMode::VerifyFull`], as asyncpg's default SSL context).
    pub ssl: Option<SslMode>,
    /// Server settings sent at connect (asyncpg `server_settings`), e.g. `application_name`.
    pub server_settings: Vec<(String, String)>,
    /// Bound on waiting for a pooled connection, including connecting (the Python daemon's `timeout`).
    /// Default: 5 s.
    pub timeout: Duration,
    /// Bound on each statement once connected (asyncpg `command_timeout`). Default: [`timeout`](Self::timeout).
    pub command_timeout: Option<Duration>,
    /// Connections kept open even when idle (asyncpg `min_size`). Default: 0.
    pub min_connections: u32,
    /// Connection-pool size (asyncpg `max_size`). Default: 10.
    pub max_connections: u32,
}

/// TLS to the server: libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// TLS if the server offers it, unverified; else plain text.
    Prefer,
    /// TLS, certificate not verified.
    Require,
    /// TLS, certificate chain verified against the trusted roots (`sslrootcert`).
    VerifyCa,
    /// TLS, certificate chain and host name verified.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = CacheError;

    /// libpq's names (`disable`, `allow` = `prefer`, `prefer`, `require`, `verify-ca`, `verify-full`).
    fn from_str(s: &str) -> Result<Self, CacheError> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(config::<Postgres>(
                    &format!("unknown sslmode {other:?}"),
                    None,
                ));
            }
        })
    }
}

impl From<SslMode> for PgSslMode {
    fn from(mode: SslMode) -> Self {
        match mode {
            SslMode::Disable => Self::Disable,
            SslMode::Prefer => Self::Prefer,
            SslMode::Require => Self::Require,
            SslMode::VerifyCa => Self::VerifyCa,
            SslMode::VerifyFull => Self::VerifyFull,
        }
    }
}

impl Default for PostgresOptions {
    /// No DSN: everything from the keywords and the `PG*` environment variables.
    fn default() -> Self {
        Self {
            dsn: None,
            hosts: Vec::new(),
            port: None,
            user: None,
            password: None,
            passfile: None,
            database: None,
            ssl: None,
            server_settings: Vec::new(),
            timeout: Duration::from_secs(5),
            command_timeout: None,
            min_connections: 0,
            max_connections: 10,
        }
    }
}

impl PostgresOptions {
    /// Options for `dsn` with the defaults.
    pub fn new(dsn: impl Into<String>) -> Self {
        Self {
            dsn: Some(dsn.into()),
            ..Self::default()
        }
    }

    /// Sets the bound on waiting for a pooled connection.
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

    /// Adds a host (name, address or socket directory) to try.
    #[must_use]
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.hosts.push(host.into());
        self
    }

    /// Sets the TLS mode.
    #[must_use]
    pub fn ssl(mut self, mode: SslMode) -> Self {
        self.ssl = Some(mode);
        self
    }

    /// Adds a server setting sent at connect.
    #[must_use]
    pub fn server_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.server_settings.push((name.into(), value.into()));
        self
    }

    /// Sets the bound on each statement.
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = Some(timeout);
        self
    }

    /// Checks, without connecting, what can be checked without the server: the DSN parses, the pool size is
    /// not zero. A store that passes may still fail to connect ([`PostgresCache::connect`]).
    ///
    /// ```
    /// use mtasts_cache_sql::PostgresOptions;
    /// assert!(PostgresOptions::new("postgres://mta-sts@db.example/mta-sts").check().is_ok());
    /// assert!(PostgresOptions::new("postgres://db.example:notaport/x").check().is_err_and(|e| e.kind() == "config"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`CacheError::Config`] saying what is wrong.
    pub fn check(&self) -> Result<(), CacheError> {
        if self.max_connections == 0 {
            return Err(config::<Postgres>("the pool size must be at least 1", None));
        }
        self.connect_options(None).map(drop)
    }

    /// The connection options for `host` (or the DSN's and environment's when `None`).
    fn connect_options(&self, host: Option<&str>) -> Result<PgConnectOptions, CacheError> {
        let mut o = match &self.dsn {
            Some(dsn) => PgConnectOptions::from_str(dsn)
                .map_err(|e| config::<Postgres>("invalid dsn", Some(Arc::new(e))))?,
            None => PgConnectOptions::new_without_pgpass(),
        };
        match host {
            Some(dir) if dir.starts_with('/') => o = o.socket(dir),
            Some(name) => o = o.host(name),
            None => {}
        }
        if let Some(port) = self.port {
            o = o.port(port);
        }
        if let Some(user) = &self.user {
            o = o.username(user);
        }
        if let Some(database) = &self.database {
            o = o.database(database);
        }
        if let Some(mode) = self.ssl {
            o = o.ssl_mode(mode.into());
        }
        if !self.server_settings.is_empty() {
            o = o.options(
                self.server_settings
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
        }
        if let Some(password) = &self.password {
            o = o.password(password);
        } else if let Some(password) = pgpass::lookup(self.passfile.as_deref(), &o) {
            o = o.password(&password);
        }
        Ok(o)
    }
}

impl SqlCache<Postgres> {
    /// Connects and creates the tables if missing. With several [hosts](PostgresOptions::hosts), the first that
    /// accepts a connection within the timeout is used.
    ///
    /// # Errors
    ///
    /// [`CacheError::Config`] for a malformed DSN, zero `max_connections`, an unknown database or a rejected
    /// login; [`CacheError::Unavailable`] / [`CacheError::Timeout`] if the server cannot be reached within
    /// `timeout`; [`CacheError::Query`] if the tables cannot be created.
    pub async fn connect(options: PostgresOptions) -> Result<Self, CacheError> {
        let command_timeout = options.command_timeout.unwrap_or(options.timeout);
        let limits = Limits {
            min_connections: options.min_connections,
            max_connections: options.max_connections,
            acquire: options.timeout,
            operation: options.timeout + command_timeout,
        };
        let hosts: Vec<Option<&str>> = if options.hosts.is_empty() {
            vec![None]
        } else {
            options.hosts.iter().map(|h| Some(h.as_str())).collect()
        };
        let Some((last, others)) = hosts.split_last() else {
            return Err(config::<Postgres>("no host", None));
        };
        for host in others {
            match Self::start_at(&options, *host, limits, command_timeout).await {
                Err(e) if e.is_transient() => {
                    tracing::warn!(host = host.unwrap_or_default(), error = %e, "postgres host unusable; trying the next");
                }
                done => return done,
            }
        }
        Self::start_at(&options, *last, limits, command_timeout).await
    }

    async fn start_at(
        options: &PostgresOptions,
        host: Option<&str>,
        limits: Limits,
        command_timeout: Duration,
    ) -> Result<Self, CacheError> {
        // The server cancels a statement that runs longer than asked (SQLSTATE 57014: a timeout).
        let statement_timeout = command_timeout.as_millis().to_string();
        let connect = options
            .connect_options(host)?
            .options([("statement_timeout", statement_timeout.as_str())]);
        Self::start(connect, limits).await
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
