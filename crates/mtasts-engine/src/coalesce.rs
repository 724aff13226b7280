//! One flight per key: concurrent callers that ask about the same key share one task and its result.
//!
//! The task runs on its own (`tokio::spawn`), so a caller that gives up (times out or is dropped) does not cancel
//! it for the others. Its key leaves the map when it ends, however it ends (even by a panic), before its result
//! is published: a caller that arrives later starts a new flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// A flight's result, once it has one.
pub(crate) type Flight<T> = watch::Receiver<Option<T>>;

/// The flights running now, by key.
#[derive(Debug)]
pub(crate) struct Flights<T> {
    running: Mutex<HashMap<Arc<str>, Flight<T>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Self {
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// Joins the flight running for `key`, or starts the future `start` makes as one, in its own task (`start`
    /// is only called then). `true` when started here.
    pub(crate) fn join_or_start<F>(
        self: &Arc<Self>,
        key: &str,
        start: impl FnOnce() -> F,
    ) -> (Flight<T>, bool)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut running = self.lock();
        if let Some(flight) = running.get(key) {
            return (flight.clone(), false);
        }
        let (tx, rx) = watch::channel(None);
        let key: Arc<str> = Arc::from(key);
        running.insert(Arc::clone(&key), rx.clone());
        drop(running);
        // Created before spawning: if the task never runs, dropping it still clears the map entry.
        let landing = Landing {
            flights: Arc::clone(self),
            key,
        };
        let flight = start();
        tokio::spawn(async move {
            let result = flight.await;
            // Out of the map first, so a caller that misses from now on starts afresh.
            drop(landing);
            tx.send_replace(Some(result));
        });
        (rx, true)
    }

    /// Whether no flight is running.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Flight<T>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Waits for a flight's result, at most `budget` when given. `None` when the budget ran out or the flight ended
/// without a result (its task panicked or was cancelled).
pub(crate) async fn wait<T: Clone>(flight: &mut Flight<T>, budget: Option<Duration>) -> Option<T> {
    let landed = flight.wait_for(Option::is_some);
    let result = match budget {
        Some(budget) => tokio::time::timeout(budget, landed).await.ok()?,
        None => landed.await,
    };
    result.ok().and_then(|value| (*value).clone())
}

/// Removes a flight's key from the map when its task ends, however it ends.
struct Landing<T> {
    flights: Arc<Flights<T>>,
    key: Arc<str>,
}

impl<T> Drop for Landing<T> {
    fn drop(&mut self) {
        self.flights
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&*self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_caller_joins_the_running_flight_and_both_get_its_result() {
        let flights = Arc::new(Flights::default());
        let (gate, open) = tokio::sync::oneshot::channel::<()>();
        let (mut first, started) = flights.join_or_start("k", || async move {
            let _ = open.await;
            7
        });
        let (mut second, joined) = flights.join_or_start("k", || async { unreachable!() });
        assert!(started && !joined);
        assert!(!flights.is_empty());
        let _ = gate.send(());
        assert_eq!(wait(&mut first, None).await, Some(7));
        assert_eq!(wait(&mut second, None).await, Some(7));
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn a_panicking_flight_leaves_the_map_without_a_result() {
        let flights: Arc<Flights<u8>> = Arc::new(Flights::default());
        let (mut flight, _) =
            flights.join_or_start("k", || async { panic!("flight told to panic") });
        assert_eq!(wait(&mut flight, None).await, None);
        assert!(flights.is_empty());
        let (mut again, started) = flights.join_or_start("k", || async { 1 });
        assert!(started);
        assert_eq!(wait(&mut again, None).await, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_does_not_cancel_the_flight() {
        let flights = Arc::new(Flights::default());
        let (mut impatient, _) = flights.join_or_start("k", || async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            3
        });
        assert_eq!(
            wait(&mut impatient, Some(Duration::from_secs(1))).await,
            None
        );
        let (mut patient, joined_late) = flights.join_or_start("k", || async { unreachable!() });
        assert!(!joined_late);
        assert_eq!(wait(&mut patient, None).await, Some(3));
    }
}
