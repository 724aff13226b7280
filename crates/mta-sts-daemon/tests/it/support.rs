//! Shared helpers: a daemon configured against a `Fixture` (in-process, or the built binary), socketmap queries,
//! polling with a deadline, and the `cache` sections of the real stores.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mta_sts_daemon::{Bound, Config, LocalAddr, Running};
use mtasts_engine::{Clock, ManualClock};
use mtasts_test_support::Fixture;
#[cfg(any(feature = "redis", feature = "postgres"))]
use mtasts_test_support::skip_or_fail;
use socketmap_proto::SocketmapClient;
use tokio::time::Instant;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_mta-sts-daemon");

pub(crate) const ENFORCE: &str =
    "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\nmx: *.mx.example.net\n";
pub(crate) const TESTING: &str =
    "version: STSv1\nmode: testing\nmax_age: 86400\nmx: mail.example.com\n";
pub(crate) const NONE: &str = "version: STSv1\nmode: none\nmax_age: 86400\n";

pub(crate) const ENFORCE_REPLY: &str =
    "OK secure match=mail.example.com:.mx.example.net servername=hostname";

/// The `resolver` section pointing the daemon at the fixture.
pub(crate) fn resolver_yaml(fixture: &Fixture) -> String {
    format!(
        "resolver:\n  nameservers: [\"{}\"]\n  extra_ca_file: \"{}\"\n  policy_port: {}\n  proxy: none\n",
        fixture.dns().addr(),
        fixture.ca_pem_path().display(),
        fixture.https().port()
    )
}

/// Full configuration text: TCP on a free port, the fixture's resolver, then `extra`.
pub(crate) fn config_yaml(fixture: &Fixture, extra: &str) -> String {
    format!(
        "host: 127.0.0.1\nport: 0\n{}{extra}",
        resolver_yaml(fixture)
    )
}

/// Writes `text` as `dir/mta-sts-daemon.yml`, with `dir/control.sock` as its control socket unless `text` sets
/// one: the default, /run/mta-sts/control.sock, is the host's, where another daemon may answer.
pub(crate) fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mta-sts-daemon.yml");
    let text = if text.contains("control:") {
        text.to_owned()
    } else {
        format!(
            "{text}\ncontrol:\n  socket: \"{}\"\n",
            dir.join("control.sock").display()
        )
    };
    std::fs::write(&path, text).expect("write config");
    path
}

fn parse(text: &str) -> Config {
    Config::parse(text)
        .unwrap_or_else(|e| panic!("config {text:?}: {e}"))
        .0
}

/// Starts a daemon in-process on exactly this configuration text, and waits until its cache store is open (the
/// daemon opens it in the background).
pub(crate) async fn start_config(text: &str) -> Running {
    store_up(
        Running::start(parse(text))
            .await
            .unwrap_or_else(|e| panic!("start: {e}")),
    )
    .await
}

/// `daemon`, once its cache store is open.
async fn store_up(daemon: Running) -> Running {
    eventually("the cache store open", POLL, || async {
        daemon.metrics().is_store_up()
    })
    .await;
    daemon
}

/// Starts a daemon in-process: TCP on a free port, the fixture's resolver, then `extra`; returns once its cache
/// store is open.
pub(crate) async fn start(fixture: &Fixture, extra: &str) -> Running {
    start_config(&config_yaml(fixture, extra)).await
}

/// [`start`] without waiting for the cache store.
pub(crate) async fn start_now(fixture: &Fixture, extra: &str) -> Running {
    Running::start(parse(&config_yaml(fixture, extra)))
        .await
        .unwrap_or_else(|e| panic!("start: {e}"))
}

/// A fixture publishing the three standard policies and a daemon configured with `extra`, answering at the
/// returned address.
pub(crate) async fn standard(extra: &str) -> (Fixture, Running, SocketAddr) {
    let fixture = standard_fixture().await;
    let daemon = start(&fixture, extra).await;
    let addr = tcp_addr(&daemon);
    (fixture, daemon, addr)
}

/// Starts a daemon in-process whose engine reads time from a manual clock.
pub(crate) async fn start_with_clock(
    fixture: &Fixture,
    extra: &str,
) -> (Running, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_700_000_000));
    let running = Bound::bind(parse(&config_yaml(fixture, extra)))
        .unwrap_or_else(|e| panic!("bind: {e}"))
        .start_with_clock(Some(Arc::clone(&clock) as Arc<dyn Clock>))
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    (store_up(running).await, clock)
}

pub(crate) fn tcp_addr(running: &Running) -> SocketAddr {
    match running.local_addr() {
        LocalAddr::Tcp(a) => *a,
        LocalAddr::Unix(p) => panic!("expected TCP, got {}", p.display()),
    }
}

/// Closes the client connection `open`, then stops `daemon` (an open connection would hold the shutdown for
/// `shutdown_timeout`).
pub(crate) async fn close_and_stop<T>(open: T, daemon: Running) {
    drop(open);
    daemon.shutdown().await;
}

/// A path for a UNIX socket named `name` in a new temporary directory (kept while the `TempDir` lives).
pub(crate) fn socket_path(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    (dir, path)
}

/// `127.0.0.1:port`.
pub(crate) fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One query on an open connection; the reply as text (`OK ...`, `NOTFOUND `).
pub(crate) async fn ask(client: &mut SocketmapClient, zone: &str, key: &str) -> String {
    client
        .query(zone, key)
        .await
        .unwrap_or_else(|e| panic!("query {zone} {key}: {e}"))
        .to_string()
}

/// One query on a fresh connection; the reply as text.
pub(crate) async fn query(addr: SocketAddr, zone: &str, key: &str) -> String {
    let mut client = SocketmapClient::connect_tcp(addr).await.expect("connect");
    ask(&mut client, zone, key).await
}

/// Asks each `(zone, key)` on fresh connections and checks its reply.
pub(crate) async fn assert_replies(addr: SocketAddr, cases: &[(&str, &str, &str)]) {
    for (zone, key, want) in cases {
        assert_eq!(query(addr, zone, key).await, *want, "{zone} {key:?}");
    }
}

/// A fixture publishing the three standard policies: enforce.test, testing.test, none.test.
pub(crate) async fn standard_fixture() -> Fixture {
    let fixture = Fixture::start().await;
    fixture.publish("enforce.test", "id1", ENFORCE);
    fixture.publish("testing.test", "id1", TESTING);
    fixture.publish("none.test", "id1", NONE);
    fixture
}

/// A fixture publishing `ENFORCE` for `domain`.
pub(crate) async fn enforcing(domain: &str) -> Fixture {
    let fixture = Fixture::start().await;
    fixture.publish(domain, "id1", ENFORCE);
    fixture
}

/// The pause between [`eventually`]'s checks that cost a connection or a process.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns true, failing with `what` after 30 s. Between calls it yields (or waits
/// `pause`, for checks that cost a connection).
pub(crate) async fn eventually<F, Fut>(what: &str, pause: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        if pause.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Postfix's own client, `postmap -q KEY socketmap:inet:127.0.0.1:PORT:ZONE`, with an empty `main.cf` in a
/// private configuration directory (Postfix may be installed without being configured, as CI does).
pub(crate) struct Postmap {
    program: PathBuf,
    config_dir: tempfile::TempDir,
}

impl Postmap {
    /// `postmap`, or `None` when it is not installed and `test` may skip (see `tool_or_skip`).
    pub(crate) fn find(test: &str) -> Option<Self> {
        let program = mtasts_test_support::tool_or_skip(test, "postmap", "postfix")?;
        let config_dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(config_dir.path().join("main.cf"), "").expect("main.cf");
        Some(Self {
            program,
            config_dir,
        })
    }

    /// Asks the daemon on `port` for `key` in `zone`: the reply (`None`: not found) after checking that postmap
    /// saw no lookup error (which would defer mail).
    pub(crate) async fn query(&self, port: u16, zone: &str, key: &str) -> Option<String> {
        let out = tokio::process::Command::new(&self.program)
            .arg("-c")
            .arg(self.config_dir.path())
            .arg("-q")
            .arg(key)
            .arg(format!("socketmap:inet:127.0.0.1:{port}:{zone}"))
            .output()
            .await
            .expect("postmap");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let what = format!("postmap -q {key} {zone}: {stdout} {stderr}");
        assert!(
            !stderr.contains("error") && !stderr.contains("fatal"),
            "{what}"
        );
        match out.status.code() {
            Some(0) => Some(stdout.trim_end().to_owned()),
            Some(1) => None,
            _ => panic!("{what}"),
        }
    }
}

/// Exit code, standard output and standard error of one run of the binary.
pub(crate) struct Output {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs the binary to its end (at most 60 s) with `args`, without any socket passed by systemd.
pub(crate) async fn run_bin<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .args(args)
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .output(),
    )
    .await
    .expect("the binary did not exit within 60 s")
    .expect("run the binary");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `mta-sts-daemon -c CONFIG cache ARGS…`.
pub(crate) async fn cache(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["-c", config.to_str().expect("UTF-8 path"), "cache"];
    all.extend_from_slice(args);
    run_bin(all).await
}

/// Writes the configuration (`extra` over the fixture's) that both an in-process daemon and the binary read.
pub(crate) fn fixture_config(dir: &Path, fixture: &Fixture, extra: &str) -> PathBuf {
    write_config(dir, &config_yaml(fixture, extra))
}

/// A domain name no other test (or earlier run sharing a store) uses.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}.test", std::process::id())
}

/// The `cache` section for a SQLite file in `dir`.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_yaml(dir: &Path) -> String {
    format!(
        "cache:\n  type: sqlite\n  options:\n    filename: \"{}\"\n",
        dir.join("cache.db").display()
    )
}

/// `url` (from `env`, else `default`) if the service answers a TCP connect; otherwise fail under CI, skip
/// (None) elsewhere.
#[cfg(any(feature = "redis", feature = "postgres"))]
async fn service(env: &str, default: &str, what: &str) -> Option<String> {
    let url = std::env::var(env).unwrap_or_else(|_| default.to_owned());
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or(rest);
    let target = rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_owned();
    if tokio::net::TcpStream::connect(&target).await.is_ok() {
        return Some(url);
    }
    skip_or_fail(
        &format!("{what} is not reachable at {target} ({env}={url})"),
        &format!("start it, or set {env}"),
    );
    None
}

/// The `cache` section for the shared Redis (`MTASTS_TEST_REDIS_URL`), or `None` when the test is skipped.
#[cfg(feature = "redis")]
pub(crate) async fn redis_yaml() -> Option<String> {
    let url = service("MTASTS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0", "Redis").await?;
    Some(format!(
        "cache:\n  type: redis\n  options:\n    url: \"{url}\"\n    max_connections: 4\n"
    ))
}

/// The `cache` section for the shared PostgreSQL (`MTASTS_TEST_POSTGRES_URL`), or `None` when the test is
/// skipped.
#[cfg(feature = "postgres")]
pub(crate) async fn postgres_yaml() -> Option<String> {
    let dsn = service(
        "MTASTS_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
        "PostgreSQL",
    )
    .await?;
    Some(format!(
        "cache:\n  type: postgres\n  options:\n    dsn: \"{dsn}\"\n"
    ))
}

/// The `cache` section for the Sentinel named by `MTASTS_TEST_SENTINEL=host:port[,master_name]`.
#[cfg(feature = "redis")]
pub(crate) fn sentinel_yaml_from_env() -> Option<String> {
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
#[cfg(feature = "redis")]
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
