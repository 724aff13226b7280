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
    dir: TempDir,
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
        let (binary, args) = match program {
            Program::Bare(binary) => (binary, vec!["--port".to_owned(), port.to_string()]),
            Program::Daemon { binary, config } => {
                let path = dir.path().join("mta-sts-daemon.yml");
                std::fs::write(&path, format!("host: 127.0.0.1\nport: {port}\n{config}"))?;
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
