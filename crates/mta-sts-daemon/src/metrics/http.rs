//! The metrics endpoint: hyper's HTTP/1.1 server answering `GET /metrics` (and `HEAD`) with the registry.
//!
//! Bounds, so that no client can starve Prometheus: at most [`Limits::max_connections`] connections are served
//! at once (further clients wait in the kernel backlog); a client has [`Limits::header_read_timeout`] to send a
//! request head, also between requests on a kept-alive connection, so idle clients leave within that time; a
//! request head is at most [`MAX_HEAD`] bytes (`431` beyond). At stop the listener is closed at once, a scrape
//! being answered is finished and idle connections are closed ([`SHUTDOWN_GRACE`] at most).
//!
//! ```text
//! GET /metrics HTTP/1.1                        ->  HTTP/1.1 200 OK
//! Accept: application/openmetrics-text;...         content-type: application/openmetrics-text; version=1.0.0; ...
//!                                                  cache-control: no-store
//!                                                  content-length: N
//!
//!                                                  <exposition, Format::negotiate(Accept)>
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{Format, METRICS_PATH};
use crate::listen::Listener;

/// The largest request head read (hyper's smallest read buffer); a larger one gets `431`.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// How long a scrape being answered at stop may take to finish.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The endpoint's bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once.
    pub(crate) max_connections: usize,
    /// Time allowed to send a request head, counted from the connection's start or its previous response.
    pub(crate) header_read_timeout: Duration,
}

impl Limits {
    /// What the daemon serves with: 64 connections, 2 s for a request head.
    pub(crate) const DEFAULT: Self = Self {
        max_connections: 64,
        header_read_timeout: Duration::from_secs(2),
    };
}

/// Serves `registry` at [`METRICS_PATH`] on `listener` until `stop` is cancelled.
pub(crate) async fn serve(
    listener: Listener,
    registry: Arc<Registry>,
    limits: Limits,
    stop: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    while let Some((stream, permit)) = listener.accept_permitted(&permits, &stop).await {
        let registry = Arc::clone(&registry);
        let service = service_fn(move |request: Request<Incoming>| {
            let response = respond(&request, &registry);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "metrics connection ended with an error");
            }
            drop(permit);
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    // Closed at once (a UNIX socket file is removed), so a restarted daemon can bind it.
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("metrics connections cut at stop");
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// The response to one request: the exposition in the format the client accepts, or an error status.
fn respond(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    if request.uri().path() != METRICS_PATH {
        return status(StatusCode::NOT_FOUND);
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let accept: Vec<&str> = request
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let format = Format::negotiate(&accept.join(","));
    let mut response = Response::new(Full::new(Bytes::from(format.encode(registry))));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let reason = code.canonical_reason().unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(format!(
        "{} {reason}\n",
        code.as_u16()
    ))));
    *response.status_mut() = code;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
    use tokio::task::JoinHandle;

    use super::*;
    use crate::metrics::Metrics;

    /// Generous bound for anything that must happen; the tests never wait for it otherwise.
    const BOUND: Duration = Duration::from_secs(10);

    struct Server {
        addr: SocketAddr,
        stop: CancellationToken,
        task: JoinHandle<()>,
    }

    impl Server {
        async fn start(limits: Limits) -> Self {
            let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = tcp.local_addr().expect("addr");
            let mut registry = Registry::default();
            let _metrics = Metrics::new(&mut registry, ["z"]);
            let stop = CancellationToken::new();
            let task = tokio::spawn(serve(
                Listener::Tcp(tcp),
                Arc::new(registry),
                limits,
                stop.clone(),
            ));
            Self { addr, stop, task }
        }

        async fn stop(self) {
            self.stop.cancel();
            tokio::time::timeout(BOUND, self.task)
                .await
                .expect("the server stops")
                .expect("server task");
        }
    }

    /// Limits that never let a connection go on their own.
    fn patient(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            header_read_timeout: Duration::from_secs(3600),
        }
    }

    /// Reads until the server closes the connection.
    async fn read_to_close<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
        let mut out = Vec::new();
        tokio::time::timeout(BOUND, stream.read_to_end(&mut out))
            .await
            .expect("the server closes the connection")
            .expect("read");
        out
    }

    /// Writes `request`, reads until the server closes the connection.
    async fn exchange<S>(mut stream: S, request: &[u8]) -> String
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        stream.write_all(request).await.expect("write");
        String::from_utf8(read_to_close(&mut stream).await).expect("utf-8")
    }

    async fn tcp_exchange(addr: SocketAddr, request: &[u8]) -> String {
        exchange(TcpStream::connect(addr).await.expect("connect"), request).await
    }

    /// A connection that was answered once and is kept alive.
    async fn kept_alive(addr: SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let reply = scrape_keep_alive(&mut stream).await;
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        stream
    }

    /// Sends a kept-alive `GET /metrics` and reads its whole response (head and `content-length` bytes).
    async fn scrape_keep_alive(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut raw = Vec::new();
        let mut chunk = [0_u8; 4096];
        let read = async {
            loop {
                let n = stream.read(&mut chunk).await.expect("read");
                assert!(n > 0, "closed before the whole response");
                raw.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&raw);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .expect("content-length")
                        .parse()
                        .expect("length");
                    if body.len() == length {
                        return text.into_owned();
                    }
                }
            }
        };
        tokio::time::timeout(BOUND, read).await.expect("a response")
    }

    const GET: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    #[tokio::test]
    async fn each_request_gets_its_response() {
        let server = Server::start(Limits::DEFAULT).await;
        // What Prometheus sends.
        let prometheus = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept: \
            application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
            text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n\r\n";
        let mut oversized = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        oversized.resize(2 * MAX_HEAD, b'a');
        let cases: [(&[u8], &[&str]); 9] = [
            (
                GET,
                &[
                    "HTTP/1.1 200 OK\r\n",
                    "\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n",
                    "\r\ncache-control: no-store\r\n",
                    "\n# TYPE mtasts_answers_total counter\n",
                ],
            ),
            (
                prometheus,
                &[
                    "HTTP/1.1 200 OK\r\n",
                    "\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n",
                    "\n# TYPE mtasts_answers counter\n",
                    "\n# EOF\n",
                ],
            ),
            (
                b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                &["HTTP/1.1 200 OK\r\n", "\nmtasts_connections_total 0\n"],
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                &["HTTP/1.1 404 Not Found\r\n"],
            ),
            (
                b"POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                &[
                    "HTTP/1.1 405 Method Not Allowed\r\n",
                    "\r\nallow: GET, HEAD\r\n",
                ],
            ),
            (b"GET /metrics\r\n\r\n", &["HTTP/1.1 400 Bad Request\r\n"]),
            (
                b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
                &["HTTP/1.1 400 Bad Request\r\n"],
            ),
            (
                &oversized,
                &["HTTP/1.1 431 Request Header Fields Too Large\r\n"],
            ),
            (
                b"HEAD /metrics HTTP/1.0\r\nConnection: close\r\n\r\n",
                &["HTTP/1.0 200 OK\r\n"],
            ),
        ];
        for (request, expected) in cases {
            let reply = tcp_exchange(server.addr, request).await;
            for part in expected {
                assert!(
                    reply.contains(part),
                    "{part:?} in the reply to {request:?}:\n{reply}"
                );
            }
            let (head, body) = reply.split_once("\r\n\r\n").expect("head");
            if request.starts_with(b"HEAD ") {
                assert!(body.is_empty(), "HEAD has no body: {reply}");
            } else {
                let length = format!("content-length: {}", body.len());
                assert!(head.lines().any(|l| l == length), "{length} in {head}");
            }
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn a_silent_client_is_closed_after_the_header_timeout() {
        let server = Server::start(Limits {
            header_read_timeout: Duration::from_millis(100),
            ..Limits::DEFAULT
        })
        .await;
        let reply = tcp_exchange(server.addr, b"GET /metr").await;
        assert!(!reply.contains("200 OK"), "{reply}");
        // The same once a kept-alive connection has been answered.
        read_to_close(&mut kept_alive(server.addr).await).await;
        server.stop().await;
    }

    /// With every connection slot held by an open connection, a new client is not served until one closes.
    #[tokio::test]
    async fn connections_beyond_the_limit_wait_for_a_free_slot() {
        let server = Server::start(patient(2)).await;
        // Answered and kept alive: each holds a slot.
        let first = kept_alive(server.addr).await;
        let second = kept_alive(server.addr).await;
        let mut third = TcpStream::connect(server.addr).await.expect("connect");
        third.write_all(GET).await.expect("write");
        let mut byte = [0_u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), third.read(&mut byte))
                .await
                .is_err(),
            "a third client was served while two connections were open"
        );
        drop(first);
        let reply = read_to_close(&mut third).await;
        assert!(
            reply.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "served once a slot is free"
        );
        drop(second);
        server.stop().await;
    }

    #[tokio::test]
    async fn stop_closes_idle_connections_at_once() {
        let server = Server::start(patient(4)).await;
        let mut kept = kept_alive(server.addr).await;
        let addr = server.addr;
        server.stop().await;
        read_to_close(&mut kept).await;
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }

    #[tokio::test]
    async fn serves_on_a_unix_socket_and_removes_it_at_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metrics.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(
            Listener::Unix {
                listener,
                cleanup: Some(path.clone()),
            },
            Arc::new(Registry::default()),
            Limits::DEFAULT,
            stop.clone(),
        ));
        let reply = exchange(UnixStream::connect(&path).await.expect("connect"), GET).await;
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        stop.cancel();
        server.await.expect("server task");
        assert!(!path.exists(), "socket file removed at stop");
    }
}
