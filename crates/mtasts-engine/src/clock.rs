//! Time sources: the wall clock (what stores keep, what RFC 8461 §5.1 counts `max_age` in) and monotonic time
//! (what the engine's in-memory deadlines follow, so a wall clock that steps neither stretches nor cuts them).

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A source of time: the wall clock and monotonic time.
///
/// The engine reads the time only through this trait, so tests (and simulations) can move time without sleeping;
/// see [`ManualClock`]. Times written to stores are wall-clock Unix seconds (RFC 8461 §5.1 counts `max_age` from
/// the fetch time, and hosts sharing a store must agree on it); deadlines kept in memory (`cache_grace`, the
/// failure back-off, a cached "no policy", a policy's expiry once read) are monotonic, with sub-second
/// precision.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The wall clock: the time since the Unix epoch, with sub-second precision.
    fn wall(&self) -> Duration;

    /// Monotonic time, for in-memory deadlines. Default: tokio's clock ([`Instant::now`]), so tests with paused
    /// time drive it.
    fn monotonic(&self) -> Instant {
        Instant::now()
    }

    /// The wall clock in whole seconds since the Unix epoch (what the stores keep).
    fn now(&self) -> u64 {
        self.wall().as_secs()
    }
}

/// The system wall clock, and tokio's monotonic clock.
///
/// ```
/// use mtasts_engine::{Clock, SystemClock};
/// assert!(SystemClock.now() > 1_600_000_000);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall(&self) -> Duration {
        // A clock before 1970 is not something to fail a lookup over: treat it as the epoch.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// A clock that only moves when told to: for tests.
///
/// [`ManualClock::advance`] lets time pass (the wall clock and monotonic time move together);
/// [`ManualClock::set`] and [`ManualClock::step`] move the wall clock alone, as an administrator or NTP stepping
/// the system clock would: deadlines kept in memory do not move.
///
/// ```
/// use std::time::Duration;
/// use mtasts_engine::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// let start = clock.monotonic();
/// clock.advance(Duration::from_millis(61_500));
/// assert_eq!(clock.wall(), Duration::from_millis(1_061_500));
/// assert_eq!(clock.now(), 1_061);
/// clock.set(5);
/// assert_eq!(clock.now(), 5);
/// assert_eq!(clock.monotonic() - start, Duration::from_millis(61_500));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    origin: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    wall: Duration,
    elapsed: Duration,
}

impl ManualClock {
    /// A clock showing `start` (Unix seconds).
    #[must_use]
    pub fn new(start: u64) -> Self {
        Self {
            origin: Instant::now(),
            state: Mutex::new(State {
                wall: Duration::from_secs(start),
                elapsed: Duration::ZERO,
            }),
        }
    }

    /// Lets `by` pass: the wall clock and monotonic time move forward together.
    pub fn advance(&self, by: Duration) {
        self.update(|s| {
            s.wall = s.wall.saturating_add(by);
            s.elapsed = s.elapsed.saturating_add(by);
        });
    }

    /// Sets the wall clock to `now` (Unix seconds), forwards or backwards; monotonic time does not move.
    pub fn set(&self, now: u64) {
        self.update(|s| s.wall = Duration::from_secs(now));
    }

    /// Steps the wall clock back (`forward: false`) or forth by `by`; monotonic time does not move.
    pub fn step(&self, by: Duration, forward: bool) {
        self.update(|s| {
            s.wall = if forward {
                s.wall.saturating_add(by)
            } else {
                s.wall.saturating_sub(by)
            };
        });
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn state(&self) -> State {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn wall(&self) -> Duration {
        self.state().wall
    }

    fn monotonic(&self) -> Instant {
        self.origin + self.state().elapsed
    }
}

/// One reading of a [`Clock`]: the wall clock and monotonic time at the same moment, and the conversions
/// between stored (wall-clock) times and in-memory (monotonic) ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// Since the Unix epoch.
    pub(crate) wall: Duration,
    pub(crate) mono: Instant,
}

impl Now {
    pub(crate) fn read(clock: &dyn Clock) -> Self {
        Self {
            wall: clock.wall(),
            mono: clock.monotonic(),
        }
    }

    /// The wall clock in whole seconds (what stores keep).
    pub(crate) const fn secs(&self) -> u64 {
        self.wall.as_secs()
    }

    /// How long ago the stored time `secs` was (zero when it is later than now).
    pub(crate) fn since(&self, secs: u64) -> Duration {
        self.wall.saturating_sub(Duration::from_secs(secs))
    }

    /// How long until the stored time `secs` (zero when it has passed), sub-second: 1.3 s from 1000.7 to 1002.
    pub(crate) fn until(&self, secs: u64) -> Duration {
        Duration::from_secs(secs).saturating_sub(self.wall)
    }

    /// The monotonic time `by` from now; see [`later`].
    pub(crate) fn after(&self, by: Duration) -> Instant {
        later(self.mono, by)
    }

    /// The monotonic time `ago` before now, or `None` ("long ago") when the monotonic clock does not reach that
    /// far back.
    pub(crate) fn before(&self, ago: Duration) -> Option<Instant> {
        self.mono.checked_sub(ago)
    }
}

/// `by` after `at`; a century after it (never, in practice) when `at + by` cannot be represented.
pub(crate) fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_convert_with_sub_second_precision() {
        let clock = ManualClock::new(1_000);
        clock.advance(Duration::from_millis(700));
        let now = Now::read(&clock);
        assert_eq!(now.secs(), 1_000);
        assert_eq!(now.until(1_002), Duration::from_millis(1_300));
        assert_eq!(now.until(999), Duration::ZERO);
        assert_eq!(now.since(999), Duration::from_millis(1_700));
        assert_eq!(now.since(2_000), Duration::ZERO);
        assert_eq!(now.before(Duration::ZERO), Some(now.mono));
        assert_eq!(now.before(Duration::MAX), None);
        assert!(now.after(Duration::MAX) > now.mono);
    }

    #[test]
    fn a_wall_clock_step_does_not_move_monotonic_time() {
        let clock = ManualClock::new(1_000);
        let start = clock.monotonic();
        clock.step(Duration::from_secs(3_600), false);
        clock.set(5_000);
        clock.step(Duration::from_secs(10), true);
        assert_eq!(clock.now(), 5_010);
        assert_eq!(clock.monotonic(), start);
        clock.advance(Duration::from_secs(2));
        assert_eq!(
            (clock.now(), clock.monotonic() - start),
            (5_012, Duration::from_secs(2))
        );
    }
}
