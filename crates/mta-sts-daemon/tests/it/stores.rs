//! Each cache type configured through YAML, against the real servers: a restarted daemon answers from the
//! store, the `cache` commands work on it, and a purge reaches a running daemon.

// reason: the helpers serve the store tests, which are compiled only with their features.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "redis", feature = "postgres")),
    allow(dead_code, unused_imports)
)]

use mtasts_test_support::Fixture;

use crate::admin::{check_commands, check_purge_reaches_running_daemon};
use crate::support::*;

/// A daemon on `cache_yaml` that looked each of `domains` up once and stopped, leaving their policies in the
/// store. A lookup may be answered before the store write ends (writes never delay answers), so this waits
/// until `cache show` finds each one.
pub(crate) async fn primed_store(fixture: &Fixture, cache_yaml: &str, domains: &[&str]) {
    let first = start(fixture, cache_yaml).await;
    for domain in domains {
        query(tcp_addr(&first), "postfix", domain).await;
    }
    first.shutdown().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = fixture_config(dir.path(), fixture, cache_yaml);
    for domain in domains {
        let config = config.as_path();
        eventually(&format!("{domain} in the store"), POLL, || async move {
            cache(config, &["show", domain]).await.code == Some(0)
        })
        .await;
    }
}

/// Starts a daemon with `cache_yaml`, restarts it on the same store and checks that the policy is answered
/// from the store (no new HTTPS fetch).
async fn check_restart_reads_the_store(cache_yaml: &str, domain: &str) {
    let fixture = enforcing(domain).await;
    primed_store(&fixture, cache_yaml, &[domain]).await;
    let host = format!("mta-sts.{domain}");
    assert_eq!(fixture.https().request_count(&host), 1);
    let daemon = start(&fixture, cache_yaml).await;
    assert_eq!(
        query(tcp_addr(&daemon), "postfix", domain).await,
        ENFORCE_REPLY
    );
    assert_eq!(
        fixture.https().request_count(&host),
        1,
        "store was not used"
    );
    daemon.shutdown().await;
}

/// Everything a store shared with other hosts does (`None`: the service is missing and the test skipped).
async fn check_shared_store(cache_yaml: Option<String>, name: &str) {
    if let Some(yaml) = cache_yaml {
        check_restart_reads_the_store(&yaml, &unique(name)).await;
        check_commands(&yaml, &unique(&format!("admin-{name}"))).await;
        check_purge_reaches_running_daemon(&yaml, &unique(&format!("purge-{name}"))).await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis() {
    check_shared_store(redis_yaml().await, "redis").await;
}

/// Through Sentinel when MTASTS_TEST_SENTINEL=host:port[,master_name] names one (CI starts one).
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_sentinel() {
    check_shared_store(sentinel_yaml(), "sentinel").await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres() {
    check_shared_store(postgres_yaml().await, "pg").await;
}

/// asyncpg's keyword options next to the DSN, as configurations written for the Python daemon carry them.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_with_asyncpg_keywords() {
    if let Some(yaml) = postgres_yaml().await {
        let keywords = "    ssl: false\n    server_settings:\n      application_name: mta-sts-test\n    \
                        command_timeout: 2\n    min_size: 1\n    max_size: 3\n    timeout: 2\n";
        check_restart_reads_the_store(&format!("{yaml}{keywords}"), &unique("pg-keywords")).await;
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    check_restart_reads_the_store(&sqlite_yaml(dir.path()), "sqlite.test").await;
    assert!(dir.path().join("cache.db").exists());
}

#[tokio::test]
async fn internal_cache() {
    let fixture = enforcing("internal.test").await;
    let daemon = start(
        &fixture,
        "cache:\n  type: internal\n  options:\n    cache_size: 2\n",
    )
    .await;
    let addr = tcp_addr(&daemon);
    assert_replies(
        addr,
        &[
            ("postfix", "internal.test", ENFORCE_REPLY),
            ("postfix", "internal.test", ENFORCE_REPLY),
        ],
    )
    .await;
    assert_eq!(fixture.https().request_count("mta-sts.internal.test"), 1);
    daemon.shutdown().await;
}

/// A daemon whose store cannot be used starts and answers from the network (store errors count as misses;
/// RFC 8461 §3.3 delivery is never blocked by the cache); its memory front answers again.
async fn keeps_serving_without_its_store(cache_yaml: &str, domain: &str) {
    let fixture = enforcing(domain).await;
    let daemon = start_now(&fixture, cache_yaml).await;
    let addr = tcp_addr(&daemon);
    for _ in 0..2 {
        assert_eq!(query(addr, "postfix", domain).await, ENFORCE_REPLY);
    }
    let fetches = fixture.https().request_count(&format!("mta-sts.{domain}"));
    assert_eq!(fetches, 1, "the memory front answered the second query");
    assert!(!daemon.metrics().is_store_up(), "mtasts_store_up");
    daemon.shutdown().await;
}

/// A Sentinel that is down at start does not stop the daemon.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_sentinel_down_at_start_does_not_stop_the_daemon() {
    let yaml = "cache:\n  type: redis_sentinel\n  options:\n    sentinel_master_name: mymaster\n    sentinels:\n      - [\"127.0.0.1\", 1]\n    socket_timeout: 0.5\n    socket_connect_timeout: 0.5\n";
    keeps_serving_without_its_store(yaml, "sentinel-down.test").await;
}

/// A TLS-only redis-server on a spare port, its certificate issued for `localhost` by a test CA; killed when
/// dropped.
#[cfg(feature = "redis")]
struct TlsRedis {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

#[cfg(feature = "redis")]
impl TlsRedis {
    /// Starts the server and waits until it is ready, or `None` (test skipped) without redis-server.
    async fn start() -> Option<Self> {
        let binary =
            mtasts_test_support::tool_or_skip("redis_tls", "redis-server", "redis-server")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = mtasts_test_support::TestCa::new();
        ca.write_pem(&dir.path().join("ca.pem"));
        let (cert, key) = ca
            .issue(&["localhost"])
            .write_pem_files(dir.path(), "server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("spare port")
            .port();
        let log = dir.path().join("redis.log");
        let child = std::process::Command::new(binary)
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--tls-auth-clients",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(dir.path().join("ca.pem"))
            .arg("--logfile")
            .arg(&log)
            .spawn()
            .expect("spawn redis-server");
        let server = Self { child, port, dir };
        let log = log.as_path();
        eventually("the TLS redis-server ready", POLL, || async move {
            std::fs::read_to_string(log).is_ok_and(|l| l.contains("Ready to accept connections"))
        })
        .await;
        Some(server)
    }

    /// The `cache` section for this server, trusting `ca`.
    fn yaml(&self, ca: &std::path::Path) -> String {
        format!(
            "cache:\n  type: redis\n  options:\n    url: \"rediss://localhost:{}/0\"\n    ssl_ca_certs: \"{}\"\n    socket_timeout: 1\n    socket_connect_timeout: 1\n",
            self.port,
            ca.display()
        )
    }
}

#[cfg(feature = "redis")]
impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rediss://`: a daemon serves what another wrote over TLS; with a CA that does not sign the server's
/// certificate the store is unavailable and the daemon keeps serving from the network.
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_over_tls() {
    let Some(server) = TlsRedis::start().await else {
        return;
    };
    check_restart_reads_the_store(&server.yaml(&server.dir.path().join("ca.pem")), "tls.test")
        .await;
    let other = server.dir.path().join("other-ca.pem");
    mtasts_test_support::TestCa::with_name("another CA").write_pem(&other);
    keeps_serving_without_its_store(&server.yaml(&other), "wrong-ca.test").await;
}

/// A fixture publishing a policy (max_age 600, which would expire before the next pass), a SQLite store (in the
/// returned directory) holding it, and a daemon restarted on that store with proactive fetching on (and
/// `extra`): at start no pass is recorded, so one runs.
#[cfg(feature = "sqlite")]
pub(crate) async fn restarted_for_a_proactive_pass(
    extra: &str,
) -> (Fixture, mta_sts_daemon::Running, tempfile::TempDir) {
    let fixture = Fixture::start().await;
    let policy = "version: STSv1\nmode: enforce\nmax_age: 600\nmx: mail.example.com\n";
    fixture.publish("proactive.test", "id1", policy);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = format!("{}{extra}", sqlite_yaml(dir.path()));
    primed_store(&fixture, &cache, &["proactive.test"]).await;
    assert_eq!(fixture.https().request_count("mta-sts.proactive.test"), 1);
    let daemon = start(
        &fixture,
        &format!("{cache}proactive_policy_fetching:\n  enabled: true\n  interval: 86400\n  concurrency_limit: 2\n"),
    )
    .await;
    (fixture, daemon, dir)
}

/// Proactive fetching: the policy is fetched again without any client asking, and the pass is recorded in the
/// store.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn proactive_fetching_refreshes_the_store() {
    let (fixture, daemon, _dir) = restarted_for_a_proactive_pass("").await;
    let https = fixture.https();
    eventually(
        "a proactive refetch",
        std::time::Duration::ZERO,
        || async move { https.request_count("mta-sts.proactive.test") >= 2 },
    )
    .await;
    let engine = daemon.engine();
    eventually(
        "the pass recorded in the store",
        std::time::Duration::ZERO,
        || async move { engine.last_proactive_refresh().await.is_some() },
    )
    .await;
    daemon.shutdown().await;
}
