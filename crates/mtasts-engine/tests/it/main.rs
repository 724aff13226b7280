//! Integration tests: the engine with the real `mtasts_fetch::Fetcher` against the in-process DNS and HTTPS
//! fixtures of `mtasts-test-support`, with `MemoryCache` and `SqliteCache` as stores.

mod fixture;
mod stores;

use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::PolicyCache;
use mtasts_core::PolicyDomain;
use mtasts_engine::{Clock, Engine, EngineBuilder, ManualClock};
use mtasts_test_support::Fixture;

const T0: u64 = 1_700_000_000;
const TIMEOUT: Duration = Duration::from_secs(4);

fn policy_text(max_age: u32) -> String {
    format!(
        "version: STSv1\nmode: enforce\nmax_age: {max_age}\nmx: mx.example.com\nmx: *.example.net\n"
    )
}

fn domain(name: &str) -> PolicyDomain {
    PolicyDomain::parse(name).unwrap_or_else(|e| panic!("test domain {name}: {e}"))
}

/// An engine on the fixture's fetcher and a manual clock, with an optional store.
fn engine(
    fixture: &Fixture,
    clock: &Arc<ManualClock>,
    store: Option<Arc<dyn PolicyCache>>,
) -> Engine {
    let builder: EngineBuilder = Engine::builder(fixture.fetcher())
        .clock(Arc::clone(clock) as Arc<dyn Clock>)
        .cache_grace(Duration::from_secs(60))
        .failure_backoff(Duration::from_secs(120));
    match store {
        Some(store) => builder.store(store).build(),
        None => builder.build(),
    }
}

/// HTTPS requests the fixture served for `domain`'s policy host.
fn https_requests(fixture: &Fixture, domain: &str) -> u64 {
    fixture.https().request_count(&Fixture::policy_host(domain))
}

/// TXT queries the fixture answered for `domain`.
fn txt_queries(fixture: &Fixture, domain: &str) -> u64 {
    fixture.dns().query_count(&Fixture::txt_name(domain))
}
