//! Log lines that one fault can repeat many times a second (a failing accept, a client sending garbage) are
//! written at most once per interval; the ones left out are counted, and the next line written says how many.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Lets one log line through per `interval` ([`LogLimiter::check`]). Reads tokio's clock, so paused-time
/// tests drive it.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// When the next line may be written; `None`: at once.
    next: Option<Instant>,
    /// Lines left out since the last one written.
    suppressed: u64,
}

impl LogLimiter {
    /// At most one line per `interval`.
    pub(crate) const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State {
                next: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)`: write the line now, saying that `n` lines were left out since the last one; `None`: leave
    /// it out.
    pub(crate) fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.next.is_some_and(|next| now < next) {
            state.suppressed += 1;
            return None;
        }
        state.next = Some(now + self.interval);
        Some(std::mem::take(&mut state.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_and_the_count_of_those_left_out() {
        let limiter = LogLimiter::new(Duration::from_secs(1));
        assert_eq!(limiter.check(), Some(0));
        for _ in 0..20 {
            tokio::time::advance(Duration::from_millis(40)).await;
            assert_eq!(limiter.check(), None);
        }
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(limiter.check(), Some(20));
        assert_eq!(limiter.check(), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(limiter.check(), Some(1));
    }
}
