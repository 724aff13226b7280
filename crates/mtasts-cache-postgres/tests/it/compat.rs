//! Compatibility with the Python daemon's PostgreSQL tables: rows written by hand in its exact layout are read by
//! the store, and rows the store writes have the shape the Python daemon reads.

use std::time::Duration;

use mtasts_cache::{CacheEntry, PolicyCache};
use serde_json::{Value, json};
use sqlx::Row;

use crate::util::Schema;

/// The Python daemon's `setup()` statements.
const PYTHON_SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS proactive_fetch_ts (id serial primary key, last_fetch_ts integer)",
    "CREATE TABLE IF NOT EXISTS sts_policy_cache (id serial primary key, domain text, ts integer, pol_id text, pol_body jsonb)",
    "CREATE UNIQUE INDEX IF NOT EXISTS sts_policy_domain ON sts_policy_cache (domain)",
    "CREATE INDEX IF NOT EXISTS sts_policy_domain_ts ON sts_policy_cache (domain, ts)",
];

/// What the Python daemon's jsonb codec (`json.dumps`) sends: `mx` first, keys in file order, `max_age` an int.
const PY_ENFORCE: &str = r#"{"mx": ["mail.example.com", "*.example.net"], "version": "STSv1", "mode": "enforce", "max_age": 86400}"#;
const PY_NONE: &str = r#"{"mx": [], "version": "STSv1", "mode": "none", "max_age": 0}"#;
const PY_EXTENSION: &str = r#"{"mx": ["mx.example.org"], "version": "STSv1", "mode": "testing", "max_age": 604800, "ext": "value"}"#;

/// The Python daemon's `set()`.
const PYTHON_SET: &str = "INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) VALUES ($1, $2, $3, $4::text::jsonb) \
     ON CONFLICT (domain) DO UPDATE \
     SET ts = EXCLUDED.ts, pol_id = EXCLUDED.pol_id, pol_body = EXCLUDED.pol_body \
     WHERE sts_policy_cache.ts < EXCLUDED.ts";

async fn python_set(schema: &Schema, domain: &str, ts: i32, id: &str, body: &str) {
    sqlx::query(PYTHON_SET)
        .bind(domain)
        .bind(ts)
        .bind(id)
        .bind(body)
        .execute(&schema.raw)
        .await
        .expect("python-style set");
}

#[tokio::test]
async fn reads_tables_written_by_python() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    for statement in PYTHON_SCHEMA {
        sqlx::query(statement)
            .execute(&schema.raw)
            .await
            .expect("python schema");
    }
    python_set(
        &schema,
        "example.com",
        1_700_000_000,
        "20240101",
        PY_ENFORCE,
    )
    .await;
    python_set(&schema, "none.example", 1_700_000_001, "n0", PY_NONE).await;
    python_set(&schema, "ext.example", 1_700_000_002, "e1", PY_EXTENSION).await;
    sqlx::query(
        "INSERT INTO proactive_fetch_ts (last_fetch_ts, id) VALUES ($1, $2) \
         ON CONFLICT (id) DO UPDATE SET last_fetch_ts = EXCLUDED.last_fetch_ts",
    )
    .bind(1_700_000_500_i32)
    .bind(1_i32)
    .execute(&schema.raw)
    .await
    .expect("python proactive ts");

    let store = schema.open(Duration::from_secs(5)).await;
    let entry = store
        .get("example.com")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(entry.checked_at, 1_700_000_000);
    assert_eq!(
        entry.fetched_at, 1_700_000_000,
        "Python rows have no fetch time: fetched_at = ts"
    );
    assert_eq!(entry.policy_id.as_str(), "20240101");
    let mx: Vec<&str> = entry.policy.mx().iter().map(|m| m.as_str()).collect();
    assert_eq!(mx, ["mail.example.com", "*.example.net"]);
    assert!(
        store
            .get("none.example")
            .await
            .expect("get")
            .expect("present")
            .policy
            .mx()
            .is_empty()
    );
    let ext = store
        .get("ext.example")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        ext.policy.extensions(),
        [("ext".to_owned(), "value".to_owned())]
    );
    assert_eq!(
        store.proactive_fetch_ts().await.expect("ts"),
        Some(1_700_000_500)
    );
    let page = store.scan(None, 10).await.expect("scan");
    assert_eq!(page.entries.len(), 3);
    assert!(page.corrupt.is_empty());
    store.close().await;
    schema.drop().await;
}

#[tokio::test]
async fn writes_rows_python_can_read() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let store = schema.open(Duration::from_secs(5)).await;
    let policy =
        "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n";
    let entry = CacheEntry {
        checked_at: 1_700_000_100,
        fetched_at: 1_700_000_000,
        policy_id: "abc123".parse().expect("id"),
        policy: policy.parse().expect("policy"),
    };
    assert!(store.set("example.com", &entry).await.expect("set"));
    store
        .set_proactive_fetch_ts(1_700_000_200)
        .await
        .expect("set ts");

    // The column types the Python daemon created, so either side may create the tables.
    let types: Vec<(String, String)> = sqlx::query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'sts_policy_cache' ORDER BY ordinal_position",
    )
    .fetch_all(&schema.raw)
    .await
    .expect("columns")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let want = [
        ("id", "integer"),
        ("domain", "text"),
        ("ts", "integer"),
        ("pol_id", "text"),
        ("pol_body", "jsonb"),
        ("fetched_at", "bigint"),
        ("fetched_pol_id", "text"),
    ];
    assert_eq!(types, want.map(|(a, b)| (a.to_owned(), b.to_owned())));

    // The Python daemon's get() (its jsonb codec is json.loads of the text form).
    let row =
        sqlx::query("SELECT ts, pol_id, pol_body::text FROM sts_policy_cache WHERE domain=$1")
            .bind("example.com")
            .fetch_one(&schema.raw)
            .await
            .expect("python get");
    assert_eq!(row.get::<i32, _>(0), 1_700_000_100);
    assert_eq!(row.get::<String, _>(1), "abc123");
    let body: Value = serde_json::from_str(&row.get::<String, _>(2)).expect("pol_body is JSON");
    assert_eq!(
        body,
        json!({"version": "STSv1", "mode": "enforce", "max_age": 86400, "mx": ["mail.example.com", "*.example.net"]}),
        "pol_body holds the policy and nothing else (Python prints every key as a TLSRPT policy_string)"
    );
    let ts: i32 = sqlx::query("SELECT last_fetch_ts FROM proactive_fetch_ts where id = $1")
        .bind(1_i32)
        .fetch_one(&schema.raw)
        .await
        .expect("python proactive ts")
        .get(0);
    assert_eq!(ts, 1_700_000_200);
    // The Python daemon's scan() walks the serial id.
    let scanned = sqlx::query(
        "SELECT id, ts, pol_id, pol_body, domain FROM sts_policy_cache WHERE id >= $1 ORDER BY id ASC LIMIT $2",
    )
    .bind(1_i32)
    .bind(100_i64)
    .fetch_all(&schema.raw)
    .await
    .expect("python scan");
    assert_eq!(scanned.len(), 1);

    // A Python write with an older ts loses; a newer one wins and its fetch time is its ts.
    python_set(&schema, "example.com", 1_700_000_050, "old", PY_NONE).await;
    assert_eq!(
        store.get("example.com").await.expect("get"),
        Some(entry.clone())
    );
    python_set(&schema, "example.com", 1_700_000_300, "new", PY_NONE).await;
    let got = store
        .get("example.com")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (got.checked_at, got.fetched_at, got.policy_id.as_str()),
        (1_700_000_300, 1_700_000_300, "new")
    );
    // And our older write loses to Python's newer one.
    assert!(!store.set("example.com", &entry).await.expect("set"));
    store.close().await;
    schema.drop().await;
}
