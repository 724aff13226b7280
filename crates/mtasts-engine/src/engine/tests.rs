//! Unit tests of the engine's logic with a fake discoverer and a manual clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use mtasts_cache::{CacheEntry, CacheError, MemoryCache, PolicyCache, ScanPage, ScanToken};
use mtasts_core::{Policy, PolicyDomain, PolicyId};
use tokio::sync::watch;

use crate::{
    Clock, Count, Discover, Discovery, DiscoveryError, DiscoveryRequest, Engine, EngineBuilder,
    ManualClock, NoPolicyReason, RefreshReport, Resolution, Source, refetch_margin,
};

const T0: u64 = 1_700_000_000;
const TIMEOUT: Duration = Duration::from_secs(4);
const DAY: Duration = Duration::from_secs(86_400);
/// The domain most tests look up.
const EXAMPLE: &str = "example.com";

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
    /// This host has no descriptor for the discovery's socket (EMFILE).
    LocalFailure,
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

    /// Waits until the fake was called `n` times; fails after 10 s instead of hanging when a regression keeps
    /// the discovery from running.
    async fn wait_calls(&self, n: usize) {
        let mut rx = self.calls.subscribe();
        match tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|calls| *calls >= n)).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => panic!("fake dropped while waiting for {n} calls"),
            Err(_) => panic!("no {n} discoveries within 10 s (only {})", self.calls()),
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
            Some(Reply::LocalFailure) => Discovery::Failed(DiscoveryError::local_resource(
                "local_resource",
                std::io::Error::from_raw_os_error(24),
            )),
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
    /// The store of [`Setup::engine_with_store`].
    store: Arc<MemoryCache>,
}

impl Setup {
    fn new() -> Self {
        Self {
            fake: Fake::new(),
            clock: Arc::new(ManualClock::new(T0)),
            store: Arc::new(MemoryCache::new(100)),
        }
    }

    /// `example.com` publishes policy `id1` with `max_age`.
    fn publishing(max_age: u32) -> Self {
        let s = Self::new();
        s.fake.publish(EXAMPLE, "id1", max_age);
        s
    }

    /// Grace 60 s, back-off 120 s, negative TTL at most 3600 s, the manual clock.
    fn builder(&self) -> EngineBuilder {
        Engine::builder(Arc::clone(&self.fake))
            .clock(Arc::clone(&self.clock) as Arc<dyn Clock>)
            .cache_grace(Duration::from_secs(60))
            .failure_backoff(Duration::from_secs(120))
            .max_negative_ttl(Duration::from_secs(3_600))
    }

    /// An engine without a store.
    fn engine(&self) -> Engine {
        self.builder().build()
    }

    /// An engine with the memory store `self.store`.
    fn engine_with_store(&self) -> Engine {
        self.engine_with(&self.store)
    }

    /// An engine with `store`.
    fn engine_with(&self, store: &Arc<impl PolicyCache + 'static>) -> Engine {
        self.builder()
            .store(Arc::clone(store) as Arc<dyn PolicyCache>)
            .build()
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

/// `example.com` publishes `id1` with `max_age`, and the engine `make` builds has discovered it.
async fn discovered(max_age: u32, make: impl FnOnce(&Setup) -> Engine) -> (Setup, Engine) {
    let s = Setup::publishing(max_age);
    let engine = make(&s);
    assert_eq!(answer(&engine, EXAMPLE).await, "discovered id1");
    (s, engine)
}

/// An answer in words: its source and policy id (`-` for none), e.g. `memory id1`.
fn said(resolution: &Resolution) -> String {
    let id = resolution.policy.as_ref().map_or("-", |p| p.id().as_str());
    format!("{} {id}", resolution.source)
}

/// Looks `name` up and says the answer, without waiting for its store write.
async fn answer_now(engine: &Engine, name: &str) -> String {
    said(&engine.resolve(&domain(name), TIMEOUT).await)
}

/// Looks `name` up and says the answer, once its store write (if any) is done.
async fn answer(engine: &Engine, name: &str) -> String {
    let resolution = engine.resolve(&domain(name), TIMEOUT).await;
    // The store write comes after the answer: let it land before the test looks at the store.
    engine.flush_store_writes().await;
    said(&resolution)
}

/// Plays `steps` on `example.com`: each moves the clock by its seconds, then looks the domain up on `engine` and
/// checks the answer.
async fn play(s: &Setup, engine: &Engine, steps: &[(u64, &str)]) {
    for (step, (later, want)) in steps.iter().enumerate() {
        s.advance(*later);
        assert_eq!(answer(engine, EXAMPLE).await, *want, "step {step}");
    }
}

/// The store's `(checked_at, fetched_at)` for `name`.
async fn stored(store: &impl PolicyCache, name: &str) -> Option<(u64, u64)> {
    let entry = store.get(name).await.ok().flatten();
    entry.map(|e| (e.checked_at, e.fetched_at))
}

fn counts<const N: usize>(counters: [&Count; N]) -> [u64; N] {
    counters.map(Count::get)
}

/// Whether no discovery is running or registered as running.
fn settled(engine: &Engine) -> bool {
    engine.stats().in_flight.get() == 0 && engine.inner.flights.is_empty()
}

/// Waits until `done` holds, failing after 10 s (of real time) instead of hanging.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::task::yield_now().await;
    }
}

/// Starts a lookup of `name` in a task of its own.
fn spawn_lookup(engine: &Engine, name: &'static str) -> tokio::task::JoinHandle<Resolution> {
    let engine = engine.clone();
    tokio::spawn(async move { engine.resolve(&domain(name), TIMEOUT).await })
}

#[tokio::test]
async fn grace_hit_needs_no_discovery() {
    let s = Setup::publishing(86_400);
    let engine = s.engine();
    play(&s, &engine, &[(0, "discovered id1"), (59, "memory id1")]).await;
    assert_eq!(s.fake.calls(), 1);
    let stats = engine.stats();
    assert_eq!(
        counts([&stats.memory_hits, &stats.misses, &stats.fetched]),
        [1, 1, 1]
    );
}

#[tokio::test]
async fn unchanged_id_needs_no_fetch_and_keeps_fetched_at() {
    let (s, engine) = discovered(86_400, Setup::engine_with_store).await;
    let store = &s.store;
    s.advance(61);
    let resolution = engine.resolve(&domain(EXAMPLE), TIMEOUT).await;
    assert_eq!(said(&resolution), "discovered id1");
    assert_eq!(resolution.policy.map(|p| p.fetched_at()), Some(T0));
    assert_eq!(s.fake.asked(), [None, Some("id1".into())]);
    assert_eq!(engine.stats().unchanged.get(), 1);
    assert_eq!(stored(&**store, EXAMPLE).await, Some((T0 + 61, T0)));
}

#[tokio::test]
async fn changed_id_fetches_the_new_policy() {
    let (s, engine) = discovered(86_400, Setup::engine).await;
    s.fake.publish(EXAMPLE, "id2", 86_400);
    s.advance(61);
    assert_eq!(answer(&engine, EXAMPLE).await, "discovered id2");
    assert_eq!(s.fake.asked(), [None, Some("id1".into())]);
}

#[tokio::test]
async fn near_expiry_forces_an_https_fetch_even_with_an_unchanged_id() {
    assert_eq!(refetch_margin(600), 150);
    let (s, engine) = discovered(600, Setup::engine).await;
    // 449 s after the fetch: 151 s of validity left, more than the margin: a TXT check is enough.
    s.advance(449);
    answer(&engine, EXAMPLE).await;
    // 61 s later (510 s after the fetch): 90 s left, within the margin: fetch over HTTPS.
    s.advance(61);
    let resolution = engine.resolve(&domain(EXAMPLE), TIMEOUT).await;
    assert_eq!(s.fake.asked(), [None, Some("id1".into()), None]);
    assert_eq!(resolution.policy.map(|p| p.fetched_at()), Some(T0 + 510));
}

#[tokio::test]
async fn max_age_one_expires_within_grace() {
    let s = Setup::publishing(1);
    let engine = s.engine();
    // The same second: still valid, from memory. One second later the policy has expired (RFC 8461 §5.1),
    // although cache_grace (60 s) has not passed.
    play(&s, &engine, &[(0, "discovered id1"), (0, "memory id1")]).await;
    play(&s, &engine, &[(1, "discovered id1")]).await;
    assert_eq!(s.fake.asked(), [None, None]);
}

#[tokio::test]
async fn failure_answers_stale_until_expiry_and_backs_off() {
    let (s, engine) = discovered(600, Setup::engine).await;
    s.fake.set(EXAMPLE, Reply::Fail);
    // Discovery fails: the cached policy answers. Backing off (120 s): no discovery, still the cached policy.
    play(&s, &engine, &[(61, "stale id1"), (100, "stale id1")]).await;
    assert_eq!(s.fake.calls(), 2);
    // Back-off over (t = 182): discovery again, fails again, still valid; t = 500: the same, backing off until
    // 620.
    play(&s, &engine, &[(21, "stale id1"), (318, "stale id1")]).await;
    assert_eq!(s.fake.calls(), 4);
    // t = 610: the policy expired at 600 (RFC 8461 §5.1) during the back-off: no policy, no discovery.
    play(&s, &engine, &[(110, "unavailable -")]).await;
    assert_eq!(s.fake.calls(), 4);
    // t = 620: back-off over.
    play(&s, &engine, &[(10, "unavailable -")]).await;
    assert_eq!(s.fake.calls(), 5);
    let stats = engine.stats();
    assert_eq!(stats.failed.get(), 4);
    assert_eq!(stats.failures("http_status"), 4);
}

/// Issue 11 item 3: a discovery this host could not run (no descriptor for its socket) answers the cached policy
/// while it is valid, else no policy; it backs nothing off and caches nothing (the next lookups discover again),
/// and is counted apart from the domains' failures.
#[tokio::test]
async fn a_local_resource_failure_is_not_the_domains() {
    let (s, engine) = discovered(86_400, Setup::engine).await;
    s.fake.set(EXAMPLE, Reply::LocalFailure);
    s.fake.set("example.net", Reply::LocalFailure);
    s.advance(61);
    assert_eq!(answer(&engine, EXAMPLE).await, "stale id1");
    assert_eq!(answer(&engine, "example.net").await, "unavailable -");
    assert!(engine.memory_entry("example.net").is_none());
    s.fake.publish(EXAMPLE, "id1", 86_400);
    s.fake.publish("example.net", "id2", 86_400);
    assert_eq!(answer(&engine, EXAMPLE).await, "discovered id1");
    assert_eq!(answer(&engine, "example.net").await, "discovered id2");
    let stats = engine.stats();
    assert_eq!(
        counts([
            &stats.local_resource,
            &stats.failed,
            &stats.stale_answers,
            &stats.backoff_skips
        ]),
        [2, 0, 1, 0]
    );
    assert_eq!(stats.failures("local_resource"), 0);
    assert_eq!(s.fake.calls(), 5);
}

#[tokio::test]
async fn failure_with_nothing_cached_backs_off_with_no_policy() {
    let s = Setup::new();
    s.fake.set(EXAMPLE, Reply::Fail);
    let engine = s.engine();
    play(&s, &engine, &[(0, "unavailable -"), (119, "unavailable -")]).await;
    assert_eq!(s.fake.calls(), 1);
    s.advance(1);
    answer(&engine, EXAMPLE).await;
    assert_eq!(s.fake.calls(), 2);
}

/// How long a "no policy" answer is cached for a given DNS negative TTL (grace 60, max 3600).
async fn negative_lifetime(negative_ttl: Option<u64>) -> u64 {
    let s = Setup::new();
    s.fake.set(
        EXAMPLE,
        Reply::NoPolicy(negative_ttl.map(Duration::from_secs)),
    );
    let engine = s.engine();
    assert_eq!(answer(&engine, EXAMPLE).await, "discovered -");
    let mut lived = 0;
    while s.fake.calls() == 1 && lived < 10_000 {
        s.advance(1);
        lived += 1;
        answer(&engine, EXAMPLE).await;
    }
    lived
}

#[tokio::test]
async fn no_policy_is_cached_between_grace_and_max_negative_ttl() {
    for (negative_ttl, lifetime) in [
        (None, 60),
        (Some(5), 60),
        (Some(300), 300),
        (Some(86_400), 3_600),
    ] {
        assert_eq!(
            negative_lifetime(negative_ttl).await,
            lifetime,
            "{negative_ttl:?}"
        );
    }
}

#[tokio::test]
async fn removed_record_keeps_the_cached_policy_until_it_expires() {
    let (s, engine) = discovered(600, Setup::engine_with_store).await;
    let store = &s.store;

    s.fake
        .set(EXAMPLE, Reply::NoPolicy(Some(Duration::from_secs(3_600))));
    // Expired at 600: looked up again, still unpublished: no policy, and the store forgets it.
    play(&s, &engine, &[(61, "discovered id1"), (500, "memory id1")]).await;
    play(&s, &engine, &[(40, "discovered -")]).await;
    assert_eq!(s.fake.calls(), 3);
    assert_eq!(stored(&**store, EXAMPLE).await, None);
}

#[tokio::test]
async fn store_is_read_before_the_network() {
    let s = Setup::publishing(86_400);
    let host_a = s.engine_with_store();
    // Host B shares the store and the clock but has its own discoverer, which must never be used.
    let other = Setup {
        fake: Fake::new(),
        clock: Arc::clone(&s.clock),
        store: Arc::clone(&s.store),
    };
    let host_b = other.engine_with_store();

    answer(&host_a, EXAMPLE).await;
    play(&s, &host_b, &[(0, "store id1"), (0, "memory id1")]).await;
    // Both fronts' grace passes; A re-checks; B's next lookup finds A's check in the store.
    play(&s, &host_a, &[(61, "discovered id1")]).await;
    play(&s, &host_b, &[(1, "store id1")]).await;
    assert_eq!(other.fake.calls(), 0);
    assert_eq!(host_b.stats().store_hits.get(), 2);
}

/// What a [`Faulty`] store operation does.
#[derive(Debug, Default, Clone, Copy)]
enum Fault {
    /// Works (a memory store).
    #[default]
    No,
    /// Fails at once.
    Fail,
    /// Never finishes.
    Hang,
}

impl Fault {
    async fn on<T>(self, op: impl Future<Output = Result<T, CacheError>>) -> Result<T, CacheError> {
        match self {
            Self::No => op.await,
            Self::Fail => Err(CacheError::Corrupt {
                domain: String::new(),
                reason: "test fault".to_owned(),
            }),
            Self::Hang => std::future::pending().await,
        }
    }
}

/// A memory store whose reads, writes (entries and pass times) and scans can fail or hang.
#[derive(Debug, Default)]
struct Faulty {
    memory: MemoryCache,
    reads: Fault,
    writes: Fault,
    scans: Fault,
}

impl Faulty {
    /// Reads and writes as given; scans work.
    fn with(reads: Fault, writes: Fault) -> Arc<Self> {
        Arc::new(Self {
            reads,
            writes,
            ..Self::default()
        })
    }

    /// Every read, write and scan fails.
    fn broken() -> Arc<Self> {
        Arc::new(Self {
            reads: Fault::Fail,
            writes: Fault::Fail,
            scans: Fault::Fail,
            ..Self::default()
        })
    }
}

#[async_trait]
impl PolicyCache for Faulty {
    async fn get(&self, domain: &str) -> Result<Option<CacheEntry>, CacheError> {
        self.reads.on(self.memory.get(domain)).await
    }
    async fn set(&self, domain: &str, entry: &CacheEntry) -> Result<bool, CacheError> {
        self.writes.on(self.memory.set(domain, entry)).await
    }
    async fn scan(&self, token: Option<&ScanToken>, size: usize) -> Result<ScanPage, CacheError> {
        self.scans.on(self.memory.scan(token, size)).await
    }
    async fn remove(&self, domain: &str) -> Result<bool, CacheError> {
        self.memory.remove(domain).await
    }
    async fn clear(&self) -> Result<u64, CacheError> {
        self.memory.clear().await
    }
    async fn proactive_fetch_ts(&self) -> Result<Option<u64>, CacheError> {
        self.memory.proactive_fetch_ts().await
    }
    async fn set_proactive_fetch_ts(&self, ts: u64) -> Result<(), CacheError> {
        self.writes.on(self.memory.set_proactive_fetch_ts(ts)).await
    }
    async fn close(&self) {}
}

#[tokio::test]
async fn store_errors_never_fail_a_lookup() {
    let (_s, engine) = discovered(86_400, |s| s.engine_with(&Faulty::broken())).await;
    assert_eq!(answer(&engine, EXAMPLE).await, "memory id1");
    let stats = engine.stats();
    assert_eq!(
        counts([&stats.store_read_errors, &stats.store_write_errors]),
        [1, 1]
    );
    let report = engine.refresh_proactively(DAY, 2.0, 4).await;
    assert_eq!((report.scan_errors, report.completed), (1, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_share_one_discovery() {
    let s = Setup::publishing(86_400);
    s.fake.close_gate();
    let engine = s.engine();

    let lookups: Vec<_> = (0..20).map(|_| spawn_lookup(&engine, EXAMPLE)).collect();
    s.fake.wait_calls(1).await;
    // One lookup started the discovery; wait until the 19 others have joined it.
    eventually("19 lookups joined", || engine.stats().coalesced.get() == 19).await;
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
    let s = Setup::publishing(86_400);
    s.fake.close_gate();
    let engine = s.engine();

    let first = spawn_lookup(&engine, EXAMPLE);
    s.fake.wait_calls(1).await;
    let second = spawn_lookup(&engine, EXAMPLE);
    eventually("the second lookup joined", || {
        engine.stats().coalesced.get() == 1
    })
    .await;
    first.abort();
    assert!(first.await.is_err_and(|e| e.is_cancelled()));
    s.fake.open_gate();
    let resolution = second
        .await
        .unwrap_or_else(|e| panic!("second lookup: {e}"));
    assert_eq!(said(&resolution), "coalesced id1");
    assert_eq!(s.fake.calls(), 1);
    // The discovery finished and was cleaned up: memory answers, nothing in flight.
    assert_eq!(answer(&engine, EXAMPLE).await, "memory id1");
    assert!(settled(&engine));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discoveries_in_flight_are_bounded() {
    let s = Setup::new();
    s.fake.close_gate();
    let engine = s.builder().max_in_flight(2).build();

    let held = [
        spawn_lookup(&engine, "a.example"),
        spawn_lookup(&engine, "b.example"),
    ];
    s.fake.wait_calls(2).await;
    assert_eq!(engine.stats().in_flight.get(), 2);
    // A third domain cannot start within its (short) timeout: answered without discovery.
    let third = engine
        .resolve(&domain("c.example"), Duration::from_millis(200))
        .await;
    assert_eq!(said(&third), "unavailable -");
    assert_eq!(s.fake.calls(), 2);
    assert_eq!(engine.stats().overloaded.get(), 1);
    s.fake.open_gate();
    for lookup in held {
        assert!(lookup.await.is_ok());
    }
    // A slot is free again.
    answer(&engine, "c.example").await;
    assert_eq!(s.fake.calls(), 3);
}

#[tokio::test]
async fn proactive_refresh_walks_the_store() {
    let s = Setup::new();
    let (engine, store) = (s.engine_with_store(), &s.store);
    for name in ["a.example", "b.example", "c.example"] {
        s.fake.publish(name, "id1", 31_557_600);
        answer(&engine, name).await;
    }
    s.fake.publish("b.example", "id2", 31_557_600);
    s.fake.set("c.example", Reply::Fail);
    s.advance(3_600);
    // d.example was checked recently: not due.
    s.fake.publish("d.example", "id1", 31_557_600);
    answer(&engine, "d.example").await;
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
    assert_eq!(answer(&engine, "b.example").await, "memory id2");
    assert_eq!(stored(&**store, "a.example").await, Some((T0 + 3_600, T0)));
}

#[tokio::test]
async fn proactive_refresh_without_store_walks_memory_and_refetches_before_expiry() {
    let s = Setup::new();
    s.fake.publish("a.example", "id1", 86_400);
    let engine = s.engine();
    answer(&engine, "a.example").await;
    // Checked 1 h ago, but the policy would reach its near-expiry margin before the next daily pass: fetched
    // over HTTPS, not just re-checked.
    s.advance(3_600);
    let report = engine.refresh_proactively(DAY, 2.0, 10).await;
    assert_eq!((report.scanned, report.due, report.fetched), (1, 1, 1));
    assert_eq!(s.fake.asked(), [None, None]);
    assert_eq!(engine.last_proactive_refresh().await, Some(T0 + 3_600));
}

#[tokio::test]
async fn purge_forgets_a_domain() {
    let (s, engine) = discovered(86_400, Setup::engine_with_store).await;
    let store = &s.store;
    assert!(matches!(engine.purge(EXAMPLE).await, Ok(true)));
    assert_eq!(stored(&**store, EXAMPLE).await, None);
    assert_eq!(answer(&engine, EXAMPLE).await, "discovered id1");
    assert_eq!(s.fake.calls(), 2);
}

/// Issue 11 item 6: a purge wins over a discovery that started before it. The discovery is held at the fake's
/// gate (it re-checks id1 and will say "unchanged") while the domain, or everything, is purged; its answer still
/// reaches the lookup, but neither memory nor the store keep it, and the next lookup fetches the policy afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_wins_over_a_discovery_already_running() {
    for purge_all in [false, true] {
        let (s, engine) = discovered(86_400, Setup::engine_with_store).await;
        s.advance(61);
        s.fake.close_gate();
        let lookup = spawn_lookup(&engine, EXAMPLE);
        s.fake.wait_calls(2).await;
        let purged = if purge_all {
            engine.purge_all().await.map(|n| n == 1)
        } else {
            engine.purge(EXAMPLE).await
        };
        assert!(matches!(purged, Ok(true)), "purge_all: {purge_all}");
        s.fake.open_gate();
        let resolution = lookup.await.unwrap_or_else(|e| panic!("lookup task: {e}"));
        assert_eq!(said(&resolution), "discovered id1");
        engine.flush_store_writes().await;
        assert_eq!(engine.memory_entry(EXAMPLE), None, "purge_all: {purge_all}");
        assert_eq!(
            stored(&*s.store, EXAMPLE).await,
            None,
            "purge_all: {purge_all}"
        );
        assert_eq!(answer(&engine, EXAMPLE).await, "discovered id1");
        assert_eq!(
            s.fake.asked(),
            [None, Some("id1".to_owned()), None],
            "purge_all: {purge_all}: the purged id was re-checked"
        );
    }
}

/// A purge by another process (`mta-sts-daemon cache purge`) reaches a running engine within `cache_grace`,
/// even when the domain republished a changed policy under the same id: the engine does not re-check the old id,
/// it fetches the policy again.
#[tokio::test]
async fn an_entry_purged_from_the_store_is_forgotten_after_grace() {
    let s = Setup::publishing(86_400);
    let (engine, store) = (s.engine_with_store(), &s.store);
    let mx = |engine: &Engine| {
        let resolution = engine.cached(&domain(EXAMPLE));
        resolution
            .and_then(|r| r.policy)
            .map(|p| p.policy().mx()[0].as_str().to_owned())
    };
    assert_eq!(answer(&engine, EXAMPLE).await, "discovered id1");
    assert_eq!(mx(&engine).as_deref(), Some("mx.example.com"));

    // Another process purges the store; the domain changes its MX without changing the id.
    assert!(matches!(store.remove(EXAMPLE).await, Ok(true)));
    let moved =
        Policy::parse(b"version: STSv1\nmode: enforce\nmax_age: 86400\nmx: new.example.com\n")
            .unwrap_or_else(|e| panic!("test policy: {e}"));
    s.fake.set(EXAMPLE, Reply::Publish(id("id1"), moved));

    // Within grace the memory copy still answers.
    s.advance(59);
    assert_eq!(mx(&engine).as_deref(), Some("mx.example.com"));
    // After grace: the store has nothing, so the memory copy is dropped and the policy fetched afresh.
    s.advance(2);
    assert_eq!(answer(&engine, EXAMPLE).await, "discovered id1");
    assert_eq!(mx(&engine).as_deref(), Some("new.example.com"));
    assert_eq!(s.fake.asked(), [None, None], "the old id was re-checked");
    let stats = engine.stats();
    assert_eq!(
        counts([&stats.store_purged, &stats.fetched, &stats.unchanged]),
        [1, 2, 0]
    );
    assert_eq!(stored(&**store, EXAMPLE).await, Some((T0 + 61, T0 + 61)));
}

/// A store read error is not a purge: the memory copy is kept and only its id re-checked.
#[tokio::test]
async fn a_store_read_error_keeps_the_memory_copy() {
    let (s, engine) = discovered(86_400, |s| s.engine_with(&Faulty::broken())).await;
    s.advance(61);
    assert_eq!(answer(&engine, EXAMPLE).await, "discovered id1");
    assert_eq!(s.fake.asked(), [None, Some("id1".into())]);
    let stats = engine.stats();
    let read_errors = &stats.store_read_errors;
    assert_eq!(
        counts([&stats.store_purged, read_errors, &stats.unchanged]),
        [0, 2, 1]
    );
}

#[tokio::test]
async fn many_domains_stay_in_memory_up_to_capacity() {
    let s = Setup::new();
    let engine = s.builder().memory_capacity(4_000).build();
    let names: Vec<String> = (0..1_000).map(|i| format!("d{i}.example")).collect();
    for name in &names {
        s.fake.publish(name, "id1", 86_400);
        answer(&engine, name).await;
    }
    for name in &names {
        assert_eq!(answer(&engine, name).await, "memory id1", "{name}");
    }
    assert_eq!(s.fake.calls(), 1_000);
}

/// A cyclic scan of N + 1 domains over an N-entry front still answers from memory (issue 12 item 3): an LRU
/// would miss on every lookup; the front keeps the domains it holds and offers the others, read from the store,
/// to its admission filter, which keeps them out.
#[tokio::test]
async fn a_cyclic_scan_over_a_full_front_keeps_hitting() {
    const N: usize = 1_000;
    let s = Setup::new();
    // A store that holds every domain, as the daemon's SQLite store does.
    let store = Arc::new(MemoryCache::new(2 * N));
    let engine = s
        .builder()
        .memory_capacity(N)
        .store(Arc::clone(&store) as Arc<dyn PolicyCache>)
        .build();
    let names: Vec<String> = (0..=N).map(|i| format!("d{i}.example")).collect();
    for name in &names {
        s.fake.publish(name, "id1", 86_400);
    }
    let lookups = |rounds: usize| {
        let (engine, names) = (&engine, &names);
        async move {
            for _ in 0..rounds {
                for name in names {
                    engine.resolve(&domain(name), TIMEOUT).await;
                }
            }
        }
    };
    lookups(1).await;
    // Every discovery written through before the scan goes on (the writes are queued).
    for _ in 0..1_000 {
        if store.len() > N {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(store.len(), N + 1);
    lookups(2).await;
    assert!(engine.inner.front.len() <= N);
    let stats = engine.stats();
    let (hits, stored, calls) = (
        stats.memory_hits.get(),
        stats.store_hits.get(),
        s.fake.calls(),
    );
    lookups(3).await;
    let hits = stats.memory_hits.get() - hits;
    let stored = stats.store_hits.get() - stored;
    let asked = 3 * (N as u64 + 1);
    // Only the domain that does not fit is read from the store, once a round.
    assert!(
        hits >= asked - 3 * 3,
        "{hits} of {asked} lookups from memory"
    );
    assert_eq!(hits + stored, asked);
    assert_eq!(s.fake.calls(), calls, "no discovery");
}

/// The same cycle without a store (`cache.type: internal`): the front is the only memory, so what discoveries
/// learn competes for it; only the domain that does not fit is discovered again each round.
#[tokio::test]
async fn a_cyclic_scan_without_a_store_discovers_only_what_does_not_fit() {
    const N: usize = 1_000;
    let s = Setup::new();
    let engine = s.builder().memory_capacity(N).build();
    let names: Vec<String> = (0..=N).map(|i| format!("d{i}.example")).collect();
    for name in &names {
        s.fake.publish(name, "id1", 86_400);
    }
    for _ in 0..3 {
        for name in &names {
            engine.resolve(&domain(name), TIMEOUT).await;
        }
    }
    let (hits, calls) = (engine.stats().memory_hits.get(), s.fake.calls());
    for _ in 0..3 {
        for name in &names {
            engine.resolve(&domain(name), TIMEOUT).await;
        }
    }
    let hits = engine.stats().memory_hits.get() - hits;
    let asked = 3 * (N as u64 + 1);
    assert!(
        hits >= asked - 2 * 3,
        "{hits} of {asked} lookups from memory"
    );
    assert_eq!(hits + (s.fake.calls() - calls) as u64, asked);
}

/// A 64 KiB testing policy (issue 12: 10 000 of them used to take ~4.6 GB in memory).
fn large_policy() -> Policy {
    let mx: String = (0..2_700)
        .map(|i| format!("mx: mx{i:05}.example.net\n"))
        .collect();
    let text = format!("version: STSv1\nmode: testing\nmax_age: 86400\n{mx}");
    assert!((60 << 10..64 << 10).contains(&text.len()), "{}", text.len());
    Policy::parse(text.as_bytes()).unwrap_or_else(|e| panic!("large policy: {e}"))
}

/// Many large policies stay within the front's byte bound, far below its entry bound (issue 12 item 3).
#[tokio::test]
async fn large_policies_stay_within_the_byte_bound() {
    const BYTES: u64 = 8 << 20;
    let s = Setup::new();
    // With a store, as the daemon has: what a discovery learnt is always kept in memory.
    let engine = s
        .builder()
        .memory_capacity(10_000)
        .memory_bytes(BYTES)
        .store(Arc::clone(&s.store) as Arc<dyn PolicyCache>)
        .build();
    let large = large_policy();
    let names: Vec<String> = (0..100).map(|i| format!("d{i}.example")).collect();
    for name in &names {
        s.fake.set(name, Reply::Publish(id("big"), large.clone()));
        assert_eq!(answer(&engine, name).await, "discovered big");
        let front = &engine.inner.front;
        assert!(
            front.weight() <= BYTES,
            "{} bytes accounted",
            front.weight()
        );
    }
    let front = &engine.inner.front;
    // Each weighs over 128 KiB (its `mx` patterns and the reply derived from them), at most 64 fit.
    assert!((20..64).contains(&front.len()), "{} entries", front.len());
    assert!(
        front.weight() > BYTES / 2,
        "{} bytes accounted",
        front.weight()
    );
    // The last one is answered from memory.
    assert_eq!(answer(&engine, "d99.example").await, "memory big");
}

#[tokio::test]
async fn a_panicking_discovery_leaks_nothing() {
    let (s, engine) = discovered(600, Setup::engine).await;
    s.fake.set(EXAMPLE, Reply::Panic);
    s.advance(61);
    // The shared task died: the lookup answers from the cached policy, and nothing stays in flight.
    assert_eq!(answer(&engine, EXAMPLE).await, "stale id1");
    assert!(settled(&engine));
    let permits = engine.inner.permits.available_permits();
    assert_eq!(permits, crate::DEFAULT_MAX_IN_FLIGHT);
    // The next lookup can start a discovery again.
    s.fake.publish(EXAMPLE, "id2", 600);
    assert_eq!(answer(&engine, EXAMPLE).await, "discovered id2");
}

/// `s` with an engine on a [`Faulty`] store whose reads and writes do as told.
fn on_faulty(s: Setup, reads: Fault, writes: Fault) -> (Setup, Engine) {
    let engine = s.engine_with(&Faulty::with(reads, writes));
    (s, engine)
}

/// Store writes never delay an answer: a discovery is answered at once while its write waits for a hung store
/// (issue 11 item 2); the engine gives up on the write after its cap and counts it.
#[tokio::test(start_paused = true)]
async fn a_hanging_store_write_does_not_hold_the_lookup() {
    let (s, engine) = on_faulty(Setup::publishing(86_400), Fault::No, Fault::Hang);
    let started = tokio::time::Instant::now();
    assert_eq!(answer_now(&engine, EXAMPLE).await, "discovered id1");
    assert_eq!(started.elapsed(), Duration::ZERO, "the answer waited");
    assert!(settled(&engine), "the discovery waits for its write");
    s.advance(61);
    s.fake.publish(EXAMPLE, "id2", 86_400);
    assert_eq!(answer_now(&engine, EXAMPLE).await, "discovered id2");
    assert_eq!(started.elapsed(), Duration::ZERO, "the answer waited");
    // The engine gives up on each write after its cap.
    tokio::time::timeout(
        2 * crate::writes::STORE_CAP + Duration::from_secs(1),
        engine.flush_store_writes(),
    )
    .await
    .unwrap_or_else(|_| panic!("the writes were not given up"));
    assert_eq!(engine.stats().store_write_errors.get(), 2);
}

/// At most 1000 writes wait for a store that does not answer; more are dropped and counted (issue 11 item 2).
#[tokio::test(start_paused = true)]
async fn at_most_a_thousand_writes_wait_for_a_hung_store() {
    let (s, engine) = on_faulty(Setup::new(), Fault::No, Fault::Hang);
    let names: Vec<String> = (0..1_010).map(|i| format!("d{i}.example")).collect();
    for name in &names {
        s.fake.publish(name, "id1", 86_400);
        assert_eq!(answer_now(&engine, name).await, "discovered id1", "{name}");
    }
    // One write is in progress, a thousand wait, nine are dropped.
    assert_eq!(engine.stats().store_writes_dropped.get(), 9);
}

/// A store read gets a quarter of the lookup's timeout: a hung store is gone without, and the discovery runs
/// with the rest (issue 11 item 2). Row 2 of the table: before, the lookup waited for the store and
/// answered "no policy" without discovery.
#[tokio::test(start_paused = true)]
async fn a_hung_store_read_gets_a_quarter_of_the_timeout() {
    let (s, engine) = on_faulty(Setup::publishing(86_400), Fault::Hang, Fault::No);
    let started = tokio::time::Instant::now();
    assert_eq!(answer(&engine, EXAMPLE).await, "discovered id1");
    assert_eq!(started.elapsed(), TIMEOUT / 4);
    assert_eq!(engine.stats().store_read_errors.get(), 1);
    // The discovery had the rest of the timeout.
    assert!(s.fake.calls() == 1);
}

/// A wall clock that moves with tokio's time (paused in these tests): T0 when created.
#[derive(Debug)]
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn wall(&self) -> Duration {
        Duration::from_secs(T0) + self.0.elapsed()
    }
}

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

/// An engine on tokio's time and a memory store, `example.com` discovered (a year-long policy), and a proactive
/// pass recorded at `recorded` (Unix seconds).
async fn with_a_recorded_pass(recorded: u64) -> (Arc<Fake>, Arc<MemoryCache>, Engine) {
    let fake = Fake::new();
    fake.publish(EXAMPLE, "id1", 31_557_600);
    let store = Arc::new(MemoryCache::new(100));
    let engine = engine_on_tokio_time(&fake, Arc::clone(&store) as Arc<dyn PolicyCache>);
    answer(&engine, EXAMPLE).await;
    assert!(store.set_proactive_fetch_ts(recorded).await.is_ok());
    (fake, store, engine)
}

/// With a pass recorded an hour ago (by this host before a restart, or by another host sharing the store), the
/// next one waits until the recorded one is a day old; then one runs every day.
#[tokio::test(start_paused = true)]
async fn the_proactive_loop_waits_until_the_recorded_pass_is_an_interval_old() {
    let (fake, _store, engine) = with_a_recorded_pass(T0 - 3_600).await;

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
    let engine = engine_on_tokio_time(&fake, Faulty::broken());
    let (first, second) = first_two_passes(&engine).await;
    assert_eq!(
        first.finished_at, T0,
        "nothing recorded: the first pass runs at once"
    );
    assert_eq!(second, T0 + DAY.as_secs());
}

/// A wall clock stepping back or forth neither stretches nor cuts what memory keeps: grace, a cached "no
/// policy", the back-off, a policy's expiry (issue 11 item 1).
#[tokio::test]
async fn a_wall_clock_step_does_not_move_memory_deadlines() {
    let day = DAY.as_secs();
    let (s, engine) = discovered(600, Setup::engine).await;
    s.fake.set("none.example", Reply::NoPolicy(None));
    assert_eq!(answer(&engine, "none.example").await, "discovered -");
    // A day back: grace (60 s) still ends 60 s after the check, not a day later.
    s.clock.step(DAY, false);
    play(&s, &engine, &[(59, "memory id1"), (1, "discovered id1")]).await;
    assert_eq!(answer(&engine, "none.example").await, "discovered -");
    // A day forth: nothing is cut short, and the policy fetched 60 s ago is not taken as expired.
    s.clock.step(DAY, true);
    play(&s, &engine, &[(0, "memory id1")]).await;
    assert_eq!(answer(&engine, "none.example").await, "memory -");
    // The back-off after a failure lasts its 120 s, however the wall clock jumps meanwhile.
    s.fake.set(EXAMPLE, Reply::Fail);
    play(&s, &engine, &[(60, "stale id1")]).await;
    s.clock.set(T0 + 10 * day);
    play(&s, &engine, &[(119, "stale id1")]).await;
    assert_eq!(s.fake.calls(), 5);
    play(&s, &engine, &[(1, "stale id1")]).await;
    assert_eq!(s.fake.calls(), 6);
    // Expiry stays 600 s after the fetch on the monotonic clock (240 s have passed): it is still applied 359 s
    // on, and not 360 s on.
    s.clock.set(T0);
    play(&s, &engine, &[(359, "stale id1"), (1, "unavailable -")]).await;
}

/// A proactive pass recorded in the future (a host whose clock runs ahead shares the store) counts as run now:
/// the next one comes an interval later instead of never, and records a sane time (issue 11 item 1).
#[tokio::test(start_paused = true)]
async fn a_proactive_pass_recorded_in_the_future_counts_as_now() {
    let (_fake, store, engine) = with_a_recorded_pass(T0 + 10 * 365 * DAY.as_secs()).await;

    let (first, second) = first_two_passes(&engine).await;
    assert_eq!(
        first.finished_at,
        T0 + DAY.as_secs(),
        "the pass recorded in the future did not count as now"
    );
    assert_eq!(second, first.finished_at + DAY.as_secs());
    assert_eq!(
        store.proactive_fetch_ts().await.ok().flatten(),
        Some(second)
    );
}

/// An entry checked in the future (a host whose clock runs ahead wrote it) counts as checked now: answered for
/// `cache_grace`, then re-checked by TXT, and that check replaces it in the store; it is counted (issue 11
/// item 1). Row 1 of the table: before, it was served forever with no DNS query.
#[tokio::test]
async fn an_entry_checked_in_the_future_is_rechecked_after_grace_and_replaced() {
    let s = Setup::publishing(86_400);
    // The store's clock is the system's: the engine's wall clock shows the same.
    let now = mtasts_cache::skew_limit() - mtasts_cache::MAX_CLOCK_SKEW.as_secs();
    s.clock.set(now);
    let ahead = CacheEntry::new(now + 86_400, id("id1"), policy(86_400));
    assert!(matches!(s.store.set(EXAMPLE, &ahead).await, Ok(true)));
    let engine = s.engine_with_store();

    play(&s, &engine, &[(0, "store id1"), (59, "memory id1")]).await;
    assert_eq!(s.fake.calls(), 0);
    play(&s, &engine, &[(1, "discovered id1")]).await;
    assert_eq!(s.fake.asked(), [Some("id1".into())]);
    assert_eq!(stored(&*s.store, EXAMPLE).await, Some((now + 60, now)));
    assert_eq!(engine.stats().store_skewed.get(), 2);
}

/// A domain publishing an invalid `STSv1` record (here a bad id) has no policy (RFC 8461 §3.1) and is counted as
/// an invalid record at each discovery; a domain publishing no record at all is not (issue 14 item 4).
#[tokio::test]
async fn invalid_records_are_counted_and_missing_ones_are_not() {
    struct Records;
    #[async_trait]
    impl Discover for Records {
        async fn discover(&self, request: &DiscoveryRequest<'_>) -> Discovery {
            let text = if request.domain.as_str().starts_with("bad") {
                "v=STSv1; id=not-an-id!;"
            } else {
                "v=spf1 -all"
            };
            let error = mtasts_core::select_record([text]).expect_err("no valid record");
            Discovery::NoPolicy {
                reason: NoPolicyReason::NoValidRecord(error),
                negative_ttl: None,
            }
        }
    }
    let engine = Engine::builder(Records).build();
    for name in ["bad.example", "bad2.example", "spf.example"] {
        let resolution = engine.resolve(&domain(name), TIMEOUT).await;
        assert!(resolution.policy.is_none(), "{name}: {resolution:?}");
    }
    assert_eq!(engine.stats().no_policy.get(), 3);
    assert_eq!(engine.stats().invalid_records.get(), 2);
}
