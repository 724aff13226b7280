//! SQLite and PostgreSQL stores for the MTA-STS policy cache, compatible with `postfix-mta-sts-resolver`'s
//! tables.
//!
//! [`SqlCache`] implements [`PolicyCache`](mtasts_cache::PolicyCache) once, over any database sqlx drives; a
//! small sealed [`Dialect`] supplies what differs (a little SQL text, the schema, the meaning of error codes).
//! Use it as:
//!
//! - [`SqliteCache`] (feature `sqlite`): one SQLite file, opened with [`SqliteCache::open`] from
//!   [`SqliteOptions`] (`filename`, `threads`, `timeout` — the Python daemon's `cache.options`). The file is
//!   created if missing and switched to WAL; `threads` is the connection-pool size and `timeout` both SQLite's
//!   busy timeout and the bound on every operation.
//! - [`PostgresCache`] (feature `postgres`): connected with [`PostgresCache::connect`] from
//!   [`PostgresOptions`]: asyncpg's options (a libpq DSN, host list, login, password file, [`SslMode`],
//!   server settings, timeouts, pool sizes) over the `PG*` environment variables.
//!
//! Several daemons (Rust or Python) can share the tables: a write is a single `INSERT … ON CONFLICT (domain) DO
//! UPDATE … WHERE sts_policy_cache.ts < EXCLUDED.ts OR sts_policy_cache.ts > $limit`, so the newest entry
//! always wins, except that a row checked more than [`MAX_CLOCK_SKEW`](mtasts_cache::MAX_CLOCK_SKEW) after this
//! host's clock (`$limit`, written by a host whose clock runs ahead) counts as checked now and is replaced.
//! Every operation is bounded by the configured timeout.
//!
//! # Layout (shared with the Python daemon)
//!
//! ```text
//! SQLite:     sts_policy_cache(domain text, ts integer, pol_id text, pol_body text)
//!             proactive_fetch_ts(id integer primary key, last_fetch_ts integer)           -- one row, id = 1
//! PostgreSQL: sts_policy_cache(id serial primary key, domain text, ts integer, pol_id text, pol_body jsonb)
//!             proactive_fetch_ts(id serial primary key, last_fetch_ts integer)            -- one row, id = 1
//! both:       unique index sts_policy_domain (domain), index sts_policy_domain_ts (domain, ts)
//! ```
//!
//! `ts` is [`CacheEntry::checked_at`](mtasts_cache::CacheEntry::checked_at) and `pol_body` the policy as JSON
//! (see [`mtasts_cache::compat`]). Tables and indexes are created where missing. Like the Python daemon's, `ts`
//! is a 32-bit `integer` in PostgreSQL (good until 2038).
//!
//! The Python daemon's tables are never altered. Our one addition, the HTTPS fetch time
//! ([`CacheEntry::fetched_at`](mtasts_cache::CacheEntry::fetched_at)), lives in a table of our own, joined on
//! the domain:
//!
//! ```text
//! mtasts_fetch_meta(domain text primary key, fetched_at bigint, pol_id text)
//! ```
//!
//! It is written in the same transaction as the entry and only when the entry was written (newer wins), and
//! removed with it. `pol_id` names the entry it belongs to: a row the Python daemon rewrote with another id was
//! fetched at its `ts`. Where the table cannot be created (a PostgreSQL login without CREATE), the store warns
//! once and runs without it (`fetched_at` = `ts`). The columns `fetched_at`/`fetched_pol_id` that earlier
//! versions added to `sts_policy_cache` are copied into it where it has no row yet.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mtasts_cache::{CacheEntry, PolicyCache};
//! use mtasts_cache_sql::{SqliteCache, SqliteOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let cache = SqliteCache::open(SqliteOptions::new(dir.path().join("cache.db")).threads(2)).await?;
//! let policy = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\n".parse()?;
//! cache.set("example.com", &CacheEntry::new(1_700_000_000, "abc".parse()?, policy)).await?;
//! assert!(cache.get("example.com").await?.is_some());
//! cache.close().await;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "sqlite"))]
//! # fn main() {}
//! ```
//!
//! # Crate features
//!
//! None is on by default; enable the databases you need.
//!
//! - `sqlite`: [`SqliteCache`], with SQLite compiled in.
//! - `postgres`: [`PostgresCache`].
//! - `tls`: TLS to PostgreSQL with rustls (ring): `sslmode` `require`, `verify-ca` or `verify-full`, trusting
//!   `sslrootcert` or else the system's roots, with an optional client certificate (`sslcert`, `sslkey`).
//!   Without it, use `sslmode=disable` or `prefer`.

#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(
        dead_code,
        reason = "without a database feature nothing uses the generic store"
    )
)]

mod store;

#[cfg(feature = "postgres")]
mod pgpass;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::{Postgres, PostgresCache, PostgresOptions, SslMode};
#[cfg(feature = "sqlite")]
pub use sqlite::{Sqlite, SqliteCache, SqliteOptions};
pub use store::{Dialect, SqlCache};
