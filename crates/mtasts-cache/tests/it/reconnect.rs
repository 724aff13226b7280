//! [`ReconnectingCache`]: the conformance suite through it, and its opening, back-off and recovery with paused
//! time over a memory store whose faults a switch turns on (the real faults, a refused, silent or locked
//! server, are in the daemon's tests).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mtasts_cache::conformance::{Harness, sample_entry};
use mtasts_cache::{
    CacheEntry, CacheError, MemoryCache, PolicyCache, ReconnectingCache, ScanPage, ScanToken,
    async_trait,
};
use tokio::time::Instant;

/// A memory store through a [`ReconnectingCache`], once it is up.
struct Reconnecting(Arc<dyn PolicyCache>);

#[async_trait]
impl Harness for Reconnecting {
    async fn create() -> Option<Self> {
        let memory: Arc<dyn PolicyCache> = Arc::new(MemoryCache::new(20_000));
        let cache = ReconnectingCache::new("memory", move || {
            let memory = Arc::clone(&memory);
            Box::pin(async move { Ok(memory) })
        });
        up(&cache).await;
        Some(Self(Arc::new(cache)))
    }

    async fn store(&self) -> Arc<dyn PolicyCache> {
        Arc::clone(&self.0)
    }
}

mtasts_cache::conformance_tests!(Reconnecting: basic, shared_storage);

/// Waits until `cache` is up; fails after 1000 s (of paused or real time) instead of hanging.
async fn up(cache: &ReconnectingCache) {
    let mut watch = cache.watch();
    let wait = watch.wait_for(|up| *up);
    assert!(
        tokio::time::timeout(Duration::from_secs(1_000), wait)
            .await
            .is_ok_and(|r| r.is_ok()),
        "the store did not come up"
    );
}

/// A memory store that fails every operation with a timeout while `broken` is on, counting the operations
/// that reach it.
#[derive(Debug, Default)]
struct Switchable {
    memory: MemoryCache,
    broken: AtomicBool,
    calls: AtomicUsize,
}

impl Switchable {
    async fn on<T>(
        &self,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.broken.load(Ordering::SeqCst) {
            return Err(CacheError::Timeout {
                store: "memory",
                after: Duration::from_secs(5),
            });
        }
        op.await
    }
}

#[async_trait]
impl PolicyCache for Switchable {
    async fn get(&self, domain: &str) -> Result<Option<CacheEntry>, CacheError> {
        self.on(self.memory.get(domain)).await
    }
    async fn set(&self, domain: &str, entry: &CacheEntry) -> Result<bool, CacheError> {
        self.on(self.memory.set(domain, entry)).await
    }
    async fn scan(&self, token: Option<&ScanToken>, size: usize) -> Result<ScanPage, CacheError> {
        self.on(self.memory.scan(token, size)).await
    }
    async fn remove(&self, domain: &str) -> Result<bool, CacheError> {
        self.on(self.memory.remove(domain)).await
    }
    async fn clear(&self) -> Result<u64, CacheError> {
        self.on(self.memory.clear()).await
    }
    async fn proactive_fetch_ts(&self) -> Result<Option<u64>, CacheError> {
        self.on(self.memory.proactive_fetch_ts()).await
    }
    async fn set_proactive_fetch_ts(&self, ts: u64) -> Result<(), CacheError> {
        self.on(self.memory.set_proactive_fetch_ts(ts)).await
    }
    async fn close(&self) {}
}

/// A cache whose opener fails `failures` times (with a refused connection), recording when each attempt was
/// made (seconds after the start), then opens `store`.
fn opening_after(
    failures: usize,
    store: &Arc<Switchable>,
) -> (ReconnectingCache, Arc<Mutex<Vec<u64>>>) {
    let start = Instant::now();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(store);
    let log = Arc::clone(&attempts);
    let cache = ReconnectingCache::new("memory", move || {
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        log.push(start.elapsed().as_secs());
        let result = if log.len() <= failures {
            let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            Err(CacheError::unavailable("memory", refused))
        } else {
            Ok(Arc::clone(&store) as Arc<dyn PolicyCache>)
        };
        Box::pin(async move { result })
    });
    (cache, attempts)
}

fn attempts(log: &Mutex<Vec<u64>>) -> Vec<u64> {
    log.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Until it is open every operation fails at once; attempts come 1 s after the first failure, doubling to 30 s;
/// the state is reported as it changes.
#[tokio::test(start_paused = true)]
async fn opens_in_the_background_retrying_with_back_off() {
    let store = Arc::new(Switchable::default());
    let (cache, log) = opening_after(8, &store);
    let states = Arc::new(Mutex::new(Vec::new()));
    let cache = cache.on_status({
        let states = Arc::clone(&states);
        move |up| {
            states
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(up);
        }
    });
    let before = Instant::now();
    match cache.get("example.com").await {
        Err(error) => assert_eq!(error.kind(), "unavailable", "{error}"),
        Ok(entry) => panic!("answered {entry:?} before the store was open"),
    }
    assert_eq!(
        before.elapsed(),
        Duration::ZERO,
        "the failure was not at once"
    );
    assert!(!cache.is_up());

    up(&cache).await;
    assert_eq!(attempts(&log), [0, 1, 3, 7, 15, 31, 61, 91, 121]);
    assert!(cache.get("example.com").await.is_ok());
    assert_eq!(
        *states.lock().unwrap_or_else(PoisonError::into_inner),
        [false, true]
    );
}

/// An operation that times out marks the store down: later ones fail at once without reaching it, while it is
/// probed with back-off; once it answers, they reach it again.
#[tokio::test(start_paused = true)]
async fn a_store_that_times_out_is_skipped_until_a_probe_says_it_is_back() {
    let store = Arc::new(Switchable::default());
    let (cache, _) = opening_after(0, &store);
    up(&cache).await;
    let entry = sample_entry(1_700_000_000);
    assert!(matches!(cache.set("example.com", &entry).await, Ok(true)));

    store.broken.store(true, Ordering::SeqCst);
    let calls = store.calls.load(Ordering::SeqCst);
    assert!(
        cache
            .get("example.com")
            .await
            .is_err_and(|e| e.kind() == "timeout")
    );
    assert!(!cache.is_up());
    // Skipped: the store is not asked (only the probe reaches it).
    let skipped = cache.get("example.com").await;
    assert!(skipped.is_err_and(|e| e.kind() == "unavailable"));
    let probes = store.calls.load(Ordering::SeqCst) - calls - 1;
    assert!(probes <= 1, "{probes} probes at once");

    // Still broken after a minute: probed at once, then 1, 3, 7, 15 and 31 s later.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!cache.is_up());
    assert_eq!(store.calls.load(Ordering::SeqCst) - calls - 1, 6);
    store.broken.store(false, Ordering::SeqCst);
    up(&cache).await;
    assert!(matches!(cache.get("example.com").await, Ok(Some(e)) if e == entry));
}

/// A query the store refuses (not a transient error) leaves it up.
#[tokio::test(start_paused = true)]
async fn a_refused_query_is_not_an_outage() {
    let store = Arc::new(Switchable::default());
    let (cache, _) = opening_after(0, &store);
    up(&cache).await;
    assert!(cache.set("_metadata", &sample_entry(1)).await.is_ok());
    assert!(cache.is_up());
}

#[tokio::test(start_paused = true)]
async fn a_closed_store_says_so() {
    let store = Arc::new(Switchable::default());
    let (cache, _) = opening_after(2, &store);
    cache.close().await;
    assert!(
        cache
            .get("example.com")
            .await
            .is_err_and(|e| e.kind() == "closed")
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!cache.is_up());
}

/// An operation made while the first attempt to open the store is under way waits for it: a daemon asked at once
/// after it starts uses a store that opens quickly, and does not lose the write of its first discovery.
#[tokio::test(start_paused = true)]
async fn operations_wait_for_the_first_attempt() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let store = Arc::new(Switchable::default());
    let cache = Arc::new(ReconnectingCache::new("memory", {
        let gate = Arc::clone(&gate);
        let store = Arc::clone(&store);
        move || {
            let gate = Arc::clone(&gate);
            let store = Arc::clone(&store) as Arc<dyn PolicyCache>;
            Box::pin(async move {
                gate.notified().await;
                Ok(store)
            })
        }
    }));
    let entry = sample_entry(1_700_000_000);
    let mut set = tokio::spawn({
        let cache = Arc::clone(&cache);
        let entry = entry.clone();
        async move { cache.set("example.com", &entry).await }
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(5), &mut set)
            .await
            .is_err(),
        "the write did not wait for the store being opened"
    );
    gate.notify_one();
    let written = set.await.expect("the task");
    assert!(matches!(written, Ok(true)), "{written:?}");
    assert!(matches!(cache.get("example.com").await, Ok(Some(e)) if e == entry));
}

/// Closing the cache during the first attempt ends the operations waiting for it.
#[tokio::test(start_paused = true)]
async fn closing_ends_the_wait_for_the_first_attempt() {
    let cache = Arc::new(ReconnectingCache::new("memory", || {
        Box::pin(std::future::pending())
    }));
    let get = tokio::spawn({
        let cache = Arc::clone(&cache);
        async move { cache.get("example.com").await }
    });
    tokio::task::yield_now().await;
    cache.close().await;
    let got = get.await.expect("the task");
    assert!(got.is_err_and(|e| e.kind() == "closed"));
}
