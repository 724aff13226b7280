//! What every database's tests share: [`SqlDb`], fresh storage with raw access "as another program" (the
//! Python daemon, a broken writer), through sqlx's `Any` driver so that the helpers are written once.

use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::conformance::Harness;
use mtasts_cache::{PolicyCache, async_trait};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe, Row};

/// A raw pool on `url` (`sqlite://…` or `postgres://…`), as another program would have. Lazy: it connects
/// (and creates a SQLite file) only when first used.
pub(crate) fn raw_pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(2)
        .connect_lazy(url)
        .unwrap_or_else(|e| panic!("raw pool for {url}: {e}"))
}

/// A valid `pol_body` literal, for rows broken elsewhere.
const NONE_BODY: &str = r#"'{"version": "STSv1", "mode": "none", "max_age": 1, "mx": []}'"#;
const BOGUS_MODE: &str = r#"'{"version": "STSv1", "mode": "bogus", "max_age": 1, "mx": []}'"#;

/// Undecodable rows every database can hold: (ts, pol_id, pol_body) as SQL literals, `{ts}` replaced.
const CORRUPTIONS: [(&str, &str, &str); 5] = [
    ("{ts}", "'abc'", BOGUS_MODE),
    ("{ts}", "'bad id!'", NONE_BODY),
    ("NULL", "'abc'", NONE_BODY),
    ("-5", "'abc'", NONE_BODY),
    ("{ts}", "'abc'", r#"'["abc", {"mode": "none"}]'"#),
];

/// One test's storage in one database, with the Python daemon's statements for it.
#[async_trait]
pub(crate) trait SqlDb: Harness {
    /// The Python daemon's `setup()` statements.
    const PYTHON_SCHEMA: &'static str;
    /// The Python daemon's `set()`: `$1` domain, `$2` ts, `$3` pol_id, `$4` pol_body text; a row with a newer
    /// or equal `ts` is kept.
    const PYTHON_SET: &'static str;
    /// Corruptions only this database can hold, as `INSERT` statements (`{domain}`, `{ts}` replaced).
    const MORE_CORRUPTIONS: &'static [&'static str];

    /// Raw access to the storage.
    fn raw(&self) -> &AnyPool;

    /// A store over this storage with `timeout`.
    async fn open(&self, timeout: Duration) -> Arc<dyn PolicyCache>;

    /// Runs `sql` (one or more statements, no parameters) as another program.
    async fn execute(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(self.raw())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The Python daemon's `set()`.
    async fn python_set(&self, domain: &str, ts: i64, id: &str, body: &str) {
        sqlx::query(Self::PYTHON_SET)
            .bind(domain)
            .bind(ts)
            .bind(id)
            .bind(body)
            .execute(self.raw())
            .await
            .unwrap_or_else(|e| panic!("python set {domain}: {e}"));
    }

    /// The Python daemon's `get()`: `ts`, `pol_id` and `pol_body` as text.
    async fn python_get(&self, domain: &str) -> Option<(i64, String, String)> {
        let sql = "SELECT CAST(ts AS BIGINT), pol_id, CAST(pol_body AS TEXT) FROM sts_policy_cache \
                   WHERE domain = $1";
        let row = sqlx::query(sql)
            .bind(domain)
            .fetch_optional(self.raw())
            .await
            .unwrap_or_else(|e| panic!("python get {domain}: {e}"))?;
        Some((row.get(0), row.get(1), row.get(2)))
    }

    /// The Python daemon's `set_proactive_fetch_ts()`.
    async fn python_set_proactive(&self, ts: i64) {
        let sql = "INSERT INTO proactive_fetch_ts (last_fetch_ts, id) VALUES ($1, 1) \
                   ON CONFLICT (id) DO UPDATE SET last_fetch_ts = EXCLUDED.last_fetch_ts";
        sqlx::query(sql)
            .bind(ts)
            .execute(self.raw())
            .await
            .unwrap_or_else(|e| panic!("python set proactive ts: {e}"));
    }

    /// The Python daemon's `get_proactive_fetch_ts()`.
    async fn python_proactive(&self) -> i64 {
        let sql = "SELECT CAST(last_fetch_ts AS BIGINT) FROM proactive_fetch_ts WHERE id = 1";
        sqlx::query_scalar(sql)
            .fetch_one(self.raw())
            .await
            .unwrap_or_else(|e| panic!("python proactive ts: {e}"))
    }

    /// How many rows our side table `mtasts_fetch_meta` holds.
    async fn meta_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM mtasts_fetch_meta")
            .fetch_one(self.raw())
            .await
            .expect("count mtasts_fetch_meta")
    }

    /// How many rows the Python daemon's `scan()` sees (it walks the row ids of the first 100).
    async fn python_scan(&self) -> usize;

    /// The columns of `sts_policy_cache`, in order.
    async fn columns(&self) -> Vec<String>;

    /// How many kinds of corruption [`SqlDb::corrupt`] knows.
    fn corruptions() -> usize {
        CORRUPTIONS.len() + Self::MORE_CORRUPTIONS.len()
    }

    /// Writes corruption `variant` for `domain` with timestamp `ts`.
    async fn corrupt(&self, domain: &str, ts: u64, variant: usize) {
        let sql = match CORRUPTIONS.get(variant) {
            Some((t, id, body)) => format!(
                "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES ('{domain}', {t}, {id}, {body})"
            ),
            None => Self::MORE_CORRUPTIONS[variant - CORRUPTIONS.len()].replace("{domain}", domain),
        };
        self.execute(&sql.replace("{ts}", &ts.to_string())).await;
    }
}

/// Makes an [`SqlDb`] the [`CorruptInjector`](mtasts_cache::conformance::CorruptInjector) of its conformance
/// tests.
macro_rules! corrupt_injector {
    ($db:ty) => {
        #[mtasts_cache::async_trait]
        impl mtasts_cache::conformance::CorruptInjector for $db {
            fn variants(&self) -> usize {
                <$db as $crate::support::SqlDb>::corruptions()
            }

            async fn inject(&self, domain: &str, ts: u64, variant: usize) {
                $crate::support::SqlDb::corrupt(self, domain, ts, variant).await;
            }
        }
    };
}
pub(crate) use corrupt_injector;
