//! Freshness and coalescing with real DNS and HTTPS.

use std::time::Duration;

use mtasts_engine::{Resolution, Source};
use mtasts_test_support::PolicyResponse;

use crate::{EXAMPLE, T0, World, answer, domain, resolve, said};

#[tokio::test]
async fn discovers_then_answers_from_memory() {
    let (world, engine) = World::publishing(86_400).await;
    let first = resolve(&engine, EXAMPLE).await;
    assert_eq!(said(&first), "discovered id1");
    let policy = first
        .policy
        .unwrap_or_else(|| panic!("no policy discovered"));
    assert!(policy.policy().matches_mx("a.example.net"));
    assert_eq!(policy.fetched_at(), T0);

    world.advance(59);
    assert_eq!(answer(&engine, EXAMPLE).await, "memory id1");
    assert_eq!(world.traffic(EXAMPLE), (1, 1));
}

/// Starts `n` lookups of `example.com` at once, each bounded by `timeout`, and returns their answers.
async fn concurrent_lookups(
    engine: &mtasts_engine::Engine,
    n: usize,
    timeout: Duration,
) -> Vec<Resolution> {
    let lookups: Vec<_> = (0..n)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.resolve(&domain(EXAMPLE), timeout).await })
        })
        .collect();
    let mut answers = Vec::new();
    for lookup in lookups {
        answers.push(lookup.await.unwrap_or_else(|e| panic!("lookup task: {e}")));
    }
    answers
}

fn count(answers: &[Resolution], source: Source) -> usize {
    answers.iter().filter(|a| a.source == source).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_make_one_https_request() {
    let (world, engine) = World::publishing(86_400).await;
    let answers = concurrent_lookups(&engine, 50, crate::TIMEOUT).await;
    assert!(answers.iter().all(|a| a.policy.is_some()));
    assert_eq!(world.traffic(EXAMPLE), (1, 1));
    let stats = engine.stats();
    assert_eq!(stats.fetched.get(), 1);
    // Every lookup but the first joined the discovery or found its result in memory.
    assert_eq!(stats.coalesced.get() + stats.memory_hits.get(), 49);
}

#[tokio::test]
async fn unchanged_id_is_rechecked_by_dns_only() {
    let (world, engine) = World::publishing(86_400).await;
    resolve(&engine, EXAMPLE).await;
    world.advance(61);
    let again = resolve(&engine, EXAMPLE).await;
    assert_eq!(said(&again), "discovered id1");
    assert_eq!(again.policy.map(|p| p.fetched_at()), Some(T0));
    assert_eq!(world.traffic(EXAMPLE), (2, 1));

    // A new id: fetched over HTTPS.
    world.publish(EXAMPLE, "id2", 86_400);
    world.advance(61);
    assert_eq!(answer(&engine, EXAMPLE).await, "discovered id2");
    assert_eq!(world.traffic(EXAMPLE), (3, 2));
}

#[tokio::test]
async fn max_age_one_is_refetched_after_one_second() {
    let (world, engine) = World::publishing(1).await;
    resolve(&engine, EXAMPLE).await;
    assert_eq!(answer(&engine, EXAMPLE).await, "memory id1");
    world.advance(1);
    let refetched = resolve(&engine, EXAMPLE).await;
    assert_eq!(said(&refetched), "discovered id1");
    assert_eq!(refetched.policy.map(|p| p.fetched_at()), Some(T0 + 1));
    // Same TXT id, but the policy had expired (RFC 8461 §5.1): HTTPS again.
    assert_eq!(world.traffic(EXAMPLE), (2, 2));
}

#[tokio::test]
async fn fetch_failure_keeps_the_cached_policy_and_backs_off() {
    let (world, engine) = World::publishing(86_400).await;
    resolve(&engine, EXAMPLE).await;

    // The id changes but the policy server fails.
    world.fixture.publish_txt(EXAMPLE, "id2");
    world.fixture.serve(EXAMPLE, PolicyResponse::status(500));
    world.advance(61);
    assert_eq!(answer(&engine, EXAMPLE).await, "stale id1");
    assert_eq!(world.traffic(EXAMPLE), (2, 2));
    // Backing off: no DNS, no HTTPS.
    world.advance(60);
    assert_eq!(answer(&engine, EXAMPLE).await, "stale id1");
    assert_eq!(world.traffic(EXAMPLE), (2, 2));
    assert_eq!(engine.stats().failures("http_status"), 1);
}

#[tokio::test]
async fn nxdomain_is_cached_as_no_policy() {
    let world = World::start().await;
    world
        .fixture
        .dns()
        .set_nxdomain(&mtasts_test_support::Fixture::txt_name("example.org"));
    let engine = world.engine(None);

    assert_eq!(answer(&engine, "example.org").await, "discovered -");
    world.advance(59);
    assert_eq!(answer(&engine, "example.org").await, "memory -");
    assert_eq!(world.traffic("example.org").0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_fetch_is_shared_by_every_concurrent_lookup() {
    let world = World::start().await;
    world.fixture.publish_txt(EXAMPLE, "id1");
    // The server sends nothing of the body: the one discovery hangs until its timeout, so every lookup
    // started meanwhile must join it (nothing is in memory to answer them).
    let stalled = PolicyResponse::policy(
        "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mx.example.com\n",
    );
    world.fixture.serve(EXAMPLE, stalled.stall_after(0));
    let engine = world.engine(None);

    let answers = concurrent_lookups(&engine, 20, Duration::from_secs(3)).await;
    assert!(answers.iter().all(|a| a.policy.is_none()));
    assert_eq!(count(&answers, Source::Unavailable), 1);
    assert_eq!(count(&answers, Source::Coalesced), 19);
    assert_eq!(world.traffic(EXAMPLE).1, 1);
    assert_eq!(engine.stats().failed.get(), 1);
}
