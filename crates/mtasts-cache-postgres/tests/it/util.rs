//! A fresh schema per test, DSNs pointing into it (directly or through a proxy), raw access for the tests.

use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mtasts_cache::PolicyCache;
use mtasts_cache_postgres::{PostgresCache, PostgresOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn base_url() -> String {
    std::env::var("MTASTS_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `url` with its host:port replaced by `addr` (if given) and `search_path` set to `schema`.
fn dsn_for(url: &str, addr: Option<SocketAddr>, schema: &str) -> String {
    let mut url = url.to_owned();
    if let Some(addr) = addr {
        let start = url.find("://").map_or(0, |i| i + 3);
        let end = url[start..]
            .find(['/', '?'])
            .map_or(url.len(), |i| start + i);
        let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
        url.replace_range(host_start..end, &addr.to_string());
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options[search_path]={schema}")
}

/// One test's private schema; dropped by [`Schema::drop`].
pub(crate) struct Schema {
    name: String,
    url: String,
    admin: PgPool,
    /// A pool whose search_path is the schema: "another program" writing rows by hand.
    pub(crate) raw: PgPool,
}

impl Schema {
    /// A fresh schema, or `None` (test skipped) if PostgreSQL is not reachable and CI is not set.
    pub(crate) async fn create() -> Option<Self> {
        let url = base_url();
        let options =
            PgConnectOptions::from_str(&url).expect("MTASTS_TEST_POSTGRES_URL is a valid URL");
        // A quick TCP probe first, so that a missing server skips at once instead of after the pool's retries.
        let probe = (options.get_host(), options.get_port())
            .to_socket_addrs()
            .map_err(sqlx::Error::Io)
            .and_then(|mut addrs| addrs.next().ok_or(sqlx::Error::PoolTimedOut))
            .and_then(|addr| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .map_err(sqlx::Error::Io)
            });
        let connected = match probe {
            Ok(_) => {
                PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
            }
            Err(e) => Err(e),
        };
        let admin = match connected {
            Ok(pool) => pool,
            Err(e) => {
                let msg = format!(
                    "PostgreSQL not reachable at {url} ({e}); start it on 127.0.0.1:5432 with trust auth and a \
                     database `test`, or set MTASTS_TEST_POSTGRES_URL"
                );
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
                eprintln!("skipped: {msg}");
                return None;
            }
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "mtasts_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .expect("create schema");
        let raw = PgPoolOptions::new()
            .max_connections(2)
            .connect(&dsn_for(&url, None, &name))
            .await
            .expect("raw pool in schema");
        Some(Self {
            name,
            url,
            admin,
            raw,
        })
    }

    /// A DSN into the schema, optionally through `addr` instead of the server's own address.
    pub(crate) fn dsn(&self, via: Option<SocketAddr>) -> String {
        dsn_for(&self.url, via, &self.name)
    }

    /// The server's address, to put a proxy in front of it.
    pub(crate) fn server_addr(&self) -> SocketAddr {
        let options = PgConnectOptions::from_str(&self.url).expect("valid URL");
        (options.get_host(), options.get_port())
            .to_socket_addrs()
            .expect("resolve PostgreSQL host")
            .next()
            .expect("PostgreSQL host has an address")
    }

    pub(crate) async fn open(&self, timeout: Duration) -> PostgresCache {
        PostgresCache::connect(
            PostgresOptions::new(self.dsn(None))
                .timeout(timeout)
                .max_connections(8),
        )
        .await
        .expect("connect store")
    }

    pub(crate) async fn store(&self) -> Arc<dyn PolicyCache> {
        Arc::new(self.open(Duration::from_secs(5)).await)
    }

    /// Drops the schema (call at the end of a test; a panicking test leaves a `mtasts_test_*` schema behind).
    pub(crate) async fn drop(self) {
        self.raw.close().await;
        let sql = format!("DROP SCHEMA {} CASCADE", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.admin)
            .await
            .expect("drop schema");
        self.admin.close().await;
    }
}
