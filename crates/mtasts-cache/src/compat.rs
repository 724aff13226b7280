//! The Python `postfix-mta-sts-resolver` representation of a cache entry, shared by the persistent stores.
//!
//! The Python daemon stores, per domain, `ts` (integer Unix seconds, our [`CacheEntry::checked_at`]), `pol_id`
//! (the TXT id) and `pol_body`, the policy as a JSON object:
//!
//! ```text
//! {"version": "STSv1", "mode": "enforce", "max_age": 86400, "mx": ["mail.example.com"]}
//! ```
//!
//! plus any unknown policy keys as extra string members. It prints every member of `pol_body` as a TLSRPT
//! `policy_string`, so extra state of ours (the HTTPS fetch time, [`CacheEntry::fetched_at`]) must be kept
//! elsewhere (an extra column, a separate key); rows without it get `fetched_at = checked_at`.

use mtasts_core::{Policy, PolicyId};

use crate::{CacheEntry, CacheError};

/// The policy as the JSON text the Python daemon stores in `pol_body`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\n".parse()?;
/// let json: serde_json::Value = serde_json::from_str(&mtasts_cache::compat::policy_json(&policy))?;
/// assert_eq!(json["mode"], "enforce");
/// assert_eq!(json["mx"][0], "mail.example.com");
/// # Ok(())
/// # }
/// ```
#[must_use]
pub fn policy_json(policy: &Policy) -> String {
    // Serializing a plain struct of strings and numbers to a String cannot fail; fall back to the canonical
    // shape by hand rather than panic if it ever did.
    serde_json::to_string(policy).unwrap_or_else(|_| String::from("{}"))
}

/// Decodes a stored row into an entry. `fetched_at` is our extra field (absent in rows the Python daemon wrote).
///
/// Every problem is a [`CacheError::Corrupt`] naming `domain`: a negative or missing timestamp, an invalid policy
/// id (RFC 8461 §3.1), a `pol_body` that is not JSON or not a valid policy (§3.2).
pub fn decode_entry(
    domain: &str,
    ts: Option<i64>,
    pol_id: Option<&str>,
    pol_body: Option<&str>,
    fetched_at: Option<i64>,
) -> Result<CacheEntry, CacheError> {
    let ts = ts.ok_or_else(|| CacheError::corrupt(domain, "missing ts"))?;
    let checked_at =
        u64::try_from(ts).map_err(|_| CacheError::corrupt(domain, format!("negative ts {ts}")))?;
    let fetched_at = match fetched_at {
        None => checked_at,
        Some(f) => u64::try_from(f)
            .map_err(|_| CacheError::corrupt(domain, format!("negative fetched_at {f}")))?,
    };
    let pol_id = pol_id.ok_or_else(|| CacheError::corrupt(domain, "missing pol_id"))?;
    let body = pol_body.ok_or_else(|| CacheError::corrupt(domain, "missing pol_body"))?;
    decode_parts(
        domain,
        checked_at,
        fetched_at,
        pol_id,
        serde_json::from_str(body),
    )
}

/// An entry from its parts once the timestamps are known: `pol_id` must be a valid policy id (RFC 8461 §3.1)
/// and `pol_body`, the policy as deserialized from its JSON, a valid policy (§3.2); else a
/// [`CacheError::Corrupt`] naming `domain`.
pub fn decode_parts(
    domain: &str,
    checked_at: u64,
    fetched_at: u64,
    pol_id: &str,
    pol_body: Result<Policy, serde_json::Error>,
) -> Result<CacheEntry, CacheError> {
    let policy_id: PolicyId = pol_id.parse().map_err(|e: mtasts_core::Error| {
        CacheError::corrupt(domain, format!("invalid pol_id {pol_id:?}: {e}"))
    })?;
    let policy =
        pol_body.map_err(|e| CacheError::corrupt(domain, format!("invalid pol_body: {e}")))?;
    Ok(CacheEntry {
        checked_at,
        fetched_at,
        policy_id,
        policy,
    })
}

/// A timestamp as the signed 64-bit integer SQL stores take (saturating; Unix seconds never get near).
#[must_use]
pub fn ts_to_i64(ts: u64) -> i64 {
    i64::try_from(ts).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str =
        r#"{"version": "STSv1", "mode": "enforce", "max_age": 86400, "mx": ["mail.example.com"]}"#;

    #[test]
    fn decodes_python_row() {
        let e = decode_entry(
            "example.com",
            Some(1_700_000_000),
            Some("abc"),
            Some(BODY),
            None,
        )
        .unwrap();
        assert_eq!(e.checked_at, 1_700_000_000);
        assert_eq!(e.fetched_at, 1_700_000_000);
        assert_eq!(e.policy_id.as_str(), "abc");
        assert_eq!(e.policy.max_age().as_secs(), 86_400);
    }

    #[test]
    fn keeps_our_fetched_at() {
        let e = decode_entry("example.com", Some(20), Some("abc"), Some(BODY), Some(10)).unwrap();
        assert_eq!((e.checked_at, e.fetched_at), (20, 10));
    }

    #[test]
    fn round_trips_policy_json() {
        let e = decode_entry("example.com", Some(1), Some("abc"), Some(BODY), None).unwrap();
        let again = decode_entry(
            "example.com",
            Some(1),
            Some("abc"),
            Some(&policy_json(&e.policy)),
            None,
        )
        .unwrap();
        assert_eq!(e, again);
    }

    #[test]
    fn corrupt_rows_are_typed_errors() {
        let cases: [(Option<i64>, Option<&str>, Option<&str>); 6] = [
            (None, Some("abc"), Some(BODY)),
            (Some(-1), Some("abc"), Some(BODY)),
            (Some(1), Some("not valid!"), Some(BODY)),
            (Some(1), None, Some(BODY)),
            (Some(1), Some("abc"), Some("{not json")),
            (
                Some(1),
                Some("abc"),
                Some(r#"{"version": "STSv1", "mode": "bogus"}"#),
            ),
        ];
        for (ts, id, body) in cases {
            let err = decode_entry("bad.example", ts, id, body, None).unwrap_err();
            assert_eq!(err.kind(), "corrupt", "{ts:?} {id:?} {body:?}");
            assert!(
                matches!(err, CacheError::Corrupt { ref domain, .. } if domain == "bad.example")
            );
        }
    }

    #[test]
    fn accepts_every_shape_the_python_daemon_stored() {
        // max_age as a string (before the daemon converted it), an empty key from a blank policy line,
        // unknown keys in file order, unnormalised mx.
        let cases = [
            (
                r#"{"mx": ["a.example"], "version": "STSv1", "mode": "enforce", "max_age": "86400"}"#,
                0,
            ),
            (
                r#"{"mx": ["a.example"], "version": "STSv1", "mode": "enforce", "max_age": 86400, "": ""}"#,
                0,
            ),
            (
                r#"{"mx": ["a.example"], "version": "STSv1", "mode": "enforce", "max_age": 1, "x": "y", "a": "b"}"#,
                2,
            ),
            (
                r#"{"mx": ["A.Example."], "version": "STSv1", "mode": "enforce", "max_age": 86400}"#,
                0,
            ),
        ];
        for (body, extensions) in cases {
            let e = decode_entry("d.example", Some(1), Some("x"), Some(body), None).unwrap();
            assert_eq!(e.policy.mx()[0].as_str(), "a.example", "{body}");
            assert_eq!(e.policy.extensions().len(), extensions, "{body}");
        }
    }
}
