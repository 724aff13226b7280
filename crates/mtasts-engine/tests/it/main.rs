//! Integration tests: the engine with the real `mtasts_fetch::Fetcher` against the in-process DNS and HTTPS
//! fixtures of `mtasts-test-support`, with `MemoryCache` and `SqliteCache` as stores.

mod fixture;
mod stores;

use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::PolicyCache;
use mtasts_core::PolicyDomain;
use mtasts_engine::{Clock, Engine, ManualClock, Resolution};
use mtasts_test_support::{Fixture, init_tracing};

const T0: u64 = 1_700_000_000;
const TIMEOUT: Duration = Duration::from_secs(4);
/// The domain most tests look up.
const EXAMPLE: &str = "example.com";

/// The in-process DNS and HTTPS servers and a manual clock, shared by the engines of a test.
struct World {
    fixture: Fixture,
    clock: Arc<ManualClock>,
}

impl World {
    async fn start() -> Self {
        init_tracing();
        Self {
            fixture: Fixture::start().await,
            clock: Arc::new(ManualClock::new(T0)),
        }
    }

    /// A world where `example.com` publishes `id1` with `max_age`, and an engine without a store.
    async fn publishing(max_age: u32) -> (Self, Engine) {
        let world = Self::start().await;
        world.publish(EXAMPLE, "id1", max_age);
        let engine = world.engine(None);
        (world, engine)
    }

    /// `domain` publishes policy `id` (enforce, `mx.example.com` and `*.example.net`) with `max_age`.
    fn publish(&self, domain: &str, id: &str, max_age: u32) {
        let policy = format!(
            "version: STSv1\nmode: enforce\nmax_age: {max_age}\nmx: mx.example.com\nmx: *.example.net\n"
        );
        self.fixture.publish(domain, id, &policy);
    }

    /// An engine on the fixture's fetcher and the clock (grace 60 s, back-off 120 s), with `store` if given.
    fn engine(&self, store: Option<&Arc<dyn PolicyCache>>) -> Engine {
        let builder = Engine::builder(self.fixture.fetcher())
            .clock(Arc::clone(&self.clock) as Arc<dyn Clock>)
            .cache_grace(Duration::from_secs(60))
            .failure_backoff(Duration::from_secs(120));
        match store {
            Some(store) => builder.store(Arc::clone(store)).build(),
            None => builder.build(),
        }
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// The TXT queries and HTTPS requests the fixture served for `domain`.
    fn traffic(&self, domain: &str) -> (u64, u64) {
        let txt = self.fixture.dns().query_count(&Fixture::txt_name(domain));
        let https = self
            .fixture
            .https()
            .request_count(&Fixture::policy_host(domain));
        (txt, https)
    }
}

fn domain(name: &str) -> PolicyDomain {
    PolicyDomain::parse(name).unwrap_or_else(|e| panic!("test domain {name}: {e}"))
}

/// An answer in words: its source and policy id (`-` for none), e.g. `memory id1`.
fn said(resolution: &Resolution) -> String {
    let id = resolution.policy.as_ref().map_or("-", |p| p.id().as_str());
    format!("{} {id}", resolution.source)
}

/// Looks `name` up on `engine`.
async fn resolve(engine: &Engine, name: &str) -> Resolution {
    let resolution = engine.resolve(&domain(name), TIMEOUT).await;
    // The store write comes after the answer: let it land before the test looks at the store.
    engine.flush_store_writes().await;
    resolution
}

/// Looks `name` up and says the answer.
async fn answer(engine: &Engine, name: &str) -> String {
    said(&resolve(engine, name).await)
}
