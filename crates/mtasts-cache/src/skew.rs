//! Clock skew between hosts that share a store.
//!
//! A host whose clock runs ahead writes times from the future. Read as they are, they would make its entries look
//! checked forever (no re-check, no expiry), and newer-wins writes could never replace them. So a stored time
//! more than [`MAX_CLOCK_SKEW`] later than this host's clock counts as now ([`clamp_skewed`]), and every store's
//! newer-wins guard lets a write replace an entry whose `checked_at` lies beyond [`skew_limit`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far a stored time may lie ahead of this host's clock and still count as itself: 60 s, more than hosts
/// kept in time by NTP ever drift apart, much less than any `cache_grace` or `max_age` worth having.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Whether the stored time `ts` (Unix seconds) lies more than [`MAX_CLOCK_SKEW`] after `now`.
///
/// ```
/// use mtasts_cache::is_skewed;
/// assert!(!is_skewed(1_060, 1_000));
/// assert!(is_skewed(1_061, 1_000));
/// ```
#[must_use]
pub const fn is_skewed(ts: u64, now: u64) -> bool {
    ts > now.saturating_add(MAX_CLOCK_SKEW.as_secs())
}

/// The stored time `ts` as this host counts it at `now`: itself, or `now` when it lies more than
/// [`MAX_CLOCK_SKEW`] in the future.
///
/// ```
/// use mtasts_cache::clamp_skewed;
/// assert_eq!(clamp_skewed(1_030, 1_000), 1_030);
/// assert_eq!(clamp_skewed(9_999, 1_000), 1_000);
/// ```
#[must_use]
pub const fn clamp_skewed(ts: u64, now: u64) -> u64 {
    if is_skewed(ts, now) { now } else { ts }
}

/// The latest `checked_at` a store keeps against an older write, by this host's system clock: now plus
/// [`MAX_CLOCK_SKEW`]. An entry checked later than this counts as checked now, so any write replaces it (see
/// [`PolicyCache::set`](crate::PolicyCache::set)).
///
/// ```
/// let limit = mtasts_cache::skew_limit();
/// assert!(limit > 1_700_000_000 + 60);
/// ```
#[must_use]
pub fn skew_limit() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now.saturating_add(MAX_CLOCK_SKEW.as_secs())
}
