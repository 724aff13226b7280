//! The servers under test as child processes: started pinned to the server CPU, ready when they say
//! `READY=1` on a notify socket (systemd's protocol, which the daemon speaks), measured through `/proc`, and
//! always stopped: by SIGTERM when the bench is done with them, by SIGKILL when they are dropped on an error
//! or Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

/// How long a server may take to say `READY=1`, and to exit after SIGTERM.
const PATIENCE: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) enum Program {
    /// `bare-netstring-server --port N`.
    Bare(PathBuf),
    /// `mta-sts-daemon -c <config>` with the config text after `host`/`port`.
    Daemon { binary: PathBuf, config: String },
}

/// A running server.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    pid: Pid,
    addr: SocketAddr,
    startup: Duration,
    /// The daemon's metrics socket (`metrics.listen`); none for the bare server.
    metrics: Option<PathBuf>,
    dir: TempDir,
}

/// Where a daemon's answers came from, read from its metrics (`mtasts_cache_*`), and what its resident memory
/// was made of at the end.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) memory_hits: u64,
    pub(crate) store_hits: u64,
    pub(crate) misses: u64,
}

impl Server {
    /// Starts `program` on a free loopback port, pinned to `cpu` when given, and waits for `READY=1`.
    ///
    /// The port is found by binding port 0 and releasing it, so another process may take it first: a server
    /// that exits before `READY=1` is started again on another port, three times at most.
    pub(crate) async fn start(program: &Program, cpu: Option<usize>) -> Result<Self> {
        let mut failure = None;
        for _ in 0..3 {
            match Self::try_start(program, cpu).await {
                Ok(server) => return Ok(server),
                Err(err) => failure = Some(err),
            }
        }
        Err(failure.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
            .context("server exited before READY=1 three times")
    }

    async fn try_start(program: &Program, cpu: Option<usize>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("mtasts-bench-").tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path)?;
        let mut metrics = None;
        let (binary, args) = match program {
            Program::Bare(binary) => (binary, vec!["--port".to_owned(), port.to_string()]),
            Program::Daemon { binary, config } => {
                let path = dir.path().join("mta-sts-daemon.yml");
                let socket = dir.path().join("metrics.sock");
                std::fs::write(
                    &path,
                    format!(
                        "host: 127.0.0.1\nport: {port}\n{config}metrics:\n  listen: \"unix:{}\"\n",
                        socket.display()
                    ),
                )?;
                metrics = Some(socket);
                let path = path.to_string_lossy().into_owned();
                (
                    binary,
                    vec!["-c".to_owned(), path, "-v".to_owned(), "warn".to_owned()],
                )
            }
        };
        let mut command = match cpu {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpu.to_string()).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let began = Instant::now();
        let mut child = command
            .args(&args)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .context("child has no pid")?;
        let mut buf = [0u8; 64];
        tokio::select! {
            received = tokio::time::timeout(PATIENCE, notify.recv(&mut buf)) => {
                let n = received.context("no READY=1 within 60 s")??;
                if &buf[..n] != b"READY=1" {
                    bail!("unexpected notification {:?}", String::from_utf8_lossy(&buf[..n]));
                }
            }
            status = child.wait() => {
                bail!("{} exited at start ({}): {}", binary.display(), status?, log_tail(dir.path()));
            }
        }
        Ok(Self {
            startup: began.elapsed(),
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            metrics,
            dir,
        })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From spawning the process to its `READY=1`.
    pub(crate) fn startup(&self) -> Duration {
        self.startup
    }

    /// Peak resident memory (`VmHWM` of `/proc/<pid>/status`), in KiB.
    pub(crate) fn peak_rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc/<pid>/status")
    }

    /// Resident memory now by kind (`RssAnon`, `RssFile`) in KiB, from `/proc/<pid>/status`.
    pub(crate) fn rss_kinds_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in /proc/<pid>/status"))
        };
        Ok((field("RssAnon:")?, field("RssFile:")?))
    }

    /// The daemon's cache counters, scraped from its metrics socket (HTTP/1.0 over UNIX); `None` for the bare
    /// server.
    pub(crate) async fn counters(&self) -> Result<Option<Counters>> {
        let Some(socket) = &self.metrics else {
            return Ok(None);
        };
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("metrics socket {}", socket.display()))?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut text = String::new();
        tokio::time::timeout(PATIENCE, stream.read_to_string(&mut text))
            .await
            .context("no metrics within 60 s")??;
        let value = |series: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix(series))
                .and_then(|rest| rest.trim().parse::<f64>().ok())
                // Counters are whole numbers, printed as floats by some encoders.
                .map_or(0, |v| v as u64)
        };
        Ok(Some(Counters {
            memory_hits: value("mtasts_cache_hits_total{layer=\"memory\"}"),
            store_hits: value("mtasts_cache_hits_total{layer=\"store\"}"),
            misses: value("mtasts_cache_misses_total"),
        }))
    }

    /// SIGTERM, then waits for the exit (SIGKILL after a minute). A non-zero exit is an error carrying the
    /// end of the server's log.
    pub(crate) async fn stop(mut self) -> Result<()> {
        // The process may already be gone; `wait` below tells.
        let _ = kill(self.pid, Signal::SIGTERM);
        let status = match tokio::time::timeout(PATIENCE, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.child.kill().await?;
                bail!("server did not stop within 60 s of SIGTERM");
            }
        };
        if !status.success() {
            bail!("server exited with {status}: {}", log_tail(self.dir.path()));
        }
        Ok(())
    }
}

/// The last lines of a server's log, for error messages.
fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
