//! Each cache type configured through YAML, against the real servers.

// reason: the helpers serve the store tests, which are compiled only with their features.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "redis", feature = "postgres")),
    allow(dead_code)
)]

use mtasts_test_support::{Fixture, skip_or_fail};

use crate::support::*;

/// `url` if the service answers a TCP connect; otherwise fail under CI, skip (None) elsewhere.
async fn service(env: &str, default: &str, what: &str) -> Option<String> {
    let url = std::env::var(env).unwrap_or_else(|_| default.to_owned());
    let target = authority(&url);
    if tokio::net::TcpStream::connect(&target).await.is_ok() {
        return Some(url);
    }
    skip_or_fail(
        &format!("{what} is not reachable at {target} ({env}={url})"),
        &format!("start it, or set {env}"),
    );
    None
}

fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or(rest);
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    hostport.to_owned()
}

/// The `cache` section for the shared Redis (`REDIS_URL`), or `None` when the test is skipped.
pub(crate) async fn redis_yaml() -> Option<String> {
    let url = service("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis").await?;
    Some(format!(
        "cache:\n  type: redis\n  options:\n    url: \"{url}\"\n    max_connections: 4\n"
    ))
}

/// The `cache` section for the Sentinel named by `MTASTS_TEST_SENTINEL=host:port[,master_name]`.
fn sentinel_yaml_from_env() -> Option<String> {
    let spec = std::env::var("MTASTS_TEST_SENTINEL").ok()?;
    let (hostport, master) = spec.split_once(',').unwrap_or((&spec, "mymaster"));
    let (host, port) = hostport
        .rsplit_once(':')
        .expect("MTASTS_TEST_SENTINEL=host:port");
    Some(format!(
        "cache:\n  type: redis_sentinel\n  options:\n    sentinel_master_name: \"{master}\"\n    sentinels:\n      - [\"{host}\", {port}]\n"
    ))
}

/// [`sentinel_yaml_from_env`], or `None` when the test is skipped (CI starts a Sentinel).
pub(crate) fn sentinel_yaml() -> Option<String> {
    let yaml = sentinel_yaml_from_env();
    if yaml.is_none() {
        skip_or_fail(
            "MTASTS_TEST_SENTINEL is not set",
            "start a Redis Sentinel and set MTASTS_TEST_SENTINEL=host:port[,master] (see .ci/run)",
        );
    }
    yaml
}

/// The `cache` section for the shared PostgreSQL (`POSTGRES_URL`), or `None` when the test is skipped.
pub(crate) async fn postgres_yaml() -> Option<String> {
    let dsn = service(
        "POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
        "PostgreSQL",
    )
    .await?;
    Some(format!(
        "cache:\n  type: postgres\n  options:\n    dsn: \"{dsn}\"\n"
    ))
}

/// Starts a daemon with `cache_yaml`, checks answers, restarts it on the same store and checks that the
/// policy is answered from the store (no new HTTPS fetch).
async fn check_store(cache_yaml: &str, domain: &str) {
    let fixture = Fixture::start().await;
    fixture.publish(domain, "id1", ENFORCE);
    let daemon = start(&fixture, cache_yaml).await;
    assert_eq!(
        query(tcp_addr(&daemon), "postfix", domain).await,
        ENFORCE_REPLY
    );
    daemon.shutdown().await;
    let fetched = fixture.https().request_count(&format!("mta-sts.{domain}"));
    assert_eq!(fetched, 1);
    let daemon = start(&fixture, cache_yaml).await;
    assert_eq!(
        query(tcp_addr(&daemon), "postfix", domain).await,
        ENFORCE_REPLY
    );
    assert_eq!(
        fixture.https().request_count(&format!("mta-sts.{domain}")),
        fetched,
        "store was not used"
    );
    daemon.shutdown().await;
}

pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}.test", std::process::id())
}

#[tokio::test]
async fn internal_cache() {
    let fixture = Fixture::start().await;
    fixture.publish("internal.test", "id1", ENFORCE);
    let daemon = start(
        &fixture,
        "cache:\n  type: internal\n  options:\n    cache_size: 2\n",
    )
    .await;
    assert_eq!(
        query(tcp_addr(&daemon), "postfix", "internal.test").await,
        ENFORCE_REPLY
    );
    assert_eq!(
        query(tcp_addr(&daemon), "postfix", "internal.test").await,
        ENFORCE_REPLY
    );
    assert_eq!(fixture.https().request_count("mta-sts.internal.test"), 1);
    daemon.shutdown().await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cache.db");
    check_store(
        &format!(
            "cache:\n  type: sqlite\n  options:\n    filename: \"{}\"\n",
            db.display()
        ),
        "sqlite.test",
    )
    .await;
    assert!(db.exists());
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_cache() {
    if let Some(yaml) = redis_yaml().await {
        check_store(&yaml, &unique("redis")).await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_sentinel_cache() {
    // A Sentinel deployment is tested when MTASTS_TEST_SENTINEL=host:port[,master_name] names one. Without it,
    // the same YAML points at a Sentinel that is down: the daemon must start and keep answering from the
    // network (store errors count as misses, RFC 8461 §3.3 delivery is never blocked by the cache).
    if let Some(yaml) = sentinel_yaml_from_env() {
        check_store(&yaml, &unique("sentinel")).await;
        return;
    }
    let yaml = "cache:\n  type: redis_sentinel\n  options:\n    sentinel_master_name: mymaster\n    sentinels:\n      - [\"127.0.0.1\", 1]\n    socket_timeout: 0.5\n    socket_connect_timeout: 0.5\n";
    keeps_serving_without_its_store(yaml, "sentinel-down.test").await;
}

/// A daemon whose store cannot be used starts and answers from the network; its memory front answers again.
async fn keeps_serving_without_its_store(cache_yaml: &str, domain: &str) {
    let fixture = Fixture::start().await;
    fixture.publish(domain, "id1", ENFORCE);
    let daemon = start(&fixture, cache_yaml).await;
    let addr = tcp_addr(&daemon);
    for _ in 0..2 {
        assert_eq!(query(addr, "postfix", domain).await, ENFORCE_REPLY);
    }
    let fetches = fixture.https().request_count(&format!("mta-sts.{domain}"));
    assert_eq!(fetches, 1, "the memory front answered the second query");
    daemon.shutdown().await;
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
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("Ready to accept connections"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "TLS redis-server not ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
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
    check_store(&server.yaml(&server.dir.path().join("ca.pem")), "tls.test").await;
    let other = server.dir.path().join("other-ca.pem");
    mtasts_test_support::TestCa::with_name("another CA").write_pem(&other);
    keeps_serving_without_its_store(&server.yaml(&other), "wrong-ca.test").await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_cache() {
    if let Some(yaml) = postgres_yaml().await {
        check_store(&yaml, &unique("pg")).await;
    }
}

/// asyncpg's keyword options next to the DSN, as configurations written for the Python daemon carry them.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_cache_with_asyncpg_keywords() {
    if let Some(yaml) = postgres_yaml().await {
        let keywords = "    ssl: false\n    server_settings:\n      application_name: mta-sts-test\n    \
                        command_timeout: 2\n    min_size: 1\n    max_size: 3\n    timeout: 2\n";
        check_store(&format!("{yaml}{keywords}"), &unique("pg-keywords")).await;
    }
}

/// Proactive fetching: at start (no pass recorded in the store) the daemon refreshes cached policies that would
/// expire before the next pass, without any client asking, and records the pass in the store.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn proactive_fetching_refreshes_the_store() {
    let fixture = Fixture::start().await;
    let policy = "version: STSv1\nmode: enforce\nmax_age: 600\nmx: mail.example.com\n";
    fixture.publish("proactive.test", "id1", policy);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = format!(
        "cache:\n  type: sqlite\n  options:\n    filename: \"{}\"\n",
        dir.path().join("c.db").display()
    );
    let first = start(&fixture, &cache).await;
    assert_eq!(
        query(tcp_addr(&first), "postfix", "proactive.test").await,
        "OK secure match=mail.example.com servername=hostname"
    );
    first.shutdown().await;
    assert_eq!(fixture.https().request_count("mta-sts.proactive.test"), 1);

    let second = start(
        &fixture,
        &format!("{cache}proactive_policy_fetching:\n  enabled: true\n  interval: 86400\n  concurrency_limit: 2\n"),
    )
    .await;
    // The policy (max_age 600) would expire before the next pass: it is fetched again, unasked.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while fixture.https().request_count("mta-sts.proactive.test") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no proactive refresh happened"
        );
        tokio::task::yield_now().await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while second.engine().last_proactive_refresh().await.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pass was not recorded in the store"
        );
        tokio::task::yield_now().await;
    }
    second.shutdown().await;
}
