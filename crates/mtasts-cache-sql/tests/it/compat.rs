//! Compatibility with the Python daemon's tables, for every database: rows written with its statements are read
//! by the store, and rows the store writes are what its statements read.

use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::conformance::must_set;
use mtasts_cache::{CacheEntry, PolicyCache};
use serde_json::{Value, json};

use crate::support::SqlDb;

/// What Python's `json.dumps(parse_mta_sts_policy(text))` stores: `mx` first, keys in file order, `max_age` an int.
const PY_ENFORCE: &str = r#"{"mx": ["mail.example.com", "*.example.net"], "version": "STSv1", "mode": "enforce", "max_age": 86400}"#;
const PY_NONE: &str = r#"{"mx": [], "version": "STSv1", "mode": "none", "max_age": 0}"#;
const PY_EXTENSION: &str = r#"{"mx": ["mx.example.org"], "version": "STSv1", "mode": "testing", "max_age": 604800, "ext": "value"}"#;

/// What the store reads for `domain`: (checked_at, fetched_at, policy id).
async fn stamps(store: &Arc<dyn PolicyCache>, domain: &str) -> (u64, u64, String) {
    let got = store.get(domain).await.expect("get").expect("present");
    (
        got.checked_at,
        got.fetched_at,
        got.policy_id.as_str().to_owned(),
    )
}

fn entry(checked_at: u64, fetched_at: u64, id: &str, policy: &str) -> CacheEntry {
    CacheEntry {
        checked_at,
        fetched_at,
        policy_id: id.parse().expect("id"),
        policy: policy.parse().expect("policy"),
    }
}

pub(crate) async fn reads_tables_written_by_python<D: SqlDb>(db: &D) {
    db.execute(D::PYTHON_SCHEMA).await;
    db.python_set("example.com", 1_700_000_000, "20240101", PY_ENFORCE)
        .await;
    db.python_set("none.example", 1_700_000_001, "n0", PY_NONE)
        .await;
    db.python_set("ext.example", 1_700_000_002, "e1", PY_EXTENSION)
        .await;
    db.python_set_proactive(1_700_000_500).await;
    let python_columns = db.columns().await;

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
    let none = store.get("none.example").await.expect("get");
    assert!(none.expect("present").policy.mx().is_empty());
    let ext = store.get("ext.example").await.expect("get");
    assert_eq!(
        ext.expect("present").policy.extensions(),
        [("ext".to_owned(), "value".to_owned())]
    );
    assert_eq!(
        store.proactive_fetch_ts().await.expect("ts"),
        Some(1_700_000_500)
    );
    let page = store.scan(None, 10).await.expect("scan");
    assert_eq!(page.entries.len(), 3);
    assert!(page.corrupt.is_empty());
    // The Python daemon's table is untouched: our data lives in a table of our own.
    assert_eq!(db.columns().await, python_columns);
    store.close().await;
}

/// What earlier versions of ours wrote into columns added to the Python daemon's table is still read, and the
/// row's id still decides whether it counts.
pub(crate) async fn reads_the_columns_earlier_versions_added<D: SqlDb>(db: &D) {
    db.execute(D::PYTHON_SCHEMA).await;
    db.execute(
        "ALTER TABLE sts_policy_cache ADD COLUMN fetched_at BIGINT; \
         ALTER TABLE sts_policy_cache ADD COLUMN fetched_pol_id TEXT",
    )
    .await;
    db.python_set("kept.example", 1_700_000_100, "v1", PY_NONE)
        .await;
    db.python_set("rewritten.example", 1_700_000_100, "v2", PY_NONE)
        .await;
    db.execute(
        "UPDATE sts_policy_cache SET fetched_at = 1700000000, fetched_pol_id = 'v1' \
         WHERE domain IN ('kept.example', 'rewritten.example')",
    )
    .await;
    let store = db.open(Duration::from_secs(5)).await;
    assert_eq!(
        stamps(&store, "kept.example").await,
        (1_700_000_100, 1_700_000_000, "v1".to_owned())
    );
    assert_eq!(
        stamps(&store, "rewritten.example").await,
        (1_700_000_100, 1_700_000_100, "v2".to_owned()),
        "fetched_pol_id names another id: fetched at ts"
    );
    // Our writes go to the side table from now on.
    let newer = entry(
        1_700_000_200,
        1_700_000_150,
        "v3",
        "version: STSv1\nmode: none\nmax_age: 1\n",
    );
    must_set(&*store, "kept.example", &newer).await;
    assert_eq!(
        stamps(&store, "kept.example").await,
        (1_700_000_200, 1_700_000_150, "v3".to_owned())
    );
    store.close().await;
}

pub(crate) async fn writes_rows_python_can_read<D: SqlDb>(db: &D) {
    let store = db.open(Duration::from_secs(5)).await;
    let policy =
        "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n";
    let ours = entry(1_700_000_100, 1_700_000_000, "abc123", policy);
    must_set(&*store, "example.com", &ours).await;
    store
        .set_proactive_fetch_ts(1_700_000_200)
        .await
        .expect("set ts");

    let (ts, id, body) = db.python_get("example.com").await.expect("python get");
    assert_eq!((ts, id.as_str()), (1_700_000_100, "abc123"));
    let body: Value = serde_json::from_str(&body).expect("pol_body is JSON");
    assert_eq!(
        body,
        json!({"version": "STSv1", "mode": "enforce", "max_age": 86400, "mx": ["mail.example.com", "*.example.net"]}),
        "pol_body holds the policy and nothing else (Python prints every key as a TLSRPT policy_string)"
    );
    assert_eq!(db.python_proactive().await, 1_700_000_200);
    assert_eq!(db.python_scan().await, 1);

    // A Python write with an older ts loses; a newer one wins and its fetch time is its ts.
    db.python_set("example.com", 1_700_000_050, "old", PY_NONE)
        .await;
    assert_eq!(
        store.get("example.com").await.expect("get"),
        Some(ours.clone())
    );
    db.python_set("example.com", 1_700_000_300, "new", PY_NONE)
        .await;
    assert_eq!(
        stamps(&store, "example.com").await,
        (1_700_000_300, 1_700_000_300, "new".to_owned())
    );
    // And our older write loses to Python's newer one.
    assert!(!store.set("example.com", &ours).await.expect("set"));
    // Our row of the side table goes with the entry.
    assert!(store.remove("example.com").await.expect("remove"));
    assert_eq!(db.meta_rows().await, 0);
    store.close().await;
}

pub(crate) async fn python_updates_keep_fetch_time_only_for_the_same_policy_id<D: SqlDb>(db: &D) {
    let store = db.open(Duration::from_secs(5)).await;
    let policy = "version: STSv1\nmode: testing\nmx: mx.example.org\nmax_age: 86400\n";
    let ours = entry(1_700_000_100, 1_700_000_000, "v1", policy);
    must_set(&*store, "example.org", &ours).await;
    // Python confirms the same id later: it rewrites the same pol_id and body with a newer ts.
    let (_, _, body) = db.python_get("example.org").await.expect("python get");
    db.python_set("example.org", 1_700_000_900, "v1", &body)
        .await;
    assert_eq!(
        stamps(&store, "example.org").await,
        (1_700_000_900, 1_700_000_000, "v1".to_owned())
    );

    // Python fetches a new policy id: our fetch time belonged to the old one, so fetched_at falls back to ts.
    db.python_set("example.org", 1_700_001_000, "v2", PY_NONE)
        .await;
    assert_eq!(
        stamps(&store, "example.org").await,
        (1_700_001_000, 1_700_001_000, "v2".to_owned())
    );
    store.close().await;
}
