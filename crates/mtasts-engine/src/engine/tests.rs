//! Unit tests of the engine's logic with a fake discoverer and a manual clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use mtasts_cache::{CacheEntry, CacheError, MemoryCache, PolicyCache, ScanPage, ScanToken};
use mtasts_core::{Policy, PolicyDomain, PolicyId};
use tokio::sync::watch;

use crate::refetch_margin;
use crate::{
    Clock, Discover, Discovery, DiscoveryError, DiscoveryRequest, Engine, EngineBuilder,
    ManualClock, NoPolicyReason, RefreshReport, Source,
};

const T0: u64 = 1_700_000_000;
const TIMEOUT: Duration = Duration::from_secs(4);

fn policy(max_age: u32) -> Policy {
    let text = format!("version: STSv1\nmode: enforce\nmax_age: {max_age}\nmx: mx.example.com\n");
    Policy::parse(text.as_bytes()).unwrap_or_else(|e| panic!("test policy: {e}"))
}

fn id(s: &str) -> PolicyId {
    s.parse().unwrap_or_else(|e| panic!("test id {s}: {e}"))
}

fn domain(s: &str) -> PolicyDomain {
    PolicyDomain::parse(s).unwrap_or_else(|e| panic!("test domain {s}: {e}"))
}

/// What the fake answers for a domain.
#[derive(Clone)]
enum Reply {
    /// Publishes `policy` under `id`: Unchanged when asked with the same id, else Fetched.
    Publish(PolicyId, Policy),
    NoPolicy(Option<Duration>),
    Fail,
    /// A discoverer bug.
    Panic,
}

/// A discoverer that counts calls, records the `known_id` it was given, answers from a per-domain table and can
/// be held closed by a gate.
struct Fake {
    replies: Mutex<HashMap<String, Reply>>,
    asked: Mutex<Vec<(String, Option<PolicyId>)>>,
    calls: watch::Sender<usize>,
    gate: watch::Sender<bool>,
}

impl Fake {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            replies: Mutex::new(HashMap::new()),
            asked: Mutex::new(Vec::new()),
            calls: watch::Sender::new(0),
            gate: watch::Sender::new(true),
        })
    }

    fn set(&self, domain: &str, reply: Reply) {
        self.replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(domain.to_owned(), reply);
    }

    fn publish(&self, domain: &str, policy_id: &str, max_age: u32) {
        self.set(domain, Reply::Publish(id(policy_id), policy(max_age)));
    }

    fn calls(&self) -> usize {
        *self.calls.borrow()
    }

    /// The `known_id` of each call, in order.
    fn asked(&self) -> Vec<Option<String>> {
        let asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        asked
            .iter()
            .map(|(_, id)| id.as_ref().map(|id| id.as_str().to_owned()))
            .collect()
    }

    fn close_gate(&self) {
        self.gate.send_replace(false);
    }

    fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    async fn wait_calls(&self, n: usize) {
        let mut rx = self.calls.subscribe();
        if rx.wait_for(|calls| *calls >= n).await.is_err() {
            panic!("fake dropped while waiting for {n} calls");
        }
    }
}

#[async_trait]
impl Discover for Fake {
    async fn discover(&self, request: &DiscoveryRequest<'_>) -> Discovery {
        let (domain, known_id) = (request.domain, request.known_id);
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((domain.to_string(), known_id.cloned()));
        self.calls.send_modify(|calls| *calls += 1);
        let mut gate = self.gate.subscribe();
        let _open = gate.wait_for(|open| *open).await;
        let reply = self
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(domain.as_str())
            .cloned();
        match reply {
            Some(Reply::Publish(id, _)) if known_id == Some(&id) => Discovery::Unchanged { id },
            Some(Reply::Publish(id, policy)) => Discovery::Fetched { id, policy },
            Some(Reply::NoPolicy(negative_ttl)) => Discovery::NoPolicy {
                reason: NoPolicyReason::NxDomain,
                negative_ttl,
            },
            Some(Reply::Fail) => Discovery::Failed(DiscoveryError::new("http_status", "HTTP 503")),
            Some(Reply::Panic) => panic!("fake discoverer told to panic"),
            None => Discovery::NoPolicy {
                reason: NoPolicyReason::NoData,
                negative_ttl: None,
            },
        }
    }
}

struct Setup {
    fake: Arc<Fake>,
    clock: Arc<ManualClock>,
}

impl Setup {
    fn new() -> Self {
        Self {
            fake: Fake::new(),
            clock: Arc::new(ManualClock::new(T0)),
        }
    }

    fn builder(&self) -> EngineBuilder {
        Engine::builder(Arc::clone(&self.fake))
            .clock(Arc::clone(&self.clock) as Arc<dyn Clock>)
            .cache_grace(Duration::from_secs(60))
            .failure_backoff(Duration::from_secs(120))
            .max_negative_ttl(Duration::from_secs(3_600))
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

async fn resolve(engine: &Engine, name: &str) -> (Source, Option<String>) {
    let resolution = engine.resolve(&domain(name), TIMEOUT).await;
    (
        resolution.source,
        resolution.policy.map(|p| p.id().as_str().to_owned()),
    )
}

#[tokio::test]
async fn grace_hit_needs_no_discovery() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 86_400);
    let engine = s.builder().build();

    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Discovered, Some("id1".into()))
    );
    s.advance(59);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Memory, Some("id1".into()))
    );
    assert_eq!(s.fake.calls(), 1);
    let stats = engine.stats();
    assert_eq!(
        (
            stats.memory_hits.get(),
            stats.misses.get(),
            stats.fetched.get()
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn unchanged_id_needs_no_fetch_and_keeps_fetched_at() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 86_400);
    let store = Arc::new(MemoryCache::new(100));
    let engine = s
        .builder()
        .store(Arc::clone(&store) as Arc<dyn PolicyCache>)
        .build();

    resolve(&engine, "example.com").await;
    s.advance(61);
    let resolution = engine.resolve(&domain("example.com"), TIMEOUT).await;
    assert_eq!(resolution.source, Source::Discovered);
    assert_eq!(resolution.policy.map(|p| p.fetched_at()), Some(T0));
    assert_eq!(s.fake.asked(), [None, Some("id1".into())]);
    assert_eq!(engine.stats().unchanged.get(), 1);
    let stored = store
        .get("example.com")
        .await
        .ok()
        .flatten()
        .map(|e| (e.checked_at, e.fetched_at));
    assert_eq!(stored, Some((T0 + 61, T0)));
}

#[tokio::test]
async fn changed_id_fetches_the_new_policy() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 86_400);
    let engine = s.builder().build();
    resolve(&engine, "example.com").await;
    s.fake.publish("example.com", "id2", 86_400);
    s.advance(61);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Discovered, Some("id2".into()))
    );
    assert_eq!(s.fake.asked(), [None, Some("id1".into())]);
}

#[tokio::test]
async fn near_expiry_forces_an_https_fetch_even_with_an_unchanged_id() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 600);
    let engine = s.builder().build();
    assert_eq!(refetch_margin(600), 150);

    resolve(&engine, "example.com").await;
    // 449 s after the fetch: 151 s of validity left, more than the margin: a TXT check is enough.
    s.advance(449);
    resolve(&engine, "example.com").await;
    // 61 s later (510 s after the fetch): 90 s left, within the margin: fetch over HTTPS.
    s.advance(61);
    let resolution = engine.resolve(&domain("example.com"), TIMEOUT).await;
    assert_eq!(s.fake.asked(), [None, Some("id1".into()), None]);
    assert_eq!(resolution.policy.map(|p| p.fetched_at()), Some(T0 + 510));
}

#[tokio::test]
async fn max_age_one_expires_within_grace() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 1);
    let engine = s.builder().build();

    assert_eq!(resolve(&engine, "example.com").await.0, Source::Discovered);
    // Same second: still valid, from memory.
    assert_eq!(resolve(&engine, "example.com").await.0, Source::Memory);
    // One second later the policy has expired (RFC 8461 §5.1), although cache_grace (60 s) has not passed.
    s.advance(1);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Discovered, Some("id1".into()))
    );
    assert_eq!(s.fake.asked(), [None, None]);
}

#[tokio::test]
async fn failure_answers_stale_until_expiry_and_backs_off() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 600);
    let engine = s.builder().build();
    resolve(&engine, "example.com").await;

    s.fake.set("example.com", Reply::Fail);
    s.advance(61);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Stale, Some("id1".into()))
    );
    assert_eq!(s.fake.calls(), 2);
    // Backing off (120 s): no discovery, still the cached policy.
    s.advance(100);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Stale, Some("id1".into()))
    );
    assert_eq!(s.fake.calls(), 2);
    // Back-off over: discovery again, fails again, still valid (t = 281 < 600).
    s.advance(21);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Stale, Some("id1".into()))
    );
    assert_eq!(s.fake.calls(), 3);
    // t = 500: fails again, backing off until 620; still valid.
    s.advance(318);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Stale, Some("id1".into()))
    );
    assert_eq!(s.fake.calls(), 4);
    // t = 610: the policy expired at 600 (RFC 8461 §5.1) during the back-off: no policy, no discovery.
    s.advance(110);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Unavailable, None)
    );
    assert_eq!(s.fake.calls(), 4);
    // t = 620: back-off over.
    s.advance(10);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Unavailable, None)
    );
    assert_eq!(s.fake.calls(), 5);
    let stats = engine.stats();
    assert_eq!(stats.failed.get(), 4);
    assert_eq!(stats.failures("http_status"), 4);
}

#[tokio::test]
async fn failure_with_nothing_cached_backs_off_with_no_policy() {
    let s = Setup::new();
    s.fake.set("example.com", Reply::Fail);
    let engine = s.builder().build();
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Unavailable, None)
    );
    s.advance(119);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Unavailable, None)
    );
    assert_eq!(s.fake.calls(), 1);
    s.advance(1);
    resolve(&engine, "example.com").await;
    assert_eq!(s.fake.calls(), 2);
}

/// How long a "no policy" answer is cached for a given DNS negative TTL (grace 60, max 3600).
async fn negative_lifetime(negative_ttl: Option<u64>) -> u64 {
    let s = Setup::new();
    s.fake.set(
        "example.com",
        Reply::NoPolicy(negative_ttl.map(Duration::from_secs)),
    );
    let engine = s.builder().build();
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Discovered, None)
    );
    let mut lived = 0;
    while s.fake.calls() == 1 && lived < 10_000 {
        s.advance(1);
        lived += 1;
        resolve(&engine, "example.com").await;
    }
    lived
}

#[tokio::test]
async fn no_policy_is_cached_between_grace_and_max_negative_ttl() {
    assert_eq!(negative_lifetime(None).await, 60);
    assert_eq!(negative_lifetime(Some(5)).await, 60);
    assert_eq!(negative_lifetime(Some(300)).await, 300);
    assert_eq!(negative_lifetime(Some(86_400)).await, 3_600);
}

#[tokio::test]
async fn removed_record_keeps_the_cached_policy_until_it_expires() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 600);
    let store = Arc::new(MemoryCache::new(100));
    let engine = s
        .builder()
        .store(Arc::clone(&store) as Arc<dyn PolicyCache>)
        .build();
    resolve(&engine, "example.com").await;

    s.fake.set(
        "example.com",
        Reply::NoPolicy(Some(Duration::from_secs(3_600))),
    );
    s.advance(61);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Discovered, Some("id1".into()))
    );
    s.advance(500);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Memory, Some("id1".into()))
    );
    // Expired at 600: looked up again, still unpublished: no policy, and the store forgets it.
    s.advance(40);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Discovered, None)
    );
    assert_eq!(s.fake.calls(), 3);
    assert!(matches!(store.get("example.com").await, Ok(None)));
}

#[tokio::test]
async fn store_is_read_before_the_network() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 86_400);
    let store: Arc<dyn PolicyCache> = Arc::new(MemoryCache::new(100));
    let host_a = s.builder().store(Arc::clone(&store)).build();
    // Host B shares the store and the clock but has its own discoverer, which must never be used.
    let other = Fake::new();
    let host_b = Engine::builder(Arc::clone(&other))
        .clock(Arc::clone(&s.clock) as Arc<dyn Clock>)
        .store(Arc::clone(&store))
        .build();

    resolve(&host_a, "example.com").await;
    assert_eq!(
        resolve(&host_b, "example.com").await,
        (Source::Store, Some("id1".into()))
    );
    assert_eq!(
        resolve(&host_b, "example.com").await,
        (Source::Memory, Some("id1".into()))
    );
    // Both fronts' grace passes; A re-checks; B's next lookup finds A's check in the store.
    s.advance(61);
    assert_eq!(resolve(&host_a, "example.com").await.0, Source::Discovered);
    s.advance(1);
    assert_eq!(
        resolve(&host_b, "example.com").await,
        (Source::Store, Some("id1".into()))
    );
    assert_eq!(other.calls(), 0);
    assert_eq!(host_b.stats().store_hits.get(), 2);
}

#[derive(Debug)]
struct BrokenStore;

#[async_trait]
impl PolicyCache for BrokenStore {
    async fn get(&self, domain: &str) -> Result<Option<CacheEntry>, CacheError> {
        Err(CacheError::Corrupt {
            domain: domain.to_owned(),
            reason: "test".to_owned(),
        })
    }
    async fn set(&self, domain: &str, _: &CacheEntry) -> Result<bool, CacheError> {
        Err(CacheError::Corrupt {
            domain: domain.to_owned(),
            reason: "test".to_owned(),
        })
    }
    async fn scan(&self, _: Option<&ScanToken>, _: usize) -> Result<ScanPage, CacheError> {
        Err(CacheError::Corrupt {
            domain: String::new(),
            reason: "test".to_owned(),
        })
    }
    async fn remove(&self, _: &str) -> Result<bool, CacheError> {
        Ok(false)
    }
    async fn clear(&self) -> Result<u64, CacheError> {
        Ok(0)
    }
    async fn proactive_fetch_ts(&self) -> Result<Option<u64>, CacheError> {
        Ok(None)
    }
    async fn set_proactive_fetch_ts(&self, _: u64) -> Result<(), CacheError> {
        Ok(())
    }
    async fn close(&self) {}
}

#[tokio::test]
async fn store_errors_never_fail_a_lookup() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 86_400);
    let engine = s.builder().store(Arc::new(BrokenStore)).build();
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Discovered, Some("id1".into()))
    );
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Memory, Some("id1".into()))
    );
    let stats = engine.stats();
    assert_eq!(
        (
            stats.store_read_errors.get(),
            stats.store_write_errors.get()
        ),
        (1, 1)
    );
    let report = engine
        .refresh_proactively(Duration::from_secs(86_400), 2.0, 4)
        .await;
    assert_eq!((report.scan_errors, report.completed), (1, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_share_one_discovery() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 86_400);
    s.fake.close_gate();
    let engine = s.builder().build();

    let lookups: Vec<_> = (0..20)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.resolve(&domain("example.com"), TIMEOUT).await })
        })
        .collect();
    s.fake.wait_calls(1).await;
    // One lookup started the discovery; wait until the 19 others have joined it.
    while engine.stats().coalesced.get() < 19 {
        tokio::task::yield_now().await;
    }
    s.fake.open_gate();
    let mut sources = HashMap::new();
    for lookup in lookups {
        let resolution = lookup.await.unwrap_or_else(|e| panic!("lookup task: {e}"));
        assert!(resolution.policy.is_some());
        *sources.entry(resolution.source).or_insert(0) += 1;
    }
    assert_eq!(s.fake.calls(), 1);
    assert_eq!(sources.get(&Source::Discovered), Some(&1));
    assert_eq!(sources.get(&Source::Coalesced), Some(&19));
    assert_eq!(engine.stats().coalesced.get(), 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_lookup_does_not_cancel_the_shared_discovery() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 86_400);
    s.fake.close_gate();
    let engine = s.builder().build();

    let first = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.resolve(&domain("example.com"), TIMEOUT).await })
    };
    s.fake.wait_calls(1).await;
    let second = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.resolve(&domain("example.com"), TIMEOUT).await })
    };
    while engine.stats().coalesced.get() < 1 {
        tokio::task::yield_now().await;
    }
    first.abort();
    assert!(first.await.is_err_and(|e| e.is_cancelled()));
    s.fake.open_gate();
    let resolution = second
        .await
        .unwrap_or_else(|e| panic!("second lookup: {e}"));
    assert_eq!(resolution.source, Source::Coalesced);
    assert!(resolution.policy.is_some());
    assert_eq!(s.fake.calls(), 1);
    // The discovery finished and was cleaned up: memory answers, nothing in flight.
    assert_eq!(resolve(&engine, "example.com").await.0, Source::Memory);
    assert_eq!(engine.stats().in_flight.get(), 0);
    assert!(engine.inner.flights.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discoveries_in_flight_are_bounded() {
    let s = Setup::new();
    s.fake.close_gate();
    let engine = s.builder().max_in_flight(2).build();

    let held: Vec<_> = ["a.example", "b.example"]
        .into_iter()
        .map(|name| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.resolve(&domain(name), TIMEOUT).await })
        })
        .collect();
    s.fake.wait_calls(2).await;
    assert_eq!(engine.stats().in_flight.get(), 2);
    // A third domain cannot start within its (short) timeout: answered without discovery.
    let third = engine
        .resolve(&domain("c.example"), Duration::from_millis(200))
        .await;
    assert_eq!(
        (third.source, third.policy.is_none()),
        (Source::Unavailable, true)
    );
    assert_eq!(s.fake.calls(), 2);
    assert_eq!(engine.stats().overloaded.get(), 1);
    s.fake.open_gate();
    for lookup in held {
        assert!(lookup.await.is_ok());
    }
    // A slot is free again.
    engine.resolve(&domain("c.example"), TIMEOUT).await;
    assert_eq!(s.fake.calls(), 3);
}

#[tokio::test]
async fn proactive_refresh_walks_the_store() {
    let s = Setup::new();
    let store = Arc::new(MemoryCache::new(100));
    let engine = s
        .builder()
        .store(Arc::clone(&store) as Arc<dyn PolicyCache>)
        .build();
    for name in ["a.example", "b.example", "c.example"] {
        s.fake.publish(name, "id1", 31_557_600);
        resolve(&engine, name).await;
    }
    s.fake.publish("b.example", "id2", 31_557_600);
    s.fake.set("c.example", Reply::Fail);
    s.advance(3_600);
    // d.example was checked recently: not due.
    s.fake.publish("d.example", "id1", 31_557_600);
    resolve(&engine, "d.example").await;
    let before = s.fake.calls();

    let report = engine
        .refresh_proactively(Duration::from_secs(7_200), 2.0, 2)
        .await;
    assert_eq!((report.scanned, report.due, report.completed), (4, 3, true));
    assert_eq!((report.unchanged, report.fetched, report.failed), (1, 1, 1));
    assert_eq!(s.fake.calls() - before, 3);
    assert_eq!(
        store.proactive_fetch_ts().await.ok().flatten(),
        Some(T0 + 3_600)
    );
    assert_eq!(engine.last_proactive_refresh().await, Some(T0 + 3_600));
    // The refreshed entries answer from memory now, b with its new policy.
    assert_eq!(
        resolve(&engine, "b.example").await,
        (Source::Memory, Some("id2".into()))
    );
    let stored = store
        .get("a.example")
        .await
        .ok()
        .flatten()
        .map(|e| e.checked_at);
    assert_eq!(stored, Some(T0 + 3_600));
}

#[tokio::test]
async fn proactive_refresh_without_store_walks_memory_and_refetches_before_expiry() {
    let s = Setup::new();
    s.fake.publish("a.example", "id1", 86_400);
    let engine = s.builder().build();
    resolve(&engine, "a.example").await;
    // Checked 1 h ago, but the policy would reach its near-expiry margin before the next daily pass: fetched
    // over HTTPS, not just re-checked.
    s.advance(3_600);
    let report = engine
        .refresh_proactively(Duration::from_secs(86_400), 2.0, 10)
        .await;
    assert_eq!((report.scanned, report.due, report.fetched), (1, 1, 1));
    assert_eq!(s.fake.asked(), [None, None]);
    assert_eq!(engine.last_proactive_refresh().await, Some(T0 + 3_600));
}

#[tokio::test]
async fn purge_forgets_a_domain() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 86_400);
    let store = Arc::new(MemoryCache::new(100));
    let engine = s
        .builder()
        .store(Arc::clone(&store) as Arc<dyn PolicyCache>)
        .build();
    resolve(&engine, "example.com").await;
    assert!(matches!(engine.purge("example.com").await, Ok(true)));
    assert!(matches!(store.get("example.com").await, Ok(None)));
    assert_eq!(resolve(&engine, "example.com").await.0, Source::Discovered);
    assert_eq!(s.fake.calls(), 2);
}

/// A purge by another process (`mta-sts-daemon cache purge`) reaches a running engine within `cache_grace`,
/// even when the domain republished a changed policy under the same id: the engine does not re-check the old id,
/// it fetches the policy again.
#[tokio::test]
async fn an_entry_purged_from_the_store_is_forgotten_after_grace() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 86_400);
    let store: Arc<dyn PolicyCache> = Arc::new(MemoryCache::new(100));
    let engine = s.builder().store(Arc::clone(&store)).build();
    let mx = |engine: &Engine| {
        let resolution = engine.cached(&domain("example.com"));
        resolution
            .and_then(|r| r.policy)
            .map(|p| p.policy().mx()[0].as_str().to_owned())
    };
    assert_eq!(resolve(&engine, "example.com").await.0, Source::Discovered);
    assert_eq!(mx(&engine).as_deref(), Some("mx.example.com"));

    // Another process purges the store; the domain changes its MX without changing the id.
    assert!(matches!(store.remove("example.com").await, Ok(true)));
    let moved =
        Policy::parse(b"version: STSv1\nmode: enforce\nmax_age: 86400\nmx: new.example.com\n")
            .unwrap_or_else(|e| panic!("test policy: {e}"));
    s.fake.set("example.com", Reply::Publish(id("id1"), moved));

    // Within grace the memory copy still answers.
    s.advance(59);
    assert_eq!(mx(&engine).as_deref(), Some("mx.example.com"));
    // After grace: the store has nothing, so the memory copy is dropped and the policy fetched afresh.
    s.advance(2);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Discovered, Some("id1".into()))
    );
    assert_eq!(mx(&engine).as_deref(), Some("new.example.com"));
    assert_eq!(s.fake.asked(), [None, None], "the old id was re-checked");
    let stats = engine.stats();
    assert_eq!(
        (
            stats.store_purged.get(),
            stats.fetched.get(),
            stats.unchanged.get()
        ),
        (1, 2, 0)
    );
    assert!(matches!(store.get("example.com").await, Ok(Some(e)) if e.checked_at == T0 + 61));
}

/// A store read error is not a purge: the memory copy is kept and only its id re-checked.
#[tokio::test]
async fn a_store_read_error_keeps_the_memory_copy() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 86_400);
    let engine = s.builder().store(Arc::new(BrokenStore)).build();
    assert_eq!(resolve(&engine, "example.com").await.0, Source::Discovered);
    s.advance(61);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Discovered, Some("id1".into()))
    );
    assert_eq!(s.fake.asked(), [None, Some("id1".into())]);
    let stats = engine.stats();
    assert_eq!(
        (
            stats.store_purged.get(),
            stats.store_read_errors.get(),
            stats.unchanged.get()
        ),
        (0, 2, 1)
    );
}

#[tokio::test]
async fn many_domains_stay_in_memory_up_to_capacity() {
    let s = Setup::new();
    let engine = s.builder().memory_capacity(4_000).build();
    let names: Vec<String> = (0..1_000).map(|i| format!("d{i}.example")).collect();
    for name in &names {
        s.fake.publish(name, "id1", 86_400);
        resolve(&engine, name).await;
    }
    for name in &names {
        assert_eq!(resolve(&engine, name).await.0, Source::Memory, "{name}");
    }
    assert_eq!(s.fake.calls(), 1_000);
}

#[tokio::test]
async fn a_panicking_discovery_leaks_nothing() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 600);
    let engine = s.builder().build();
    resolve(&engine, "example.com").await;
    s.fake.set("example.com", Reply::Panic);
    s.advance(61);
    // The shared task died: the lookup answers from the cached policy, and nothing stays in flight.
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Stale, Some("id1".into()))
    );
    assert_eq!(engine.stats().in_flight.get(), 0);
    assert!(engine.inner.flights.is_empty());
    assert_eq!(
        engine.inner.permits.available_permits(),
        crate::DEFAULT_MAX_IN_FLIGHT
    );
    // The next lookup can start a discovery again.
    s.fake.publish("example.com", "id2", 600);
    assert_eq!(
        resolve(&engine, "example.com").await,
        (Source::Discovered, Some("id2".into()))
    );
}

/// A store whose writes never finish.
#[derive(Debug)]
struct HangingWrites(MemoryCache);

#[async_trait]
impl PolicyCache for HangingWrites {
    async fn get(&self, domain: &str) -> Result<Option<CacheEntry>, CacheError> {
        self.0.get(domain).await
    }
    async fn set(&self, _: &str, _: &CacheEntry) -> Result<bool, CacheError> {
        std::future::pending().await
    }
    async fn scan(
        &self,
        token: Option<&ScanToken>,
        page_size: usize,
    ) -> Result<ScanPage, CacheError> {
        self.0.scan(token, page_size).await
    }
    async fn remove(&self, domain: &str) -> Result<bool, CacheError> {
        self.0.remove(domain).await
    }
    async fn clear(&self) -> Result<u64, CacheError> {
        self.0.clear().await
    }
    async fn proactive_fetch_ts(&self) -> Result<Option<u64>, CacheError> {
        self.0.proactive_fetch_ts().await
    }
    async fn set_proactive_fetch_ts(&self, ts: u64) -> Result<(), CacheError> {
        self.0.set_proactive_fetch_ts(ts).await
    }
    async fn close(&self) {}
}

#[tokio::test(start_paused = true)]
async fn a_hanging_store_write_does_not_hold_the_lookup() {
    let s = Setup::new();
    s.fake.publish("example.com", "id1", 86_400);
    let engine = s
        .builder()
        .store(Arc::new(HangingWrites(MemoryCache::new(10))))
        .build();
    // The lookup gives up waiting after its timeout plus slack, and answers from what the discovery put in memory.
    let resolution = engine
        .resolve(&domain("example.com"), Duration::from_millis(100))
        .await;
    assert_eq!(
        resolution.policy.map(|p| p.id().as_str().to_owned()),
        Some("id1".to_owned())
    );
    assert_eq!(resolution.source, Source::Memory);
    assert_eq!(s.fake.calls(), 1);
    // The engine gives up on the store write after its cap, ending the shared discovery: the domain can be
    // discovered again.
    tokio::time::advance(crate::refresh::STORE_CAP + Duration::from_secs(1)).await;
    while !engine.inner.flights.is_empty() {
        tokio::task::yield_now().await;
    }
    assert_eq!(engine.stats().store_write_errors.get(), 1);
    s.advance(61);
    s.fake.publish("example.com", "id2", 86_400);
    let again = engine
        .resolve(&domain("example.com"), Duration::from_millis(100))
        .await;
    assert_eq!(
        again.policy.map(|p| p.id().as_str().to_owned()),
        Some("id2".to_owned())
    );
    assert_eq!(s.fake.calls(), 2);
}

/// A wall clock that moves with tokio's time (paused in these tests): T0 when created.
#[derive(Debug)]
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> u64 {
        T0 + self.0.elapsed().as_secs()
    }
}

const DAY: Duration = Duration::from_secs(86_400);

/// An engine on `fake` and `store` whose clock follows tokio's time.
fn engine_on_tokio_time(fake: &Arc<Fake>, store: Arc<dyn PolicyCache>) -> Engine {
    Engine::builder(Arc::clone(fake))
        .clock(Arc::new(TokioClock(tokio::time::Instant::now())))
        .store(store)
        .build()
}

/// Starts the daily proactive loop and returns when its first two passes finished (Unix seconds), with the
/// first pass's report. Fails if a pass follows the previous one within a day.
async fn first_two_passes(engine: &Engine) -> (RefreshReport, u64) {
    let (passes, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let mut previous: Option<u64> = None;
    let mut task = engine.spawn_proactive(DAY, 2.0, 4, move |report| {
        // Checked here, in the loop's task: passes back to back would never let the test's task run.
        if let Some(previous) = previous {
            assert!(
                report.finished_at >= previous + DAY.as_secs(),
                "a pass at {} followed the one at {previous} within a day",
                report.finished_at
            );
        }
        previous = Some(report.finished_at);
        let _ = passes.send(report.clone());
    });
    let mut next = async || match reports.recv().await {
        Some(report) => report,
        None => match (&mut task).await {
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            other => panic!("the proactive loop ended: {other:?}"),
        },
    };
    let first = next().await;
    let second = next().await.finished_at;
    task.abort();
    (first, second)
}

/// With a pass recorded an hour ago (by this host before a restart, or by another host sharing the store), the
/// next one waits until the recorded one is a day old; then one runs every day.
#[tokio::test(start_paused = true)]
async fn the_proactive_loop_waits_until_the_recorded_pass_is_an_interval_old() {
    let fake = Fake::new();
    fake.publish("example.com", "id1", 31_557_600);
    let store = Arc::new(MemoryCache::new(100));
    let engine = engine_on_tokio_time(&fake, Arc::clone(&store) as Arc<dyn PolicyCache>);
    resolve(&engine, "example.com").await;
    assert!(store.set_proactive_fetch_ts(T0 - 3_600).await.is_ok());

    let (first, second) = first_two_passes(&engine).await;
    assert_eq!(
        first.finished_at,
        T0 + 23 * 3_600,
        "the first pass did not wait"
    );
    assert_eq!((first.due, first.unchanged), (1, 1));
    assert_eq!(second, first.finished_at + DAY.as_secs());
    assert_eq!(fake.calls(), 3);
}

/// A store that cannot record passes (it always says "never") does not make the passes run back to back.
#[tokio::test(start_paused = true)]
async fn proactive_passes_stay_an_interval_apart_when_the_store_cannot_record_them() {
    let fake = Fake::new();
    let engine = engine_on_tokio_time(&fake, Arc::new(BrokenStore));
    let (first, second) = first_two_passes(&engine).await;
    assert_eq!(
        first.finished_at, T0,
        "nothing recorded: the first pass runs at once"
    );
    assert_eq!(second, T0 + DAY.as_secs());
}
