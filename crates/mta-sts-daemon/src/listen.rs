//! Listening sockets: TCP (with `SO_REUSEPORT` when `reuse_port`), a UNIX socket with a file mode, or a socket
//! passed by systemd (`LISTEN_FDS`, socket activation).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use socketmap_proto::Connection;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::ListenConfig;
use crate::privileges::SocketOwner;
use crate::ratelimit::LogLimiter;

/// The pause after a failed accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Failed accepts (EMFILE and friends) are warned about at most once a second, all listeners together.
static ACCEPT_WARNINGS: LogLimiter = LogLimiter::new(Duration::from_secs(1));

/// A bound listener.
#[derive(Debug)]
pub(crate) enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A UNIX socket; `path` is removed when the listener is dropped if we created it.
    Unix {
        /// The listener.
        listener: UnixListener,
        /// The socket file to remove at stop (None for a socket passed by systemd).
        cleanup: Option<PathBuf>,
    },
}

/// Where a listener listens, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAddr {
    /// TCP address.
    Tcp(SocketAddr),
    /// UNIX socket path (empty when unnamed).
    Unix(PathBuf),
}

impl std::fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp:{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Listener {
    /// Binds what the configuration asks for; a UNIX socket file gets `owner` (see [`SocketOwner`]). Must be
    /// called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// The host name does not resolve, or the socket cannot be created, bound or given its mode and owner.
    pub(crate) fn bind(
        listen: &ListenConfig,
        reuse_port: bool,
        owner: SocketOwner,
    ) -> io::Result<Self> {
        match listen {
            ListenConfig::Tcp { host, port } => bind_tcp(host, *port, reuse_port),
            ListenConfig::Unix { path, mode } => bind_unix(path, *mode, owner),
        }
    }

    /// The sockets passed by systemd socket activation (`LISTEN_PID`/`LISTEN_FDS`), TCP or UNIX stream
    /// listeners, in order; empty when not socket-activated. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// A passed descriptor cannot be used.
    pub(crate) fn from_systemd() -> io::Result<Vec<Self>> {
        let mut fds = listenfd::ListenFd::from_env();
        let mut listeners = Vec::with_capacity(fds.len());
        for i in 0..fds.len() {
            if let Ok(Some(tcp)) = fds.take_tcp_listener(i) {
                tcp.set_nonblocking(true)?;
                listeners.push(Self::Tcp(TcpListener::from_std(tcp)?));
                continue;
            }
            if let Some(unix) = fds.take_unix_listener(i)? {
                unix.set_nonblocking(true)?;
                listeners.push(Self::Unix {
                    listener: UnixListener::from_std(unix)?,
                    cleanup: None,
                });
            }
        }
        Ok(listeners)
    }

    /// Where this listener listens.
    pub(crate) fn local_addr(&self) -> io::Result<LocalAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().map(LocalAddr::Tcp),
            Self::Unix { listener, .. } => {
                let addr = listener.local_addr()?;
                Ok(LocalAddr::Unix(
                    addr.as_pathname()
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                ))
            }
        }
    }

    /// Accepts one client.
    pub(crate) async fn accept(&self) -> io::Result<Connection> {
        match self {
            Self::Tcp(l) => {
                let (s, _) = l.accept().await?;
                // Replies are small and latency matters.
                let _ = s.set_nodelay(true);
                Ok(Connection::Tcp(s))
            }
            Self::Unix { listener, .. } => listener.accept().await.map(|(s, _)| s.into()),
        }
    }

    /// Takes one of `permits`, then accepts one client: while every permit is held, further clients wait in
    /// the kernel backlog, not in memory. `None` once `stop` is cancelled. A failed accept (EMFILE and
    /// friends) is tried again after a pause instead of spinning, and warned about at most once a second.
    pub(crate) async fn accept_permitted(
        &self,
        permits: &Arc<Semaphore>,
        stop: &CancellationToken,
    ) -> Option<(Connection, OwnedSemaphorePermit)> {
        let permit = tokio::select! {
            () = stop.cancelled() => return None,
            permit = Arc::clone(permits).acquire_owned() => permit.ok()?,
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return None,
                accepted = self.accept() => match accepted {
                    Ok(stream) => return Some((stream, permit)),
                    Err(e) => {
                        if let Some(suppressed) = ACCEPT_WARNINGS.check() {
                            let listen = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
                            warn!(error = %e, listen, suppressed, "accept failed");
                        }
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                },
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix {
            cleanup: Some(path),
            ..
        } = self
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What differs between the configured listen address and the sockets systemd passed, which are served
/// instead (socket activation overrides `host`, `port`, `path` and `mode`); `None` when one of them is the
/// configured socket (with its mode, when one is configured).
pub(crate) fn passed_socket_difference(
    listen: &ListenConfig,
    passed: &[LocalAddr],
) -> Option<String> {
    let list = passed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let differs = |what: String| {
        Some(format!(
            "the sockets passed by systemd ({list}) are served instead of the configured {what}: under socket \
             activation `host`, `port`, `path` and `mode` are ignored; make the socket unit's ListenStream= and \
             SocketMode= match the configuration"
        ))
    };
    match listen {
        ListenConfig::Tcp { host, port } => {
            let bare = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let configured: Vec<SocketAddr> = (bare, *port)
                .to_socket_addrs()
                .map(Iterator::collect)
                .unwrap_or_default();
            let found = passed
                .iter()
                .any(|p| matches!(p, LocalAddr::Tcp(a) if configured.contains(a)));
            if found {
                None
            } else {
                differs(format!("address {listen}"))
            }
        }
        ListenConfig::Unix { path, mode } => {
            if !passed
                .iter()
                .any(|p| matches!(p, LocalAddr::Unix(p) if p == path))
            {
                return differs(format!("socket {listen}"));
            }
            let actual = std::fs::metadata(path)
                .ok()
                .map(|m| m.permissions().mode() & 0o7777);
            match (mode, actual) {
                (Some(want), Some(have)) if *want != have => differs(format!(
                    "mode {want:04o} of {listen} (the passed socket has {have:04o})"
                )),
                _ => None,
            }
        }
    }
}

fn bind_tcp(host: &str, port: u16, reuse_port: bool) -> io::Result<Listener> {
    // Brackets are accepted around IPv6 addresses.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addr = (bare, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "host name resolves to no address",
        )
    })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        // Several instances on one port: a restart never refuses a query.
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(Listener::Tcp(TcpListener::from_std(socket.into())?))
}

fn bind_unix(path: &Path, mode: Option<u32>, owner: SocketOwner) -> io::Result<Listener> {
    // A stale socket file from an earlier run is replaced; anything else is left alone (bind then fails).
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    let address = socket2::SockAddr::unix(path)?;
    match mode {
        // The file is created with its final mode: bind(2) gives it 0777 less the umask, so the umask is
        // the mode's complement for the bind alone. There is no moment with another mode.
        Some(mode) => {
            use nix::sys::stat::{Mode, umask};
            let previous = umask(Mode::from_bits_truncate(!mode & 0o777));
            let bound = socket.bind(&address);
            umask(previous);
            bound?;
        }
        None => socket.bind(&address)?,
    }
    let set_up = move || -> io::Result<UnixListener> {
        // Bits the umask cannot give (setgid, sticky), if configured.
        if let Some(mode) = mode.filter(|mode| mode & !0o777 != 0) {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        // Owner and group before `listen`: no client can connect before the socket has them.
        owner.apply(path)?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        UnixListener::from_std(socket.into())
    };
    match set_up() {
        Ok(listener) => Ok(Listener::Unix {
            listener,
            cleanup: Some(path.to_owned()),
        }),
        Err(e) => {
            // The file is ours (just bound): do not leave it behind.
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passed_socket_other_than_the_configured_one_is_named() {
        let tcp = |host: &str, port| ListenConfig::Tcp {
            host: host.to_owned(),
            port,
        };
        let passed = [LocalAddr::Tcp("127.0.0.1:8461".parse().expect("addr"))];
        assert_eq!(
            passed_socket_difference(&tcp("127.0.0.1", 8461), &passed),
            None
        );
        let warning =
            passed_socket_difference(&tcp("127.0.0.1", 9000), &passed).expect("a difference");
        assert!(
            warning.contains("tcp:127.0.0.1:8461") && warning.contains("address 127.0.0.1:9000"),
            "{warning}"
        );
        let unix = ListenConfig::Unix {
            path: "/run/a.sock".into(),
            mode: None,
        };
        assert!(passed_socket_difference(&unix, &passed).is_some());
        let passed = [LocalAddr::Unix("/run/a.sock".into())];
        assert_eq!(passed_socket_difference(&unix, &passed), None);
    }

    #[test]
    fn a_passed_socket_with_another_mode_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let _socket = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let passed = [LocalAddr::Unix(path.clone())];
        let listen = |mode| ListenConfig::Unix {
            path: path.clone(),
            mode: Some(mode),
        };
        assert_eq!(passed_socket_difference(&listen(0o666), &passed), None);
        let warning = passed_socket_difference(&listen(0o660), &passed).expect("a difference");
        assert!(
            warning.contains("mode 0660") && warning.contains("has 0666"),
            "{warning}"
        );
    }
}
