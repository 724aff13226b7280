//! [`ReconnectingCache`]: a store that is opened in the background and watched, so that a store that is down,
//! hung or cannot be opened never stops or slows its user.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::{CacheEntry, CacheError, PolicyCache, ScanPage, ScanToken};

/// What [`ReconnectingCache::new`]'s opener returns: a future opening the store.
pub type OpenFuture =
    Pin<Box<dyn Future<Output = Result<Arc<dyn PolicyCache>, CacheError>> + Send + 'static>>;

/// What [`ReconnectingCache::on_status`] calls.
type StatusFn = Box<dyn Fn(bool) + Send + Sync>;

/// The first wait before opening or probing again after a failure; it doubles after each failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// The longest one attempt (opening, or probing) may take.
const ATTEMPT_CAP: Duration = Duration::from_secs(60);

/// A [`PolicyCache`] opened in the background and watched: a store that is down, hung or cannot be opened
/// costs its user nothing but misses.
///
/// - [`ReconnectingCache::new`] returns at once (it needs a tokio runtime) and opens the store in a task of its
///   own with the given opener, checking that it answers (it reads the proactive refresh time). An operation
///   made during that first attempt waits for it (callers bound their waits: the engine gives a read a quarter
///   of the lookup's timeout, and writes are queued), so that a daemon asked at once after it starts uses a
///   store that opens in milliseconds. Once the first attempt failed, every operation fails at once with
///   [`CacheError::Unavailable`] until an attempt succeeds, so the caller goes on without the store (the engine
///   discovers over the network and answers from memory).
/// - A failed attempt is retried after [`FIRST_RETRY`], doubling to [`MAX_RETRY`]. The cause is logged once per
///   outage (a warning; an error when the options are refused, [`CacheError::Config`]), and again, once, when
///   the store is back.
/// - Once open, operations go to the store. One that fails with a transient error (unavailable, timeout) marks
///   the store down: later operations fail at once, without waiting for the store's timeout, while the task
///   probes it again with the same back-off, and lets them through once it answers.
/// - [`ReconnectingCache::is_up`], [`ReconnectingCache::watch`] and [`ReconnectingCache::on_status`] tell the
///   state, e.g. for a `mtasts_store_up` gauge.
///
/// ```
/// use std::sync::Arc;
/// use mtasts_cache::{MemoryCache, PolicyCache, ReconnectingCache};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cache = ReconnectingCache::new("memory", || {
///     Box::pin(async { Ok(Arc::new(MemoryCache::new(100)) as Arc<dyn PolicyCache>) })
/// });
/// let mut up = cache.watch();
/// let _ = up.wait_for(|up| *up).await;
/// assert!(cache.get("example.com").await.is_ok_and(|entry| entry.is_none()));
/// # }
/// ```
pub struct ReconnectingCache {
    shared: Arc<Shared>,
}

struct Shared {
    kind: &'static str,
    /// Where the store is, for the log lines.
    target: Option<String>,
    state: Mutex<State>,
    /// Wakes the task when an operation found the store in trouble, or when the store is closed.
    trouble: Notify,
    up: watch::Sender<bool>,
    /// Whether the first attempt to open the store is over (or the cache closed): until then, operations wait.
    first_attempt_over: watch::Sender<bool>,
    on_status: Mutex<Option<StatusFn>>,
}

#[derive(Default)]
struct State {
    /// The store, once opened.
    store: Option<Arc<dyn PolicyCache>>,
    up: bool,
    /// Why it is not up (the last failure), for the errors operations get meanwhile.
    cause: Option<CacheError>,
    closed: bool,
}

/// The cause of the errors operations get while the store is not up.
#[derive(Debug)]
struct NotUp {
    cause: Option<CacheError>,
}

impl fmt::Display for NotUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            None => f.write_str("not open yet"),
            Some(_) => f.write_str("down, retrying in the background"),
        }
    }
}

impl StdError for NotUp {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.cause.as_ref().map(|e| e as &(dyn StdError + 'static))
    }
}

impl ReconnectingCache {
    /// A store of kind `kind` (`"sqlite"`, `"redis"`, … for errors and logs) that `open` opens, opened and
    /// watched in a task of its own. Must be called inside a tokio runtime.
    pub fn new<F>(kind: &'static str, open: F) -> Self
    where
        F: Fn() -> OpenFuture + Send + Sync + 'static,
    {
        Self::with_target(kind, None, open)
    }

    /// [`ReconnectingCache::new`], the log lines naming where the store is (`target`: a file, an address; no
    /// password), so that "unavailable" says which store.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mtasts_cache::{MemoryCache, PolicyCache, ReconnectingCache};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache = ReconnectingCache::with_target("memory", Some("in-process".to_owned()), || {
    ///     Box::pin(async { Ok(Arc::new(MemoryCache::new(100)) as Arc<dyn PolicyCache>) })
    /// });
    /// let _ = cache.watch().wait_for(|up| *up).await;
    /// # }
    /// ```
    pub fn with_target<F>(kind: &'static str, target: Option<String>, open: F) -> Self
    where
        F: Fn() -> OpenFuture + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            kind,
            target,
            state: Mutex::new(State::default()),
            trouble: Notify::new(),
            up: watch::Sender::new(false),
            first_attempt_over: watch::Sender::new(false),
            on_status: Mutex::new(None),
        });
        tokio::spawn(supervise(Arc::clone(&shared), open));
        Self { shared }
    }

    /// Calls `f` with the store's state now (`false`: not up) and on every change, e.g. to set a gauge.
    #[must_use]
    pub fn on_status(self, f: impl Fn(bool) + Send + Sync + 'static) -> Self {
        let mut slot = self
            .shared
            .on_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(*self.shared.up.borrow());
        *slot = Some(Box::new(f));
        drop(slot);
        self
    }

    /// Whether the store is open and answering.
    #[must_use]
    pub fn is_up(&self) -> bool {
        *self.shared.up.borrow()
    }

    /// The store's state (`true`: up), to wait for a change.
    #[must_use]
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.shared.up.subscribe()
    }

    /// Runs `op` on the store if it is up (waiting for the first attempt to open it, if that is still under
    /// way); marks it down when `op` fails with a transient error.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(Arc<dyn PolicyCache>) -> Fut,
        Fut: Future<Output = Result<T, CacheError>>,
    {
        let mut first_attempt = self.shared.first_attempt_over.subscribe();
        let store = loop {
            {
                let state = self.shared.lock();
                if state.closed {
                    return Err(CacheError::Closed {
                        store: self.shared.kind,
                    });
                }
                match (&state.store, state.up) {
                    (Some(store), true) => break Arc::clone(store),
                    _ if !*first_attempt.borrow_and_update() => {}
                    _ => {
                        return Err(CacheError::Unavailable {
                            store: self.shared.kind,
                            source: Arc::new(NotUp {
                                cause: state.cause.clone(),
                            }),
                        });
                    }
                }
            }
            // The first attempt is under way; it ends within ATTEMPT_CAP (twice, with the probe).
            if first_attempt.wait_for(|over| *over).await.is_err() {
                return Err(CacheError::Closed {
                    store: self.shared.kind,
                });
            }
        };
        let result = op(store).await;
        if let Err(error) = &result
            && error.is_transient()
        {
            self.shared.down(error);
        }
        result
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An operation failed with `error` (transient): the store is down until a probe says otherwise.
    fn down(&self, error: &CacheError) {
        let mut state = self.lock();
        if !state.up || state.closed {
            return;
        }
        state.up = false;
        state.cause = Some(error.clone());
        drop(state);
        tracing::warn!(
            store = self.kind,
            location = self.target.as_deref(),
            error = %error.with_causes(),
            "cache store unavailable; answering from memory and the network, retrying in the background"
        );
        self.publish(false);
        self.trouble.notify_one();
    }

    fn publish(&self, up: bool) {
        self.up.send_replace(up);
        if let Some(f) = &*self
            .on_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            f(up);
        }
    }
}

/// Opens the store, then probes it after each failure, with back-off, until it is closed.
async fn supervise<F>(shared: Arc<Shared>, open: F)
where
    F: Fn() -> OpenFuture + Send + Sync + 'static,
{
    let mut delay = FIRST_RETRY;
    // When the current outage began, and whether it was logged (nothing logged before the first attempt).
    let mut outage = (Instant::now(), false);
    loop {
        let store = shared.lock().store.clone();
        let attempt = match store {
            Some(store) => probe(shared.kind, &store).await.map(|()| store),
            None => match capped(shared.kind, open()).await {
                Ok(store) => probe(shared.kind, &store).await.map(|()| store),
                Err(error) => Err(error),
            },
        };
        let closed = {
            let mut state = shared.lock();
            if !state.closed {
                match &attempt {
                    Ok(store) => {
                        state.store = Some(Arc::clone(store));
                        state.up = true;
                        state.cause = None;
                    }
                    Err(error) => state.cause = Some(error.clone()),
                }
            }
            state.closed
        };
        match attempt {
            Ok(store) if closed => {
                store.close().await;
                return;
            }
            Ok(_) => {
                let (since, logged) = outage;
                if logged {
                    let down_for_secs = since.elapsed().as_secs();
                    tracing::info!(
                        store = shared.kind,
                        location = shared.target.as_deref(),
                        down_for_secs,
                        "cache store is back"
                    );
                } else {
                    tracing::debug!(store = shared.kind, "cache store open");
                }
                delay = FIRST_RETRY;
                shared.publish(true);
                shared.first_attempt_over.send_replace(true);
                // Up until an operation finds it in trouble (it logs why) or it is closed.
                shared.trouble.notified().await;
                outage = (Instant::now(), true);
            }
            Err(_) if closed => return,
            Err(error) => {
                if outage.1 {
                    tracing::debug!(store = shared.kind, location = shared.target.as_deref(), error = %error.with_causes(), "cache store still unavailable");
                } else {
                    log_failure(shared.kind, shared.target.as_deref(), &error, delay);
                    outage.1 = true;
                }
                shared.first_attempt_over.send_replace(true);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shared.trouble.notified() => {}
                }
                delay = (delay * 2).min(MAX_RETRY);
            }
        }
        if shared.lock().closed {
            return;
        }
    }
}

/// Whether `store` answers (a read of one small value); a non-transient error (a corrupt value, a refused
/// query) means it does.
async fn probe(kind: &'static str, store: &Arc<dyn PolicyCache>) -> Result<(), CacheError> {
    match capped(kind, store.proactive_fetch_ts()).await {
        Err(error) if error.is_transient() => Err(error),
        Ok(_) | Err(_) => Ok(()),
    }
}

/// `op`, failing with [`CacheError::Timeout`] after [`ATTEMPT_CAP`]: stores bound their operations by their own
/// timeouts; this only keeps one that does not from stopping the retries.
async fn capped<T>(
    kind: &'static str,
    op: impl Future<Output = Result<T, CacheError>>,
) -> Result<T, CacheError> {
    tokio::time::timeout(ATTEMPT_CAP, op)
        .await
        .unwrap_or(Err(CacheError::Timeout {
            store: kind,
            after: ATTEMPT_CAP,
        }))
}

fn log_failure(kind: &'static str, target: Option<&str>, error: &CacheError, retry: Duration) {
    let retry_secs = retry.as_secs();
    let config = error.kind() == "config";
    let error = error.with_causes();
    if config {
        tracing::error!(store = kind, location = target, %error, retry_secs, "cannot open the cache store; answering from memory and the network, retrying");
    } else {
        tracing::warn!(store = kind, location = target, %error, retry_secs, "cache store unavailable; answering from memory and the network, retrying in the background");
    }
}

impl fmt::Debug for ReconnectingCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("ReconnectingCache")
            .field("kind", &self.shared.kind)
            .field("up", &state.up)
            .field("store", &state.store)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl PolicyCache for ReconnectingCache {
    async fn get(&self, domain: &str) -> Result<Option<CacheEntry>, CacheError> {
        self.run(|s| async move { s.get(domain).await }).await
    }

    async fn set(&self, domain: &str, entry: &CacheEntry) -> Result<bool, CacheError> {
        self.run(|s| async move { s.set(domain, entry).await })
            .await
    }

    async fn scan(
        &self,
        token: Option<&ScanToken>,
        page_size: usize,
    ) -> Result<ScanPage, CacheError> {
        self.run(|s| async move { s.scan(token, page_size).await })
            .await
    }

    async fn remove(&self, domain: &str) -> Result<bool, CacheError> {
        self.run(|s| async move { s.remove(domain).await }).await
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        self.run(|s| async move { s.clear().await }).await
    }

    async fn proactive_fetch_ts(&self) -> Result<Option<u64>, CacheError> {
        self.run(|s| async move { s.proactive_fetch_ts().await })
            .await
    }

    async fn set_proactive_fetch_ts(&self, ts: u64) -> Result<(), CacheError> {
        self.run(|s| async move { s.set_proactive_fetch_ts(ts).await })
            .await
    }

    /// Closes the store and stops watching it; later operations fail with [`CacheError::Closed`].
    async fn close(&self) {
        let store = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.up = false;
            state.store.take()
        };
        self.shared.trouble.notify_one();
        self.shared.first_attempt_over.send_replace(true);
        if let Some(store) = store {
            store.close().await;
        }
    }
}
