//! Freshness and coalescing with real DNS and HTTPS.

use std::sync::Arc;
use std::time::Duration;

use mtasts_engine::{ManualClock, Source};
use mtasts_test_support::{Fixture, PolicyResponse, init_tracing};

use crate::{T0, TIMEOUT, domain, engine, https_requests, policy_text, txt_queries};

#[tokio::test]
async fn discovers_then_answers_from_memory() {
    init_tracing();
    let fixture = Fixture::start().await;
    fixture.publish("example.com", "id1", &policy_text(86_400));
    let clock = Arc::new(ManualClock::new(T0));
    let engine = engine(&fixture, &clock, None);

    let first = engine.resolve(&domain("example.com"), TIMEOUT).await;
    assert_eq!(first.source, Source::Discovered);
    let policy = first
        .policy
        .unwrap_or_else(|| panic!("no policy discovered"));
    assert_eq!(policy.id().as_str(), "id1");
    assert!(policy.policy().matches_mx("a.example.net"));
    assert_eq!(policy.fetched_at(), T0);

    clock.advance(Duration::from_secs(59));
    assert_eq!(
        engine.resolve(&domain("example.com"), TIMEOUT).await.source,
        Source::Memory
    );
    assert_eq!(
        (
            txt_queries(&fixture, "example.com"),
            https_requests(&fixture, "example.com")
        ),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_make_one_https_request() {
    init_tracing();
    let fixture = Fixture::start().await;
    fixture.publish("example.com", "id1", &policy_text(86_400));
    let clock = Arc::new(ManualClock::new(T0));
    let engine = engine(&fixture, &clock, None);

    let lookups: Vec<_> = (0..50)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.resolve(&domain("example.com"), TIMEOUT).await })
        })
        .collect();
    let mut with_policy = 0;
    for lookup in lookups {
        let resolution = lookup.await.unwrap_or_else(|e| panic!("lookup task: {e}"));
        with_policy += usize::from(resolution.policy.is_some());
    }
    assert_eq!(with_policy, 50);
    assert_eq!(https_requests(&fixture, "example.com"), 1);
    assert_eq!(txt_queries(&fixture, "example.com"), 1);
    let stats = engine.stats();
    assert_eq!(stats.fetched.get(), 1);
    // Every lookup but the first joined the discovery or found its result in memory.
    assert_eq!(stats.coalesced.get() + stats.memory_hits.get(), 49);
}

#[tokio::test]
async fn unchanged_id_is_rechecked_by_dns_only() {
    init_tracing();
    let fixture = Fixture::start().await;
    fixture.publish("example.com", "id1", &policy_text(86_400));
    let clock = Arc::new(ManualClock::new(T0));
    let engine = engine(&fixture, &clock, None);

    engine.resolve(&domain("example.com"), TIMEOUT).await;
    clock.advance(Duration::from_secs(61));
    let again = engine.resolve(&domain("example.com"), TIMEOUT).await;
    assert_eq!(again.source, Source::Discovered);
    assert_eq!(again.policy.map(|p| p.fetched_at()), Some(T0));
    assert_eq!(
        (
            txt_queries(&fixture, "example.com"),
            https_requests(&fixture, "example.com")
        ),
        (2, 1)
    );

    // A new id: fetched over HTTPS.
    fixture.publish("example.com", "id2", &policy_text(86_400));
    clock.advance(Duration::from_secs(61));
    let changed = engine.resolve(&domain("example.com"), TIMEOUT).await;
    assert_eq!(
        changed.policy.map(|p| p.id().as_str().to_owned()),
        Some("id2".to_owned())
    );
    assert_eq!(https_requests(&fixture, "example.com"), 2);
}

#[tokio::test]
async fn max_age_one_is_refetched_after_one_second() {
    init_tracing();
    let fixture = Fixture::start().await;
    fixture.publish("example.com", "id1", &policy_text(1));
    let clock = Arc::new(ManualClock::new(T0));
    let engine = engine(&fixture, &clock, None);

    engine.resolve(&domain("example.com"), TIMEOUT).await;
    assert_eq!(
        engine.resolve(&domain("example.com"), TIMEOUT).await.source,
        Source::Memory
    );
    clock.advance(Duration::from_secs(1));
    let refetched = engine.resolve(&domain("example.com"), TIMEOUT).await;
    assert_eq!(refetched.source, Source::Discovered);
    assert_eq!(refetched.policy.map(|p| p.fetched_at()), Some(T0 + 1));
    // Same TXT id, but the policy had expired (RFC 8461 §5.1): HTTPS again.
    assert_eq!(https_requests(&fixture, "example.com"), 2);
}

#[tokio::test]
async fn fetch_failure_keeps_the_cached_policy_and_backs_off() {
    init_tracing();
    let fixture = Fixture::start().await;
    fixture.publish("example.com", "id1", &policy_text(86_400));
    let clock = Arc::new(ManualClock::new(T0));
    let engine = engine(&fixture, &clock, None);
    engine.resolve(&domain("example.com"), TIMEOUT).await;

    // The id changes but the policy server fails.
    fixture.publish_txt("example.com", "id2");
    fixture.serve("example.com", PolicyResponse::status(500));
    clock.advance(Duration::from_secs(61));
    let stale = engine.resolve(&domain("example.com"), TIMEOUT).await;
    assert_eq!(stale.source, Source::Stale);
    assert_eq!(
        stale.policy.map(|p| p.id().as_str().to_owned()),
        Some("id1".to_owned())
    );
    assert_eq!(https_requests(&fixture, "example.com"), 2);
    // Backing off: no DNS, no HTTPS.
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        engine.resolve(&domain("example.com"), TIMEOUT).await.source,
        Source::Stale
    );
    assert_eq!(
        (
            txt_queries(&fixture, "example.com"),
            https_requests(&fixture, "example.com")
        ),
        (2, 2)
    );
    let stats = engine.stats();
    assert_eq!((stats.failed.get(), stats.failures("http_status")), (1, 1));
}

#[tokio::test]
async fn nxdomain_is_cached_as_no_policy() {
    init_tracing();
    let fixture = Fixture::start().await;
    fixture
        .dns()
        .set_nxdomain(&Fixture::txt_name("example.org"));
    let clock = Arc::new(ManualClock::new(T0));
    let engine = engine(&fixture, &clock, None);

    let none = engine.resolve(&domain("example.org"), TIMEOUT).await;
    assert_eq!(
        (none.source, none.policy.is_none()),
        (Source::Discovered, true)
    );
    clock.advance(Duration::from_secs(59));
    let cached = engine.resolve(&domain("example.org"), TIMEOUT).await;
    assert_eq!(
        (cached.source, cached.policy.is_none()),
        (Source::Memory, true)
    );
    assert_eq!(txt_queries(&fixture, "example.org"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_fetch_is_shared_by_every_concurrent_lookup() {
    init_tracing();
    let fixture = Fixture::start().await;
    fixture.publish_txt("example.com", "id1");
    // The server sends nothing of the body: the one discovery hangs until its timeout, so every lookup
    // started meanwhile must join it (nothing is in memory to answer them).
    fixture.serve(
        "example.com",
        PolicyResponse::policy(policy_text(86_400)).stall_after(0),
    );
    let clock = Arc::new(ManualClock::new(T0));
    let engine = engine(&fixture, &clock, None);

    let lookups: Vec<_> = (0..20)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .resolve(&domain("example.com"), Duration::from_secs(3))
                    .await
            })
        })
        .collect();
    let mut sources = Vec::new();
    for lookup in lookups {
        let resolution = lookup.await.unwrap_or_else(|e| panic!("lookup task: {e}"));
        assert!(resolution.policy.is_none());
        sources.push(resolution.source);
    }
    assert_eq!(
        sources
            .iter()
            .filter(|s| **s == Source::Unavailable)
            .count(),
        1
    );
    assert_eq!(
        sources.iter().filter(|s| **s == Source::Coalesced).count(),
        19
    );
    assert_eq!(https_requests(&fixture, "example.com"), 1);
    assert_eq!(engine.stats().failed.get(), 1);
}
