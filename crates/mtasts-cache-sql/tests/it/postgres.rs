//! PostgreSQL: the shared tests in a fresh schema each, outages through a proxy, and failure behaviour (bad
//! options, an unknown database, backends terminated by the server, TLS).

use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mtasts_cache::conformance::{CorruptInjector, Harness, Networked, must_set, sample_entry};
use mtasts_cache::{CacheEntry, CacheError, PolicyCache, async_trait};
use mtasts_cache_sql::{PostgresCache, PostgresOptions};
use mtasts_test_support::skip_or_fail;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AnyPool, AssertSqlSafe};

use crate::support::{SqlDb, raw_pool};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn base_url() -> String {
    std::env::var("MTASTS_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The server's address, if something listens there.
fn server_addr(url: &str) -> std::io::Result<SocketAddr> {
    let options = PgConnectOptions::from_str(url).map_err(std::io::Error::other)?;
    let addr = (options.get_host(), options.get_port())
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    Ok(addr)
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

/// One test's private schema; dropped by [`Harness::finish`] (a failing test leaves a `mtasts_test_*` schema).
pub(crate) struct Schema {
    pub(crate) name: String,
    url: String,
    addr: SocketAddr,
    admin: AnyPool,
    /// A pool whose search_path is the schema: "another program" writing rows by hand.
    pub(crate) raw: AnyPool,
}

impl Schema {
    /// A DSN into the schema, optionally through `addr` instead of the server's own address.
    pub(crate) fn dsn(&self, via: Option<SocketAddr>) -> String {
        dsn_for(&self.url, via, &self.name)
    }

    /// Writes `entry` for `domain` through a store connected with `dsn`, and what that store reads back.
    async fn round_trip(&self, dsn: &str, domain: &str, entry: &CacheEntry) -> CacheEntry {
        let store = self.connect(dsn.to_owned(), Duration::from_secs(5)).await;
        let store = store.unwrap_or_else(|e| panic!("connect with {dsn}: {}", e.with_causes()));
        must_set(&store, domain, entry).await;
        let got = store.get(domain).await.expect("get").expect("present");
        store.close().await;
        got
    }

    pub(crate) async fn connect(
        &self,
        dsn: String,
        timeout: Duration,
    ) -> Result<PostgresCache, CacheError> {
        let options = PostgresOptions::new(dsn)
            .timeout(timeout)
            .max_connections(4);
        PostgresCache::connect(options).await
    }
}

impl Schema {
    /// A fresh schema on the server at `url`, or `None` (test skipped) if it is not reachable and CI is not set.
    pub(crate) async fn create_at(url: &str) -> Option<Self> {
        let url = url.to_owned();
        // A quick TCP probe first, so that a missing server skips at once instead of after the pool's retries.
        let addr = match server_addr(&url) {
            Ok(addr) => addr,
            Err(e) => {
                let hint = "start it on 127.0.0.1:5432 with trust auth and a database `test`, or set \
                            MTASTS_TEST_POSTGRES_URL";
                skip_or_fail(&format!("PostgreSQL not reachable at {url}: {e}"), hint);
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
        let admin = raw_pool(&url);
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .expect("create schema");
        let raw = raw_pool(&dsn_for(&url, None, &name));
        Some(Self {
            name,
            url,
            addr,
            admin,
            raw,
        })
    }
}

#[async_trait]
impl Harness for Schema {
    async fn create() -> Option<Self> {
        Self::create_at(&base_url()).await
    }

    async fn store(&self) -> Arc<dyn PolicyCache> {
        self.open(Duration::from_secs(5)).await
    }

    fn injector(&self) -> Option<&dyn CorruptInjector> {
        Some(self)
    }

    async fn finish(self) {
        self.raw.close().await;
        let sql = format!("DROP SCHEMA {} CASCADE", self.name);
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&self.admin)
            .await
            .expect("drop schema");
        self.admin.close().await;
    }
}

#[async_trait]
impl Networked for Schema {
    async fn server_addr(&self) -> SocketAddr {
        self.addr
    }

    async fn open_at(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Arc<dyn PolicyCache>, CacheError> {
        let store = self.connect(self.dsn(Some(addr)), timeout).await?;
        Ok(Arc::new(store))
    }
}

#[async_trait]
impl SqlDb for Schema {
    const PYTHON_SCHEMA: &'static str = "
        CREATE TABLE IF NOT EXISTS proactive_fetch_ts (id serial primary key, last_fetch_ts integer);
        CREATE TABLE IF NOT EXISTS sts_policy_cache (id serial primary key, domain text, ts integer, pol_id text, pol_body jsonb);
        CREATE UNIQUE INDEX IF NOT EXISTS sts_policy_domain ON sts_policy_cache (domain);
        CREATE INDEX IF NOT EXISTS sts_policy_domain_ts ON sts_policy_cache (domain, ts);";
    const PYTHON_SET: &'static str = "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) \
        VALUES ($1, $2, $3, $4::text::jsonb) ON CONFLICT (domain) DO UPDATE \
        SET ts = EXCLUDED.ts, pol_id = EXCLUDED.pol_id, pol_body = EXCLUDED.pol_body \
        WHERE sts_policy_cache.ts < EXCLUDED.ts";
    // jsonb guarantees JSON; a row can still lack its id and body.
    const MORE_CORRUPTIONS: &'static [&'static str] = &[
        "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES ('{domain}', {ts}, NULL, NULL)",
    ];

    fn raw(&self) -> &AnyPool {
        &self.raw
    }

    async fn open(&self, timeout: Duration) -> Arc<dyn PolicyCache> {
        let store = self.connect(self.dsn(None), timeout).await;
        Arc::new(store.expect("connect store"))
    }

    async fn python_scan(&self) -> usize {
        let sql = "SELECT id, ts, pol_id, pol_body::text, domain FROM sts_policy_cache WHERE id >= $1 \
                   ORDER BY id ASC LIMIT $2";
        let rows = sqlx::query(sql).bind(1_i32).bind(100_i64);
        rows.fetch_all(&self.raw).await.expect("python scan").len()
    }

    async fn columns(&self) -> Vec<String> {
        let sql = "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'sts_policy_cache' ORDER BY ordinal_position";
        let names = sqlx::query_scalar(sql).fetch_all(&self.raw).await;
        names.expect("columns")
    }
}

crate::sql_tests!(Schema);
mtasts_cache::conformance_tests!(Schema: unreachable, outage_and_recovery);

#[tokio::test]
async fn malformed_dsn_and_zero_pool_are_config_errors() {
    let err = PostgresCache::connect(PostgresOptions::new("not a url"))
        .await
        .expect_err("malformed");
    assert_eq!(err.kind(), "config", "{err:?}");
    let err =
        PostgresCache::connect(PostgresOptions::new("postgres://127.0.0.1/x").max_connections(0))
            .await
            .expect_err("zero pool");
    assert_eq!(err.kind(), "config", "{err:?}");
}

mtasts_cache::harness_tests!(Schema, cases:
    the_tables_have_the_python_column_types,
    runs_without_the_side_table_where_create_is_not_granted,
    unknown_database_is_a_config_error,
    recovers_after_backends_are_terminated
);

/// Tests on a fresh schema each.
mod cases {
    use super::*;

    pub(super) async fn the_tables_have_the_python_column_types(schema: &Schema) {
        // So that either daemon may create the tables.
        schema.open(Duration::from_secs(5)).await.close().await;
        let sql = "SELECT column_name::text || ' ' || data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'sts_policy_cache' ORDER BY ordinal_position";
        let types: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(&schema.raw)
            .await
            .expect("types");
        let want = [
            "id integer",
            "domain text",
            "ts integer",
            "pol_id text",
            "pol_body jsonb",
        ];
        assert_eq!(types, want);
    }

    /// A login that may use the Python daemon's tables but create nothing (PostgreSQL 15 no longer grants
    /// CREATE on `public`): the store runs without its side table, and with it once an owner created it.
    pub(super) async fn runs_without_the_side_table_where_create_is_not_granted(schema: &Schema) {
        schema.execute(Schema::PYTHON_SCHEMA).await;
        let role = format!("{}_user", schema.name);
        let grant = format!(
            "CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA {0} TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {0} TO {role}; \
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA {0} TO {role}",
            schema.name
        );
        schema.execute(&grant).await;
        let mut dsn = url::Url::parse(&schema.dsn(None)).expect("dsn is a URL");
        dsn.set_username(&role).expect("a URL with a user");
        let fetched_earlier = CacheEntry {
            fetched_at: 1_699_000_000,
            ..sample_entry(1_700_000_000)
        };

        let got = schema
            .round_trip(dsn.as_str(), "example.com", &fetched_earlier)
            .await;
        assert_eq!(
            got.fetched_at, got.checked_at,
            "no side table: fetched at ts"
        );

        schema.execute(&format!(
            "CREATE TABLE mtasts_fetch_meta (domain text primary key, fetched_at bigint, pol_id text); \
             GRANT SELECT, INSERT, UPDATE, DELETE ON mtasts_fetch_meta TO {role}"
        ))
        .await;
        let got = schema
            .round_trip(dsn.as_str(), "example.org", &fetched_earlier)
            .await;
        assert_eq!(got, fetched_earlier, "the side table is used");
        schema
            .execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
            .await;
    }

    pub(super) async fn unknown_database_is_a_config_error(schema: &Schema) {
        // Swap the database name in the path for one that does not exist.
        let dsn = schema.dsn(None);
        let (head, query) = dsn.split_once('?').expect("dsn has a query");
        let base = &head[..head.rfind('/').expect("dsn has a path")];
        let dsn = format!("{base}/mtasts_no_such_database?{query}");
        let err = schema
            .connect(dsn, Duration::from_secs(2))
            .await
            .expect_err("no such database");
        assert_eq!(err.kind(), "config", "{err:?}");
    }

    pub(super) async fn recovers_after_backends_are_terminated(schema: &Schema) {
        let app = format!("mtasts_term_{}", std::process::id());
        let dsn = format!("{}&application_name={app}", schema.dsn(None));
        let store = schema
            .connect(dsn, Duration::from_secs(2))
            .await
            .expect("connect");
        must_set(&store, "example.com", &sample_entry(1_700_000_000)).await;

        let sql = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1";
        let terminated: i64 = sqlx::query_scalar(sql)
            .bind(&app)
            .fetch_one(&schema.raw)
            .await
            .expect("terminate");
        assert!(terminated >= 1, "the store had a connection to terminate");

        // The pool notices dead connections (tested before use) and reconnects; allow one failed attempt per
        // pooled connection.
        let mut last = None;
        for _ in 0..5 {
            match store.get("example.com").await {
                Ok(got) => {
                    assert_eq!(got, Some(sample_entry(1_700_000_000)));
                    last = None;
                    break;
                }
                Err(e) => {
                    assert!(e.is_transient(), "{e:?}");
                    last = Some(e);
                }
            }
        }
        assert!(
            last.is_none(),
            "no recovery after pg_terminate_backend: {last:?}"
        );
        let set = store.set("example.com", &sample_entry(1_700_000_001)).await;
        assert!(set.expect("set after recovery"));
        store.close().await;
    }
}
