//! The sorted-set member layout shared with the Python daemon.
//!
//! Each domain is one sorted set (key = the domain) holding one member; its score is
//! [`CacheEntry::checked_at`] (the Python daemon's `ts`, a float there). The member is:
//!
//! ```text
//! +----------------------------+-----------------------------------------------+
//! | 16 bytes, never read by    | UTF-8 JSON  [pol_id, pol_body]                |
//! | the Python daemon          | e.g. ["20240101", {"version": "STSv1", ...}]  |
//! +----------------------------+-----------------------------------------------+
//! ```
//!
//! The Python daemon fills the 16 bytes with `uuid4().bytes` and skips them when reading
//! (`packed[16:]`). We keep [`CacheEntry::fetched_at`] there, so it travels atomically with the entry it
//! belongs to and the Python daemon never sees it (it prints every `pol_body` key as a TLSRPT
//! `policy_string` and unpacks exactly two JSON elements, so nothing may be added to the JSON):
//!
//! ```text
//!  0   1   2   3   4   5   6   7   8                              16
//! +---+---+---+---+---+---+---+---+-------------------------------+
//! | M | T | S | 1 | random| 0 | r | fetched_at, u64 big-endian    |
//! +---+---+---+---+---+---+---+---+-------------------------------+
//! ```
//!
//! Byte 6 of a UUIDv4 always has the version nibble 4 (`0x40..=0x4f`); ours is `0x00`, so a member the
//! Python daemon wrote is never mistaken for ours, and then `fetched_at = checked_at`.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use mtasts_cache::{CacheEntry, CacheError, compat};

/// Length of the prefix before the JSON.
pub(crate) const PREFIX_LEN: usize = 16;
/// Marks our prefix: magic `MTS` and layout version 1.
const MAGIC: &[u8; 4] = b"MTS\x01";
/// Index of the byte that is the version nibble in a UUID and always zero in ours.
const NOT_UUID4_AT: usize = 6;

/// Encodes an entry's member (the score is `entry.checked_at`, passed separately).
pub(crate) fn encode(entry: &CacheEntry) -> Vec<u8> {
    let body = compat::policy_json(&entry.policy);
    // `[pol_id, pol_body]`; the id is 1–32 ASCII alphanumerics (RFC 8461 §3.1), so it needs no escaping,
    // but let serde_json quote it anyway.
    let id = serde_json::Value::String(entry.policy_id.as_str().to_owned());
    let mut out = Vec::with_capacity(PREFIX_LEN + body.len() + entry.policy_id.as_str().len() + 8);
    out.extend_from_slice(&prefix(entry.fetched_at, random_u64()));
    out.push(b'[');
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b", ");
    out.extend_from_slice(body.as_bytes());
    out.push(b']');
    out
}

/// The 16-byte prefix carrying `fetched_at`; `random` fills the unused bytes.
fn prefix(fetched_at: u64, random: u64) -> [u8; PREFIX_LEN] {
    let r = random.to_le_bytes();
    let mut p = [0u8; PREFIX_LEN];
    p[..4].copy_from_slice(MAGIC);
    p[4] = r[0];
    p[5] = r[1];
    p[NOT_UUID4_AT] = 0;
    p[7] = r[2];
    p[8..].copy_from_slice(&fetched_at.to_be_bytes());
    p
}

/// Our `fetched_at`, if the prefix is ours.
fn fetched_at(prefix: &[u8]) -> Option<u64> {
    if prefix.len() != PREFIX_LEN || &prefix[..4] != MAGIC || prefix[NOT_UUID4_AT] != 0 {
        return None;
    }
    let mut be = [0u8; 8];
    be.copy_from_slice(&prefix[8..]);
    Some(u64::from_be_bytes(be))
}

/// Decodes the member and score stored for `domain`.
///
/// Every problem is a [`CacheError::Corrupt`] naming `domain`.
pub(crate) fn decode(domain: &str, member: &[u8], score: f64) -> Result<CacheEntry, CacheError> {
    let checked_at = score_to_ts(score)
        .ok_or_else(|| CacheError::corrupt(domain, format!("invalid score {score}")))?;
    let Some((prefix, json)) = member.split_at_checked(PREFIX_LEN) else {
        return Err(CacheError::corrupt(
            domain,
            format!("member too short ({} bytes)", member.len()),
        ));
    };
    let fetched_at = fetched_at(prefix).unwrap_or(checked_at);
    let (pol_id, pol_body): (String, serde_json::Value) =
        serde_json::from_slice(json).map_err(|e| {
            CacheError::corrupt(
                domain,
                format!("member is not a JSON [pol_id, pol_body] pair: {e}"),
            )
        })?;
    let policy = serde_json::from_value(pol_body);
    compat::decode_parts(domain, checked_at, fetched_at, &pol_id, policy)
}

/// A sorted-set score as Unix seconds: the Python daemon writes `time.time()` (fractional); we floor it.
pub(crate) fn score_to_ts(score: f64) -> Option<u64> {
    // 2^53: every integer up to here is exact in an f64, and Unix seconds stay far below it.
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0;
    if !score.is_finite() || !(0.0..=MAX_EXACT).contains(&score) {
        return None;
    }
    // In range and finite, so the cast neither saturates nor wraps.
    Some(score.floor() as u64)
}

/// Parses the `proactive_fetch_ts` field: the Python daemon writes `str(time.time())`, e.g. `1700000000.123`.
pub(crate) fn parse_ts_text(text: &str) -> Option<u64> {
    if let Ok(n) = text.parse::<u64>() {
        return Some(n);
    }
    text.parse::<f64>().ok().and_then(score_to_ts)
}

/// A value that differs per call and per process (the bytes only keep members distinct, like the Python
/// daemon's `uuid4`); no cryptographic quality is needed.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PY_JSON: &str = r#"["20240101", {"version": "STSv1", "mode": "enforce", "max_age": 86400, "mx": ["mail.example.com"]}]"#;

    fn entry(checked_at: u64, fetched_at: u64) -> CacheEntry {
        let policy =
            "version: STSv1\nmode: testing\nmax_age: 600\nmx: *.example.net\nmx: mx.example.net\n"
                .parse()
                .unwrap();
        CacheEntry {
            checked_at,
            fetched_at,
            policy_id: "abc123".parse().unwrap(),
            policy,
        }
    }

    /// The 16 bytes of a UUIDv4 as Python's `uuid.uuid4().bytes` yields them.
    fn uuid4_bytes(seed: u64) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&seed.to_le_bytes());
        b[8..].copy_from_slice(&seed.rotate_left(17).to_le_bytes());
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        b
    }

    #[test]
    fn round_trips_with_fetched_at() {
        let e = entry(1_700_000_500, 1_700_000_000);
        let member = encode(&e);
        assert_eq!(decode("example.net", &member, 1_700_000_500.0).unwrap(), e);
    }

    #[test]
    fn json_part_is_a_python_pair() {
        let member = encode(&entry(10, 5));
        let v: serde_json::Value = serde_json::from_slice(&member[PREFIX_LEN..]).unwrap();
        let pair = v.as_array().unwrap();
        assert_eq!(pair.len(), 2);
        assert_eq!(pair[0], "abc123");
        assert_eq!(pair[1]["mode"], "testing");
        assert_eq!(pair[1]["max_age"], 600);
        assert_eq!(pair[1]["mx"][0], "*.example.net");
        // Nothing of ours leaks into pol_body (Python prints every key as a TLSRPT policy_string).
        let keys: Vec<&String> = pair[1].as_object().unwrap().keys().collect();
        assert!(
            keys.iter()
                .all(|k| ["version", "mode", "max_age", "mx"].contains(&k.as_str())),
            "{keys:?}"
        );
    }

    #[test]
    fn python_member_gets_fetched_at_from_score() {
        for seed in [0, 1, u64::MAX, 0x4d54_5301_0000_0000, 0x0123_4567_89ab_cdef] {
            let mut member = uuid4_bytes(seed).to_vec();
            member.extend_from_slice(PY_JSON.as_bytes());
            let e = decode("example.com", &member, 1_700_000_000.75).unwrap();
            assert_eq!(
                (e.checked_at, e.fetched_at),
                (1_700_000_000, 1_700_000_000),
                "seed {seed:#x}"
            );
            assert_eq!(e.policy_id.as_str(), "20240101");
            assert_eq!(e.policy.max_age().as_secs(), 86_400);
        }
    }

    #[test]
    fn uuid4_with_our_magic_is_still_python() {
        let mut p = uuid4_bytes(7);
        p[..4].copy_from_slice(MAGIC);
        assert_eq!(fetched_at(&p), None);
    }

    #[test]
    fn prefix_never_looks_like_uuid4() {
        for r in [0, u64::MAX, 0x4040_4040_4040_4040] {
            let p = prefix(123, r);
            assert_eq!(p[6] & 0xf0, 0);
            assert_eq!(fetched_at(&p), Some(123));
        }
    }

    #[test]
    fn members_differ_between_writes() {
        let e = entry(1, 1);
        assert_ne!(encode(&e), encode(&e));
    }

    #[test]
    fn corrupt_members_are_typed_errors() {
        let mut py = uuid4_bytes(3).to_vec();
        py.extend_from_slice(PY_JSON.as_bytes());
        let with_json = |json: &str| {
            let mut m = uuid4_bytes(3).to_vec();
            m.extend_from_slice(json.as_bytes());
            m
        };
        let cases: Vec<(&str, Vec<u8>, f64)> = vec![
            ("short member", b"0123".to_vec(), 1.0),
            ("not json", with_json("{nope"), 1.0),
            (
                "not utf-8",
                with_json("\u{0}").into_iter().chain([0xff, 0xfe]).collect(),
                1.0,
            ),
            ("three elements", with_json(r#"["a", {}, 1]"#), 1.0),
            ("one element", with_json(r#"["a"]"#), 1.0),
            (
                "bad id",
                with_json(r#"["not valid!", {"version": "STSv1", "mode": "none", "max_age": 1}]"#),
                1.0,
            ),
            (
                "bad policy",
                with_json(r#"["abc", {"version": "STSv1", "mode": "bogus"}]"#),
                1.0,
            ),
            ("negative score", py.clone(), -1.0),
            ("nan score", py.clone(), f64::NAN),
            ("infinite score", py, f64::INFINITY),
        ];
        for (name, member, score) in cases {
            let err = decode("bad.example", &member, score).unwrap_err();
            assert!(
                matches!(err, CacheError::Corrupt { ref domain, .. } if domain == "bad.example"),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn parses_python_timestamps() {
        assert_eq!(parse_ts_text("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_ts_text("1700000000.987654"), Some(1_700_000_000));
        assert_eq!(parse_ts_text("1.7e9"), Some(1_700_000_000));
        assert_eq!(parse_ts_text("-5"), None);
        assert_eq!(parse_ts_text("soon"), None);
        assert_eq!(parse_ts_text("nan"), None);
    }
}
