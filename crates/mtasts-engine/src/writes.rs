//! The engine's store writes, queued: no answer waits for the store.
//!
//! A refresh hands its write ([`StoreWrite`]) to [`Writes::push`], which never waits: one task performs the
//! queued writes in order, each bounded by [`STORE_CAP`]. At most [`MAX_QUEUED`] writes wait for a slow store;
//! more are dropped and counted (the entry is written again at the domain's next check).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mtasts_cache::{CacheError, PolicyCache};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::freshness::StoreWrite;
use crate::stats::Count;

/// How many writes may wait for the store.
pub(crate) const MAX_QUEUED: usize = 1_000;
/// The longest the engine waits on one store operation. Stores bound their operations by their own timeouts;
/// this only keeps a misbehaving store from stopping the writes (or a proactive pass) forever.
pub(crate) const STORE_CAP: Duration = Duration::from_secs(15);

/// A job of the writer task.
enum Job {
    Write {
        key: Arc<str>,
        write: StoreWrite,
        /// The purge generation when the refresh that made it started: a later purge drops it.
        generation: u64,
    },
    /// Done when every job queued before it is.
    Flush(oneshot::Sender<()>),
}

/// The queue of store writes and the task that performs them.
#[derive(Debug)]
pub(crate) struct Writes {
    queue: mpsc::Sender<Job>,
    dropped: Count,
    /// Rate limit for the "dropped" warning.
    warned: Every,
}

/// The counters the writer task keeps.
pub(crate) struct WriteStats {
    pub(crate) errors: Count,
    pub(crate) dropped: Count,
}

impl Writes {
    /// Starts the writer task on `store`; `purges` counts the engine's purges. Must run inside a tokio
    /// runtime. The task ends once the queue is dropped and empty.
    pub(crate) fn start(
        store: Arc<dyn PolicyCache>,
        stats: WriteStats,
        purges: Arc<AtomicU64>,
    ) -> Self {
        let (queue, jobs) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(write_all(store, jobs, stats.errors, purges));
        Self {
            queue,
            dropped: stats.dropped,
            warned: Every::second(),
        }
    }

    /// Queues `write` for `key`, learnt by a refresh that started at purge `generation` (a purge after it
    /// drops the write); drops (and counts) it when [`MAX_QUEUED`] writes are waiting already.
    pub(crate) fn push(&self, key: &str, write: StoreWrite, generation: u64) {
        if matches!(write, StoreWrite::Nothing) {
            return;
        }
        let job = Job::Write {
            key: Arc::from(key),
            write,
            generation,
        };
        if self.queue.try_send(job).is_err() {
            self.dropped.inc();
            if self.warned.ready() {
                warn!(
                    domain = key,
                    queued = MAX_QUEUED,
                    "policy cache too slow: write dropped (the entry is written again at its next check)"
                );
            }
        }
    }

    /// Waits until the writes queued so far are done (or dropped by a failure).
    pub(crate) async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.queue.send(Job::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

/// Performs the queued jobs in order, until the queue is dropped. A write learnt before the last purge is
/// dropped: the purge wins (a purge waits for the writes queued before it before it touches the store).
async fn write_all(
    store: Arc<dyn PolicyCache>,
    mut jobs: mpsc::Receiver<Job>,
    errors: Count,
    purges: Arc<AtomicU64>,
) {
    let warned = Every::second();
    while let Some(job) = jobs.recv().await {
        let (key, write) = match job {
            Job::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Job::Write {
                generation, key, ..
            } if purges.load(Ordering::Acquire) != generation => {
                debug!(
                    domain = &*key,
                    "purged since the refresh; store write dropped"
                );
                continue;
            }
            Job::Write { key, write, .. } => (key, write),
        };
        let (what, result) = match &write {
            StoreWrite::Nothing => continue,
            StoreWrite::Set(entry) => ("write", bounded(store.set(&key, entry)).await.map(drop)),
            StoreWrite::Remove => ("removal", bounded(store.remove(&key)).await.map(drop)),
        };
        if let Err(error) = result {
            errors.inc();
            if warned.ready() {
                warn!(domain = &*key, kind = error.kind(), error = %error.with_causes(), "policy cache {what} failed");
            } else {
                debug!(domain = &*key, kind = error.kind(), %error, "policy cache {what} failed");
            }
        }
    }
}

/// `op`, failing with [`CacheError::Timeout`] after [`STORE_CAP`].
pub(crate) async fn bounded<T>(
    op: impl Future<Output = Result<T, CacheError>>,
) -> Result<T, CacheError> {
    tokio::time::timeout(STORE_CAP, op)
        .await
        .unwrap_or(Err(CacheError::Timeout {
            store: "engine",
            after: STORE_CAP,
        }))
}

/// A rate limit: [`Every::ready`] says yes at most once per interval (for log lines).
#[derive(Debug)]
pub(crate) struct Every {
    interval: Duration,
    last: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Every {
    pub(crate) const fn second() -> Self {
        Self {
            interval: Duration::from_secs(1),
            last: std::sync::Mutex::new(None),
        }
    }

    /// Whether the interval has passed since it last said yes (or it never did).
    pub(crate) fn ready(&self) -> bool {
        let now = tokio::time::Instant::now();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.interval) {
            return false;
        }
        *last = Some(now);
        true
    }
}
