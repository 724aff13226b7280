//! `mta-sts-daemon cache …` run as the built binary against each store type, and a purge reaching a running
//! daemon that shares the store.

// reason: the helpers serve the store tests, which are compiled only with their features.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "redis", feature = "postgres")),
    allow(dead_code, unused_imports)
)]

use mtasts_test_support::Fixture;

use crate::stores::primed_store;
use crate::support::*;

/// The policy after the domain moved its MX without changing its id.
const MOVED: &str = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: new.example.com\n";
const MOVED_REPLY: &str = "OK secure match=new.example.com servername=hostname";

/// Every command on a store holding `domain` (cached by a daemon), then purge. Other tests may share the
/// server (Redis, PostgreSQL), so other entries (even corrupt ones, exit 1) may be listed too, and
/// `purge --all` is only run on a private store by the caller.
pub(crate) async fn check_commands(cache_yaml: &str, domain: &str) {
    let fixture = enforcing(domain).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = fixture_config(dir.path(), &fixture, cache_yaml);
    primed_store(&fixture, cache_yaml, &[domain]).await;

    let list = cache(&config, &["list"]).await;
    assert!(matches!(list.code, Some(0 | 1)), "list: {}", list.stderr);
    assert!(
        list.stdout
            .starts_with("DOMAIN\tPOLICY_ID\tMODE\tMAX_AGE\tCHECKED_AT\tEXPIRES_AT\n"),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{domain}\tid1\tenforce\t86400\t"))),
        "{domain} not listed: {}",
        list.stdout
    );

    let export = cache(&config, &["export"]).await;
    assert!(matches!(export.code, Some(0 | 1)), "{}", export.stderr);
    let ours: Vec<serde_json::Value> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .filter(|v: &serde_json::Value| v["domain"] == domain)
        .collect();
    assert_eq!(ours.len(), 1, "{}", export.stdout);
    assert_eq!(ours[0]["policy_id"], "id1");
    assert_eq!(ours[0]["policy"]["mode"], "enforce");
    assert_eq!(
        ours[0]["policy"]["mx"],
        serde_json::json!(["mail.example.com", "*.mx.example.net"])
    );
    assert!(ours[0]["checked_at"].as_u64().is_some_and(|t| t > 0));
    assert_eq!(ours[0]["checked_at"], ours[0]["fetched_at"]);

    // DOMAIN is normalised as the daemon does: case and a trailing dot.
    let upper = format!("{}.", domain.to_uppercase());
    let show = cache(&config, &["show", &upper]).await;
    assert_eq!(show.code, Some(0), "{}", show.stderr);
    assert!(
        show.stdout
            .starts_with(&format!("domain:     {domain}\npolicy id:  id1\n")),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("\n  mx: *.mx.example.net\n"));

    let purge = cache(&config, &["purge", &upper]).await;
    assert_eq!(
        (purge.code, purge.stdout.as_str()),
        (Some(0), format!("purged {domain}\n").as_str()),
        "{}",
        purge.stderr
    );
    let show = cache(&config, &["show", domain]).await;
    assert_eq!(show.code, Some(1));
    assert!(
        show.stderr.contains(&format!("{domain} is not cached")),
        "{}",
        show.stderr
    );
    let purge = cache(&config, &["purge", domain]).await;
    assert_eq!(purge.code, Some(1), "{}", purge.stderr);
    let list = cache(&config, &["list"]).await;
    assert!(
        !list.stdout.contains(&format!("{domain}\t")),
        "{}",
        list.stdout
    );
}

/// A daemon keeps answering from memory only until `cache_grace` has passed after a purge by another process:
/// then it finds the entry gone from the store and fetches the policy again, even though the domain changed
/// its MX without changing the policy id (where a mere id re-check would keep the old policy).
pub(crate) async fn check_purge_reaches_running_daemon(cache_yaml: &str, domain: &str) {
    let fixture = enforcing(domain).await;
    let cache_yaml = format!("cache_grace: 1\n{cache_yaml}");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = fixture_config(dir.path(), &fixture, &cache_yaml);
    let daemon = start(&fixture, &cache_yaml).await;
    let addr = tcp_addr(&daemon);
    assert_eq!(query(addr, "postfix", domain).await, ENFORCE_REPLY);

    fixture.publish(domain, "id1", MOVED);
    // Without a purge, the id re-check after grace keeps the cached policy.
    let engine = daemon.engine();
    eventually("an id re-check after grace", POLL, || async move {
        assert_eq!(query(addr, "postfix", domain).await, ENFORCE_REPLY);
        engine.stats().unchanged.get() > 0
    })
    .await;
    assert_eq!(query(addr, "postfix", domain).await, ENFORCE_REPLY);

    let purge = cache(&config, &["purge", domain]).await;
    assert_eq!(purge.code, Some(0), "{}", purge.stderr);
    eventually("the purged domain discovered afresh", POLL, || async move {
        query(addr, "postfix", domain).await == MOVED_REPLY
    })
    .await;
    let stats = daemon.engine().stats();
    assert_eq!(stats.store_purged.get(), 1);
    assert_eq!(
        fixture.https().request_count(&format!("mta-sts.{domain}")),
        2
    );
    // The daemon wrote the new policy back to the store (after the answer: writes are queued).
    daemon.engine().flush_store_writes().await;
    let show = cache(&config, &["show", domain]).await;
    assert_eq!(show.code, Some(0), "{}", show.stderr);
    assert!(
        show.stdout.contains("\n  mx: new.example.com\n"),
        "{}",
        show.stdout
    );
    daemon.shutdown().await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = sqlite_yaml(dir.path());
    check_commands(&yaml, "admin-sqlite.test").await;

    // A private store: purge --all empties it.
    let fixture = Fixture::start().await;
    let config = fixture_config(dir.path(), &fixture, &yaml);
    for d in ["a.test", "b.test"] {
        fixture.publish(d, "id1", TESTING);
    }
    primed_store(&fixture, &yaml, &["a.test", "b.test"]).await;
    let list = cache(&config, &["list"]).await;
    assert_eq!(list.code, Some(0));
    assert_eq!(list.stdout.lines().count(), 3, "{}", list.stdout);
    assert_eq!(list.stderr, "2 cached policies\n");
    let purge = cache(&config, &["purge", "--all"]).await;
    assert_eq!(
        (purge.code, purge.stdout.as_str()),
        (Some(0), "purged 2 cached policies\n")
    );
    let export = cache(&config, &["export"]).await;
    assert_eq!(
        (export.code, export.stdout.as_str(), export.stderr.as_str()),
        (Some(0), "", "0 cached policies\n")
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_purge_reaches_a_running_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    check_purge_reaches_running_daemon(&sqlite_yaml(dir.path()), "purge-sqlite.test").await;
}

/// `internal`: the policies live only in a daemon's memory; every command says so and exits 69.
#[tokio::test]
async fn internal_cache_is_refused() {
    let fixture = Fixture::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = fixture_config(dir.path(), &fixture, "cache:\n  type: internal\n");
    for args in [
        &["list"][..],
        &["show", "example.com"],
        &["purge", "example.com"],
        &["purge", "--all"],
        &["export"],
    ] {
        let out = cache(&config, args).await;
        assert_eq!((out.code, out.stdout.as_str()), (Some(69), ""), "{args:?}");
        assert!(
            out.stderr.contains("cache.type is internal")
                && out.stderr.contains("memory of a running daemon"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

/// A SQLite file that does not exist is not created (it would belong to whoever ran the command): 69.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn missing_sqlite_file_is_not_created() {
    let fixture = Fixture::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = fixture_config(dir.path(), &fixture, &sqlite_yaml(dir.path()));
    let out = cache(&config, &["list"]).await;
    assert_eq!(out.code, Some(69), "{}", out.stderr);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(!dir.path().join("cache.db").exists());
}

/// A store that cannot be reached: 69, with the store's error.
#[cfg(feature = "redis")]
#[tokio::test]
async fn unreachable_store_exits_69() {
    let fixture = Fixture::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = fixture_config(
        dir.path(),
        &fixture,
        "cache:\n  type: redis\n  options:\n    url: \"redis://:secret@127.0.0.1:1/0\"\n    socket_connect_timeout: 0.5\n    socket_timeout: 0.5\n",
    );
    for args in [&["list"][..], &["purge", "example.com"]] {
        let out = cache(&config, args).await;
        assert_eq!(out.code, Some(69), "{args:?}: {}", out.stderr);
        // Issue 15: the error names the store's address and the cause, not the password.
        assert!(
            out.stderr
                .contains("policy cache at redis://:***@127.0.0.1:1/0: redis cache unavailable: ")
                && out.stderr.contains("refused"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("secret"), "{}", out.stderr);
    }
}

/// Bad or missing configuration: 78; a DOMAIN that is no policy domain, or `purge` without one: 2.
#[tokio::test]
async fn usage_and_config_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "cache:\n  type: nosuch\n").expect("write");
    let out = cache(&bad, &["list"]).await;
    assert_eq!(out.code, Some(78), "{}", out.stderr);
    // A file given with -c must exist.
    let out = cache(&dir.path().join("missing.yml"), &["list"]).await;
    assert_eq!(out.code, Some(78), "{}", out.stderr);
    assert!(out.stderr.contains("missing.yml"), "{}", out.stderr);

    let fixture = Fixture::start().await;
    // DOMAIN is checked before the store is looked at.
    let config = fixture_config(dir.path(), &fixture, "cache:\n  type: internal\n");
    for args in [
        &["show", ".example.com"][..],
        &["purge", "[192.0.2.1]"],
        &["purge"],
        &["purge", "example.com", "--all"],
        &["frobnicate"],
    ] {
        let out = cache(&config, args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
    }
}
