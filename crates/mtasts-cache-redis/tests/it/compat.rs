//! Compatibility with the Python daemon's Redis layout, written and read by hand on both sides.
//!
//! What the Python daemon (postfix_mta_sts_resolver/redis_cache.py) does, and what these tests emulate:
//! - set: `MULTI; ZADD <domain> <ts> <uuid4 bytes + json.dumps([pol_id, pol_body])>; ZREMRANGEBYRANK <domain>
//!   0 -2; EXEC`, with `ts = time.time()` (a float);
//! - get: `ZREVRANGE <domain> 0 0 WITHSCORES`, then `json.loads(member[16:])` unpacked as exactly two values;
//! - scan: `SCAN` over all keys, `get` on every key except `_metadata`;
//! - `_metadata`: `HSET _metadata proactive_fetch_ts str(time.time())`, read back with `float()`.

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, Value};
use std::sync::Arc;

use mtasts_cache::conformance::{Harness, must_set};
use mtasts_cache::{CacheEntry, CacheError, PolicyCache};
use mtasts_cache_redis::{METADATA_KEY, PROACTIVE_FETCH_FIELD};
use mtasts_core::Mode;
use serde_json::json;

use crate::support::{SharedDb, UUID4, cmd};

fn entry(checked_at: u64, fetched_at: u64, id: &str) -> CacheEntry {
    let policy = "version: STSv1\nmode: enforce\nmax_age: 604800\nmx: mail.example.com\nmx: *.backup.example.net\n"
        .parse()
        .expect("policy");
    CacheEntry {
        checked_at,
        fetched_at,
        policy_id: id.parse().expect("id"),
        policy,
    }
}

/// Python's `set`: `MULTI`/`EXEC` of `ZADD` and `ZREMRANGEBYRANK`, member = 16 bytes + JSON.
async fn python_set(conn: &mut MultiplexedConnection, domain: &str, ts: f64, json_text: &str) {
    let member = [UUID4.as_slice(), json_text.as_bytes()].concat();
    redis::pipe()
        .atomic()
        .cmd("ZADD")
        .arg(domain)
        .arg(ts)
        .arg(member)
        .ignore()
        .cmd("ZREMRANGEBYRANK")
        .arg(domain)
        .arg(0)
        .arg(-2)
        .ignore()
        .query_async::<()>(conn)
        .await
        .expect("python-style set");
}

/// Python's `get`: the top member's JSON (after 16 bytes) and its score; panics where Python would raise.
async fn python_get(
    conn: &mut MultiplexedConnection,
    domain: &str,
) -> Option<(serde_json::Value, f64)> {
    let top: Vec<(Vec<u8>, f64)> = cmd(
        conn,
        redis::cmd("ZREVRANGE")
            .arg(domain)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES"),
    )
    .await;
    let (member, score) = top.into_iter().next()?;
    let json: serde_json::Value =
        serde_json::from_slice(&member[16..]).expect("Python's json.loads(packed[16:])");
    let pair = json.as_array().expect("a JSON list");
    assert_eq!(
        pair.len(),
        2,
        "Python unpacks exactly `pol_id, pol_body`: {json}"
    );
    assert!(pair[0].is_string(), "pol_id is a string: {json}");
    assert!(pair[1].is_object(), "pol_body is an object: {json}");
    Some((json, score))
}

/// Python's `set_proactive_fetch_ts`: `HSET _metadata proactive_fetch_ts str(time.time())`.
async fn python_set_proactive(conn: &mut MultiplexedConnection, text: &str) {
    let hset = redis::cmd("HSET")
        .arg(METADATA_KEY)
        .arg(PROACTIVE_FETCH_FIELD)
        .arg(text)
        .clone();
    cmd::<()>(conn, &hset).await;
}

/// A leased database, a store on it and a raw connection to it; `None` when the test is skipped.
async fn setup() -> Option<(SharedDb, Arc<dyn PolicyCache>, MultiplexedConnection)> {
    let db = SharedDb::lease().await?;
    let store = db.store().await;
    let conn = db.raw().await;
    Some((db, store, conn))
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_what_python_wrote() {
    let Some((_db, store, mut conn)) = setup().await else {
        return;
    };
    // json.dumps output of the Python daemon: its own key order, max_age as a number, an unknown key kept.
    let text = r#"["20240101T000000", {"version": "STSv1", "mode": "testing", "mx": ["mail.example.com", "*.example.net"], "max_age": 86400, "future": "x"}]"#;
    python_set(&mut conn, "python.example", 1_700_000_123.456_789, text).await;
    let got = store
        .get("python.example")
        .await
        .expect("get")
        .expect("entry present");
    assert_eq!(
        got.checked_at, 1_700_000_123,
        "fractional Python ts rounded down"
    );
    assert_eq!(
        got.fetched_at, got.checked_at,
        "no fetched_at in a Python member"
    );
    assert_eq!(got.policy_id.as_str(), "20240101T000000");
    assert_eq!(got.policy.mode(), Mode::Testing);
    assert_eq!(got.policy.max_age().as_secs(), 86_400);
    assert!(got.policy.matches_mx("mail.example.com"));
    assert!(got.policy.matches_mx("a.example.net"));
    // It is also what a scan returns.
    let page = store.scan(None, 10).await.expect("scan");
    assert_eq!(
        page.entries,
        vec![("python.example".to_owned(), got.clone())]
    );
    // A newer write of ours replaces it; an older one does not.
    assert!(
        !store
            .set("python.example", &entry(1_700_000_123, 1, "older"))
            .await
            .expect("set")
    );
    must_set(
        &*store,
        "python.example",
        &entry(1_700_000_124, 1_700_000_000, "ours"),
    )
    .await;
    let card: u64 = cmd(&mut conn, redis::cmd("ZCARD").arg("python.example")).await;
    assert_eq!(card, 1, "older members trimmed");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_reads_what_we_wrote() {
    let Some((_db, store, mut conn)) = setup().await else {
        return;
    };
    let ours = entry(1_700_000_500, 1_700_000_000, "abc123");
    must_set(&*store, "ours.example", &ours).await;
    let (json, score) = python_get(&mut conn, "ours.example")
        .await
        .expect("member present");
    assert_eq!(score, 1_700_000_500.0, "score = checked_at = Python's ts");
    assert_eq!(
        json,
        json!(["abc123", {
            "version": "STSv1",
            "mode": "enforce",
            "max_age": 604_800,
            "mx": ["mail.example.com", "*.backup.example.net"],
        }]),
        "exactly the Python pol_body: every key is printed as a TLSRPT policy_string, so nothing of ours is in it"
    );
    // Overwrites keep one member, as Python's ZREMRANGEBYRANK does.
    for ts in 1..=5 {
        must_set(
            &*store,
            "ours.example",
            &entry(1_700_000_500 + ts, 1_700_000_000, "abc123"),
        )
        .await;
    }
    let card: u64 = cmd(&mut conn, redis::cmd("ZCARD").arg("ours.example")).await;
    assert_eq!(card, 1);
    let (_, score) = python_get(&mut conn, "ours.example")
        .await
        .expect("member present");
    assert_eq!(score, 1_700_000_505.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_write_after_ours_wins_and_has_no_fetched_at() {
    let Some((_db, store, mut conn)) = setup().await else {
        return;
    };
    must_set(
        &*store,
        "mixed.example",
        &entry(1_700_000_100, 1_700_000_000, "one"),
    )
    .await;
    assert_eq!(
        store
            .get("mixed.example")
            .await
            .expect("get")
            .expect("present")
            .fetched_at,
        1_700_000_000
    );
    // The Python daemon in the same fleet confirms the policy later.
    let text = r#"["one", {"version": "STSv1", "mode": "enforce", "max_age": 604800, "mx": ["mail.example.com"]}]"#;
    python_set(&mut conn, "mixed.example", 1_700_000_200.5, text).await;
    let got = store
        .get("mixed.example")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (got.checked_at, got.fetched_at),
        (1_700_000_200, 1_700_000_200)
    );
    assert_eq!(got.policy_id.as_str(), "one");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_scan_can_read_every_key_we_create() {
    let Some((_db, store, mut conn)) = setup().await else {
        return;
    };
    let domains: Vec<String> = (0..20).map(|i| format!("scan{i}.example")).collect();
    for (i, d) in (0u64..).zip(&domains) {
        must_set(&*store, d, &entry(1_700_000_000 + i, 1_699_999_000, "id1")).await;
    }
    store
        .set_proactive_fetch_ts(1_700_000_000)
        .await
        .expect("set ts");
    // Python's scan: every key except `_metadata` goes through `get`; one unreadable key would stop it.
    let mut cursor = 0u64;
    let mut seen = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = cmd(
            &mut conn,
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(5),
        )
        .await;
        for key in keys {
            if key != METADATA_KEY {
                python_get(&mut conn, &key)
                    .await
                    .unwrap_or_else(|| panic!("{key}: empty"));
                seen.push(key);
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    seen.sort();
    seen.dedup();
    let mut want = domains.clone();
    want.sort();
    assert_eq!(seen, want, "no keys besides the domains and _metadata");
}

#[tokio::test(flavor = "multi_thread")]
async fn proactive_fetch_ts_in_python_format() {
    let Some((_db, store, mut conn)) = setup().await else {
        return;
    };
    python_set_proactive(&mut conn, "1700000000.987654").await;
    assert_eq!(
        store.proactive_fetch_ts().await.expect("get ts"),
        Some(1_700_000_000)
    );
    store
        .set_proactive_fetch_ts(1_700_000_001)
        .await
        .expect("set ts");
    let text: String = cmd(
        &mut conn,
        redis::cmd("HGET")
            .arg(METADATA_KEY)
            .arg(PROACTIVE_FETCH_FIELD),
    )
    .await;
    assert_eq!(
        text.parse::<f64>().ok(),
        Some(1_700_000_001.0),
        "Python reads it with float(): {text:?}"
    );
    python_set_proactive(&mut conn, "garbage").await;
    let err = store
        .proactive_fetch_ts()
        .await
        .expect_err("garbage timestamp");
    assert!(
        matches!(err, CacheError::Corrupt { ref domain, .. } if domain == METADATA_KEY),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_keys_and_metadata_are_left_alone() {
    let Some((_db, store, mut conn)) = setup().await else {
        return;
    };
    cmd::<()>(
        &mut conn,
        redis::cmd("SET").arg("string.example").arg("not ours"),
    )
    .await;
    must_set(
        &*store,
        "real.example",
        &entry(1_700_000_000, 1_700_000_000, "id1"),
    )
    .await;
    store
        .set_proactive_fetch_ts(1_700_000_000)
        .await
        .expect("set ts");

    // A key of another type: a typed error for get and set, invisible to scan and clear.
    let err = store.get("string.example").await.expect_err("wrong type");
    assert!(
        matches!(err, CacheError::Corrupt { ref domain, .. } if domain == "string.example"),
        "{err:?}"
    );
    let err = store
        .set("string.example", &entry(1, 1, "id1"))
        .await
        .expect_err("wrong type");
    assert_eq!(err.kind(), "corrupt", "{err:?}");
    let page = store.scan(None, 100).await.expect("scan");
    assert_eq!(page.entries.len(), 1);
    assert!(page.corrupt.is_empty(), "{:?}", page.corrupt);

    // `_metadata` is never a policy domain.
    assert_eq!(store.get(METADATA_KEY).await.expect("get"), None);
    let err = store
        .set(METADATA_KEY, &entry(1, 1, "id1"))
        .await
        .expect_err("reserved key");
    assert_eq!(err.kind(), "query", "{err:?}");
    assert!(!store.remove(METADATA_KEY).await.expect("remove"));

    assert_eq!(store.clear().await.expect("clear"), 1);
    let kept: Value = cmd(&mut conn, redis::cmd("GET").arg("string.example")).await;
    assert_eq!(kept, Value::BulkString(b"not ours".to_vec()));
    assert_eq!(
        store.proactive_fetch_ts().await.expect("ts"),
        Some(1_700_000_000)
    );
}
