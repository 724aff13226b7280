//! The shared conformance suite, each test on its own temporary database file.

use async_trait::async_trait;
use mtasts_cache::conformance::{self, CorruptInjector};

use crate::util::TempDb;

#[tokio::test(flavor = "multi_thread")]
async fn get_set() {
    let db = TempDb::new();
    conformance::get_set(&db.store().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn newer_wins() {
    let db = TempDb::new();
    conformance::newer_wins(&db.store().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers() {
    let db = TempDb::new();
    conformance::concurrent_writers(&db.store().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paging() {
    let db = TempDb::new();
    conformance::paging(&db.store().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_clear() {
    let db = TempDb::new();
    conformance::remove_clear(&db.store().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn proactive_ts() {
    let db = TempDb::new();
    conformance::proactive_ts(&db.store().await).await;
}

/// Writes undecodable rows with a raw connection.
struct RawCorruptor<'a>(&'a TempDb);

/// (ts, pol_id, pol_body, fetched_at) as SQL literals.
const CORRUPTIONS: [(&str, &str, &str, &str); 8] = [
    ("{ts}", "'abc'", "'{not json'", "NULL"),
    (
        "{ts}",
        "'abc'",
        r#"'{"version": "STSv1", "mode": "bogus", "max_age": 1, "mx": []}'"#,
        "NULL",
    ),
    (
        "{ts}",
        "'bad id!'",
        r#"'{"version": "STSv1", "mode": "none", "max_age": 1, "mx": []}'"#,
        "NULL",
    ),
    (
        "'yesterday'",
        "'abc'",
        r#"'{"version": "STSv1", "mode": "none", "max_age": 1, "mx": []}'"#,
        "NULL",
    ),
    (
        "NULL",
        "'abc'",
        r#"'{"version": "STSv1", "mode": "none", "max_age": 1, "mx": []}'"#,
        "NULL",
    ),
    (
        "-5",
        "'abc'",
        r#"'{"version": "STSv1", "mode": "none", "max_age": 1, "mx": []}'"#,
        "NULL",
    ),
    ("{ts}", "'abc'", r#"'["abc", {"mode": "none"}]'"#, "NULL"),
    (
        "{ts}",
        "'abc'",
        r#"'{"version": "STSv1", "mode": "none", "max_age": 1, "mx": []}'"#,
        "'soon'",
    ),
];

#[async_trait]
impl CorruptInjector for RawCorruptor<'_> {
    fn variants(&self) -> usize {
        CORRUPTIONS.len()
    }

    async fn inject(&self, domain: &str, ts: u64, variant: usize) {
        let (t, id, body, fetched) = CORRUPTIONS[variant];
        let t = t.replace("{ts}", &ts.to_string());
        let sql = format!(
            "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body, fetched_at, fetched_pol_id) \
             VALUES ('{domain}', {t}, {id}, {body}, {fetched}, {id})"
        );
        let mut conn = self.0.raw().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("inject corrupt row");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_entries() {
    let db = TempDb::new();
    let store = db.store().await;
    conformance::corrupt_entries(&store, &RawCorruptor(&db)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_storage() {
    let db = TempDb::new();
    conformance::shared_storage(&db.store().await, &db.store().await).await;
}
