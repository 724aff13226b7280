//! The conformance suite every [`PolicyCache`] store runs in its integration tests (feature `conformance`).
//!
//! Each function is one test: it takes a store over **fresh, empty storage** (its own file, schema, key prefix
//! or database), exercises it and panics with a message saying what went wrong:
//!
//! | function | needs |
//! |---|---|
//! | [`get_set`], [`newer_wins`], [`future_rows`], [`concurrent_writers`], [`paging`], [`remove_clear`], [`proactive_ts`] | the store |
//! | [`shared_storage`] | two stores over the same storage |
//! | [`corrupt_entries`] | a [`CorruptInjector`] that writes undecodable rows behind the store's back |
//! | [`unreachable()`] | a way to open the store against an address (`open(addr)`), for servers |
//! | [`outage_and_recovery`] | an [`Outage`], e.g. the store connected through a [`TcpProxy`] |
//!
//! A store's `tests/it` implements [`Harness`] (fresh storage and stores over it; [`CorruptInjector`] and
//! [`Networked`] where they apply) and lets [`conformance_tests!`](crate::conformance_tests) write one
//! `#[tokio::test(flavor = "multi_thread")]` per function:
//!
//! ```no_run
//! use std::sync::Arc;
//! use mtasts_cache::conformance::Harness;
//! use mtasts_cache::{async_trait, MemoryCache, PolicyCache};
//!
//! struct Memory(Arc<dyn PolicyCache>);
//!
//! #[async_trait]
//! impl Harness for Memory {
//!     async fn create() -> Option<Self> {
//!         Some(Self(Arc::new(MemoryCache::new(20_000))))
//!     }
//!     async fn store(&self) -> Arc<dyn PolicyCache> {
//!         Arc::clone(&self.0)
//!     }
//! }
//!
//! mtasts_cache::conformance_tests!(Memory: basic, shared_storage);
//! # fn main() {}
//! ```
//!
//! Timestamps used stay below 2³¹ (the Python daemon's PostgreSQL `ts` column is an `integer`).

#![allow(
    clippy::missing_panics_doc,
    reason = "test-suite functions report failures by panicking"
)]
#![allow(
    clippy::panic,
    reason = "test-suite functions report failures by panicking"
)]

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mtasts_core::Policy;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{CacheEntry, CacheError, PolicyCache, ScanToken};

/// Fresh storage for one test, and stores over it: what [`conformance_tests!`](crate::conformance_tests) needs.
#[async_trait]
pub trait Harness: Sized + Send + Sync {
    /// Fresh, empty storage (a file, a schema, a database), or `None` when the service it needs is missing and
    /// the test may be skipped: outside CI only, after printing why (under CI the harness panics instead).
    async fn create() -> Option<Self>;

    /// A new store over this storage with the harness's usual options.
    async fn store(&self) -> Arc<dyn PolicyCache>;

    /// What writes undecodable entries into this storage, for [`corrupt_entries`]. Default: none (a
    /// `corrupt_entries` test of this harness fails saying so).
    fn injector(&self) -> Option<&dyn CorruptInjector> {
        None
    }

    /// Cleans up after a test that passed (drops a schema, flushes a database). Default: nothing.
    async fn finish(self) {}
}

/// A [`Harness`] whose store talks to a server over TCP, for [`unreachable()`] and [`outage_and_recovery`].
#[async_trait]
pub trait Networked: Harness {
    /// The server's address, to put a [`TcpProxy`] in front of it.
    async fn server_addr(&self) -> SocketAddr;

    /// A store over this storage that reaches its server at `addr`, with its timeouts set to `timeout`.
    async fn open_at(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Arc<dyn PolicyCache>, CacheError>;
}

/// Writes one `#[tokio::test(flavor = "multi_thread")]` per conformance function for a [`Harness`], each on
/// fresh storage from [`Harness::create`] (returning early when it is `None`) and ending with
/// [`Harness::finish`].
///
/// The list names the functions to run; `basic` stands for [`get_set`], [`newer_wins`],
/// [`concurrent_writers`], [`paging`], [`remove_clear`] and [`proactive_ts`]. [`corrupt_entries`] needs
/// [`Harness::injector`]; [`unreachable()`] (with a 1 s timeout) and [`outage_and_recovery`]
/// (through a [`TcpProxy`]) need it to be [`Networked`]. The calling crate needs tokio's `macros` feature.
#[macro_export]
macro_rules! conformance_tests {
    (@test $h:ty, basic) => {
        $crate::conformance_tests!(
            $h: get_set, newer_wins, future_rows, concurrent_writers, paging, remove_clear, proactive_ts
        );
    };
    (@test $h:ty, $test:ident) => {
        $crate::harness_tests!(@one [$crate::conformance::run::] $h, $test);
    };
    ($harness:ty: $($test:ident),+ $(,)?) => {
        $($crate::conformance_tests!(@test $harness, $test);)+
    };
}

/// Writes one `#[tokio::test(flavor = "multi_thread")]` per named function of `module`, each an
/// `async fn(&H)` run on fresh storage of the [`Harness`] `H` from [`Harness::create`] (returning early when it
/// is `None`), followed by [`Harness::finish`].
///
/// ```no_run
/// # use std::sync::Arc;
/// # use mtasts_cache::conformance::Harness;
/// # use mtasts_cache::{async_trait, MemoryCache, PolicyCache};
/// # struct Memory(Arc<dyn PolicyCache>);
/// # #[async_trait]
/// # impl Harness for Memory {
/// #     async fn create() -> Option<Self> { Some(Self(Arc::new(MemoryCache::new(10)))) }
/// #     async fn store(&self) -> Arc<dyn PolicyCache> { Arc::clone(&self.0) }
/// # }
/// mod cases {
///     use mtasts_cache::conformance::Harness;
///
///     /// A store starts empty.
///     pub(super) async fn starts_empty(memory: &super::Memory) {
///         assert!(memory.store().await.get("example.com").await.unwrap().is_none());
///     }
/// }
///
/// mtasts_cache::harness_tests!(Memory, cases: starts_empty);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! harness_tests {
    (@one [$($call:tt)*] $harness:ty, $test:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $test() {
            let Some(harness) = <$harness as $crate::conformance::Harness>::create().await else {
                return;
            };
            $($call)*$test(&harness).await;
            $crate::conformance::Harness::finish(harness).await;
        }
    };
    ($harness:ty, $module:ident: $($test:ident),+ $(,)?) => {
        $($crate::harness_tests!(@one [$module::] $harness, $test);)+
    };
}

/// The bodies of the tests [`conformance_tests!`](crate::conformance_tests) writes, one per conformance
/// function, over a [`Harness`].
#[doc(hidden)]
pub mod run {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Harness, Networked, TcpProxy};
    use crate::PolicyCache;

    macro_rules! on_one_store {
        ($($name:ident),*) => {$(
            #[doc = concat!("[`super::", stringify!($name), "`] on a store of `harness`.")]
            pub async fn $name<H: Harness>(harness: &H) {
                let store = harness.store().await;
                super::$name(&store).await;
                store.close().await;
            }
        )*};
    }

    on_one_store!(
        get_set,
        newer_wins,
        future_rows,
        concurrent_writers,
        paging,
        remove_clear,
        proactive_ts
    );

    /// [`super::shared_storage`] on two stores of `harness`.
    pub async fn shared_storage<H: Harness>(harness: &H) {
        let (a, b) = (harness.store().await, harness.store().await);
        super::shared_storage(&a, &b).await;
        a.close().await;
        b.close().await;
    }

    /// [`super::corrupt_entries`] with the harness's [injector](Harness::injector).
    pub async fn corrupt_entries<H: Harness>(harness: &H) {
        let injector = harness
            .injector()
            .unwrap_or_else(|| panic!("this harness cannot corrupt its storage"));
        let store = harness.store().await;
        super::corrupt_entries(&store, injector).await;
        store.close().await;
    }

    /// [`super::unreachable()`] with a 1 s timeout.
    pub async fn unreachable<H: Networked>(harness: &H) {
        let timeout = Duration::from_secs(1);
        super::unreachable(timeout, |addr| harness.open_at(addr, timeout)).await;
    }

    /// [`super::outage_and_recovery`] through a [`TcpProxy`] in front of the server, with a 1 s timeout.
    pub async fn outage_and_recovery<H: Networked>(harness: &H) {
        let timeout = Duration::from_secs(1);
        let proxy = TcpProxy::start(harness.server_addr().await)
            .await
            .unwrap_or_else(|e| panic!("start proxy: {e}"));
        let store: Arc<dyn PolicyCache> = harness
            .open_at(proxy.addr(), timeout)
            .await
            .unwrap_or_else(|e| panic!("open the store through the proxy: {e}"));
        super::outage_and_recovery(&store, &proxy, timeout).await;
        store.close().await;
    }
}

/// Base timestamp for test entries (2023-11-14).
const T0: u64 = 1_700_000_000;

/// A policy for tests; `variant` picks one of a few shapes (enforce with a wildcard, testing with an unknown
/// key, none without `mx`).
#[must_use]
pub fn sample_policy(variant: usize) -> Policy {
    let text = match variant % 3 {
        0 => {
            "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\nmx: *.backup.example.net\n"
        }
        1 => {
            "version: STSv1\nmode: testing\nmax_age: 604800\nmx: mx1.example.org\nfuture_key: some value\n"
        }
        _ => "version: STSv1\nmode: none\nmax_age: 31557600\n",
    };
    Policy::parse(text.as_bytes())
        .unwrap_or_else(|e| panic!("sample policy {variant} does not parse: {e}"))
}

/// An entry for tests: policy id `id<checked_at>`, fetched 60 s before `checked_at`, policy shape from
/// `checked_at` (see [`sample_policy`]).
#[must_use]
pub fn sample_entry(checked_at: u64) -> CacheEntry {
    let id = format!("id{checked_at}")
        .parse()
        .unwrap_or_else(|e| panic!("sample id: {e}"));
    #[allow(clippy::cast_possible_truncation, reason = "only selects a shape")]
    let variant = (checked_at % 3) as usize;
    CacheEntry {
        checked_at,
        fetched_at: checked_at.saturating_sub(60),
        policy_id: id,
        policy: sample_policy(variant),
    }
}

fn ok<T, E: Debug>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

/// Stores `sample_entry(T0 + i)` for `{prefix}{i}.example`, `i` in `0..n`.
async fn fill(store: &Arc<dyn PolicyCache>, prefix: &str, n: u64) {
    for i in 0..n {
        must_set(
            &**store,
            &format!("{prefix}{i}.example"),
            &sample_entry(T0 + i),
        )
        .await;
    }
}

/// Stores `entry` for `domain`, panicking unless the store wrote it (an error, or an entry as new kept).
pub async fn must_set(store: &dyn PolicyCache, domain: &str, entry: &CacheEntry) {
    let written = ok(&format!("set {domain}"), store.set(domain, entry).await);
    assert!(written, "set {domain}: a newer entry was kept");
}

/// get on a missing key, set, get back exactly (both timestamps, id, every policy shape), keys independent.
pub async fn get_set(store: &Arc<dyn PolicyCache>) {
    assert_eq!(ok("get missing", store.get("missing.example").await), None);
    for i in 0..3u64 {
        let domain = format!("shape{i}.example.com");
        let entry = sample_entry(T0 + i);
        assert!(
            ok("set new", store.set(&domain, &entry).await),
            "set of a new domain must write"
        );
        assert_eq!(
            ok("get", store.get(&domain).await).as_ref(),
            Some(&entry),
            "{domain} must round-trip"
        );
    }
    // fetched_at may lag far behind checked_at (TXT id confirmed many times since the fetch).
    let entry = CacheEntry {
        fetched_at: T0 - 86_400,
        ..sample_entry(T0 + 10)
    };
    assert!(ok("set", store.set("lagging.example", &entry).await));
    assert_eq!(ok("get", store.get("lagging.example").await), Some(entry));
    assert_eq!(
        ok("get missing", store.get("shape0.example.co").await),
        None,
        "no prefix matching"
    );
    assert_eq!(ok("get missing", store.get("missing.example").await), None);
}

/// An older or equal write never replaces a newer one; a newer one does.
pub async fn newer_wins(store: &Arc<dyn PolicyCache>) {
    let d = "newer.example.com";
    let current = sample_entry(T0 + 100);
    assert!(ok("set", store.set(d, &current).await));
    assert!(
        !ok("set older", store.set(d, &sample_entry(T0 + 50)).await),
        "older write must be rejected"
    );
    let same_ts = CacheEntry {
        policy_id: "other".parse().unwrap_or_else(|e| panic!("{e}")),
        ..current.clone()
    };
    assert!(
        !ok("set equal", store.set(d, &same_ts).await),
        "write with equal checked_at must be rejected"
    );
    assert_eq!(ok("get", store.get(d).await).as_ref(), Some(&current));
    let newer = sample_entry(T0 + 101);
    assert!(
        ok("set newer", store.set(d, &newer).await),
        "newer write must win"
    );
    assert_eq!(ok("get", store.get(d).await), Some(newer));
    // Ordering is by checked_at only: a re-check with an older fetch time still wins.
    let rechecked = CacheEntry {
        fetched_at: T0,
        ..sample_entry(T0 + 200)
    };
    assert!(ok("set rechecked", store.set(d, &rechecked).await));
    assert_eq!(ok("get", store.get(d).await), Some(rechecked));
}

/// Entries checked in the future, as a host whose clock runs ahead writes them: one more than
/// [`MAX_CLOCK_SKEW`](crate::MAX_CLOCK_SKEW) ahead of this host's clock counts as checked now, so a write
/// checked now replaces it; one less far ahead is still newer than now and kept. Times are from the system
/// clock, a day and 30 s away from the limit, so the test does not depend on timing.
pub async fn future_rows(store: &Arc<dyn PolicyCache>) {
    let now = crate::skew_limit() - crate::MAX_CLOCK_SKEW.as_secs();
    let d = "ahead.example";
    let ahead = sample_entry(now + 86_400);
    assert!(ok("set a day ahead", store.set(d, &ahead).await));
    assert_eq!(ok("get", store.get(d).await).as_ref(), Some(&ahead));
    let fresh = sample_entry(now);
    assert!(
        ok("set now over a day ahead", store.set(d, &fresh).await),
        "an entry a day in the future must not win over a write checked now"
    );
    assert_eq!(ok("get", store.get(d).await), Some(fresh.clone()));
    let near = sample_entry(now + 30);
    assert!(ok("set 30 s ahead", store.set(d, &near).await));
    assert!(
        !ok("set now over 30 s ahead", store.set(d, &fresh).await),
        "an entry less than MAX_CLOCK_SKEW ahead is still newer"
    );
    assert_eq!(ok("get", store.get(d).await), Some(near));
}

/// 16 tasks write random timestamps to 3 domains concurrently; the maximum wins for every domain and the stored
/// entry is never a mix of two writes.
pub async fn concurrent_writers(store: &Arc<dyn PolicyCache>) {
    const TASKS: u64 = 16;
    const WRITES: u64 = 25;
    let domains = ["race0.example", "race1.example", "race2.example"];
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let mut rng =
                XorShift(0x9E37_79B9_7F4A_7C15 ^ (t + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
            let mut results = Vec::new();
            for _ in 0..WRITES {
                let domain = domains[usize::try_from(rng.next() % 3).unwrap_or(0)];
                let ts = T0 + rng.next() % 1_000_000;
                let written = ok("concurrent set", store.set(domain, &sample_entry(ts)).await);
                results.push((domain, ts, written));
            }
            results
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(
            task.await
                .unwrap_or_else(|e| panic!("writer task failed: {e}")),
        );
    }
    for domain in domains {
        let Some(max) = all
            .iter()
            .filter(|(d, _, _)| *d == domain)
            .map(|(_, ts, _)| *ts)
            .max()
        else {
            continue;
        };
        let stored =
            ok("get", store.get(domain).await).unwrap_or_else(|| panic!("{domain} missing"));
        assert_eq!(
            stored,
            sample_entry(max),
            "{domain}: the newest write must win, intact"
        );
        assert!(
            all.iter()
                .any(|(d, ts, w)| *d == domain && *ts == max && *w),
            "{domain}: the newest write must have reported Ok(true)"
        );
    }
    assert!(all.iter().filter(|(_, _, w)| *w).count() >= domains.len());
}

/// 10 000 entries, scanned in pages of 97 with the token passed through its text form: every domain exactly
/// once, entries intact, then again with one big page size.
pub async fn paging(store: &Arc<dyn PolicyCache>) {
    const N: u64 = 10_000;
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            for i in (w..N).step_by(8) {
                let written = ok(
                    "set",
                    store
                        .set(&format!("d{i:05}.example"), &sample_entry(T0 + i))
                        .await,
                );
                assert!(written, "set of new domain d{i:05}.example must write");
            }
        }));
    }
    for task in tasks {
        task.await
            .unwrap_or_else(|e| panic!("writer task failed: {e}"));
    }
    for page_size in [97, 5_000] {
        let mut seen: HashMap<String, CacheEntry> = HashMap::new();
        let mut token: Option<ScanToken> = None;
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(
                pages <= N + 10,
                "scan does not terminate (page size {page_size})"
            );
            let page = ok("scan", store.scan(token.as_ref(), page_size).await);
            assert!(
                page.corrupt.is_empty(),
                "no corrupt entries expected: {:?}",
                page.corrupt
            );
            for (domain, entry) in page.entries {
                if let Some(prev) = seen.insert(domain.clone(), entry) {
                    panic!("{domain} seen twice (first {prev:?}), page size {page_size}");
                }
            }
            let Some(next) = page.next else { break };
            // Resume from the token's text form, as a restarted refresher would.
            token = Some(next.to_string().parse().unwrap_or_else(|e| match e {}));
        }
        assert_eq!(
            seen.len() as u64,
            N,
            "every entry seen once (page size {page_size})"
        );
        if page_size == 97 {
            assert!(pages > 1, "10 000 entries must not fit one page of 97");
        }
        for i in 0..N {
            let domain = format!("d{i:05}.example");
            assert_eq!(
                seen.get(&domain),
                Some(&sample_entry(T0 + i)),
                "{domain} intact"
            );
        }
    }
}

/// remove (present / absent), clear (count; proactive timestamp kept), empty scan afterwards.
pub async fn remove_clear(store: &Arc<dyn PolicyCache>) {
    fill(store, "rm", 3).await;
    ok(
        "set_proactive_fetch_ts",
        store.set_proactive_fetch_ts(T0).await,
    );
    assert!(!ok("remove absent", store.remove("absent.example").await));
    assert!(ok("remove", store.remove("rm1.example").await));
    assert!(!ok("remove again", store.remove("rm1.example").await));
    assert_eq!(ok("get removed", store.get("rm1.example").await), None);
    assert!(ok("get kept", store.get("rm0.example").await).is_some());
    // A removed domain can be written again with any timestamp.
    assert!(ok(
        "set after remove",
        store.set("rm1.example", &sample_entry(T0)).await
    ));
    assert_eq!(ok("clear", store.clear().await), 3);
    for i in 0..3 {
        assert_eq!(
            ok(
                "get after clear",
                store.get(&format!("rm{i}.example")).await
            ),
            None
        );
    }
    let page = ok("scan after clear", store.scan(None, 100).await);
    assert!(
        page.entries.is_empty() && page.corrupt.is_empty() && page.next.is_none(),
        "{page:?}"
    );
    assert_eq!(ok("clear empty", store.clear().await), 0);
    assert_eq!(
        ok("proactive ts kept", store.proactive_fetch_ts().await),
        Some(T0)
    );
}

/// The proactive refresh timestamp: absent at first, then whatever was set last (not newer-wins).
pub async fn proactive_ts(store: &Arc<dyn PolicyCache>) {
    assert_eq!(ok("get", store.proactive_fetch_ts().await), None);
    ok("set", store.set_proactive_fetch_ts(T0).await);
    assert_eq!(ok("get", store.proactive_fetch_ts().await), Some(T0));
    ok("set", store.set_proactive_fetch_ts(T0 + 3600).await);
    assert_eq!(ok("get", store.proactive_fetch_ts().await), Some(T0 + 3600));
    ok("set", store.set_proactive_fetch_ts(T0 - 1).await);
    assert_eq!(
        ok("get", store.proactive_fetch_ts().await),
        Some(T0 - 1),
        "last write is kept, even if older"
    );
    // Policy entries are separate from it.
    assert_eq!(ok("get entry", store.get("_metadata").await), None);
}

/// Two stores over the same storage (two daemons of a fleet, or a restart): each sees the other's writes, newer
/// wins across them, also under concurrent writers, and the proactive timestamp is shared.
pub async fn shared_storage(a: &Arc<dyn PolicyCache>, b: &Arc<dyn PolicyCache>) {
    let d = "shared.example";
    assert!(ok("set a", a.set(d, &sample_entry(T0 + 100)).await));
    assert_eq!(
        ok("get b", b.get(d).await),
        Some(sample_entry(T0 + 100)),
        "b sees a's write"
    );
    assert!(
        !ok("set b older", b.set(d, &sample_entry(T0 + 50)).await),
        "older write from b rejected"
    );
    assert!(ok("set b newer", b.set(d, &sample_entry(T0 + 200)).await));
    assert_eq!(
        ok("get a", a.get(d).await),
        Some(sample_entry(T0 + 200)),
        "a sees b's newer write"
    );
    ok("set ts", a.set_proactive_fetch_ts(T0).await);
    assert_eq!(ok("get ts", b.proactive_fetch_ts().await), Some(T0));

    let mut tasks = Vec::new();
    for (i, store) in [a, b].into_iter().enumerate() {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let mut rng = XorShift(0xA076_1D64_78BD_642F ^ (i as u64 + 7));
            for _ in 0..50 {
                let ts = T0 + 1_000 + rng.next() % 100_000;
                ok(
                    "concurrent set",
                    store.set("race.example", &sample_entry(ts)).await,
                );
            }
            let mut rng = XorShift(0xA076_1D64_78BD_642F ^ (i as u64 + 7));
            (0..50)
                .map(|_| T0 + 1_000 + rng.next() % 100_000)
                .max()
                .unwrap_or(0)
        }));
    }
    let mut max = 0;
    for task in tasks {
        max = max.max(
            task.await
                .unwrap_or_else(|e| panic!("writer task failed: {e}")),
        );
    }
    assert_eq!(
        ok("get a", a.get("race.example").await),
        Some(sample_entry(max)),
        "newest write wins"
    );
    assert_eq!(
        ok("get b", b.get("race.example").await),
        Some(sample_entry(max)),
        "both agree"
    );
    assert!(ok("remove via b", b.remove(d).await));
    assert_eq!(ok("get a after remove", a.get(d).await), None);
}

/// Writes undecodable entries behind a store's back, for [`corrupt_entries`].
#[async_trait]
pub trait CorruptInjector: Send + Sync {
    /// How many kinds of corruption [`CorruptInjector::inject`] knows (at least 1).
    fn variants(&self) -> usize;

    /// Writes, directly in the storage, an entry for `domain` that the store cannot decode — corruption kind
    /// `variant` (below [`CorruptInjector::variants`]: bad JSON, invalid policy, invalid id, bad timestamp…).
    /// Where the kind allows, the entry's timestamp is `ts`.
    async fn inject(&self, domain: &str, ts: u64, variant: usize);
}

/// Corrupt entries: `get` returns [`CacheError::Corrupt`] naming the domain, `scan` reports each once and still
/// returns every good entry once, `remove` deletes one, and a newer `set` replaces one.
pub async fn corrupt_entries(store: &Arc<dyn PolicyCache>, injector: &dyn CorruptInjector) {
    let variants = injector.variants().max(1);
    fill(store, "good", 5).await;
    let bad: Vec<String> = (0..variants).map(|v| format!("bad{v}.example")).collect();
    for (v, domain) in bad.iter().enumerate() {
        injector.inject(domain, T0, v).await;
    }
    for domain in &bad {
        match store.get(domain).await {
            Err(CacheError::Corrupt { domain: d, .. }) => assert_eq!(&d, domain),
            other => panic!("get {domain}: expected CacheError::Corrupt, got {other:?}"),
        }
    }
    assert!(
        ok("get good", store.get("good0.example").await).is_some(),
        "good entries still readable"
    );

    let (mut good, mut corrupt) = (HashSet::new(), Vec::new());
    let mut token = None;
    for _ in 0..1_000 {
        let page = ok("scan", store.scan(token.as_ref(), 2).await);
        for (domain, _) in page.entries {
            assert!(good.insert(domain.clone()), "{domain} seen twice");
        }
        corrupt.extend(page.corrupt.into_iter().map(|c| {
            assert_eq!(c.error.kind(), "corrupt", "{}: {:?}", c.domain, c.error);
            c.domain
        }));
        token = page.next;
        if token.is_none() {
            break;
        }
    }
    assert!(token.is_none(), "scan over corrupt entries must terminate");
    assert_eq!(good.len(), 5, "every good entry scanned once: {good:?}");
    corrupt.sort();
    let mut want = bad.clone();
    want.sort();
    assert_eq!(corrupt, want, "every corrupt entry reported exactly once");

    // Administration works on corrupt entries, and a fresh write replaces one.
    assert!(ok("remove corrupt", store.remove(&bad[0]).await));
    assert_eq!(ok("get removed", store.get(&bad[0]).await), None);
    for domain in &bad[1..] {
        let fresh = sample_entry(T0 + 1_000);
        assert!(
            ok("set over corrupt", store.set(domain, &fresh).await),
            "{domain}: newer set must replace it"
        );
        assert_eq!(ok("get healed", store.get(domain).await), Some(fresh));
    }
}

/// The bound within which every operation must finish when the server is unreachable, for a store configured
/// with `timeout`: `3 × timeout + 2 s`.
#[must_use]
pub fn failure_bound(timeout: Duration) -> Duration {
    timeout * 3 + Duration::from_secs(2)
}

async fn must_fail<T, F>(what: &str, bound: Duration, fut: F)
where
    T: Debug,
    F: Future<Output = Result<T, CacheError>>,
{
    let started = Instant::now();
    match tokio::time::timeout(bound, fut).await {
        Err(_) => panic!(
            "{what}: still running after {bound:?} although the server is unreachable (hang)"
        ),
        Ok(Ok(v)) => panic!("{what}: succeeded ({v:?}) although the server is unreachable"),
        Ok(Err(e)) => assert!(
            e.is_transient(),
            "{what}: expected an unavailable/timeout error, got {e:?} after {:?}",
            started.elapsed()
        ),
    }
}

async fn all_ops_fail(store: &Arc<dyn PolicyCache>, bound: Duration, when: &str) {
    let entry = sample_entry(T0 + 500);
    must_fail(&format!("get ({when})"), bound, store.get("outage.example")).await;
    must_fail(
        &format!("set ({when})"),
        bound,
        store.set("outage.example", &entry),
    )
    .await;
    must_fail(&format!("scan ({when})"), bound, store.scan(None, 10)).await;
    must_fail(
        &format!("remove ({when})"),
        bound,
        store.remove("outage.example"),
    )
    .await;
    must_fail(&format!("clear ({when})"), bound, store.clear()).await;
    must_fail(
        &format!("proactive_fetch_ts ({when})"),
        bound,
        store.proactive_fetch_ts(),
    )
    .await;
    must_fail(
        &format!("set_proactive_fetch_ts ({when})"),
        bound,
        store.set_proactive_fetch_ts(T0),
    )
    .await;
}

/// A store pointed at a closed local port, then at a port that accepts connections and never answers: opening
/// it fails with a transient error, or succeeds and then every operation fails — always within
/// [`failure_bound`]`(timeout)`, never hanging.
///
/// `open(addr)` opens the store against `addr` with its timeout set to `timeout`.
pub async fn unreachable<F, Fut>(timeout: Duration, open: F)
where
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = Result<Arc<dyn PolicyCache>, CacheError>>,
{
    let bound = failure_bound(timeout);
    let closed = {
        let listener = ok("bind", TcpListener::bind("127.0.0.1:0").await);
        ok("local_addr", listener.local_addr())
    };
    let silent = ok("silent server", SilentServer::start().await);
    for (addr, what) in [(closed, "closed port"), (silent.addr, "silent server")] {
        let store = match tokio::time::timeout(bound, open(addr)).await {
            Err(_) => panic!("opening against a {what}: still running after {bound:?} (hang)"),
            Ok(Err(e)) => {
                assert!(
                    e.is_transient(),
                    "opening against a {what}: expected unavailable/timeout, got {e:?}"
                );
                continue;
            }
            Ok(Ok(store)) => store,
        };
        all_ops_fail(&store, bound, what).await;
        store.close().await;
    }
}

/// Makes a store's server unreachable and brings it back, for [`outage_and_recovery`].
#[async_trait]
pub trait Outage: Send + Sync {
    /// Connections are dropped and new ones refused.
    async fn refuse(&self);
    /// Connections stay open but nothing is answered (a black hole); new ones are accepted and ignored.
    async fn stall(&self);
    /// The server is reachable again.
    async fn restore(&self);
}

/// While the server refuses connections, and while it is silent, every operation fails within
/// [`failure_bound`]`(timeout)`; once it is back the same store works again and the data is still there.
///
/// `store` must be connected through `outage` with its timeout set to `timeout`.
pub async fn outage_and_recovery(
    store: &Arc<dyn PolicyCache>,
    outage: &dyn Outage,
    timeout: Duration,
) {
    let bound = failure_bound(timeout);
    let before = sample_entry(T0);
    assert!(ok(
        "set before outage",
        store.set("kept.example", &before).await
    ));
    for (mode, name) in [(0, "refused"), (1, "silent"), (0, "refused again")] {
        if mode == 0 {
            outage.refuse().await;
        } else {
            outage.stall().await;
        }
        all_ops_fail(store, bound, name).await;
        outage.restore().await;
        // The store must recover by itself: allow a few failed attempts while dead connections are noticed.
        let deadline = Instant::now() + bound * 2;
        loop {
            match tokio::time::timeout(bound, store.get("kept.example")).await {
                Ok(Ok(got)) => {
                    assert_eq!(
                        got.as_ref(),
                        Some(&before),
                        "data kept across the outage ({name})"
                    );
                    break;
                }
                Ok(Err(e)) if e.is_transient() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Err(e)) => panic!("no recovery after the server came back ({name}): {e:?}"),
                Err(_) => panic!("get hung after the server came back ({name})"),
            }
        }
        let after = sample_entry(T0 + 10 + mode);
        let written = ok(
            "set after recovery",
            retry(bound, || store.set("after.example", &after)).await,
        );
        assert!(written, "set after recovery must write ({name})");
        assert_eq!(
            ok(
                "get after recovery",
                retry(bound, || store.get("after.example")).await
            ),
            Some(after)
        );
        ok(
            "scan after recovery",
            retry(bound, || store.scan(None, 10)).await,
        );
        ok(
            "ts after recovery",
            retry(bound, || store.set_proactive_fetch_ts(T0)).await,
        );
        assert!(ok(
            "remove after recovery",
            retry(bound, || store.remove("after.example")).await
        ));
    }
}

/// Runs `op` until it succeeds or fails with a non-transient error, for at most `2 × bound`: each pooled
/// connection broken by the outage may cost one failed attempt.
async fn retry<T, F, Fut>(bound: Duration, mut op: F) -> Result<T, CacheError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CacheError>>,
{
    let deadline = Instant::now() + bound * 2;
    loop {
        match tokio::time::timeout(bound, op()).await {
            Ok(Err(e)) if e.is_transient() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(r) => return r,
            Err(_) => panic!("operation hung after recovery"),
        }
    }
}

/// A listener on 127.0.0.1 that accepts connections and never answers (kept open until dropped): a hung server.
#[derive(Debug)]
pub struct SilentServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SilentServer {
    /// Starts one on a free port.
    ///
    /// # Errors
    ///
    /// If no local port can be bound.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        Ok(Self { addr, task })
    }

    /// Where it listens.
    #[must_use]
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Pass,
    Refuse,
    Stall,
}

/// A TCP proxy on 127.0.0.1 in front of a real server, implementing [`Outage`]: connect the store to
/// [`TcpProxy::addr`], then [`refuse`](TcpProxy::refuse), [`stall`](TcpProxy::stall) and
/// [`restore`](TcpProxy::restore) its traffic.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts a proxy forwarding to `upstream`.
    ///
    /// # Errors
    ///
    /// If no local port can be bound.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, rx) = watch::channel(Mode::Pass);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let current = *rx.borrow();
                match current {
                    Mode::Refuse => drop(client),
                    Mode::Stall => {
                        tokio::spawn(hold_while_stalled(client, rx.clone()));
                    }
                    Mode::Pass => {
                        tokio::spawn(forward(client, upstream, rx.clone()));
                    }
                }
            }
        });
        Ok(Self { addr, mode, accept })
    }

    /// The address to connect the store to.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection and closes new ones at once.
    pub fn refuse(&self) {
        self.mode.send_replace(Mode::Refuse);
    }

    /// Stops forwarding: connections stay open but silent, new ones are accepted and ignored.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    /// Forwards new connections again (connections held while stalled are dropped).
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Pass);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.mode.send_replace(Mode::Refuse);
    }
}

#[async_trait]
impl Outage for TcpProxy {
    async fn refuse(&self) {
        Self::refuse(self);
    }
    async fn stall(&self) {
        Self::stall(self);
    }
    async fn restore(&self) {
        Self::restore(self);
    }
}

async fn hold_while_stalled<T: Send>(conn: T, mut rx: watch::Receiver<Mode>) {
    let _ = rx.wait_for(|m| *m != Mode::Stall).await;
    drop(conn);
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut rx: watch::Receiver<Mode>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let mode = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        m = rx.wait_for(|m| *m != Mode::Pass) => m.map_or(Mode::Refuse, |m| *m),
    };
    if mode == Mode::Stall {
        hold_while_stalled((client, server), rx).await;
    }
}

/// A small deterministic PRNG for reproducible test data.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
