//! A tiny HTTP CONNECT proxy on loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

#[derive(Debug, Default)]
struct ProxyState {
    auth: Option<String>,
    connects: AtomicU64,
    rejected: AtomicU64,
    targets: Mutex<Vec<String>>,
}

/// A tiny HTTP CONNECT proxy on `127.0.0.1:<random port>`.
///
/// It accepts `CONNECT host:port`, always connects to `127.0.0.1:port` (whatever the host:
/// tests never leave loopback), answers `200 Connection established` and relays bytes.
/// With [`ConnectProxy::start_with_basic_auth`], a request without the right
/// `Proxy-Authorization: Basic …` gets `407`. The proxy stops when dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use mtasts_test_support::ConnectProxy;
/// let proxy = ConnectProxy::start().await;
/// assert!(proxy.url().starts_with("http://127.0.0.1:"));
/// assert_eq!(proxy.connect_count(), 0);
/// # }
/// ```
#[derive(Debug)]
pub struct ConnectProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    _tasks: JoinSet<()>,
}

impl ConnectProxy {
    /// Starts a proxy without authentication.
    pub async fn start() -> Self {
        Self::start_inner(None).await
    }

    /// Starts a proxy that requires HTTP basic authentication with `user` and `password`.
    pub async fn start_with_basic_auth(user: &str, password: &str) -> Self {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self::start_inner(Some(format!("Basic {token}"))).await
    }

    async fn start_inner(auth: Option<String>) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind proxy on loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(ProxyState {
            auth,
            ..ProxyState::default()
        });
        let mut tasks = JoinSet::new();
        let conn_state = Arc::clone(&state);
        tasks.spawn(crate::accept_each(listener, move |stream| {
            serve_conn(stream, Arc::clone(&conn_state))
        }));
        Self {
            addr,
            state,
            _tasks: tasks,
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many CONNECT requests were accepted (tunnels opened).
    pub fn connect_count(&self) -> u64 {
        self.state.connects.load(Ordering::SeqCst)
    }

    /// How many requests were rejected (bad request or failed authentication).
    pub fn rejected_count(&self) -> u64 {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// The `host:port` targets of accepted CONNECT requests, in order.
    pub fn targets(&self) -> Vec<String> {
        self.state
            .targets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Reads the request head (up to the empty line, at most 8 KiB).
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

async fn serve_conn(mut client: TcpStream, state: Arc<ProxyState>) {
    let Some(head) = read_head(&mut client).await else {
        return;
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        state.rejected.fetch_add(1, Ordering::SeqCst);
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await;
        return;
    };
    if let Some(expected) = &state.auth {
        let given = lines.find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("proxy-authorization")
                .then(|| value.trim().to_owned())
        });
        if given.as_deref() != Some(expected.as_str()) {
            state.rejected.fetch_add(1, Ordering::SeqCst);
            let _ = client
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
                )
                .await;
            return;
        }
    }
    let Some(port) = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
    else {
        state.rejected.fetch_add(1, Ordering::SeqCst);
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    state.connects.fetch_add(1, Ordering::SeqCst);
    state
        .targets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(target.to_owned());
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
