//! Test plumbing: the shared Redis (one database per test), redis-server processes on spare ports, a
//! Sentinel setup, and the skip-or-fail rule for missing services.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, AsyncConnectionConfig, Client, FromRedisValue, TlsCertificates};
use mtasts_cache::conformance::{CorruptInjector, Harness, Networked, must_set, sample_entry};
use mtasts_cache::{CacheError, PolicyCache, async_trait};
use mtasts_cache_redis::{RedisCache, RedisOptions, SentinelOptions};
use mtasts_test_support::{TestCa, skip_or_fail};
use tempfile::TempDir;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Timeouts the stores under test are configured with.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(1);
/// How long a spawned server may take to come up (or a sentinel to settle).
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Poll interval while waiting for a condition (polling with a deadline, not a fixed sleep).
const POLL: Duration = Duration::from_millis(20);

/// The master name used by every Sentinel setup.
pub(crate) const MASTER_NAME: &str = "mtasts";

/// A missing service: fails the test under CI, otherwise prints why it is skipped ([`skip_or_fail`]).
fn missing(what: &str) {
    skip_or_fail(
        what,
        "start redis-server on 127.0.0.1:6379 (or set MTASTS_TEST_REDIS_URL) and put redis-server in PATH",
    );
}

/// The shared server's URL without a database path, split into `scheme://[userinfo@]` and `host[:port]`.
fn base_url_parts() -> (String, String) {
    let url = std::env::var("MTASTS_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url.as_str()));
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    };
    (format!("{scheme}://{userinfo}"), host_port)
}

/// The shared server's URL without a database path.
fn base_url() -> String {
    let (prefix, host_port) = base_url_parts();
    format!("{prefix}{host_port}")
}

fn config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(10)))
}

/// A direct connection for commands the tests send behind the store's back.
pub(crate) async fn raw(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config())
        .await
}

/// Runs one command on `conn`, panicking with the command name on error.
pub(crate) async fn cmd<T: FromRedisValue>(
    conn: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
) -> T {
    cmd.query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Writes an entry for `domain` through `store`, reads it back, and checks that it is in the database at `url`.
pub(crate) async fn writes_into(store: &dyn PolicyCache, domain: &str, url: &str) {
    let entry = sample_entry(1_700_000_000);
    must_set(store, domain, &entry).await;
    assert_eq!(store.get(domain).await.expect("get"), Some(entry));
    let mut conn = raw(url).await.expect("raw connect");
    let card: u64 = cmd(&mut conn, redis::cmd("ZCARD").arg(domain)).await;
    assert_eq!(card, 1, "{domain} written to {url}");
}

/// Checks that the database at `url` holds no key.
pub(crate) async fn is_empty(url: &str) {
    let mut conn = raw(url).await.expect("raw connect");
    let size: u64 = cmd(&mut conn, &redis::cmd("DBSIZE")).await;
    assert_eq!(size, 0, "nothing in {url}");
}

/// Databases 1–15 of the shared server, leased to one test at a time (database 0 is left alone).
static DB_PERMITS: Semaphore = Semaphore::const_new(15);
static FREE_DBS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static DBS_INIT: std::sync::Once = std::sync::Once::new();

/// One empty database of the shared Redis, for one test.
pub(crate) struct SharedDb {
    index: u8,
    db: Database,
    _permit: SemaphorePermit<'static>,
}

impl SharedDb {
    /// Leases and flushes a database, or `None` (after [`missing`]) if the shared Redis is unreachable.
    pub(crate) async fn lease() -> Option<Self> {
        DBS_INIT.call_once(|| {
            FREE_DBS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(1..=15);
        });
        let base = base_url();
        let mut probe = match raw(&base).await {
            Ok(conn) => conn,
            Err(e) => {
                missing(&format!("Redis at {base} is unreachable: {e}"));
                return None;
            }
        };
        if let Err(e) = redis::cmd("PING").query_async::<String>(&mut probe).await {
            missing(&format!("Redis at {base} does not answer PING: {e}"));
            return None;
        }
        let permit = DB_PERMITS.acquire().await.expect("semaphore never closed");
        let index = FREE_DBS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .expect("a permit guarantees a free database");
        let url = format!("{base}/{index}");
        let mut conn = raw(&url).await.expect("connect to leased database");
        cmd::<()>(&mut conn, &redis::cmd("FLUSHDB")).await;
        Some(Self {
            index,
            db: Database { url },
            _permit: permit,
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.db.url
    }

    /// The URL of this database through another address (a proxy in front of the server).
    pub(crate) fn url_via(&self, addr: SocketAddr) -> String {
        let (prefix, _) = base_url_parts();
        format!("{prefix}{addr}/{}", self.index)
    }

    /// The shared server's socket address.
    pub(crate) async fn socket_addr(&self) -> SocketAddr {
        let (_, host_port) = base_url_parts();
        tokio::net::lookup_host(&host_port)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("cannot resolve {host_port}"))
    }

    pub(crate) async fn raw(&self) -> MultiplexedConnection {
        raw(self.url()).await.expect("connect to leased database")
    }
}

#[async_trait]
impl Harness for SharedDb {
    async fn create() -> Option<Self> {
        Self::lease().await
    }

    /// A store on this database with the test timeouts.
    async fn store(&self) -> Arc<dyn PolicyCache> {
        let store = RedisCache::connect(options(self.url())).await;
        Arc::new(store.expect("connect store"))
    }

    fn injector(&self) -> Option<&dyn CorruptInjector> {
        Some(&self.db)
    }
}

#[async_trait]
impl Networked for SharedDb {
    async fn server_addr(&self) -> SocketAddr {
        self.socket_addr().await
    }

    async fn open_at(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Arc<dyn PolicyCache>, CacheError> {
        let options = options(&self.url_via(addr))
            .connect_timeout(timeout)
            .response_timeout(timeout);
        Ok(Arc::new(RedisCache::connect(options).await?))
    }
}

/// The 16 bytes a Python daemon would put first (a UUIDv4).
pub(crate) const UUID4: [u8; 16] =
    *b"\x12\x34\x56\x78\x9a\xbc\x4d\xef\x8f\xed\xcb\xa9\x87\x65\x43\x21";

/// One database of a Redis server, by URL; as a [`CorruptInjector`] it writes undecodable members in it, as a
/// broken writer or a bug would.
pub(crate) struct Database {
    pub(crate) url: String,
}

#[async_trait]
impl CorruptInjector for Database {
    fn variants(&self) -> usize {
        5
    }

    async fn inject(&self, domain: &str, ts: u64, variant: usize) {
        let with_prefix = |json: &str| [UUID4.as_slice(), json.as_bytes()].concat();
        let valid = r#"{"version": "STSv1", "mode": "none", "max_age": 86400}"#;
        let (member, score): (Vec<u8>, f64) = match variant {
            0 => (b"short".to_vec(), ts as f64),
            1 => (with_prefix("[\"id1\", {not json"), ts as f64),
            2 => (
                with_prefix(r#"["id1", {"version": "STSv1", "mode": "bogus", "max_age": 1}]"#),
                ts as f64,
            ),
            3 => (
                with_prefix(&format!(r#"["not valid!", {valid}]"#)),
                ts as f64,
            ),
            // A negative score is no timestamp.
            _ => (with_prefix(&format!(r#"["id1", {valid}]"#)), -5.0),
        };
        let mut conn = raw(&self.url).await.expect("connect injector");
        cmd::<()>(&mut conn, redis::cmd("DEL").arg(domain)).await;
        cmd::<()>(
            &mut conn,
            redis::cmd("ZADD").arg(domain).arg(score).arg(member),
        )
        .await;
    }
}

impl Drop for SharedDb {
    fn drop(&mut self) {
        FREE_DBS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.index);
    }
}

/// Store options with the test timeouts.
pub(crate) fn options(url: &str) -> RedisOptions {
    RedisOptions::new(url)
        .connect_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .pool_size(4)
}

/// Sentinel store options with the test timeouts.
pub(crate) fn sentinel_options(sentinel_port: u16, db: i64) -> SentinelOptions {
    SentinelOptions::new(MASTER_NAME, vec![("127.0.0.1".to_owned(), sentinel_port)])
        .db(db)
        .connect_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .pool_size(4)
}

/// The redis-server binary (env `MTASTS_TEST_REDIS_SERVER`, else `redis-server` from PATH), or `None` after
/// [`missing`].
fn redis_server_binary() -> Option<PathBuf> {
    let name =
        std::env::var("MTASTS_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
    let found = if name.contains('/') {
        Some(PathBuf::from(&name)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(&name))
                .find(|p| p.is_file())
        })
    };
    if found.is_none() {
        missing(&format!(
            "{name} not found (install the redis-server package)"
        ));
    }
    found
}

fn spare_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a spare port");
    listener.local_addr().expect("local addr").port()
}

/// A redis-server (or sentinel) process on a spare loopback port, killed when dropped.
pub(crate) struct RedisProcess {
    child: Option<Child>,
    port: u16,
    binary: PathBuf,
    args: Vec<String>,
    dir: TempDir,
    /// TLS only, with `ca.pem` in `dir` the CA of its certificate.
    tls: bool,
}

impl RedisProcess {
    /// A Redis server that saves to its own directory on shutdown (`SHUTDOWN SAVE` keeps data for
    /// [`RedisProcess::restart`]). `extra` is appended to the command line. `None` if redis-server is missing.
    pub(crate) async fn server(extra: &[String]) -> Option<Self> {
        Self::spawn(false, |port, _dir| {
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                // Replicas sync at once instead of after the default 5 s.
                "--repl-diskless-sync-delay",
                "0",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            args.extend_from_slice(extra);
            args
        })
        .await
    }

    /// A sentinel monitoring the master on `master_port` as [`MASTER_NAME`], logging in with `auth_pass`.
    /// A Redis server that speaks TLS only (`--port 0 --tls-port …`), its certificate issued for `localhost`
    /// by a test CA of its own ([`RedisProcess::ca_file`]).
    pub(crate) async fn tls_server() -> Option<Self> {
        Self::spawn(true, |port, dir| {
            let ca = TestCa::new();
            ca.write_pem(&dir.join("ca.pem"));
            let (cert, key) = ca.issue(&["localhost"]).write_pem_files(dir, "server");
            let (cert, key) = (cert.display().to_string(), key.display().to_string());
            let ca = dir.join("ca.pem").display().to_string();
            [
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
        })
        .await
    }

    /// The CA of a [`RedisProcess::tls_server`]'s certificate.
    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub(crate) async fn sentinel(master_port: u16, auth_pass: Option<&str>) -> Option<Self> {
        Self::spawn(false, |port, dir| {
            let conf = dir.join("sentinel.conf");
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\nsentinel failover-timeout {MASTER_NAME} 10000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir.display()
            );
            if let Some(pass) = auth_pass {
                text.push_str(&format!("sentinel auth-pass {MASTER_NAME} {pass}\n"));
            }
            fs::write(&conf, text).expect("write sentinel.conf");
            vec![conf.display().to_string(), "--sentinel".to_owned()]
        })
        .await
    }

    async fn spawn(tls: bool, make_args: impl Fn(u16, &Path) -> Vec<String>) -> Option<Self> {
        let binary = redis_server_binary()?;
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = spare_port();
            let args = make_args(port, dir.path());
            let mut process = Self {
                child: None,
                port,
                binary: binary.clone(),
                args,
                dir,
                tls,
            };
            if process.launch().await {
                return Some(process);
            }
        }
        panic!("redis-server did not start on any of 5 spare ports");
    }

    /// Starts the process and waits until it answers PING; false if it exited (port taken).
    async fn launch(&mut self) -> bool {
        let log = File::create(self.dir.path().join(format!("redis-{}.log", self.port)))
            .expect("log file");
        let child = Command::new(&self.binary)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                eprintln!("redis-server on port {} exited early: {status}", self.port);
                self.child = None;
                return false;
            }
            if let Ok(mut conn) = self.connection().await {
                match redis::cmd("PING").query_async::<String>(&mut conn).await {
                    // An error reply (NOAUTH with `--requirepass`) also means it is up.
                    Ok(_) => return true,
                    Err(e) if e.code().is_some() => return true,
                    Err(_) => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} not ready within {READY_WITHIN:?}",
                self.port
            );
            tokio::time::sleep(POLL).await;
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn url(&self, db: u8) -> String {
        if self.tls {
            format!("rediss://localhost:{}/{db}", self.port)
        } else {
            format!("redis://127.0.0.1:{}/{db}", self.port)
        }
    }

    /// A direct connection to database 0 (over TLS, trusting [`RedisProcess::ca_file`], for a TLS server).
    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        if !self.tls {
            return raw(&self.url(0)).await;
        }
        let certificates = TlsCertificates {
            client_tls: None,
            root_cert: Some(fs::read(self.ca_file())?),
        };
        Client::build_with_tls(self.url(0), certificates)?
            .get_multiplexed_async_connection_with_config(&config())
            .await
    }

    pub(crate) async fn raw(&self) -> MultiplexedConnection {
        self.connection()
            .await
            .unwrap_or_else(|e| panic!("connect to port {}: {e}", self.port))
    }

    /// Saves the data and stops the server (`SHUTDOWN SAVE`), waiting for the process to exit.
    pub(crate) async fn shutdown(&mut self) {
        let mut conn = self.raw().await;
        // The server closes the connection instead of answering.
        let _ = redis::cmd("SHUTDOWN")
            .arg("SAVE")
            .query_async::<()>(&mut conn)
            .await;
        let deadline = Instant::now() + READY_WITHIN;
        while let Some(child) = self.child.as_mut() {
            if child.try_wait().ok().flatten().is_some() {
                self.child = None;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not exit",
                self.port
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts the server again on the same port and directory (loading what [`RedisProcess::shutdown`] saved).
    pub(crate) async fn restart(&mut self) {
        assert!(
            self.launch().await,
            "redis-server could not restart on port {}",
            self.port
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // The temp dir goes away with us: show what the server said.
            let log = fs::read_to_string(self.dir.path().join(format!("redis-{}.log", self.port)))
                .unwrap_or_default();
            eprintln!("---- log of redis-server on port {} ----\n{log}", self.port);
        }
    }
}

/// Polls `check` until it returns `Some`, panicking with `what` after [`READY_WITHIN`].
pub(crate) async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls until `check` accepts the reply to `cmd` on `url`, panicking with `what` after [`READY_WITHIN`]. Each
/// attempt opens a new connection: a server changing role drops its clients.
pub(crate) async fn wait_for_reply<T: FromRedisValue>(
    what: &str,
    url: &str,
    cmd: &redis::Cmd,
    check: impl Fn(&T) -> bool,
) {
    wait_for(what, || async {
        let conn = &mut raw(url).await.ok()?;
        let reply: T = cmd.query_async(conn).await.ok()?;
        check(&reply).then_some(())
    })
    .await;
}

/// A master, optionally a replica, and one sentinel, all on spare loopback ports.
pub(crate) struct SentinelSetup {
    pub(crate) master: RedisProcess,
    pub(crate) replica: Option<RedisProcess>,
    pub(crate) sentinel: RedisProcess,
}

impl SentinelSetup {
    /// Starts the processes and waits until the sentinel sees a healthy master (and replica). `None` if
    /// redis-server is missing.
    pub(crate) async fn start(with_replica: bool) -> Option<Self> {
        Self::start_inner(with_replica, None).await
    }

    /// A master that requires `password`, and a sentinel that knows it.
    pub(crate) async fn start_with_password(password: &str) -> Option<Self> {
        Self::start_inner(false, Some(password)).await
    }

    async fn start_inner(with_replica: bool, password: Option<&str>) -> Option<Self> {
        let master_args: Vec<String> = password
            .map(|p| vec!["--requirepass".to_owned(), p.to_owned()])
            .unwrap_or_default();
        let master = RedisProcess::server(&master_args).await?;
        let replica = if with_replica {
            let replica_of = [
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                master.port().to_string(),
            ];
            let replica = RedisProcess::server(&replica_of).await?;
            let info = redis::cmd("INFO").arg("replication").clone();
            wait_for_reply(
                "replica link up",
                &replica.url(0),
                &info,
                |info: &String| info.contains("master_link_status:up"),
            )
            .await;
            Some(replica)
        } else {
            None
        };
        let sentinel = RedisProcess::sentinel(master.port(), password).await?;
        let setup = Self {
            master,
            replica,
            sentinel,
        };
        setup.wait_healthy().await;
        Some(setup)
    }

    /// Waits until the sentinel reports the master (and replica, if any) as up.
    async fn wait_healthy(&self) {
        let url = self.sentinel.url(0);
        let master = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(MASTER_NAME)
            .clone();
        wait_for_reply(
            "sentinel sees the master up",
            &url,
            &master,
            |fields: &Vec<String>| field(fields, "flags") == Some("master"),
        )
        .await;
        if self.replica.is_some() {
            let replicas = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(MASTER_NAME)
                .clone();
            let up = |r: &Vec<String>| {
                field(r, "flags") == Some("slave") && field(r, "master-link-status") == Some("ok")
            };
            wait_for_reply(
                "sentinel sees the replica up",
                &url,
                &replicas,
                |rs: &Vec<Vec<String>>| rs.iter().any(up),
            )
            .await;
        }
    }

    /// The port the sentinel currently names as master.
    pub(crate) async fn master_port(&self) -> u16 {
        let mut conn = self.sentinel.raw().await;
        let (_host, port): (String, u16) = cmd(
            &mut conn,
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME),
        )
        .await;
        port
    }
}

/// The value after `name` in a flat `[name, value, ...]` reply.
fn field<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields
        .chunks(2)
        .find(|kv| kv.first().is_some_and(|k| k == name))
        .and_then(|kv| kv.get(1))
        .map(String::as_str)
}
