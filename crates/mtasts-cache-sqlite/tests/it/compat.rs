//! Compatibility with the Python daemon's SQLite cache: rows written by hand in its exact layout are read by the
//! store, and rows the store writes have the shape the Python daemon reads.

use std::time::Duration;

use mtasts_cache::{CacheEntry, PolicyCache};
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::util::TempDb;

/// The Python daemon's `setup()` statements, verbatim in effect.
const PYTHON_SCHEMA: &str = "PRAGMA journal_mode=WAL;
    create table if not exists proactive_fetch_ts (id integer primary key, last_fetch_ts integer);
    create table if not exists sts_policy_cache (domain text, ts integer, pol_id text, pol_body text);
    create unique index if not exists sts_policy_domain on sts_policy_cache (domain);
    create index if not exists sts_policy_domain_ts on sts_policy_cache (domain, ts);";

/// What Python's `json.dumps(parse_mta_sts_policy(text))` stores: `mx` first, keys in file order, `max_age` an int.
const PY_ENFORCE: &str = r#"{"mx": ["mail.example.com", "*.example.net"], "version": "STSv1", "mode": "enforce", "max_age": 86400}"#;
const PY_NONE: &str = r#"{"mx": [], "version": "STSv1", "mode": "none", "max_age": 0}"#;
const PY_EXTENSION: &str = r#"{"mx": ["mx.example.org"], "version": "STSv1", "mode": "testing", "max_age": 604800, "ext": "value"}"#;

async fn python_insert(
    conn: &mut sqlx::SqliteConnection,
    domain: &str,
    ts: i64,
    id: &str,
    body: &str,
) {
    sqlx::query("insert into sts_policy_cache (domain, ts, pol_id, pol_body) values (?, ?, ?, ?)")
        .bind(domain)
        .bind(ts)
        .bind(id)
        .bind(body)
        .execute(conn)
        .await
        .expect("python-style insert");
}

#[tokio::test]
async fn reads_a_cache_file_written_by_python() {
    let db = TempDb::new();
    let mut conn = db.raw().await;
    sqlx::raw_sql(PYTHON_SCHEMA)
        .execute(&mut conn)
        .await
        .expect("python schema");
    python_insert(
        &mut conn,
        "example.com",
        1_700_000_000,
        "20240101",
        PY_ENFORCE,
    )
    .await;
    python_insert(&mut conn, "none.example", 1_700_000_001, "n0", PY_NONE).await;
    python_insert(&mut conn, "ext.example", 1_700_000_002, "e1", PY_EXTENSION).await;
    sqlx::query("insert into proactive_fetch_ts (last_fetch_ts, id) values (?, ?)")
        .bind(1_700_000_500_i64)
        .bind(1_i64)
        .execute(&mut conn)
        .await
        .expect("python proactive ts");
    conn.close().await.expect("close raw");

    let store = db.open(Duration::from_secs(5)).await;
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
    assert_eq!(entry.policy.max_age().as_secs(), 86_400);
    let mx: Vec<&str> = entry.policy.mx().iter().map(|m| m.as_str()).collect();
    assert_eq!(mx, ["mail.example.com", "*.example.net"]);

    let none = store
        .get("none.example")
        .await
        .expect("get")
        .expect("present");
    assert!(none.policy.mx().is_empty());
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
    // Our columns were added without disturbing Python's.
    let columns: Vec<String> =
        sqlx::query("SELECT name FROM pragma_table_info('sts_policy_cache')")
            .fetch_all(&mut db.raw().await)
            .await
            .expect("table info")
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(
        columns,
        [
            "domain",
            "ts",
            "pol_id",
            "pol_body",
            "fetched_at",
            "fetched_pol_id"
        ]
    );
}

#[tokio::test]
async fn writes_rows_python_can_read() {
    let db = TempDb::new();
    let store = db.open(Duration::from_secs(5)).await;
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

    // Exactly the Python daemon's queries.
    let mut conn = db.raw().await;
    let row = sqlx::query("select ts, pol_id, pol_body from sts_policy_cache where domain=?")
        .bind("example.com")
        .fetch_one(&mut conn)
        .await
        .expect("python get");
    assert_eq!(row.get::<i64, _>(0), 1_700_000_100);
    assert_eq!(row.get::<String, _>(1), "abc123");
    let body: Value = serde_json::from_str(&row.get::<String, _>(2)).expect("pol_body is JSON");
    assert_eq!(
        body,
        json!({"version": "STSv1", "mode": "enforce", "max_age": 86400, "mx": ["mail.example.com", "*.example.net"]}),
        "pol_body holds the policy and nothing else (Python prints every key as a TLSRPT policy_string)"
    );
    let ts: i64 = sqlx::query("select last_fetch_ts from proactive_fetch_ts where id = ?")
        .bind(1_i64)
        .fetch_one(&mut conn)
        .await
        .expect("python proactive ts")
        .get(0);
    assert_eq!(ts, 1_700_000_200);
    // Python's scan walks rowids.
    let scanned = sqlx::query("select rowid, ts, pol_id, pol_body, domain from sts_policy_cache where rowid between ? and ?")
        .bind(1_i64)
        .bind(100_i64)
        .fetch_all(&mut conn)
        .await
        .expect("python scan");
    assert_eq!(scanned.len(), 1);
}

#[tokio::test]
async fn python_updates_keep_fetch_time_only_for_the_same_policy_id() {
    let db = TempDb::new();
    let store = db.open(Duration::from_secs(5)).await;
    let policy = "version: STSv1\nmode: testing\nmx: mx.example.org\nmax_age: 86400\n";
    let entry = CacheEntry {
        checked_at: 1_700_000_100,
        fetched_at: 1_700_000_000,
        policy_id: "v1".parse().expect("id"),
        policy: policy.parse().expect("policy"),
    };
    assert!(store.set("example.org", &entry).await.expect("set"));
    let mut conn = db.raw().await;
    // Python confirms the same id later: its update moves ts only (it rewrites the same pol_id and body).
    let body: String =
        sqlx::query("select pol_body from sts_policy_cache where domain = 'example.org'")
            .fetch_one(&mut conn)
            .await
            .expect("body")
            .get(0);
    let python_update =
        "update sts_policy_cache set ts = ?, pol_id = ?, pol_body = ? where domain = ? and ts < ?";
    sqlx::query(python_update)
        .bind(1_700_000_900_i64)
        .bind("v1")
        .bind(&body)
        .bind("example.org")
        .bind(1_700_000_900_i64)
        .execute(&mut conn)
        .await
        .expect("python update");
    let got = store
        .get("example.org")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (got.checked_at, got.fetched_at),
        (1_700_000_900, 1_700_000_000)
    );

    // Python fetches a new policy id: our fetch time belonged to the old one, so fetched_at falls back to ts.
    sqlx::query(python_update)
        .bind(1_700_001_000_i64)
        .bind("v2")
        .bind(PY_NONE)
        .bind("example.org")
        .bind(1_700_001_000_i64)
        .execute(&mut conn)
        .await
        .expect("python update");
    let got = store
        .get("example.org")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (got.checked_at, got.fetched_at),
        (1_700_001_000, 1_700_001_000)
    );
    assert_eq!(got.policy_id.as_str(), "v2");
}
